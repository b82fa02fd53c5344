"""End to end: one experiment of every model kind trained and predicted through the rules."""

import pytest
from conftest import copy_workdir, read_config, run_snakemake

from geolifeclef.predictions.table import read_predictions
from geolifeclef.settings.inputs import MODEL_KINDS

CONFIG = read_config("model-kinds")


def test_the_config_has_an_experiment_of_every_kind():
    kinds = {entry["model"]["kind"] for entry in CONFIG["experiments"].values()}
    assert kinds == set(MODEL_KINDS)


@pytest.mark.slow
def test_every_model_kind_trains_and_predicts(tmp_path, demo_workdir):
    workdir = copy_workdir(demo_workdir, tmp_path / "kinds", CONFIG)
    targets = [
        f"results/predictions/{name}/{split}.parquet"
        for name in CONFIG["experiments"]
        for split in ("val", "test")
    ]
    result = run_snakemake(workdir, *targets, timeout=2400)
    assert result.returncode == 0, result.stderr[-5000:]
    for name in CONFIG["experiments"]:
        for split in ("val", "test"):
            predictions = read_predictions(workdir / f"results/predictions/{name}/{split}.parquet")
            assert len(predictions) > 0 and predictions.k == CONFIG["predictions"]["top_k"]
