"""Raster point lookup: values of the GLC rasters at points, read by windows.

Reference semantics (the organizers' extractor, see GLC22-FORMAT.md):

* a point reads the FR raster when its longitude is > -10, the USA raster otherwise;
* it takes the pixel that *contains* the point: ``floor`` of the affine inverse, computed
  here by ``rasterio.transform.rowcol``, the very function behind ``dataset.index``;
* a pixel that the raster masks (nodata, or a mask band) becomes NaN, values are float32
  as the reference reads them (``read(1, masked=True, out_dtype=float32)``).

Where we differ, on purpose: a point outside its raster gets NaN and is counted in the
log (the reference crashes, or silently wraps a negative index to the other edge); and a
pixel holding its dtype's fill value (``fill_limit``: int16's -32768, a float's -3.4e38)
is NaN even where the raster declares no nodata value (a re-saved copy may lose it), where
the reference would return the fill value as a value; the log names such a raster.

How it stays fast and small at full scale: the points are converted to pixel indices in
one vectorised call per raster grid, grouped by block-aligned windows of at most
``window_bytes`` of raster, and only windows that hold points are read, each once. Memory
is one window per worker thread plus the point arrays, whatever the raster size.

The env table (``env_table``), the env windows (``env_windows``) and the demo generator
all look points up through this module.
"""

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.transform import rowcol
from rasterio.windows import Window

from geolifeclef.errors import InputDataError
from geolifeclef.layout import (
    ENV_VARIABLES,
    FR_LONGITUDE_THRESHOLD,
    OBSERVATION_ID_DIGITS,
    RASTER_REGION,
    REGION_DIGIT,
    REGIONS,
    DatasetLayout,
)

log = logging.getLogger(__name__)

WINDOW_BYTES = 64 * 2**20
"""Default memory budget of one raster window (per worker thread)."""
FLOAT_FILL_LIMIT = -1e38
"""A float pixel at or below this is a fill value (WorldClim's -3.4e38, float32's minimum
-3.4028e38), never a climate or soil value."""

# --------------------------------------------------------------------------------------
# Points and pixels
# --------------------------------------------------------------------------------------


def region_of_points(longitude: np.ndarray) -> np.ndarray:
    """Raster region code ('fr' or 'us') of each point, by the reference's longitude rule."""
    return np.where(np.asarray(longitude) > FR_LONGITUDE_THRESHOLD, "fr", "us")


def point_ids(longitude: np.ndarray) -> np.ndarray:
    """Ids for points that are not observations, in the archive's form: the first digit is
    the region whose rasters the point is read from (what the ``country`` feature reads,
    ``region_digits``), then the point's index."""
    digit = np.where(region_of_points(longitude) == "fr", REGION_DIGIT["fr"], REGION_DIGIT["us"])
    place = 10 ** (OBSERVATION_ID_DIGITS - 1)
    return digit.astype(np.int64) * place + np.arange(len(longitude), dtype=np.int64) % place


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


