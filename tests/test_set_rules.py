"""Set selection: each rule's sizes, the threshold's fit against every threshold tried one by
one, and the choice of a rule cross-fitted on spatial folds of val."""

import json

import numpy as np
import pytest

from geolifeclef.predictions import f1
from geolifeclef.predictions.blend_fit import spatial_folds
from geolifeclef.predictions.set_rules import (
    RULE_NAMES,
    SetRule,
    apply_rule,
    choose_set_rule,
    cross_fitted_sizes,
    fit_threshold,
)


def candidates(rng, n: int, k: int, species: int = 400, calibrated: bool = True):
    """Rows of K candidates (best first) with presence probabilities, and true sets drawn
    from them (``calibrated``) or from probabilities the scores overstate."""
    richness = rng.uniform(2, 30, (n, 1))
    raw = rng.pareto(1.5, (n, k)) + 0.05
    true_p = np.minimum(1.0, raw / raw.sum(axis=1, keepdims=True) * richness)
    scores = true_p if calibrated else np.sqrt(true_p)
    order = np.argsort(-scores, axis=1, kind="stable")
    scores = np.take_along_axis(scores, order, axis=1)
    true_p = np.take_along_axis(true_p, order, axis=1)
    ids = np.stack([rng.choice(species, k, replace=False) for _ in range(n)])
    present = rng.random((n, k)) < true_p
    present[~present.any(axis=1), 0] = True  # surveys hold at least one species
    truth = [ids[i, present[i]] for i in range(n)]
    return ids, scores, truth


def mean_f1(rule: SetRule, ids, scores, truth) -> float:
    sets, _ = apply_rule(rule, ids, scores)
    return f1.samples_f1(sets, truth)


