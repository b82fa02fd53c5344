"""Fitted blends: blend weights chosen on val, scored honestly.

A fixed blend (config ``blends``) averages models with weights typed by hand; a fitted
blend (config ``fitted_blends``) fits them on val, in one of two ways (``BlendFit.method``):

- ``likelihood`` (the default): the weights of the mixture of the members' probabilities
  that give val's labels the highest likelihood (EM; a label outside a member's top K gets
  ``LABEL_FLOOR``). A smooth, concave objective: every row counts, by how much each member
  believed in its label, so the weights move little from one sample of val to another.
- ``top30``: coordinate ascent on the val top-30 error, the metric itself: start from the
  best member alone, then repeatedly move a share of the weight to one member (or away
  from it) while that lowers the error. A step function of the weights, decided by the
  few rows whose label sits near the 30th place: on a small val it fits their noise (on
  the demo it was never better than equal weights, bench/README.md "Blends over seeds").

Either may be shrunk toward equal weights (``BlendFit.shrink``). A weight chosen on the
rows it is scored on flatters the blend, so the val predictions of a fitted blend are
cross-fitted: val is cut into two folds by 1-degree cells (neighbours share species, so a
fold must not see the other fold's places), each fold is blended with the weights fitted
on the other, and that is what the leaderboard scores. The test predictions use weights
fitted on all of val.

A blend whose cross-fitted val error is worse than its best member's says so
(``FittedBlend.worse_than_best_member``, in the log and weights.json) and, with
``BlendFit.fallback`` (the default), becomes that member: weight 1, its val and test
predictions. On the demo a blend of weak and strong members lost to its strongest member
on one world in three, whatever the weights' fit; held-out evidence that blending hurts
is what the fallback follows (bench/README.md, "Blends over seeds"). The choice between
the two uses val, so the fallen-back blend's val error is that of the better of two: a
little optimistic, as any selection on val.

Each member's probabilities over the candidate species of each row are gathered once
(``CandidateScores``); a trial is a dense weighted sum of them and a rank check of the label,
not a merge and re-sort of the members' lists (bench/bench_blend_fit.py).
"""

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from geolifeclef.predictions.metrics import KAGGLE_K, hits, ranking_error
from geolifeclef.predictions.table import Predictions, blend
from geolifeclef.settings.families import BlendFit
from geolifeclef.settings.sweeps import resolve_selectors

log = logging.getLogger(__name__)

SHIFTS = (0.5, 0.25, 0.1, 0.05)
"""Shares of the weight a step moves to or from one member, coarse to fine."""
FOLD_CELL_DEGREES = 1.0
LABEL_FLOOR = 1e-6
"""The probability a member gives a label outside its top K, in the likelihood: small
(17,037 species share what the top K leave) but not 0, which would rule the member out
of every row it missed."""
DEFAULT_FIT = BlendFit()
METRIC_WORDS = {"top30_error": "top-30 error", "log_loss": "log loss"}
"""A fitted blend's error, in a log line's words."""
ROWS_PER_PASS = 256
"""Rows blended at once in a trial: work arrays that stay in the CPU cache (1 MB each at
500 candidates a row; 256 rows ran 1.8x faster than 1,024), whatever the size of val."""


