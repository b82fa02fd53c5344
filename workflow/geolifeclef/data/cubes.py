"""The Landsat and bioclim time-series cubes of the GLC 2024/2025 surveys, packed per split.

The archives hold one small ``torch.save`` file per survey and cube kind (93,703 PA surveys,
two cubes each). A loader that opened them one by one would spend each epoch in
``torch.load``; they are read once here, checked, and packed into ``results/cubes/{split}/``:

=================  =========================================================================
``landsat.npy``    (N, 6, 4, 21) float32: band, quarter, year 2000-2020
``bioclim.npy``    (N, 4, 19, 12) float32: variable, year 2000-2018, month
``index.parquet``  ``observation_id`` (int64), ``row`` (int64), ``missing_landsat``,
                   ``missing_bioclim`` (bool: the cube was missing, its row is NaN)
=================  =========================================================================

Row i holds the cubes of the i-th id given (the split's survey table, in its order). The
arrays are ``np.save`` files: ``open_cubes`` (or ``np.load(mmap_mode="r")``) maps them.
NaN inside a cube is kept as the archive has it (the loaders apply ``nan_to_num``) and
counted. A cube file that cannot be used (corrupt, cut short, not a tensor, wrong shape)
stops the packing with the list of files; a missing cube too, unless ``on_missing="fill"``.

Worker processes read chunks of rows (``torch.load`` is CPU-bound) and write them straight
into the arrays, preallocated on disk; the folder appears (by a rename) only when complete.
"""

import logging
import os
import pickle
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import InputDataError, listed
from geolifeclef.patches.store import create_npy, fsync_file, npy_data_offset, write_at
from geolifeclef.survey_layout import (
    CUBE_FILE,
    CUBE_SHAPES,
    SurveyLayout,
    archive_split,
    resolve,
)

log = logging.getLogger(__name__)

CUBE_KINDS = tuple(CUBE_SHAPES)
"""``landsat`` and ``bioclim``: one array file each, ``<kind>.npy``."""
INDEX_FILE = "index.parquet"
ON_MISSING = ("fail", "fill")
CHUNK_ROWS = 1024
"""Surveys per work unit (2,048 files: ~1 s of ``torch.load`` on one core)."""
BAD_FILES_LISTED = 10
"""Bad files an error message names (the log lists them all)."""
ZIP_SIGNATURE = b"PK\x03\x04"
"""How a file written by ``torch.save`` starts (a zip archive)."""
MISSING_LOGGED = 200
"""Surveys without a cube that the log names (then a count)."""
REPAIR = "re-copy it from the archive"


class CubeFileError(InputDataError):
    """Cube files that cannot be used (``problems``: (path, problem) of each)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = sorted(problems)
        first_path, first_problem = self.problems[0]
        if len(self.problems) == 1:
            super().__init__(first_path, first_problem, REPAIR)
            return
        files = listed((f"{p} ({why})" for p, why in self.problems), BAD_FILES_LISTED, "; ")
        super().__init__(
            first_path,
            f"{len(self.problems)} cube files cannot be used: {files}",
            "re-copy them from the archive",
        )


@dataclass
class CubeReport:
    """What a packing found, per cube kind."""

    n: int = 0
    missing: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CUBE_KINDS, 0))
    """Cubes missing, packed as NaN (``on_missing="fill"``)."""
    nan_values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CUBE_KINDS, 0))
    """NaN values inside the cubes read (kept: the loaders replace them)."""
    nan_cubes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CUBE_KINDS, 0))
    """Cubes read that hold at least one NaN."""


@dataclass(frozen=True)
class _Chunk:
    start: int
    paths: dict[str, list[str | None]]
    """Kind -> the file of each row of the chunk (None: missing, packed as NaN)."""
    arrays: dict[str, str]
    """Kind -> the .npy file to write the rows into."""


@dataclass(frozen=True)
class _ChunkResult:
    start: int
    rows: int
    nan_values: dict[str, int]
    nan_cubes: dict[str, int]
    bad: list[tuple[str, str]]


def read_cube(path: str | Path, kind: str) -> np.ndarray:
    """One cube file as a float32 array of ``CUBE_SHAPES[kind]`` (NaN kept).

    Read with ``torch.load(weights_only=True)``: the files are plain tensors, and nothing
    else is unpickled. Raises CubeFileError naming the file when it cannot be used.
    """
    import torch  # here: reading packed cubes (open_cubes) needs no torch (seconds to import)

    path = Path(path)
    try:
        value = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise CubeFileError([(str(path), "file is missing")]) from None
    except Exception as error:  # torch raises many kinds on a cut or corrupt file
        raise CubeFileError([(str(path), _load_problem(path, error))]) from None
    if not isinstance(value, torch.Tensor):
        raise CubeFileError([(str(path), f"holds a {type(value).__name__}, not a tensor")])
    expected = CUBE_SHAPES[kind]
    if tuple(value.shape) != expected:
        raise CubeFileError(
            [(str(path), f"shape {tuple(value.shape)}, expected {expected} for a {kind} cube")]
        )
    if value.is_complex() or value.dtype == torch.bool:
        raise CubeFileError([(str(path), f"dtype {value.dtype}, expected real numbers")])
    return value.to(torch.float32).numpy()


def _load_problem(path: Path, error: Exception) -> str:
    """What is wrong with a file ``torch.load`` refused, in a user's words."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        return "empty file"
    if head != ZIP_SIGNATURE:  # torch.save writes a zip; torch then tried an old pickle
        return "not a torch zip file: corrupt, or another kind of file"
    if isinstance(error, pickle.UnpicklingError):
        # torch's own message advises weights_only=False: never for a data file
        return "holds objects other than tensors (refused unread)"
    return f"not a readable torch file: cut short or corrupt ({_first_line(error)})"