def test_sizes_of_each_rule():
    scores = np.array([[0.9, 0.6, 0.5, 0.1], [0.3, 0.2, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(SetRule("top_k", 25).sizes(scores), [4, 4, 4])
    np.testing.assert_array_equal(SetRule("top_k", 2).sizes(scores), [2, 2, 2])
    np.testing.assert_array_equal(SetRule("threshold", 0.2).sizes(scores), [3, 3, 1])
    np.testing.assert_array_equal(SetRule("threshold", 0.95).sizes(scores), [1, 1, 1])
    # the model's own expected F1: a row it believes in wholly keeps what it is sure of;
    # a row of zeros keeps 1 (ties: the smaller size)
    sure = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(SetRule("expected_f1").sizes(sure), [3, 1])


def test_scores_rounded_past_one_count_as_one():
    """The predictions table lets a blend's float32 sums exceed 1 by up to 1e-3."""
    rounded = np.array([[1.0004, 1.0004, 0.02], [0.6, 0.1, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(
        SetRule("expected_f1").sizes(rounded),
        SetRule("expected_f1").sizes(np.clip(rounded, 0, 1)),
    )
    with pytest.raises(ValueError, match="row 0: a score is not a probability"):
        SetRule("expected_f1").sizes(rounded + 0.01)


def test_expected_f1_rule_takes_the_exact_best_prefix():
    rng = np.random.default_rng(1)
    _, scores, _ = candidates(rng, 30, 15)
    sizes = SetRule("expected_f1").sizes(scores)
    exact = np.stack(
        [f1.exact_expected_f1(scores, list(np.tile(np.arange(k), (30, 1)))) for k in range(1, 16)],
        axis=1,
    )
    np.testing.assert_array_equal(sizes, 1 + exact.argmax(axis=1))


def test_fitted_threshold_is_the_best_of_every_threshold_tried():
    rng = np.random.default_rng(2)
    ids, scores, truth = candidates(rng, 300, 30, calibrated=False)
    scores = np.round(scores, 2)  # many equal scores, within and across rows
    prefix_f1 = f1.f1_of_prefixes(ids, truth)
    t = fit_threshold(scores, prefix_f1)
    tried = [
        mean_f1(SetRule("threshold", float(v)), ids, scores, truth)
        for v in np.unique(np.append(scores, 2.0))
    ]
    assert mean_f1(SetRule("threshold", t), ids, scores, truth) == pytest.approx(
        max(tried), abs=1e-12
    )
    # between two score values, so that a score equal to either falls where it fell on val
    assert t not in set(scores.ravel().tolist())


def test_threshold_above_every_score_when_one_candidate_is_best():
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    scores = np.array([[0.9, 0.5, 0.4], [0.8, 0.7, 0.1]])
    t = fit_threshold(scores, f1.f1_of_prefixes(ids, [np.array([1]), np.array([4])]))
    np.testing.assert_array_equal(SetRule("threshold", t).sizes(scores), [1, 1])


def test_choice_is_cross_fitted_on_the_folds():
    rng = np.random.default_rng(3)
    n = 900
    ids, scores, truth = candidates(rng, n, 60, calibrated=False)
    folds = spatial_folds(rng.uniform(42, 50, n), rng.uniform(-4, 8, n))
    rule, report = choose_set_rule(ids, scores, truth, folds)
    json.dumps(report)  # the leaderboard's file
    assert report["rows"] == n and report["folds"] == 2
    assert list(report["rules"]) == list(RULE_NAMES)
    # the threshold's cross-fitted F1: fitted on one fold, scored on the other, by hand
    prefix_f1 = f1.f1_of_prefixes(ids, truth)
    sizes = np.zeros(n, dtype=int)
    for fold in (0, 1):
        t = fit_threshold(scores[folds != fold], prefix_f1[folds != fold])
        assert report["rules"]["threshold"]["fold_parameters"][fold] == t
        sizes[folds == fold] = SetRule("threshold", t).sizes(scores[folds == fold])
    assert report["rules"]["threshold"]["cross_fitted_f1"] == pytest.approx(
        prefix_f1[np.arange(n), sizes].mean(), abs=1e-6
    )
    np.testing.assert_array_equal(
        cross_fitted_sizes("threshold", scores, prefix_f1, folds)[0], sizes
    )
    # the winner has the best cross-fitted F1, its parameter refitted on all of val
    best = max(report["rules"], key=lambda name: report["rules"][name]["cross_fitted_f1"])
    assert rule.name == best == report["chosen"]["name"]
    assert rule.parameter == report["rules"][best]["parameter"]
    if best == "threshold":
        assert rule.parameter == fit_threshold(scores, prefix_f1)


def test_overconfident_scores_lose_to_a_fitted_threshold_and_calibrated_ones_win():
    rng = np.random.default_rng(4)
    n = 1200
    folds = spatial_folds(rng.uniform(42, 50, n), rng.uniform(-4, 8, n))
    ids, scores, truth = candidates(rng, n, 60, calibrated=False)
    rule, report = choose_set_rule(ids, scores, truth, folds)
    figures = {name: r["cross_fitted_f1"] for name, r in report["rules"].items()}
    assert rule.name == "threshold", figures
    ids, scores, truth = candidates(rng, n, 60, calibrated=True)
    rule, report = choose_set_rule(ids, scores, truth, folds)
    figures = {name: r["cross_fitted_f1"] for name, r in report["rules"].items()}
    assert rule.name == "expected_f1", figures


def test_a_tie_keeps_the_simpler_rule():
    """Every truth is the first 3 candidates and the scores split there: top 3 and the
    threshold both score 1."""
    rng = np.random.default_rng(5)
    n = 200
    ids = np.stack([rng.choice(100, 8, replace=False) for _ in range(n)])
    scores = np.tile([0.9, 0.9, 0.9, 0.2, 0.1, 0.1, 0.0, 0.0], (n, 1))
    truth = list(ids[:, :3])
    folds = np.arange(n) % 2
    rule, report = choose_set_rule(ids, scores, truth, folds, top_k=3)
    assert report["rules"]["top_k"]["cross_fitted_f1"] == 1.0
    assert report["rules"]["threshold"]["cross_fitted_f1"] == 1.0
    assert rule == SetRule("top_k", 3)
    rule, _ = choose_set_rule(ids, scores, truth, folds, rules=("expected_f1", "threshold"))
    assert rule.name == "threshold"


def test_apply_rule_gives_prefixes_best_first():
    ids = np.array([[5, 9, 2], [7, 1, 3]])
    scores = np.array([[0.8, 0.4, 0.1], [0.3, 0.2, 0.1]])
    (indptr, indices), sizes = apply_rule(SetRule("threshold", 0.35), ids, scores)
    np.testing.assert_array_equal(sizes, [2, 1])
    np.testing.assert_array_equal(indptr, [0, 2, 3])
    np.testing.assert_array_equal(indices, [5, 9, 7])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SetRule("top_25"), "unknown set rule 'top_25'; the rules: top_k, threshold"),
        (lambda: SetRule("top_k", 2.5), "top_k needs a whole K >= 1"),
        (lambda: SetRule("expected_f1", 0.3), "expected_f1 takes no parameter"),
        (
            lambda: SetRule("top_k", 3).sizes(np.array([[0.5, 0.1], [0.2, 0.3]])),
            "row 1: scores are not sorted best first",
        ),
        (
            lambda: SetRule("top_k", 3).sizes(np.array([[0.5, 0.1], [1.2, 0.3]])),
            r"row 1: a score is not a probability in \[0, 1\]",
        ),
        (
            lambda: choose_set_rule(
                np.array([[1]]), np.array([[0.5]]), [np.array([1])], np.array([0]), rules=("x",)
            ),
            r"unknown set rules \['x'\]",
        ),
    ],
)
def test_bad_rules_and_scores_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
