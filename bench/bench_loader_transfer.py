"""Training loader: float32 patches made in the workers vs raw patches made on the device.

Writes ``--n`` random 256 px patches (smooth noise, so that the JPEGs have realistic sizes;
the four modalities) with the repository's writer (``patches.files.write_patch``), builds
an encoded store of them with ``build_patch_cache`` and reads it as training does, two
ways, in one run (alternated, ``--rounds`` times each, best kept):

- **before**: the workers normalise the patches to float32 and derive NDVI from them (the
  ``ModelBatch`` of before, a copy kept here); the main process augments them on the CPU
  (a rotation per sample) and then moves them to the device;
- **after**: the workers ship the patches raw (uint8, int16 altitude; ``raw_patches``);
  ``make_loader`` moves them to the device, where ``RawPatches`` normalises and derives
  them and ``augment_patches`` augments them.

It reports samples/s (whole batches, made and augmented, on ``--device``) and the bytes
per sample shipped from the workers (through shared memory, then to the device). On a CPU
the device is the CPU; on a GPU add ``--device cuda`` (JPEGs then decoded by nvJPEG)::

    .venv/bin/python bench/bench_loader_transfer.py /tmp/glc-bench-loader --n 2048
"""

import argparse
import gc
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from geolifeclef.data.dataset import GlcDataset, make_loader, to_device
from geolifeclef.data.patch_batches import RawPatches
from geolifeclef.experiments.training import augment_patches
from geolifeclef.layout import DatasetLayout
from geolifeclef.models.features import ModelBatch
from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.device_decode import EncodedJpegs
from geolifeclef.patches.files import write_patch
from geolifeclef.patches.normalize import ndvi
from geolifeclef.patches.store import CacheSpec
from geolifeclef.settings.configs import AugmentConfig
from geolifeclef.settings.inputs import DERIVED_MODALITIES

CNN_MODALITIES = ("rgb", "near_ir", "ndvi", "altitude", "landcover")
SOURCES = ("rgb", "near_ir", "altitude", "landcover")


