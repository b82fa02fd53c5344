"""Benchmark: patch cache build rate, and DataLoader throughput from the cache against a
Dataset that decodes the four files of every sample (as the organizers' starter kit).

Both loaders return the same batches (the same crop/resize, normalisation, env values,
coordinates and labels; checked on a few samples), with the same number of worker
processes and the same batch size, in shuffled order; throughput is counted from the
second batch on (worker start-up excluded).

    .venv/bin/python bench/bench_patch_cache.py /tmp/glc-bench-patches
    .venv/bin/python bench/bench_patch_cache.py /tmp/glc-bench-patches --data-root /path/glc22

Without ``--data-root`` it generates the demo's ``small`` preset (10,900 observations,
256 px patches as the archive's, ~45 MB) in the work folder. Writes results.json there
and removes everything else unless ``--keep``.
"""

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from geolifeclef.data.dataset import GlcDataset, make_loader
from geolifeclef.data.env_table import build_env_table
from geolifeclef.data.normalization import write_normalization_stats
from geolifeclef.data.observations import ingest_observations
from geolifeclef.demo import generate_demo_dataset
from geolifeclef.demo.spec import spec_for
from geolifeclef.layout import CONTINUOUS_MODALITIES, ENV_VARIABLES, MODALITIES, DatasetLayout
from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.files import read_patch
from geolifeclef.patches.geometry import transform_patch
from geolifeclef.patches.store import CacheSpec


class DecodingDataset(Dataset):
    """The starter kit's way: open and decode the four patch files in ``__getitem__``."""

    def __init__(self, layout, observations, env_table, stats, size, mode, normalize=True) -> None:
        self.layout, self.size, self.mode, self.normalize = layout, size, mode, normalize
        self.ids = observations["observation_id"].to_numpy(np.int64)
        self.coords = observations[["latitude", "longitude"]].to_numpy(np.float32)
        self.labels = observations["species_id"].to_numpy(np.int64)
        env = pd.read_parquet(env_table).set_index("observation_id")
        self.env = env.loc[self.ids, list(ENV_VARIABLES)].to_numpy(np.float32)
        self.stats = json.loads(Path(stats).read_text())

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        sample = {
            "observation_id": torch.tensor(self.ids[i]),
            "coords": torch.from_numpy(self.coords[i].copy()),
            "label": torch.tensor(self.labels[i]),
        }
        for modality in MODALITIES:
            array = read_patch(self.layout.patch(int(self.ids[i]), modality), modality)
            data = torch.from_numpy(transform_patch(array, modality, self.size, self.mode))
            if self.normalize and modality in CONTINUOUS_MODALITIES:
                entry = self.stats["patches"][modality]
                mean = torch.tensor(entry["mean"], dtype=torch.float32).view(-1, 1, 1)
                std = torch.tensor(entry["std"], dtype=torch.float32).view(-1, 1, 1)
                data = (data.float() - mean) / std
            sample[modality] = data
        env = torch.from_numpy(self.env[i])
        mean = torch.tensor(self.stats["environment"]["mean"], dtype=torch.float32)
        std = torch.tensor(self.stats["environment"]["std"], dtype=torch.float32)
        sample["env_missing"] = torch.isnan(env)
        sample["env"] = torch.nan_to_num((env - mean) / std, nan=0.0) if self.normalize else env
        return sample


def throughput(loader, max_samples: int, epochs: int = 1) -> tuple[float, int]:
    """Samples per second from the second batch on, over at most ``max_samples``."""
    counted, start = 0, None
    for _ in range(epochs):
        for batch in loader:
            if start is None:
                start = time.perf_counter()  # after the first batch: workers are up
                continue
            counted += len(batch["observation_id"])
            if counted >= max_samples:
                return counted / (time.perf_counter() - start), counted
    return counted / (time.perf_counter() - start), counted


def main() -> None:
    parser = argparse.ArgumentParser(description="patch cache build and DataLoader throughput")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--data-root", type=Path, help="a GLC 2022 layout with patches")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--mode", default="resize", choices=["crop", "resize"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--decode-samples", type=int, default=3000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        root = args.data_root
        if root is None:
            root = workdir / "glc22"
            if not (root / "observations").exists():
                generate_demo_dataset(root, workdir / "truth", spec_for("small"), args.workers)
        layout = DatasetLayout(root)
        tables = {s: workdir / "observations" / f"{s}.parquet" for s in ("train", "val", "test")}
        ingest_observations(layout, tables)
        build_env_table(layout, list(tables.values()), workdir / "env.parquet", workers=1)
        train = pd.read_parquet(tables["train"])
        spec = CacheSpec(size=args.size, mode=args.mode)
        cache = workdir / "patches" / "train"
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        report = build_patch_cache(layout, train, cache, spec, workers=args.workers)
        build_seconds = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        stats = workdir / "stats.json"
        write_normalization_stats(stats, tables["train"], workdir / "env.parquet", cache)
        print(
            f"cache build: {len(train)} observations of {report.source_size} px -> {args.size} px "
            f"({args.mode}) in {build_seconds:.1f} s = {len(train) / build_seconds:.0f} obs/s "
            f"with {args.workers} workers (peak RSS of a worker {usage:.0f} MB)"
        )
        cached = GlcDataset(cache, env_table=workdir / "env.parquet", stats=stats)
        decoding = DecodingDataset(
            layout, train, workdir / "env.parquet", stats, args.size, args.mode
        )
        for i in (0, len(train) // 2, len(train) - 1):  # the very same samples
            a, b = cached[i], decoding[i]
            assert set(a) == set(b), (set(a), set(b))
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-5)
        cache_loader = make_loader(
            cached, args.batch_size, shuffle=True, num_workers=args.workers, seed=0
        )
        cache_rate, cache_n = throughput(cache_loader, 20 * len(train), epochs=20)
        decode_loader = DataLoader(
            decoding,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            generator=torch.Generator().manual_seed(0),
        )
        decode_rate, decode_n = throughput(decode_loader, args.decode_samples)
        print(f"DataLoader from the cache: {cache_rate:.0f} samples/s ({cache_n} samples)")
        print(f"DataLoader decoding files: {decode_rate:.0f} samples/s ({decode_n} samples)")
        print(f"ratio: {cache_rate / decode_rate:.1f}x")
        result = {
            "observations": len(train),
            "source_size": report.source_size,
            "size": args.size,
            "mode": args.mode,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "build_seconds": build_seconds,
            "build_observations_per_second": len(train) / build_seconds,
            "cache_loader_samples_per_second": cache_rate,
            "decoding_loader_samples_per_second": decode_rate,
            "ratio": cache_rate / decode_rate,
        }
        (workdir / "results.json").write_text(json.dumps(result, indent=1))
    finally:
        if not args.keep:
            for path in workdir.iterdir():
                if path.name != "results.json":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()


if __name__ == "__main__":
    main()
