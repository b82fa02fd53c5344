"""Fitted blends: blend weights chosen on val, scored honestly.

A fixed blend (config ``blends``) averages models with weights typed by hand; a fitted
blend (config ``fitted_blends``) picks them by coordinate ascent on the val top-30 error:
start from the best member alone, then repeatedly move a share of the weight to one member
(or away from it) while that lowers the error. A weight chosen on the rows it is scored
on flatters the blend, so the val predictions of a fitted blend are cross-fitted: val is
cut into two folds by 1-degree cells (neighbours share species, so a fold must not see the
other fold's places), each fold is blended with the weights fitted on the other, and that
is what the leaderboard scores. The test predictions use weights fitted on all of val.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geolifeclef.predictions.metrics import KAGGLE_K, hits
from geolifeclef.predictions.table import Predictions, blend

log = logging.getLogger(__name__)

SHIFTS = (0.5, 0.25, 0.1, 0.05)
"""Shares of the weight a step moves to or from one member, coarse to fine."""
FOLD_CELL_DEGREES = 1.0


def blend_error(members: list[Predictions], weights: np.ndarray, labels: np.ndarray) -> float:
    """Top-30 error of the blend of ``members`` (aligned rows) against ``labels``."""
    used = [(m, w) for m, w in zip(members, weights, strict=True) if w > 0]
    k = max(m.k for m, _ in used)
    mixed = blend([m for m, _ in used], [w for _, w in used], k)
    return 1.0 - float(hits(mixed.species_ids, labels, KAGGLE_K).mean())


def fit_weights(members: list[Predictions], labels: np.ndarray) -> np.ndarray:
    """Weights (summing to 1) that lower the top-30 error of the blend on these rows, by
    coordinate ascent from the best single member; never worse than it on these rows."""
    n = len(members)
    singles = [blend_error(members, np.eye(n)[i], labels) for i in range(n)]
    weights = np.eye(n)[int(np.argmin(singles))]
    error = min(singles)
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
                    trial = blend_error(members, candidate, labels)
                    if trial < error - 1e-12:
                        weights, error, improved = candidate, trial, True
    return weights


def spatial_folds(latitude: np.ndarray, longitude: np.ndarray, n_folds: int = 2) -> np.ndarray:
    """Fold of each point by its 1-degree cell, so that a fold holds whole cells."""
    cell_lat = np.floor(np.asarray(latitude) / FOLD_CELL_DEGREES).astype(np.int64)
    cell_lon = np.floor(np.asarray(longitude) / FOLD_CELL_DEGREES).astype(np.int64)
    mixed = (cell_lat * 1_000_003 + cell_lon * 7919) % 2_147_483_647
    return (mixed * 2_654_435_761 % 2**32 >> 16) % n_folds


@dataclass(frozen=True)
class FittedBlend:
    """What ``fit_blend`` found: the weights for test, the weights of each fold, the honest
    (cross-fitted) val predictions and the in-sample error (optimistic, for comparison)."""

    weights: np.ndarray
    fold_weights: list[np.ndarray]
    val: Predictions
    in_sample_error: float


def fit_blend(
    members: list[Predictions],
    observation_ids: np.ndarray,
    labels: np.ndarray,
    latitude: np.ndarray,
    longitude: np.ndarray,
    k: int,
) -> FittedBlend:
    """Fit blend weights on val (rows in the order of ``observation_ids``) as the module
    docstring says."""
    members = [m.aligned_to(observation_ids) for m in members]
    k = min(k, *(m.k for m in members))
    folds = spatial_folds(latitude, longitude)
    weights = fit_weights(members, labels)
    fold_weights, parts = [], []
    for fold in (0, 1):
        fitting, scored = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        if len(fitting) == 0 or len(scored) == 0:  # one fold only: nothing held out
            fitting = scored = np.arange(len(labels))
        chosen = fit_weights([m.take(fitting) for m in members], labels[fitting])
        fold_weights.append(chosen)
        used = [(m.take(scored), w) for m, w in zip(members, chosen, strict=True) if w > 0]
        parts.append(blend([m for m, _ in used], [w for _, w in used], k))
        log.info("fold %d: weights %s fitted on %d rows", fold, np.round(chosen, 3), len(fitting))
    val = Predictions(
        np.concatenate([p.observation_id for p in parts]),
        np.concatenate([p.species_ids for p in parts]),
        np.concatenate([p.scores for p in parts]),
    )
    return FittedBlend(weights, fold_weights, val, blend_error(members, weights, labels))


def read_weights(path) -> dict[str, float]:
    """The weights for test that ``fit_blend``'s report (weights.json) holds, by member."""

    return json.loads(Path(path).read_text())["weights"]
