"""MLflow tracking: a real local server, a sqlite store, and an unreachable server."""

import json
import signal
import sys
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
from faults_helpers import free_port, start_mlflow_server, stop

from geolifeclef.models.networks import build_model
from geolifeclef.settings.configs import ModelConfig
from geolifeclef.tracking.runs import (
    EXPERIMENT_KIND_TAG,
    LOGGED_LOCALLY_TAG,
    MODEL_TRAINING_KIND,
    attach_run,
    flatten,
    redact_config,
    start_run,
    sync_local_log,
)

MLFLOW = Path(sys.executable).with_name("mlflow")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 with a sqlite store; stopped after the module."""
    process, port = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield f"http://127.0.0.1:{port}"
    stop(process, signal.SIGTERM)


def _tiny_training(tracker):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", n_classes=5, n_tabular=3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 3), torch.randint(0, 5, (32,))
    tracker.log_params({"train": {"lr": 0.1, "epochs": 2}, "api_token": "s3cret"})
    tracker.set_tags({"snakemake.rule": "train_model", "wildcards.experiment": "tiny"})
    for epoch in (1, 2):
        loss = torch.nn.functional.cross_entropy(model({"tabular": x}), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        metrics = {"train_loss": float(loss.detach()), "val_top30_error": 0.5 / epoch}
        tracker.log_metrics(metrics, epoch)
    model.eval()
    tracker.log_model(
        mlflow.pytorch.log_model,
        "tiny",
        pytorch_model=model,
        serialization_format="pickle",
        pip_requirements=["torch"],
    )
    return model, x


def test_training_run_lands_on_a_real_server(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with start_run(mlflow_server, "tests", "tiny-run", tmp_path / "metrics.jsonl") as tracker:
        assert tracker.online
        model, x = _tiny_training(tracker)
        run_id = tracker.run_id
    mlflow.set_tracking_uri(mlflow_server)
    runs = mlflow.search_runs(
        experiment_names=["tests"], filter_string="tags.`snakemake.rule` = 'train_model'"
    )
    assert run_id in set(runs["run_id"])
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.1"
    assert "api_token" not in run.data.params  # secrets never logged
    history = client.get_metric_history(run_id, "val_top30_error")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    [logged] = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string="name = 'tiny'", output_format="list"
    )
    assert logged.source_run_id == run_id
    reloaded = mlflow.pytorch.load_model(logged.model_uri)
    with torch.no_grad():
        torch.testing.assert_close(reloaded({"tabular": x}), model({"tabular": x}))


def test_a_run_whose_server_was_busy_mid_run_still_ends(mlflow_server, tmp_path, monkeypatch):
    """A server too busy to answer one health check (loaded cores) turns the run's logging
    local; at the run's end it answers again: the run ends FINISHED, and its tag names
    the local log that holds the rest (it stayed RUNNING for good before)."""
    from geolifeclef.tracking import runs

    local = tmp_path / "metrics.jsonl"
    answers = runs._health_answers
    with start_run(mlflow_server, "tests", "busy-server", local) as tracker:
        run_id = tracker.run_id
        tracker.log_metrics({"val_top30_error": 0.5}, 1)
        monkeypatch.setattr(runs, "_health_answers", lambda uri, timeout: False)
        tracker.log_metrics({"val_top30_error": 0.25}, 2)  # the server does not answer
        assert not tracker.online
        monkeypatch.setattr(runs, "_health_answers", answers)  # and answers again
    run = mlflow.MlflowClient(mlflow_server).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[LOGGED_LOCALLY_TAG] == str(local)
    assert run.data.metrics == {"val_top30_error": 0.5}  # step 2 waits in the local log
    records = [json.loads(line) for line in local.read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "metrics"] == [1, 2]


def test_unreachable_server_keeps_metrics_locally_and_says_how_to_sync(tmp_path, caplog):
    local = tmp_path / "metrics.jsonl"
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with start_run(uri, "tests", "offline", local, timeout=1.0) as tracker:
        assert not tracker.online
        _tiny_training(tracker)
    assert "unreachable" in caplog.text and "geolifeclef sync-runs" in caplog.text
    records = [json.loads(line) for line in local.read_text().splitlines()]
    metrics = [r for r in records if r["kind"] == "metrics"]
    assert [m["metrics"]["val_top30_error"] for m in metrics] == [0.5, 0.25]


def test_local_log_syncs_into_mlflow_later(tmp_path):
    local = tmp_path / "metrics.jsonl"
    with start_run("http://127.0.0.1:9", "tests", "offline", local, timeout=0.5) as tracker:
        _tiny_training(tracker)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = sync_local_log(local, uri, "synced")
    mlflow.set_tracking_uri(uri)
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_top30_error")
    assert [m.value for m in history] == [0.5, 0.25]


def test_metrics_are_logged_without_float_noise(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    local = tmp_path / "m.jsonl"
    errors = {"val_top30_error": 1 - 773 / 1000, "bayes/val_top30_error": 1 - 848 / 1000}
    assert errors["val_top30_error"] == 0.22699999999999998  # what a mean of hits gives
    archive = 1 - 31_234 / 40_080
    with start_run(uri, "tests", "clean", local, artifact_root=tmp_path / "art") as tracker:
        tracker.log_metrics({**errors, "archive_error": archive, "loss": 9.87654321e-5})
        run_id = tracker.run_id
    mlflow.set_tracking_uri(uri)
    logged = mlflow.MlflowClient().get_run(run_id).data.metrics
    assert logged["val_top30_error"] == 0.227
    assert logged["bayes/val_top30_error"] == 0.152
    assert logged["archive_error"] == 0.220709 and abs(logged["archive_error"] - archive) < 1e-6
    assert logged["loss"] == 9.87654e-5
    written = [json.loads(line) for line in local.read_text().splitlines()]
    assert any(w.get("metrics") == logged for w in written)  # the local log, the same


def test_sqlite_store_and_parent_run(tmp_path, monkeypatch):
    from geolifeclef.settings.tracking import PARENT_RUN_ENV
    from geolifeclef.tracking.invocation import start_parent_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = start_parent_run(uri, "tests", "workflow")
    monkeypatch.setenv(PARENT_RUN_ENV, parent)
    with start_run(
        uri, "tests", "child", tmp_path / "m.jsonl", artifact_root=tmp_path / "art"
    ) as tracker:
        tracker.log_metrics({"x": 1.0}, 1)
        child = tracker.run_id
    mlflow.set_tracking_uri(uri)
    assert mlflow.MlflowClient().get_run(child).data.tags["mlflow.parentRunId"] == parent


def test_flatten_drops_secrets_and_credentials():
    flat = flatten({"mlflow": {"tracking_uri": "https://me:pw@host/x", "password": "p"}, "a": 1})
    assert flat == {"mlflow.tracking_uri": "https://host/x", "a": "1"}


def test_flatten_and_redact_config_agree():
    config = {"mlflow": {"tracking_uri": "https://me:pw@host/x", "api_key": "k"}, "a": [1, 2]}
    assert redact_config(config) == {"mlflow": {"tracking_uri": "https://host/x"}, "a": [1, 2]}
    assert flatten(redact_config(config)) == flatten(config)


def test_experiments_open_on_their_runs(mlflow_server, tmp_path):
    """MLflow 3's UI shows an experiment's runs first only when it is tagged as model
    training: new experiments get the tag, an existing one without it gets it added."""
    client = mlflow.MlflowClient(mlflow_server)
    with start_run(mlflow_server, "tagged-new", "run", tmp_path / "a.jsonl"):
        pass
    created = client.get_experiment_by_name("tagged-new")
    assert created.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    older = client.create_experiment("made-before", artifact_location=tmp_path.as_uri())
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(older).tags
    with start_run(mlflow_server, "made-before", "run", tmp_path / "b.jsonl"):
        pass
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_attached_run_receives_metrics_and_stays_open(mlflow_server, tmp_path):
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.create_experiment("attach", artifact_location=tmp_path.as_uri())
    run = client.create_run(experiment, run_name="parent")
    with attach_run(mlflow_server, run.info.run_id, tmp_path / "p.jsonl") as tracker:
        tracker.log_metrics({"constant/val_top30_error": 0.8})
        tracker.log_text("a: 1\n", "config.yaml")
    after = client.get_run(run.info.run_id)
    assert after.info.status == "RUNNING"
    assert after.data.metrics == {"constant/val_top30_error": 0.8}
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]
    with attach_run(mlflow_server, None, tmp_path / "p.jsonl") as tracker:
        assert not tracker.online  # no parent run: nothing to log to, nothing fails
        tracker.log_metrics({"x": 1.0})


def test_a_sqlite_store_keeps_its_artifacts_beside_it_whatever_the_working_folder(
    tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a job or a notebook started from another folder
    store = tmp_path / "workflow" / "mlflow.db"
    store.parent.mkdir()
    uri = f"sqlite:///{store}"
    with start_run(uri, "tests", "beside", tmp_path / "metrics.jsonl") as tracker:
        assert tracker.online
        _tiny_training(tracker)
        tracker.log_text("kept beside the store", "note.txt")
        run_id = tracker.run_id
    mlflow.set_tracking_uri(uri)
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.artifact_uri.startswith((store.parent / "mlartifacts").as_uri())
    assert list((store.parent / "mlartifacts").rglob("note.txt"))
    assert not list(elsewhere.iterdir())
