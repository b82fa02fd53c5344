"""Set selection: how many of its candidates a model's predicted set keeps, per survey.

A set task's predictions row holds K candidate species, best first, with each one's marginal
presence probability (``geolifeclef.predictions.table``). A set is a prefix of that row: the
first k_i candidates. A rule gives each row its size k_i, the same way for every model:

- ``top_k``: k_i = K_fixed (the organizers' 25), capped at the row's K. Nothing is fitted.
- ``threshold``: k_i = max(1, #(p_ij >= t)), t fitted on val to maximise the samples-averaged
  F1 (``geolifeclef.predictions.f1``) over every distinct score value, exactly: the rows'
  F1 at every prefix is computed once and the thresholds are swept in one sort of all
  the scores. The threshold is the midpoint between the best value and the next lower
  one, so that a score on new rows falls on the side it would have fallen on val.
- ``expected_f1``: k_i = argmax_k E_p[F1(first k)], the expected F1 under the model's own
  probabilities as independent labels (``f1.expected_f1_of_prefixes``; species outside its
  K taken as p = 0), at least 1, ties to the smaller k. Nothing is fitted: it trusts the
  model's calibration, which the other two need not.

:func:`choose_set_rule` picks the rule for a model on val, cross-fitted as fitted blends
are (``geolifeclef.predictions.blend_fit``): with the folds its caller passes
(``blend_fit.spatial_folds``: whole 1-degree cells, so that a fold never sees the other's
places), each rule's parameter is fitted on the other folds' rows and scored on the fold's
rows. The rule of best cross-fitted F1 wins (ties: the simpler, in the order of
``RULE_NAMES``), and its parameter is then fitted on all of val for test. The choice among
rules itself looks at val, so the winner's cross-fitted F1 is a little optimistic.
"""

from dataclasses import dataclass

import numpy as np

from geolifeclef.predictions.f1 import Sets, expected_f1_of_prefixes, f1_of_prefixes
from geolifeclef.predictions.table import PROBABILITY_TOLERANCE

RULE_NAMES = ("top_k", "threshold", "expected_f1")
"""The rules, simplest first: the order ties are broken in."""
UNFITTED = ("top_k", "expected_f1")
"""The rules that fit nothing on val."""
DEFAULT_TOP_K = 25
"""The organizers' fixed set size."""


