"""Environmental values at observation points, read from the 27 x 2 GLC rasters.

Reference semantics (the organizers' extractor, see GLC22-FORMAT.md):

* a point reads the FR raster when its longitude is > -10, the USA raster otherwise;
* it takes the pixel that *contains* the point: ``floor`` of the affine inverse, computed
  here by ``rasterio.transform.rowcol``, the very function behind ``dataset.index``;
* a pixel that the raster masks (nodata, or a mask band) becomes NaN, values are float32
  as the reference reads them (``read(1, masked=True, out_dtype=float32)``).

Where we differ, on purpose: a point outside its raster gets NaN and is counted in the
log (the reference crashes, or silently wraps a negative index to the other edge).

How it stays fast and small at full scale: the points are converted to pixel indices in
one vectorised call per raster grid, grouped by block-aligned windows of at most
``window_bytes`` of raster, and only windows that hold points are read, each once. Memory
is one window per worker thread plus the point arrays, whatever the raster size.
"""

import logging
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
from rasterio.enums import MaskFlags
from rasterio.transform import rowcol
from rasterio.windows import Window
from tqdm import tqdm

from .atomic import atomic_path
from .errors import InputDataError
from .layout import (
    CSV_SEPARATOR,
    ENV_VARIABLES,
    FR_LONGITUDE_THRESHOLD,
    REGIONS,
    DatasetLayout,
)

log = logging.getLogger(__name__)

WINDOW_BYTES = 64 * 2**20
"""Default memory budget of one raster window (per worker thread)."""

GATHER_POINTS = 65_536
"""Points gathered at once from a window when cutting env patches (bounds the buffers)."""

ENV_SCHEMA = pa.schema(
    [("observation_id", pa.int64())] + [(name, pa.float32()) for name in ENV_VARIABLES]
)
"""Schema of ``results/environment/env_values.parquet``."""


# --------------------------------------------------------------------------------------
# Points and pixels
# --------------------------------------------------------------------------------------


def region_of_points(longitude: np.ndarray) -> np.ndarray:
    """Raster region code ('fr' or 'us') of each point, by the reference's longitude rule."""
    return np.where(np.asarray(longitude) > FR_LONGITUDE_THRESHOLD, "fr", "us")


@dataclass(frozen=True)
class RasterGrid:
    """What the extraction needs to know of a raster: its grid and its storage blocks."""

    transform: rasterio.Affine
    height: int
    width: int
    block_height: int
    block_width: int
    itemsize: int

    @classmethod
    def of(cls, dataset: rasterio.io.DatasetReader) -> "RasterGrid":
        block_height, block_width = dataset.block_shapes[0]
        return cls(
            dataset.transform,
            dataset.height,
            dataset.width,
            block_height,
            block_width,
            max(4, np.dtype(dataset.dtypes[0]).itemsize),  # read as float32
        )


