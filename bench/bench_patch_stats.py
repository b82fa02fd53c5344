"""Benchmark: patch statistics from histograms (``geolifeclef.patches.stats``) against the
``torch.quantile`` way they were computed before, per thread, at 256 px.

1. In memory: the same random 256 px batches (rgb, near_ir, altitude, land cover) go to
   the old function (kept below as ``torch_batch_statistics``, as it was in
   ``patches/stats.py``), to the PIL histogram version (``pil_histogram_statistics``) and
   to ``patch_statistics`` (compiled histograms), in turn, ``--repeats`` times;
   observations per second per thread of each, the ratios to the old, and whether the
   values are equal (exact float32).
2. End to end on a real encoded store: ``--n`` observations of smooth random 256 px
   patches written as the archive's JPEG/TIFF files with ``patches.files.write_patch``,
   built into an encoded store (``build_patch_cache``) and read at 256 px (crop);
   ``compute_patch_stats`` (decode + statistics + part files + output) against the old
   path (``GlcDataset`` raw batches through ``make_loader`` + ``torch_batch_statistics``),
   one after the other, one thread each, tables checked equal.

    .venv/bin/python bench/bench_patch_stats.py /tmp/glc-bench-stats [--n 1000] [--keep]

Times are this process's CPU seconds (one thread: OMP_NUM_THREADS=1, torch set to 1
thread), so that other jobs on shared cores do not count; rates are per thread.
Writes results.json in the work folder and removes everything else unless ``--keep``.
"""

import argparse
import json
import os
import shutil
import struct
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # per thread: before numpy and torch load

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from geolifeclef.data.dataset import GlcDataset, make_loader  # noqa: E402
from geolifeclef.layout import N_LANDCOVER_CODES, DatasetLayout  # noqa: E402
from geolifeclef.patches.cache import build_patch_cache  # noqa: E402
from geolifeclef.patches.files import write_patch  # noqa: E402
from geolifeclef.patches.stats import (  # noqa: E402
    compute_patch_stats,
    histogram_quantiles,
    patch_statistics,
)
from geolifeclef.patches.store import CacheSpec  # noqa: E402
from geolifeclef.settings.inputs import (  # noqa: E402
    BANDS,
    PATCH_STAT_COLUMNS,
    PATCH_STAT_GROUPS,
    QUANTILES,
)

SIZE = 256


def torch_batch_statistics(batch: dict[str, torch.Tensor]) -> np.ndarray:
    """The statistics as ``patches/stats.py::batch_statistics`` computed them before
    (torch.quantile sorts every band's pixels)."""
    first = batch["observation_id"]
    out = np.full((len(first), len(PATCH_STAT_COLUMNS)), np.nan, dtype=np.float32)
    column = 0
    if all(modality in batch for modality, _ in BANDS.values()):
        q = torch.tensor([q / 100 for q in QUANTILES], dtype=torch.float64)
        for modality, channel in BANDS.values():
            pixels = batch[modality][:, channel].flatten(1).double()
            out[:, column : column + len(QUANTILES)] = torch.quantile(pixels, q, dim=1).T.numpy()
            column += len(QUANTILES)
    column = len(PATCH_STAT_GROUPS["patch_quantiles"])
    if "altitude" in batch:
        altitude = batch["altitude"].flatten(1).double()
        low, high = altitude.amin(1), altitude.amax(1)
        stats = [altitude.mean(1), altitude.std(1, correction=0), low, high - low]
        out[:, column : column + 4] = torch.stack(stats, dim=1).numpy()
    column += len(PATCH_STAT_GROUPS["altitude_stats"])
    if "landcover" in batch:
        codes = batch["landcover"].long().flatten(1).clamp(0, N_LANDCOVER_CODES - 1)
        counts = torch.zeros(len(codes), N_LANDCOVER_CODES, dtype=torch.float64)
        counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=torch.float64))
        out[:, column:] = (counts / codes.shape[1]).numpy()
    return out


def pil_histogram_statistics(patches: dict[str, np.ndarray], n: int) -> np.ndarray:
    """``patch_statistics`` as it was before its histograms were compiled (commit a76b2d1):
    PIL's C histogram of each plane packed with ``struct``, altitude sums in float64
    through one cached row buffer."""

    def histograms(planes, bins=256):
        images = (
            Image.frombuffer("L", (p.size, 1), np.ascontiguousarray(p), "raw", "L", 0, 1)
            for p in planes
        )
        packed = b"".join(struct.pack(f"{bins}q", *im.histogram()[:bins]) for im in images)
        return np.frombuffer(packed, np.int64).reshape(len(planes), bins)

    out = np.full((n, len(PATCH_STAT_COLUMNS)), np.nan, dtype=np.float32)
    rows = [row for m, c in BANDS.values() for row in patches[m][:, c].reshape(n, -1)]
    counts = histograms(rows).reshape(len(BANDS), n, 256).transpose(1, 0, 2)
    fractions = np.array([q / 100 for q in QUANTILES])
    quantiles = histogram_quantiles(counts.reshape(-1, 256), fractions).reshape(n, -1)
    out[:, : len(BANDS) * len(QUANTILES)] = quantiles
    column = len(PATCH_STAT_GROUPS["patch_quantiles"])
    pixels = patches["altitude"].reshape(n, -1)
    size = pixels.shape[1]
    low, high = pixels.min(axis=1).astype(np.int64), pixels.max(axis=1).astype(np.int64)
    sums = np.empty((n, 2))
    values = np.empty(size)
    for i, row in enumerate(pixels):
        np.copyto(values, row)
        sums[i] = values.sum(), values @ values
    total, squares = sums.T.astype(np.int64)
    variance = (size * squares - total * total) / float(size * size)
    out[:, column : column + 4] = np.stack(
        [total / size, np.sqrt(variance), low, high - low], axis=1
    )
    flat = patches["landcover"].reshape(n, -1)
    lc = histograms(list(flat), N_LANDCOVER_CODES - 1)
    last = size - lc.sum(axis=1, keepdims=True)
    out[:, column + 4 :] = np.concatenate([lc, last], axis=1) / size
    return out


