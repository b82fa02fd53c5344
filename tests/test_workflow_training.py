"""End to end: experiments trained, predicted, evaluated, tracked in MLflow, and rerun
only where their settings changed."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workdir, on_demo, read_config, run_snakemake, tracking_uri_kept
from faults_helpers import start_mlflow_server, stop

from geolifeclef.predictions.table import read_predictions
from geolifeclef.settings.inputs import MODEL_KINDS

RELOAD_MARKER = "<!-- reload-snippet: run by tests/test_workflow_training.py -->"
CHAMPION_MARKER = "<!-- champion-snippet: run by tests/test_workflow_training.py -->"
CONFIG = read_config("training")


def _jobs(result) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a dry run."""
    text = result.stdout + result.stderr
    table = text.split("Job stats:")[1].split("total")[0]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def _sweep_members(trained: Path) -> list[str]:
    """The trained members of the config's sweep ``lr``, by name."""
    return sorted(
        p.name for p in (trained / "results" / "models").iterdir() if p.name.startswith("lr-")
    )


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 that the workflow logs to."""
    process, port = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    uri = f"http://127.0.0.1:{port}"
    with tracking_uri_kept():
        mlflow.set_tracking_uri(uri)  # for this module's reads (models:/ and runs:/ URIs)
        yield uri
    stop(process, signal.SIGTERM)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_workdir, mlflow_server):
    config = {**CONFIG, "mlflow": {"tracking_uri": mlflow_server}}
    workdir = copy_workdir(demo_workdir, tmp_path_factory.mktemp("training"), config)
    # Up to 40 minutes: the tiny workflow takes 5 on 2 idle cores, 5 times that on a busy
    # shared machine. The sweep rides along on the same baselines and leaderboard.
    result = run_snakemake(workdir, "all", "sweeps", timeout=2400)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.fixture(scope="module")
def runs(trained, mlflow_server):
    """The runs of the invocation that built ``trained``: its parent run first, then the
    parent's children by name."""
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("geolifeclef")
    [parent] = client.search_runs(
        [experiment.experiment_id],
        f"tags.`glc.kind` = 'workflow' and tags.`glc.workdir` = '{trained.resolve()}'",
    )
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return parent, {run.info.run_name: run for run in children}


@pytest.mark.slow
def test_experiments_run_through_to_the_submission(trained):
    results = trained / "results"
    for name in ("env_mlp", "fusion_cnn", "blend_mlp_fusion"):
        for split in ("val", "test"):
            predictions = read_predictions(results / "predictions" / name / f"{split}.parquet")
            assert predictions.k == 30
    board = (results / "evaluation" / "leaderboard.md").read_text()
    assert "| env_mlp | experiment |" in board and "| fusion_cnn | experiment |" in board
    final = (results / "submission" / "final.csv").read_text()
    assert final == (results / "submission" / "blend_mlp_fusion.csv").read_text()
    checkpoints = list((results / "models" / "fusion_cnn" / "checkpoints").glob("*.pt"))
    assert checkpoints


def test_the_configs_have_an_experiment_of_every_kind():
    """Every kind runs in some edition's demo: GLC 2022's patches and values, the survey
    editions' cubes and their multimodal fusion."""
    from geolifeclef.editions import EDITIONS

    kinds = set()
    for edition in EDITIONS.values():
        config = yaml.safe_load((REPO / edition.config_file).read_text())
        kinds |= {entry["model"]["kind"] for entry in config["experiments"].values()}
    assert kinds == set(MODEL_KINDS)


@pytest.mark.slow
def test_every_model_kind_trains_predicts_and_is_evaluated(trained):
    results = trained / "results"
    board = pd.read_parquet(results / "evaluation" / "leaderboard.parquet").set_index("model")
    for name in CONFIG["experiments"]:
        for split in ("val", "test"):
            predictions = read_predictions(results / "predictions" / name / f"{split}.parquet")
            assert len(predictions) > 0 and predictions.k == CONFIG["predictions"]["top_k"]
        assert board.loc[name, "kind"] == "experiment"


