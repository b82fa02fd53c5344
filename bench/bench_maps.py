"""Map prediction speed and memory, and the demo's map correlations per model.

Run from a workflow folder where ``snakemake maps`` ran (e.g. after ``make demo``)::

    .venv/bin/python bench/bench_maps.py /tmp/glc-bench-maps \
        --models env_mlp random_forest --resolutions 0.05 0.01 --regions fr us

Each (model, region, resolution) renders the maps of the region's mapped species and the
richness with the workflow's own ``render_maps``, in a child process limited to
``--threads`` (2) threads, which reports its wall time, land cells per second and peak RSS.
The maps go to the output folder and are deleted afterwards unless ``--keep``. The
correlations of the maps ``snakemake maps`` made with the demo's true maps are read from
``results/maps/<model>/<region>.json``. Everything goes to ``results.json`` in the output
folder and is printed as Markdown tables.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

from geolifeclef.settings.maps import MapSettings


def child(args: argparse.Namespace) -> None:
    """One measurement, in its own process (peak RSS is this process's)."""
    import torch

    from geolifeclef.baselines.fitting import species_columns
    from geolifeclef.data.class_frequency import read_species_table
    from geolifeclef.layout import DatasetLayout
    from geolifeclef.maps.point_models import read_spec
    from geolifeclef.maps.render import choose_species, map_grid, render_maps, species_file
    from geolifeclef.maps.trained_models import load_point_model

    torch.set_num_threads(args.threads)
    spec = read_spec(Path("results/maps") / args.model / "model.json")
    species = read_species_table(spec.species_table)
    chosen = choose_species(species, args.region, MapSettings())
    columns = dict(zip(map(species_file, chosen), species_columns(species, chosen), strict=True))
    layout = DatasetLayout(spec.data_root)
    grid = map_grid(layout, args.region, args.resolution)
    folder = Path(args.out) / f"{args.model}-{args.region}-{args.resolution}"
    folder.mkdir(parents=True, exist_ok=True)
    model = load_point_model(spec, args.threads)
    summary = render_maps(
        model,
        layout,
        grid,
        columns,
        folder,
        MapSettings(chunk_mb=args.chunk_mb).chunk_cells(len(species)),
        args.threads,
        progress=False,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "model": args.model,
                "region": args.region,
                "resolution": args.resolution,
                "cells": summary.cells,
                "land_cells": summary.land_cells,
                "seconds": round(summary.seconds, 2),
                "land_cells_per_second": round(summary.cells_per_second),
                "peak_rss_mb": round(peak),
                "species_mapped": len(chosen),
            }
        )
    )


def correlations(models: list[str]) -> list[dict]:
    rows = []
    for path in sorted(Path("results/maps").glob("*/*.json")):
        if path.name == "model.json" or (models and path.parent.name not in models):
            continue
        metrics = json.loads(path.read_text())
        for entry in metrics["maps"]:
            rows.append(
                {
                    "model": metrics["model"],
                    "region": metrics["region"],
                    "map": entry["map"],
                    "bucket": entry.get("bucket", ""),
                    "correlation": entry["correlation"],
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--models", nargs="+", default=["env_mlp", "random_forest"])
    parser.add_argument("--resolutions", nargs="+", type=float, default=[0.05, 0.01])
    parser.add_argument("--regions", nargs="+", default=["fr", "us"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-mb", type=int, default=MapSettings().chunk_mb)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "REGION", "RESOLUTION"))
    args = parser.parse_args()
    if args.child:
        args.model, args.region, args.resolution = (
            args.child[0],
            args.child[1],
            float(args.child[2]),
        )
        child(args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS"), str(args.threads)),
    }
    speed = []
    for resolution in args.resolutions:
        for region in args.regions:
            for model in args.models:
                command = [sys.executable, __file__, str(out), "--threads", str(args.threads)]
                command += ["--chunk-mb", str(args.chunk_mb)]
                command += ["--child", model, region, str(resolution)]
                result = subprocess.run(command, capture_output=True, text=True, env=environment)
                if result.returncode != 0:
                    print(result.stderr[-3000:], file=sys.stderr)
                    return result.returncode
                speed.append(json.loads(result.stdout.strip().splitlines()[-1]))
                print(speed[-1], flush=True)
    found = correlations(args.models)
    (out / "results.json").write_text(json.dumps({"speed": speed, "correlations": found}, indent=1))
    print("\n| model | region | resolution | land cells | seconds | land cells/s | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in speed:
        print(
            f"| {r['model']} | {r['region']} | {r['resolution']} | {r['land_cells']:,} | "
            f"{r['seconds']} | {r['land_cells_per_second']:,} | {r['peak_rss_mb']} |"
        )
    print("\n| model | region | map | bucket | correlation with the truth |")
    print("| --- | --- | --- | --- | --- |")
    for r in found:
        value = "" if r["correlation"] is None else f"{r['correlation']:.3f}"
        print(f"| {r['model']} | {r['region']} | {r['map']} | {r['bucket']} | {value} |")
    if not args.keep:
        for folder in out.iterdir():
            if folder.is_dir():
                shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
