"""The samples-averaged F1 of species sets (GLC 2024/2025), and its expectation under
independent labels held to exact computations: every outcome enumerated for a dozen
species, the exact distributions by dynamic programming for 300."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score
from sklearn.preprocessing import MultiLabelBinarizer

from geolifeclef.predictions import f1

TOLERANCE = 1e-9
"""What the quadrature is held to; measured: <= 1e-13 on these rows. A wrong formula
(unconditioned, or m + a + b off by one) is off by 1e-3 or more."""


def realistic_probabilities(rng, n: int, species: int, low=5.0, high=40.0) -> np.ndarray:
    """Rows of presence probabilities (logistic of normal scores) whose sums, the expected
    richness, are drawn between ``low`` and ``high``."""
    target = rng.uniform(low, high, (n, 1))
    score = rng.normal(0.0, 2.5, (n, species))
    below, above = np.full((n, 1), -40.0), np.full((n, 1), 40.0)
    for _ in range(60):  # bisection on each row's offset
        middle = (below + above) / 2
        over = (1 / (1 + np.exp(-(score + middle)))).sum(axis=1, keepdims=True) > target
        above, below = np.where(over, middle, above), np.where(over, below, middle)
    return 1 / (1 + np.exp(-(score + middle)))


def enumerated_expected_f1(p: np.ndarray, chosen: np.ndarray) -> float:
    """E[F1 | T nonempty] of the set of columns ``chosen`` over every outcome of the labels."""
    outcomes = np.array(list(itertools.product([0, 1], repeat=len(p))), dtype=bool)
    weight = np.prod(np.where(outcomes, p, 1 - p), axis=1)
    nonempty = outcomes.any(axis=1)
    hits = outcomes[:, chosen].sum(axis=1)
    score = 2 * hits / (len(chosen) + outcomes.sum(axis=1))
    return float((weight * score)[nonempty].sum() / weight[nonempty].sum())


# --------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------


def test_rows_scored_as_the_organizers_score_them():
    predicted = [np.array([1, 2]), np.array([], dtype=int), np.array([], dtype=int), [5, 5, 6]]
    truth = [np.array([2, 3]), np.array([4]), np.array([], dtype=int), [5]]
    scores = f1.score_sets(predicted, truth)
    # {2} of 2 and 2; empty prediction; both empty (0, as GeoPlant's guard); repeats once
    np.testing.assert_allclose(scores.f1, [0.5, 0.0, 0.0, 2 / 3])
    np.testing.assert_allclose(scores.precision, [0.5, 0.0, 0.0, 0.5])
    np.testing.assert_allclose(scores.recall, [0.5, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(scores.predicted_size, [2, 0, 0, 2])
    assert scores.summary()["f1"] == pytest.approx((0.5 + 2 / 3) / 4)
    assert f1.samples_f1(predicted, truth) == pytest.approx((0.5 + 2 / 3) / 4)


def test_equals_sklearn_samples_average_not_micro():
    rng = np.random.default_rng(3)
    n, species = 400, 60
    predicted = [rng.choice(species, rng.integers(0, 12), replace=True) for _ in range(n)]
    truth = [rng.choice(species, rng.integers(0, 9), replace=False) for _ in range(n)]
    binarizer = MultiLabelBinarizer(classes=list(range(species)))
    y_pred = binarizer.fit_transform([set(s.tolist()) for s in predicted])
    y_true = binarizer.transform([set(s.tolist()) for s in truth])
    summary = f1.score_sets(predicted, truth).summary()
    sklearn = {"average": "samples", "zero_division": 0}
    assert summary["f1"] == pytest.approx(f1_score(y_true, y_pred, **sklearn), abs=1e-12)
    assert summary["precision"] == pytest.approx(
        precision_score(y_true, y_pred, **sklearn), abs=1e-12
    )
    assert summary["recall"] == pytest.approx(recall_score(y_true, y_pred, **sklearn), abs=1e-12)
    micro = f1_score(y_true, y_pred, average="micro", zero_division=0)
    assert abs(summary["f1"] - micro) > 0.01


def test_csr_pair_and_list_are_the_same_sets():
    sets = [np.array([7, 3, 3]), np.array([], dtype=np.int64), np.array([11254, 0])]
    indptr, indices = f1.ragged(sets)
    np.testing.assert_array_equal(indptr, [0, 2, 2, 4])
    np.testing.assert_array_equal(indices, [3, 7, 0, 11254])
    truth = [np.array([3]), np.array([1]), np.array([0, 5])]
    pair = (np.array([0, 3, 3, 5]), np.array([7, 3, 3, 11254, 0]))
    np.testing.assert_array_equal(f1.score_sets(pair, truth).f1, f1.score_sets(sets, truth).f1)
    # an empty row spelt np.array([]) or [] (float64 to numpy) is an empty set
    plain = f1.score_sets([[3], np.array([]), []], [np.array([3]), [], np.array([])])
    np.testing.assert_array_equal(plain.f1, [1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("predicted", "truth", "message"),
    [
        ([np.array([1])], [np.array([1]), np.array([2])], "1 predicted sets for 2 true sets"),
        ([np.array([1, -1])], [np.array([1])], "row 0 holds the negative species id -1"),
        ([np.array([1.5])], [np.array([1])], "must be integers"),
        ((np.array([0, 1]), np.array([1]), np.array([2])), [np.array([1])], "give a list"),
        ((np.array([0, 2]), np.array([1])), [np.array([1])], "end at len"),
    ],
)
def test_bad_sets_are_refused_by_row(predicted, truth, message):
    with pytest.raises(ValueError, match=message):
        f1.score_sets(predicted, truth)


def test_f1_of_prefixes_scores_each_prefix_as_a_set():
    rng = np.random.default_rng(4)
    n, k, species = 50, 20, 40
    ids = np.stack([rng.choice(species, k, replace=False) for _ in range(n)])
    truth = [rng.choice(species, rng.integers(0, 10), replace=False) for _ in range(n)]
    table = f1.f1_of_prefixes(ids, truth)
    assert table.shape == (n, k + 1)
    assert (table[:, 0] == 0).all()
    for size in range(1, k + 1):
        np.testing.assert_allclose(
            table[:, size], f1.score_sets(list(ids[:, :size]), truth).f1, atol=1e-15
        )
    ids[7, 3] = ids[7, 0]
    with pytest.raises(ValueError, match="row 7 lists a candidate species twice"):
        f1.f1_of_prefixes(ids, truth)


# --------------------------------------------------------------------------------------
# Expected F1
# --------------------------------------------------------------------------------------


def test_expected_f1_equals_every_outcome_enumerated():
    rng = np.random.default_rng(5)
    rows, sets = [], []
    for species in (1, 3, 7, 12):
        for _ in range(4):
            p = rng.beta(0.5, 1.5, species)
            p[rng.random(species) < 0.15] = 0.0  # never present
            p[rng.random(species) < 0.1] = 1.0  # always present
            if not p.any():
                p[0] = 0.3
            rows.append(np.pad(p, (0, 12 - species)))  # padding columns: p = 0
            sets.append(rng.choice(12, rng.integers(1, 13), replace=False))
    p = np.array(rows)
    wanted = np.array([enumerated_expected_f1(p[i], sets[i]) for i in range(len(p))])
    np.testing.assert_allclose(f1.expected_f1(p, sets), wanted, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(f1.exact_expected_f1(p, sets), wanted, rtol=0, atol=1e-13)
    # an empty set, and a set of species that are no column (p = 0: they only count in |P|)
    got = f1.expected_f1(p[:2], [np.array([], dtype=int), np.array([0, 40])])
    assert got[0] == 0
    assert got[1] == pytest.approx(
        f1.exact_expected_f1(p[1:2], [np.array([0, 40])])[0], abs=TOLERANCE
    )


def test_expected_f1_equals_the_exact_distributions_on_300_species():
    rng = np.random.default_rng(6)
    p = realistic_probabilities(rng, 8, 300)
    # random sets and top-k sets, in species ids that are not the column numbers
    species_ids = np.sort(rng.choice(11_255, 300, replace=False))
    order = np.argsort(-p, axis=1)
    sets = [species_ids[rng.choice(300, rng.integers(1, 80), replace=False)] for _ in range(8)]
    sets += [species_ids[order[i, : 5 * (i + 1)]] for i in range(8)]
    both = np.concatenate([p, p])
    np.testing.assert_allclose(
        f1.expected_f1(both, sets, species_ids),
        f1.exact_expected_f1(both, sets, species_ids),
        rtol=0,
        atol=TOLERANCE,
    )


def test_every_prefix_equals_the_exact_distributions():
    rng = np.random.default_rng(7)
    p = realistic_probabilities(rng, 5, 300)
    order = np.argsort(-p, axis=1)
    prefixes = f1.expected_f1_of_prefixes(np.take_along_axis(p, order, axis=1))
    assert prefixes.shape == (5, 301)
    assert (prefixes[:, 0] == 0).all()
    for size in [*range(1, 61), 100, 200, 300]:
        exact = f1.exact_expected_f1(p, list(order[:, :size]))
        np.testing.assert_allclose(prefixes[:, size], exact, rtol=0, atol=TOLERANCE)


def test_wide_prefixes_of_rich_rows_get_enough_nodes():
    """Sets of up to 600 species at a richness of 400-500: the integrand is about x^1,100,
    where a fixed 64 nodes were off by 3e-7."""
    rng = np.random.default_rng(12)
    p = realistic_probabilities(rng, 3, 600, 400, 500)
    order = np.argsort(-p, axis=1)
    prefixes = f1.expected_f1_of_prefixes(np.take_along_axis(p, order, axis=1))
    for size in (128, 450, 600):
        exact = f1.exact_expected_f1(p, list(order[:, :size]))
        np.testing.assert_allclose(prefixes[:, size], exact, rtol=0, atol=TOLERANCE)


def test_a_model_side_prefix_ignores_species_outside_its_candidates():
    rng = np.random.default_rng(8)
    p = rng.random((6, 10)) * 0.6
    prefixes = f1.expected_f1_of_prefixes(p)
    padded = np.pad(p, ((0, 0), (0, 5)))  # five more species of probability 0
    for size in (1, 4, 10):
        exact = f1.exact_expected_f1(padded, list(np.tile(np.arange(size), (6, 1))))
        np.testing.assert_allclose(prefixes[:, size], exact, rtol=0, atol=TOLERANCE)


def test_bayes_set_is_the_best_of_all_subsets():
    """The top-k theorem checked independently: every subset of 9 species enumerated."""
    rng = np.random.default_rng(9)
    species = 9
    p = np.vstack([rng.beta(0.4, 1.2, (5, species)), np.full((1, species), 0.01)])
    subsets = [
        np.array(s)
        for r in range(1, species + 1)
        for s in itertools.combinations(range(species), r)
    ]
    species_ids = np.arange(100, 100 + species)
    (indptr, indices), best = f1.bayes_optimal(p, species_ids)
    for i in range(len(p)):
        values = [enumerated_expected_f1(p[i], s) for s in subsets]
        assert best[i] == pytest.approx(max(values), abs=TOLERANCE)
        mine = indices[indptr[i] : indptr[i + 1]] - 100
        assert enumerated_expected_f1(p[i], mine) == pytest.approx(max(values), abs=TOLERANCE)


def test_bayes_set_searches_past_its_first_sizes():
    rng = np.random.default_rng(10)
    p = np.vstack(
        [
            realistic_probabilities(rng, 3, 600, 5, 40),
            realistic_probabilities(rng, 2, 600, 300, 400),  # best sets beyond 128 species
            np.zeros((1, 600)),  # nothing can be present: 0
        ]
    )
    species_ids = np.arange(600) * 3
    (indptr, indices), best = f1.bayes_optimal(p, species_ids)
    order = np.argsort(-p, axis=1, kind="stable")
    prefixes = f1.expected_f1_of_prefixes(np.take_along_axis(p, order, axis=1))
    sizes = np.diff(indptr)
    np.testing.assert_array_equal(sizes[:5], 1 + prefixes[:5, 1:].argmax(axis=1))
    assert (sizes[3:5] > f1.BAYES_FIRST_SEARCH).all()
    np.testing.assert_allclose(best, prefixes[np.arange(6), sizes], rtol=0, atol=1e-12)
    for i in range(5):
        np.testing.assert_array_equal(
            indices[indptr[i] : indptr[i + 1]], species_ids[order[i, : sizes[i]]]
        )
    assert best[5] == 0


def test_dense_truth_of_the_archive_width():
    """11,255 species, most of them improbable: log G through the series."""
    rng = np.random.default_rng(11)
    p = realistic_probabilities(rng, 3, 11_255)
    order = np.argsort(-p, axis=1)
    sets = list(order[:, :30])
    dense = f1.expected_f1(p, sets)
    exact = f1.exact_expected_f1(p, sets)
    np.testing.assert_allclose(dense, exact, rtol=0, atol=TOLERANCE)


def test_probabilities_out_of_range_are_refused():
    p = np.full((2, 3), 0.2)
    p[1, 2] = 1.5
    with pytest.raises(ValueError, match=r"row 1, column 2: probability 1.5 is not in \[0, 1\]"):
        f1.expected_f1(p, [np.array([0]), np.array([1])])
