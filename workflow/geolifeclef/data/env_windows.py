"""Env windows: k x k windows of the 27 rasters around every observation.

``results/environment/env_patches/`` (only with ``environment.env_patches.enabled``) holds
``values.npy``, (n, 27, k, k) float32, NaN-padded at raster edges and for points outside
their raster (as the reference's out-of-bounds patches), and ``observation_id.npy``, the
observation of each row in the row order of the env table.
"""

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from tqdm import tqdm

from geolifeclef.atomic import atomic_path
from geolifeclef.data.env_table import observation_points
from geolifeclef.data.rasters import (
    WINDOW_BYTES,
    ExtractionReport,
    RasterTask,
    WindowPlan,
    gdal_block_cache,
    open_raster,
    plan_rasters,
    read_window_of,
)
from geolifeclef.layout import ENV_VARIABLES, DatasetLayout

log = logging.getLogger(__name__)

GATHER_POINTS = 65_536
"""Points gathered at once from a window when cutting env patches (bounds the buffers)."""

ENV_PATCH_VALUES = "values.npy"
ENV_PATCH_IDS = "observation_id.npy"


def window_offsets(size: int) -> np.ndarray:
    """Offsets of a ``size`` x ``size`` window's rows (and cols) from the point's pixel.

    ``-(size // 2) ... size - size // 2 - 1``: the reference's ``row - k/2 : row + k/2`` for
    even ``size`` (the point's pixel at index size // 2), centred for odd ``size``.
    """
    return np.arange(size) - size // 2


def sample_windows_plan(path: Path, plan: WindowPlan, size: int, out: np.ndarray) -> None:
    """Fill ``out[point]`` (a (n, size, size) float32 array) with the size x size window of the
    raster around each planned point, NaN where masked or beyond the raster's edge."""
    offsets = window_offsets(size)
    before, after = -offsets[0], offsets[-1]
    with open_raster(path) as dataset:
        for window, points, rows, cols in plan.groups():
            top, left = window.row_off - before, window.col_off - before
            bottom = window.row_off + window.height + after
            right = window.col_off + window.width + after
            padded = np.full((bottom - top, right - left), np.nan, dtype=np.float32)
            r0, r1 = max(top, 0), min(bottom, dataset.height)
            c0, c1 = max(left, 0), min(right, dataset.width)
            padded[r0 - top : r1 - top, c0 - left : c1 - left] = read_window_of(
                path, dataset, Window(c0, r0, c1 - c0, r1 - r0)
            )
            # Raster row r is row r - top of ``padded``; its window starts at r - before.
            span = np.arange(size)
            for start in range(0, len(points), GATHER_POINTS):  # bounded gather buffers
                part = slice(start, start + GATHER_POINTS)
                r = (rows[part] - window.row_off)[:, None, None] + span[None, :, None]
                c = (cols[part] - window.col_off)[:, None, None] + span[None, None, :]
                out[points[part]] = padded[r, c]


def extract_env_windows(
    layout: DatasetLayout,
    longitude: np.ndarray,
    latitude: np.ndarray,
    size: int,
    output: Path,
    variables: Sequence[str] = ENV_VARIABLES,
    workers: int = 1,
    window_bytes: int = WINDOW_BYTES,
    progress: bool = True,
) -> ExtractionReport:
    """Write (n, len(variables), size, size) float32 windows around every point to the new
    .npy file ``output`` (memory-mappable), NaN-padded at raster edges; points outside their
    raster get all-NaN windows, as the reference's out-of-bounds patches.

    Built variable by variable into a variable-major scratch file beside ``output``
    (sequential writes), then transposed by blocks of points into the row-major result, so
    memory stays bounded and a Dataset reads one contiguous block per observation.
    """
    longitude = np.asarray(longitude, dtype=np.float64)
    latitude = np.asarray(latitude, dtype=np.float64)
    n, output = len(longitude), Path(output)
    tasks, report = plan_rasters(layout, longitude, latitude, variables, window_bytes)
    by_column: list[list[RasterTask]] = [[] for _ in variables]
    for task in tasks:
        by_column[task.column].append(task)
    scratch_path = output.with_name(output.name + ".by-variable.npy")
    try:
        scratch = np.lib.format.open_memmap(
            scratch_path, mode="w+", dtype=np.float32, shape=(len(variables), n, size, size)
        )
        _fill_windows(scratch, by_column, size, workers, window_bytes, progress)
        _transpose_to_file(scratch, output)
        centre = size // 2
        report.nan_counts = {
            v: int(np.isnan(scratch[i, :, centre, centre]).sum()) for i, v in enumerate(variables)
        }
    finally:
        scratch_path.unlink(missing_ok=True)
    return report


def _fill_windows(
    scratch: np.ndarray,
    tasks: list[list[RasterTask]],
    size: int,
    workers: int,
    window_bytes: int,
    progress: bool,
) -> None:
    """scratch[v] = the windows of variable v, one variable per task."""

    def run(column: int) -> None:
        slab = scratch[column]  # a view of the scratch file: no n-sized buffer in memory
        slab.fill(np.nan)  # what outside points keep
        for task in tasks[column]:
            sample_windows_plan(task.path, task.plan, size, slab)

    with (
        gdal_block_cache(workers, window_bytes),
        ThreadPoolExecutor(max(1, workers)) as pool,
        tqdm(total=len(tasks), desc="env windows", unit="var", disable=not progress) as bar,
    ):
        for _ in pool.map(run, range(len(tasks))):
            bar.update()


def _transpose_to_file(scratch: np.ndarray, output: Path) -> None:
    """Write scratch (V, n, k, k) as a row-major (n, V, k, k) .npy, 64 MiB at a time."""
    n_variables, n = scratch.shape[:2]
    result = np.lib.format.open_memmap(
        output, mode="w+", dtype=np.float32, shape=(n, n_variables, *scratch.shape[2:])
    )
    block = max(1, (64 * 2**20) // max(1, scratch[:, :1].nbytes))
    for start in range(0, n, block):
        result[start : start + block] = scratch[:, start : start + block].transpose(1, 0, 2, 3)
    result.flush()
    del result


def build_env_patches(
    layout: DatasetLayout,
    observation_tables: Sequence[str | Path],
    output_dir: Path,
    size: int,
    workers: int = 1,
    window_bytes: int = WINDOW_BYTES,
) -> ExtractionReport:
    """The env patch cache of every observation, written atomically as a folder:

    * ``values.npy``: (n, 27, size, size) float32, NaN-padded windows of the 27 rasters
      around each point (variables in the order of ``layout.ENV_VARIABLES``);
    * ``observation_id.npy``: (n,) int64, the observation of each row (sorted, the same
      row order as the env table).
    """
    points = observation_points(observation_tables)
    with atomic_path(output_dir) as temporary:
        temporary.mkdir()
        report = extract_env_windows(
            layout,
            points["longitude"].to_numpy(),
            points["latitude"].to_numpy(),
            size,
            temporary / ENV_PATCH_VALUES,
            workers=workers,
            window_bytes=window_bytes,
        )
        np.save(temporary / ENV_PATCH_IDS, points["observation_id"].to_numpy(np.int64))
    report.log_summary()
    log.info("wrote %d windows of %d x %d px to %s", len(points), size, size, output_dir)
    return report
