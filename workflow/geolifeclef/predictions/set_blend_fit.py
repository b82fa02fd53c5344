"""Fitted blends of a survey edition (GLC 2024, 2025): weights of the members' presence
probabilities chosen on val's species sets, scored honestly.

The fit is GLC 2022's ``likelihood`` (``geolifeclef.predictions.blend_fit``) on another
likelihood: each (survey, candidate species) cell is a Bernoulli outcome, present or
absent, and the blend's probability of a cell's outcome is the weighted mean of the
members' (``p`` if present, ``1 - p`` if absent), so the same EM (``likelihood_weights``)
finds the weights that maximise the mean log-likelihood of val's cells. The candidates of a
survey are the union of the members' top-K lists; a species that no member lists is left
out (every weight gives it the same probability, 0).

As in GLC 2022, val is cut into two folds of whole 1-degree cells, each blended with the
weights fitted on the other (the val predictions that set selection and the leaderboard
use), and a blend whose cross-fitted log loss is worse than its best member's becomes that
member when its fit falls back (``BlendFit.fallback``). Only ``method: likelihood`` applies:
``top30`` is GLC 2022's metric.
"""

import numpy as np

from geolifeclef.predictions.blend_fit import (
    LABEL_FLOOR,
    FittedBlend,
    cross_fitted_blend,
    likelihood_weights,
    or_best_member,
    shrunk,
    spatial_folds,
)
from geolifeclef.predictions.table import Predictions
from geolifeclef.settings.families import BlendFit


def outcome_probabilities(
    members: list[Predictions], species_sets: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """``(members, cells)`` each member's probability of each candidate cell's outcome
    (``p`` where the species is in the survey's set, else ``1 - p``; at least
    ``LABEL_FLOOR``), and the row of each cell. ``members``' rows are the surveys of
    ``species_sets``, in order."""
    n = len(species_sets)
    present_species = np.concatenate(
        [np.asarray(s, dtype=np.int64) for s in species_sets] or [np.zeros(0, np.int64)]
    )
    # (row, species) as one int64 key: row * width + species
    width = 1 + max(present_species.max(initial=0), *(int(m.species_ids.max()) for m in members))
    keys = [
        np.repeat(np.arange(n), m.k) * width + m.species_ids.astype(np.int64).ravel()
        for m in members
    ]
    cells = np.unique(np.concatenate(keys))
    probability = np.zeros((len(members), len(cells)))
    for index, (member, member_keys) in enumerate(zip(members, keys, strict=True)):
        probability[index, np.searchsorted(cells, member_keys)] = member.scores.ravel()
    present_keys = np.repeat(np.arange(n), [len(s) for s in species_sets]) * width
    present_keys += present_species
    present = np.isin(cells, present_keys)
    outcome = np.where(present, probability, 1.0 - probability)
    return np.maximum(outcome, LABEL_FLOOR), cells // width


def log_loss(outcome: np.ndarray, weights: np.ndarray) -> float:
    """Mean negative log-likelihood of the cells under the blend with ``weights``."""
    return float(-np.log(np.asarray(weights, dtype=np.float64) @ outcome).mean())


def fit_set_blend(
    members: list[Predictions],
    observation_ids: np.ndarray,
    species_sets: list[np.ndarray],
    latitude: np.ndarray,
    longitude: np.ndarray,
    k: int,
    fit: BlendFit,
) -> FittedBlend:
    """Fit blend weights on val's species sets (rows in the order of ``observation_ids``)
    as the module docstring says."""
    if fit.method != "likelihood":
        raise ValueError(
            f"blend fit method {fit.method!r}: a survey edition's fitted blends fit by "
            "likelihood (top30 is GLC 2022's metric)"
        )
    members = [m.aligned_to(observation_ids) for m in members]
    k = min(k, *(m.k for m in members))
    outcome, row_of_cell = outcome_probabilities(members, species_sets)
    n_members = len(members)

    def fitted(rows: np.ndarray) -> np.ndarray:
        cells = np.isin(row_of_cell, rows)
        return shrunk(likelihood_weights(outcome[:, cells]), fit)

    folds = spatial_folds(latitude, longitude)
    weights = fitted(np.arange(len(observation_ids)))
    fold_weights, val = cross_fitted_blend(members, folds, fitted, k)
    # Each cell scored with the weights of the fold that did not fit on it.
    held_out = np.stack(fold_weights)[folds[row_of_cell]]
    cross_fitted = float(-np.log(np.einsum("cm,mc->c", held_out, outcome)).mean())
    found = FittedBlend(
        weights,
        fold_weights,
        val,
        log_loss(outcome, weights),
        cross_fitted,
        np.array([log_loss(outcome, single) for single in np.eye(n_members)]),
        fit,
        weights,
        metric="log_loss",
    )
    return or_best_member(found, members, k)