@pytest.mark.slow
def test_every_train_and_evaluate_job_is_an_mlflow_run(runs, mlflow_server):
    parent, children = runs
    assert parent.info.status == "FINISHED"
    assert {"train env_mlp", "train fusion_cnn", "evaluate env_mlp", "evaluate knn"} <= set(
        children
    )
    train = children["train env_mlp"]
    assert train.data.params["train.epochs"] == "2"
    assert train.data.tags["snakemake.rule"] == "train_model"
    assert (
        len(train.data.tags["git_commit"]) >= 40 and len(train.data.tags["data_fingerprint"]) == 16
    )
    client = mlflow.MlflowClient(mlflow_server)
    history = client.get_metric_history(train.info.run_id, "val_top30_error")
    assert [m.step for m in history] == [1, 2]
    for metric in ("train_loss", "learning_rate", "samples_per_second", "val_top1_error"):
        assert client.get_metric_history(train.info.run_id, metric)
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id)}
    assert {"history.json", "settings.json", "rank_frequency.png", "learning_curve.png"} <= (
        artifacts
    )


@pytest.mark.slow
def test_the_experiment_opens_on_its_runs(trained, mlflow_server):
    experiment = mlflow.MlflowClient(mlflow_server).get_experiment_by_name("geolifeclef")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_the_parent_run_says_what_was_built_from_what(runs, trained, mlflow_server):
    parent, _ = runs
    assert re.fullmatch(r"all sweeps \d{4}-\d\d-\d\d \d\d:\d\d", parent.info.run_name)
    params = parent.data.params
    assert params["targets"] == "all sweeps"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", params["git_commit"])
    assert params["config_files"].endswith("config.yaml")
    # The sweep's members are experiments like any other.
    experiments = sorted(CONFIG["experiments"]) + _sweep_members(trained)
    assert params["experiments"] == ", ".join(experiments)
    assert params["demo.scale"] == "tiny" and params["submission.model"] == "blend_mlp_fusion"
    assert not [name for name in params if name.startswith("experiments.")]
    config = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/config.yaml"))
    assert config["experiments"]["fusion_cnn"]["model"]["cnn"]["width"] == 8
    assert config["mlflow"]["tracking_uri"] == mlflow_server
    board = {
        a.path
        for a in mlflow.MlflowClient(mlflow_server).list_artifacts(
            parent.info.run_id, "leaderboard"
        )
    }
    assert {"leaderboard/leaderboard.html", "leaderboard/leaderboard.png"} <= board


@pytest.mark.slow
def test_train_and_evaluate_runs_name_each_quantity_once(runs, trained, mlflow_server):
    _, children = runs
    client = mlflow.MlflowClient(mlflow_server)
    train, evaluate = children["train env_mlp"], children["evaluate env_mlp"]
    shared = {f"val_top{k}_error" for k in (1, 5, 10, 30)}
    assert shared <= set(train.data.metrics) and shared <= set(evaluate.data.metrics)
    assert {"val_macro_top30_error", "val_tail_top30_error"} <= set(evaluate.data.metrics)
    # The runs table shows the kept epoch of a train run under its own name.
    summary = json.loads((trained / "results/models/env_mlp/history.json").read_text())
    curve = {
        m.step: m.value for m in client.get_metric_history(train.info.run_id, "val_top30_error")
    }
    assert train.data.metrics["best_val_top30_error"] == min(curve.values())
    assert train.data.metrics["best_epoch"] == summary["best_epoch"]
    # The evaluate run's point lands on the train run's curve, at the kept epoch.
    [point] = client.get_metric_history(evaluate.info.run_id, "val_top30_error")
    assert point.step == summary["best_epoch"]
    n_val = len(pd.read_parquet(trained / "results/observations/val.parquet"))
    assert abs(point.value - curve[point.step]) <= 1 / n_val + 1e-9


@pytest.mark.slow
def test_reference_figures_are_logged_once_on_the_parent(runs):
    parent, children = runs
    references = [
        name for name in parent.data.metrics if name.split("/")[0] in ("constant", "bayes")
    ]
    assert {"constant/val_top30_error", "bayes/val_top30_error"} <= set(references)
    for run in children.values():
        assert not [m for m in run.data.metrics if m.startswith(("constant", "bayes"))]