@dataclass(frozen=True)
class CandidateScores:
    """Each member's probability of every candidate species of every row, built once.

    The candidates of a row are the union of the members' top-K lists (ascending species
    id, padded). A trial blend is then a dense weighted sum of these matrices and a check of
    the label's rank, instead of a merge and re-sort of every member's lists (the blend of
    ``geolifeclef.predictions.table.blend``, whose results it reproduces exactly).
    """

    observation_id: np.ndarray
    species: np.ndarray
    """(rows, width) candidate species ids; padding columns are listed by no member."""
    scores: np.ndarray
    """(members, rows, width) float32: a member's probability of the candidate, 0 where
    its list lacks it."""
    listed: np.ndarray
    """(rows, width) bit m set where member m lists the candidate."""
    label_column: np.ndarray
    """(rows,) the label's column among the candidates, -1 where no member lists it."""
    labels: np.ndarray
    ks: tuple[int, ...]

    @classmethod
    def build(cls, members: list[Predictions], labels: np.ndarray) -> "CandidateScores":
        """From ``members`` (the same observations, rows in the same order) and the
        rows' labels."""
        if len(members) > 63:
            raise ValueError(f"{len(members)} members; a fitted blend takes at most 63")
        labels = np.asarray(labels, dtype=np.int64)
        n = len(labels)
        for member in members[1:]:
            if not np.array_equal(member.observation_id, members[0].observation_id):
                raise ValueError("the members' rows are not the same observations in order")
        ids = np.concatenate([m.species_ids.astype(np.int64) for m in members], axis=1)
        member_of = np.repeat(np.arange(len(members)), [m.k for m in members])
        order = np.argsort(ids, axis=1, kind="stable")
        ordered = np.take_along_axis(ids, order, axis=1)
        new = np.ones(ordered.shape, dtype=bool)
        new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        column_sorted = np.cumsum(new, axis=1) - 1
        column = np.empty_like(column_sorted)
        np.put_along_axis(column, order, column_sorted, axis=1)
        width = int(column_sorted[:, -1].max(initial=-1)) + 1 if n else 0
        species = np.full((n, width), np.iinfo(np.int64).max, dtype=np.int64)
        rows = np.arange(n)[:, None]
        species[rows, column] = ids
        scores = np.zeros((len(members), n, width), dtype=np.float32)
        listed = np.zeros((n, width), dtype=np.min_scalar_type(2 ** len(members) - 1))
        for m, member in enumerate(members):
            where = column[:, member_of == m]
            scores[m][rows, where] = member.scores
            listed[rows, where] |= listed.dtype.type(1 << m)
        found = species == labels[:, None]
        label_column = np.where(found.any(axis=1), found.argmax(axis=1), -1)
        return cls(
            members[0].observation_id,
            species,
            scores,
            listed,
            label_column,
            labels,
            tuple(m.k for m in members),
        )

    def take(self, rows: np.ndarray) -> "CandidateScores":
        return CandidateScores(
            self.observation_id[rows],
            self.species[rows],
            self.scores[:, rows],
            self.listed[rows],
            self.label_column[rows],
            self.labels[rows],
            self.ks,
        )

    def error(self, weights: np.ndarray) -> float:
        """Top-30 error of the blend with ``weights`` (one per member, >= 0, some > 0):
        that of ``blend`` of the members of positive weight, to the last bit."""
        used = np.flatnonzero(np.asarray(weights) > 0)
        k = max(self.ks[m] for m in used)
        if k < KAGGLE_K:
            raise ValueError(f"k={KAGGLE_K} but only {k} ids per row")
        # Normalised as blend() normalises them, so that the sums agree to the bit.
        shares = np.asarray([weights[m] for m in used], dtype=np.float64)
        shares /= shares.sum()
        n = len(self.labels)
        hit = np.zeros(n, dtype=bool)
        # Work arrays reused from pass to pass (fresh large arrays cost page faults).
        work = np.empty((4, min(n, ROWS_PER_PASS), self.species.shape[1]))
        for start in range(0, n, ROWS_PER_PASS):
            rows = slice(start, start + ROWS_PER_PASS)
            hit[rows] = self._hits(rows, used, shares, work)
        return 1.0 - float(hit.mean()) if n else float("nan")

    def _hits(
        self, rows: slice, used: np.ndarray, shares: np.ndarray, work: np.ndarray
    ) -> np.ndarray:
        """Whether each row's label is in the top 30 of the blend (ranked as blend() ranks:
        higher probability first, then smaller species id)."""
        listed = self.listed[rows]
        first, rest, value, later = work[:, : len(listed)]
        first.fill(0.0)
        rest.fill(0.0)
        seen = np.zeros(listed.shape, dtype=bool)
        # blend() sums a candidate's weighted probabilities with np.add.reduceat in member
        # order, which adds the first to the (sequential) sum of the others: done so here,
        # with products by masks (masked ufuncs, where=, are several times slower).
        for m, share in zip(used, shares, strict=True):
            np.multiply(self.scores[m, rows], share, out=value)  # in float64; 0 if unlisted
            np.multiply(value, seen, out=later)
            rest += later
            first += np.subtract(value, later, out=value)  # where no earlier member lists it
            seen |= (listed & listed.dtype.type(1 << int(m))) != 0
        blended = np.add(first, rest, out=first)
        column = self.label_column[rows]
        index = np.arange(len(listed))
        safe = np.maximum(column, 0)
        labelled = (column >= 0) & seen[index, safe]
        label_score = blended[index, safe][:, None]
        ahead = np.count_nonzero(blended > label_score, axis=1)
        # Ties with the label (itself, equal sums, or 0 = not a candidate) are few: ranked
        # by species id, among the candidates, on those rows only.
        tied = np.flatnonzero(np.count_nonzero(blended == label_score, axis=1) > 1)
        if len(tied):
            before = self.species[rows][tied] < self.labels[rows][tied, None]
            ties = (blended[tied] == label_score[tied]) & before & seen[tied]
            ahead[tied] += np.count_nonzero(ties, axis=1)
        return labelled & (ahead < KAGGLE_K)

    def label_probabilities(self) -> np.ndarray:
        """(members, rows) the probability each member gives each row's label,
        ``LABEL_FLOOR`` where its list lacks it."""
        rows = np.arange(len(self.labels))
        column = np.maximum(self.label_column, 0)
        found = self.scores[:, rows, column].astype(np.float64)
        found[:, self.label_column < 0] = 0.0
        return np.maximum(found, LABEL_FLOOR)


