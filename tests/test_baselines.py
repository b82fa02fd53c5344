"""Baselines: each gives valid predictions, the right species ids and valid submissions."""

from dataclasses import fields
from importlib import import_module

import numpy as np
import pandas as pd
import pytest

from geolifeclef.baselines.constant import constant_predictions
from geolifeclef.baselines.fitting import fitting_rows, run_baseline
from geolifeclef.baselines.forest import (
    ForestSettings,
    TabularSources,
    feature_matrix,
    feature_names,
    random_forest_predictions,
)
from geolifeclef.baselines.knn import KnnSettings, knn_predictions
from geolifeclef.data.class_frequency import BucketThresholds, read_species_table, species_table
from geolifeclef.data.observations import load_observations, read_species_ids
from geolifeclef.errors import InputDataError
from geolifeclef.evaluation.submission import check_submission_file, write_submission
from geolifeclef.layout import CSV_SEPARATOR, ENV_VARIABLES
from geolifeclef.predictions.metrics import top_k_error
from geolifeclef.predictions.table import check_predictions, read_predictions
from geolifeclef.settings.families import BASELINES
from geolifeclef.settings.inputs import FOREST_FEATURE_GROUPS


@pytest.fixture(scope="module")
def demo(tiny_demo):
    """(observation tables, species table, env table, summary) of the tiny demo."""
    layout, _, summary = tiny_demo
    tables = load_observations(layout)
    species = species_table(
        tables.train, tables.val, read_species_ids(layout.species_details), BucketThresholds()
    )
    # The demo's pre-extracted vectors: the env table's columns and values (test_environment).
    env = pd.read_csv(layout.environmental_vectors, sep=CSV_SEPARATOR)
    return tables, species, env, summary


def _points(lat_lon: list[tuple[float, float]], species: list[int] | None = None):
    frame = pd.DataFrame(lat_lon, columns=["latitude", "longitude"])
    frame.insert(0, "observation_id", np.arange(len(frame)) + 10_000_000)
    if species is not None:
        frame["species_id"] = species
    return frame


def _species(train: pd.DataFrame, n: int) -> pd.DataFrame:
    frame = train.assign(region="fr")
    return species_table(frame, frame.iloc[:0], np.arange(n), BucketThresholds())


def test_constant_matches_the_generator_summary(demo):
    tables, species, _, summary = demo
    predictions = constant_predictions(species, tables.val["observation_id"].to_numpy(), 30)
    assert (predictions.species_ids == predictions.species_ids[0]).all()
    assert (
        predictions.species_ids[0].tolist() == species.nsmallest(30, "rank")["species_id"].tolist()
    )
    error = top_k_error(predictions.species_ids, tables.val["species_id"].to_numpy())
    assert error == pytest.approx(summary["val"]["constant_top30_error_sampled"])


def test_knn_votes_of_the_nearest_points_by_hand():
    # Species 3 lives around Montpellier, species 1 around Paris (and is more common).
    train = _points(
        [(43.6, 3.9), (43.61, 3.88), (43.62, 3.9), (48.85, 2.35), (48.86, 2.34), (48.8, 2.3)]
        + [(48.9, 2.4)] * 4,
        [3, 3, 3, 1, 1, 1] + [1] * 4,
    )
    species = _species(train, 5)
    query = _points([(43.605, 3.89), (48.85, 2.36)])
    settings = KnnSettings(n_neighbors=3, prior_weight=1.0)
    result = knn_predictions(train, {"q": query}, species, 5, settings)["q"]
    assert result.species_ids[:, 0].tolist() == [3, 1]
    # (3 votes + 1 x prior 0.3) / (3 + 1) for species 3 at the first point.
    assert result.scores[0, 0] == pytest.approx((3 + 0.3) / 4)
    # Species without a neighbour follow in prior order, then by id.
    assert result.species_ids[0].tolist() == [3, 1, 0, 2, 4]
    check_predictions(result, min_k=5)
    # More neighbours than train points: everybody votes.
    result = knn_predictions(train, {"q": query}, species, 5, KnnSettings(n_neighbors=50))["q"]
    assert result.species_ids[:, 0].tolist() == [1, 1]


def test_forest_maps_its_classes_back_to_species_ids():
    # Species ids 5, 17 and 42: the forest's columns 0, 1, 2 are not species 0, 1, 2.
    rng = np.random.default_rng(0)
    n = 300
    label = rng.choice([5, 17, 42], n)
    train = _points([(45.0 + rng.random(), 2.0 + rng.random()) for _ in range(n)], label)
    signal = np.select([label == 5, label == 17], [0.0, 10.0], 20.0)[:, None]
    values = signal + rng.random((n, len(ENV_VARIABLES)))  # every variable separates them
    env = pd.DataFrame(values, columns=list(ENV_VARIABLES))
    env.loc[::10, "bio_2"] = np.nan  # missing values are allowed
    env.insert(0, "observation_id", train["observation_id"])
    species = _species(train, 50)
    settings = ForestSettings(n_estimators=4, max_depth=3, features=("env",))
    sources = TabularSources(env, "env")
    result = random_forest_predictions(train, {"train": train}, sources, species, 30, settings)
    assert (result["train"].species_ids[:, 0] == label).all()
    check_predictions(result["train"], known_species=np.arange(50))
    with pytest.raises(InputDataError, match="env: no row for 1 observation"):
        random_forest_predictions(
            train, {"q": train}, TabularSources(env.iloc[1:], "env"), species, 30, settings
        )