def fill_limit(dtype: str | np.dtype) -> float | None:
    """The fill value of a raster of ``dtype``, as a limit: a pixel at or below it has no
    data, whether or not the raster declares a nodata value. A signed integer's minimum
    (SoilGrids' int16 -32768) or FLOAT_FILL_LIMIT; None for unsigned integers, whose every
    value may be data (0 and 255 are land-cover codes)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "i":
        return float(np.iinfo(dtype).min)
    return FLOAT_FILL_LIMIT if dtype.kind == "f" else None


def declares_no_nodata(dataset: rasterio.io.DatasetReader) -> bool:
    """Whether GDAL masks no pixel of the raster: no nodata value, mask band or alpha."""
    return set(dataset.mask_flag_enums[0]) == {MaskFlags.all_valid}


def read_window(dataset: rasterio.io.DatasetReader, window: Window) -> np.ndarray:
    """One window of band 1 as float32 with NaN where the raster masks the pixel or holds
    its dtype's fill value (``fill_limit``).

    Otherwise the reference's ``read(1, masked=True, out_dtype=float32)``: GDAL's
    conversion to float32 and GDAL's own mask (nodata value, mask band or alpha).
    """
    data = dataset.read(1, window=window, out_dtype=np.float32)
    if not declares_no_nodata(dataset):
        data[dataset.read_masks(1, window=window) == 0] = np.nan
    limit = fill_limit(dataset.dtypes[0])
    if limit is not None:
        data[data <= limit] = np.nan  # NaN compares False: masked pixels stay NaN
    return data


def undeclared_fill_warning(
    path: Path, dataset: rasterio.io.DatasetReader, values: np.ndarray
) -> str | None:
    """What to tell of a raster that declares no nodata value when some of the points
    ``values`` read there have none (its fill value, read as NaN); None otherwise."""
    missing = int(np.isnan(values).sum())
    limit = fill_limit(dataset.dtypes[0])
    if not missing or limit is None or not declares_no_nodata(dataset):
        return None
    # The value to declare, as the file holds it (-3.4e38 and float32's minimum differ).
    side = (min(dataset.height, 256), min(dataset.width, 256))
    overview = dataset.read(1, out_shape=side)
    fills = overview[overview <= limit]
    fill = fills.min() if len(fills) else overview.dtype.type(limit)
    return (
        f"{path} declares no nodata value: {missing:,} of its {len(values):,} points read "
        f"its {fill.dtype} fill value {fill!s}, taken as missing (NaN), not as a value. "
        f"Fix: restore the archive's file, or declare the value: "
        f"rio edit-info --nodata {fill!s} {path}"
    )


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


def read_window_of(path: Path, dataset: rasterio.io.DatasetReader, window: Window) -> np.ndarray:
    """``read_window``, with a truncated or corrupt file named as such."""
    try:
        return read_window(dataset, window)
    except rasterio.errors.RasterioError as error:
        raise InputDataError(
            path,
            f"raster data unreadable, truncated or corrupt ({error})",
            "copy the file again from the archive (rasters/<var>/<var>_*.tif)",
        ) from None


def check_not_all_nodata(path: Path, dataset: rasterio.io.DatasetReader) -> None:
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


def open_raster(path: Path) -> rasterio.io.DatasetReader:
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


def sample_plan(path: Path, plan: WindowPlan) -> tuple[np.ndarray, str | None]:
    """Values of the raster at the planned points, in the order of ``plan.points``: float32,
    NaN where the raster masks the pixel or holds its fill value; and the warning to log
    when it declares no nodata value but points read its fill value (else None)."""
    values = np.empty(len(plan.points), dtype=np.float32)
    with open_raster(path) as dataset:
        if RasterGrid.of(dataset) != plan.grid:
            raise InputDataError(path, "raster grid changed while reading", "rerun the step")
        for i, (window, _, rows, cols) in enumerate(plan.groups()):
            data = read_window_of(path, dataset, window)
            values[plan.starts[i] : plan.starts[i + 1]] = data[
                rows - window.row_off, cols - window.col_off
            ]
        if len(values) and np.isnan(values).all():
            check_not_all_nodata(path, dataset)
        warning = undeclared_fill_warning(path, dataset, values)
    return values, warning


def sample_raster(
    path: Path, longitude: np.ndarray, latitude: np.ndarray, window_bytes: int = WINDOW_BYTES
) -> tuple[np.ndarray, int]:
    """Values of one raster at the points (float32, NaN for masked or outside points) and the
    number of points outside it. The general entry point; the workflow plans once per grid."""
    longitude, latitude = np.asarray(longitude, np.float64), np.asarray(latitude, np.float64)
    with open_raster(path) as dataset:
        grid = RasterGrid.of(dataset)
    plan = plan_windows(grid, longitude, latitude, np.arange(len(longitude)), window_bytes)
    values = np.full(len(longitude), np.nan, dtype=np.float32)
    with gdal_block_cache(1, window_bytes):
        values[plan.points], warning = sample_plan(path, plan)
    if warning:
        log.warning("%s", warning)
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
    nan_shares: dict[str, float] = field(default_factory=dict)
    """Raster file name -> share of its region's points left NaN (masked or outside)."""
    paths: dict[str, Path] = field(default_factory=dict)
    """Raster file name -> its path, for errors."""
    regions: dict[str, str] = field(default_factory=dict)
    """Raster file name -> the region whose points it is read at."""
    fill_warnings: dict[str, str] = field(default_factory=dict)
    """Raster file name -> the warning of a raster that declares no nodata value but whose
    fill value points read (``undeclared_fill_warning``)."""

    def check_nan_shares(self, limit: float = 1.0) -> None:
        """Refuse a raster that leaves ``limit`` or more of its region's points NaN (1: all
        of them, a raster that misses every point), naming it, the share, and a hint when
        its region's points fall outside it (the FR and USA files swapped?)."""
        for name, share in sorted(self.nan_shares.items()):
            if share < limit:
                continue
            region = self.regions[name]
            n, outside = self.n_points[region], self.outside.get(name, 0)
            problem = f"{share:.0%} of the {n:,} {region.upper()} points get no value"
            fix = "check the raster's extent and nodata value"
            if n and outside / n > 0.5:
                (other,) = (r for r in REGIONS if r != region)
                swapped = name.replace(f"_{RASTER_REGION[region]}.", f"_{RASTER_REGION[other]}.")
                problem += f" ({outside:,} fall outside its extent)"
                fix = (
                    f"its extent does not hold the {region.upper()} points: are {name} and "
                    f"{swapped} swapped? Restore both from the archive"
                )
            if limit < 1:
                fix += f" (or raise environment.nan_share_limit, now {limit:g})"
            raise InputDataError(self.paths.get(name, name), problem, fix)

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
        for _, warning in sorted(self.fill_warnings.items()):
            log.warning("%s", warning)


