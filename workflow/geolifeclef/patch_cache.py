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
from .errors import InputDataError
from .layout import ENV_VARIABLES, PATCH_CHANNELS, PATCH_SUFFIXES, DatasetLayout
from .patch_files import PatchFileError, read_patch

log = logging.getLogger(__name__)

MODALITIES = tuple(PATCH_SUFFIXES)
"""Patch modalities, in the order of the archive: rgb, near_ir, altitude, landcover."""
CACHE_DTYPES = {
    "rgb": np.dtype(np.uint8),
    "near_ir": np.dtype(np.uint8),
    "altitude": np.dtype("<i2"),
    "landcover": np.dtype(np.uint8),
}
CONTINUOUS_MODALITIES = ("rgb", "near_ir", "altitude")
"""Modalities that are quantities (normalised by mean/std); landcover holds categories."""
MODES = ("crop", "resize")
BAD_FILE_POLICIES = ("fail", "fill")
CACHE_VERSION = 1
INDEX_FILE = "index.parquet"
META_FILE = "meta.json"
CHUNK_BYTES = 32 * 2**20
"""Decoded bytes per work unit of a build (per worker process)."""
PROBE_OBSERVATIONS = 50
"""Observations tried to find the side length of the source patches."""
MAX_LISTED = 20
"""Bad files listed in an error message (the log lists them all)."""
STATS_MAX_ROWS = 200_000
"""Cache rows (evenly spaced) that the per-channel statistics are computed from."""


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


def check_geometry(source_size: int, size: int, mode: str) -> None:
    """Refuse a size that the mode cannot produce from ``source_size`` pixel patches."""
    if size > source_size:
        raise ValueError(
            f"patches.size {size} is larger than the source patches ({source_size} px); "
            f"choose a size <= {source_size}"
        )
    if mode == "resize" and source_size % size:
        divisors = [d for d in range(1, source_size + 1) if source_size % d == 0]
        raise ValueError(
            f"patches.mode resize needs a size that divides the source side {source_size}; "
            f"choose one of {divisors[-6:]}, or patches.mode: crop"
        )


def cache_shape(n: int, modality: str, size: int) -> tuple[int, int, int, int]:
    """Shape of a modality's cache array: (n, channels, size, size)."""
    return (n, PATCH_CHANNELS[modality], size, size)


def transform_patch(array: np.ndarray, modality: str, size: int, mode: str) -> np.ndarray:
    """A decoded patch (HxW or HxWx3, as ``read_patch`` returns it) as a cache row:
    (channels, size, size) in the cache dtype, centre-cropped or block-resized."""
    hwc = array if array.ndim == 3 else array[:, :, None]
    source, channels = hwc.shape[0], hwc.shape[2]
    if mode == "crop" or size == source:
        start = (source - size) // 2
        out = hwc[start : start + size, start : start + size]
    else:
        factor = source // size
        if modality in CONTINUOUS_MODALITIES:
            out = _block_mean(hwc, factor)
        else:
            out = _block_majority(hwc.reshape(size, factor, size, factor, channels))
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=CACHE_DTYPES[modality])