def _first_line(error: Exception) -> str:
    """The start of an error's message: torch's go on for lines of advice."""
    text = (str(error).strip().splitlines() or [""])[0]
    text = text.split(". ")[0]
    return f"{type(error).__name__}: {text[:120]}"


def list_cube_files(folder: Path) -> dict[int, str]:
    """Survey id -> file name of every cube in ``folder``, listed once; whatever the
    spelling before ``_<id>_cube.pt`` (hyphens in train, underscores in test).

    Two files for one survey (a copy holding both spellings) are refused: which one is
    the archive's cannot be told.
    """
    found: dict[int, str] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            match = CUBE_FILE.search(entry.name)
            if match is None or not entry.is_file():
                continue
            survey = int(match.group(1))
            if survey in found:
                first, second = sorted((found[survey], entry.name))
                raise InputDataError(
                    folder / second,
                    f"a second cube file for survey {survey} (the first: {first})",
                    "keep the archive's file and remove the other",
                )
            found[survey] = entry.name
    return found


def pack_cubes(
    layout: SurveyLayout,
    split: str,
    observation_ids: np.ndarray,
    output: Path,
    workers: int = 1,
    on_missing: str = "fail",
    progress: bool = True,
) -> CubeReport:
    """Pack the Landsat and bioclim cubes of the surveys ``observation_ids`` (in that
    order) of ``split`` (train, val or test: val's cubes are in the archive's train
    folders) into the folder ``output`` (written atomically), reading them in ``workers``
    processes.

    A missing cube raises InputDataError naming the survey and the file expected, unless
    ``on_missing="fill"``: its row is NaN and flagged in the index (and counted in the log
    and report). A file that cannot be used raises CubeFileError listing every such file
    once all were read.
    """
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing {on_missing!r}: choose from {ON_MISSING}")
    ids = np.asarray(observation_ids, dtype=np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"survey ids repeated: {listed(unique[counts > 1])}")
    source = archive_split(split)
    paths, missing = {}, {}
    for kind in CUBE_KINDS:
        paths[kind], missing[kind] = _files_of(layout, kind, source, ids)
    if on_missing == "fail" and any(len(rows) for rows in missing.values()):
        raise _missing_error(layout, source, ids, missing)
    report = CubeReport(n=len(ids), missing={k: len(v) for k, v in missing.items()})
    for kind, rows in missing.items():
        if len(rows):
            log.warning(
                "%d %s surveys have no %s cube (packed as NaN, flagged in %s): %s",
                len(rows),
                split,
                kind,
                INDEX_FILE,
                listed(ids[rows], MISSING_LOGGED),
            )
    with atomic_path(output) as work:
        work.mkdir()
        arrays = {kind: work / f"{kind}.npy" for kind in CUBE_KINDS}
        for kind, path in arrays.items():
            create_npy(path, np.dtype(np.float32), (len(ids), *CUBE_SHAPES[kind]))
        chunks = [
            _Chunk(
                start,
                {kind: paths[kind][start : start + CHUNK_ROWS] for kind in CUBE_KINDS},
                {kind: str(path) for kind, path in arrays.items()},
            )
            for start in range(0, len(ids), CHUNK_ROWS)
        ]
        bad: list[tuple[str, str]] = []
        with tqdm(
            total=len(ids),
            desc=f"cubes {split}",
            unit="survey",
            mininterval=2,
            disable=not progress,
        ) as bar:
            for result in _run(chunks, workers):
                for kind in CUBE_KINDS:
                    report.nan_values[kind] += result.nan_values[kind]
                    report.nan_cubes[kind] += result.nan_cubes[kind]
                bad.extend(result.bad)
                bar.update(result.rows)
        if bad:
            for path, problem in sorted(bad):
                log.error("cube file cannot be used: %s: %s", path, problem)
            raise CubeFileError(bad)
        for path in arrays.values():
            fsync_file(path)  # on disk before the folder's rename says it is complete
        _write_index(work / INDEX_FILE, ids, {k: missing[k] for k in CUBE_KINDS})
    for kind in CUBE_KINDS:
        log.info(
            "%s %s cubes: %d surveys, %d missing (NaN), %d NaN values in %d cubes (kept)",
            split,
            kind,
            report.n,
            report.missing[kind],
            report.nan_values[kind],
            report.nan_cubes[kind],
        )
    return report


