"""The region prior: each region's most observed species, smoothed towards the constant;
a map point's region is the one its id says, as an observation's."""

import numpy as np
import pandas as pd
import pytest
from conftest import run_snakemake

from geolifeclef.baselines.region_prior import fit, load
from geolifeclef.data.rasters import point_ids
from geolifeclef.settings.catalog import DEFAULT_BASELINES
from geolifeclef.settings.families import RegionPriorSettings

FR, US = 10_000_000, 20_000_000
"""The first ids of France and of the US (an id's first digit is its region)."""


def _world():
    """Species 1-3 seen in France only, 4-5 in the US only, 6 never."""
    species = pd.DataFrame(
        {"species_id": [1, 2, 3, 4, 5, 6], "prior": [0.3, 0.2, 0.1, 0.25, 0.15, 0.0]}
    )
    labels = [1, 1, 1, 2, 2, 3, 4, 4, 5]
    ids = [FR + i for i in range(6)] + [US + i for i in range(3)]
    rows = pd.DataFrame({"observation_id": ids, "species_id": labels})
    return species, rows


def test_each_observation_gets_its_regions_species_first():
    species, rows = _world()
    model = fit(rows, species, RegionPriorSettings(prior_weight=0.5))
    queries = pd.DataFrame({"observation_id": [FR + 99, US + 99]})
    predicted = model.predict(queries, 3)
    assert predicted.species_ids.tolist() == [[1, 2, 3], [4, 5, 1]]
    # (count + 0.5 prior) / (n + 0.5): France has 6 observations, 3 of species 1.
    assert predicted.scores[0, 0] == pytest.approx((3 + 0.5 * 0.3) / 6.5)
    np.testing.assert_allclose(model.probabilities.sum(axis=1), 1.0)


def test_a_map_point_is_predicted_as_an_observation_of_its_region(tmp_path):
    species, rows = _world()
    fitted = fit(rows, species, RegionPriorSettings())
    fitted.save(tmp_path / "model.npz")
    model = load(tmp_path / "model.npz", species)
    longitude = np.array([2.35, -100.0])  # Paris, Kansas
    at_points = model.probabilities_at(np.array([48.85, 39.0]), longitude, None)
    observations = pd.DataFrame({"observation_id": point_ids(longitude)})
    expected = model.predict(observations, 6)
    for row in range(2):
        ranked = species["species_id"].to_numpy()[np.argsort(-at_points[row], kind="stable")]
        assert ranked[:2].tolist() == expected.species_ids[row, :2].tolist()
    np.testing.assert_array_equal(at_points, fitted.probabilities)


def test_a_prior_weight_of_zero_is_refused():
    with pytest.raises(ValueError, match="prior_weight 0"):
        RegionPriorSettings(prior_weight=0)


def test_a_config_that_names_it_plans_its_prediction_evaluation_and_submission(tmp_path):
    """An opt-in baseline: its rule, evaluation and submission are planned once the config
    names it (``baselines: {region_prior: {}}``), and only then."""
    assert "region_prior" not in DEFAULT_BASELINES
    (tmp_path / "config.yaml").write_text("demo:\n  scale: tiny\nbaselines:\n  region_prior: {}\n")
    named = run_snakemake(tmp_path, "all", "--dry-run", timeout=300)
    assert named.returncode == 0, named.stderr[-3000:]
    for planned in (
        "predictions/region_prior/test.parquet",
        "evaluation/region_prior/metrics.json",
    ):
        assert f"results/{planned}" in named.stdout
    assert "results/submission/region_prior.csv" in named.stdout