@pytest.mark.slow
def test_evaluate_runs_say_what_they_evaluate_and_with_which_settings(runs, trained):
    _, children = runs
    for experiment in ("env_mlp", "fusion_cnn"):
        train, evaluate = children[f"train {experiment}"], children[f"evaluate {experiment}"]
        summary = json.loads((trained / f"results/models/{experiment}/history.json").read_text())
        assert summary["mlflow_run_id"] == train.info.run_id
        assert evaluate.data.tags["evaluated_run_id"] == train.info.run_id
        assert evaluate.data.tags["evaluated_model_uri"] == summary["mlflow_model_uri"]
        logged = mlflow.get_logged_model(summary["mlflow_model_uri"].removeprefix("models:/"))
        assert logged.name == experiment and logged.source_run_id == train.info.run_id
        params = evaluate.data.params
        assert params["kind"] == "experiment" and params["tta"] == "False"
        assert params["refit"] == "False"
        # The model settings its train run logs, not its training ones.
        shaping = {k: v for k, v in train.data.params.items() if k.startswith("model.")}
        assert {k: v for k, v in params.items() if k.startswith("model.")} == shaping
        assert not [k for k in params if k.startswith("train.")]
    assert "evaluated_run_id" not in children["evaluate knn"].data.tags
    assert children["evaluate knn"].data.params["knn.n_neighbors"] == "100"
    forest = children["evaluate random_forest"].data.params
    assert {"random_forest.n_estimators", "random_forest.max_depth"} <= set(forest)
    blend = children["evaluate blend_mlp_fusion"].data.params
    assert blend["weight.env_mlp"] == "0.5" and blend["members"] == "env_mlp, fusion_cnn"
    # An MLP run logs no CNN or augmentation settings; the fusion run does.
    mlp, fusion = children["train env_mlp"].data.params, children["train fusion_cnn"].data.params
    assert not [p for p in mlp if p.startswith(("model.cnn.", "train.augment."))]
    assert "model.cnn.width" in fusion and "train.augment.flip" in fusion


