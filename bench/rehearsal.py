"""The full-size rehearsal: the archive's counts end to end on this machine, every rule
measured, the table in bench/rehearsal.md (see bench/README.md).

    .venv/bin/python bench/rehearsal.py all /work/rehearsal     # or: make rehearsal

Steps (each resumes where an interrupted run stopped; ``all`` runs them in turn):

``generate``  the full-count dataset (``geolifeclef.demo.fullcount``): 1,663,896
              observations, 17,037 species, real-resolution rasters, 256 px patches for a
              share (``--patch-share``, 0.05); ~8 min and ~7 GB (3.3 GB of patches, 2.9 GB
              of rasters).
``tabular``   the recipe at full counts on the features that need no patches: ingest,
              extraction, class frequency, constant, kNN, the forest with fewer trees, an
              env MLP for one epoch of ``MLP_STEPS`` batches with the 17,037-way head,
              refits, the blends, evaluation, ``final.csv``, ``maps`` at
              ``MAP_RESOLUTION`` degrees and a query of 100,000 points.
``forest``    the forest per tree on the tabular run's train rows: fits at two row shares
              on one thread (time linear in rows?), on two threads (memory a tree in fit
              adds), and on binned features (``random_forest.bins``).
``patches``   the recipe's patch side on the observations with patches: the encoded
              store at 256 px in shards, the patch statistics, the normalisation
              statistics, and the training loader's samples/s for the recipe's two stacks.
``table``     bench/rehearsal.md from the runs' Snakemake benchmark files and the peaks
              each job logged at exit (``geolifeclef.rule_logging``).

The configs are the recipe (config/recipes/glc2022-winners.yaml) with only sizes changed
(``rehearsal_configs``). Everything is written under the folder given; delete it after
(``rm -rf``): ~10 GB in all.
"""

import argparse
import copy
import itertools
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from geolifeclef.demo.fullcount import (
    ARCHIVE_SPLITS,
    PATCH_ROOT,
    ROOT,
    FullCountSpec,
    generate_full_count_dataset,
)
from geolifeclef.rule_logging import ExitPeak, exit_peak, exit_peak_line, read_exit_peak

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "config" / "recipes" / "glc2022-winners.yaml"
TABLE = REPO / "bench" / "rehearsal.md"
DATA = "data"
TABULAR = "tabular"
PATCHES = "patches"
RUNS = (TABULAR, PATCHES)
QUERY_POINTS = 100_000
PATCH_FEATURES = ("patch_quantiles", "altitude_stats", "landcover_shares")
"""Random-forest and MLP feature groups computed from the patches."""
MLP_NAME = "env_mlp"
QUERY_NAME = "query_100k_points"
BY_HAND = ("generate", QUERY_NAME)
"""Measured steps that are not rules: no SLURM job asks the profile for them."""
QUERY_MODEL = "random_forest"
"""The model that answers the point query: the costliest to load and to predict."""
LOADER_FILE = "loader_samples_per_s.json"
RECIPE_WORKERS = 12
"""The recipe's ``train.num_workers``."""
FOREST_TREES = 2
"""Trees of the rehearsal's forest: the recipe's 32 extrapolated from their time, and from
the forest step's fits per tree."""
MLP_STEPS = 300
"""Batches of the env MLP's epoch (``train.steps_per_epoch``): 76,800 of train's 1.59 M
rows at the recipe's batch 256, ~3 min on 2 cores where the whole epoch takes ~70 min, and
as long again for the refit; a whole CPU epoch is 6,201 / 300 times the measured one (the
data loading and the head cost the same per step)."""
MAP_RESOLUTION = 0.1
"""Degrees of the rehearsal's map grid (the recipe's default is finer: cells x 4 at 0.05)."""
PATCH_SHARE = 0.05
"""Share of the observations with patch files: the patch side's rows scale by 1 / share."""


@dataclass(frozen=True)
class ForestFit:
    """One fit of the forest step: ``threads`` trees on as many threads, each on a ``share``
    of the train rows (``max_samples``), on features binned to ``bins`` levels or not."""

    share: float
    threads: int
    bins: int | None = None


FOREST_FITS = (ForestFit(0.125, 1), ForestFit(0.25, 1), ForestFit(0.25, 2), ForestFit(0.25, 1, 255))
FOREST_FILE = "forest_per_tree.json"
EXTRACT_THREAD_MB = 3 * 64
"""Memory an extraction thread adds: its 64 MB raster window and 128 MB of GDAL's block
cache (``geolifeclef.data.rasters.gdal_block_cache``: 2 windows a thread)."""


