"""The full-size rehearsal: the archive's counts end to end on this machine, every rule
measured, the table in bench/rehearsal.md (see bench/README.md).

    .venv/bin/python bench/rehearsal.py all /work/rehearsal     # or: make rehearsal

Steps (each resumes where an interrupted run stopped; ``all`` runs them in turn):

``generate``  the full-count dataset (``geolifeclef.demo.fullcount``): 1,663,896
              observations, 17,037 species, real-resolution rasters, 256 px patches for a
              tenth; ~40 min and ~17 GB (6.5 GB of patches, 5.2 GB of truth, 3.1 GB of
              rasters).
``tabular``   the recipe at full counts on the features that need no patches: ingest,
              extraction, class frequency, constant, kNN, the forest with fewer trees, an
              env MLP for one epoch with the 17,037-way head, refits, the blends,
              evaluation, ``final.csv``, ``maps`` at 0.05 degrees and a query of 100,000
              points.
``patches``   the recipe's patch side on the observations with patches: the encoded
              store at 256 px in shards, the patch statistics, the normalisation
              statistics, and the training loader's samples/s for the recipe's two stacks.
``table``     bench/rehearsal.md from the runs' Snakemake benchmark files.

The configs are the recipe (config/recipes/glc2022-winners.yaml) with only sizes changed
(``rehearsal_configs``). Everything is written under the folder given; delete it after
(``rm -rf``): ~25 GB in all.
"""

import argparse
import contextlib
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
import psutil
import yaml

from geolifeclef.demo.fullcount import (
    ARCHIVE_SPLITS,
    PATCH_ROOT,
    ROOT,
    FullCountSpec,
    generate_full_count_dataset,
)

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
FOREST_TREES = 4
"""Trees of the rehearsal's forest: the recipe's 32 extrapolated from their time."""
MLP_STEPS = 600
"""Batches of the env MLP's epoch (``train.steps_per_epoch``): 153,600 of train's 1.59 M
rows at the recipe's batch 256, ~7 min on 2 cores (375 samples/s) where the whole epoch
takes ~70 min, and as long again for the refit; a whole CPU epoch is 6,201 / 600 times
the measured one (the data loading and the head cost the same per step)."""


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
    tabular["maps"] = {"resolution": 0.05}
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
        # A fix to the code mid-rehearsal reruns nothing already measured.
        "--rerun-triggers",
        "mtime",
    )
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def timed(command: list[str], cwd: Path, name: str, ok: tuple[int, ...] = (0,)) -> None:
    """Run ``command`` (an exit code in ``ok``); write its wall time, CPU time and peak RSS
    as a Snakemake benchmark file would (benchmarks/<name>.tsv), so the table reads it like
    a rule."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = psutil.Popen(command, cwd=cwd)
    # Polled: RUSAGE_CHILDREN's peak would be the largest of every child so far, the rule
    # jobs of an earlier snakemake run included.
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):  # it may end between poll and read
            peak = max(peak, process.memory_info().rss)
        time.sleep(0.2)
    if process.returncode not in ok:
        raise subprocess.CalledProcessError(process.returncode, command)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    write_benchmark(cwd / "benchmarks" / f"{name}.tsv", wall, cpu, peak / 2**20)


def write_benchmark(path: Path, seconds: float, cpu: float, max_rss_mb: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"s": [seconds], "max_rss": [max_rss_mb], "io_out": [np.nan], "cpu_time": [cpu]}
    ).to_csv(path, sep="\t", index=False)


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

# How a rule's time here becomes its time for the full recipe on a 32-core, 128 GB node
# (threads from the profile) or a GPU node: (seconds from a ``Measure``, basis). CPU-bound rules
# scale their CPU seconds, which the machine's other load leaves alone, over the node's
# threads; the others keep their wall time.
SCALING = {
    "extract_env": (lambda m: m.cpu / m.threads, "CPU-bound; one raster per thread"),
    "cache_patch_shard": (
        lambda m: m.cpu * m.rows / m.threads,
        "rows x 1/share; a row per worker process",
    ),
    "compute_patch_stats": (lambda m: m.cpu * m.rows / m.threads, "rows x 1/share; loader workers"),
    "predict_random_forest": (
        lambda m: m.cpu * m.trees / m.threads,
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


def read_benchmarks(out: Path, sizes: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per benchmark file of the runs: run, rule, job (wildcards), wall and CPU
    seconds, peak RSS, and the MB of the job's outputs (``sizes``: ``output_sizes`` of
    each run; NaN without)."""
    rows = []
    for run in (*RUNS, "."):
        folder = out / run / "benchmarks"
        for path in sorted(folder.rglob("*.tsv")) if folder.exists() else []:
            name = path.relative_to(folder).with_suffix("")
            bench = pd.read_csv(path, sep="\t")
            rules = set(sizes[run]["rule"]) if sizes is not None and run in sizes else set()
            rule, job = _rule_and_job(name, rules)
            written = np.nan
            if sizes is not None and run in sizes:
                written = _job_written_mb(sizes[run], rule, job)
            rows.append(
                {
                    "run": DATA if run == "." else run,
                    "rule": rule,
                    "job": job,
                    "wall_s": float(bench["s"].max()),
                    "cpu_s": float(bench["cpu_time"].max()),
                    "peak_rss_mb": float(bench["max_rss"].max()),
                    "written_mb": written,
                }
            )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Measure:
    """A job measured here: wall and CPU seconds; the profile's threads for its rule; the
    patch side's rows factor (1 / the patch share); the forest's (32 / its trees)."""

    wall: float
    cpu: float
    threads: int
    rows: float
    trees: float