def _readme_snippet(marker: str = RELOAD_MARKER) -> str:
    """A snippet of docs/experiments.md: the python block after its marker."""
    readme = (REPO / "docs" / "experiments.md").read_text()
    after = readme.split(marker, 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def _run_snippet(marker: str, check: str, workdir: Path, tracking_uri: str) -> str:
    """Run a docs snippet and ``check`` (more Python) in ``workdir``, as a user would, with
    the workflow's tracking server; its standard output."""
    result = subprocess.run(
        [sys.executable, "-c", _readme_snippet(marker) + check],
        cwd=workdir,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_the_readme_reloads_a_model_and_predicts_the_top_30(trained, mlflow_server):
    check = (
        "\nimport sys\n"
        "assert list(top30.columns) == ['observation_id', 'species_ids', 'scores']\n"
        "assert len(top30) == 5 and all(len(ids) == 30 for ids in top30['species_ids'])\n"
        "print('package from', sys.modules['geolifeclef'].__file__)\n"
    )
    shown = _run_snippet(RELOAD_MARKER, check, trained, mlflow_server)
    # The model brought its own copy of the package: no install of this repository needed.
    source = shown.split("package from ")[1].strip()
    assert not source.startswith(str(REPO)) and "/code/geolifeclef/" in source


@pytest.mark.slow
def test_the_champion_loads_from_the_registry_and_predicts_what_was_submitted(
    trained, mlflow_server
):
    """The submitted model is a blend (of an MLP and a fusion CNN): the docs' snippet loads
    it from the Model Registry, and its top 30 of the first test rows are final.csv's."""
    check = (
        "\nimport json\n"
        "ids = top30['observation_id'].tolist()\n"
        "sets = [' '.join(map(str, species)) for species in top30['species_ids']]\n"
        "print('ANSWER', json.dumps([ids, sets]))\n"
    )
    shown = _run_snippet(CHAMPION_MARKER, check, trained, mlflow_server)
    ids, sets = json.loads(shown.split("ANSWER ", 1)[1])
    final = pd.read_csv(trained / "results" / "submission" / "final.csv")
    test = pd.read_parquet(trained / "results" / "observations" / "test.parquet").head(5)
    assert ids == test["observation_id"].tolist()
    assert sets == final.set_index("Id").loc[ids, "Predicted"].tolist()
    client = mlflow.MlflowClient(mlflow_server)
    version = client.get_model_version_by_alias("geolifeclef-submission", "champion")
    assert version.tags["glc.model"] == "blend_mlp_fusion"


@pytest.mark.slow
def test_changing_one_experiment_reruns_only_its_chain(trained):
    changed = on_demo(CONFIG)
    changed["experiments"]["env_mlp"]["train"]["learning_rate"] = 0.01
    (trained / "changed.yaml").write_text(yaml.safe_dump(changed, sort_keys=True))
    result = run_snakemake(
        trained, "submission", "--dry-run", "--configfile", str(trained / "changed.yaml")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(result)
    assert jobs["train_model"] == 1 and jobs["predict_model"] == 1
    assert "results/models/env_mlp/model.pt" in result.stdout
    assert "results/models/fusion_cnn/model.pt" not in result.stdout
    for upstream in ("generate_demo_dataset", "extract_env", "cache_patches", "predict_knn"):
        assert upstream not in jobs


@pytest.mark.slow
def test_test_time_augmentation_repredicts_without_retraining(trained, tmp_path):
    workdir = tmp_path / "tta"
    shutil.copytree(trained, workdir)  # the other tests keep their own state
    changed = on_demo(CONFIG)
    changed["experiments"]["fusion_cnn"]["tta"] = True
    (workdir / "tta.yaml").write_text(yaml.safe_dump(changed))
    dry = run_snakemake(
        workdir, "submission", "--dry-run", "--configfile", str(workdir / "tta.yaml")
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = _jobs(dry)
    assert "train_model" not in jobs and jobs["predict_model"] == 1
    model = workdir / "results" / "models" / "fusion_cnn" / "model.pt"
    trained_at = model.stat().st_mtime_ns
    result = run_snakemake(workdir, "submission", "--configfile", str(workdir / "tta.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert model.stat().st_mtime_ns == trained_at
    log = (workdir / "logs" / "predict_model" / "fusion_cnn.log").read_text()
    assert "test-time augmentation: 8 views" in log
    # The averaged views give other probabilities than the plain model.
    path = Path("results") / "predictions" / "fusion_cnn" / "val.parquet"
    plain, averaged = read_predictions(trained / path), read_predictions(workdir / path)
    assert not np.allclose(plain.scores, averaged.scores)


@pytest.mark.slow
def test_a_sweep_runs_end_to_end_and_is_summarised(trained):
    members = _sweep_members(trained)
    assert len(members) == 2
    table = (trained / "results" / "sweeps" / "lr" / "members.md").read_text()
    assert "train.learning_rate" in table and all(m in table for m in members)
    assert (trained / "results" / "sweeps" / "lr" / "settings.png").stat().st_size > 5_000
    board = (trained / "results" / "evaluation" / "leaderboard.md").read_text()
    assert "## Sweep `lr` (base experiment `env_mlp`)" in board
    # The blend of the best member (lr:top1) equals that member's predictions.
    frame = pd.read_parquet(trained / "results" / "evaluation" / "leaderboard.parquet")
    frame = frame.set_index("model")
    best = min(members, key=lambda m: (frame.loc[m, "top30_error"], m))
    blend = pd.read_parquet(trained / "results" / "predictions" / "lr_best" / "val.parquet")
    member = pd.read_parquet(trained / "results" / "predictions" / best / "val.parquet")
    key = "observation_id"
    pd.testing.assert_frame_equal(
        blend.sort_values(key).reset_index(drop=True),
        member.sort_values(key).reset_index(drop=True),
    )


@pytest.mark.slow
def test_sweep_members_nest_under_one_sweep_run_in_mlflow(runs, mlflow_server):
    _, children = runs
    sweep = children["sweep lr"]
    assert sweep.data.tags["glc.kind"] == "sweep"
    client = mlflow.MlflowClient(mlflow_server)
    members = client.search_runs(
        [sweep.info.experiment_id], f"tags.`mlflow.parentRunId` = '{sweep.info.run_id}'"
    )
    assert len(members) == 2
    assert all(run.info.run_name.startswith("train lr-") for run in members)
    assert {run.data.params["train.learning_rate"] for run in members} == {"0.001", "0.01"}


@pytest.mark.slow
def test_changing_one_sweep_value_retrains_that_member_only(trained):
    changed = on_demo(CONFIG)
    changed["sweeps"]["lr"]["grid"]["train.learning_rate"] = [0.001, 0.02]
    (trained / "changed-sweep.yaml").write_text(yaml.safe_dump(changed))
    result = run_snakemake(
        trained, "sweep_lr", "--dry-run", "--configfile", str(trained / "changed-sweep.yaml")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(result)
    assert jobs["train_model"] == 1 and jobs["predict_model"] == 1
    retrained = set(re.findall(r"results/models/(lr-\w+)/model.pt", result.stdout))
    assert len(retrained) == 1 and not (trained / "results" / "models" / retrained.pop()).exists()
