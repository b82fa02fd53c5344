"""Benchmark: the GLC 2024/2025 training loaders at the archive's counts (2 workers).

What the survey editions' experiments read each epoch, through the workflow's own
``experiment_dataset`` and ``experiment_loader`` (``geolifeclef.experiments.trained``: the
``GlcDataset`` with ``ModelBatch``, multi-hot labels over the species table, ``make_loader``),
built from an ``ExperimentSettings`` per experiment kind:

- **values**: the values MLP (env values and coordinates, no patch, no cube);
- **cubes**: the packed Landsat (N, 6, 4, 21) and bioclim (N, 4, 19, 12) cubes, each alone
  and both (``kind: cube``);
- **S2 patches**: GLC 2024's RGB + NIR JPEGs (128 px) in the encoded store, GLC 2025's
  4-band int16 GeoTIFF (64 px) in the decoded store (``kind: cnn``);
- **multimodal**: patches + both cubes + env values and coordinates, per edition
  (``kind: multimodal``); for GLC 2024 also with the JPEGs shipped as bytes and decoded
  after the workers (``jpeg_device``, what a CUDA run does with nvJPEG: here torchvision
  decodes them in the main process, so the workers' share is that of a GPU node).

Synthesised under the work folder (default ``/tmp/bench-survey-loaders``), all deleted at
the end, also on error (``--keep`` keeps them): ~4.5 GB at the archive's counts.

1. The survey table of the 88,987 PA train surveys (``SURVEY_SCHEMA``; species sets of
   mean richness 16.7 drawn from 5,016 ids, as the archive's 1,483,637 rows), a species
   table of 10,359 ids (PO and PA train species: the models' output columns), the env
   tables (GLC 2024: 58 columns, GLC 2025: 64; 1 % NaN).
2. The packed cubes of all surveys (``results/cubes/{split}``'s files: 0.5 GB), written
   directly (``bench_cube_packing.py`` times their packing from the ``.pt`` files).
3. The Sentinel-2 files of ``--distinct`` surveys per edition, rendered by the survey
   demo's writers (``geolifeclef.demo.surveys.patches``: its JPEGs at quality 90, 4:2:0,
   and its LZW GeoTIFFs, as the real files), hard-linked under every other survey's
   path (bench_patch_store.py copies files under new ids the same way; links take no
   disk): the stores are then built from all 88,987 surveys' paths, with
   ``build_patch_cache`` on 2 workers (the ``cache_patches`` rule's threads), and hold
   88,987 rows. The build reads ``--distinct`` files' bytes from a warm page cache:
   the archive's files, read once from a shared file system, take longer.
4. ``write_normalization_stats`` (the ``compute_normalization_stats`` rule) per edition.
5. Each loader in its own process, shuffled, ``--batch-size`` 256, ``--workers`` 2: the
   first batch's wait (worker start-up), then samples/s and batches/s over up to
   ``--batches`` batches or ``--seconds`` seconds, the CPU seconds per 1,000 samples of the
   workers and of the main process (steadier than wall time on shared cores; on a CPU the
   patches are normalised in the main process, on a GPU node on the GPU), and the peak
   RSS and PSS of the process tree (sampled every 0.25 s by this process).

    .venv/bin/python bench/bench_survey_loaders.py [/tmp/bench-survey-loaders] \\
        [--surveys 88987] [--distinct 4096] [--only multimodal_glc24,cubes_both] [--keep]

Prints each figure as it comes and writes them all to ``--results`` (default
``/tmp/bench-survey-loaders.json``, outside the work folder that is deleted).
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from bench_cube_packing import survey_ids, tree_memory
from bench_patch_cache import throughput
from bench_patch_store import folder_bytes
from bench_survey_ingest import N_PA_SPECIES, PA_TRAIN_ROWS, PA_TRAIN_SURVEYS, VALUE_COLUMNS

from geolifeclef.data.cubes import _write_index
from geolifeclef.data.surveys import SURVEY_SCHEMA
from geolifeclef.survey_layout import CUBE_SHAPES, N_LABEL_SLOTS, SURVEY_ARCHIVES, SurveyLayout

SPECIES_TABLE = 10_359
"""Species ids in PO and PA train (GLC24-25-FORMAT.md §1): the survey editions' species table
lists both, so a model has that many output columns (the multi-hot labels' width)."""
ENV_COLUMNS = {
    2025: [c for columns in VALUE_COLUMNS.values() for c in columns],  # 64
    2024: [  # GLC 2024's human footprint has 16 columns, not 22: 58
        c
        for family, columns in VALUE_COLUMNS.items()
        for c in (columns[:16] if family == "human_footprint" else columns)
    ],
}
STORES = {
    2024: {"store": "encoded", "size": 128, "mode": "crop", "modalities": ["s2_rgb", "s2_nir"]},
    2025: {"store": "decoded", "size": 64, "mode": "crop", "modalities": ["s2"]},
}
_VALUES = {"kind": "mlp", "tabular": ["env", "coordinates"]}
_CUBES = ["landsat", "bioclim"]
_MULTIMODAL = {**_VALUES, "kind": "multimodal", "cubes": _CUBES}
LOADERS = {
    # name: (edition whose store / env table it reads, model entry, JPEGs after the workers)
    "values": (2024, _VALUES, False),
    "cubes_landsat": (2024, {"kind": "cube", "cubes": ["landsat"]}, False),
    "cubes_bioclim": (2024, {"kind": "cube", "cubes": ["bioclim"]}, False),
    "cubes_both": (2024, {"kind": "cube", "cubes": _CUBES}, False),
    "s2_glc24_encoded128": (2024, {"kind": "cnn", "modalities": ["s2_rgb", "s2_nir"]}, False),
    "s2_glc25_decoded64": (2025, {"kind": "cnn", "modalities": ["s2"]}, False),
    "multimodal_glc24": (2024, {**_MULTIMODAL, "modalities": ["s2_rgb", "s2_nir"]}, False),
    "multimodal_glc24_jpeg_bytes": (
        2024,
        {**_MULTIMODAL, "modalities": ["s2_rgb", "s2_nir"]},
        True,
    ),
    "multimodal_glc25": (2025, {**_MULTIMODAL, "modalities": ["s2"]}, False),
}
SAMPLE_INTERVAL_S = 0.25


# --------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------


def write_tables(work: Path, n: int, rng: np.random.Generator) -> dict:
    """The train survey table, the species ids (columns), the env tables per edition."""
    ids = survey_ids(n)
    species = np.sort(rng.choice(N_LABEL_SLOTS, size=SPECIES_TABLE, replace=False))
    pa_species = rng.choice(species, size=N_PA_SPECIES, replace=False)
    popularity = 1.0 / (np.arange(N_PA_SPECIES) + 10.0) ** 1.1
    mean = PA_TRAIN_ROWS / PA_TRAIN_SURVEYS  # 16.7 species a survey
    richness = 1 + rng.negative_binomial(2, 2 / (2 + mean - 1), size=n)
    popularity /= popularity.sum()
    drawn = pa_species[rng.choice(N_PA_SPECIES, size=richness.sum(), p=popularity)]
    owner = np.repeat(np.arange(n), richness)
    pairs = np.unique(owner.astype(np.int64) * N_LABEL_SLOTS + drawn)  # sorted, unique
    owner, drawn = pairs // N_LABEL_SLOTS, (pairs % N_LABEL_SLOTS).astype(np.int32)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(owner, minlength=n), out=offsets[1:])
    table = pa.table(
        {
            "observation_id": pa.array(ids, pa.int64()),
            "latitude": rng.uniform(36, 70, n),
            "longitude": rng.uniform(-10, 30, n),
            "year": pa.array(rng.integers(2017, 2022, n).astype(np.int32)),
            "area_m2": rng.uniform(1, 400, n),
            "geo_uncertainty_m": rng.uniform(1, 100, n),
            "region": pa.array(["CONTINENTAL"] * n),
            "country": pa.array(["France"] * n),
            "species_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(drawn)),
            "subset": pa.array(["train"] * n),
        },
        schema=SURVEY_SCHEMA,
    )
    paths = {"table": work / "observations" / "train.parquet", "species": work / "species.npy"}
    paths["table"].parent.mkdir(parents=True)
    pq.write_table(table, paths["table"])
    np.save(paths["species"], species)
    for year, columns in ENV_COLUMNS.items():
        values = rng.normal(0, 1, (n, len(columns))).astype(np.float32) * 100 + 500
        values[rng.random(values.shape) < 0.01] = np.nan
        env = pd.DataFrame(values, columns=columns)
        env.insert(0, "observation_id", ids)
        paths[f"env_{year}"] = work / f"env_values_{year}.parquet"
        env.to_parquet(paths[f"env_{year}"], index=False)
    return {
        "paths": {k: str(v) for k, v in paths.items()},
        "surveys": n,
        "pairs": len(pairs),
        "mean_richness": round(len(pairs) / n, 2),
        "species_in_sets": int(len(np.unique(drawn))),
        "species_columns": SPECIES_TABLE,
    }


def write_cubes(folder: Path, ids: np.ndarray, rng: np.random.Generator) -> None:
    """``pack_cubes``' output for ``ids``: the two arrays and the index, as packed."""
    folder.mkdir(parents=True)
    for kind, shape in CUBE_SHAPES.items():
        array = np.lib.format.open_memmap(
            folder / f"{kind}.npy", mode="w+", dtype=np.float32, shape=(len(ids), *shape)
        )
        for start in range(0, len(ids), 8192):
            rows = min(8192, len(ids) - start)
            if kind == "landsat":  # integers 0-255, a few cloudy NaN cells
                block = rng.integers(0, 256, (rows, *shape)).astype(np.float32)
                block[rng.random(block.shape) < 0.001] = np.nan
            else:  # CHELSA integers (K x 10, mm x 100)
                block = np.round(rng.normal(2800, 300, (rows, *shape))).astype(np.float32)
            array[start : start + rows] = block
        array.flush()
        del array
    nothing = np.zeros(0, dtype=np.int64)
    _write_index(folder / "index.parquet", ids, {kind: nothing for kind in CUBE_SHAPES})


def write_patch_files(root: Path, year: int, ids: np.ndarray, distinct: int, seed: int) -> dict:
    """The Sentinel-2 files of the first ``distinct`` surveys, rendered as the survey demo
    renders them, and hard links to them under every other survey's path."""
    from geolifeclef.demo.patches import ALIGNED_LANDCOVER
    from geolifeclef.demo.surveys.patches import (
        _to_jpeg_values,
        _write_geotiff,
        _write_jpeg,
        sentinel_reflectance,
    )

    layout = SurveyLayout(root, SURVEY_ARCHIVES[year])
    bands = list(layout.names.patch_folders)  # ["rgb", "nir"] (2024) or ["rgbn"] (2025)
    size = layout.names.patch_size
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for survey in ids[:distinct]:
        survey = int(survey)
        mix = rng.dirichlet(np.ones(len(ALIGNED_LANDCOVER)))
        reflectance = sentinel_reflectance(mix, size, rng)
        if year == 2024:
            values = _to_jpeg_values(reflectance)
            _write_jpeg(layout.patch("train", "rgb", survey), values[:3].transpose(1, 2, 0))
            _write_jpeg(layout.patch("train", "nir", survey), values[3])
        else:
            easting, northing = rng.uniform(3e6, 5e6, 2)
            patch = np.round(reflectance).astype(np.int16)
            _write_geotiff(layout.patch("train", "rgbn", survey), patch, easting, northing)
    rendered = time.perf_counter() - started
    sizes = {
        band: [layout.patch("train", band, int(s)).stat().st_size for s in ids[:distinct]]
        for band in bands
    }
    started = time.perf_counter()
    folders: set[Path] = set()
    for i, survey in enumerate(ids[distinct:], start=distinct):
        for band in bands:
            target = layout.patch("train", band, int(survey))
            if target.parent not in folders:
                target.parent.mkdir(parents=True, exist_ok=True)
                folders.add(target.parent)
            os.link(layout.patch("train", band, int(ids[i % distinct])), target)
    return {
        "distinct_surveys": distinct,
        "render_seconds": round(rendered, 1),
        "link_seconds": round(time.perf_counter() - started, 1),
        "file_bytes_mean": {b: round(float(np.mean(s))) for b, s in sizes.items()},
    }


# --------------------------------------------------------------------------------------
# Child processes: a store's build, the statistics, a loader
# --------------------------------------------------------------------------------------


def cpu_seconds(processes) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_build(spec: dict) -> dict:
    from geolifeclef.patches.cache import build_patch_cache
    from geolifeclef.patches.store import CacheSpec

    layout = SurveyLayout(Path(spec["root"]), SURVEY_ARCHIVES[spec["year"]])
    observations = pd.read_parquet(spec["table"])
    store = STORES[spec["year"]]
    cache_spec = CacheSpec(
        store["size"], store["mode"], tuple(store["modalities"]), store=store["store"]
    )
    started = time.perf_counter()
    build_patch_cache(
        layout.patch_files("train"),
        observations,
        Path(spec["cache"]),
        cache_spec,
        workers=spec["workers"],
        progress=False,
    )
    seconds = time.perf_counter() - started
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    stored, on_disk = folder_bytes(Path(spec["cache"]))
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(sum(u.ru_utime + u.ru_stime for u in usage), 1),
        "surveys_per_second": round(len(observations) / seconds),
        "store_bytes_per_survey": round(stored / len(observations)),
        "store_gb": round(stored / 1e9, 2),
        "store_disk_gb": round(on_disk / 1e9, 2),
    }


