"""Benchmark: the check that a patch file changed (issue 38, case 3), at the archive's count.

The param of a split's cache build is the fingerprint of the size and modification time of
every patch file the split reads (``settings.archive.patch_files_fingerprint``): Snakemake
computes it once per split and invocation that plans the caches, and each shard job stats
its own files again to find the chunks whose files changed (``patch_file_states``). Both
are stat calls, never reads; this measures them on a synthetic archive tree of ``--n``
observations x ``--modalities`` empty-bodied files (sparse: ``ftruncate`` to 17-34 kB,
no data blocks) in the archive's layout (``patches-fr/44/14/10171444_rgb.jpg``), two
thirds in France, with the split's table (observation_id).

    .venv/bin/python bench/bench_change_check.py /tmp/glc-change-check [--n 1650000]
        [--modalities rgb near_ir] [--repeats 3] [--keep]

For each of 1 thread and ``STAT_THREADS`` threads: ``--repeats`` timings of the whole
fingerprint (table read, paths, stats, digest), with the page cache warm (the tree was
just written or stat'ed); and a cold one first when this process may drop the page cache
(``/proc/sys/vm/drop_caches``, as root), else says so. The load average is recorded
with them: on shared cores the rates follow it. Then the files of
one observation rewritten (a new time) and the fingerprint again: it must differ. The
folder-level fingerprint that the param was before (two stat calls) is timed for scale.
Prints and writes ``results.json`` beside the tree, which it deletes unless ``--keep``;
it reports the disk the tree took (its blocks, as ``du``) and the time to write it.
"""

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.layout import REGIONS, DatasetLayout
from geolifeclef.settings.archive import STAT_THREADS, fingerprint, patch_files_fingerprint


def synthetic_ids(n: int) -> np.ndarray:
    """n observation ids in the archive's form: two thirds French (1xxxxxxx), a third US."""
    fr = (2 * n) // 3
    return np.concatenate([10_000_000 + np.arange(fr), 20_000_000 + np.arange(n - fr)]).astype(
        np.int64
    )


def write_tree(layout: DatasetLayout, ids: np.ndarray, modalities: list[str]) -> None:
    """Every patch file, empty but for its size (a hole: no data block is written)."""
    folders = set()
    for modality in modalities:
        for k, path in enumerate(layout.patch_paths(ids, modality)):
            folder = path.rsplit("/", 1)[0]
            if folder not in folders:
                os.makedirs(folder, exist_ok=True)
                folders.add(folder)
            descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
            os.ftruncate(descriptor, 17_000 + (k * 7919) % 17_000)
            os.close(descriptor)


def drop_page_cache() -> bool:
    """Drop the kernel's page, dentry and inode caches; False where not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def allocated_bytes(folder: Path) -> int:
    """The disk blocks of a tree's files and folders (``du``): what it took on disk."""
    total = 0
    for root, names, files in os.walk(folder):
        for name in [*names, *files]:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--n", type=int, default=1_650_000)
    parser.add_argument("--modalities", nargs="+", default=["rgb", "near_ir"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    layout = DatasetLayout(folder / "archive")
    modalities = tuple(args.modalities)
    ids = synthetic_ids(args.n)
    table = folder / "observations.parquet"
    pq.write_table(pa.table({"observation_id": ids}), table)
    files = len(ids) * len(modalities)
    results = {"observations": len(ids), "files": files, "modalities": list(modalities)}

    results["load_average_before"] = os.getloadavg()
    seconds, _ = timed(write_tree, layout, ids, list(modalities))
    os.sync()
    results["write_tree_s"] = round(seconds, 1)
    results["tree_disk_gb"] = round(allocated_bytes(layout.root) / 1e9, 3)
    print(f"wrote {files:,} files in {seconds:.0f} s, {results['tree_disk_gb']} GB of disk")

    folders = [layout.patch_folder(region) for region in REGIONS]
    seconds, _ = timed(fingerprint, folders)
    results["folder_fingerprint_s"] = seconds
    results["can_drop_page_cache"] = drop_page_cache()
    for threads in (1, STAT_THREADS):
        timings = {}
        check = (patch_files_fingerprint, layout, table, modalities, threads)
        if results["can_drop_page_cache"]:
            drop_page_cache()
            timings["cold_s"] = round(timed(*check)[0], 2)
        warm = [timed(*check)[0] for _ in range(args.repeats)]
        timings["warm_s"] = [round(s, 2) for s in warm]
        timings["warm_us_per_file"] = round(min(warm) / files * 1e6, 2)
        timings["load_average_after"] = os.getloadavg()
        results[f"threads_{threads}"] = timings
        print(f"{threads} thread(s): {timings}")

    first = patch_files_fingerprint(layout, table, modalities)
    path = layout.patch(int(ids[len(ids) // 2]), modalities[0])
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
    results["one_file_changed_detected"] = (
        patch_files_fingerprint(layout, table, modalities) != first
    )
    print(json.dumps(results, indent=1))
    (folder / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    if not args.keep:
        seconds, _ = timed(shutil.rmtree, layout.root)
        table.unlink()
        print(f"deleted the tree in {seconds:.0f} s")


if __name__ == "__main__":
    main()
