"""Benchmark: wall and CPU time of the GLC 2024/2025 survey demo's generation.

    .venv/bin/python bench/bench_survey_demo.py /tmp/glc-bench-survey-demo
    .venv/bin/python bench/bench_survey_demo.py /tmp/glc-bench-survey-demo --scale large

Generates the preset (``small`` by default, the default demo) of each year with ``--workers``
processes (2 by default) and records per year the wall time, the CPU time of the main process
and of the workers, the load average of the machine before and after (other work on it
inflates the wall time; main CPU + workers' CPU / workers is what an idle machine of that
many cores takes), the main process's peak memory so far, and the files and bytes written.
Writes results.json in the work folder and removes everything else unless ``--keep``.
"""

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path

from geolifeclef.demo.surveys import generate_survey_demo, survey_spec_for


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--years", type=int, nargs="+", default=[2024, 2025])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"scale": args.scale, "workers": args.workers, "cpu_count": os.cpu_count()}
    for year in args.years:
        root, truth = args.work / f"glc{year}", args.work / f"truth{year}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(truth, ignore_errors=True)
        load_before = os.getloadavg()[0]
        main_cpu, workers_cpu = (
            _cpu_seconds(resource.RUSAGE_SELF),
            _cpu_seconds(resource.RUSAGE_CHILDREN),
        )
        start = time.perf_counter()
        summary = generate_survey_demo(
            root, truth, survey_spec_for(args.scale, year=year), args.workers
        )
        wall = time.perf_counter() - start
        main_cpu = _cpu_seconds(resource.RUSAGE_SELF) - main_cpu
        workers_cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - workers_cpu
        files = [p for p in root.rglob("*") if p.is_file()]
        results[f"glc{year}"] = {
            "wall_s": round(wall, 1),
            "main_cpu_s": round(main_cpu, 1),
            "workers_cpu_s": round(workers_cpu, 1),
            "idle_estimate_s": round(main_cpu + workers_cpu / max(1, args.workers), 1),
            "main_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "files": len(files),
            "megabytes": round(sum(p.stat().st_size for p in files) / 1e6, 1),
            "n_surveys": summary["n_surveys"],
            "n_rows": summary["n_rows"],
        }
        print(json.dumps({f"glc{year}": results[f"glc{year}"]}), flush=True)
        if not args.keep:
            shutil.rmtree(root)
            shutil.rmtree(truth)
    (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