def run_stats(spec: dict) -> dict:
    from geolifeclef.data.normalization import write_normalization_stats

    started, cpu = time.perf_counter(), time.process_time()
    write_normalization_stats(
        Path(spec["stats"]),
        Path(spec["table"]),
        Path(spec["env"]),
        Path(spec["cache"]),
        train_cubes=Path(spec["cubes"]),
    )
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }


def batch_bytes(value) -> int:
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(batch_bytes(v) for v in value.values())
    return 0


def shapes(value) -> object:
    if isinstance(value, dict):
        return {k: shapes(v) for k, v in value.items()}
    return f"{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}"


def run_loader(spec: dict) -> dict:
    import geolifeclef.experiments.trained as trained
    from geolifeclef.experiments.trained import (
        ExperimentInputs,
        experiment_dataset,
        experiment_loader,
    )
    from geolifeclef.settings.experiment import ExperimentSettings

    year, model, jpeg_bytes = LOADERS[spec["name"]]
    if jpeg_bytes:  # as on CUDA: the JPEGs leave the workers encoded (decoded here on CPU)
        trained.jpeg_decoding_device = lambda: "cpu"
    species = np.load(spec["species"])
    settings = ExperimentSettings.from_config(spec["name"], {"model": model}, multi_label=True)
    settings = settings.with_data(len(species), len(ENV_COLUMNS[year]), species)
    inputs = ExperimentInputs(
        observations={"train": spec["table"]},
        env_table=spec["env"],
        stats=spec["stats"],
        caches={"train": spec["cache"]},
        cubes={"train": spec["cubes"]},
    )
    started = time.perf_counter()
    dataset = experiment_dataset(inputs, "train", settings)
    opened = time.perf_counter() - started
    loader = experiment_loader(dataset, spec["batch_size"], spec["workers"], True, 0)
    me = psutil.Process()
    clock: dict = {}

    def counted():
        """The loader's batches, up to ``seconds`` after the first; the clocks read after
        the first (workers up), as ``throughput`` reads its own."""
        started = time.perf_counter()
        for i, batch in enumerate(loader):
            if i == 0:
                clock["first_batch_s"] = time.perf_counter() - started
                clock["bytes"], clock["shapes"] = batch_bytes(batch), shapes(batch)
                clock["main_cpu"], clock["workers"] = cpu_seconds([me]), me.children()
                clock["workers_cpu"] = cpu_seconds(clock["workers"])
                started = time.perf_counter()
            yield batch
            if time.perf_counter() - started > spec["seconds"]:
                return

    batches = counted()
    try:
        rate, samples = throughput(batches, spec["batches"] * spec["batch_size"])
    finally:
        # The loader's workers ignore SIGTERM (``leave_stopping_to_the_main_process``): an
        # error that left them running would hang this process at exit; closing the
        # generator drops the loader's iterator, which stops them.
        batches.close()
    if not samples:
        raise RuntimeError(f"{spec['name']}: no batch after the first one (--seconds too short?)")
    main_cpu = cpu_seconds([me]) - clock["main_cpu"]
    workers_cpu = cpu_seconds(clock["workers"]) - clock["workers_cpu"]
    return {
        "samples_per_s": round(rate),
        "batches_per_s": round(rate / spec["batch_size"], 2),
        "samples": samples,
        "first_batch_s": round(clock["first_batch_s"], 2),
        "dataset_open_s": round(opened, 2),
        "workers_cpu_s_per_1000": round(1000 * workers_cpu / samples, 3),
        "main_cpu_s_per_1000": round(1000 * main_cpu / samples, 3),
        "batch_mb": round(clock["bytes"] / 1e6, 2),
        "batch": clock["shapes"],
    }


