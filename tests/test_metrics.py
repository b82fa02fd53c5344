"""Top-k metrics: hand-computed cases, the organizers' formula, chunked = in memory; the
registry of metrics that every view reads."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geolifeclef.evaluation.leaderboard_view import HEADERS, IN_MODEL_CELL, leaderboard_html
from geolifeclef.evaluation.scores import (
    LEADERBOARD_COLUMNS,
    build_leaderboard,
    leaderboard_markdown,
)
from geolifeclef.predictions.metrics import (
    METRICS,
    SET_METRICS,
    Metric,
    check_distinct,
    evaluate_sets,
    expected_top_k_error,
    figures,
    gap_closed,
    macro_top_k_error,
    top_k,
    top_k_chunked,
    top_k_error,
    top_k_of_chunks,
)


def organizers_top_k_set(scores: np.ndarray, k: int) -> np.ndarray:
    """``predict_top_k_set`` of the GLC starter code: argpartition, ties arbitrary."""
    n_classes = scores.shape[1]
    return np.argpartition(scores, n_classes - k, axis=1)[:, n_classes - k :]


def organizers_error_from_sets(labels: np.ndarray, sets: np.ndarray) -> float:
    """``top_k_error_rate_from_sets`` of the GLC starter code."""
    pointwise_accuracy = np.sum(sets == labels[:, None], axis=1)
    return float(1 - np.mean(pointwise_accuracy))


# -- hand-computed ----------------------------------------------------------------------


def test_top_k_error_by_hand():
    predicted = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    labels = np.array([2, 4, 0])
    assert top_k_error(predicted, labels) == pytest.approx(1 / 3)
    assert top_k_error(predicted, labels, k=1) == pytest.approx(2 / 3)
    assert top_k_error(predicted, labels, k=2) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="k=4"):
        top_k_error(predicted, labels, k=4)


def test_macro_error_weights_each_species_equally():
    predicted = np.array([[1, 9], [8, 9], [2, 9]])
    labels = np.array([1, 1, 2])  # species 1: 1 of 2 found, species 2: found
    assert top_k_error(predicted, labels) == pytest.approx(1 / 3)
    assert macro_top_k_error(predicted, labels) == pytest.approx((0.5 + 0.0) / 2)


def test_top_k_orders_by_score_then_smaller_id():
    scores = np.array([[0.1, 0.5, 0.5, 0.2], [0.0, 0.0, 0.0, 0.0]])
    ids, best = top_k(scores, 2)
    assert ids.tolist() == [[1, 2], [0, 1]]
    assert best.tolist() == [[0.5, 0.5], [0.0, 0.0]]
    # Columns are species 40, 30, 20, 10: the tie goes to the smaller species id.
    ids, _ = top_k(scores, 3, species_ids=np.array([40, 30, 20, 10]))
    assert ids.tolist() == [[20, 30, 10], [10, 20, 30]]


def test_top_k_refuses_nan_and_too_large_k():
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[0.1, np.nan]]), 1)
    with pytest.raises(ValueError, match="k=3"):
        top_k(np.zeros((1, 2)), 3)


def test_expected_error_and_gap_by_hand():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    predicted = np.array([[0, 1], [0, 1]])
    assert expected_top_k_error(probabilities, predicted) == pytest.approx(1 - (0.8 + 0.2) / 2)
    assert gap_closed(0.5, 0.9, 0.1) == pytest.approx(0.5)
    assert np.isnan(gap_closed(0.5, 0.1, 0.1))


def test_evaluate_sets_per_bucket_by_hand():
    predicted = np.tile(np.arange(30), (4, 1))
    labels = np.array([0, 1, 40, 41])
    bucket = np.array(["head", "head", "tail", "tail"])
    metrics = evaluate_sets(predicted, labels, bucket, ("head", "medium", "tail"))
    assert metrics["top30_error"] == 0.5
    assert metrics["top1_error"] == 0.75
    assert metrics["buckets"]["head"]["top30_error"] == 0.0
    assert metrics["buckets"]["tail"]["top30_error"] == 1.0
    assert metrics["buckets"]["medium"]["n_observations"] == 0
    assert np.isnan(metrics["buckets"]["medium"]["top30_error"])


# -- the registry: one entry per metric, read by every view ------------------------------


def test_every_set_metric_is_registered_once_and_computed():
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    assert {m.name for m in SET_METRICS} <= set(names)
    metrics = evaluate_sets(np.tile(np.arange(30), (2, 1)), np.array([0, 40]))
    assert {m.name for m in SET_METRICS} <= set(metrics)
    assert metrics["macro_top30_error"] == 0.5
    with pytest.raises(ValueError, match="direction"):
        Metric("x", "x", "smaller", "")


def test_figures_reads_each_metric_where_metrics_json_keeps_it():
    record = {
        "top30_error": 0.2,
        "buckets": {"tail": {"top30_error": 0.7}},
        "expected_top30_error": {"model": 0.18, "bayes": 0.1},
    }
    found = figures(record)
    assert set(found) == {m.name for m in METRICS}
    assert (found["top30_error"], found["tail_top30_error"]) == (0.2, 0.7)
    assert found["expected_top30_error"] == 0.18
    assert found["head_top30_error"] is None and found["gap_closed"] is None


def leaderboard_of_one_model():
    buckets = {b: {"top30_error": 0.2} for b in ("head", "medium", "tail")}
    record = {"model": "knn", "kind": "baseline", "n_observations": 10, "top30_error": 0.2}
    record |= {"macro_top30_error": 0.3, "buckets": buckets, "improvement_over_constant": 0.1}
    return build_leaderboard([record])


def test_every_leaderboard_column_has_an_html_header_and_a_direction():
    assert [c for c in LEADERBOARD_COLUMNS if c not in HEADERS] == sorted(IN_MODEL_CELL)
    for metric in METRICS:
        assert HEADERS[metric.name][0].endswith(metric.arrow)
    assert HEADERS["improvement_over_constant"][0].endswith("↑")
    frame = leaderboard_of_one_model()
    assert list(frame.columns) == LEADERBOARD_COLUMNS
    page = leaderboard_html(frame)
    assert page.count("<th ") == len(LEADERBOARD_COLUMNS) - len(IN_MODEL_CELL)
    assert "| top30_error ↓ |" in leaderboard_markdown(frame)


def test_a_column_without_a_header_is_refused_not_dropped():
    frame = leaderboard_of_one_model().assign(brier_score=0.1)
    with pytest.raises(ValueError, match=r"\['brier_score'\] have no header.*METRICS"):
        leaderboard_html(frame)


def test_sets_with_a_repeated_id_are_refused():
    with pytest.raises(ValueError, match="row 1 repeats"):
        check_distinct(np.array([[1, 2, 3], [4, 4, 5]]))


# -- against the organizers' definition ----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    width=st.integers(1, 80),
    k_fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_equals_the_organizers_formula_on_random_scores(n, width, k_fraction, seed):
    rng = np.random.default_rng(seed)
    k = max(1, int(round(k_fraction * width)))
    scores = rng.random((n, width))  # continuous: no ties, so the sets are unique
    labels = rng.integers(0, width, n)
    ours, _ = top_k(scores, k)
    theirs = organizers_top_k_set(scores, k)
    assert (np.sort(ours, axis=1) == np.sort(theirs, axis=1)).all()
    assert top_k_error(ours, labels) == pytest.approx(organizers_error_from_sets(labels, theirs))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 30),
    width=st.integers(2, 60),
    k_fraction=st.floats(0.0, 1.0),
    levels=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_ties_give_a_valid_top_k_set_with_the_smallest_tied_ids(n, width, k_fraction, levels, seed):
    rng = np.random.default_rng(seed)
    k = max(1, int(round(k_fraction * width)))
    scores = rng.integers(0, levels, (n, width)).astype(np.float32)  # many ties
    labels = rng.integers(0, width, n)
    ids, best = top_k(scores, k)
    check_distinct(ids)
    assert (np.diff(best, axis=1) <= 0).all()  # best first
    for row in range(n):
        chosen = set(ids[row].tolist())
        excluded = [j for j in range(width) if j not in chosen]
        if excluded:
            assert best[row].min() >= scores[row, excluded].max()
            # At the threshold, the chosen tied ids are the smallest ones.
            tied = [j for j in range(width) if scores[row, j] == best[row].min()]
            assert sorted(chosen & set(tied)) == tied[: len(chosen & set(tied))]
    # With distinct ids the organizers' formula and "label not in the set" agree.
    assert top_k_error(ids, labels) == pytest.approx(organizers_error_from_sets(labels, ids))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 50),
    width=st.integers(1, 40),
    chunk_rows=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_chunked_equals_in_memory(n, width, chunk_rows, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, (n, width)).astype(np.float32)
    k = min(width, 5)
    expected = top_k(scores, k)
    chunked = top_k_chunked(scores, k, chunk_rows=chunk_rows)
    assert np.array_equal(expected[0], chunked[0])
    assert np.array_equal(expected[1], chunked[1])


def test_chunked_on_a_memory_map_equals_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random((1_000, 300)).astype(np.float32)
    path = tmp_path / "scores.f32"
    scores.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=scores.shape)
    species_ids = rng.permutation(10_000)[:300]
    expected = top_k(scores, 30, species_ids)
    for result in (
        top_k_chunked(mapped, 30, species_ids, chunk_rows=77),
        top_k_of_chunks((mapped[i : i + 128] for i in range(0, 1_000, 128)), 30, species_ids),
    ):
        assert np.array_equal(expected[0], result[0])
        assert np.array_equal(expected[1], result[1])
