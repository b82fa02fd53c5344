"""A survey edition's fitted blends: weights of presence probabilities chosen by the
likelihood of val's species sets, scored on held-out folds, falling back to the best member
when the blend is worse."""

import numpy as np
import pytest

from geolifeclef.predictions.blend_fit import LABEL_FLOOR, BlendFit, spatial_folds
from geolifeclef.predictions.set_blend_fit import fit_set_blend, log_loss, outcome_probabilities
from geolifeclef.predictions.table import Predictions, blend

N_SPECIES, K = 50, 20


def _member(truth: np.ndarray, knows: np.ndarray, seed: int, wrong: bool = False) -> Predictions:
    """A model's top K presence probabilities: the true ones on the rows it ``knows``, the
    species' mean prevalence blurred by noise elsewhere (``wrong``: the opposite of the
    truth)."""
    rng = np.random.default_rng(seed)
    guess = np.clip(truth.mean(axis=0) + rng.normal(0, 0.15, truth.shape), 0.001, 0.999)
    if wrong:
        guess = np.clip(1.0 - truth, 0.001, 0.999)
    scores = np.where(knows[:, None], truth, guess)
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    observation_ids = np.arange(len(truth)) + 5_000_000
    return Predictions(observation_ids, ids, np.take_along_axis(scores, ids, axis=1))


def _world(seed: int, n: int = 700):
    """Surveys at random points, each species present with a probability of its own."""
    rng = np.random.default_rng(seed)
    latitude, longitude = rng.uniform(40, 50, n), rng.uniform(-4, 8, n)
    truth = rng.beta(0.3, 1.5, (n, N_SPECIES))
    sets = [np.flatnonzero(rng.random(N_SPECIES) < p) for p in truth]
    return truth, sets, latitude, longitude


def _cell_loss(predictions: Predictions, members, sets) -> float:
    """Log loss of ``predictions`` on the members' candidate cells, recomputed from the
    written table (0 where it does not list a cell)."""
    ids = members[0].observation_id
    outcome, rows = outcome_probabilities([predictions.aligned_to(ids), *members], sets)
    return log_loss(outcome, np.eye(len(members) + 1)[0])


def test_the_outcome_of_a_cell_is_p_where_present_and_1_minus_p_where_absent():
    members = [
        Predictions(np.array([1, 2]), np.array([[3, 5], [5, 7]]), np.array([[0.9, 0.2]] * 2)),
        Predictions(np.array([1, 2]), np.array([[5, 8], [7, 3]]), np.array([[0.6, 1.0]] * 2)),
    ]
    # Survey 1 holds species 3 and 9 (9 listed by no member: left out), survey 2 species 7.
    outcome, rows = outcome_probabilities(members, [np.array([3, 9]), np.array([7])])
    # Cells by (row, species): (0,3) (0,5) (0,8) (1,3) (1,5) (1,7)
    assert rows.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(
        outcome,
        [
            [0.9, 0.8, 1.0, 1.0, 0.1, 0.2],
            [LABEL_FLOOR, 0.4, LABEL_FLOOR, LABEL_FLOOR, 1.0, 0.6],
        ],
        rtol=1e-6,  # the scores are float32
    )


def test_the_fitted_weights_maximise_the_likelihood_of_the_sets():
    truth, sets, latitude, longitude = _world(1)
    rng = np.random.default_rng(2)
    members = [
        _member(truth, rng.random(len(truth)) < 0.7, 3),
        _member(truth, rng.random(len(truth)) < 0.4, 4),
    ]
    ids = members[0].observation_id
    found = fit_set_blend(members, ids, sets, latitude, longitude, K, BlendFit())
    outcome, _ = outcome_probabilities(members, sets)
    grid = np.linspace(0, 1, 201)
    losses = [log_loss(outcome, np.array([w, 1 - w])) for w in grid]
    assert found.weights[0] == pytest.approx(grid[int(np.argmin(losses))], abs=0.01)
    assert found.in_sample_error == pytest.approx(min(losses), abs=1e-4)
    assert found.metric == "log_loss" and found.report(["a", "b"])["cross_fitted_log_loss"]


def test_a_blend_of_complementary_members_beats_each_on_held_out_folds():
    truth, sets, latitude, longitude = _world(5)
    rng = np.random.default_rng(6)
    half = rng.random(len(truth))
    members = [
        _member(truth, half < 0.55, 7),  # right on 55 % of the surveys
        _member(truth, half > 0.45, 8),  # right on the others (a few in common)
        _member(truth, np.zeros(len(truth), dtype=bool), 9),  # knows nothing
    ]
    ids = members[0].observation_id
    found = fit_set_blend(members, ids, sets, latitude, longitude, K, BlendFit())
    assert not found.worse_than_best_member and not found.fell_back
    assert found.cross_fitted_error < found.member_errors.min()
    assert found.weights[2] < 0.1 < min(found.weights[:2])
    # Each fold is blended with the weights fitted on the other, as written to val.
    folds = spatial_folds(latitude, longitude)
    for fold, weights in enumerate(found.fold_weights):
        scored = np.flatnonzero(folds == fold)
        expected = blend([m.take(scored) for m in members], list(weights), K)
        written = found.val.aligned_to(expected.observation_id)
        np.testing.assert_array_equal(written.species_ids, expected.species_ids)
        np.testing.assert_allclose(written.scores, expected.scores)
    assert _cell_loss(found.val, members, sets) < found.member_errors.min()


def _worse_case():
    """Member 0 knows the surveys of fold 0, member 1 those of fold 1: weights fitted on one
    fold pick the member that is wrong on the other (confidently: the opposite)."""
    truth, sets, latitude, longitude = _world(11, n=800)
    folds = spatial_folds(latitude, longitude)
    members = [_member(truth, folds == 0, 12, True), _member(truth, folds == 1, 13, True)]
    return members, sets, latitude, longitude


@pytest.mark.parametrize("fallback", [True, False])
def test_a_blend_worse_than_its_best_member_falls_back_to_it_or_says_so(fallback, caplog):
    members, sets, latitude, longitude = _worse_case()
    ids = members[0].observation_id
    found = fit_set_blend(members, ids, sets, latitude, longitude, K, BlendFit(fallback=fallback))
    assert found.worse_than_best_member and found.fell_back == fallback
    assert "worse than its best member" in caplog.text and "log loss" in caplog.text
    report = found.report(["west", "east"])
    assert report["fell_back_to_best_member"] is fallback
    if fallback:
        best = members[found.best_member].aligned_to(ids)
        assert found.weights.tolist() == np.eye(2)[found.best_member].tolist()
        val = found.val.aligned_to(ids)  # the member's lists (ties ranked by species id)
        np.testing.assert_array_equal(np.sort(val.species_ids), np.sort(best.species_ids))
        np.testing.assert_array_equal(np.sort(val.scores), np.sort(best.scores))
    else:
        assert (found.weights > 0).all()


def test_top30_fits_are_refused_for_species_sets():
    members, sets, latitude, longitude = _worse_case()
    with pytest.raises(ValueError, match="by likelihood"):
        fit_set_blend(
            members, members[0].observation_id, sets, latitude, longitude, K, BlendFit("top30")
        )