CHILDREN = {"build": run_build, "stats": run_stats, "loader": run_loader}


def child(kind: str, spec: dict, timeout: float) -> dict:
    """Run ``CHILDREN[kind](spec)`` in a child process; its answer, wall seconds, and the
    peak RSS and PSS summed over the child and its workers (sampled here). The child and
    its workers are killed after ``timeout`` seconds or when this process stops."""
    command = [sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec)]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = psutil.Popen(command, stdout=out, stderr=err, text=True)
        peak_rss = peak_pss = peak_one = 0
        tree = [process]
        try:
            while process.poll() is None:
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"{kind} {spec.get('name', '')}: over {timeout:.0f} s")
                sample = tree_memory(process)
                if sample is None:
                    break
                tree, rss, pss, largest = sample
                peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
                peak_one = max(peak_one, largest)
                time.sleep(SAMPLE_INTERVAL_S)
        finally:
            for member in reversed(tree):  # the workers first: they ignore SIGTERM
                try:
                    if member.is_running():
                        member.kill()
                except psutil.NoSuchProcess:
                    pass
            process.wait()
        out.seek(0), err.seek(0)
        out, err = out.read(), err.read()
    if process.returncode:
        raise RuntimeError(f"{kind} {spec.get('name', '')} failed:\n{err[-4000:]}")
    return {
        **json.loads(out.strip().splitlines()[-1]),
        "process_seconds": round(time.perf_counter() - started, 1),
        "peak_rss_sum_gb": round(peak_rss / 2**30, 3),
        "peak_pss_sum_gb": round(peak_pss / 2**30, 3),
        "peak_process_rss_gb": round(peak_one / 2**30, 3),
        "load_average": round(os.getloadavg()[0], 1),
    }


