"""Patch caches: the four patch files of every observation, decoded once into NumPy arrays.

Decoding 6.66 million small JPEG/TIFF files per epoch starves a GPU; a cache decodes them
once into one array per modality, which a Dataset then reads by memory mapping. A cache
folder (``results/patches/{split}/``) holds:

=================  ===================  ==============================================
file               shape                content
=================  ===================  ==============================================
``rgb.npy``        (n, 3, S, S) uint8   colour imagery, channels first (as torch wants)
``near_ir.npy``    (n, 1, S, S) uint8   near-infrared imagery
``altitude.npy``   (n, 1, S, S) int16   altitude in metres (little-endian)
``landcover.npy``  (n, 1, S, S) uint8   land-cover codes, 0 = missing
``index.parquet``  n rows               ``row``, ``observation_id``, ``latitude``,
                                        ``longitude``, ``species_id`` (null for test),
                                        ``filled`` and ``filled_<modality>``: True where
                                        a file was missing or unreadable and its patch
                                        was filled with zeros (``on_bad_file: fill``)
``meta.json``                           size, mode, source size, modalities, counts
=================  ===================  ==============================================

The dtypes are those of the files, so a ``crop`` cache is bit-exact with decoding the
files. ``S`` is the configured size: ``crop`` keeps the centre S x S pixels, ``resize``
averages S x S blocks of the source (rounded half up) and takes the majority code of each
block for land cover (a category, not a quantity); the source side must be a multiple of S.

A build is parallel over processes, decodes a chunk of observations at a time (bounded
memory) and writes into a scratch folder ``.{split}.partial`` beside the cache with a
journal of the finished chunks: a killed build resumes where it stopped, and the cache
folder appears (by a rename) only once complete.
"""

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .atomic import atomic_path
from .errors import InputDataError, listed
from .layout import MODALITIES, PATCH_ARRAY_DTYPES, PATCH_CHANNELS, DatasetLayout
from .patch_files import PatchFileError, read_patch
from .patch_geometry import MODES, check_geometry, transform_patch

log = logging.getLogger(__name__)

BAD_FILE_POLICIES = ("fail", "fill")
CACHE_VERSION = 1
INDEX_FILE = "index.parquet"
META_FILE = "meta.json"
CHUNK_BYTES = 32 * 2**20
"""Decoded bytes per work unit of a build (per worker process)."""
PROBE_OBSERVATIONS = 50
"""Observations tried to find the side length of the source patches."""
BAD_FILES_LISTED = 20
"""Bad files an error message names (the log lists them all)."""


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds: which modalities, at which size, how bad files are handled."""

    size: int = 64
    mode: str = "resize"
    modalities: tuple[str, ...] = MODALITIES
    on_bad_file: str = "fail"

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(
                f"patches.modalities {list(self.modalities)}: choose from {MODALITIES}"
            )
        if self.mode not in MODES:
            raise ValueError(f"patches.mode {self.mode!r}: choose from {MODES}")
        if self.on_bad_file not in BAD_FILE_POLICIES:
            raise ValueError(f"patches.on_bad_file {self.on_bad_file!r}: {BAD_FILE_POLICIES}")
        if self.size < 1:
            raise ValueError(f"patches.size {self.size} must be positive")


def cache_shape(n: int, modality: str, size: int) -> tuple[int, int, int, int]:
    """Shape of a modality's cache array: (n, channels, size, size)."""
    return (n, PATCH_CHANNELS[modality], size, size)


# --------------------------------------------------------------------------------------
# Building a cache
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadFile:
    """A patch file that could not be used: missing, unreadable, wrong shape or dtype."""

    observation_id: int
    modality: str
    path: str
    problem: str


@dataclass
class CacheReport:
    """What a build did."""

    n: int = 0
    source_size: int = 0
    resumed_chunks: int = 0
    built_chunks: int = 0
    bad_files: list[BadFile] = field(default_factory=list)