def smooth_patches(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """(n, C, 256, 256) patches like the archive's: 16 px blocks of random values plus
    pixel noise (JPEGs of plain noise would be several times the real files' size)."""

    def blocks(low, high, channels, noise):
        coarse = rng.integers(low, high, (n, channels, SIZE // 16, SIZE // 16))
        fine = coarse.repeat(16, axis=2).repeat(16, axis=3)
        return fine + (rng.integers(-noise, noise + 1, fine.shape) if noise else 0)

    return {
        "rgb": np.clip(blocks(20, 236, 3, 12), 0, 255).astype(np.uint8),
        "near_ir": np.clip(blocks(20, 236, 1, 12), 0, 255).astype(np.uint8),
        "altitude": blocks(0, 3000, 1, 20).astype(np.int16),
        "landcover": blocks(1, 18, 1, 0).astype(np.uint8),
    }


def in_memory(repeats: int, batch: int, seed: int = 0) -> dict:
    """Old, PIL and compiled on the same batches, in turn; seconds summed per side."""
    rng = np.random.default_rng(seed)
    # patch_statistics loads numba and its compiled loops at its first call, once a job:
    # not timed.
    patch_statistics(smooth_patches(np.random.default_rng(seed + 1), 1), 1)
    seconds = {"torch.quantile": 0.0, "histograms (PIL)": 0.0, "histograms (numba)": 0.0}
    equal = True
    for _ in range(repeats):
        patches = smooth_patches(rng, batch)
        tensors = {m: torch.from_numpy(a) for m, a in patches.items()}
        tensors["observation_id"] = torch.arange(batch)
        start = time.process_time()
        old = torch_batch_statistics(tensors)
        seconds["torch.quantile"] += time.process_time() - start
        start = time.process_time()
        pil = pil_histogram_statistics(patches, batch)
        seconds["histograms (PIL)"] += time.process_time() - start
        start = time.process_time()
        new = patch_statistics(patches, batch)
        seconds["histograms (numba)"] += time.process_time() - start
        equal = equal and np.array_equal(old, new) and np.array_equal(pil, new)
    n = repeats * batch
    rates = {side: n / s for side, s in seconds.items()}
    return {
        "observations": n,
        "obs_per_s_per_thread": rates,
        "ms_per_obs": {side: 1000 * s / n for side, s in seconds.items()},
        "ratio": rates["histograms (numba)"] / rates["torch.quantile"],
        "ratio_pil": rates["histograms (PIL)"] / rates["torch.quantile"],
        "ratio_numba_to_pil": rates["histograms (numba)"] / rates["histograms (PIL)"],
        "equal": bool(equal),
    }


def write_layout(root: Path, n: int, seed: int = 1) -> pd.DataFrame:
    """``n`` French observations with their four patch files; their table."""
    layout = DatasetLayout(root)
    rng = np.random.default_rng(seed)
    ids = 10_000_000 + np.arange(n, dtype=np.int64)
    for start in range(0, n, 100):
        chunk = ids[start : start + 100]
        patches = smooth_patches(rng, len(chunk))
        for i, observation_id in enumerate(chunk):
            for modality, array in patches.items():
                pixels = array[i].transpose(1, 2, 0) if modality == "rgb" else array[i, 0]
                write_patch(layout.patch(int(observation_id), modality), modality, pixels)
    return pd.DataFrame(
        {"observation_id": ids, "latitude": 45.0, "longitude": 2.0, "species_id": 0}
    )


def end_to_end(workdir: Path, n: int, batch: int) -> dict:
    layout = DatasetLayout(workdir / "glc22")
    observations = write_layout(layout.root, n)
    cache = workdir / "encoded-256"
    spec = CacheSpec(SIZE, "crop", store="encoded")
    build_patch_cache(layout, observations, cache, spec, workers=1, progress=False)
    start = time.process_time()
    new = compute_patch_stats(cache, workdir / "stats.parquet", workers=1, progress=False)
    new_seconds = time.process_time() - start
    start = time.process_time()
    loader = make_loader(GlcDataset(cache, normalize=False), batch, num_workers=0)
    old = np.concatenate([torch_batch_statistics(b) for b in loader])
    old_seconds = time.process_time() - start
    return {
        "observations": n,
        "store": "encoded, 256 px sources read at 256 px (crop)",
        "obs_per_s_per_thread": {
            "GlcDataset + torch.quantile": n / old_seconds,
            "compute_patch_stats": n / new_seconds,
        },
        "ratio": old_seconds / new_seconds,
        "equal": bool(np.array_equal(old, new[list(PATCH_STAT_COLUMNS)].to_numpy())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="patch statistics: histograms vs torch")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--repeats", type=int, default=8, help="in-memory batches")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n", type=int, default=1000, help="observations in the store")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = {"threads": 1, "in_memory": in_memory(args.repeats, args.batch)}
    print(json.dumps(result, indent=1), flush=True)
    if args.n:
        result["encoded_store"] = end_to_end(args.workdir, args.n, args.batch)
    (args.workdir / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    if not args.keep:
        for path in args.workdir.iterdir():
            if path.name != "results.json":
                shutil.rmtree(path) if path.is_dir() else path.unlink()


if __name__ == "__main__":
    main()
