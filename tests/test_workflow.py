"""End to end: the Snakemake workflow on a tiny demo, as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake_command(workdir: Path, *args: str, cores: int | None = 2) -> list[str]:
    """The command that runs the repository's workflow in ``workdir`` with its config.yaml
    (``cores=None`` when a profile sets them)."""
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
    ]
    if cores is not None:
        command += ["--cores", str(cores)]
    return [*command, *args]


def run_snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the repository's workflow with ``workdir`` as working directory."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        snakemake_command(workdir, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text("demo:\n  scale: tiny\n  seed: 3\n")
    return workdir


@pytest.mark.slow
def test_observations_target_runs_end_to_end(tiny_workdir):
    result = run_snakemake(tiny_workdir, "observations")
    assert result.returncode == 0, result.stderr[-4000:]
    for split in ("train", "val", "test"):
        table = pd.read_parquet(tiny_workdir / "results" / "observations" / f"{split}.parquet")
        assert len(table) > 0 and (table["subset"] == split).all()
    assert (tiny_workdir / "logs" / "ingest_observations.log").read_text()
    assert (tiny_workdir / "benchmarks" / "generate_demo_dataset.tsv").exists()
    # A second invocation finds nothing to do.
    again = run_snakemake(tiny_workdir, "observations", "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_config_with_unknown_key_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("demo:\n  scale: tiny\n  sede: 3\n")
    result = run_snakemake(tmp_path, "observations", "--dry-run")
    assert result.returncode != 0
    assert "sede" in result.stderr + result.stdout


def test_config_with_wrong_type_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("demo:\n  seed: three\n")
    result = run_snakemake(tmp_path, "observations", "--dry-run")
    assert result.returncode != 0
    assert "three" in result.stderr + result.stdout