def group_rasters_by_grid(
    layout: DatasetLayout, variables: Sequence[str]
) -> dict[tuple[str, RasterGrid], list[str]]:
    """(region, grid) -> variables whose raster has that grid (bioclimatic rasters share one,
    pedologic ones another), so that the points are planned once per grid."""
    groups: dict[tuple[str, RasterGrid], list[str]] = {}
    for region in REGIONS:
        for variable in variables:
            with open_raster(layout.raster(variable, region)) as dataset:
                groups.setdefault((region, RasterGrid.of(dataset)), []).append(variable)
    return groups


@dataclass(frozen=True)
class RasterTask:
    """One raster to read at the planned points of its region: ``variables[column]``."""

    column: int
    path: Path
    plan: WindowPlan


def plan_rasters(
    layout: DatasetLayout,
    longitude: np.ndarray,
    latitude: np.ndarray,
    variables: Sequence[str] = ENV_VARIABLES,
    window_bytes: int = WINDOW_BYTES,
) -> tuple[list[RasterTask], ExtractionReport]:
    """Every raster of ``variables`` with the window plan of its region's points (planned
    once per grid), and a report of the points per region and outside each raster."""
    region = region_of_points(longitude)
    region_points = {r: np.flatnonzero(region == r) for r in REGIONS}
    report = ExtractionReport(n_points={r: len(p) for r, p in region_points.items()})
    tasks = []
    for (reg, grid), group in group_rasters_by_grid(layout, variables).items():
        plan = plan_windows(grid, longitude, latitude, region_points[reg], window_bytes)
        for variable in group:
            path = layout.raster(variable, reg)
            tasks.append(RasterTask(list(variables).index(variable), path, plan))
            report.outside[path.name] = len(plan.outside)
            report.paths[path.name], report.regions[path.name] = path, reg
    return tasks, report