def smooth_noise(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    coarse = rng.random((size // 16, size // 16, channels))
    fine = np.kron(coarse, np.ones((16, 16, 1))) + rng.normal(0, 0.05, (size, size, channels))
    return np.clip(fine, 0, 1)


def write_store(folder: Path, n: int, size: int, workers: int) -> tuple[Path, dict]:
    """An encoded store of ``n`` random patches, and their normalisation statistics."""
    layout = DatasetLayout(folder / "glc22")
    rng = np.random.default_rng(0)
    ids = 10_000_000 + np.arange(n)
    for observation_id in ids:
        write_patch(
            layout.patch(observation_id, "rgb"),
            "rgb",
            (smooth_noise(rng, size, 3) * 255).astype(np.uint8),
        )
        write_patch(
            layout.patch(observation_id, "near_ir"),
            "near_ir",
            (smooth_noise(rng, size, 1)[..., 0] * 255).astype(np.uint8),
        )
        write_patch(
            layout.patch(observation_id, "altitude"),
            "altitude",
            (smooth_noise(rng, size, 1)[..., 0] * 3000 - 100).astype(np.int16),
        )
        write_patch(
            layout.patch(observation_id, "landcover"),
            "landcover",
            (smooth_noise(rng, size, 1)[..., 0] * 17 + 1).astype(np.uint8),
        )
    observations = pd.DataFrame(
        {
            "observation_id": ids,
            "latitude": rng.uniform(43, 49, n),
            "longitude": rng.uniform(-1, 7, n),
            "species_id": rng.integers(0, 1000, n),
        }
    )
    cache = folder / "cache"
    spec = CacheSpec(size, "crop", store="encoded")
    build_patch_cache(layout, observations, cache, spec, workers=workers, progress=False)
    stats = {
        "patches": {
            "rgb": {"mean": [101.0, 99.5, 98.0], "std": [40.0, 41.0, 42.0]},
            "near_ir": {"mean": [120.0], "std": [45.0]},
            "altitude": {"mean": [900.0], "std": [700.0]},
        }
    }
    return cache, stats


class ModelBatchBefore:
    """The patches of ``ModelBatch`` before raw shipping: made in the workers from the
    dataset's normalised float32 patches (NDVI with the normalisation undone)."""

    def __init__(self, stats: dict) -> None:
        self.stats = stats

    def __call__(self, batch: dict) -> dict:
        patches = {m: self._patch(batch, m) for m in CNN_MODALITIES}
        return {"observation_id": batch["observation_id"], "patches": patches}

    def _patch(self, batch: dict, modality: str) -> torch.Tensor:
        if modality not in DERIVED_MODALITIES:
            return batch[modality]
        return ndvi(self._raw(batch, "rgb")[:, :1], self._raw(batch, "near_ir"))

    def _raw(self, batch: dict, modality: str) -> torch.Tensor:
        entry = self.stats["patches"][modality]
        mean = torch.tensor(entry["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(entry["std"], dtype=torch.float32).view(1, -1, 1, 1)
        return batch[modality].float() * std.clamp_min(1e-6) + mean


def augment_before(patches: dict, config: AugmentConfig, generator: torch.Generator) -> dict:
    """``augment_patches`` before: on the CPU, a rotation per sample."""
    first = next(iter(patches.values()))
    batch = first.shape[0]
    flips = torch.rand(batch, generator=generator) < 0.5
    turns = torch.randint(0, 4, (batch,), generator=generator)
    scale = 1 + (torch.rand(batch, generator=generator) * 2 - 1) * config.brightness
    out = {}
    for modality, t in patches.items():
        shape = (-1, *([1] * (t.dim() - 1)))
        t = torch.where(flips.view(shape), t.flip(-1), t)
        t = torch.stack([torch.rot90(t[i], int(turns[i]), dims=(-2, -1)) for i in range(batch)])
        if modality in ("rgb", "near_ir") and t.is_floating_point():
            t = t * scale.to(t.dtype).view(shape)
        out[modality] = t
    return out


def shipped_bytes(value) -> int:
    """Bytes of the tensors (and JPEG bytes) in a batch as it leaves the workers."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(shipped_bytes(v) for v in value.values())
    if isinstance(value, RawPatches):
        return shipped_bytes(value.sources)
    if isinstance(value, EncodedJpegs):
        return shipped_bytes(value.data) + shipped_bytes(value.offsets)
    return 0


def measure(way: str, cache: Path, stats: dict, args, device: torch.device) -> dict:
    config = AugmentConfig(flip=True, rotate=True, brightness=0.2)
    generator = torch.Generator().manual_seed(0)
    if way == "before":
        dataset = GlcDataset(
            cache, modalities=SOURCES, stats=stats, transform=ModelBatchBefore(stats)
        )
    else:
        dataset = GlcDataset(
            cache,
            modalities=SOURCES,
            stats=stats,
            transform=ModelBatch((), CNN_MODALITIES, stats),
            raw_patches=True,
            jpeg_device=str(device) if device.type == "cuda" else None,
        )
    loader = make_loader(
        dataset,
        args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda" and way == "after",
        drop_last=True,
        device=device,
    ).loader  # the DataLoader: its batches as shipped, moved below as training moves them
    cpu = cpu_seconds()
    seen, shipped, started = 0, 0, time.perf_counter()
    for batch in loader:
        shipped += shipped_bytes(batch)
        if way == "before":
            patches = augment_before(batch["patches"], config, generator)
            patches = to_device(patches, device)
        else:
            patches = to_device(batch, device)["patches"]
            patches = augment_patches(patches, config, generator)
        seen += len(batch["observation_id"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started
    del loader, dataset, batch
    gc.collect()  # the workers exit and are reaped: their CPU time is counted
    return {
        "samples_per_second": seen / elapsed,
        "cpu_ms_per_sample": (cpu_seconds() - cpu) / seen * 1e3,
        "bytes_per_sample": shipped / seen,
    }


def cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (the loader's workers): a
    measure of the work that a loaded machine does not distort as it does wall time."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="scratch folder (patches, store, results.json)")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    device = torch.device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        if not (folder / "cache").exists():
            cache, stats = write_store(folder, args.n, args.size, args.workers)
            (folder / "stats.json").write_text(json.dumps(stats))
        cache, stats = folder / "cache", json.loads((folder / "stats.json").read_text())
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for way in runs:
                runs[way].append(measure(way, cache, stats, args, device))
        results = {
            "device": args.device,
            "n": args.n,
            "size": args.size,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "cnn_modalities": list(CNN_MODALITIES),
        }
        for way, found in runs.items():
            results[way] = {
                "samples_per_second": round(max(r["samples_per_second"] for r in found), 1),
                "all_samples_per_second": [round(r["samples_per_second"], 1) for r in found],
                "cpu_ms_per_sample": round(min(r["cpu_ms_per_sample"] for r in found), 1),
                "bytes_per_sample": round(found[0]["bytes_per_sample"]),
            }
        (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            for name in ("glc22", "cache", "stats.json"):
                path = folder / name
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(
                    missing_ok=True
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
