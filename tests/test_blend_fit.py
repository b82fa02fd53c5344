"""Fitted blends: weights chosen on val (by likelihood or by coordinate ascent on the top-30
error), scored on held-out folds."""

import numpy as np
import pytest

from geolifeclef.predictions import blend_fit
from geolifeclef.predictions.blend_fit import (
    LABEL_FLOOR,
    BlendFit,
    CandidateScores,
    coordinate_ascent,
    fit_blend,
    fit_weights,
    likelihood_weights,
    spatial_folds,
)
from geolifeclef.predictions.metrics import KAGGLE_K, hits
from geolifeclef.predictions.table import Predictions, blend, check_predictions

N_SPECIES, K = 80, 40


def _member(labels: np.ndarray, good: np.ndarray, seed: int) -> Predictions:
    """Probabilities that rank the label first where ``good``, 35th elsewhere."""
    rng = np.random.default_rng(seed)
    scores = rng.random((len(labels), N_SPECIES)) * 0.5
    order = np.argsort(-scores, axis=1)
    rank = np.where(good, 0, 34)
    scores[np.arange(len(labels)), labels] = np.take_along_axis(
        scores, order[np.arange(len(labels)), rank][:, None], axis=1
    )[:, 0] + np.where(good, 1.0, 1e-6)
    scores /= scores.sum(axis=1, keepdims=True)
    ids = np.argsort(-scores, axis=1)[:, :K]
    return Predictions(
        np.arange(len(labels)) + 10_000_000,
        ids,
        np.take_along_axis(scores, ids, axis=1),
    )


@pytest.fixture(scope="module")
def val():
    rng = np.random.default_rng(1)
    n = 600
    latitude, longitude = rng.uniform(40, 50, n), rng.uniform(-4, 8, n)
    labels = rng.integers(0, N_SPECIES, n)
    group = rng.random(n)
    members = [
        _member(labels, group < 0.55, 2),  # right on 55 % of the rows
        _member(labels, group > 0.5, 3),  # right on the others (and a few in common)
        _member(labels, rng.random(n) < 0.2, 4),  # weak
    ]
    return members, labels, latitude, longitude


def _error(predictions: Predictions, labels: np.ndarray, rows: np.ndarray) -> float:
    aligned = predictions.aligned_to(np.arange(len(labels)) + 10_000_000)
    return 1 - hits(aligned.species_ids[rows], labels[rows], 30).mean()


@pytest.mark.parametrize("method", ["likelihood", "top30"])
def test_a_fitted_blend_beats_its_best_member_on_each_held_out_fold(val, method):
    members, labels, latitude, longitude = val
    ids = members[0].observation_id
    found = fit_blend(members, ids, labels, latitude, longitude, K, BlendFit(method))
    assert not found.worse_than_best_member
    check_predictions(found.val, expected_ids=ids)
    assert found.weights.sum() == pytest.approx(1) and (found.weights >= 0).all()
    folds = spatial_folds(latitude, longitude)
    assert set(folds) == {0, 1}
    for fold in (0, 1):
        held_out = np.flatnonzero(folds == fold)
        best_member = min(_error(m, labels, held_out) for m in members)
        assert _error(found.val, labels, held_out) <= best_member
    # The two complementary members share the weight; the blend beats both on all of val.
    assert found.weights[0] > 0.2 and found.weights[1] > 0.2
    assert found.in_sample_error < min(_error(m, labels, np.arange(len(labels))) for m in members)


def test_each_fold_is_blended_with_weights_that_never_saw_it(val, monkeypatch):
    members, labels, latitude, longitude = val
    seen = []
    original = blend_fit.fit_weights

    def spy(candidates, fit):
        seen.append(set(candidates.observation_id.tolist()))
        return original(candidates, fit)

    monkeypatch.setattr(blend_fit, "fit_weights", spy)
    ids = members[0].observation_id
    fit_blend(members, ids, labels, latitude, longitude, K)
    folds = spatial_folds(latitude, longitude)
    assert seen[0] == set(ids.tolist())  # the weights for test: all of val
    for fold, fitted in zip((0, 1), seen[1:], strict=True):
        assert fitted == set(ids[folds != fold].tolist())


def test_spatial_folds_keep_whole_cells():
    rng = np.random.default_rng(0)
    latitude, longitude = rng.uniform(-60, 60, 5000), rng.uniform(-180, 180, 5000)
    folds = spatial_folds(latitude, longitude)
    cells = np.floor(latitude).astype(int) * 1000 + np.floor(longitude).astype(int)
    for cell in np.unique(cells):
        assert len(set(folds[cells == cell])) == 1
    assert 0.3 < folds.mean() < 0.7


def test_the_best_single_member_is_kept_when_nothing_helps(val):
    members, labels, _, _ = val
    candidates = CandidateScores.build([members[0], members[0]], labels)
    weights = fit_weights(candidates, BlendFit("top30"))
    assert sorted(weights.tolist()) == [0.0, 1.0]