def rehearsal_configs(recipe: dict, data_dir: Path, trees: int = FOREST_TREES) -> dict:
    """``{run: config}``: the recipe with only sizes changed.

    tabular: patches off, so the forest and the MLP read the features that need none; the
    forest has ``trees`` trees (the recipe's depth and refit); the CNN experiments give
    way to one env MLP of the recipe's MLP branch trained for one epoch of ``MLP_STEPS``
    batches (refit like the recipe's experiments); the blends keep their form with it.
    patches: the recipe's patch settings on the observations with patches.
    """
    tabular = copy.deepcopy(recipe)
    tabular["data"]["root"] = str(data_dir / ROOT)
    tabular["patches"]["enabled"] = False
    forest = tabular["baselines"]["random_forest"]
    forest["features"] = [f for f in forest["features"] if f not in PATCH_FEATURES]
    forest["n_estimators"] = trees
    cnn = next(iter(recipe["experiments"].values()))
    mlp_branch = cnn["model"]["mlp"]
    tabular["experiments"] = {
        MLP_NAME: {
            "model": {
                "kind": "mlp",
                "tabular": [t for t in cnn["model"]["tabular"] if t not in PATCH_FEATURES],
                "mlp": mlp_branch,
                "dropout": cnn["model"]["dropout"],
            },
            "train": {
                **{k: v for k, v in cnn["train"].items() if k not in ("augment", "num_workers")},
                "epochs": 1,
                "warmup_epochs": 0,
                "num_workers": 0,
                "steps_per_epoch": MLP_STEPS,
            },
            "refit": cnn.get("refit", False),
        }
    }
    (mean,) = tabular["blends"]
    tabular["blends"] = {mean: {MLP_NAME: 1.0, "random_forest": 1.0}}
    (fitted,) = tabular["fitted_blends"]
    tabular["fitted_blends"] = {fitted: {"models": [MLP_NAME, "random_forest", "knn"]}}
    tabular["maps"] = {"resolution": MAP_RESOLUTION}
    tabular["mlflow"] = {"tracking_uri": None, "experiment": "rehearsal"}
    patches = copy.deepcopy(recipe)
    patches["data"]["root"] = str(data_dir / PATCH_ROOT)
    patches["mlflow"] = {"tracking_uri": None, "experiment": "rehearsal-patches"}
    return {TABULAR: tabular, PATCHES: patches}


PATCH_TARGETS = [
    *(f"results/patch_stats/{split}.parquet" for split in ("train", "val", "test")),
    "results/normalization/stats.json",
]
"""What the patch side builds: the stores, patch and normalisation statistics."""
TARGETS = {TABULAR: ["all", "maps"], PATCHES: PATCH_TARGETS}


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The workflow of this repository in ``workdir`` on its config.yaml."""
    return [
        str(Path(sys.executable).with_name("snakemake")),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


def snakemake(workdir: Path, config: dict, targets: list[str], cores: int) -> None:
    """Run the workflow in ``workdir`` on ``config`` (written there), resuming."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = snakemake_command(
        workdir,
        "--cores",
        str(cores),
        *targets,
        "--rerun-incomplete",
        # The threads each job ran on, for the table's scaling to the profile's.
        "--benchmark-extended",
        # A fix to the code mid-rehearsal reruns nothing already measured.
        "--rerun-triggers",
        "mtime",
    )
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


PEAK_OF = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)
"""Runs a command and writes its peak RSS in kB (the largest of its process tree, as
``RUSAGE_CHILDREN`` of a parent that ran nothing else)."""


def timed(command: list[str], cwd: Path, name: str, ok: tuple[int, ...] = (0,)) -> None:
    """Run ``command`` (an exit code in ``ok``); write its wall time and CPU time as a
    Snakemake benchmark file would (benchmarks/<name>.tsv) and its peak memory as a job
    logs it (logs/<name>.log), so that the table reads it like a rule."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    peak_file = cwd / "benchmarks" / f"{name}.peak_kb"
    peak_file.parent.mkdir(parents=True, exist_ok=True)
    code = subprocess.call([sys.executable, "-c", PEAK_OF, str(peak_file), *command], cwd=cwd)
    if code not in ok:
        raise subprocess.CalledProcessError(code, command)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    write_benchmark(cwd / "benchmarks" / f"{name}.tsv", wall, cpu, threads=1)
    peak_mb = float(peak_file.read_text()) / 1024
    write_peak(cwd / "logs" / f"{name}.log", ExitPeak(peak_mb, 0.0, cpu))


def write_benchmark(path: Path, seconds: float, cpu: float, threads: int) -> None:
    """A benchmark file of a step that is not a rule (no sampled peak)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"s": [seconds], "max_rss": [np.nan], "cpu_time": [cpu], "threads": [threads]}
    ).to_csv(path, sep="\t", index=False)


def write_peak(log: Path, peak: ExitPeak) -> None:
    """The peak line of a step that is not a rule, in its log (as a job writes it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as file:
        file.write(exit_peak_line(peak) + "\n")


def write_query_points(path: Path, n: int = QUERY_POINTS) -> None:
    """``n`` points over the two regions' boxes (France 41 %), for ``geolifeclef query``."""
    from geolifeclef.demo.spec import REGION_BOUNDS  # noqa: PLC0415 (bench helper)

    rng = np.random.default_rng(0)
    parts = []
    for region, share in (("fr", 0.41), ("us", 0.59)):
        west, south, east, north = REGION_BOUNDS[region]
        m = round(n * share)
        parts.append(
            pd.DataFrame(
                {"latitude": rng.uniform(south, north, m), "longitude": rng.uniform(west, east, m)}
            )
        )
    pd.concat(parts).head(n).to_csv(path, index=False)