def _block_mean(hwc: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each (factor x factor) block, rounded half up, exact in integer arithmetic.

    Sums strided slices (factor additions per axis) rather than reducing a 5-d view:
    several times faster, and a build spends its time here for ``resize``.
    """
    area = factor * factor
    small = hwc.dtype == np.uint8 and area * 255 < 2**16
    rows = hwc[0::factor].astype(np.uint16 if small else np.int64)
    for i in range(1, factor):
        rows += hwc[i::factor]
    sums = rows[:, 0::factor].copy()
    for j in range(1, factor):
        sums += rows[:, j::factor]
    return (sums.astype(np.int64) + area // 2) // area


def _block_majority(blocks: np.ndarray) -> np.ndarray:
    """Most frequent code of each (factor x factor) block, the smallest on ties."""
    size, factor, _, _, channels = blocks.shape
    codes = blocks.transpose(0, 2, 4, 1, 3).reshape(-1, factor * factor).astype(np.int64)
    n_codes = int(codes.max()) + 1
    cell = np.arange(len(codes))[:, None] * n_codes
    counts = np.bincount((cell + codes).ravel(), minlength=len(codes) * n_codes)
    best = counts.reshape(len(codes), n_codes).argmax(axis=1)
    return best.reshape(size, size, channels)


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
        block = np.zeros(cache_shape(n, modality, spec.size), dtype=CACHE_DTYPES[modality])
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
            work / f"{modality}.npy", CACHE_DTYPES[modality], cache_shape(n, modality, spec.size)
        )
    _create_npy(work / "flags.npy", np.dtype(bool), (n, len(spec.modalities)))
    journal.touch()
    # Written last: a folder without it is never resumed.
    with atomic_path(manifest_path) as temporary:
        temporary.write_text(json.dumps(manifest, indent=1))
    return set()


def _bad_file_error(bad: list[BadFile]) -> InputDataError:
    listed = "; ".join(f"{b.path} ({b.problem})" for b in bad[:MAX_LISTED])
    more = (
        f"; and {len(bad) - MAX_LISTED} more (all listed in the log)"
        if len(bad) > MAX_LISTED
        else ""
    )
    return PatchFileError(
        Path(bad[0].path), f"{len(bad)} patch files cannot be used: {listed}{more}"
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
        CACHE_DTYPES[m].itemsize * PATCH_CHANNELS[m] * spec.size**2 for m in spec.modalities
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
                "dtype": CACHE_DTYPES[m].str,
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


# --------------------------------------------------------------------------------------
# Normalisation statistics
# --------------------------------------------------------------------------------------


def _merge_moments(
    count: float, mean: np.ndarray, m2: np.ndarray, other: tuple[float, np.ndarray, np.ndarray]
) -> tuple[float, np.ndarray, np.ndarray]:
    """Chan et al.'s parallel update of (count, mean, sum of squared deviations)."""
    n_b, mean_b, m2_b = other
    total = count + n_b
    delta = mean_b - mean
    return total, mean + delta * n_b / total, m2 + m2_b + delta**2 * count * n_b / total


def patch_statistics(cache: PatchCache, max_rows: int = STATS_MAX_ROWS) -> dict:
    """Per-channel mean and std (over pixels) of the continuous modalities, and the share of
    each land-cover code, from the rows without a filled patch (at most ``max_rows`` evenly
    spaced rows: at full scale a subset estimates them to many digits, at a fraction of IO)."""
    stats: dict = {"size": cache.size, "mode": cache.meta["mode"]}
    for modality in cache.modalities:
        usable = np.flatnonzero(~cache.index[f"filled_{modality}"].to_numpy(bool))
        if len(usable) > max_rows:
            usable = usable[np.linspace(0, len(usable) - 1, max_rows).round().astype(np.int64)]
        array = cache.array(modality)
        channels = array.shape[1]
        step = max(1, CHUNK_BYTES // max(1, array[:1].nbytes * 8))
        if modality not in CONTINUOUS_MODALITIES:
            counts = np.zeros(256, dtype=np.int64)
            for start in range(0, len(usable), step):
                block = array[usable[start : start + step]]
                counts += np.bincount(block.ravel(), minlength=256)
            last = int(np.flatnonzero(counts).max()) + 1 if counts.any() else 1
            stats[modality] = {
                "rows": len(usable),
                "counts": counts[:last].tolist(),
                "share": (counts[:last] / max(1, counts.sum())).tolist(),
            }
            continue
        count, mean, m2 = 0.0, np.zeros(channels), np.zeros(channels)
        for start in range(0, len(usable), step):
            block = array[usable[start : start + step]].astype(np.float64)
            pixels = block.transpose(1, 0, 2, 3).reshape(channels, -1)
            block_mean = pixels.mean(axis=1)
            block_m2 = ((pixels - block_mean[:, None]) ** 2).sum(axis=1)
            count, mean, m2 = _merge_moments(
                count, mean, m2, (pixels.shape[1], block_mean, block_m2)
            )
        std = np.sqrt(m2 / count) if count else np.full(channels, np.nan)
        stats[modality] = {"rows": len(usable), "mean": mean.tolist(), "std": std.tolist()}
    return stats


def env_statistics(env: pd.DataFrame, observation_ids: np.ndarray) -> dict:
    """Mean, std and NaN count of each env variable over the given observations."""
    rows = env.set_index("observation_id").reindex(observation_ids)
    values = rows[list(ENV_VARIABLES)].to_numpy(np.float64)
    valid = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(values, axis=0) if len(values) else np.full(values.shape[1], np.nan)
        std = np.nanstd(values, axis=0) if len(values) else np.full(values.shape[1], np.nan)
    return {
        "variables": list(ENV_VARIABLES),
        "mean": [float(x) for x in mean],
        "std": [float(x) for x in std],
        "n_nan": [int(x) for x in (~valid).sum(axis=0)],
        "rows": len(values),
    }


def write_normalization_stats(
    output: Path,
    train_table: Path,
    env_table: Path | None = None,
    train_cache: Path | None = None,
) -> dict:
    """Normalisation statistics of the train split, as JSON at ``output``:

    ``{"patches": {modality: {"mean": [...], "std": [...]} | {"counts", "share"}},
    "environment": {"variables", "mean", "std", "n_nan"}}`` (a section is absent when its
    input is not given).
    """
    stats: dict = {"split": "train"}
    if train_cache is not None:
        stats["patches"] = patch_statistics(open_patch_cache(train_cache))
    if env_table is not None:
        ids = pd.read_parquet(train_table, columns=["observation_id"])["observation_id"].to_numpy()
        stats["environment"] = env_statistics(pd.read_parquet(env_table), ids)
    with atomic_path(output) as temporary:
        temporary.write_text(json.dumps(stats, indent=1) + "\n")
    return stats
