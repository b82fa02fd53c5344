"""Patch statistics: a few numbers per observation that summarise its patches.

Computed once from a split's patch cache into ``results/patch_stats/{split}.parquet``
(``observation_id`` and the columns below, float32, in the cache's row order), and read as
tabular features by the random forest, the MLP and the fusion model (the 1st place of GLC
2022 fed its forest the same: quartiles of each band, altitude mean and range, land-cover
proportions):

==================  =====================================================================
group               columns
==================  =====================================================================
``patch_quantiles`` ``{red,green,blue,near_ir}_p{25,50,75}``: per-band percentiles of the
                    pixels (numpy's linear interpolation)
``altitude_stats``  ``altitude_{mean,std,min,range}``: metres (std over pixels, ddof 0)
``landcover_shares`` ``landcover_{0..33}``: share of the patch's pixels with each code
==================  =====================================================================

A modality the cache lacks leaves its columns NaN (the features then standardise to the
train mean); the quartiles need both ``rgb`` and ``near_ir``.

The bands are uint8, so their quartiles come exact from 256-bin histograms instead of
sorting the pixels, and the altitude statistics from exact integer sums, both in loops
compiled with numba (``plane_counts``, one pass a plane: ~1.5-2x PIL's C histogram, ~4x
numpy's altitude sums): ~40x ``torch.quantile`` per observation
(bench/bench_patch_stats.py). The rows are read straight from the cache's store
(``PatchStore``, decoded or encoded), a chunk at a time, in ``workers`` processes. Each
shard of the cache is written to a part file in a scratch folder beside the output
(``.{output name}.parts/``) as soon as it is done, keyed to that shard's build: a killed
run resumes from the shards it finished, and a part of another build of the cache, or a
damaged one, is recomputed. The parts are joined into the output and the scratch folder
removed at the end.
"""

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from geolifeclef.atomic import atomic_path
from geolifeclef.layout import N_LANDCOVER_CODES
from geolifeclef.patches.cache import open_patch_cache
from geolifeclef.patches.store import SHARD_FILE, PatchStore, ids_digest
from geolifeclef.settings.inputs import BANDS, PATCH_STAT_COLUMNS, PATCH_STAT_GROUPS, QUANTILES

log = logging.getLogger(__name__)

CHUNK_ROWS = 64
"""Observations read and summarised at a time (~30 MB of pixels at 256 px)."""
PARTS_VERSION = 1
"""Part of every part file's key: bump it when the statistics change, so that no part
computed the old way is joined to new ones."""
KEY_FIELD, DIGEST_FIELD = b"geolifeclef.key", b"geolifeclef.sha256"
"""A part file's metadata: the key of the shard build it summarises, and the sha256 of
its ids and values (a damaged file is not trusted)."""


# --------------------------------------------------------------------------------------
# Statistics of patches in memory
# --------------------------------------------------------------------------------------


def byte_histograms(planes: np.ndarray) -> np.ndarray:
    """(R, 256) int64 counts of the byte values in each row of (R, N) uint8 ``planes``
    (any strides: a band of a (B, C, S, S) batch reshaped to (B, S*S) is not copied)."""
    # numba (~1 CPU s to load) only where statistics are computed: every training and
    # prediction job imports this module for read_patch_stats.
    from geolifeclef.patches.plane_counts import byte_counts

    return byte_counts(np.asarray(planes, dtype=np.uint8))