def run_tabular(out: Path, configs: dict, cores: int) -> None:
    workdir = out / TABULAR
    snakemake(workdir, configs[TABULAR], TARGETS[TABULAR], cores)
    points = workdir / "query-points.csv"
    if not (workdir / "query-answers.csv").exists():
        write_query_points(points)
        geolifeclef = str(Path(sys.executable).with_name("geolifeclef"))
        timed(
            [geolifeclef, "query", "--model", QUERY_MODEL, "--points", str(points),
             "--output", "query-answers.csv"],
            workdir,
            QUERY_NAME,
            ok=(0, 1),  # 1: points at sea refused, the rest answered
        )  # fmt: skip


def run_patches(out: Path, configs: dict, cores: int) -> None:
    workdir = out / PATCHES
    snakemake(workdir, configs[PATCHES], TARGETS[PATCHES], cores)
    result = workdir / "benchmarks" / LOADER_FILE
    if not result.exists():
        result.write_text(json.dumps(loader_throughput(workdir, configs[PATCHES]), indent=2))


def loader_throughput(workdir: Path, config: dict, batches: int = 20, workers: int = 2) -> dict:
    """Samples/s of the training loader of each of the recipe's experiments on the train
    store (the workflow's own dataset and loader, ``workers`` processes, batches from the
    third on), with their tabular features and raw patches as training ships them."""
    from geolifeclef.data.dataset import make_loader  # noqa: PLC0415 (torch: bench step only)
    from geolifeclef.experiments.trained import ExperimentInputs, experiment_dataset  # noqa: PLC0415
    from geolifeclef.settings.experiment import ExperimentSettings  # noqa: PLC0415

    inputs = ExperimentInputs(
        observations={s: str(workdir / f"results/observations/{s}.parquet") for s in ("train",)},
        env_table=str(workdir / "results/environment/env_values.parquet"),
        stats=str(workdir / "results/normalization/stats.json"),
        caches={"train": str(workdir / "results/patches/train")},
        patch_stats={"train": str(workdir / "results/patch_stats/train.parquet")},
    )
    rates = {}
    for name, entry in config["experiments"].items():
        settings = ExperimentSettings.from_config(name, entry).with_classes(17_037)
        dataset = experiment_dataset(inputs, "train", settings)
        batch_size = settings.train.batch_size
        loader = make_loader(dataset, batch_size, shuffle=True, num_workers=workers, seed=0)
        # The first batch starts the workers: timed from the second on (all of a tiny set).
        times, sizes = [time.perf_counter()], []
        for batch in itertools.islice(loader, batches + 1):
            times.append(time.perf_counter())
            sizes.append(len(batch["observation_id"]))
        skip = 1 if len(sizes) > 1 else 0
        seen, elapsed = sum(sizes[skip:]), times[-1] - times[skip]
        rates[name] = {
            "samples_per_s": seen / elapsed,
            "workers": workers,
            "batch_size": batch_size,
        }
    return rates


PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


# -- the forest per tree -------------------------------------------------------------------


def run_forest(out: Path, configs: dict) -> None:
    """The forest step: each of ``FOREST_FITS`` in a process of its own (its peak is its
    own), written to benchmarks/forest_per_tree.json of the tabular run."""
    workdir = out / TABULAR
    result = workdir / "benchmarks" / FOREST_FILE
    if result.exists():
        return
    fits = []
    for fit in FOREST_FITS:
        command = [sys.executable, __file__, "forest-fit", str(out)]
        command += ["--share", str(fit.share), "--threads", str(fit.threads)]
        command += ["--bins", str(fit.bins)] if fit.bins else []
        print(" ".join(command), flush=True)
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        fits.append(json.loads(done.stdout.splitlines()[-1]))
    result.write_text(json.dumps(fits, indent=2) + "\n")


def fit_forest_once(out: Path, config: dict, fit: ForestFit) -> dict:
    """One fit of ``fit.threads`` trees of the tabular run's forest (its features, depth and
    seed) on the train rows: wall and CPU seconds, the peak before and after the fit."""
    from geolifeclef.baselines.forest import (  # noqa: PLC0415 (scikit-learn: this step only)
        ForestSettings,
        TabularSources,
        feature_matrix,
        fit_random_forest,
    )

    workdir = out / TABULAR
    train = pd.read_parquet(workdir / "results/observations/train.parquet")
    env_path = workdir / "results/environment/env_values.parquet"
    forest = config["baselines"]["random_forest"]
    settings = ForestSettings(
        **{**forest, "n_estimators": fit.threads, "max_samples": fit.share, "bins": fit.bins}
    )
    features = feature_matrix(
        train, settings.features, TabularSources(pd.read_parquet(env_path), env_path)
    )
    labels = train["species_id"].to_numpy(dtype=np.int64)
    before_mb = exit_peak().own_mb
    start, cpu = time.perf_counter(), sum(os.times()[:2])
    fit_random_forest(features, labels, settings, n_jobs=fit.threads)
    return {
        "share": fit.share,
        "threads": fit.threads,
        "trees": fit.threads,
        "bins": fit.bins,
        "rows": len(train),
        "features": features.shape[1],
        "wall_s": time.perf_counter() - start,
        "cpu_s": sum(os.times()[:2]) - cpu,
        "before_mb": before_mb,
        "peak_mb": exit_peak().own_mb,
    }


