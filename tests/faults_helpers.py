"""Helpers of the fault-injection suite (tests/test_faults.py): damaged copies of the demo."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import rasterio

from geolifeclef.layout import DatasetLayout

MLFLOW = Path(sys.executable).with_name("mlflow")


def copy_tables(source: DatasetLayout, root: Path) -> DatasetLayout:
    """A writable copy of the observation CSVs and metadata of ``source``."""
    target = DatasetLayout(root)
    for path in [*source.observation_files(), *sorted((source.root / "metadata").glob("*"))]:
        destination = target.root / path.relative_to(source.root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return target


def link_tree(source: Path, target: Path) -> None:
    """``target`` mirrors ``source`` with a symbolic link per file (cheap, read-only)."""
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.symlink_to(path)


def own_copy(path: Path) -> Path:
    """Replace a linked file by a real copy that a test may damage."""
    source = path.resolve()
    path.unlink()
    shutil.copyfile(source, path)
    return path


def damaged_root(source: DatasetLayout, root: Path) -> DatasetLayout:
    """A copy of the whole demo archive: tables copied, rasters and patches linked."""
    layout = copy_tables(source, root)
    link_tree(source.root / "rasters", layout.root / "rasters")
    for region in ("fr", "us"):
        link_tree(source.patch_folder(region), layout.patch_folder(region))
    return layout


def rewrite_raster(path: Path, change) -> None:
    """Rewrite a GeoTIFF in place: ``change(profile, data)`` returns (profile, data)."""
    with rasterio.open(path) as dataset:
        profile, data = dict(dataset.profile), dataset.read()
    profile, data = change(profile, data)
    path.unlink()
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.asarray(data))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(root: Path) -> tuple[subprocess.Popen, int]:
    """``mlflow server`` on 127.0.0.1 with a sqlite store under ``root``, in its own process
    group (stop it with ``os.killpg``); returns the process and its port."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            str(MLFLOW),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "w"),  # noqa: SIM115
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.3)
        if process.poll() is not None:
            break
    stop(process)
    raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")


def stop(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Kill a process started with its own session, and all its children."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=60)


def files_containing(folder: Path, needle: str) -> list[Path]:
    """Files under ``folder`` whose bytes contain ``needle``."""
    data = needle.encode()
    return [p for p in folder.rglob("*") if p.is_file() and data in p.read_bytes()]


def wait_for_file(pattern: Path, process: subprocess.Popen, output: Path, limit_s: float = 300):
    """The first file matching ``pattern`` (a glob in its folder) once it exists, while
    ``process`` (whose output goes to ``output``) runs; fails the test if it ends first."""
    deadline = time.monotonic() + limit_s
    while not (found := sorted(pattern.parent.glob(pattern.name))):
        assert process.poll() is None, output.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {pattern} after {limit_s} s"
        time.sleep(0.05)
    return found[0]
