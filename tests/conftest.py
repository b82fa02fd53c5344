"""Shared fixtures and helpers: the real sample files (when ../shared exists), a tiny demo
dataset, and the repository's workflow run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geolifeclef.demo import generate_demo_dataset
from geolifeclef.demo.spec import spec_for
from geolifeclef.layout import DatasetLayout

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ROOT = REPO.parent / "shared" / "glc22-sample"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
GEOLIFECLEF = Path(sys.executable).with_name("geolifeclef")
"""The users' command (pyproject's console script), as installed by make setup."""


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
    from geolifeclef.data.observations import ingest_observations

    layout, _, _ = tiny_demo
    folder = tmp_path_factory.mktemp("tiny-tables")
    paths = {split: folder / f"{split}.parquet" for split in ("train", "val", "test")}
    ingest_observations(layout, paths)
    return paths


@pytest.fixture(scope="session")
def extracted(tiny_demo, tables, tmp_path_factory) -> dict:
    """Everything the extraction stage writes, for the tiny demo (32 px caches). Read-only."""
    import pandas as pd

    from geolifeclef.data.env_table import build_env_table
    from geolifeclef.data.env_windows import build_env_patches
    from geolifeclef.data.normalization import write_normalization_stats
    from geolifeclef.patches.cache import build_patch_cache
    from geolifeclef.patches.stats import compute_patch_stats
    from geolifeclef.patches.store import CacheSpec

    layout, _, _ = tiny_demo
    base = tmp_path_factory.mktemp("extracted")
    env_table = base / "env_values.parquet"
    build_env_table(layout, list(tables.values()), env_table)
    build_env_patches(layout, list(tables.values()), base / "env_patches", size=4)
    patch_stats = {}
    for split, table in tables.items():
        observations = pd.read_parquet(table)
        build_patch_cache(layout, observations, base / "patches" / split, CacheSpec(32, "resize"))
        patch_stats[split] = base / "patch_stats" / f"{split}.parquet"
        compute_patch_stats(base / "patches" / split, patch_stats[split])
    stats = base / "stats.json"
    write_normalization_stats(
        stats, tables["train"], env_table, base / "patches" / "train", patch_stats["train"]
    )
    return {
        "tables": tables,
        "env": env_table,
        "env_patches": base / "env_patches",
        "patches": base / "patches",
        "patch_stats": patch_stats,
        "stats": stats,
    }


@pytest.fixture(scope="session")
def with_species(extracted, tiny_demo, tmp_path_factory) -> dict:
    """The extracted tiny demo plus its species table (what train_model reads)."""
    from geolifeclef.data.class_frequency import (
        BucketThresholds,
        species_table,
        write_species_table,
    )
    from geolifeclef.data.observations import read_species_ids, read_table

    layout, _, _ = tiny_demo
    tables = {split: read_table(path) for split, path in extracted["tables"].items()}
    path = tmp_path_factory.mktemp("species") / "species.parquet"
    table = species_table(
        tables["train"], tables["val"], read_species_ids(layout.species_details), BucketThresholds()
    )
    write_species_table(table, path)
    return {**extracted, "species": path}


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