@dataclass(frozen=True)
class ForestPerTree:
    """What the forest step's fits give per tree at full rows, on the recipe's trees."""

    fits: pd.DataFrame
    cpu_s: float
    """CPU seconds a tree on all the train rows (the line through the two one-thread fits)."""
    linearity: float
    """CPU time at the larger share over the smaller, over the ratio of the shares (1:
    linear in rows)."""
    tree_mb: float
    """Memory a tree in fit adds: the two-thread fit's peak minus the one-thread fit's."""
    binned_speedup: float | None


def forest_per_tree(path: Path) -> ForestPerTree | None:
    if not path.exists():
        return None
    fits = pd.DataFrame(json.loads(path.read_text()))
    plain = fits[fits["bins"].isna()]
    one = plain[plain["threads"] == 1].sort_values("share")
    small, large = one.iloc[0], one.iloc[-1]
    slope = (large["cpu_s"] - small["cpu_s"]) / (large["share"] - small["share"])
    two = plain[(plain["threads"] == 2) & (plain["share"] == large["share"])].iloc[0]
    binned = fits[fits["bins"].notna() & (fits["share"] == large["share"])]
    return ForestPerTree(
        fits,
        cpu_s=small["cpu_s"] + slope * (1 - small["share"]),
        linearity=(large["cpu_s"] / small["cpu_s"]) / (large["share"] / small["share"]),
        tree_mb=two["peak_mb"] - large["peak_mb"],
        binned_speedup=(large["cpu_s"] / binned.iloc[0]["cpu_s"]) if len(binned) else None,
    )


# -- from here to a node: time and memory at the profile's threads -------------------------


@dataclass(frozen=True)
class Measure:
    """A job measured here: wall and CPU seconds, the threads it ran on and the profile's
    for its rule, the patch side's rows factor (1 / the patch share), the forest's trees
    factor (32 / its trees), the job's peaks at exit (own, largest child; NaN without a
    log line) and the forest step's memory a tree."""

    wall: float
    cpu: float
    threads: int
    profile_threads: int
    rows: float
    trees: float
    own_mb: float
    child_mb: float
    tree_mb: float = float("nan")


# How a rule's time here becomes its time for the full recipe on a 32-core, 128 GB node
# (threads from the profile) or a GPU node: (seconds from a ``Measure``, basis). CPU-bound
# rules scale their CPU seconds, which the machine's other load leaves alone, over the
# node's threads; the others keep their wall time.
SCALING = {
    "extract_env": (lambda m: m.cpu / m.profile_threads, "CPU-bound; one raster per thread"),
    "cache_patch_shard": (
        lambda m: m.cpu * m.rows / m.profile_threads,
        "rows x 1/share; a row per worker process",
    ),
    "compute_patch_stats": (
        lambda m: m.cpu * m.rows / m.profile_threads,
        "rows x 1/share; a chunk per worker process",
    ),
    "predict_random_forest": (
        lambda m: m.cpu * m.trees / m.profile_threads,
        "trees x 32/trees, one per thread",
    ),
    "train_model": (
        None,
        f"{MLP_STEPS} batches of a CPU epoch "
        f"(x {ARCHIVE_SPLITS['train'] / 256 / MLP_STEPS:.1f} for one at batch 256); "
        "on a GPU the loader and head bound it",
    ),
    "refit_model": (None, "as train_model"),
    "predict_model": (None, "as train_model"),
}
"""Rules not listed: full counts, one thread or I/O-bound: the wall time as measured."""

# How a job's peak here becomes its peak on the profile's threads: (MB from a ``Measure``,
# basis). A worker process each thread adds its own peak (at most the largest child's); a
# thread adds what it holds.
PEAK_SCALING = {
    "generate": (
        lambda m: m.own_mb + m.threads * m.child_mb,
        "parent + a worker process per core",
    ),
    "cache_patch_shard": (
        lambda m: m.own_mb + m.profile_threads * m.child_mb,
        "parent + a worker process per thread",
    ),
    "compute_patch_stats": (
        lambda m: m.own_mb + m.profile_threads * m.child_mb,
        "parent + a worker process per thread",
    ),
    "extract_env": (
        lambda m: m.own_mb + (m.profile_threads - m.threads) * EXTRACT_THREAD_MB,
        f"+ {EXTRACT_THREAD_MB} MB a thread (its window and block cache)",
    ),
    "predict_random_forest": (
        lambda m: m.own_mb + (m.profile_threads - m.threads) * m.tree_mb,
        "+ a tree in fit per thread (the forest step's MB a tree)",
    ),
}
"""Rules not listed run in one process (threads that hold little of their own, or none):
their own peak. Their "largest child" is a short command (``git`` for the run's commit),
which Linux charges with its parent's memory until it execs (``vfork``): not a worker."""


def extrapolate(rule: str, measure: Measure) -> tuple[float | None, str]:
    """(seconds on the node or None, basis) for a rule measured here."""
    scale, basis = SCALING.get(rule, (lambda m: m.wall, "full counts, as measured"))
    return (None if scale is None else scale(measure)), basis


def scaled_peak(rule: str, measure: Measure) -> tuple[float, str]:
    """(MB at the profile's threads, basis) for a rule measured here; NaN without its peak."""
    scale, basis = PEAK_SCALING.get(rule, (lambda m: m.own_mb, "one process, as measured"))
    return scale(measure), basis


