"""Benchmark: the decoded and encoded patch stores at real resolution (256 px sources).

For decoded-64 (resize), decoded-256 and encoded-256 (the store read at 256 px), on the
train split of a GLC layout (``--data-root``; else a generated demo of ``--n``
observations with 256 px patches, kept in the work folder for the next run):

- disk bytes per observation, against the patch files' bytes (their sizes, and what they
  take on disk in 4 KiB blocks);
- build rate (observations/s) with ``--workers`` processes (``build_patch_cache``);
- DataLoader samples/s at ``--batch-size``, ``--workers`` worker processes, shuffled,
  four modalities and the env values, normalised (float32) and raw (uint8/int16, to
  normalise on the GPU), against a loader that decodes the four files of every sample
  (the starter kit's way; bench_patch_cache.DecodingDataset), normalised and raw.

The decoded stores (458 kB per observation at 256 px; decoding is their cost) are built
on the first ``--decoded-rows`` observations only, their build time extrapolated
(``"extrapolated": true`` in the output); the encoded store on all of them.

    .venv/bin/python bench/bench_patch_store.py /work/bench-store --n 100000
    # the same figures on 6 x 17,000 = 102,000 observations from a 17,000-observation demo:
    .venv/bin/python bench/bench_patch_store.py /work/bench-store --n 15000 --replicate 6
    .venv/bin/python bench/bench_patch_store.py /work/bench-store --data-root /data/glc22

Writes results.json in the work folder; removes the caches (not the generated data)
unless ``--keep``.
"""

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_patch_cache import DecodingDataset, throughput

from geolifeclef.data.dataset import GlcDataset, make_loader
from geolifeclef.data.env_table import build_env_table
from geolifeclef.data.normalization import env_statistics, patch_statistics
from geolifeclef.data.observations import ingest_observations
from geolifeclef.demo import generate_demo_dataset
from geolifeclef.demo.spec import DemoSpec
from geolifeclef.layout import MODALITIES, REGION_DIGIT, REGIONS, SPLITS, DatasetLayout
from geolifeclef.patches.cache import build_patch_cache, open_patch_cache
from geolifeclef.patches.store import CacheSpec

STORES = {
    "decoded-64": CacheSpec(64, "resize", store="decoded"),
    "decoded-256": CacheSpec(256, "crop", store="decoded"),
    "encoded-256": CacheSpec(256, "crop", store="encoded"),
}


def folder_bytes(folder: Path) -> tuple[int, int]:
    """(sum of file sizes, bytes on disk) of the files under ``folder``."""
    size = blocks = 0
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            size, blocks = size + stat.st_size, blocks + stat.st_blocks * 512
    return size, blocks


def files_bytes(layout: DatasetLayout, ids: np.ndarray) -> tuple[int, int]:
    """(sum of sizes, bytes on disk) of the patch files of ``ids``."""
    size = blocks = 0
    for observation_id in ids:
        for modality in MODALITIES:
            stat = layout.patch(int(observation_id), modality).stat()
            size, blocks = size + stat.st_size, blocks + stat.st_blocks * 512
    return size, blocks


def replicate(source: DatasetLayout, target: DatasetLayout, factor: int, seed: int = 0) -> None:
    """``target``: ``source`` with its train observations ``factor`` times, each copy under
    a new id with its own copies of the four files (the generator makes ~100 observations
    a second on 2 cores; copying files is ~50x faster). Val and test are kept as they are."""
    shutil.copytree(source.root, target.root, ignore=shutil.ignore_patterns("patches-*"))
    rng = np.random.default_rng(seed)
    for region in REGIONS:
        tables = {
            k: pd.read_csv(source.observations(region, k), sep=";") for k in ("train", "test")
        }
        taken = set(tables["train"]["observation_id"]) | set(tables["test"]["observation_id"])
        for kind, table in tables.items():
            if kind == "train":
                train = table[table["subset"] == "train"]
                digit = REGION_DIGIT[region] * 10**7
                fresh = rng.permutation(10**7)[: 2 * factor * len(train)] + digit
                fresh = np.array([i for i in fresh if i not in taken][: factor * len(train)])
                copies = pd.concat([train] * factor, ignore_index=True)
                sources = copies["observation_id"].to_numpy()
                copies["observation_id"] = fresh
                table = pd.concat([table[table["subset"] != "train"], copies], ignore_index=True)
                pairs = list(zip(sources, fresh, strict=True))
                pairs += [(i, i) for i in table.loc[table["subset"] == "val", "observation_id"]]
            else:
                pairs = [(i, i) for i in table["observation_id"]]
            for old, new in pairs:
                for modality in MODALITIES:
                    path = target.patch(int(new), modality)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source.patch(int(old), modality), path)
            table.to_csv(target.observations(region, kind), sep=";", index=False)


