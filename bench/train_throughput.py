"""Training throughput: samples/s of a patch model, data loading from the caches included.

Meant for a GPU machine (target: >= 2,500 samples/s for ResNet-50 on 256 px patches with
AMP on one H100, i.e. a GLC epoch of 1.59 M observations in ~11 minutes)::

    .venv/bin/python bench/train_throughput.py /tmp/glc-throughput \
        --n 8192 --size 256 --backbone resnet50 --batch-size 256 --workers 12 --steps 60

On a CPU it runs on a tiny input (``--tiny``: 256 observations of 32 px, the small CNN)::

    .venv/bin/python bench/train_throughput.py /tmp/glc-throughput --tiny

It writes a patch cache of random patches in the workflow's format (the same files that
``cache_patches`` writes), reads it through ``GlcDataset`` and ``make_loader`` exactly as
training does, and times full training steps (forward, backward, optimizer) after a warm-up.
Results go to ``results.json`` in the folder, which is deleted afterwards unless --keep.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from geolifeclef.dataset import GlcDataset, make_loader
from geolifeclef.experiment import ModelBatch
from geolifeclef.layout import PATCH_CHANNELS
from geolifeclef.models import CnnConfig, ModelConfig, build_model
from geolifeclef.patch_cache import CACHE_DTYPES, CACHE_VERSION, INDEX_FILE, META_FILE
from geolifeclef.training import TrainConfig, _autocast, make_loss, make_optimizer, to_device

MODALITIES = ("rgb", "near_ir", "altitude", "landcover")


def write_random_cache(folder: Path, n: int, size: int, n_species: int, seed: int = 0) -> dict:
    """A patch cache of ``n`` random observations in the format of ``cache_patches``;
    returns normalisation statistics for it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for modality in MODALITIES:
        shape = (n, PATCH_CHANNELS[modality], size, size)
        dtype = CACHE_DTYPES[modality]
        array = np.lib.format.open_memmap(folder / f"{modality}.npy", "w+", dtype, shape)
        for start in range(0, n, 512):  # bounded memory
            stop = min(n, start + 512)
            if modality == "landcover":
                array[start:stop] = rng.integers(1, 34, (stop - start, *shape[1:]), dtype=np.uint8)
            elif modality == "altitude":
                array[start:stop] = rng.integers(
                    0, 3000, (stop - start, *shape[1:]), dtype=np.int16
                )
            else:
                array[start:stop] = rng.integers(0, 256, (stop - start, *shape[1:]), dtype=np.uint8)
        array.flush()
        arrays[modality] = {"file": f"{modality}.npy", "dtype": dtype.str, "shape": list(shape)}
    index = pd.DataFrame(
        {
            "row": np.arange(n, dtype=np.int64),
            "observation_id": 10_000_000 + np.arange(n, dtype=np.int64),
            "latitude": rng.uniform(42, 51, n),
            "longitude": rng.uniform(-4, 8, n),
            "species_id": pd.array(rng.integers(0, n_species, n), dtype="Int32"),
            "filled": np.zeros(n, bool),
            **{f"filled_{m}": np.zeros(n, bool) for m in MODALITIES},
        }
    )
    pq.write_table(pa.Table.from_pandas(index, preserve_index=False), folder / INDEX_FILE)
    meta = {
        "version": CACHE_VERSION,
        "n": n,
        "size": size,
        "mode": "resize",
        "source_size": size,
        "modalities": list(MODALITIES),
        "arrays": arrays,
        "n_filled": 0,
        "on_bad_file": "fail",
    }
    (folder / META_FILE).write_text(json.dumps(meta))
    uniform = {"mean": [127.5], "std": [73.6]}
    return {
        "patches": {
            "rgb": {"mean": [127.5] * 3, "std": [73.6] * 3},
            "near_ir": uniform,
            "altitude": {"mean": [1500.0], "std": [866.0]},
        }
    }


def measure(args: argparse.Namespace) -> dict:
    folder = Path(args.folder)
    stats = write_random_cache(folder / "cache", args.n, args.size, args.species)
    modalities = tuple(args.modalities.split(","))
    dataset = GlcDataset(
        folder / "cache",
        modalities=modalities,
        stats=stats,
        transform=ModelBatch((), modalities),
    )
    loader = make_loader(
        dataset,
        args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        prefetch_factor=4 if args.workers else None,
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(
        ModelConfig(
            kind="cnn",
            n_classes=args.species,
            modalities=modalities,
            cnn=CnnConfig(backbone=args.backbone, width=16),
        )
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    config = TrainConfig(batch_size=args.batch_size, amp=not args.no_amp)
    optimizer = make_optimizer(model, config)
    loss_fn = make_loss(config, np.ones(args.species), device)
    model.train()
    seen, started, step = 0, None, 0
    while step < args.warmup + args.steps:
        for batch in loader:
            if step == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started, seen = time.perf_counter(), 0
            batch = to_device(batch, device)
            with _autocast(device, enabled=config.amp):
                logits = model(batch)
            loss = loss_fn(logits, batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(batch["label"])
            step += 1
            if step >= args.warmup + args.steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    return {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "backbone": args.backbone,
        "size": args.size,
        "modalities": list(modalities),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "amp": config.amp and device.type == "cuda",
        "steps_timed": args.steps,
        "samples_per_second": seen / elapsed,
        "glc_epoch_minutes": 1_587_395 / (seen / elapsed) / 60,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="scratch folder for the random cache")
    parser.add_argument("--n", type=int, default=8192, help="observations in the cache")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--modalities", default="rgb,near_ir,altitude,landcover")
    parser.add_argument("--species", type=int, default=17_037)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny input")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.n, args.size, args.backbone, args.species = 256, 32, "small", 100
        args.batch_size, args.workers, args.warmup, args.steps = 32, 0, 2, 4
    folder = Path(args.folder)
    try:
        results = measure(args)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(folder / "cache", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
