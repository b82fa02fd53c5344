"""Baselines and blends logged as MLflow models: reloaded, they predict what their rules
wrote, from observation rows, whatever the order of the rows."""

from importlib import import_module

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import tracking_uri_kept

from geolifeclef.baselines.fitting import run_baseline
from geolifeclef.baselines.forest import TabularSources
from geolifeclef.predictions.table import blend, read_predictions
from geolifeclef.serving.models import log_baseline_model, log_blend_model
from geolifeclef.settings.families import BASELINES
from geolifeclef.tracking.runs import start_run

FAMILY_SETTINGS = {
    "constant": {},
    "knn": {"n_neighbors": 20, "refit": True},
    "random_forest": {"n_estimators": 3, "max_depth": 6},
}


@pytest.fixture(scope="module")
def logged(with_species, tmp_path_factory):
    """Each baseline fitted by its job's code, and logged (with a blend of two of them)
    into one evaluate-like run of a sqlite store."""
    folder = tmp_path_factory.mktemp("served-baselines")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tables = with_species["tables"]
    env = str(with_species["env"])
    uris, tests = {}, {}
    with start_run(uri, "tests", "evaluate", folder / "m.jsonl", artifact_root=folder) as tracker:
        for name, values in FAMILY_SETTINGS.items():
            record = BASELINES[name]
            settings = record.settings_from(values, f"baselines.{name}")
            reads_env = "env" in settings.reads
            outputs = {split: folder / name / f"{split}.parquet" for split in ("val", "test")}
            model = str(folder / name / "model.npz")
            run_baseline(
                import_module(record.implementation),
                settings,
                tables,
                with_species["species"],
                outputs,
                model,
                40,
                500,
                TabularSources.read(env) if reads_env else None,
            )
            tests[name] = read_predictions(outputs["test"])
            uris[name] = log_baseline_model(
                tracker,
                name,
                name,
                model,
                str(with_species["species"]),
                env if reads_env else None,
                [],
                str(tables["val"]),
                500,
            )
        weights = {"knn": 0.7, "random_forest": 0.3, "constant": 0.0}
        uris["blend"] = log_blend_model(
            tracker,
            "blend",
            weights,
            uris,
            {name: 40 for name in uris},
            {},
            40,
            str(tables["val"]),
        )
    tests["blend"] = blend([tests["knn"], tests["random_forest"]], [0.7, 0.3], 40)
    with tracking_uri_kept():
        mlflow.set_tracking_uri(uri)
        yield uris, tests, pd.read_parquet(tables["test"])


@pytest.mark.parametrize("name", [*FAMILY_SETTINGS, "blend"])
def test_a_logged_baseline_or_blend_predicts_what_its_rule_wrote(logged, name):
    uris, tests, test = logged
    model = mlflow.pyfunc.load_model(uris[name])
    rows = test.sample(frac=1.0, random_state=1).head(40)  # any order, any subset
    answer = model.predict(rows[["observation_id", "latitude", "longitude"]])
    assert answer["observation_id"].tolist() == rows["observation_id"].tolist()
    expected = tests[name].aligned_to(rows["observation_id"].to_numpy())
    np.testing.assert_array_equal(np.stack(answer["species_ids"]), expected.species_ids[:, :30])
    np.testing.assert_allclose(np.stack(answer["scores"]), expected.scores[:, :30], rtol=1e-6)
    top5 = model.predict(rows.head(3), params={"top_k": 5})
    assert [len(ids) for ids in top5["species_ids"]] == [5, 5, 5]


def test_a_blend_whose_member_has_no_logged_model_is_not_logged(logged, tmp_path, caplog):
    uris, _, test = logged
    uri = mlflow.get_tracking_uri()
    with start_run(uri, "tests", "evaluate", tmp_path / "m.jsonl", artifact_root=tmp_path) as t:
        missing = {"knn": uris["knn"], "random_forest": None}
        found = log_blend_model(
            t, "b", {"knn": 1, "random_forest": 1}, missing, {"knn": 40, "random_forest": 40},
            {}, 40, "unused",
        )  # fmt: skip
        elsewhere = {"knn": uris["knn"], "random_forest": "models:/m-0123456789abcdef"}
        moved = log_blend_model(
            t, "b", {"knn": 1, "random_forest": 1}, elsewhere, {"knn": 40, "random_forest": 40},
            {}, 40, "unused",
        )  # fmt: skip
    assert found is None and "members ['random_forest'] have no logged MLflow model" in caplog.text
    assert moved is None and "cannot be loaded" in caplog.text


def test_the_requirements_are_checked_without_mlflows_scan_of_every_installed_file(
    monkeypatch,
):
    """MLflow's map of installed files to packages took 3 s in each process that logs or
    loads a model; the check that a model's pinned requirements are installed stays."""
    from mlflow.utils import requirements_utils

    import geolifeclef.serving.models as served

    def scan():
        raise AssertionError("every installed file was scanned")

    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions", scan)
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    served.skip_mlflow_package_scan()
    pins = served.serving_requirements()
    assert "numpy" in {pin.split("==")[0] for pin in pins}
    assert [requirements_utils._check_requirement_satisfied(pin) for pin in pins] == [None] * len(
        pins
    )
    mismatch = requirements_utils._check_requirement_satisfied("numpy==0.0.1")
    assert mismatch is not None and mismatch.installed_version == np.__version__
