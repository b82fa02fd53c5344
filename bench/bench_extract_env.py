"""Benchmark: extract_env against the organizers' approach, at real scale.

Ours: ``geolifeclef.data.env_table.build_env_table`` end to end (observation tables in, env
table Parquet out), windowed reads, vectorised lookups.

Reference (the organizers' ``PatchExtractor`` with size 1): every raster read whole as a
masked float32 array, then a Python loop over the points calling ``dataset.index`` and
indexing the array. At full scale it would hold all 54 rasters at once (the ``~18 GB``
of the starter kit) and loop over 1.66 M x 27 lookups for about 20 minutes, so it is run
on a measured subset: every raster is loaded (one at a time, timed in full) and the loop
runs over ``--reference-points`` points; its full-scale time is the measured load time
plus the measured time per point times the number of points. Its full-scale memory is the
sum of the masked float32 arrays (5 bytes per pixel), computed, since holding them all
would not fit beside another job on a 24 GB machine.

Each side runs in its own process, whose peak RSS (getrusage) is reported. The subset's
values of both sides are compared: they must be identical.

    .venv/bin/python bench/bench_extract_env.py /tmp/glc-bench          # full scale
    .venv/bin/python bench/bench_extract_env.py /tmp/glc-bench --scale 0.02 --keep

Writes results.json in the work folder and removes everything else unless ``--keep``.
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from realscale import N_POINTS, write_points, write_rasters  # noqa: E402

from geolifeclef.data.env_table import build_env_table, observation_points  # noqa: E402
from geolifeclef.data.rasters import region_of_points  # noqa: E402
from geolifeclef.layout import ENV_VARIABLES, DatasetLayout  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(workdir: Path, workers: int) -> dict:
    """The workflow's extraction, end to end."""
    tables = sorted((workdir / "observations").glob("*.parquet"))
    start = time.perf_counter()
    build_env_table(
        DatasetLayout(workdir / "glc22"), tables, workdir / "env_values.parquet", workers=workers
    )
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def run_reference(workdir: Path, n_points: int) -> dict:
    """The organizers' approach on every raster, over the first ``n_points`` points."""
    tables = sorted((workdir / "observations").glob("*.parquet"))
    points = observation_points(tables)
    subset = points.sample(n=min(n_points, len(points)), random_state=0).sort_values(
        "observation_id"
    )
    lon, lat = subset["longitude"].to_numpy(), subset["latitude"].to_numpy()
    region = region_of_points(lon)
    layout = DatasetLayout(workdir / "glc22")
    values = np.full((len(subset), len(ENV_VARIABLES)), np.nan, dtype=np.float32)
    load_seconds = lookup_seconds = 0.0
    all_in_memory_bytes = 0
    for reg in ("fr", "us"):
        rows = np.flatnonzero(region == reg)
        for j, variable in enumerate(ENV_VARIABLES):
            start = time.perf_counter()
            with rasterio.open(layout.raster(variable, reg)) as dataset:
                raster = dataset.read(1, masked=True, out_dtype=np.float32)
                raster[raster.mask] = np.nan  # as the organizers' Raster.__init__
                load_seconds += time.perf_counter() - start
                all_in_memory_bytes += raster.data.nbytes + raster.mask.nbytes
                start = time.perf_counter()
                for i in rows:  # the per-point loop of PatchExtractor.__getitem__
                    row, col = dataset.index(lon[i], lat[i])
                    try:
                        if row < 0 or col < 0:
                            raise IndexError
                        value = raster[row, col]
                    except IndexError:
                        value = np.nan
                    values[i, j] = np.nan if value is np.ma.masked else value
                lookup_seconds += time.perf_counter() - start
            del raster
    np.save(workdir / "reference_values.npy", values)
    np.save(workdir / "reference_ids.npy", subset["observation_id"].to_numpy())
    return {
        "points": len(subset),
        "load_seconds": load_seconds,
        "lookup_seconds": lookup_seconds,
        "lookups_per_second": len(subset) * len(ENV_VARIABLES) / lookup_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "all_rasters_in_memory_gb": all_in_memory_bytes / 1e9,
    }


def child(phase: str, workdir: Path, argument: int) -> dict:
    command = [
        sys.executable,
        __file__,
        str(workdir),
        "--phase",
        phase,
        "--argument",
        str(argument),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="extract_env vs the organizers' approach")
    parser.add_argument("workdir", type=Path, help="work folder (e.g. /tmp/glc-bench)")
    parser.add_argument("--scale", type=float, default=1.0, help="share of the 1.66 M points")
    parser.add_argument("--reference-points", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tiled", action="store_true", help="tiled rasters instead of strips")
    parser.add_argument("--keep", action="store_true", help="keep rasters and tables")
    parser.add_argument("--phase", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--argument", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "ours":
        print(json.dumps(run_ours(args.workdir, args.argument)))
        return
    if args.phase == "reference":
        print(json.dumps(run_reference(args.workdir, args.argument)))
        return

    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        write_rasters(workdir / "glc22", tiled=args.tiled)
        n_points = int(round(N_POINTS * args.scale))
        if not (workdir / "observations" / "train.parquet").exists():
            write_points(workdir / "observations", n_points)
        generated = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in (workdir / "glc22").rglob("*.tif")) / 1e9
        n_points = sum(
            len(pd.read_parquet(p)) for p in (workdir / "observations").glob("*.parquet")
        )
        print(f"data ready in {generated:.0f} s: {n_points} points, rasters {disk:.1f} GB on disk")
        ours = child("ours", workdir, args.workers)
        print(f"ours: {ours['seconds']:.1f} s, peak RSS {ours['peak_rss_mb']:.0f} MB")
        reference = child("reference", workdir, args.reference_points)
        reference_total = (
            reference["load_seconds"] + reference["lookup_seconds"] * n_points / reference["points"]
        )
        print(
            f"reference on {reference['points']} points: "
            f"load {reference['load_seconds']:.1f} s, "
            f"{reference['lookups_per_second']:.0f} lookups/s, "
            f"peak RSS {reference['peak_rss_mb']:.0f} MB (one raster at a time); "
            f"all 54 in memory: {reference['all_rasters_in_memory_gb']:.1f} GB"
        )
        # Same values on the subset.
        env = pd.read_parquet(workdir / "env_values.parquet").set_index("observation_id")
        ids = np.load(workdir / "reference_ids.npy")
        expected = np.load(workdir / "reference_values.npy")
        got = env.loc[ids, list(ENV_VARIABLES)].to_numpy(np.float32)
        identical = bool(np.array_equal(got, expected, equal_nan=True))
        result = {
            "points": n_points,
            "rasters_on_disk_gb": disk,
            "tiled": args.tiled,
            "workers": args.workers,
            "ours": ours,
            "reference_subset": reference,
            "reference_full_scale_seconds_extrapolated": reference_total,
            "speedup": reference_total / ours["seconds"],
            "identical_on_subset": identical,
            "nan_share": float(np.isnan(env.to_numpy()).mean()),
        }
        print(
            f"reference at full scale (extrapolated): {reference_total:.0f} s; "
            f"speed-up {result['speedup']:.1f}x; identical values on the subset: {identical}"
        )
        (workdir / "results.json").write_text(json.dumps(result, indent=1))
    finally:
        if not args.keep:
            for name in ("glc22", "observations"):
                shutil.rmtree(workdir / name, ignore_errors=True)
            for name in ("env_values.parquet", "reference_values.npy", "reference_ids.npy"):
                (workdir / name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
