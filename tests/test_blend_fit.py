"""Fitted blends: weights chosen on val by coordinate ascent, scored on held-out folds."""

import numpy as np
import pytest

from geolifeclef.predictions import blend_fit
from geolifeclef.predictions.blend_fit import fit_blend, fit_weights, spatial_folds
from geolifeclef.predictions.metrics import hits
from geolifeclef.predictions.table import Predictions, check_predictions

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


def test_a_fitted_blend_beats_its_best_member_on_each_held_out_fold(val):
    members, labels, latitude, longitude = val
    ids = members[0].observation_id
    found = fit_blend(members, ids, labels, latitude, longitude, K)
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

    def spy(fitted_members, fitted_labels):
        seen.append(set(fitted_members[0].observation_id.tolist()))
        return original(fitted_members, fitted_labels)

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
    weights = fit_weights([members[0], members[0]], labels)
    assert sorted(weights.tolist()) == [0.0, 1.0]
