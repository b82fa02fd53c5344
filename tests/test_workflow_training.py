"""End to end: experiments trained, predicted, evaluated, tracked in MLflow, and rerun
only where their settings changed."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_snakemake

from geolifeclef.predictions import read_predictions

CONFIG = {
    "demo": {"scale": "tiny", "seed": 5},
    "predictions": {"top_k": 30},
    "experiments": {
        "env_mlp": {
            "model": {"kind": "mlp", "tabular": ["env", "coordinates"]},
            "train": {"epochs": 2, "batch_size": 64},
        },
        "fusion_cnn": {
            "model": {
                "kind": "fusion",
                "modalities": ["rgb", "near_ir", "altitude", "landcover"],
                "tabular": ["env", "coordinates", "landcover_shares", "altitude_stats"],
                "cnn": {"backbone": "small", "width": 8, "input_size": 16},
            },
            "train": {"epochs": 2, "batch_size": 64},
        },
    },
    "blends": {"blend_mlp_fusion": {"env_mlp": 0.5, "fusion_cnn": 0.5}},
    "submission": {"model": "blend_mlp_fusion"},
}


def _jobs(result) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a dry run."""
    text = result.stdout + result.stderr
    table = text.split("Job stats:")[1].split("total")[0]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("training")
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    result = run_snakemake(workdir, "all")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


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


@pytest.mark.slow
def test_every_train_and_evaluate_job_is_an_mlflow_run(trained):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{trained / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["geolifeclef"])
    names = set(runs["tags.mlflow.runName"])
    assert {"train env_mlp", "train fusion_cnn", "evaluate env_mlp", "evaluate knn"} <= names
    parents = runs[runs["tags.glc.kind"] == "workflow"]
    assert len(parents) == 1 and (parents["status"] == "FINISHED").all()
    children = runs[runs["tags.mlflow.runName"].str.startswith("train ")]
    assert (children["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]).all()
    train = runs[runs["tags.mlflow.runName"] == "train env_mlp"].iloc[0]
    assert train["params.train.epochs"] == "2"
    assert train["tags.snakemake.rule"] == "train_model"
    assert len(train["tags.git_commit"]) >= 7 and len(train["tags.data_fingerprint"]) == 16
    client = mlflow.MlflowClient()
    history = client.get_metric_history(train["run_id"], "val_top30_error")
    assert [m.step for m in history] == [1, 2]
    for metric in ("train_loss", "learning_rate", "samples_per_second", "val_top1_error"):
        assert client.get_metric_history(train["run_id"], metric)
    artifacts = {a.path for a in client.list_artifacts(train["run_id"])}
    assert {"history.json", "settings.json", "rank_frequency.png"} <= artifacts
    model = mlflow.pytorch.load_model(f"runs:/{train['run_id']}/model")  # MLflow 3 logged model
    assert model.config.kind == "mlp"


@pytest.mark.slow
def test_changing_one_experiment_reruns_only_its_chain(trained):
    changed = yaml.safe_load(yaml.safe_dump(CONFIG))
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
    changed = yaml.safe_load(yaml.safe_dump(CONFIG))
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
