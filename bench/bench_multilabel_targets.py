"""A multi-label task's targets: how a batch's sets of species present travel to the loss.

Writes a survey table of ``--surveys`` rows (``species_ids`` lists over ``--species``
non-contiguous ids, richness ~ negative binomial of mean ``--richness``), an env table of
``--env`` columns and their statistics, then measures three ways to hand a batch of
``--batch-size`` rows' sets to the loss, alternated ``--rounds`` times (best kept):

- **bool** (what ``GlcDataset`` does): a multi-hot (B, S) bool built in the worker from
  the compressed sets (``SpeciesSets.multi_hot``), made float by the loss on the device;
- **float32**: the same multi-hot as float32 from the worker;
- **indices**: each row's columns padded with -1 to the table's largest richness (int32),
  made into the multi-hot on the device by a scatter.

Per way: the worker's ms per batch, the bytes per batch it ships (shared memory, then the
device), the consumer's ms per batch to make the float target; and samples/s of whole
batches (env, coordinates, labels) through ``make_loader`` with ``--workers`` processes
(bool and float32: what the dataset ships; the third would need its own dataset code)::

    .venv/bin/python bench/bench_multilabel_targets.py /tmp/glc-bench-targets
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from geolifeclef.data.dataset import GlcDataset, make_loader
from geolifeclef.data.normalization import write_normalization_stats


def write_tables(folder: Path, args) -> tuple[Path, Path, Path, np.ndarray]:
    rng = np.random.default_rng(0)
    species = np.sort(rng.choice(11_255, args.species, replace=False))
    mean = args.richness
    richness = np.clip(rng.negative_binomial(2, 2 / (2 + mean), args.surveys), 1, None)
    lists = [np.sort(rng.choice(species, r, replace=False)).astype(np.int32) for r in richness]
    ids = np.arange(1, args.surveys + 1, dtype=np.int64)
    table = folder / "train.parquet"
    pq.write_table(
        pa.table(
            {
                "observation_id": ids,
                "latitude": rng.uniform(35, 70, args.surveys),
                "longitude": rng.uniform(-10, 30, args.surveys),
                "species_ids": pa.array(lists, pa.list_(pa.int32())),
            }
        ),
        table,
    )
    env = pd.DataFrame(
        rng.standard_normal((args.surveys, args.env)).astype(np.float32),
        columns=[f"Bio{i}" for i in range(args.env)],
    )
    env.insert(0, "observation_id", ids)
    env_table = folder / "env.parquet"
    env.to_parquet(env_table, index=False)
    stats = folder / "stats.json"
    write_normalization_stats(stats, table, env_table)
    return table, env_table, stats, species


def padded(sets, rows: np.ndarray, width: int) -> np.ndarray:
    positions, columns = sets.columns_of(rows)
    firsts = np.searchsorted(positions, np.arange(len(rows)))
    within = np.arange(len(positions)) - firsts[positions]
    out = np.full((len(rows), width), -1, dtype=np.int32)
    out[positions, within] = columns
    return out


def scattered(indices: torch.Tensor, n_columns: int) -> torch.Tensor:
    target = torch.zeros(indices.shape[0], n_columns + 1)
    target.scatter_(1, torch.where(indices < 0, n_columns, indices).long(), 1.0)
    return target[:, :n_columns]


def best_ms(function, batches, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for batch in batches:
            function(batch)
        times.append((time.perf_counter() - started) / len(batches) * 1e3)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--surveys", type=int, default=50_000)
    parser.add_argument("--species", type=int, default=10_000)
    parser.add_argument("--richness", type=float, default=20.0)
    parser.add_argument("--env", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    table, env_table, stats, species = write_tables(args.folder, args)
    dataset = GlcDataset(
        None, observations=table, env_table=env_table, stats=stats, species_columns=species
    )
    sets = dataset.label_sets
    width = int(np.diff(sets.offsets).max())
    rng = np.random.default_rng(1)
    batches = [rng.choice(len(dataset), args.batch_size, replace=False) for _ in range(100)]
    bools = [torch.from_numpy(sets.multi_hot(rows)) for rows in batches[:20]]
    indices = [torch.from_numpy(padded(sets, rows, width)) for rows in batches[:20]]
    ways = {
        "bool": (
            lambda rows: sets.multi_hot(rows),
            bools[0].numel() * bools[0].element_size(),
            lambda: best_ms(lambda t: t.float(), bools, args.rounds),
        ),
        "float32": (
            lambda rows: sets.multi_hot(rows).astype(np.float32),
            bools[0].numel() * 4,
            lambda: 0.0,
        ),
        "indices": (
            lambda rows: padded(sets, rows, width),
            indices[0].numel() * indices[0].element_size(),
            lambda: best_ms(lambda t: scattered(t, sets.n_columns), indices, args.rounds),
        ),
    }
    found = {"args": {k: str(v) for k, v in vars(args).items()}, "max_richness": width}
    for name, (build, size, consume) in ways.items():
        found[name] = {
            "worker_ms_per_batch": best_ms(build, batches, args.rounds),
            "bytes_per_batch": int(size),
            "consumer_ms_per_batch": consume(),
        }
    for name, transform in (("bool", None), ("float32", _as_float)):
        dataset.transform = transform
        rates = []
        for _ in range(args.rounds):
            loader = make_loader(
                dataset, args.batch_size, shuffle=True, num_workers=args.workers, seed=0
            )
            started, seen = time.perf_counter(), 0
            for batch in loader:
                seen += len(batch["label"])
            rates.append(seen / (time.perf_counter() - started))
        found[name]["loader_samples_per_second"] = rates
    print(json.dumps(found, indent=1))
    (args.folder / "results.json").write_text(json.dumps(found, indent=1) + "\n")
    if not args.keep:
        for path in args.folder.iterdir():
            if path.name != "results.json":
                path.unlink() if path.is_file() else shutil.rmtree(path)


def _as_float(batch: dict) -> dict:
    return {**batch, "label": batch["label"].float()}


if __name__ == "__main__":
    main()
