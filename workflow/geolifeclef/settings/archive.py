"""The archive as the workflow reads it: the files a config reads from ``data.root``, by the
step that reads them, checked before any job runs, and their fingerprints, which rerun the
steps that read them when they change.

Snakemake decides a rerun from its outputs' and inputs' times; an input that is missing,
or a ``data.root`` pointed elsewhere, leaves results built from another archive "up to
date". The check refuses a missing folder or file by name (stat calls: never the 6.66 M
patch files, which the cache build checks), and a fingerprint of each file read (its
path, size and modification time) is a param of the step that reads it: another file,
even an older copy, reruns the step and everything downstream (workflow/rules/common.smk).
The patch files are fingerprinted by split, from the split's observations: those of the
modalities the caches read (``patch_files_fingerprint``), and the cache build keeps each
file's size and time (``patch_file_states``) to rebuild only the chunks whose files changed.
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from geolifeclef.errors import InputDataError, listed
from geolifeclef.layout import REGIONS, DatasetLayout

STAT_THREADS = 8
"""Threads that stat the patch files: a stat call releases the GIL, and on a network file
system its latency, not the CPU, bounds a single thread."""
STAT_BATCH = 16_384
"""Files per task of those threads."""


def archive_inputs(layout: DatasetLayout) -> dict[str, list[Path]]:
    """What the workflow may read from the archive, by part: the observation CSVs and the
    species list (``observations``: every target starts from them), the rasters
    (``rasters``), the pre-extracted CSV (``pre_extracted``), the patch folders
    (``patches``). A part is checked when a step planned to run, or kept, reads it."""
    return {
        "observations": [*layout.observation_files(), layout.species_details],
        "rasters": layout.raster_files(),
        "pre_extracted": [layout.environmental_vectors],
        "patches": [layout.patch_folder(r) for r in REGIONS],
    }


def check_archive(layout: DatasetLayout, inputs: dict[str, list[Path]]) -> None:
    """Refuse an archive folder that does not exist, or that lacks one of the files of
    ``inputs`` (parts of ``archive_inputs``)."""
    fix = (
        "set data.root in the config to the folder where the Kaggle archive is unpacked "
        f"({layout.root_hint}), or to null for the demo"
    )
    if not layout.root.is_dir():
        raise InputDataError(layout.root, "data.root: no such folder", fix)
    missing = [p for paths in inputs.values() for p in paths if not p.exists()]
    if missing:
        names = [str(p.relative_to(layout.root)) for p in missing]
        raise InputDataError(
            layout.root,
            f"{len(missing)} file(s) that the workflow reads are missing from the archive: "
            f"{listed(names)}",
            "restore them from the Kaggle archive (unpack it again), or point data.root at "
            "a complete copy",
        )


def fingerprint(paths: list[Path]) -> str:
    """A short digest of each file's path, size and modification time: a param of the step
    that reads them, so that any other file there reruns it (the contents are not read:
    the observation CSVs alone are 300 MB)."""
    digest = hashlib.sha1()
    for path in paths:
        status = path.stat()
        digest.update(f"{path.resolve()}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _states(paths: list[str]) -> np.ndarray:
    """(len(paths), 2) int64: each file's size and modification time in ns; -1 where it
    cannot be stat'ed (missing, or its folder unreadable)."""
    states = np.full((len(paths), 2), -1, dtype=np.int64)
    stat = os.stat
    for k, path in enumerate(paths):
        try:
            status = stat(path)
        except OSError:
            continue
        states[k, 0], states[k, 1] = status.st_size, status.st_mtime_ns
    return states


def patch_file_states(
    layout: DatasetLayout,
    observation_ids: np.ndarray,
    modalities: tuple[str, ...],
    threads: int = STAT_THREADS,
) -> np.ndarray:
    """(n, len(modalities), 2) int64: the size and modification time (ns) of the patch
    file of each observation and modality (``layout``: a GLC 2022 archive, or a survey
    edition's ``survey_layout.SurveyPatchFiles``, not imported into the settings: both
    give ``patch_paths``), -1 for one that is missing: stat calls only,
    the contents are not read (7 us a file on an idle 2-core VM, 25 us on loaded cores:
    bench/bench_change_check.py)."""
    n = len(observation_ids)
    states = np.empty((n, len(modalities), 2), dtype=np.int64)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for j, modality in enumerate(modalities):
            paths = layout.patch_paths(observation_ids, modality)
            batches = [paths[s : s + STAT_BATCH] for s in range(0, n, STAT_BATCH)]
            for k, found in enumerate(pool.map(_states, batches)):
                states[k * STAT_BATCH : k * STAT_BATCH + len(found), j] = found
    return states


def patch_files_fingerprint(
    layout: DatasetLayout,
    observations: str | Path,
    modalities: tuple[str, ...],
    threads: int = STAT_THREADS,
) -> str:
    """A short digest of the size and modification time of every patch file that the cache
    of the split ``observations`` (its table) reads, for ``modalities``: the param of the
    split's cache build, so that a file changed, replaced or restored (one that
    ``on_bad_file: fill`` zero-filled) reruns it, and what reads the cache."""
    ids = pq.read_table(observations, columns=["observation_id"]).column(0).to_numpy()
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    digest = hashlib.sha1(f"{layout.root.resolve()}\t{','.join(modalities)}\n".encode())
    digest.update(ids.tobytes())
    states = patch_file_states(layout, ids, modalities, threads)
    digest.update(np.ascontiguousarray(states).tobytes())
    return digest.hexdigest()[:16]