def profile_resources(profile: dict, rule: str) -> tuple[int, int]:
    """(threads, mem_mb at the first attempt) that the SLURM profile asks for ``rule``."""
    threads = int(profile.get("set-threads", {}).get(rule, 1))
    default = profile["default-resources"]["mem_mb"]
    mem = profile.get("set-resources", {}).get(rule, {}).get("mem_mb", default)
    return threads, first_attempt(mem)


def first_attempt(value) -> int:
    """A resource of the profile at the first attempt: ``4000`` or ``"4000 * attempt"``."""
    match = re.fullmatch(r"\s*(\d+)\s*(\*\s*attempt\s*)?", str(value))
    if match is None:
        raise ValueError(f"{PROFILE}: cannot read {value!r} (a number, or N * attempt)")
    return int(match.group(1))


# -- reading the runs ----------------------------------------------------------------------


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return path.stat().st_size / 2**20 if path.exists() else 0.0


def output_sizes(workdir: Path, targets: list[str]) -> pd.DataFrame:
    """rule, output path and MB on disk of every output of a run (Snakemake's detailed
    summary; folders summed)."""
    summary = subprocess.run(
        snakemake_command(workdir, "--detailed-summary", "--nolock", *targets),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in summary.stdout.splitlines() if line.count("\t") >= 2]
    rows = [line.split("\t")[:3] for line in lines[1:]]
    return pd.DataFrame(
        {
            "rule": [r[2] for r in rows],
            "output": [r[0] for r in rows],
            "mb": [_size_mb(workdir / r[0]) for r in rows],
        }
    )


def _job_written_mb(sizes: pd.DataFrame, rule: str, job: str) -> float:
    """MB of the outputs of one job: its rule's outputs whose path holds every part of the
    job's name (``map_model/knn_fr``: paths with ``knn`` and ``fr``)."""
    mine = sizes[sizes["rule"] == rule]
    parts = [p for p in job.replace("/", "_").split("_") if p]
    if parts:
        mine = mine[[all(p in path for p in parts) for path in mine["output"]]]
    return float(mine["mb"].sum())


def _rule_and_job(name: Path, rules: set[str]) -> tuple[str, str]:
    """A benchmark file's rule and job: ``map_model/knn_fr`` or ``compute_patch_stats_train``
    (the longest rule name that starts it; the first part when no rule is known)."""
    text = name.as_posix()
    known = [r for r in rules if text == r or text.startswith((r + "/", r + "_"))]
    if not known:
        return name.parts[0], "/".join(name.parts[1:])
    rule = max(known, key=len)
    return rule, text[len(rule) + 1 :]


def _threads(record: pd.Series) -> int:
    """The threads of an extended benchmark record (Snakemake writes them as ``(2,)``)."""
    found = re.findall(r"\d+", str(record.get("threads", "")))
    return int(found[0]) if found else 1


def read_benchmarks(out: Path, sizes: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per benchmark file of the runs: run, rule, job (wildcards), threads, wall
    and CPU seconds (the larger of Snakemake's and the job's own count), Snakemake's
    sampled peak, the peaks the job logged at exit (logs/<same name>.log; NaN without),
    and the MB of the job's outputs (``sizes``: ``output_sizes`` of each run; NaN
    without)."""
    rows = []
    for run in (*RUNS, "."):
        folder = out / run / "benchmarks"
        for path in sorted(folder.rglob("*.tsv")) if folder.exists() else []:
            name = path.relative_to(folder).with_suffix("")
            bench = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
            record = bench.iloc[-1]
            rules = set(sizes[run]["rule"]) if sizes is not None and run in sizes else set()
            if "rule_name" in bench:
                rules.add(str(record["rule_name"]))
            rule, job = _rule_and_job(name, rules)
            written = np.nan
            if sizes is not None and run in sizes:
                written = _job_written_mb(sizes[run], rule, job)
            peak = read_exit_peak(out / run / "logs" / f"{name.as_posix()}.log")
            cpu = float(bench["cpu_time"].max())
            rows.append(
                {
                    "run": DATA if run == "." else run,
                    "rule": rule,
                    "job": job,
                    "threads": _threads(record),
                    "wall_s": float(bench["s"].max()),
                    "cpu_s": max(cpu, peak.cpu_s) if peak and peak.cpu_s == peak.cpu_s else cpu,
                    "sampled_mb": float(bench["max_rss"].max()),
                    "own_mb": peak.own_mb if peak else np.nan,
                    "child_mb": peak.child_mb if peak else np.nan,
                    "written_mb": written,
                }
            )
    return pd.DataFrame(rows)


# -- the table -----------------------------------------------------------------------------

COLUMNS = (
    ("run", "run"),
    ("rule", "rule"),
    ("job", "job"),
    ("threads", "threads here"),
    ("wall_s", "wall s"),
    ("cpu_s", "CPU s"),
    ("sampled_mb", "sampled peak MB (Snakemake)"),
    ("own_mb", "peak MB at exit"),
    ("child_mb", "largest child MB"),
    ("written_mb", "written MB"),
    ("profile_threads", "profile threads"),
    ("node_peak_mb", "peak MB at profile threads"),
    ("profile_mem_mb", "profile mem_mb"),
    ("mem_margin", "margin"),
    ("node_s", "full recipe on a node, s"),
    ("basis", "basis of the time"),
    ("peak_basis", "basis of the peak"),
)
"""The table's columns: (field, header)."""
_TEXT = {"run", "rule", "job", "basis", "peak_basis"}


