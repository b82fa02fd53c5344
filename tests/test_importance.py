"""Permutation importance and response curves of a model whose dependence is known: the
tiny demo's hidden species model, fed the niche fields as the rasters give them."""

import numpy as np
import pandas as pd
import pytest

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.rasters import region_of_points
from geolifeclef.demo.species import NICHE_FIELDS, niche_features
from geolifeclef.demo.truth import WORLD_FILE, read_world
from geolifeclef.layout import ENV_VARIABLES, REGIONS
from geolifeclef.maps.importance import (
    most_important,
    permutation_importance,
    plot_importance,
    read_sample,
    write_importance,
)
from geolifeclef.maps.point_models import PointModel
from geolifeclef.maps.response import (
    feature_range,
    partial_dependence,
    response_species,
    write_responses,
)
from geolifeclef.settings.maps import ImportanceSettings, ResponseSettings

UNUSED = "orcdrc"
"""Soil organic carbon: a raster of the demo that no species' niche reads."""


class NicheModel(PointModel):
    """P(species | env) of the demo's hidden model from the env values alone: its niche
    term (temperature = bio_1, precipitation = bio_12, soil pH = phihox, clay = clyppt,
    elevation and continentality inverted from bdticm and bio_7, as demo.world derives
    them), abundance and region; no land cover or geographic range."""

    name = "niche"

    def __init__(self, world_path, species_ids):
        self.model = read_world(world_path).species
        self.species_ids = np.asarray(species_ids)

    def probabilities(self, latitude, longitude, env):
        def column(name):
            return np.asarray(env, np.float64)[:, ENV_VARIABLES.index(name)]

        fields = {
            "temperature": column("bio_1"),
            "precipitation": column("bio_12"),
            "elevation": 3000 * (1 - (column("bdticm") - 2000) / 15000),
            "continentality": (column("bio_7") - 18) / 14,
            "soil_ph": column("phihox"),
            "soil_clay": column("clyppt"),
        }
        features = np.nan_to_num(niche_features(fields))  # no value: the niche scale's centre
        log_p = self.model.niche_by_products(features) + np.log(self.model.abundance)[None]
        region = np.searchsorted(REGIONS, region_of_points(np.asarray(longitude)))
        log_p[self.model.region_mask[region] == 0] = -np.inf
        p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
        return (p / p.sum(axis=1, keepdims=True))[:, self.species_ids]


@pytest.fixture(scope="module")
def niche(tiny_demo, with_species):
    _, truth, _ = tiny_demo
    species = read_species_table(with_species["species"])
    model = NicheModel(truth / WORLD_FILE, species["species_id"].to_numpy())
    sample = read_sample(with_species["tables"]["train"], with_species["env"])
    return model, species, sample


def test_permuting_an_unused_variable_changes_nothing_and_a_used_one_raises_the_error(
    niche, tmp_path
):
    model, species, sample = niche
    # Top-5: the tiny demo's 60 species make a top-30 set hold nearly every candidate.
    settings = ImportanceSettings(variables=(UNUSED, "bio_1", "bio_12"), repeats=2, top_k=5)
    frame = permutation_importance(model, sample, species["species_id"].to_numpy(), settings)
    increase = frame.set_index("feature")["increase"]
    assert increase[UNUSED] == 0.0
    assert increase["bio_1"] > 0.05  # measured 0.11 (error 0.44 unpermuted)
    assert increase["temperature"] > 0.05
    assert frame["baseline_error"].nunique() == 1
    assert most_important(frame, 1) in (["bio_1"], ["bio_12"])
    write_importance(frame, tmp_path / "i.parquet", tmp_path / "i.csv")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "i.parquet"), frame)
    plot_importance(frame, tmp_path / "i.png")
    assert (tmp_path / "i.png").stat().st_size > 1000


def test_importance_is_seeded(niche):
    model, species, sample = niche
    settings = ImportanceSettings(variables=("bio_1",), groups=(), seed=3, top_k=5)
    ids = species["species_id"].to_numpy()
    first = permutation_importance(model, sample, ids, settings)
    assert first.equals(permutation_importance(model, sample, ids, settings))


def test_partial_dependence_peaks_at_the_hidden_niche_optimum(niche, tiny_demo):
    model, species, sample = niche
    hidden = model.model
    t = NICHE_FIELDS.index("temperature")
    fr = sample.subset(np.flatnonzero(sample.region == "fr"))
    low, high = np.percentile(fr.column("bio_1"), [1, 99])
    optima = 10.0 + 5.0 * hidden.niche_mean[:, t]  # _NICHE_SCALE of temperature
    # Of the species of France whose optimum lies well inside its range, the one most
    # tightly tied to temperature.
    margin = 0.2 * (high - low)
    candidates = np.flatnonzero(
        (hidden.region_mask[0] > 0) & (optima > low + margin) & (optima < high - margin)
    )
    assert len(candidates), "the test needs a species with its optimum inside France's range"
    chosen = candidates[np.argmax(hidden.niche_precision[candidates, t])]
    optimum = optima[chosen]
    values = np.linspace(low, high, 41)
    column = np.flatnonzero(species["species_id"].to_numpy() == chosen)
    curve = partial_dependence(model, fr, "bio_1", values, column, len(species))[:, 0]
    width = 5.0 / np.sqrt(hidden.niche_precision[chosen, t])  # the niche's sd in degrees
    assert abs(values[np.argmax(curve)] - optimum) < max(0.5 * width, values[1] - values[0])
    assert 0 < np.argmax(curve) < len(values) - 1  # a bump, not a slope


def test_response_figures_and_species_choice(niche, tmp_path):
    model, species, sample = niche
    settings = ResponseSettings(points=5, top=2)
    chosen = response_species(species, "fr", settings)
    assert 1 <= len(chosen) <= 3
    fr = sample.subset(np.flatnonzero(sample.region == "fr"))
    curves = write_responses(
        model, fr, species, {}, chosen, ["bio_1", "latitude"], settings, tmp_path / "r", "fr"
    )
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(
        ["responses.parquet", *(f"species_{s}.png" for s in chosen)]
    )
    assert len(curves) == 2 * 5 * len(chosen)
    assert len(feature_range(fr, "bio_1", 7)) == 7


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: ImportanceSettings(variables=("bio_99",)), "importance.variables"),
        (lambda: ImportanceSettings(groups=("wind",)), "importance.groups"),
        (lambda: ImportanceSettings(top_k=0), "importance.top_k"),
        (lambda: ResponseSettings(variables=("altitude",)), "response.variables"),
    ],
)
def test_unknown_names_are_refused_with_the_setting(make, setting):
    with pytest.raises(ValueError, match=setting):
        make()


def test_a_species_not_in_the_data_is_refused(niche):
    _, species, _ = niche
    with pytest.raises(ValueError, match="response.species"):
        response_species(species, "fr", ResponseSettings(species=(10**6,)))
