"""The baselines on surveys (GLC 2024 on): each survey has a set of species, and every
family gives each species a presence probability (a marginal in [0, 1]) that it learns."""

import numpy as np
import pandas as pd
import pytest

from geolifeclef.baselines import constant, forest, knn, region_prior
from geolifeclef.baselines.fitting import label_matrix
from geolifeclef.baselines.forest import TabularSources
from geolifeclef.data.class_frequency import BucketThresholds
from geolifeclef.data.survey_species import survey_species_table
from geolifeclef.settings.families import (
    ConstantSettings,
    ForestSettings,
    KnnSettings,
    RegionPriorSettings,
)

SPECIES = np.array([3, 17, 250, 4001, 9000, 11254])
"""Label ids as the archives have them: not contiguous."""


def surveys(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Surveys where species 17 lives in the west, 250 where the value is high, 4001 in
    the ALPINE region, 3 everywhere, the others at random; and their env table."""
    rng = np.random.default_rng(seed)
    longitude = rng.uniform(-10, 30, n)
    latitude = rng.uniform(35, 70, n)
    value = rng.normal(0, 1, n)
    region = np.where(latitude > 55, "ALPINE", "CONTINENTAL")
    sets = []
    for i in range(n):
        present = {3}
        if longitude[i] < 10 and rng.random() < 0.9:
            present.add(17)
        if value[i] > 0.5 and rng.random() < 0.9:
            present.add(250)
        if region[i] == "ALPINE" and rng.random() < 0.8:
            present.add(4001)
        for s in (9000, 11254):
            if rng.random() < 0.1:
                present.add(s)
        sets.append(np.array(sorted(present), dtype=np.int32))
    ids = rng.choice(3_900_000, n, replace=False) + 100
    table = pd.DataFrame(
        {
            "observation_id": ids,
            "latitude": latitude,
            "longitude": longitude,
            "region": region,
            "species_ids": sets,
        }
    )
    env = pd.DataFrame({"observation_id": ids, "Bio1": value, "Elevation": rng.normal(0, 1, n)})
    return table, env.astype({"Bio1": np.float32, "Elevation": np.float32})


@pytest.fixture(scope="module")
def data():
    train, train_env = surveys(600, 1)
    val, val_env = surveys(200, 2)
    po = pd.DataFrame(
        {"observation_id": [1], "latitude": [50.0], "longitude": [5.0], "species_id": [3]}
    )
    species = survey_species_table(train, val, po, BucketThresholds(100, 20))
    sources = TabularSources(pd.concat([train_env, val_env]), "env", env_variables=None)
    return train, val, species, sources


def probability_of(predictions, species_id: int) -> np.ndarray:
    """Each row's probability of ``species_id`` (0 outside its top K)."""
    hit = predictions.species_ids == species_id
    return np.where(hit, predictions.scores, 0).sum(axis=1)


def test_the_species_table_counts_surveys_and_its_prior_is_the_prevalence(data):
    train, _, species, _ = data
    row = species.set_index("species_id").loc[3]
    assert row["train_count"] == len(train) and row["prior"] == 1.0
    assert species["species_id"].tolist() == SPECIES.tolist()
    assert label_matrix(train, species).sum() == train["species_ids"].map(len).sum()


@pytest.mark.parametrize(
    ("module", "settings", "species_id", "where"),
    [
        (knn, KnnSettings(n_neighbors=20), 17, lambda v: v["longitude"] < 10),
        (region_prior, RegionPriorSettings(), 4001, lambda v: v["region"] == "ALPINE"),
        (forest, ForestSettings(n_estimators=8, max_depth=6, features=("env",)), 250, None),
    ],
)
def test_each_family_learns_where_a_species_is_present(data, module, settings, species_id, where):
    train, val, species, sources = data
    model = module.fit(train, species, settings, sources)
    predicted = model.predict(val, len(SPECIES), 100)
    scores = predicted.scores
    assert (scores >= 0).all() and (scores <= 1).all()
    assert (predicted.scores.sum(axis=1) > 1.2).all(), "marginals: they sum to the richness"
    p = probability_of(predicted, species_id)
    if where is None:  # the forest reads the value
        value = sources.env.set_index("observation_id").loc[val["observation_id"], "Bio1"]
        inside = value.to_numpy() > 0.5
    else:
        inside = where(val).to_numpy()
    assert p[inside].mean() > 0.6 > 0.3 > p[~inside].mean()
    # everywhere-present species 3 is certain
    assert np.allclose(probability_of(predicted, 3), 1.0, atol=0.05)


@pytest.mark.parametrize(
    ("module", "settings"),
    [
        (constant, ConstantSettings()),
        (knn, KnnSettings(n_neighbors=20)),
        (region_prior, RegionPriorSettings()),
        (forest, ForestSettings(n_estimators=4, max_depth=4, features=("env", "coordinates"))),
    ],
)
def test_a_saved_fit_predicts_what_it_predicted(data, module, settings, tmp_path):
    train, val, species, sources = data
    model = module.fit(train, species, settings, sources)
    model.save(tmp_path / "model.npz")
    reloaded = module.load(tmp_path / "model.npz", species, sources)
    before, after = model.predict(val, 4, 100), reloaded.predict(val, 4, 100)
    np.testing.assert_array_equal(before.species_ids, after.species_ids)
    np.testing.assert_allclose(before.scores, after.scores, rtol=1e-6)