# --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, nargs="?", default=Path("/tmp/bench-survey-loaders"))
    parser.add_argument("--surveys", type=int, default=PA_TRAIN_SURVEYS)
    parser.add_argument("--distinct", type=int, default=4096, help="distinct patch files")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=80, help="batches timed at most")
    parser.add_argument("--seconds", type=float, default=30, help="seconds timed at most")
    parser.add_argument("--only", help="comma-separated loaders (default: all)")
    parser.add_argument("--results", type=Path, default=Path("/tmp/bench-survey-loaders.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child-timeout", type=float, default=900, help="seconds a step")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.spec))))
        return
    names = args.only.split(",") if args.only else list(LOADERS)
    if args.work.exists():
        parser.error(f"{args.work} exists: give a new folder (it is deleted at the end)")
    results: dict = {
        "surveys": args.surveys,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }

    def note(key: str, value: dict) -> None:
        results[key] = value
        print(key, json.dumps(value), flush=True)
        args.results.write_text(json.dumps(results, indent=1) + "\n")

    try:
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        tables = write_tables(args.work, args.surveys, rng)
        ids = pd.read_parquet(tables["paths"]["table"], columns=["observation_id"])
        ids = ids["observation_id"].to_numpy()
        cubes = args.work / "cubes" / "train"
        write_cubes(cubes, ids, rng)
        tables["seconds"] = round(time.perf_counter() - started, 1)
        tables["cubes_gb"] = round(folder_bytes(cubes)[0] / 1e9, 2)
        note("tables_and_cubes", tables)
        paths = tables["paths"]
        stores = {}
        for year in STORES:
            root = args.work / f"archive{year}"
            distinct = min(args.distinct, len(ids))
            note(f"files_{year}", write_patch_files(root, year, ids, distinct, seed=year))
            stores[year] = {
                "cache": str(args.work / f"patches{year}" / "train"),
                "stats": str(args.work / f"stats{year}.json"),
            }
            spec = {
                "root": str(root),
                "year": year,
                "table": paths["table"],
                "cache": stores[year]["cache"],
                "workers": args.workers,
            }
            note(f"build_{year}", child("build", spec, args.child_timeout))
            shutil.rmtree(root)  # the links and files: the store holds their bytes
            spec = {
                **stores[year],
                "table": paths["table"],
                "env": paths[f"env_{year}"],
                "cubes": str(cubes),
            }
            note(f"stats_{year}", child("stats", spec, args.child_timeout))
        for name in names:
            year = LOADERS[name][0]
            spec = {
                "name": name,
                **stores[year],
                "table": paths["table"],
                "env": paths[f"env_{year}"],
                "cubes": str(cubes),
                "species": paths["species"],
                "workers": args.workers,
                "batch_size": args.batch_size,
                "batches": args.batches,
                "seconds": args.seconds,
            }
            note(name, child("loader", spec, args.child_timeout))
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