def extrapolate(rule: str, measure: Measure) -> tuple[float | None, str]:
    """(seconds on the node or None, basis) for a rule measured here."""
    scale, basis = SCALING.get(rule, (lambda m: m.wall, "full counts, as measured"))
    return (None if scale is None else scale(measure)), basis


def write_table(out: Path, table: Path, patch_share: float, trees: int) -> pd.DataFrame:
    """bench/rehearsal.md: every measured job, its profile request and the margin."""
    profile = yaml.safe_load(PROFILE.read_text())
    sizes = {
        run: output_sizes(out / run, TARGETS[run])
        for run in RUNS
        if (out / run / "config.yaml").exists()
    }
    frame = read_benchmarks(out, sizes)
    threads, mem, node, basis = [], [], [], []
    for row in frame.itertuples():
        t, m = (1, None) if row.rule in BY_HAND else profile_resources(profile, row.rule)
        seconds, why = extrapolate(
            row.rule, Measure(row.wall_s, row.cpu_s, t, 1 / patch_share, 32 / trees)
        )
        threads.append(t)
        mem.append(m)
        node.append(seconds)
        basis.append(why)
    frame["profile_threads"], frame["profile_mem_mb"] = threads, mem
    frame["mem_margin"] = frame["profile_mem_mb"] / frame["peak_rss_mb"]
    frame["node_s"], frame["basis"] = node, basis
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
    lines = [
        f"# The full-size rehearsal: measured{' (partial: see the end)' if partial else ''}",
        "",
        "Written by `bench/rehearsal.py table` from the Snakemake benchmark files of a run",
        f"(patch share {patch_share:g}, forest of {trees} trees); see bench/README.md.",
        "`peak RSS` is what `tests/test_rehearsal.py` holds the profile's `mem_mb` to.",
        "",
        "| run | rule | job | wall s | CPU s | peak RSS MB | written MB | profile threads |"
        " profile mem_mb | margin | full recipe on a node, s | basis |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in frame.itertuples():
        lines.append(
            f"| {r.run} | {r.rule} | {r.job} | {r.wall_s:,.0f} | {r.cpu_s:,.0f} | "
            f"{r.peak_rss_mb:,.0f} | {_cell(r.written_mb)} | {r.profile_threads} | "
            f"{_cell(r.profile_mem_mb)} | {_cell(r.mem_margin, '.1f x')} | "
            f"{_cell(r.node_s)} | "
            f"{r.basis} |"
        )
    for rows, _ in carried.values():
        lines += rows
    lines += ["", f"Total wall time: {frame['wall_s'].sum():,.0f} s (this folder's runs).", ""]
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
    loader = out / PATCHES / "benchmarks" / LOADER_FILE
    if loader.exists():
        lines += [
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
        for name, rate in json.loads(loader.read_text()).items():
            scaled = rate["samples_per_s"] * RECIPE_WORKERS / rate["workers"]
            lines.append(
                f"| {name} | {rate['workers']} | {rate['samples_per_s']:,.0f} | {scaled:,.0f} | "
                f"{ARCHIVE_SPLITS['train'] / scaled / 60:,.0f} |"
            )
        lines.append("")
    table.write_text("\n".join(lines))
    return frame


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


def read_table(table: Path) -> pd.DataFrame:
    """The measured rows of bench/rehearsal.md (run, rule, job, peak RSS MB)."""
    rows = []
    for line in table.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 12 and cells[3].replace(",", "").replace(".", "").isdigit():
            rows.append(
                {
                    "run": cells[0],
                    "rule": cells[1],
                    "job": cells[2],
                    "peak_rss_mb": float(cells[5].replace(",", "")),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["generate", "tabular", "patches", "table", "all"])
    parser.add_argument("out", type=Path, help="the rehearsal's folder (outside the repository)")
    parser.add_argument("--share", type=float, default=1.0, help="share of the archive's counts")
    parser.add_argument("--patch-share", type=float, default=0.1)
    parser.add_argument("--trees", type=int, default=FOREST_TREES)
    parser.add_argument(
        "--raster-coarsening", type=int, default=1, help="raster pixels x N (a quick try)"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--table", type=Path, default=TABLE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out.resolve()
    steps = ["generate", "tabular", "patches", "table"] if args.step == "all" else [args.step]
    spec = FullCountSpec(patch_share=args.patch_share, raster_coarsening=args.raster_coarsening)
    if args.share != 1.0:
        spec = spec.scaled(args.share)
    configs = rehearsal_configs(yaml.safe_load(RECIPE.read_text()), out / DATA, args.trees)
    for step in steps:
        start = time.perf_counter()
        if step == "generate":
            summary = generate_full_count_dataset(out / DATA, spec, workers=args.cores)
            (out / DATA / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            cpu = sum(os.times()[:4])
            write_benchmark(
                out / "benchmarks" / "generate.tsv", time.perf_counter() - start, cpu, peak_mb
            )
        elif step == "tabular":
            run_tabular(out, configs, args.cores)
        elif step == "patches":
            run_patches(out, configs, args.cores)
        else:
            write_table(out, args.table, args.patch_share, args.trees)
        print(f"{step}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
