"""Shared fixtures and helpers: the real sample files (when ../shared exists), a tiny demo
dataset, and the repository's workflow run as a user runs it."""

import contextlib
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow.tracking._tracking_service.utils as mlflow_tracking
import pytest
import yaml
from filelock import FileLock

from geolifeclef.demo import generate_demo_dataset
from geolifeclef.demo.spec import spec_for
from geolifeclef.layout import DatasetLayout

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ROOT = REPO.parent / "shared" / "glc22-sample"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIGS = REPO / "tests" / "configs"
"""The configs of the end-to-end tests, one YAML file each."""
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
GEOLIFECLEF = Path(sys.executable).with_name("geolifeclef")
"""The users' command (pyproject's console script), as installed by make setup."""


SLOWEST_FIRST = (
    "test_workflow_training.py",
    "test_workflow_editions.py",
    "test_workflow_maps.py",
    "test_recipes.py",
    "test_reproducible.py",
    "test_invocations.py",
    "test_faults.py",
    "test_refusals.py",
    "test_workflow_evaluation.py",
    "test_messages.py",
    "test_tracking.py",
    "test_workflow.py",
    "test_mlflow_ui.py",
    "test_workflow_extraction.py",
)
"""The modules that take a minute or more (``pytest --durations``), longest first; the
second needs no shared demo folder (the survey editions make their own): the first module
builds it while the other worker runs that one. Run first, the short modules then fill
both workers to the end; xdist's own order (most tests first) left the longest modules,
which have few tests, for last, with one worker idle."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest modules first (``--dist loadfile --no-loadscope-reorder`` hands the
    workers whole modules in this order); the rest keep theirs (a stable sort)."""
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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


def copy_patch_folders(layout: DatasetLayout, root: Path) -> DatasetLayout:
    """A copy of ``layout``'s patch folders under ``root``, as an archive of its own."""
    copy = DatasetLayout(root)
    for region in ("fr", "us"):
        shutil.copytree(layout.patch_folder(region), copy.patch_folder(region))
    return copy


@pytest.fixture
def demo_patch_copy(tiny_demo, tmp_path) -> DatasetLayout:
    """A copy of the tiny demo's patch folders that a test may damage or change."""
    return copy_patch_folders(tiny_demo[0], tmp_path / "glc22")


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


def read_config(name: str) -> dict:
    """A test config of tests/configs/ (``name`` without .yaml)."""
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory, worker_id) -> Path:
    """A workflow folder where the tiny demo of tests/configs/demo.yaml is generated,
    ingested and extracted: once per test session, shared by the xdist workers (a lock
    lets one build it while the others wait). Read-only: copy it with ``copy_workdir``."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the workers' temp folders share this parent
    workdir = root / "demo-workdir"
    with FileLock(f"{workdir}.lock"):
        if not (workdir / ".built").exists():
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            shutil.copy(CONFIGS / "demo.yaml", workdir / "config.yaml")
            result = run_snakemake(workdir, "extraction", "class_frequency", timeout=2400)
            assert result.returncode == 0, result.stderr[-5000:]
            (workdir / ".built").touch()
    return workdir


def copy_workdir(demo_workdir: Path, target: Path, config: str | dict) -> Path:
    """``target``: a copy of the shared demo folder (files with their times, and
    Snakemake's records of how they were made, so nothing reruns) with ``config`` (a name
    in tests/configs/, or a dict) on top of tests/configs/demo.yaml as its config.yaml:
    a config that leaves the demo's data and extraction sections alone reruns none of it."""
    shutil.copytree(
        demo_workdir,
        target,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(
            ".built", "locks", "incomplete", "mlflow.db", "mlruns", "mlartifacts"
        ),
    )
    write_config(target, config)
    return target


def on_demo(config: str | dict) -> dict:
    """``config`` (a name in tests/configs/, or a dict) on top of tests/configs/demo.yaml:
    what a test writes as a config file (a second ``--configfile`` replaces the first)."""
    values = read_config(config) if isinstance(config, str) else config
    return merged(read_config("demo"), values)


def write_config(workdir: Path, config: str | dict) -> None:
    """``on_demo(config)`` as ``workdir``'s config.yaml."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(on_demo(config)))


def merged(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``, nested dicts merged (as Snakemake merges configs)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)  # the caller may change what it gets
    return result


@contextlib.contextmanager
def tracking_uri_kept():
    """Whatever sets MLflow's tracking URI inside, it is as before afterwards. MLflow has
    no public way to unset it: its module variable is saved and put back."""
    saved = mlflow_tracking._tracking_uri
    try:
        yield
    finally:
        mlflow_tracking._tracking_uri = saved


@pytest.fixture(autouse=True)
def mlflow_tracking_uri_restored():
    """No test sends a later test's MLflow reads or runs to its own store."""
    with tracking_uri_kept():
        yield


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 256 kB (a tmpfs: mounting needs root; skipped without it),
    ``remount(size)`` to give it room."""
    mount = tmp_path / "disk"
    mount.mkdir()

    def remount(size: str, *options: str) -> None:
        command = ["mount", "-t", "tmpfs", "-o", ",".join([*options, f"size={size}"])]
        done = subprocess.run([*command, "tmpfs", str(mount)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"no small file system here (mount: {done.stderr.strip()})")

    remount("256k")
    yield mount, lambda size: remount(size, "remount")
    subprocess.run(["umount", "--lazy", str(mount)], check=False)  # even if a file is open
