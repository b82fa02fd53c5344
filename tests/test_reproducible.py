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


SUBMITTED = ("env_mlp", "cnn_small", "fitted")
"""The submissions whose bytes could differ between runs: the networks' and the blend fitted
on them and on the baselines (what `submission` picks from; its evaluation and leaderboard
are left out, they only read these models' predictions)."""


@pytest.mark.slow
def test_two_runs_of_one_config_write_the_same_submissions(demo_workdir, tmp_path):
    runs = []
    for name in ("first", "second"):
        workdir = copy_workdir(demo_workdir, tmp_path / name, CONFIG)
        targets = [f"results/submission/{model}.csv" for model in SUBMITTED]
        result = run_snakemake(workdir, *targets, timeout=1200)
        assert result.returncode == 0, result.stderr[-4000:]
        runs.append(workdir / "results" / "submission")
    first, second = runs
    for model in SUBMITTED:
        written = (first / f"{model}.csv").read_bytes()
        assert written.count(b"\n") > 10, model  # a submission, not an empty file
        assert written == (second / f"{model}.csv").read_bytes(), model