def histogram_quantiles(counts: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """(B, Q) float64 quantiles (fractions in [0, 1]) of the values whose (B, V) counts
    are given (value v counted in column v), exactly as ``np.quantile(..., method=
    "linear")`` and ``torch.quantile`` give them on the values themselves."""
    n = counts.sum(axis=1, keepdims=True)
    if (n < 1).any():
        raise ValueError("quantiles of an empty histogram")
    ends = np.cumsum(counts, axis=1)  # sorted position after each value's last copy
    index = (n - 1) * np.asarray(quantiles, dtype=np.float64)[None, :]  # numpy's 'linear'
    below = np.floor(index)
    weight = index - below
    below = below.astype(np.int64)
    above = np.minimum(below + 1, n - 1)

    # The value at a sorted position is the number of values whose copies end at or
    # before it: one searchsorted over all rows, each row's ends shifted past the last.
    shift = np.arange(len(counts))[:, None] * (n.max() + 1)
    flat_ends = (ends + shift).ravel()

    def value_at(position: np.ndarray) -> np.ndarray:
        found = np.searchsorted(flat_ends, position + shift, side="right")
        return (found - np.arange(len(counts))[:, None] * counts.shape[1]).astype(np.float64)

    low, high = value_at(below), value_at(above)
    step = high - low
    # numpy's _lerp (and torch's lerp): from the nearer end, so that each end is exact.
    return np.where(weight < 0.5, low + step * weight, high - step * (1 - weight))


def altitude_statistics(altitude: np.ndarray) -> np.ndarray:
    """(B, 4) float64 mean, std (ddof 0), min and range of (B, ...) int16 altitudes.

    The sums of the values and of their squares are exact integers (int64, one pass), so
    the variance is (n * S2 - S1^2) / n^2 rounded once; n * S2 fits int64 up to 65,536
    pixels (256 px), beyond which (or for another dtype) numpy's float way is taken."""
    pixels = altitude.reshape(len(altitude), -1)
    n = pixels.shape[1]
    if pixels.dtype != np.int16 or n * 32768**2 * n >= 2**63:
        values = pixels.astype(np.float64)
        low, high = values.min(axis=1), values.max(axis=1)
        return np.stack([values.mean(1), values.std(1), low, high - low], axis=1)
    # numba only where statistics are computed (see byte_histograms).
    from geolifeclef.patches.plane_counts import integer_sums

    total, squares, low, high = integer_sums(np.ascontiguousarray(pixels)).T
    variance = (n * squares - total * total) / float(n * n)
    return np.stack([total / n, np.sqrt(variance), low, high - low], axis=1)


def landcover_shares(codes: np.ndarray) -> np.ndarray:
    """(B, N_LANDCOVER_CODES) float64 share of each code in (B, ...) uint8 land-cover
    patches; codes above the last are counted as the last (what the others leave)."""
    flat = codes.reshape(len(codes), -1)
    n = flat.shape[1]
    counts = byte_histograms(flat)[:, : N_LANDCOVER_CODES - 1]
    last = n - counts.sum(axis=1, keepdims=True)
    return np.concatenate([counts, last], axis=1) / n


def patch_statistics(patches: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """(n, len(PATCH_STAT_COLUMNS)) float32 statistics of the raw patches of ``n``
    observations (modality -> (n, C, S, S) in the cache's dtype); NaN for the columns of
    a modality ``patches`` lacks."""
    out = np.full((n, len(PATCH_STAT_COLUMNS)), np.nan, dtype=np.float32)
    if not n:
        return out
    if all(modality in patches for modality, _ in BANDS.values()):
        counts = np.stack(
            [byte_histograms(patches[m][:, c].reshape(n, -1)) for m, c in BANDS.values()], 1
        )
        fractions = np.array([q / 100 for q in QUANTILES])
        quantiles = histogram_quantiles(counts.reshape(-1, 256), fractions)  # all at once
        out[:, : len(BANDS) * len(QUANTILES)] = quantiles.reshape(n, -1)
    column = len(PATCH_STAT_GROUPS["patch_quantiles"])
    if "altitude" in patches:
        out[:, column : column + 4] = altitude_statistics(patches["altitude"])
    column += len(PATCH_STAT_GROUPS["altitude_stats"])
    if "landcover" in patches:
        out[:, column:] = landcover_shares(patches["landcover"])
    return out


def row_statistics(store: PatchStore, start: int, stop: int) -> np.ndarray:
    """The statistics of the cache rows ``start`` to ``stop``, read from ``store``."""
    rows = np.arange(start, stop)
    patches = {modality: store.read(modality, rows) for modality in store.modalities}
    return patch_statistics(patches, len(rows))


# --------------------------------------------------------------------------------------
# A whole cache, by shard, resumable
# --------------------------------------------------------------------------------------


def parts_folder(output: str | Path) -> Path:
    """The scratch folder of the part files of ``output``: ``.{name}.parts`` beside it."""
    output = Path(output)
    return output.parent / f".{output.name}.parts"


def shard_key(store: PatchStore, shard: dict) -> str:
    """What a shard's statistics depend on, hashed: the store's size, mode and modalities,
    the shard's rows and observation ids, its build record and its files (names, sizes,
    modification times: a rebuilt shard has new files)."""
    folder = store.directory / shard["name"]
    files = sorted(
        (path.name, path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.iterdir()
        if path.is_file()
    )
    ids = store.index["observation_id"].to_numpy(np.int64)[shard["start"] : shard["stop"]]
    record = {
        "version": PARTS_VERSION,
        "store": store.kind,
        "size": store.size,
        "mode": store.mode,
        "modalities": list(store.modalities),
        "rows": [shard["start"], shard["stop"]],
        "observation_ids_sha256": ids_digest(ids),
        "build": (folder / SHARD_FILE).read_text(),
        "files": files,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _content_digest(ids: np.ndarray, values: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return digest.hexdigest()


def write_part(path: Path, key: str, ids: np.ndarray, values: np.ndarray) -> None:
    """One shard's statistics, with its key and content digest, written atomically."""
    columns = {"observation_id": pa.array(ids, pa.int64())}
    columns.update({c: pa.array(values[:, j]) for j, c in enumerate(PATCH_STAT_COLUMNS)})
    table = pa.table(columns).replace_schema_metadata(
        {KEY_FIELD: key.encode(), DIGEST_FIELD: _content_digest(ids, values).encode()}
    )
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def read_part(path: Path, key: str, ids: np.ndarray) -> np.ndarray | None:
    """The values of a part file if it is whole and summarises the shard build ``key``
    (rows ``ids``); None, logged with the file's name and why, otherwise."""
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
        metadata = table.schema.metadata or {}
        if metadata.get(KEY_FIELD) != key.encode():
            log.info("%s was computed from another build of the cache: recomputing it", path)
            return None
        values = np.column_stack(
            [table[c].to_numpy().astype(np.float32, copy=False) for c in PATCH_STAT_COLUMNS]
        ).reshape(table.num_rows, len(PATCH_STAT_COLUMNS))
        found = table["observation_id"].to_numpy()
        problem = None
        if metadata.get(DIGEST_FIELD) != _content_digest(found, values).encode():
            problem = "its content does not match its sha256"
        elif not np.array_equal(found, ids):
            problem = "its observation ids are not the shard's"
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        problem = f"unreadable ({type(error).__name__}: {error})"
    if problem:
        log.warning("part file %s is damaged (%s): recomputing it", path, problem)
        return None
    return values


_WORKER_STORE: PatchStore | None = None
"""The cache a pool worker reads (opened once per process by ``_open_store``)."""


def _open_store(directory: Path) -> None:
    global _WORKER_STORE
    _WORKER_STORE = open_patch_cache(directory, index=False)


def _chunk_statistics(rows: tuple[int, int]) -> tuple[int, np.ndarray]:
    return rows[0], row_statistics(_WORKER_STORE, *rows)


def _run_chunks(directory: Path, store: PatchStore, chunks: list, workers: int):
    """Yield (start row, statistics) of each chunk, in order: here, or in ``workers``
    processes (each opening the cache once)."""
    if workers <= 1 or len(chunks) <= 1:
        for start, stop in chunks:
            yield start, row_statistics(store, start, stop)
        return
    pool = ProcessPoolExecutor(workers, initializer=_open_store, initargs=(directory,))
    try:
        yield from pool.map(_chunk_statistics, chunks)
    finally:  # on an error, not after computing every chunk left
        pool.shutdown(wait=True, cancel_futures=True)


def compute_patch_stats(
    cache_dir: str | Path,
    output: str | Path,
    workers: int = 1,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = True,
) -> pd.DataFrame:
    """The patch statistics of every observation of a cache, written to ``output``.

    Resumable: the shards whose part file (``parts_folder(output)``) is whole and of the
    same build of the cache are not recomputed."""
    cache_dir, output = Path(cache_dir), Path(output)
    store = open_patch_cache(cache_dir)
    ids = store.index["observation_id"].to_numpy(np.int64)
    scratch = parts_folder(output)
    scratch.mkdir(parents=True, exist_ok=True)
    shards = store.meta["shards"]
    keys = [shard_key(store, shard) for shard in shards]
    paths = [scratch / f"{shard['name']}.parquet" for shard in shards]
    parts = [
        read_part(path, key, ids[shard["start"] : shard["stop"]])
        for path, key, shard in zip(paths, keys, shards, strict=True)
    ]
    todo = [k for k, part in enumerate(parts) if part is None]
    log.info(
        "patch statistics of %d observations from %s (%s store, %d px): %d of %d shards "
        "resumed, %d workers",
        len(store),
        cache_dir,
        store.kind,
        store.size,
        len(shards) - len(todo),
        len(shards),
        workers,
    )
    chunks, owner = [], []
    for k in todo:
        for start in range(shards[k]["start"], shards[k]["stop"], chunk_rows):
            chunks.append((start, min(start + chunk_rows, shards[k]["stop"])))
            owner.append(k)
    for k in todo:  # an empty shard has no chunk
        if shards[k]["start"] == shards[k]["stop"]:
            parts[k] = _finish_part(paths[k], keys[k], ids[:0], [])
    pending: dict[int, list[np.ndarray]] = {k: [] for k in todo}
    rows_done = len(store) - sum(stop - start for start, stop in chunks)
    with tqdm(
        total=len(store),
        initial=rows_done,
        desc="patch statistics",
        unit="obs",
        mininterval=5,
        disable=not progress,
    ) as bar:
        results = _run_chunks(cache_dir, store, chunks, workers)
        for (start, values), k, (_, stop) in zip(results, owner, chunks, strict=True):
            pending[k].append(values)
            bar.update(stop - start)
            if stop == shards[k]["stop"]:  # chunks come in order: the shard is complete
                shard_ids = ids[shards[k]["start"] : stop]
                parts[k] = _finish_part(paths[k], keys[k], shard_ids, pending.pop(k))
    values = np.concatenate(parts) if parts else np.empty((0, len(PATCH_STAT_COLUMNS)), np.float32)
    table = pd.DataFrame(values, columns=list(PATCH_STAT_COLUMNS))
    table.insert(0, "observation_id", ids)
    with atomic_path(output) as temporary:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), temporary)
    shutil.rmtree(scratch)
    return table


def _finish_part(path: Path, key: str, ids: np.ndarray, chunks: list[np.ndarray]) -> np.ndarray:
    values = np.concatenate(chunks) if chunks else np.empty((0, len(PATCH_STAT_COLUMNS)))
    values = values.astype(np.float32, copy=False)
    write_part(path, key, ids, values)
    return values


def read_patch_stats(path: str | Path, observation_ids: np.ndarray) -> np.ndarray:
    """(n, len(PATCH_STAT_COLUMNS)) float32 rows of ``observation_ids``, in that order."""
    table = pd.read_parquet(path).set_index("observation_id")
    missing = np.setdiff1d(observation_ids, table.index.to_numpy())
    if len(missing):
        raise KeyError(
            f"{path} has no row for {len(missing)} observations (first: {missing[:5]}); "
            "rebuild it with: snakemake extraction"
        )
    return table.loc[observation_ids, list(PATCH_STAT_COLUMNS)].to_numpy(np.float32)