def _cells(row) -> list[str]:
    cells = []
    for field, _ in COLUMNS:
        value = getattr(row, field)
        if field in _TEXT:
            cells.append(str(value))
        elif field == "mem_margin":
            cells.append(_cell(value, ".1f x"))
        else:
            cells.append(_cell(value))
    return cells


def write_table(out: Path, table: Path, patch_share: float, trees: int) -> pd.DataFrame:
    """bench/rehearsal.md: every measured job, its peaks, the profile's request and margin,
    the forest per tree, the training loader."""
    profile = yaml.safe_load(PROFILE.read_text())
    sizes = {
        run: output_sizes(out / run, TARGETS[run])
        for run in RUNS
        if (out / run / "config.yaml").exists()
    }
    frame = read_benchmarks(out, sizes)
    per_tree = forest_per_tree(out / TABULAR / "benchmarks" / FOREST_FILE)
    tree_mb = per_tree.tree_mb if per_tree else np.nan
    derived = []
    for row in frame.itertuples():
        t, m = (1, None) if row.rule in BY_HAND else profile_resources(profile, row.rule)
        measure = Measure(
            row.wall_s, row.cpu_s, row.threads, t, 1 / patch_share, 32 / trees,
            row.own_mb, row.child_mb, tree_mb,
        )  # fmt: skip
        seconds, why = extrapolate(row.rule, measure)
        peak, peak_why = scaled_peak(row.rule, measure)
        derived.append(
            {"profile_threads": t, "profile_mem_mb": m, "node_s": seconds, "basis": why,
             "node_peak_mb": peak, "peak_basis": peak_why}
        )  # fmt: skip
    frame = pd.concat([frame, pd.DataFrame(derived, index=frame.index)], axis=1)
    frame["mem_margin"] = frame["profile_mem_mb"] / frame["node_peak_mb"]
    frame = frame.sort_values("wall_s", ascending=False)
    missing = {
        run: sorted(set(sizes[run].loc[sizes[run]["mb"] == 0, "rule"]) - set(frame["rule"]))
        for run in sizes
    }
    carried = carried_runs(table, [run for run in RUNS if run not in sizes])
    partial = (
        any(missing.values())
        or any(not_run for _, not_run in carried.values())
        or set(sizes) | set(carried) != set(RUNS)
    )
    wall = frame.loc[frame["rule"] != "generate", "wall_s"].sum()
    lines = [
        f"# The full-size rehearsal: measured{' (partial: see the end)' if partial else ''}",
        "",
        "Written by `bench/rehearsal.py table` from a run's Snakemake benchmark files and",
        f"the peak each job logged at exit (patch share {patch_share:g}, forest of {trees}",
        f"trees, env MLP {MLP_STEPS} batches, maps at {MAP_RESOLUTION:g} degrees); see",
        "bench/README.md. `peak MB at exit` is the job's own high-water mark (`VmHWM`),",
        "`largest child MB` its largest worker's; Snakemake's figure is sampled and sums",
        "the process tree. `peak MB at profile threads` scales the job's peak to the SLURM",
        "profile's threads; `tests/test_rehearsal.py` holds each rule's `mem_mb` to it.",
        "",
        "| " + " | ".join(header for _, header in COLUMNS) + " |",
        "| " + " | ".join("---" if f in _TEXT else "---:" for f, _ in COLUMNS) + " |",
    ]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in frame.itertuples()]
    for rows, _ in carried.values():
        lines += rows
    lines += ["", f"Jobs' wall time, generation aside: {wall:,.0f} s (this folder's runs)."]
    whole = out / "benchmarks" / WHOLE_RUN_FILE
    if whole.exists():
        lines.append(f"The whole rehearsal, every step: {whole.read_text().strip()}.")
    lines.append("")
    if carried:
        lines += [
            f"The rows of the {' and '.join(carried)} run come from the previous table: this",
            "folder did not run it again.",
            "",
        ]
    if partial:
        lines += ["## Not run yet", ""]
        lines += [f"- {run}: {', '.join(rules)}" for run, rules in missing.items() if rules]
        lines += [line for _, not_run in carried.values() for line in not_run]
        lines += [f"- {run}: the whole run" for run in RUNS if run not in sizes | carried.keys()]
        lines.append("")
    if per_tree is not None:
        lines += forest_section(per_tree, frame, profile, trees)
    loader = out / PATCHES / "benchmarks" / LOADER_FILE
    if loader.exists():
        lines += loader_section(json.loads(loader.read_text()))
    table.write_text("\n".join(lines))
    return frame


