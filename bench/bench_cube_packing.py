"""Benchmark: packing the time-series cubes at the archive's counts (93,703 PA surveys, two
cube files each), with a warm and a cold page cache, 1, 2 and 4 worker processes.

    .venv/bin/python bench/bench_cube_packing.py /tmp/glc-bench-cubes [--surveys 93703]

1. Writes ``--surveys`` surveys' Landsat [6,4,21] and bioclim [4,19,12] cubes with
   ``torch.save`` (float32, distinct values, a few NaN) into the GLC 2024 train folders
   under their archive names (hyphens in a folder spelt with underscores), in 2 processes;
   reports the files' bytes and what they take on disk.
2. The reference rate: ``torch.load`` of 5,000 of the files in one process, warm.
3. For each worker count (1, 2, and 4: more than the cores, to overlap reads) and cache
   state: ``pack_cubes`` of all surveys (shuffled order) in a child process (torch
   imported before the clock starts), timed in wall and CPU seconds, while the process
   tree's memory is sampled every 0.5 s (the sum of RSS and of PSS over the processes; a
   worker's RSS counts the pages of the arrays it maps). Cold: ``sync; echo 3 >
   /proc/sys/vm/drop_caches`` before the run (root only; the whole machine's caches), or
   with ``--cold fadvise`` (or when drop_caches is refused) ``posix_fadvise(DONTNEED)`` on
   every cube file (their pages only; directory entries and inodes stay cached).
4. Checks 100 random rows of the packed arrays against the files.

Writes results.json in the work folder and deletes everything else unless ``--keep``
(``--reuse`` measures again the files a ``--keep`` run left).
Disk: ~1.2 GB at the archive's counts.
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil

from geolifeclef.data.cubes import open_cubes
from geolifeclef.survey_layout import CUBE_SHAPES, SURVEY_ARCHIVES, SurveyLayout

ARCHIVE_SURVEYS = 93_703
SAMPLE_INTERVAL_S = 0.5


def survey_ids(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct survey ids in the archive's range (212 .. 3,919,655)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(212, 3_919_656), size=n, replace=False))


def cube(survey: int, kind: str) -> np.ndarray:
    """A cube of integer-valued floats (as the archive's), 1 % NaN in some Landsat cubes."""
    rng = np.random.default_rng(survey)
    high = 256 if kind == "landsat" else 30_000
    values = rng.integers(0, high, size=CUBE_SHAPES[kind]).astype(np.float32)
    if kind == "landsat" and survey % 10 == 0:
        values[rng.random(values.shape) < 0.01] = np.nan
    return values


def _write_some(args: tuple[str, np.ndarray]) -> int:
    import torch  # in the generating workers only

    root, ids = args
    layout = SurveyLayout(Path(root), SURVEY_ARCHIVES[2024])
    for survey in ids:
        for kind in CUBE_SHAPES:
            # saved into memory, then written: torch.save to a path is ~5x slower here
            buffer = io.BytesIO()
            torch.save(torch.from_numpy(cube(int(survey), kind)), buffer)
            layout.cube(kind, "train", survey).write_bytes(buffer.getvalue())
    return len(ids)


def generate(root: Path, ids: np.ndarray, workers: int = 2) -> dict:
    layout = SurveyLayout(root, SURVEY_ARCHIVES[2024])
    for kind in CUBE_SHAPES:
        layout.cube_folder(kind, "train").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_some, [(str(root), part) for part in np.array_split(ids, 64)]))
    seconds = time.perf_counter() - started
    files = [
        entry for kind in CUBE_SHAPES for entry in os.scandir(layout.cube_folder(kind, "train"))
    ]
    stats = [entry.stat() for entry in files]
    return {
        "files": len(files),
        "seconds": round(seconds, 1),
        "bytes": sum(s.st_size for s in stats),
        "disk_bytes": sum(s.st_blocks * 512 for s in stats),
    }