def _files_of(
    layout: SurveyLayout, kind: str, split: str, ids: np.ndarray
) -> tuple[list[str | None], np.ndarray]:
    """Each survey's cube file of ``kind`` (None where missing) and the rows missing one."""
    folder = resolve(layout.cube_folder(kind, split))
    if not folder.is_dir():
        raise InputDataError(
            folder,
            f"the folder of the {split} surveys' {kind} cubes is missing",
            f"unpack the archive's {layout.cube_folder(kind, split).relative_to(layout.root)} "
            f"under {layout.root} (the data root)",
        )
    names = list_cube_files(folder)
    files = [names.get(int(s)) for s in ids]
    missing = np.flatnonzero([name is None for name in files])
    return [None if name is None else str(folder / name) for name in files], missing


def _missing_error(layout: SurveyLayout, split: str, ids: np.ndarray, missing: dict):
    """The error of missing cubes: the first one's file as the archive names it, and how
    many of each kind are missing (the first few surveys named)."""
    kind = next(k for k in CUBE_KINDS if len(missing[k]))
    survey = int(ids[missing[kind][0]])
    folder = resolve(layout.cube_folder(kind, split))
    counts = [
        f"{len(rows)} {k} (surveys {listed(ids[rows])})" for k, rows in missing.items() if len(rows)
    ]
    return InputDataError(
        folder / layout.names.cube_name(kind, split, survey),
        f"the {kind} cube of survey {survey} is missing; cubes missing: " + ", ".join(counts),
        "copy the missing cube files from the archive into their folders, or pack with "
        f"on_missing='fill' to leave NaN in their rows, flagged in {INDEX_FILE}",
    )


def _run(chunks: list[_Chunk], workers: int):
    """Chunk results, as they finish, from this process or ``workers`` processes."""
    if workers <= 1 or len(chunks) <= 1:
        yield from map(_pack_chunk, chunks)
        return
    with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
        futures = [pool.submit(_pack_chunk, chunk) for chunk in chunks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _pack_chunk(chunk: _Chunk) -> _ChunkResult:
    """Read one chunk's cubes and write them into its rows of the arrays."""
    bad: list[tuple[str, str]] = []
    nan_values, nan_cubes = {}, {}
    rows = 0
    for kind, files in chunk.paths.items():
        rows = len(files)
        block = np.full((rows, *CUBE_SHAPES[kind]), np.nan, dtype=np.float32)
        for i, path in enumerate(files):
            if path is None:
                continue  # missing: NaN, flagged in the index
            try:
                block[i] = read_cube(path, kind)
            except CubeFileError as error:
                bad.extend(error.problems)
        read = np.array([path is not None for path in files], dtype=bool)
        nans = np.isnan(block[read]).reshape(int(read.sum()), block[0].size)
        nan_values[kind], nan_cubes[kind] = int(nans.sum()), int(nans.any(axis=1).sum())
        # Written, not through a memory map: a full disk is then an error naming the file
        # (patches.store.write_at), not a SIGBUS.
        path = Path(chunk.arrays[kind])
        write_at(path, block, npy_data_offset(path) + chunk.start * block[0].nbytes)
    return _ChunkResult(chunk.start, rows, nan_values, nan_cubes, bad)


def _write_index(path: Path, ids: np.ndarray, missing: dict[str, np.ndarray]) -> None:
    columns = {
        "observation_id": pa.array(ids, pa.int64()),
        "row": pa.array(np.arange(len(ids), dtype=np.int64), pa.int64()),
    }
    for kind, rows in missing.items():
        flags = np.zeros(len(ids), dtype=bool)
        flags[rows] = True
        columns[f"missing_{kind}"] = pa.array(flags, pa.bool_())
    pq.write_table(pa.table(columns), path)


@dataclass(frozen=True)
class PackedCubes:
    """A packed cube folder: the arrays (memory-mapped, read-only) and the index."""

    landsat: np.ndarray
    bioclim: np.ndarray
    index: pd.DataFrame

    def __len__(self) -> int:
        return len(self.index)


def open_cubes(folder: str | Path) -> PackedCubes:
    """Open a folder written by ``pack_cubes``, checking that its files agree."""
    folder = Path(folder)
    if not (folder / INDEX_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} is not a packed cube folder (no {INDEX_FILE}); pack it with pack_cubes"
        )
    index = pq.read_table(folder / INDEX_FILE).to_pandas()
    arrays = {kind: np.load(folder / f"{kind}.npy", mmap_mode="r") for kind in CUBE_KINDS}
    for kind, array in arrays.items():
        if array.shape != (len(index), *CUBE_SHAPES[kind]) or array.dtype != np.float32:
            raise ValueError(
                f"{folder / f'{kind}.npy'}: {array.dtype} {array.shape}, expected float32 "
                f"{(len(index), *CUBE_SHAPES[kind])} (the index's rows); pack it again"
            )
    return PackedCubes(arrays["landsat"], arrays["bioclim"], index)