def prepare(args: argparse.Namespace) -> tuple[DatasetLayout, dict, Path]:
    workdir = args.workdir
    root = args.data_root or workdir / "glc22"
    if args.data_root is None and not (workdir / "truth" / "summary.json").exists():
        spec = DemoSpec(
            n_species=2_000,
            n_train=args.n,
            n_val=500,
            n_test=500,
            patch_size=256,
            n_clusters=max(80, args.n // 250),
        )
        generate_demo_dataset(root, workdir / "truth", spec, args.workers)
    layout = DatasetLayout(root)
    if args.replicate > 1:
        copied = DatasetLayout(workdir / f"glc22-x{args.replicate}")
        if not (copied.root / "observations").exists():
            replicate(layout, copied, args.replicate)
        layout = copied
    tables = {s: workdir / "observations" / f"{s}.parquet" for s in SPLITS}
    ingest_observations(layout, tables)
    env = workdir / "env.parquet"
    if not env.exists():
        build_env_table(layout, list(tables.values()), env, workers=1)
    return layout, tables, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--n", type=int, default=100_000, help="train observations to generate")
    parser.add_argument("--replicate", type=int, default=1, help="copies of each train obs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--decoded-rows", type=int, default=10_000)
    parser.add_argument("--loader-samples", type=int, default=20_000)
    parser.add_argument("--reference-samples", type=int, default=3_000)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    layout, tables, env = prepare(args)
    train = pd.read_parquet(tables["train"])
    ids = train["observation_id"].to_numpy()
    size, disk = files_bytes(layout, ids)
    result: dict = {
        "observations": len(train),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "load_average_at_start": os.getloadavg(),
        "files": {
            "bytes_per_observation": size / len(ids),
            "disk_per_observation": disk / len(ids),
        },
    }
    print(
        f"{len(ids)} train observations; patch files {size / len(ids):.0f} B/obs "
        f"({disk / len(ids):.0f} B/obs on disk)",
        flush=True,
    )
    caches = args.workdir / "caches"
    try:
        for name in args.stores.split(","):
            spec = STORES[name]
            rows = train.head(args.decoded_rows) if name.startswith("decoded") else train
            cache = caches / name / "train"
            shutil.rmtree(caches / name, ignore_errors=True)
            started = time.perf_counter()
            build_patch_cache(layout, rows, cache, spec, workers=args.workers, progress=False)
            seconds = time.perf_counter() - started
            stored, _ = folder_bytes(cache)
            stats = caches / name / "stats.json"  # from 2,000 rows: a loader needs them
            statistics = {
                "patches": patch_statistics(open_patch_cache(cache), max_rows=2_000),
                "environment": env_statistics(pd.read_parquet(env), ids),
            }
            stats.write_text(json.dumps(statistics))
            entry = {
                "built_rows": len(rows),
                "extrapolated": len(rows) < len(train),
                "build_seconds": seconds * len(train) / len(rows),
                "build_observations_per_second": len(rows) / seconds,
                "bytes_per_observation": stored / len(rows),
                "ratio_to_files": stored / len(rows) / (size / len(ids)),
            }
            dataset = GlcDataset(cache, env_table=env, stats=stats)
            loader = make_loader(
                dataset, args.batch_size, shuffle=True, num_workers=args.workers, seed=0
            )
            epochs = -(-args.loader_samples // len(rows)) + 1
            entry["loader_samples_per_second"], _ = throughput(loader, args.loader_samples, epochs)
            # Raw uint8/int16 batches (normalised on the GPU): 4x fewer bytes between processes.
            raw = GlcDataset(cache, env_table=env, stats=stats, normalize=False)
            loader = make_loader(raw, args.batch_size, shuffle=True, num_workers=args.workers)
            entry["loader_raw_samples_per_second"], _ = throughput(
                loader, args.loader_samples, epochs
            )
            reference = DecodingDataset(layout, rows, env, stats, spec.size, spec.mode)
            entry["reference_samples_per_second"], _ = throughput(
                make_reference_loader(reference, args), args.reference_samples
            )
            raw_reference = DecodingDataset(layout, rows, env, stats, spec.size, spec.mode, False)
            entry["reference_raw_samples_per_second"], _ = throughput(
                make_reference_loader(raw_reference, args), args.reference_samples
            )
            entry["speedup_over_reference"] = (
                entry["loader_samples_per_second"] / entry["reference_samples_per_second"]
            )
            entry["raw_speedup_over_reference"] = (
                entry["loader_raw_samples_per_second"] / entry["reference_raw_samples_per_second"]
            )
            entry["load_average"] = os.getloadavg()
            result[name] = entry
            print(name, json.dumps(entry), flush=True)
            if not args.keep:
                shutil.rmtree(caches / name)
    finally:
        (args.workdir / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def make_reference_loader(dataset, args):
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=args.workers > 0,
    )


if __name__ == "__main__":
    main()