def pixel_indices(
    transform: rasterio.Affine, longitude: np.ndarray, latitude: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, inside) of the pixels holding the points, for all points at once.

    Uses ``rasterio.transform.rowcol`` (floor of the affine inverse, as ``dataset.index``)
    so a point on a pixel edge lands where the reference puts it. ``inside`` is False for
    points outside the raster; their row and col are clipped into range, never used.
    """
    rows, cols = rowcol(transform, longitude, latitude, op=np.floor)
    rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    # Compare as floats before casting: a far-away point must not wrap an integer.
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    rows = np.clip(rows, 0, height - 1).astype(np.int64)
    cols = np.clip(cols, 0, width - 1).astype(np.int64)
    return rows, cols, inside


@dataclass
class WindowPlan:
    """Points of one raster grid grouped by the window of raster that holds them.

    ``points[starts[i]:starts[i + 1]]`` are the indices (into the caller's point arrays)
    of the points inside ``windows[i]``; ``rows``/``cols`` are their pixel indices.
    """

    grid: RasterGrid
    points: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    starts: np.ndarray
    windows: list[Window]
    outside: np.ndarray
    """Indices of the points that fall outside the raster."""

    def groups(self) -> Iterator[tuple[Window, np.ndarray, np.ndarray, np.ndarray]]:
        """(window, point indices, rows, cols) of each window that holds points."""
        for i, window in enumerate(self.windows):
            part = slice(self.starts[i], self.starts[i + 1])
            yield window, self.points[part], self.rows[part], self.cols[part]


def window_shape(grid: RasterGrid, window_bytes: int) -> tuple[int, int]:
    """(rows, cols) of block-aligned windows of at most ``window_bytes`` (at least a block).

    Block-aligned so that every compressed block is decoded exactly once: full-width strips
    of whole block rows when they fit, else rectangles of whole blocks.
    """
    block_bytes = grid.block_height * grid.block_width * grid.itemsize
    blocks = max(1, window_bytes // block_bytes)
    blocks_across = math.ceil(grid.width / grid.block_width)
    if blocks >= blocks_across:
        block_rows = blocks // blocks_across
        return block_rows * grid.block_height, grid.width
    return grid.block_height, blocks * grid.block_width


def plan_windows(
    grid: RasterGrid,
    longitude: np.ndarray,
    latitude: np.ndarray,
    point_index: np.ndarray,
    window_bytes: int = WINDOW_BYTES,
) -> WindowPlan:
    """Group the points ``point_index`` by the block-aligned window that holds them."""
    rows, cols, inside = pixel_indices(
        grid.transform, longitude[point_index], latitude[point_index], grid.height, grid.width
    )
    outside = point_index[~inside]
    point_index, rows, cols = point_index[inside], rows[inside], cols[inside]
    window_rows, window_cols = window_shape(grid, window_bytes)
    across = math.ceil(grid.width / window_cols)
    key = (rows // window_rows) * across + cols // window_cols
    order = np.argsort(key, kind="stable")
    key, point_index, rows, cols = key[order], point_index[order], rows[order], cols[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True]) if len(key) else np.r_[0]
    windows = []
    for k in key[starts[:-1]]:
        row0, col0 = int(k // across) * window_rows, int(k % across) * window_cols
        windows.append(
            Window(
                col0,
                row0,
                min(window_cols, grid.width - col0),
                min(window_rows, grid.height - row0),
            )
        )
    return WindowPlan(grid, point_index, rows, cols, starts, windows, outside)


# --------------------------------------------------------------------------------------
# Reading rasters
# --------------------------------------------------------------------------------------


def read_window(dataset: rasterio.io.DatasetReader, window: Window) -> np.ndarray:
    """One window of band 1 as float32 with NaN where the raster masks the pixel.

    Same values as the reference's ``read(1, masked=True, out_dtype=float32)``: GDAL's
    conversion to float32 and GDAL's own mask (nodata value, mask band or alpha).
    """
    data = dataset.read(1, window=window, out_dtype=np.float32)
    if set(dataset.mask_flag_enums[0]) != {MaskFlags.all_valid}:
        data[dataset.read_masks(1, window=window) == 0] = np.nan
    return data


def gdal_block_cache(workers: int, window_bytes: int) -> rasterio.Env:
    """GDAL's block cache sized to the windows in flight (instead of 5 % of the RAM).

    The mask of a window is computed by GDAL from the window's data: with the blocks still
    cached it costs no second decode, and no more is ever needed since each block is read
    once. (GDAL_CACHEMAX given in bytes: a small number would be taken as bytes, not MB.)
    """
    return rasterio.Env(GDAL_CACHEMAX=max(64 * 2**20, 2 * max(1, workers) * window_bytes))


def _check_crs(path: Path, dataset: rasterio.io.DatasetReader) -> None:
    """Longitude/latitude only make sense on a geographic raster, of one variable."""
    if dataset.count != 1:
        raise InputDataError(
            path,
            f"raster has {dataset.count} bands, a GLC raster holds one variable (1 band)",
            "restore the archive's file, or keep only the variable's band",
        )
    if dataset.crs is None:
        left, bottom, right, top = dataset.bounds
        if not (
            -180.5 <= left < right <= 180.5 and -90.5 <= min(bottom, top) < max(bottom, top) <= 90.5
        ):
            raise InputDataError(
                path,
                f"raster has no CRS and its bounds {tuple(dataset.bounds)} are not degrees",
                "restore the archive's file (EPSG:4326), or reproject this one to EPSG:4326",
            )
        # A re-saved file may lose its CRS; bounds in degrees are read as WGS84.
        log.warning("%s has no CRS; its bounds are in degrees, read as EPSG:4326", path)
    elif not dataset.crs.is_geographic:
        raise InputDataError(
            path,
            f"raster is in a projected CRS ({dataset.crs.to_string()}), "
            "but observations are WGS84 longitude/latitude",
            "use the archive's rasters (EPSG:4326), or reproject this one to EPSG:4326",
        )


def _read_window_of(path: Path, dataset: rasterio.io.DatasetReader, window: Window) -> np.ndarray:
    """``read_window``, with a truncated or corrupt file named as such."""
    try:
        return read_window(dataset, window)
    except rasterio.errors.RasterioError as error:
        raise InputDataError(
            path,
            f"raster data unreadable, truncated or corrupt ({error})",
            "copy the file again from the archive (rasters/<var>/<var>_*.tif)",
        ) from None


def _check_not_all_nodata(path: Path, dataset: rasterio.io.DatasetReader) -> None:
    """Refuse a raster that is nodata everywhere: a damaged file, never a real variable.

    Only called when every point read nodata; a decimated mask is enough to tell an
    empty raster from points that all fall in the sea.
    """
    side = (min(dataset.height, 256), min(dataset.width, 256))
    if not dataset.read_masks(1, out_shape=side).any():
        raise InputDataError(
            path,
            "raster is nodata everywhere",
            "copy the file again from the archive (rasters/<var>/<var>_*.tif)",
        )


def _open(path: Path) -> rasterio.io.DatasetReader:
    if not Path(path).exists():
        raise InputDataError(
            path, "raster is missing", "restore it from the archive (rasters/<var>/<var>_*.tif)"
        )
    try:
        dataset = rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise InputDataError(path, f"unreadable raster ({error})", "restore it") from None
    _check_crs(path, dataset)
    return dataset


def sample_plan(path: Path, plan: WindowPlan) -> np.ndarray:
    """Values of the raster at the planned points, in the order of ``plan.points``: float32,
    NaN where the raster masks the pixel."""
    values = np.empty(len(plan.points), dtype=np.float32)
    with _open(path) as dataset:
        if RasterGrid.of(dataset) != plan.grid:
            raise InputDataError(path, "raster grid changed while reading", "rerun the step")
        for i, (window, _, rows, cols) in enumerate(plan.groups()):
            data = _read_window_of(path, dataset, window)
            values[plan.starts[i] : plan.starts[i + 1]] = data[
                rows - window.row_off, cols - window.col_off
            ]
        if len(values) and np.isnan(values).all():
            _check_not_all_nodata(path, dataset)
    return values


def sample_raster(
    path: Path, longitude: np.ndarray, latitude: np.ndarray, window_bytes: int = WINDOW_BYTES
) -> tuple[np.ndarray, int]:
    """Values of one raster at the points (float32, NaN for masked or outside points) and the
    number of points outside it. The general entry point; the workflow plans once per grid."""
    longitude, latitude = np.asarray(longitude, np.float64), np.asarray(latitude, np.float64)
    with _open(path) as dataset:
        grid = RasterGrid.of(dataset)
    plan = plan_windows(grid, longitude, latitude, np.arange(len(longitude)), window_bytes)
    values = np.full(len(longitude), np.nan, dtype=np.float32)
    with gdal_block_cache(1, window_bytes):
        values[plan.points] = sample_plan(path, plan)
    return values, len(plan.outside)


# --------------------------------------------------------------------------------------
# All 54 rasters
# --------------------------------------------------------------------------------------


@dataclass
class ExtractionReport:
    """What an extraction did, for the log: points per region, outside points, NaNs."""

    n_points: dict[str, int] = field(default_factory=dict)
    outside: dict[str, int] = field(default_factory=dict)
    """Raster file name -> points of its region that fall outside it."""
    nan_counts: dict[str, int] = field(default_factory=dict)
    """Variable -> NaN values in the result (masked pixels and outside points)."""

    def log_summary(self) -> None:
        for region, n in self.n_points.items():
            log.info("%s: %d points", region, n)
        outside = {name: n for name, n in self.outside.items() if n}
        if outside:
            log.warning(
                "points outside their raster (values set to NaN): %s",
                ", ".join(f"{name}: {n}" for name, n in sorted(outside.items())),
            )
        else:
            log.info("every point lies inside its rasters")
        log.info(
            "NaN values per variable: %s",
            ", ".join(f"{name}={n}" for name, n in self.nan_counts.items()),
        )


def _group_rasters_by_grid(
    layout: DatasetLayout, variables: Sequence[str]
) -> dict[tuple[str, RasterGrid], list[str]]:
    """(region, grid) -> variables whose raster has that grid (bioclimatic rasters share one,
    pedologic ones another), so that the points are planned once per grid."""
    groups: dict[tuple[str, RasterGrid], list[str]] = {}
    for region in REGIONS:
        for variable in variables:
            with _open(layout.raster(variable, region)) as dataset:
                groups.setdefault((region, RasterGrid.of(dataset)), []).append(variable)
    return groups


def extract_environment(
    layout: DatasetLayout,
    longitude: np.ndarray,
    latitude: np.ndarray,
    variables: Sequence[str] = ENV_VARIABLES,
    workers: int = 1,
    window_bytes: int = WINDOW_BYTES,
    progress: bool = True,
) -> tuple[np.ndarray, ExtractionReport]:
    """The ``variables`` at every point from the archive's rasters: (n, len(variables))
    float32 with NaN for masked pixels and points outside their raster.

    Each raster is read once, by windows, by ``workers`` threads (GDAL releases the GIL).
    """
    longitude = np.asarray(longitude, dtype=np.float64)
    latitude = np.asarray(latitude, dtype=np.float64)
    n = len(longitude)
    region = region_of_points(longitude)
    region_points = {r: np.flatnonzero(region == r) for r in REGIONS}
    report = ExtractionReport(n_points={r: len(p) for r, p in region_points.items()})
    # Variable-major: each raster fills one contiguous row (the caller gets the transpose).
    by_variable = np.full((len(variables), n), np.nan, dtype=np.float32)
    tasks = []
    for (reg, grid), group in _group_rasters_by_grid(layout, variables).items():
        plan = plan_windows(grid, longitude, latitude, region_points[reg], window_bytes)
        for variable in group:
            tasks.append((variables.index(variable), layout.raster(variable, reg), plan))
            report.outside[layout.raster(variable, reg).name] = len(plan.outside)

    def run(task: tuple[int, Path, WindowPlan]) -> tuple[int, WindowPlan, np.ndarray]:
        column, path, plan = task
        return column, plan, sample_plan(path, plan)

    with (
        gdal_block_cache(workers, window_bytes),
        ThreadPoolExecutor(max(1, workers)) as pool,
        tqdm(total=len(tasks), desc="rasters", unit="raster", disable=not progress) as bar,
    ):
        for column, plan, sampled in pool.map(run, tasks):
            by_variable[column, plan.points] = sampled
            bar.update()
    report.nan_counts = {v: int(np.isnan(by_variable[i]).sum()) for i, v in enumerate(variables)}
    return by_variable.T, report


# --------------------------------------------------------------------------------------
# The env table
# --------------------------------------------------------------------------------------


def observation_points(tables: Sequence[str | Path]) -> pd.DataFrame:
    """observation_id, latitude, longitude of every observation of the given tables, sorted by
    observation_id (the row order of the env table and of the env patch cache)."""
    frames = [
        pd.read_parquet(path, columns=["observation_id", "latitude", "longitude"])
        for path in tables
    ]
    points = pd.concat(frames, ignore_index=True).sort_values("observation_id", kind="stable")
    ids = points["observation_id"].to_numpy()
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        repeated = ids[1:][ids[1:] == ids[:-1]][0]
        raise InputDataError(
            tables[0], f"observation_id {repeated} appears in more than one table", "rerun ingest"
        )
    return points.reset_index(drop=True)


def read_pre_extracted(path: Path, observation_ids: np.ndarray) -> np.ndarray:
    """The archive's ``pre-extracted/environmental_vectors.csv`` rows of the given ids, as an
    (n, 27) float32 array in the order of ``observation_ids``.

    Raises InputDataError naming the file when the header is not observation_id + the 27
    variables, or when an observation has no row.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            path,
            "file is missing",
            "restore pre-extracted/environmental_vectors.csv, or set environment.source: rasters",
        )
    expected = ["observation_id", *ENV_VARIABLES]
    with open(path, encoding="utf-8-sig") as handle:
        header = [c.strip() for c in handle.readline().rstrip("\r\n").split(CSV_SEPARATOR)]
    if header != expected:
        raise InputDataError(
            path,
            f"header is {CSV_SEPARATOR.join(header)[:200]!r}",
            f"the header must be {CSV_SEPARATOR.join(expected)}",
            line=1,
        )
    frame = pd.read_csv(
        path,
        sep=CSV_SEPARATOR,
        encoding="utf-8-sig",
        dtype={"observation_id": np.int64, **dict.fromkeys(ENV_VARIABLES, np.float64)},
        engine="c",
    )
    frame = frame.drop_duplicates("observation_id").set_index("observation_id")
    missing = np.setdiff1d(observation_ids, frame.index.to_numpy())
    if len(missing):
        listed = ", ".join(str(i) for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputDataError(
            path,
            f"{len(missing)} observations have no row: {listed}{more}",
            "use the archive's file unchanged, or set environment.source: rasters",
        )
    return frame.loc[observation_ids, list(ENV_VARIABLES)].to_numpy(dtype=np.float32)


def write_env_table(observation_ids: np.ndarray, values: np.ndarray, path: Path) -> None:
    """Write the env table (observation_id + the 27 float32 columns) atomically."""
    columns = {"observation_id": pa.array(np.asarray(observation_ids, dtype=np.int64))}
    for i, name in enumerate(ENV_VARIABLES):
        columns[name] = pa.array(np.ascontiguousarray(values[:, i], dtype=np.float32))
    table = pa.table(columns, schema=ENV_SCHEMA)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def read_env_table(path: Path) -> pd.DataFrame:
    """The env table as a DataFrame (observation_id + 27 float32 columns)."""
    return pq.read_table(path).to_pandas()


def build_env_table(
    layout: DatasetLayout,
    observation_tables: Sequence[str | Path],
    output: Path,
    source: str = "rasters",
    workers: int = 1,
    window_bytes: int = WINDOW_BYTES,
) -> None:
    """The env table of every observation of ``observation_tables``, from the rasters or from
    the archive's pre-extracted CSV (``source``), written to ``output``."""
    points = observation_points(observation_tables)
    ids = points["observation_id"].to_numpy()
    if source == "rasters":
        values, report = extract_environment(
            layout,
            points["longitude"].to_numpy(),
            points["latitude"].to_numpy(),
            workers=workers,
            window_bytes=window_bytes,
        )
        report.log_summary()
    elif source == "pre_extracted":
        values = read_pre_extracted(layout.environmental_vectors, ids)
        log.info("read %d rows from %s", len(ids), layout.environmental_vectors)
    else:
        raise ValueError(f"unknown environment source {source!r}: rasters or pre_extracted")
    write_env_table(ids, values, output)
    log.info("wrote %d observations x %d variables to %s", len(ids), values.shape[1], output)


# --------------------------------------------------------------------------------------
# Windows of rasters around the points (env patches)
# --------------------------------------------------------------------------------------


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
    with _open(path) as dataset:
        for window, points, rows, cols in plan.groups():
            top, left = window.row_off - before, window.col_off - before
            bottom = window.row_off + window.height + after
            right = window.col_off + window.width + after
            padded = np.full((bottom - top, right - left), np.nan, dtype=np.float32)
            r0, r1 = max(top, 0), min(bottom, dataset.height)
            c0, c1 = max(left, 0), min(right, dataset.width)
            padded[r0 - top : r1 - top, c0 - left : c1 - left] = _read_window_of(
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
    region = region_of_points(longitude)
    region_points = {r: np.flatnonzero(region == r) for r in REGIONS}
    report = ExtractionReport(n_points={r: len(p) for r, p in region_points.items()})
    plans: dict[str, list[tuple[Path, WindowPlan]]] = {v: [] for v in variables}
    for (reg, grid), group in _group_rasters_by_grid(layout, variables).items():
        plan = plan_windows(grid, longitude, latitude, region_points[reg], window_bytes)
        for variable in group:
            plans[variable].append((layout.raster(variable, reg), plan))
            report.outside[layout.raster(variable, reg).name] = len(plan.outside)
    scratch_path = output.with_name(output.name + ".by-variable.npy")
    try:
        scratch = np.lib.format.open_memmap(
            scratch_path, mode="w+", dtype=np.float32, shape=(len(variables), n, size, size)
        )
        _fill_windows(scratch, [plans[v] for v in variables], size, workers, window_bytes, progress)
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
    plans: list[list[tuple[Path, WindowPlan]]],
    size: int,
    workers: int,
    window_bytes: int,
    progress: bool,
) -> None:
    """scratch[v] = the windows of variable v, one variable per task."""

    def run(column: int) -> None:
        slab = scratch[column]  # a view of the scratch file: no n-sized buffer in memory
        slab.fill(np.nan)  # what outside points keep
        for path, plan in plans[column]:
            sample_windows_plan(path, plan, size, slab)

    with (
        gdal_block_cache(workers, window_bytes),
        ThreadPoolExecutor(max(1, workers)) as pool,
        tqdm(total=len(plans), desc="env windows", unit="var", disable=not progress) as bar,
    ):
        for _ in pool.map(run, range(len(plans))):
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


ENV_PATCH_VALUES = "values.npy"
ENV_PATCH_IDS = "observation_id.npy"


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
