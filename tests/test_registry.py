"""MLflow: the submitted model registered as the champion, the observation tables a run
read as its inputs, a train run's system metrics (a sqlite store)."""

import json
import time

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd

from geolifeclef.evaluation.submission import CHAMPION_MODEL, CHAMPION_URI, register_champion
from geolifeclef.tracking.records import MODEL_URI_KEY
from geolifeclef.tracking.runs import start_run


class FirstSpecies(mlflow.pyfunc.PythonModel):
    """Predicts ``species`` for every row: which logged model answered is plain."""

    def __init__(self, species: int):
        self.species = species

    def predict(self, context, model_input, params=None):
        return pd.DataFrame(
            {"observation_id": model_input["observation_id"], "species_id": self.species}
        )


def _logged_model(uri, tmp_path, name, species):
    """A run with a logged pyfunc model; the metrics.json that names it, as an evaluation's."""
    with start_run(
        uri, "tests", f"train {name}", tmp_path / f"{name}.jsonl", artifact_root=tmp_path / "art"
    ) as tracker:
        model_uri = tracker.log_model(
            mlflow.pyfunc.log_model,
            name,
            python_model=FirstSpecies(species),
            pip_requirements=[],
        )
    return _metrics(tmp_path, name, 0.8 if species == 7 else 0.20499999999999996, model_uri)


def _metrics(tmp_path, name, error, model_uri=None):
    """An evaluation's metrics.json, naming the logged model (None: logged offline)."""
    path = tmp_path / f"{name}-metrics.json"
    path.write_text(json.dumps({"top30_error": error, MODEL_URI_KEY: model_uri}))
    return path


def test_the_champion_is_the_submitted_model_and_moves_with_the_next_submission(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _logged_model(uri, tmp_path, "env_mlp", 7)
    second = _logged_model(uri, tmp_path, "stats_mlp", 9)
    rows = pd.DataFrame({"observation_id": [10000001, 10000002]})

    version = register_champion(uri, "env_mlp", first, "parent1")
    mlflow.set_tracking_uri(uri)
    assert mlflow.pyfunc.load_model(CHAMPION_URI).predict(rows)["species_id"].tolist() == [7, 7]
    client = mlflow.MlflowClient()
    registered = client.get_model_version(CHAMPION_MODEL, version)
    assert registered.tags == {
        "glc.model": "env_mlp",
        "val_top30_error": "0.8",
        "glc.invocation_run_id": "parent1",
    }
    # The registry page says what the model is and how to load it.
    assert registered.description.startswith("env_mlp (model): val top-30 error 0.8;")
    assert CHAMPION_URI in client.get_registered_model(CHAMPION_MODEL).description

    assert register_champion(uri, "stats_mlp", second, None) == "2"
    mlflow.set_tracking_uri(uri)
    second_version = mlflow.MlflowClient().get_model_version(CHAMPION_MODEL, "2")
    assert second_version.tags["val_top30_error"] == "0.205"  # 0.20499999999999996, cleaned
    assert mlflow.pyfunc.load_model(CHAMPION_URI).predict(rows)["species_id"].tolist() == [9, 9]


def test_a_model_logged_offline_leaves_the_champion_as_it_was(tmp_path, caplog):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _logged_model(uri, tmp_path, "env_mlp", 7)
    assert register_champion(uri, "env_mlp", first, None) == "1"
    offline = _metrics(tmp_path, "knn", 0.5)
    assert register_champion(uri, "knn", offline, None) is None
    assert "knn has no MLflow model (MLflow could not record runs when it was evaluated)" in (
        caplog.text
    )
    mlflow.set_tracking_uri(uri)
    champion = mlflow.MlflowClient().get_model_version_by_alias(CHAMPION_MODEL, "champion")
    assert str(champion.version) == "1"


def test_a_run_records_the_tables_it_read_and_its_system_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr("geolifeclef.tracking.runs.SYSTEM_METRICS_SECONDS", 1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    table = tmp_path / "train.parquet"
    frame = pd.DataFrame({"observation_id": np.arange(5), "species_id": [1, 2, 3, 2, 1]})
    frame.to_parquet(table)
    with start_run(
        uri, "tests", "train", tmp_path / "m.jsonl", artifact_root=tmp_path, system_metrics=True
    ) as tracker:
        tracker.log_input(table, "training")
        run_id = tracker.run_id
        mlflow.set_tracking_uri(uri)
        deadline = time.monotonic() + 30  # the monitor's first sample, a second in
        while time.monotonic() < deadline and not any(
            k.startswith("system/") for k in mlflow.get_run(run_id).data.metrics
        ):
            time.sleep(0.5)
    run = mlflow.get_run(run_id)
    (logged,) = run.inputs.dataset_inputs
    assert logged.dataset.name == "train" and str(table) in logged.dataset.source
    assert json.loads(logged.dataset.profile)["num_rows"] == 5
    assert [(t.key, t.value) for t in logged.tags] == [("mlflow.data.context", "training")]
    assert any(k.startswith("system/cpu") for k in run.data.metrics)


def test_a_run_shorter_than_the_sampling_interval_has_system_metrics(tmp_path):
    from geolifeclef.tracking.runs import SYSTEM_METRICS_SECONDS

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    with start_run(
        uri, "tests", "short", tmp_path / "m.jsonl", artifact_root=tmp_path, system_metrics=True
    ) as tracker:
        run_id = tracker.run_id
    assert time.monotonic() - started < SYSTEM_METRICS_SECONDS
    mlflow.set_tracking_uri(uri)
    logged = mlflow.get_run(run_id).data.metrics
    assert any(k.startswith("system/cpu") for k in logged), logged
    assert any(k.startswith("system/system_memory") for k in logged), logged
