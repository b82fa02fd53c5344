"""The same config on the same machine gives the same submission, byte for byte: two runs
of the tiny demo from the same extracted data, a network trained in each (so the
figures a README gives for the demo are the machine's, not the run's)."""

import pytest
from conftest import copy_workdir, run_snakemake

CONFIG = {
    "predictions": {"top_k": 30},
    "experiments": {
        "env_mlp": {
            "model": {"kind": "mlp", "tabular": ["env", "coordinates"]},
            "train": {"epochs": 2, "batch_size": 64},
        },
        "cnn_small": {
            "model": {
                "kind": "cnn",
                "modalities": ["rgb", "near_ir"],
                "cnn": {"backbone": "small", "width": 8, "input_size": 16},
            },
            "train": {"epochs": 1, "batch_size": 64},
        },
    },
    "fitted_blends": {"fitted": {"models": ["env_mlp", "cnn_small", "knn", "random_forest"]}},
}


@pytest.mark.slow
def test_two_runs_of_one_config_write_the_same_submissions(demo_workdir, tmp_path):
    runs = []
    for name in ("first", "second"):
        workdir = copy_workdir(demo_workdir, tmp_path / name, CONFIG)
        result = run_snakemake(workdir, "submission", timeout=1200)
        assert result.returncode == 0, result.stderr[-4000:]
        runs.append(workdir / "results" / "submission")
    first, second = runs
    files = sorted(path.name for path in first.glob("*.csv"))
    assert {"final.csv", "env_mlp.csv", "cnn_small.csv", "fitted.csv"} <= set(files)
    assert files == sorted(path.name for path in second.glob("*.csv"))
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