def _check_candidates(scores: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must be 2-d (rows x K candidates, K >= 1), got {scores.shape}")
    if ids is not None and np.shape(ids) != scores.shape:
        raise ValueError(f"candidate ids of shape {np.shape(ids)} for scores of {scores.shape}")
    slack = PROBABILITY_TOLERANCE  # what the predictions table lets through
    bad = ~np.isfinite(scores) | (scores < -slack) | (scores > 1 + slack)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise ValueError(f"row {row}: a score is not a probability in [0, 1]")
    rising = (np.diff(scores, axis=1) > 0).any(axis=1)
    if rising.any():
        raise ValueError(
            f"row {int(np.argmax(rising))}: scores are not sorted best first (non-increasing), "
            "as the predictions table holds them"
        )
    return np.clip(scores.astype(np.float64), 0.0, 1.0)


@dataclass(frozen=True)
class SetRule:
    """A rule that gives each predictions row its set size (module docstring).

    ``parameter``: the fixed K of ``top_k`` (int), the threshold of ``threshold``, None for
    ``expected_f1``."""

    name: str
    parameter: float | None = None

    def __post_init__(self) -> None:
        if self.name not in RULE_NAMES:
            raise ValueError(f"unknown set rule {self.name!r}; the rules: {', '.join(RULE_NAMES)}")
        if self.name == "top_k" and not (
            isinstance(self.parameter, int | np.integer) and self.parameter >= 1
        ):
            raise ValueError(f"top_k needs a whole K >= 1, got {self.parameter!r}")
        if self.name == "threshold" and not (
            isinstance(self.parameter, float | int) and np.isfinite(self.parameter)
        ):
            raise ValueError(f"threshold needs a finite threshold, got {self.parameter!r}")
        if self.name == "expected_f1" and self.parameter is not None:
            raise ValueError(f"expected_f1 takes no parameter, got {self.parameter!r}")

    def sizes(self, scores: np.ndarray) -> np.ndarray:
        """(n,) int64: how many of each row's candidates the set keeps, 1..K; ``scores``
        (n, K): each candidate's presence probability, best first."""
        scores = _check_candidates(scores)
        n, k = scores.shape
        if self.name == "top_k":
            return np.full(n, min(k, int(self.parameter)), dtype=np.int64)
        if self.name == "threshold":
            return np.maximum(1, np.count_nonzero(scores >= self.parameter, axis=1))
        expected = expected_f1_of_prefixes(scores)
        return 1 + np.argmax(expected[:, 1:], axis=1)  # the first maximum: the smaller k

    def as_dict(self) -> dict:
        return {"name": self.name, "parameter": self.parameter}


def fit_threshold(scores: np.ndarray, prefix_f1: np.ndarray) -> float:
    """The threshold t of best mean F1 over rows of k_i = max(1, #(p_ij >= t)), among every
    distinct score value (exactly), given each row's F1 at every prefix (``prefix_f1``
    (n, K + 1), ``f1.f1_of_prefixes``). Equal F1: the larger threshold (smaller sets).

    Sweep: lowering t past a score p_ij (j >= 2, 1-based) grows row i from j - 1 to j
    candidates, changing the summed F1 by F_i(j) - F_i(j - 1); sorting every such event
    by p and summing the changes gives the total at each distinct value at once."""
    scores = _check_candidates(scores)
    n, k = scores.shape
    if k == 1 or n == 0:
        return 1.0  # every row keeps its one candidate whatever t is
    values = scores[:, 1:].reshape(-1)
    gains = (prefix_f1[:, 2:] - prefix_f1[:, 1:-1]).reshape(-1)
    order = np.argsort(-values, kind="stable")
    values, totals = values[order], np.cumsum(gains[order])
    last = np.append(values[1:] != values[:-1], True)  # the last event of each value
    distinct, totals = values[last], totals[last]
    best = int(np.argmax(totals))
    if totals[best] <= 0:  # no value beats every row keeping one candidate
        return float(np.nextafter(distinct[0], np.inf))
    if best == len(distinct) - 1:
        return float(distinct[best])
    return float((distinct[best] + distinct[best + 1]) / 2.0)


def fit_rule(name: str, scores: np.ndarray, prefix_f1: np.ndarray, top_k: int) -> SetRule:
    """Rule ``name`` fitted on these rows (``prefix_f1``: their F1 at every prefix)."""
    if name == "top_k":
        return SetRule("top_k", int(top_k))
    if name == "threshold":
        return SetRule("threshold", fit_threshold(scores, prefix_f1))
    return SetRule(name)


def cross_fitted_sizes(
    name: str,
    scores: np.ndarray,
    prefix_f1: np.ndarray,
    folds: np.ndarray,
    top_k: int = DEFAULT_TOP_K,
) -> tuple[np.ndarray, list[SetRule]]:
    """Each row's set size under rule ``name`` fitted on the rows of the other folds (all
    rows when there is one fold), and the rule fitted for each fold (ascending fold)."""
    scores = _check_candidates(scores)
    folds = np.asarray(folds)
    if folds.shape != (len(scores),):
        raise ValueError(f"{len(folds)} fold numbers for {len(scores)} rows")
    labels = np.unique(folds)
    sizes = np.zeros(len(scores), dtype=np.int64)
    if name in UNFITTED:  # the same sizes whatever the fold
        rule = fit_rule(name, scores, prefix_f1, top_k)
        return rule.sizes(scores), [rule] * len(labels)
    rules = []
    for fold in labels:
        scored = folds == fold
        fitting = ~scored if len(labels) > 1 else scored
        rule = fit_rule(name, scores[fitting], prefix_f1[fitting], top_k)
        sizes[scored] = rule.sizes(scores[scored])
        rules.append(rule)
    return sizes, rules


def choose_set_rule(
    ids: np.ndarray,
    scores: np.ndarray,
    truth: Sets,
    folds: np.ndarray,
    top_k: int = DEFAULT_TOP_K,
    rules: tuple[str, ...] = RULE_NAMES,
) -> tuple[SetRule, dict]:
    """The rule among ``rules`` of best cross-fitted val F1 (module docstring), its
    parameter fitted on all val rows, and the report (JSON-able) that says how each rule
    fared: cross-fitted F1 and mean set size, parameter per fold and on all of val,
    in-sample F1 (optimistic) and the choice.

    ``ids``, ``scores`` (n, K): a model's val predictions rows (candidates best first, each
    one's presence probability); ``truth``: the val rows' true sets; ``folds`` (n,): each
    row's fold (``blend_fit.spatial_folds`` of its coordinates)."""
    unknown = [name for name in rules if name not in RULE_NAMES]
    if unknown or not rules:
        raise ValueError(
            f"unknown set rules {unknown or '(none given)'}; the rules: {', '.join(RULE_NAMES)}"
        )
    scores = _check_candidates(scores, ids)
    prefix_f1 = f1_of_prefixes(ids, truth)
    rows = np.arange(len(scores))
    report: dict = {"rows": len(scores), "folds": len(np.unique(folds)), "top_k": int(top_k)}
    per_rule = {}
    best_name, best_f1 = None, -np.inf
    for name in (name for name in RULE_NAMES if name in rules):  # simplest first
        sizes, fold_rules = cross_fitted_sizes(name, scores, prefix_f1, folds, top_k)
        fitted = fit_rule(name, scores, prefix_f1, top_k)
        in_sample = sizes if name in UNFITTED else fitted.sizes(scores)
        cross_fitted = float(prefix_f1[rows, sizes].mean()) if len(rows) else float("nan")
        per_rule[name] = {
            "cross_fitted_f1": round(cross_fitted, 6),
            "cross_fitted_mean_size": round(float(sizes.mean()), 3) if len(rows) else None,
            "fold_parameters": [rule.parameter for rule in fold_rules],
            "parameter": fitted.parameter,
            "in_sample_f1": round(float(prefix_f1[rows, in_sample].mean()), 6)
            if len(rows)
            else None,
        }
        if cross_fitted > best_f1:  # strictly better: a tie keeps the simpler rule
            best_name, best_f1, chosen = name, cross_fitted, fitted
    if best_name is None:  # no rows: nothing to choose by
        best_name = next(name for name in RULE_NAMES if name in rules)
        chosen = fit_rule(best_name, scores, prefix_f1, top_k)
    report["rules"] = per_rule
    report["chosen"] = chosen.as_dict()
    report["note"] = (
        "each rule's parameter is fitted on the other spatial folds of val and scored on the "
        "fold's rows (cross_fitted_f1); the chosen rule's parameter is fitted on all of val; "
        "in_sample_f1 is optimistic"
    )
    return chosen, report


def apply_rule(
    rule: SetRule, ids: np.ndarray, scores: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Each row's set under ``rule``: the CSR pair ``(indptr, indices)`` (each row's
    species best first) and the sizes (n,)."""
    ids = np.asarray(ids)
    sizes = rule.sizes(_check_candidates(scores, ids))
    kept = np.arange(ids.shape[1]) < sizes[:, None]
    indptr = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    return (indptr, ids[kept].astype(np.int64)), sizes