# The fit before candidate score matrices (a merge and re-sort of the members' lists for
# every trial), kept as the reference the new one must reproduce.


def _merged_error(members, weights, labels):
    used = [(m, w) for m, w in zip(members, weights, strict=True) if w > 0]
    k = max(m.k for m, _ in used)
    mixed = blend([m for m, _ in used], [w for _, w in used], k)
    return 1.0 - float(hits(mixed.species_ids, labels, KAGGLE_K).mean())


def _merged_fit(members, labels):
    """The old fit: the same search, each trial a merge and re-sort of the members' lists."""
    return coordinate_ascent(lambda weights: _merged_error(members, weights, labels), len(members))


def _random_members(seed, n_rows=300, n_species=120, ks=(40, 30, 60, 35)):
    """Members with overlapping top-K lists of different K, coarse probabilities (many
    ties, resolved by species id) and labels that no member lists on some rows."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_species, n_rows)
    members = []
    for k in ks:
        raw = np.round(rng.random((n_rows, n_species)) ** 3, 1)  # ties, the label's too
        raw[np.arange(n_rows), labels] += np.round(rng.random(n_rows) * 0.3, 1)
        ids = np.argsort(-raw, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(raw, ids, axis=1) / raw.sum(axis=1, keepdims=True)
        members.append(Predictions(np.arange(n_rows) + 20_000_000, ids, scores.astype(np.float32)))
    return members, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_candidate_scores_give_the_merged_blend_error_to_the_bit(seed):
    members, labels = _random_members(seed)
    candidates = CandidateScores.build(members, labels)
    assert (candidates.label_column < 0).any()  # some labels are listed by no member
    rng = np.random.default_rng(seed)
    for single in np.eye(len(members)):  # ties within one member's list are many
        assert candidates.error(single) == _merged_error(members, single, labels)
    for _ in range(40):
        weights = rng.random(len(members)) * (rng.random(len(members)) < 0.7)
        weights[rng.integers(len(members))] += 0.1
        weights /= weights.sum()
        assert candidates.error(weights) == _merged_error(members, weights, labels)
    rows = np.flatnonzero(rng.random(len(labels)) < 0.5)
    weights = np.array([0.2, 0.0, 0.5, 0.3])
    assert candidates.take(rows).error(weights) == _merged_error(
        [m.take(rows) for m in members], weights, labels[rows]
    )


@pytest.mark.parametrize("seed", [3, 4])
def test_fitted_weights_are_those_of_the_merged_fit(seed):
    members, labels = _random_members(seed)
    expected = _merged_fit(members, labels)
    found = fit_weights(CandidateScores.build(members, labels), BlendFit("top30"))
    assert np.array_equal(found, expected)
    assert (expected > 0).sum() > 1  # a real blend, not one member


def test_a_tie_decided_by_the_last_bit_of_the_sums_is_decided_as_blend_does():
    # 29 species well ahead; then the label (100) and species 101 compete for the 30th
    # place. Their weighted sums are equal but for the last bit, and which is larger
    # depends on the order of the additions: blend() adds the first member's share to the
    # sum of the others (np.add.reduceat), a plain left-to-right sum would tie them.
    weights = np.array([5.0, 5.0, 7.0]) / 17
    label_values = np.array([0.51, 0.91, 0.2], dtype=np.float32)
    other_values = label_values[[1, 0, 2]]
    shares = weights / weights.sum()
    label_terms = shares * label_values.astype(np.float64)
    other_terms = shares * other_values.astype(np.float64)
    in_order = [t[0] + t[1] + t[2] for t in (label_terms, other_terms)]
    as_blend = [t[0] + (t[1] + t[2]) for t in (label_terms, other_terms)]
    assert in_order[0] == in_order[1] and as_blend[0] < as_blend[1]
    leaders = np.arange(29)
    members = [
        Predictions(
            np.array([7]),
            np.r_[leaders, 100, 101][None, :],
            np.r_[np.full(29, 0.9, np.float32), label_values[m], other_values[m]][None, :],
        )
        for m in range(3)
    ]
    labels = np.array([100])
    assert _merged_error(members, weights, labels) == 1.0  # the label is 31st
    assert CandidateScores.build(members, labels).error(weights) == 1.0


def _mixture_world(true_weights, n_rows=20_000, n_species=50, seed=0):
    """Labels drawn from a mixture of random members' distributions with ``true_weights``
    (the last member gets weight 0 if the list says so): each member's probability of
    each row's label."""
    rng = np.random.default_rng(seed)
    members = rng.dirichlet(np.full(n_species, 0.3), size=(len(true_weights), n_rows))
    mixture = np.einsum("m,mns->ns", np.asarray(true_weights), members)
    labels = (mixture.cumsum(axis=1) > rng.random(n_rows)[:, None]).argmax(axis=1)
    return members[:, np.arange(n_rows), labels]