def fit_weights(candidates: CandidateScores, fit: BlendFit = DEFAULT_FIT) -> np.ndarray:
    """Weights (summing to 1, one per member) fitted on the rows of ``candidates`` as
    ``fit`` says."""
    n = len(candidates.ks)
    if fit.method == "likelihood":
        weights = likelihood_weights(candidates.label_probabilities())
    else:  # never worse than the best single member on these rows
        weights = coordinate_ascent(candidates.error, n)
    return shrunk(weights, fit)


def shrunk(weights: np.ndarray, fit: BlendFit) -> np.ndarray:
    """``weights`` with the share ``fit.shrink`` of the weight spread equally over the
    members."""
    return (1.0 - fit.shrink) * weights + fit.shrink / len(weights)


def likelihood_weights(
    label_probabilities: np.ndarray, tolerance: float = 1e-10, max_steps: int = 10_000
) -> np.ndarray:
    """The mixture weights that maximise the mean log-likelihood of the labels, from
    ``label_probabilities`` (members, rows), by EM from equal weights: each step gives
    member m the mean over rows of its share of the mixture's probability of the label.
    The objective is concave in the weights, so EM climbs to its maximum; a member that
    adds nothing ends at (nearly) 0."""
    p = np.asarray(label_probabilities, dtype=np.float64)
    weights = np.full(len(p), 1.0 / len(p))
    for _ in range(max_steps):
        updated = weights * (p / (weights @ p)).mean(axis=1)
        updated /= updated.sum()
        done = np.abs(updated - weights).max() < tolerance
        weights = updated
        if done:
            break
    return weights