def test_forest_on_the_tiny_demo_beats_the_constant(demo):
    tables, species, env, _ = demo
    result = random_forest_predictions(
        tables.train,
        {"val": tables.val},
        TabularSources(env, "env.csv"),
        species,
        30,
        ForestSettings(),
    )["val"]
    labels = tables.val["species_id"].to_numpy()
    constant = constant_predictions(species, tables.val["observation_id"].to_numpy(), 30)
    assert top_k_error(result.species_ids, labels) < top_k_error(constant.species_ids, labels)


def test_every_baseline_gives_a_valid_submission_on_the_tiny_demo(demo, tmp_path):
    tables, species, env, _ = demo
    test = tables.test
    test_ids = test["observation_id"].to_numpy()
    known = species["species_id"].to_numpy()
    k = 60  # the tiny demo has 60 species
    predictions = {
        "constant": constant_predictions(species, test_ids, k),
        "knn": knn_predictions(tables.train, {"test": test}, species, k, KnnSettings())["test"],
        "random_forest": random_forest_predictions(
            tables.train,
            {"test": test},
            TabularSources(env, "env.csv"),
            species,
            k,
            ForestSettings(),
        )["test"],
    }
    for name, prediction in predictions.items():
        check_predictions(prediction, name, known_species=known, expected_ids=test_ids)
        write_submission(tmp_path / f"{name}.csv", prediction, test_ids, known)
        check_submission_file(tmp_path / f"{name}.csv", test_ids, known)
        assert len((tmp_path / f"{name}.csv").read_text().splitlines()) == len(test_ids) + 1


def test_forest_features_include_patch_statistics_and_the_country(extracted):
    tables = {split: pd.read_parquet(path) for split, path in extracted["tables"].items()}
    patch_stats = pd.concat(pd.read_parquet(p) for p in extracted["patch_stats"].values())
    sources = TabularSources(pd.read_parquet(extracted["env"]), "env", patch_stats)
    groups = tuple(FOREST_FEATURE_GROUPS)  # the 1st place's forest: all of them
    matrix = feature_matrix(tables["val"], groups, sources)
    assert matrix.shape == (len(tables["val"]), len(feature_names(groups)))
    names = feature_names(groups)
    rows = patch_stats.set_index("observation_id").loc[tables["val"]["observation_id"]]
    for column in ("red_p50", "altitude_range", "landcover_3"):
        np.testing.assert_array_equal(matrix[:, names.index(column)], rows[column].to_numpy())
    us = tables["val"]["observation_id"].to_numpy() // 10_000_000 == 2
    np.testing.assert_array_equal(matrix[:, names.index("country_us")], us)
    with pytest.raises(ValueError, match="choose from"):
        ForestSettings(features=("env", "satellite"))


def test_refit_fits_test_on_train_and_val_and_val_on_train_only(demo):
    tables, _, _, _ = demo
    fitting = fitting_rows(tables.train, tables.val, refit=True)
    assert fitting["val"] is tables.train
    assert len(fitting["test"]) == len(tables.train) + len(tables.val)
    assert not set(fitting["test"]["observation_id"]) & set(tables.test["observation_id"])
    plain = fitting_rows(tables.train, tables.val, refit=False)
    assert plain["val"] is plain["test"] is tables.train


@pytest.mark.parametrize("family", list(BASELINES))
def test_every_baseline_family_saves_the_fit_behind_test_and_reloads_it(
    with_species, family, tmp_path
):
    """The family's rule job (run_baseline): val from a train-only fit, test (and the saved
    model: what the maps and its MLflow model reload) from train + val with refit; the
    reloaded model predicts test exactly as the job did."""
    record = BASELINES[family]
    values = {"refit": True} if "refit" in {f.name for f in fields(record.settings)} else {}
    if family == "random_forest":
        values.update(n_estimators=3, max_depth=5)
    settings = record.settings_from(values, f"baselines.{family}")
    module = import_module(record.implementation)
    tables = with_species["tables"]
    sources = TabularSources.read(with_species["env"]) if "env" in settings.reads else None
    outputs = {split: tmp_path / f"{split}.parquet" for split in ("val", "test")}
    model_path = tmp_path / "model.npz"
    run_baseline(
        module, settings, tables, with_species["species"], outputs, model_path, 40, 7, sources
    )
    species = read_species_table(with_species["species"])
    test = pd.read_parquet(tables["test"])
    reloaded = module.load(model_path, species, sources).predict(test, 40, 1000)
    written = read_predictions(outputs["test"])
    np.testing.assert_array_equal(reloaded.species_ids, written.species_ids)
    np.testing.assert_array_equal(reloaded.scores, written.scores)
    if settings.refit:
        train_only = module.fit(pd.read_parquet(tables["train"]), species, settings, sources)
        val = read_predictions(outputs["val"])
        expected = train_only.predict(pd.read_parquet(tables["val"]), 40, 1000)
        np.testing.assert_array_equal(val.species_ids, expected.species_ids)
        # Refitted on train + val: the test predictions differ from the train-only fit's.
        assert not np.array_equal(written.scores, train_only.predict(test, 40, 1000).scores)


def test_a_baseline_refuses_a_file_saved_by_another(with_species, tmp_path):
    """Each fit's file names its format (``save_fit``): the constant's loader refuses the
    kNN's file by name instead of reading its arrays as priors."""
    species = read_species_table(with_species["species"])
    train = pd.read_parquet(with_species["tables"]["train"])
    fitted = import_module(BASELINES["knn"].implementation).fit(train, species, KnnSettings())
    fitted.save(tmp_path / "knn.npz")
    constant = import_module(BASELINES["constant"].implementation)
    with pytest.raises(InputDataError, match="not a saved constant"):
        constant.load(tmp_path / "knn.npz", species)
