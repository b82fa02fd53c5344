"""Shared fixtures and helpers: the real sample files (when ../shared exists), a tiny demo
dataset, and the repository's workflow run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geolifeclef.demo import generate_demo_dataset, spec_for
from geolifeclef.layout import DatasetLayout

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ROOT = REPO.parent / "shared" / "glc22-sample"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


@pytest.fixture(scope="session")
def sample_layout() -> DatasetLayout:
    """The real GLC 2022 files in ../shared/glc22-sample; skipped in a user's clone."""
    if not SAMPLE_ROOT.is_dir():
        pytest.skip("../shared/glc22-sample is not present (only in the development setup)")
    return DatasetLayout(SAMPLE_ROOT)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> tuple[DatasetLayout, Path, dict]:
    """A tiny demo dataset: (layout, truth folder, summary). Read-only for tests."""
    base = tmp_path_factory.mktemp("tiny-demo")
    summary = generate_demo_dataset(base / "glc22", base / "truth", spec_for("tiny"), workers=1)
    return DatasetLayout(base / "glc22"), base / "truth", summary


@pytest.fixture(scope="session")
def tables(tiny_demo, tmp_path_factory) -> dict[str, Path]:
    """The tiny demo's observation tables by split (what the extraction steps read)."""
    from geolifeclef.observations import ingest_observations

    layout, _, _ = tiny_demo
    folder = tmp_path_factory.mktemp("tiny-tables")
    paths = {split: folder / f"{split}.parquet" for split in ("train", "val", "test")}
    ingest_observations(layout, paths)
    return paths


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