def coordinate_ascent(
    error: Callable[[np.ndarray], float], n: int, max_trials: int | None = None
) -> np.ndarray:
    """The search of ``fit_weights`` over the weights of ``n`` members, for any ``error``
    of a weight vector (the tests and bench/bench_blend_fit.py run the old merged-list
    error through it); ``max_trials``: stop after that many calls of ``error`` (the bench
    times the old error's first trials at full scale)."""
    singles = [error(np.eye(n)[i]) for i in range(n)]
    trials = n
    weights = np.eye(n)[int(np.argmin(singles))]
    best = min(singles)
    improved = True
    while improved:
        improved = False
        for shift in SHIFTS:
            for i in range(n):
                for sign in (1, -1):
                    if sign > 0:  # a share of every weight moves to member i
                        candidate = weights + shift * (np.eye(n)[i] - weights)
                    else:  # member i gives up weight, the others share it in proportion
                        candidate = weights.copy()
                        candidate[i] = max(0.0, candidate[i] - shift)
                    if candidate.sum() <= 0:
                        continue
                    candidate = candidate / candidate.sum()
                    if np.allclose(candidate, weights):
                        continue
                    if max_trials is not None and trials >= max_trials:
                        return weights
                    trial = error(candidate)
                    trials += 1
                    if trial < best - 1e-12:
                        weights, best, improved = candidate, trial, True
    return weights


def spatial_folds(latitude: np.ndarray, longitude: np.ndarray, n_folds: int = 2) -> np.ndarray:
    """Fold of each point by its 1-degree cell, so that a fold holds whole cells."""
    cell_lat = np.floor(np.asarray(latitude) / FOLD_CELL_DEGREES).astype(np.int64)
    cell_lon = np.floor(np.asarray(longitude) / FOLD_CELL_DEGREES).astype(np.int64)
    mixed = (cell_lat * 1_000_003 + cell_lon * 7919) % 2_147_483_647
    return (mixed * 2_654_435_761 % 2**32 >> 16) % n_folds


@dataclass(frozen=True)
class FittedBlend:
    """What ``fit_blend`` (or a survey edition's ``fit_set_blend``) found: the weights for
    test, the weights of each fold, the honest (cross-fitted) val predictions and the
    in-sample error (optimistic, for comparison), in ``metric`` (lower is better)."""

    weights: np.ndarray
    fold_weights: list[np.ndarray]
    val: Predictions
    in_sample_error: float
    cross_fitted_error: float
    """The val error of ``val``: GLC 2022's top-30 error is what the leaderboard scores."""
    member_errors: np.ndarray
    """Each member's val error on the same rows."""
    fit: BlendFit
    fitted_weights: np.ndarray
    """The weights the fit found on all of val (``weights`` unless it fell back)."""
    metric: str = "top30_error"
    """The name of the errors above (a survey edition's: ``log_loss``)."""

    @property
    def best_member(self) -> int:
        return int(np.argmin(self.member_errors))

    @property
    def worse_than_best_member(self) -> bool:
        """Whether the blend, cross-fitted, has a higher val error than its best member."""
        return bool(self.cross_fitted_error > self.member_errors.min())

    @property
    def fell_back(self) -> bool:
        return self.worse_than_best_member and self.fit.fallback

    def report(self, names: list[str]) -> dict:
        """What weights.json holds: the weights by member name, and how the blend fares
        against its best member."""
        best = self.best_member
        return {
            "weights": dict(zip(names, self.weights.round(6).tolist(), strict=True)),
            "fit": asdict(self.fit),
            "fitted_weights": dict(zip(names, self.fitted_weights.round(6).tolist(), strict=True)),
            "fold_weights": [
                dict(zip(names, w.round(6).tolist(), strict=True)) for w in self.fold_weights
            ],
            f"cross_fitted_{self.metric}": round(self.cross_fitted_error, 6),
            "best_member": names[best],
            f"best_member_{self.metric}": round(float(self.member_errors[best]), 6),
            "worse_than_best_member": self.worse_than_best_member,
            "fell_back_to_best_member": self.fell_back,
            f"in_sample_{self.metric}": round(self.in_sample_error, 6),
            "note": "val predictions are cross-fitted (each fold blended with the other's "
            f"weights); in_sample_{self.metric} is optimistic",
        }