def load_rate(root: Path, ids: np.ndarray, n: int = 5_000) -> dict:
    """``torch.load`` of ``n`` files in this process, warm (the files were just read):
    files per second of wall time and of CPU time (the cores are shared)."""
    import torch  # the reference rate only

    layout = SurveyLayout(root, SURVEY_ARCHIVES[2024])
    paths = [layout.cube(kind, "train", s) for s in ids[: n // 2] for kind in CUBE_SHAPES]
    for path in paths:
        path.read_bytes()
    started, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        torch.load(path, weights_only=True, map_location="cpu")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"files_per_s": round(len(paths) / wall), "files_per_cpu_s": round(len(paths) / cpu)}


def make_cold(root: Path, method: str) -> str:
    """Evict the cube files from the page cache; how it was done. ``drop_caches``: the
    whole machine's page, dentry and inode caches (root only: torch's libraries and other
    jobs' files too); ``fadvise``: only the cube files' pages (their directory entries and
    inodes stay cached)."""
    subprocess.run(["sync"], check=True)
    if method == "drop_caches":
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            return "drop_caches"
        except OSError:
            method = "fadvise (drop_caches refused)"
    for path in root.rglob("*.pt"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return method


PACK = """
import json, resource, sys, time, numpy as np, torch
from pathlib import Path
from geolifeclef.data.cubes import pack_cubes
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyLayout
root, order, output, workers = sys.argv[1:]
ids = np.load(order)
def cpu():
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
cpu_before, started = cpu(), time.perf_counter()
report = pack_cubes(SurveyLayout(Path(root), SURVEY_ARCHIVES[2024]), "train", ids,
                    Path(output), workers=int(workers), progress=False)
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_before
print(json.dumps({"pack_seconds": seconds, "cpu_seconds": cpu_seconds,
                  "nan_values": report.nan_values}))
"""


def tree_memory(root: psutil.Process):
    """(the processes, their RSS sum, PSS sum, the largest RSS) of ``root`` and its
    descendants now, in bytes; None once ``root`` is gone."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    rss = pss = largest = 0
    for process in processes:
        try:
            memory = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, pss = rss + memory.rss, pss + memory.pss
        largest = max(largest, memory.rss)
    return processes, rss, pss, largest


def pack(root: Path, order: Path, output: Path, workers: int) -> dict:
    """Run ``pack_cubes`` in a child process; its wall time and the tree's peak memory."""
    started = time.perf_counter()
    child = psutil.Popen(
        [sys.executable, "-c", PACK, str(root), str(order), str(output), str(workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak_rss = peak_pss = peak_process = 0
    while child.poll() is None:
        sample = tree_memory(child)
        if sample is None:
            break
        _, rss, pss, largest = sample
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        peak_process = max(peak_process, largest)
        time.sleep(SAMPLE_INTERVAL_S)
    out, _ = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode:
        raise RuntimeError(f"pack_cubes failed ({child.returncode})")
    said = json.loads(out.strip().splitlines()[-1])
    return {
        "seconds": round(said["pack_seconds"], 1),
        "cpu_seconds": round(said["cpu_seconds"], 1),
        "process_seconds": round(seconds, 1),
        "peak_rss_sum_gb": round(peak_rss / 2**30, 3),
        "peak_pss_sum_gb": round(peak_pss / 2**30, 3),
        "peak_process_rss_gb": round(peak_process / 2**30, 3),
        "nan_values": said["nan_values"],
    }


def check_rows(output: Path, order: np.ndarray, rows: int = 100) -> None:
    packed = open_cubes(output)
    assert packed.index["observation_id"].to_numpy().tolist() == order.tolist()
    for row in np.random.default_rng(1).choice(len(order), size=min(rows, len(order))):
        for kind in CUBE_SHAPES:
            np.testing.assert_array_equal(getattr(packed, kind)[row], cube(int(order[row]), kind))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--surveys", type=int, default=ARCHIVE_SURVEYS)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--cold", choices=("drop_caches", "fadvise"), default="drop_caches")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the files a --keep run left (same --surveys)"
    )
    args = parser.parse_args()
    root, output = args.work / "archive", args.work / "packed"
    ids = survey_ids(args.surveys)
    order = np.random.default_rng(2).permutation(ids)
    args.work.mkdir(parents=True, exist_ok=True)
    np.save(args.work / "order.npy", order)
    results: dict = {"surveys": args.surveys, "cpus": os.cpu_count()}
    try:
        results["generated"] = (
            {"reused": str(root)} if args.reuse and root.is_dir() else generate(root, ids)
        )
        print("generated", results["generated"], flush=True)
        results["torch_load_one_process_warm"] = load_rate(root, ids)
        print("torch.load", results["torch_load_one_process_warm"], flush=True)
        runs = []
        for workers in map(int, args.workers.split(",")):
            for cache in ("cold", "warm"):
                how = make_cold(root, args.cold) if cache == "cold" else "after the cold run"
                load = os.getloadavg()[0]
                run = pack(root, args.work / "order.npy", output, workers)
                run |= {"workers": workers, "cache": cache, "how": how, "load_before": load}
                run["files_per_s"] = round(2 * args.surveys / run["seconds"])
                run["files_per_cpu_s"] = round(2 * args.surveys / run["cpu_seconds"])
                print(run, flush=True)
                results["runs"] = runs = [*runs, run]
                check_rows(output, order)
                shutil.rmtree(output)
        results["load_after"] = os.getloadavg()[0]
    finally:
        (args.work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(output, ignore_errors=True)
            (args.work / "order.npy").unlink(missing_ok=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