def test_likelihood_weights_recover_the_mixture_the_labels_were_drawn_from():
    label_probabilities = _mixture_world([0.6, 0.3, 0.1, 0.0])
    weights = likelihood_weights(label_probabilities)
    assert weights.sum() == pytest.approx(1) and (weights >= 0).all()
    assert weights == pytest.approx([0.6, 0.3, 0.1, 0.0], abs=0.03)
    # The maximum: moving weight from one member to another lowers the likelihood.
    best = np.log(weights @ label_probabilities).mean()
    for i, j in [(0, 1), (1, 2), (2, 0), (3, 0)]:
        moved = weights.copy()
        step = min(0.01, moved[i])
        moved[i] -= step
        moved[j] += step
        assert np.log(moved @ label_probabilities).mean() <= best + 1e-8


def test_a_label_outside_a_members_list_counts_at_the_floor():
    members, labels = _random_members(5)
    candidates = CandidateScores.build(members, labels)
    probabilities = candidates.label_probabilities()
    assert probabilities.shape == (len(members), len(labels))
    for m, member in enumerate(members):
        listed = member.species_ids == labels[:, None]
        inside = listed.any(axis=1)
        assert np.allclose(
            probabilities[m, inside],
            np.maximum(member.scores[listed].astype(np.float64), LABEL_FLOOR),
        )
        assert (probabilities[m, ~inside] == LABEL_FLOOR).all()


def test_shrink_moves_the_weights_toward_equal_ones(val):
    members, labels, _, _ = val
    candidates = CandidateScores.build(members, labels)
    fitted = fit_weights(candidates, BlendFit("likelihood"))
    shrunk = fit_weights(candidates, BlendFit("likelihood", shrink=0.5))
    assert shrunk == pytest.approx(0.5 * fitted + 0.5 / len(members))
    assert fit_weights(candidates, BlendFit("likelihood", shrink=1.0)) == pytest.approx(
        np.full(len(members), 1 / len(members))
    )
    with pytest.raises(ValueError, match="one of likelihood, top30"):
        BlendFit("em")


def _worse_case():
    """Member 0 is right on the rows of fold 0, member 1 on those of fold 1: weights fitted
    on one fold pick the member that is wrong on the other, so the cross-fitted blend
    misses where either member alone hits half the rows."""
    rng = np.random.default_rng(7)
    n = 800
    latitude, longitude = rng.uniform(40, 50, n), rng.uniform(-4, 8, n)
    folds = spatial_folds(latitude, longitude)
    labels = rng.integers(0, N_SPECIES, n)
    members = [_member(labels, folds == 0, 8), _member(labels, folds == 1, 9)]
    return members, labels, latitude, longitude


@pytest.mark.parametrize("method", ["likelihood", "top30"])
def test_a_blend_worse_than_its_best_member_says_so_and_can_stay_a_blend(method, caplog):
    members, labels, latitude, longitude = _worse_case()
    ids = members[0].observation_id
    fit = BlendFit(method, fallback=False)
    found = fit_blend(members, ids, labels, latitude, longitude, K, fit)
    n = len(labels)
    assert found.cross_fitted_error == pytest.approx(_error(found.val, labels, np.arange(n)))
    assert found.member_errors.min() < 0.6 < found.cross_fitted_error
    assert found.worse_than_best_member and not found.fell_back
    assert (found.weights > 0).sum() == 2  # still a blend
    report = found.report(["north", "south"])
    assert report["worse_than_best_member"] is True
    assert report["fell_back_to_best_member"] is False
    assert report["best_member"] == ["north", "south"][found.best_member]
    assert report["fit"] == {"method": method, "shrink": 0.0, "fallback": False}
    assert "worse than its best member" in caplog.text


@pytest.mark.parametrize("method", ["likelihood", "top30"])
def test_a_blend_worse_than_its_best_member_falls_back_to_it(method, caplog):
    members, labels, latitude, longitude = _worse_case()
    ids = members[0].observation_id
    found = fit_blend(members, ids, labels, latitude, longitude, K, BlendFit(method))
    best = found.best_member
    assert found.worse_than_best_member and found.fell_back
    assert found.weights.tolist() == np.eye(2)[best].tolist()
    assert (found.fitted_weights > 0).sum() == 2  # what the fit found, kept in the report
    member = members[best].aligned_to(ids)
    assert np.array_equal(found.val.aligned_to(ids).species_ids, member.species_ids[:, :K])
    assert _error(found.val, labels, np.arange(len(labels))) == found.member_errors[best]
    report = found.report(["north", "south"])
    assert report["fell_back_to_best_member"] is True
    assert report["weights"] == {
        name: float(w) for name, w in zip(["north", "south"], np.eye(2)[best], strict=True)
    }
    assert "falls back to that member" in caplog.text


def test_a_blend_that_beats_its_best_member_does_not_fall_back(val):
    members, labels, latitude, longitude = val
    found = fit_blend(members, members[0].observation_id, labels, latitude, longitude, K)
    assert not found.fell_back and np.array_equal(found.weights, found.fitted_weights)
