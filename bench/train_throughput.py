"""Training throughput: samples/s of a patch model, data loading from the caches included.

Meant for a GPU machine (target: >= 3,000 samples/s for timm's ResNet-50 on 256 px patches
with channels_last, bf16 autocast and torch.compile on one H100, i.e. a GLC epoch of 1.59 M
observations in 9 minutes)::

    .venv/bin/python bench/train_throughput.py /tmp/glc-throughput \
        --n 8192 --size 256 --backbone resnet50 --batch-size 256 --workers 12 --steps 60 \
        --compile

``--store encoded`` reads the encoded store instead (JPEGs decoded on the GPU, TIFFs in
the loader workers). The workers ship raw uint8/int16 patches; normalisation and
augmentation run on the device, as in training. On a CPU it runs on a tiny input
(``--tiny``: 256 observations of 32 px, the small CNN)::

    .venv/bin/python bench/train_throughput.py /tmp/glc-throughput --tiny

It generates a demo dataset of ``--n`` train observations at ``--size`` px (or reads
``--data-root``), builds its train cache with the workflow's own ``build_patch_cache``,
reads it through ``GlcDataset`` and ``make_loader`` exactly as training does, and times the
workflow's own ``training.train_step`` (augmentation, forward, backward, optimizer) after a
warm-up. Results go to ``results.json`` in the folder; the data is deleted afterwards
unless --keep.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from geolifeclef.data.dataset import GlcDataset, make_loader
from geolifeclef.data.normalization import write_normalization_stats
from geolifeclef.data.observations import ingest_observations
from geolifeclef.demo import generate_demo_dataset
from geolifeclef.demo.spec import DemoSpec
from geolifeclef.experiments.training import make_loss, make_optimizer, train_step
from geolifeclef.layout import SPLITS, DatasetLayout
from geolifeclef.models.features import ModelBatch
from geolifeclef.models.networks import build_model
from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.store import CacheSpec
from geolifeclef.settings.configs import CnnConfig, ModelConfig, TrainConfig


def prepare_cache(folder: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """(train cache, normalisation statistics) built by the workflow's own code, from a
    generated demo dataset or the archive at ``--data-root``."""
    root = Path(args.data_root) if args.data_root else folder / "glc22"
    if not args.data_root and not (folder / "truth" / "summary.json").exists():
        spec = DemoSpec(
            n_species=min(args.species, 2_000),
            n_train=args.n,
            n_val=64,
            n_test=64,
            patch_size=args.size,
            n_clusters=max(12, args.n // 250),
        )
        generate_demo_dataset(root, folder / "truth", spec, workers=max(1, args.workers))
    layout = DatasetLayout(root)
    tables = {split: folder / "observations" / f"{split}.parquet" for split in SPLITS}
    ingest_observations(layout, tables)
    train = pd.read_parquet(tables["train"]).head(args.n)
    cache = folder / "cache"
    spec = CacheSpec(size=args.size, mode="resize", store=args.store)
    build_patch_cache(layout, train, cache, spec, workers=max(1, args.workers))
    stats = folder / "stats.json"
    write_normalization_stats(stats, tables["train"], train_cache=cache)
    return cache, stats


def measure(args: argparse.Namespace) -> dict:
    folder = Path(args.folder)
    cache, stats = prepare_cache(folder, args)
    modalities = tuple(args.modalities.split(","))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # As training reads them (experiments.trained): raw patches from the workers, made into
    # the model's inputs on the device; an encoded store's JPEGs decoded there on CUDA.
    dataset = GlcDataset(
        cache,
        modalities=modalities,
        stats=stats,
        transform=ModelBatch((), modalities, json.loads(Path(stats).read_text())),
        raw_patches=True,
        jpeg_device="cuda" if device.type == "cuda" else None,
    )
    loader = make_loader(
        dataset,
        args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        prefetch_factor=4 if args.workers else None,
        device=device,
    )
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
    if args.compile:
        model = torch.compile(model)
    config = TrainConfig(batch_size=args.batch_size, amp=not args.no_amp)
    optimizer = make_optimizer(model, config)
    loss_fn = make_loss(config, np.ones(args.species), device)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp)
    generator = torch.Generator().manual_seed(0)
    model.train()
    seen, started, step = 0, None, 0
    while step < args.warmup + args.steps:
        for batch in loader:
            if step == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started, seen = time.perf_counter(), 0
            train_step(model, batch, optimizer, loss_fn, scaler, config, device, generator)
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
        "store": args.store,
        "size": args.size,
        "modalities": list(modalities),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "amp": "bf16" if config.amp and device.type == "cuda" else "off",
        "compiled": args.compile,
        "steps_timed": args.steps,
        "samples_per_second": seen / elapsed,
        "glc_epoch_minutes": 1_587_395 / (seen / elapsed) / 60,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="scratch folder for the data and the cache")
    parser.add_argument("--n", type=int, default=8192, help="observations in the cache")
    parser.add_argument("--data-root", help="a GLC archive to read instead of a demo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--store", default="decoded", choices=["decoded", "encoded"])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--modalities", default="rgb,near_ir,altitude,landcover")
    parser.add_argument("--species", type=int, default=17_037)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
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
            for name in ("cache", "glc22", "truth", "observations"):
                shutil.rmtree(folder / name, ignore_errors=True)
            (folder / "stats.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