@dataclass(frozen=True)
class _ChunkTask:
    root: Path
    work: Path
    index: int
    start: int
    observation_ids: np.ndarray
    spec: CacheSpec
    source_size: int
    offsets: dict[str, int]
    """Modality -> byte offset of the data in its .npy file (after the header)."""


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _build_chunk(task: _ChunkTask) -> tuple[int, np.ndarray, list[BadFile]]:
    """Decode one chunk of observations and write its rows into the scratch arrays.

    Returns (chunk index, flags (rows, modalities) bool, bad files).
    """
    layout = DatasetLayout(task.root)
    spec = task.spec
    n = len(task.observation_ids)
    flags = np.zeros((n, len(spec.modalities)), dtype=bool)
    bad: list[BadFile] = []
    for j, modality in enumerate(spec.modalities):
        block = np.zeros(cache_shape(n, modality, spec.size), dtype=PATCH_ARRAY_DTYPES[modality])
        for i, observation_id in enumerate(task.observation_ids):
            path = layout.patch(int(observation_id), modality)
            try:
                array = read_patch(path, modality, size=task.source_size)
            except PatchFileError as error:
                flags[i, j] = True  # the row stays zero, flagged in the index
                bad.append(BadFile(int(observation_id), modality, str(path), error.problem))
                continue
            block[i] = transform_patch(array, modality, spec.size, spec.mode)
        fd = os.open(task.work / f"{modality}.npy", os.O_WRONLY)
        try:
            row_bytes = block[:1].nbytes
            _pwrite_all(
                fd, memoryview(block).cast("B"), task.offsets[modality] + task.start * row_bytes
            )
        finally:
            os.close(fd)
    return task.index, flags, bad


def _data_offset(path: Path) -> int:
    """Byte offset of the array data in a .npy file."""
    with open(path, "rb") as handle:
        major, _ = np.lib.format.read_magic(handle)
        if major == 1:
            np.lib.format.read_array_header_1_0(handle)
        else:
            np.lib.format.read_array_header_2_0(handle)
        return handle.tell()


def _create_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """An .npy file of the given shape, zero-filled (sparse on disk until written)."""
    if int(np.prod(shape)) == 0:
        np.save(path, np.zeros(shape, dtype=dtype))
        return
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    del array


def probe_source_size(layout: DatasetLayout, observation_ids: np.ndarray, spec: CacheSpec) -> int:
    """Side length of the source patches, from the first readable file."""
    tried = []
    for observation_id in observation_ids[:PROBE_OBSERVATIONS]:
        for modality in spec.modalities:
            path = layout.patch(int(observation_id), modality)
            try:
                return int(read_patch(path, modality).shape[0])
            except PatchFileError as error:
                tried.append(error)
    first = tried[0] if tried else None
    raise InputDataError(
        first.path if first else layout.root,
        f"none of the patch files of the first {PROBE_OBSERVATIONS} observations can be read"
        + (f" (first: {first.problem})" if first else ""),
        "check data.root: it must hold patches-fr/ and patches-us/ as in the archive",
    )


def _manifest(
    layout: DatasetLayout, ids: np.ndarray, spec: CacheSpec, source_size: int, chunk_rows: int
) -> dict:
    """What a scratch folder was started for; a resume needs the same (as JSON sees it)."""
    manifest = {
        "version": CACHE_VERSION,
        "root": str(Path(layout.root).resolve()),
        "observation_ids_sha256": hashlib.sha256(np.ascontiguousarray(ids, np.int64)).hexdigest(),
        "n": len(ids),
        "spec": asdict(spec),
        "source_size": source_size,
        "chunk_rows": chunk_rows,
    }
    return json.loads(json.dumps(manifest))  # tuples -> lists, as read back from the file