def forest_section(
    per_tree: ForestPerTree, frame: pd.DataFrame, profile: dict, trees: int
) -> list[str]:
    """The forest per tree: the fits, and the recipe's 32 trees at the profile's threads."""
    threads, mem = profile_resources(profile, "predict_random_forest")
    job = frame[frame["rule"] == "predict_random_forest"]
    fits = per_tree.fits
    rows = int(fits["rows"].iloc[0])
    lines = [
        "## The forest per tree",
        "",
        f"Fits of the tabular run's forest ({int(fits['features'].iloc[0])} features, the",
        "recipe's depth) on a share of its "
        f"{rows:,} train rows (`max_samples`), each in a process of its own:",
        "",
        "| row share | trees = threads | bins | wall s | CPU s | peak MB before the fit |"
        " peak MB |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for f in fits.itertuples():
        bins = "-" if f.bins != f.bins or f.bins is None else f"{int(f.bins)}"
        lines.append(
            f"| {f.share:g} | {f.threads} | {bins} | {f.wall_s:,.0f} | {f.cpu_s:,.0f} | "
            f"{f.before_mb:,.0f} | {f.peak_mb:,.0f} |"
        )
    line = per_tree.cpu_s
    lines += [
        "",
        f"- **Time in rows**: from a share of 0.125 to 0.25, CPU time x"
        f" {2 * per_tree.linearity:.2f} for x 2 the rows (linear). The line through them"
        f" gives {line:,.0f} CPU s for a tree on all the rows.",
    ]
    per_tree_cpu = line
    if len(job):
        measured = job.iloc[0]
        # The rule fits `trees` trees twice (train, then train + val: 2.5 % more rows).
        per_tree_cpu = measured["cpu_s"] / (2 * trees)
        lines.append(
            f"  The rehearsal's own job ({trees} trees on all the rows, fitted twice,"
            f" predictions included) took **{per_tree_cpu:,.0f} CPU s a tree**,"
            f" {per_tree_cpu / line:.2f}x the line: beyond a quarter of the rows time grows"
            " more slowly than the rows (a depth-12 tree has as many splits whatever its"
            " rows, and a split scores a threshold per distinct value, which stop growing)."
        )
    per_fit = 32 * per_tree_cpu / threads
    lines += [
        f"- **Memory a tree in fit adds**: {per_tree.tree_mb:,.0f} MB (two threads' peak"
        " minus one's, at the same share; the one-thread peaks at both shares differ by"
        f" {abs(per_tree.fits.iloc[1]['peak_mb'] - per_tree.fits.iloc[0]['peak_mb']):,.0f} MB:"
        " not a matter of rows).",
        f"- **The recipe's 32 trees on the profile's {threads} threads**, from the job's"
        f" figure: {32 / threads:.0f} rounds of {threads} trees, {per_fit / 60:,.0f} min a"
        f" fit, twice (train, then train + val) -> **~{2 * per_fit / 3600:,.1f} h** on the"
        f" {int(fits['features'].iloc[0])} features here; the recipe's patch statistics add"
        " 50 (a split searches ~2.7x the columns: up to"
        f" ~{2.7 * 2 * per_fit / 3600:,.1f} h).",
    ]
    if len(job):
        peak = job.iloc[0]["node_peak_mb"]
        lines.append(
            f"  Peak: the job's {job.iloc[0]['own_mb']:,.0f} MB at {int(job.iloc[0]['threads'])}"
            f" threads + {threads - int(job.iloc[0]['threads'])} more trees in fit ->"
            f" **{peak:,.0f} MB** against the profile's {mem:,} MB."
        )
    if per_tree.binned_speedup is not None:
        lines.append(
            f"- **Binned features** (`random_forest.bins: 255`): a tree fits"
            f" {per_tree.binned_speedup:.1f}x faster at the same share; an option (see"
            " bench/README.md for its error on the demo)."
        )
    lines.append("")
    return lines


def loader_section(rates: dict) -> list[str]:
    lines = [
        "## The training loader on the 256 px encoded store",
        "",
        "Samples/s of each recipe experiment's training loader (the workflow's dataset and",
        "loader, raw patches shipped, batches of the recipe's size); on a GPU node with the",
        f"recipe's {RECIPE_WORKERS} workers, assuming samples/s grow with the workers,",
        "the loader's bound on an epoch of the archive's 1,587,395 train rows:",
        "",
        "| experiment | workers here | samples/s here | samples/s with the recipe's workers |"
        " epoch bound, min |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, rate in rates.items():
        scaled = rate["samples_per_s"] * RECIPE_WORKERS / rate["workers"]
        lines.append(
            f"| {name} | {rate['workers']} | {rate['samples_per_s']:,.0f} | {scaled:,.0f} | "
            f"{ARCHIVE_SPLITS['train'] / scaled / 60:,.0f} |"
        )
    lines.append("")
    return lines


def carried_runs(table: Path, runs: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """``{run: (table rows, "Not run yet" lines)}`` of ``runs`` in an earlier ``table``: a
    rehearsal that reruns only one side keeps what the other measured."""
    lines = table.read_text().splitlines() if table.exists() else []
    carried = {}
    for run in runs:
        rows = [line for line in lines if line.startswith(f"| {run} | ")]
        if rows:
            carried[run] = (rows, [line for line in lines if line.startswith(f"- {run}: ")])
    return carried


def _cell(value: float | None, form: str = ",.0f") -> str:
    """A number of the table; ``form`` ending in " x": a ratio (``3.2x``); "-" for none."""
    if value is None or value != value:
        return "-"
    if form.endswith(" x"):
        return format(value, form[:-2]) + "x"
    return format(value, form)


def _number(cell: str) -> float:
    cell = cell.strip().rstrip("x").replace(",", "")
    return float(cell) if cell not in ("", "-") else np.nan


def read_table(table: Path) -> pd.DataFrame:
    """The measured rows of bench/rehearsal.md: run, rule, job, the peak at exit and the
    peak at the profile's threads (MB; NaN where the table has none)."""
    header = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = table.read_text().splitlines()
    if header not in lines:
        raise ValueError(f"{table}: no table of the columns {[h for _, h in COLUMNS]}")
    fields = [f for f, _ in COLUMNS]
    rows = []
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        record = dict(zip(fields, cells, strict=True))
        rows.append(
            {
                "run": record["run"],
                "rule": record["rule"],
                "job": record["job"],
                "own_mb": _number(record["own_mb"]),
                "node_peak_mb": _number(record["node_peak_mb"]),
            }
        )
    return pd.DataFrame(rows, columns=["run", "rule", "job", "own_mb", "node_peak_mb"])


RULES = REPO / "workflow" / "rules"


def measured_rules() -> set[str]:
    """The workflow's rules that run a job worth measuring: those with a ``benchmark:``
    (the targets that only gather inputs, ``all`` or ``maps``, have none)."""
    found = set()
    for path in RULES.glob("*.smk"):
        for block in re.split(r"^rule ", path.read_text(), flags=re.MULTILINE)[1:]:
            if "\n    benchmark:" in block:
                found.add(block.split(":", 1)[0].strip())
    return found


def planned_rules(dry_run: str) -> set[str]:
    """The rules of the jobs a ``snakemake --dry-run`` plans (its "Job stats" table)."""
    lines = dry_run.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    rules = set()
    for line in lines[start + 3 :]:
        name = line.split()[0] if line.split() else "total"
        if name == "total":
            break
        rules.add(name)
    return rules


def table_problems(measured: pd.DataFrame, planned: set[str], profile: dict) -> list[str]:
    """What keeps a table from sizing the profile: a planned rule with no row, a row with
    no peak at exit, or a profile ``mem_mb`` below a row's peak at the profile's threads."""
    problems = [f"{rule}: no row" for rule in sorted(planned - set(measured["rule"]))]
    for r in measured.itertuples():
        if r.own_mb != r.own_mb or r.node_peak_mb != r.node_peak_mb:
            problems.append(f"{r.rule} {r.job}: no peak at exit")
        elif r.rule not in BY_HAND:
            asked = profile_resources(profile, r.rule)[1]
            if asked < r.node_peak_mb:
                problems.append(
                    f"{r.rule} {r.job}: peak {r.node_peak_mb:,.0f} MB at the profile's threads"
                    f" > mem_mb {asked:,}"
                )
    return problems


WHOLE_RUN_FILE = "whole_run.txt"
"""The whole rehearsal's wall time (``all``), under the rehearsal's folder."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "step", choices=["generate", "tabular", "forest", "patches", "table", "all", "forest-fit"]
    )
    parser.add_argument("out", type=Path, help="the rehearsal's folder (outside the repository)")
    parser.add_argument("--share", type=float, default=1.0, help="share of the archive's counts")
    parser.add_argument("--patch-share", type=float, default=PATCH_SHARE)
    parser.add_argument("--trees", type=int, default=FOREST_TREES)
    parser.add_argument(
        "--raster-coarsening", type=int, default=1, help="raster pixels x N (a quick try)"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--threads", type=int, default=1, help="forest-fit: trees and threads")
    parser.add_argument("--bins", type=int, default=None, help="forest-fit: binned features")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out.resolve()
    configs = rehearsal_configs(yaml.safe_load(RECIPE.read_text()), out / DATA, args.trees)
    if args.step == "forest-fit":  # one fit of the forest step, in a process of its own
        fit = ForestFit(args.share, args.threads, args.bins)
        print(json.dumps(fit_forest_once(out, configs[TABULAR], fit)))
        return
    steps = ["generate", "tabular", "forest", "patches", "table"]
    steps = steps if args.step == "all" else [args.step]
    spec = FullCountSpec(patch_share=args.patch_share, raster_coarsening=args.raster_coarsening)
    if args.share != 1.0:
        spec = spec.scaled(args.share)
    whole = time.perf_counter()
    for step in steps:
        start = time.perf_counter()
        if step == "generate":
            summary = generate_full_count_dataset(out / DATA, spec, workers=args.cores)
            (out / DATA / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            peak = exit_peak()
            wall = time.perf_counter() - start
            write_benchmark(out / "benchmarks" / "generate.tsv", wall, peak.cpu_s, args.cores)
            write_peak(out / "logs" / "generate.log", peak)
        elif step == "tabular":
            run_tabular(out, configs, args.cores)
        elif step == "forest":
            run_forest(out, configs)
        elif step == "patches":
            run_patches(out, configs, args.cores)
        else:
            if args.step == "all":
                minutes = (time.perf_counter() - whole) / 60
                (out / "benchmarks" / WHOLE_RUN_FILE).write_text(
                    f"{minutes:,.0f} min wall ({', '.join(steps[:-1])}), on {args.cores} cores\n"
                )
            write_table(out, args.table, args.patch_share, args.trees)
        print(f"{step}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
