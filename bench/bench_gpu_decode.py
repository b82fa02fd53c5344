"""GPU decoding of the encoded patch store: samples/s, and nvJPEG against the CPU pixels.

Run on a machine with a CUDA GPU (about 3 minutes with generation, 16 CPU cores)::

    .venv/bin/python bench/bench_gpu_decode.py /tmp/glc-gpu --n 8192 --workers 12

It generates a demo of ``--n`` train observations with 256 px patches (or reads
``--data-root``), builds its encoded store with the workflow's ``build_patch_cache``
and measures, at batch ``--batch-size``:

1. ``gpu_decode_images_per_second``: ``torchvision.io.decode_jpeg(list, device="cuda")``
   alone on batches of stored JPEG bytes, per modality;
2. ``max_abs_diff``: the largest pixel difference between the GPU and the CPU decoders
   (simplejpeg, bit-exact with PIL) over the first batches, per modality;
3. ``loader_samples_per_second``: ``make_loader`` over ``GlcDataset(...,
   jpeg_device="cuda")``, the four modalities normalised, as training reads them (TIFFs
   decoded in ``--workers`` worker processes, JPEGs on the GPU), with the same on the
   CPU path (``jpeg_device=None``) for comparison.

Then run the training throughput on the same store (``bench/train_throughput.py --store
encoded``). Results go to results.json in the folder.
"""

import argparse
import json
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
from geolifeclef.layout import SPLITS, DatasetLayout
from geolifeclef.patches.cache import build_patch_cache, open_patch_cache
from geolifeclef.patches.device_decode import EncodedJpegs
from geolifeclef.patches.store import CacheSpec


def build_store(folder: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    root = Path(args.data_root) if args.data_root else folder / "glc22"
    if not args.data_root and not (folder / "truth" / "summary.json").exists():
        spec = DemoSpec(n_species=2_000, n_train=args.n, n_val=64, n_test=64, n_clusters=80)
        generate_demo_dataset(root, folder / "truth", spec, workers=args.workers)
    layout = DatasetLayout(root)
    tables = {split: folder / "observations" / f"{split}.parquet" for split in SPLITS}
    ingest_observations(layout, tables)
    train = pd.read_parquet(tables["train"]).head(args.n)
    cache = folder / "encoded" / "train"
    if not cache.exists():
        spec = CacheSpec(256, "crop", store="encoded")
        build_patch_cache(layout, train, cache, spec, workers=args.workers, progress=False)
    stats = folder / "stats.json"
    write_normalization_stats(stats, tables["train"], train_cache=cache)
    return cache, stats


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(loader, batches: int, device: torch.device) -> float:
    """Samples/s over ``batches`` batches after a warm-up batch (synchronised)."""
    iterator, seen = iter(loader), 0
    next(iterator)
    sync(device)
    started = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        seen += len(batch["observation_id"])
    sync(device)
    return seen / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--data-root")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of the same code")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures GPU decoding", file=sys.stderr)
        return 1
    folder = Path(args.folder)
    cache, stats = build_store(folder, args)
    store = open_patch_cache(cache)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results: dict = {"device": name, "n": len(store), "batch_size": args.batch_size}
    dataset = GlcDataset(cache, stats=stats, normalize=False, jpeg_device=str(device))
    for modality in ("rgb", "near_ir"):
        decode_rate, diff = [], 0
        for start in range(0, min(len(store), args.batches * args.batch_size), args.batch_size):
            rows = np.arange(start, min(start + args.batch_size, len(store)))
            encoded: EncodedJpegs = dataset.__getitems__(rows)[modality]
            sync(device)
            began = time.perf_counter()
            on_gpu = encoded.decode(device)
            sync(device)
            decode_rate.append(len(rows) / (time.perf_counter() - began))
            cpu = torch.from_numpy(store.read(modality, rows))
            diff = max(diff, int((on_gpu.cpu().int() - cpu.int()).abs().max()))
        results[modality] = {
            "gpu_decode_images_per_second": float(np.median(decode_rate[1:] or decode_rate)),
            "max_abs_diff": diff,
        }
    for name, jpeg_device in (("gpu", str(device)), ("cpu", None)):
        dataset = GlcDataset(cache, stats=stats, jpeg_device=jpeg_device)
        loader = make_loader(
            dataset,
            args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            prefetch_factor=4,
        )
        results[f"loader_samples_per_second_{name}"] = rate(loader, args.batches, device)
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