def _prepare_scratch(work: Path, manifest: dict, spec: CacheSpec) -> set[int]:
    """Reuse the scratch folder if it was started for the same build; else start afresh.

    Returns the indices of the chunks already done (from the journal).
    """
    manifest_path, journal = work / "manifest.json", work / "journal.txt"
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text())
        except ValueError:
            previous = None
        if previous == manifest:
            # A line is only complete with its newline (a kill can cut the last one).
            text = journal.read_text() if journal.exists() else ""
            return {int(line) for line in text.split("\n")[:-1] if line.strip().isdigit()}
    if work.exists():
        log.info("discarding the scratch folder %s (started for another build)", work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    n = manifest["n"]
    for modality in spec.modalities:
        _create_npy(
            work / f"{modality}.npy",
            PATCH_ARRAY_DTYPES[modality],
            cache_shape(n, modality, spec.size),
        )
    _create_npy(work / "flags.npy", np.dtype(bool), (n, len(spec.modalities)))
    journal.touch()
    # Written last: a folder without it is never resumed.
    with atomic_path(manifest_path) as temporary:
        temporary.write_text(json.dumps(manifest, indent=1))
    return set()


def _bad_file_error(bad: list[BadFile]) -> InputDataError:
    files = listed((f"{b.path} ({b.problem})" for b in bad), BAD_FILES_LISTED, "; ")
    more = " (all listed in the log)" if len(bad) > BAD_FILES_LISTED else ""
    return PatchFileError(
        Path(bad[0].path), f"{len(bad)} patch files cannot be used: {files}{more}"
    )


def build_patch_cache(
    layout: DatasetLayout,
    observations: pd.DataFrame,
    output_dir: Path,
    spec: CacheSpec,
    workers: int = 1,
    chunk_rows: int | None = None,
    progress: bool = True,
) -> CacheReport:
    """Decode the patches of ``observations`` (a table of ``observation_id``, ``latitude``,
    ``longitude`` and ``species_id``, in row order) into the cache folder ``output_dir``.

    Bad files (missing, unreadable, wrong shape) follow ``spec.on_bad_file``: ``fail`` raises
    a PatchFileError listing them after every other chunk is done (a rerun after mending the
    files redoes only their chunks); ``fill`` leaves zeros and flags them in the index.
    """
    output_dir = Path(output_dir)
    ids = observations["observation_id"].to_numpy(np.int64)
    n = len(ids)
    report = CacheReport(n=n)
    source_size = probe_source_size(layout, ids, spec) if n else spec.size
    check_geometry(source_size, spec.size, spec.mode)
    report.source_size = source_size
    row_bytes = sum(
        PATCH_ARRAY_DTYPES[m].itemsize * PATCH_CHANNELS[m] * spec.size**2 for m in spec.modalities
    )
    chunk_rows = chunk_rows or int(np.clip(CHUNK_BYTES // row_bytes, 1, 512))
    work = output_dir.parent / f".{output_dir.name}.partial"
    manifest = _manifest(layout, ids, spec, source_size, chunk_rows)
    done = _prepare_scratch(work, manifest, spec)
    offsets = {m: _data_offset(work / f"{m}.npy") for m in spec.modalities}
    flags = np.lib.format.open_memmap(work / "flags.npy", mode="r+")
    starts = range(0, n, chunk_rows)
    tasks = [
        _ChunkTask(layout.root, work, k, s, ids[s : s + chunk_rows], spec, source_size, offsets)
        for k, s in enumerate(starts)
        if k not in done
    ]
    report.resumed_chunks = len(starts) - len(tasks)
    if report.resumed_chunks:
        log.info("resuming: %d of %d chunks already built", report.resumed_chunks, len(starts))
    log.info(
        "caching %d observations (%s) at %d px (%s of %d px) with %d workers",
        n,
        ", ".join(spec.modalities),
        spec.size,
        spec.mode,
        source_size,
        workers,
    )
    with (
        open(work / "journal.txt", "a") as journal,
        tqdm(
            total=n,
            initial=n - sum(len(t.observation_ids) for t in tasks),
            desc="patch cache",
            unit="obs",
            mininterval=2,
            disable=not progress,
        ) as bar,
    ):
        for index, chunk_flags, bad in _run_chunks(tasks, workers):
            start = index * chunk_rows
            flags[start : start + len(chunk_flags)] = chunk_flags
            flags.flush()
            report.bad_files.extend(bad)
            if not (bad and spec.on_bad_file == "fail"):
                journal.write(f"{index}\n")  # after its rows are written: never a lie
                journal.flush()
            report.built_chunks += 1
            bar.update(len(chunk_flags))
    _log_bad_files(report.bad_files, spec.on_bad_file)
    if report.bad_files and spec.on_bad_file == "fail":
        raise _bad_file_error(report.bad_files)
    _finish(work, output_dir, observations, np.array(flags), spec, source_size)
    return report


def _run_chunks(tasks: list[_ChunkTask], workers: int):
    """Yield chunk results as they finish, in this process or in ``workers`` processes."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _build_chunk(task)
        return
    pool = ProcessPoolExecutor(workers)
    try:
        futures: list[Future] = [pool.submit(_build_chunk, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _log_bad_files(bad: list[BadFile], policy: str) -> None:
    if not bad:
        return
    level = logging.ERROR if policy == "fail" else logging.WARNING
    action = "cannot be used" if policy == "fail" else "were filled with zeros and flagged"
    log.log(level, "%d patch files %s:", len(bad), action)
    for item in sorted(bad, key=lambda b: (b.observation_id, b.modality)):
        log.log(level, "  %s: %s", item.path, item.problem)


def _finish(
    work: Path,
    output_dir: Path,
    observations: pd.DataFrame,
    flags: np.ndarray,
    spec: CacheSpec,
    source_size: int,
) -> None:
    """Write the index and meta, then move the complete scratch folder onto ``output_dir``."""
    n = len(observations)
    index = pd.DataFrame(
        {
            "row": np.arange(n, dtype=np.int64),
            "observation_id": observations["observation_id"].to_numpy(np.int64),
            "latitude": observations["latitude"].to_numpy(np.float64),
            "longitude": observations["longitude"].to_numpy(np.float64),
            "species_id": observations["species_id"].astype("Int32").array
            if "species_id" in observations
            else pd.array([pd.NA] * n, dtype="Int32"),
            "filled": flags.any(axis=1) if n else np.zeros(0, bool),
        }
    )
    for j, modality in enumerate(spec.modalities):
        index[f"filled_{modality}"] = flags[:, j]
    pq.write_table(pa.Table.from_pandas(index, preserve_index=False), work / INDEX_FILE)
    meta = {
        "version": CACHE_VERSION,
        "n": n,
        "size": spec.size,
        "mode": spec.mode,
        "source_size": source_size,
        "modalities": list(spec.modalities),
        "arrays": {
            m: {
                "file": f"{m}.npy",
                "dtype": PATCH_ARRAY_DTYPES[m].str,
                "shape": cache_shape(n, m, spec.size),
            }
            for m in spec.modalities
        },
        "n_filled": int(index["filled"].sum()),
        "on_bad_file": spec.on_bad_file,
    }
    (work / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    for modality in spec.modalities:  # on disk before the folder says it is complete
        fd = os.open(work / f"{modality}.npy", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for name in ("manifest.json", "journal.txt", "flags.npy"):
        (work / name).unlink()
    if output_dir.exists():
        shutil.rmtree(output_dir)
    os.replace(work, output_dir)


# --------------------------------------------------------------------------------------
# Reading a cache
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchCache:
    """A finished cache folder: its meta, its index, and its arrays by memory mapping."""

    directory: Path
    meta: dict
    index: pd.DataFrame

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.meta["modalities"])

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    def array(self, modality: str) -> np.ndarray:
        """The (n, C, S, S) array of a modality, memory-mapped read-only."""
        if modality not in self.modalities:
            raise KeyError(
                f"{self.directory} holds {list(self.modalities)}, not {modality!r}; "
                "add it to patches.modalities and rebuild"
            )
        return np.load(self.directory / f"{modality}.npy", mmap_mode="r")


def open_patch_cache(directory: str | Path) -> PatchCache:
    """Open a cache folder written by ``build_patch_cache`` (checks that it is complete)."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{directory} is not a finished patch cache (no {META_FILE}); "
            "build it with: snakemake cache_patches"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != CACHE_VERSION:
        raise ValueError(
            f"{directory}: cache version {meta.get('version')}, expected {CACHE_VERSION}"
        )
    index = pq.read_table(directory / INDEX_FILE).to_pandas()
    return PatchCache(directory, meta, index)