def cross_fitted_blend(
    members: list[Predictions],
    folds: np.ndarray,
    fit_rows: Callable[[np.ndarray], np.ndarray],
    k: int,
) -> tuple[list[np.ndarray], Predictions]:
    """Each fold's weights, fitted by ``fit_rows`` on the rows of the other fold, and the
    val predictions (members' rows in the same order) of each fold blended with them."""
    fold_weights, parts = [], []
    for fold in (0, 1):
        fitting, scored = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        if len(fitting) == 0 or len(scored) == 0:  # one fold only: nothing held out
            fitting = scored = np.arange(len(folds))
        chosen = fit_rows(fitting)
        fold_weights.append(chosen)
        used = [(m.take(scored), w) for m, w in zip(members, chosen, strict=True) if w > 0]
        parts.append(blend([m for m, _ in used], [w for _, w in used], k))
        log.info("fold %d: weights %s fitted on %d rows", fold, np.round(chosen, 3), len(fitting))
    val = Predictions(
        np.concatenate([p.observation_id for p in parts]),
        np.concatenate([p.species_ids for p in parts]),
        np.concatenate([p.scores for p in parts]),
    )
    return fold_weights, val


def fit_blend(
    members: list[Predictions],
    observation_ids: np.ndarray,
    labels: np.ndarray,
    latitude: np.ndarray,
    longitude: np.ndarray,
    k: int,
    fit: BlendFit = DEFAULT_FIT,
) -> FittedBlend:
    """Fit blend weights on val (rows in the order of ``observation_ids``) as the module
    docstring says."""
    members = [m.aligned_to(observation_ids) for m in members]
    k = min(k, *(m.k for m in members))
    candidates = CandidateScores.build(members, labels)
    weights = fit_weights(candidates, fit)
    fold_weights, val = cross_fitted_blend(
        members,
        spatial_folds(latitude, longitude),
        lambda rows: fit_weights(candidates.take(rows), fit),
        k,
    )
    ranked = val.aligned_to(observation_ids).species_ids
    cross_fitted = 1.0 - float(hits(ranked, np.asarray(labels), KAGGLE_K).mean())
    member_errors = np.array([candidates.error(single) for single in np.eye(len(members))])
    found = FittedBlend(
        weights,
        fold_weights,
        val,
        candidates.error(weights),
        cross_fitted,
        member_errors,
        fit,
        weights,
    )
    return or_best_member(found, members, k)


def or_best_member(found: FittedBlend, members: list[Predictions], k: int) -> FittedBlend:
    """``found``, or, when it is worse than its best member cross-fitted and its fit falls
    back, that member alone (weight 1, its val predictions)."""
    if not found.worse_than_best_member:
        return found
    best = found.best_member
    log.warning(
        "the cross-fitted blend (val %s %.4f) is worse than its best member, member %d (%.4f): %s",
        METRIC_WORDS[found.metric],
        found.cross_fitted_error,
        best,
        found.member_errors[best],
        "the blend falls back to that member"
        if found.fit.fallback
        else "the leaderboard ranks the member above it",
    )
    if not found.fit.fallback:
        return found
    alone = np.eye(len(members))[best]
    return replace(
        found,
        weights=alone,
        val=blend([members[best]], [1.0], k),
        in_sample_error=float(found.member_errors[best]),
    )


def read_report(path) -> dict:
    """``fit_blend``'s report (weights.json, ``FittedBlend.report``)."""
    return json.loads(Path(path).read_text())


def read_weights(path) -> dict[str, float]:
    """The weights for test that ``fit_blend``'s report (weights.json) holds, by member."""
    return read_report(path)["weights"]


def blend_weights(
    weights: dict[str, float],
    report: str | Path | None,
    sweep_members: dict[str, list[str]],
    member_metrics: list[dict],
) -> dict[str, float]:
    """A blend's weights by member, as its predictions and its MLflow model use them: the
    config's ``weights``, each ``<sweep>:top<n>`` resolved by the members' val top-30
    errors (a survey edition's: 1 - F1; ``member_metrics``: their metrics.json), or, for a
    fitted blend (no config weights), those its ``report`` (weights.json) holds."""
    val_errors = {metrics["model"]: ranking_error(metrics) for metrics in member_metrics}
    return resolve_selectors(weights or read_weights(report), sweep_members, val_errors)
