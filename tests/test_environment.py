"""Environmental extraction: the reference semantics, against rasterio and the demo's CSV."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.transform import from_origin

from geolifeclef.data import env_table, env_windows, rasters
from geolifeclef.errors import InputDataError
from geolifeclef.layout import ENV_VARIABLES, DatasetLayout

# --------------------------------------------------------------------------------------
# Synthetic rasters with every kind of storage and mask the extraction must handle
# --------------------------------------------------------------------------------------

RASTER_KINDS = {
    # name: (dtype, nodata, tiled, height, width, transform)
    "float32_tiled": (
        "float32",
        -3.4028234663852886e38,
        True,
        70,
        90,
        from_origin(-5.5, 51.5, 0.05, 0.05),
    ),
    "int16_striped": ("int16", -32768, False, 37, 53, from_origin(-125.0, 49.5, 1 / 120, 1 / 120)),
    "float64_nan_nodata": (
        "float64",
        float("nan"),
        True,
        40,
        40,
        from_origin(2.0, 45.0, 0.01, 0.01),
    ),
    "uint8_no_nodata_south_up": (
        "uint8",
        None,
        False,
        33,
        47,
        rasterio.Affine(0.1, 0, 3.0, 0, 0.1, 40.0),
    ),
}


def write_raster(path, kind: str, seed: int = 0) -> np.ndarray:
    """A raster of the given kind with distinct values and a few nodata pixels."""
    dtype, nodata, tiled, height, width, transform = RASTER_KINDS[kind]
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 200, (height, width)).astype(dtype)
    if nodata is not None:
        holes = rng.random((height, width)) < 0.1
        holes[0, 0] = holes[-1, -1] = True  # nodata in corners too
        values[holes] = nodata
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": dtype,
        "crs": "EPSG:4326",
        "transform": transform,
        "nodata": nodata,
        "compress": "lzw",
    }
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(values, 1)
    return values


def edge_points(kind: str, n_random: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random points, exact pixel edges and corners, the last row and column, the far edges,
    and points just outside the raster on every side."""
    _, _, _, height, width, transform = RASTER_KINDS[kind]
    rng = np.random.default_rng(seed)
    cols = np.concatenate(
        [
            rng.uniform(-2, width + 2, n_random),  # random, some outside
            rng.integers(0, width + 1, 100).astype(float),  # exact vertical pixel edges
            [0, 0, width - 0.5, width - 1e-9, width, width - 0.5, -1e-9, 0.5, -0.5, width + 0.5],
        ]
    )
    rows = np.concatenate(
        [
            rng.uniform(-2, height + 2, n_random),
            rng.integers(0, height + 1, 100).astype(float),
            [0, height - 0.5, height - 0.5, height - 1e-9, 0.5, height, 0.5, -1e-9, 0.5, 0.5],
        ]
    )
    return to_coordinates(transform, cols, rows)


def to_coordinates(transform, cols, rows) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (fractional) positions -> x, y through the forward transform, as a user's
    coordinates would be computed."""
    cols, rows = np.asarray(cols, np.float64), np.asarray(rows, np.float64)
    t = transform
    return t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f


def rasterio_samples(path, xs, ys) -> np.ndarray:
    """Reference values: rasterio's own ``dataset.sample``, masked -> NaN, as float32."""
    with rasterio.open(path) as dataset:
        samples = list(dataset.sample(zip(xs, ys, strict=True), masked=True))
    return np.array([np.ma.filled(s.astype(np.float64), np.nan)[0] for s in samples], np.float32)


@pytest.mark.parametrize("kind", sorted(RASTER_KINDS))
@pytest.mark.parametrize("window_bytes", [1, 64 * 2**20])
def test_sample_raster_equals_rasterio_sample(tmp_path, kind, window_bytes):
    path = tmp_path / f"{kind}.tif"
    write_raster(path, kind)
    xs, ys = edge_points(kind)
    values, outside = rasters.sample_raster(path, xs, ys, window_bytes=window_bytes)
    expected = rasterio_samples(path, xs, ys)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, expected)
    assert outside > 0  # the test points do include outside points
    if RASTER_KINDS[kind][1] is not None:
        assert np.isnan(values).sum() > outside  # and nodata pixels


def test_sample_raster_equals_reference_extractor_inside(tmp_path):
    """The organizers' way: the whole raster read masked as float32, then dataset.index."""
    path = tmp_path / "r.tif"
    write_raster(path, "int16_striped")
    xs, ys = edge_points("int16_striped")
    with rasterio.open(path) as dataset:
        whole = dataset.read(1, masked=True, out_dtype=np.float32).filled(np.nan)
        expected = []
        for x, y in zip(xs, ys, strict=True):
            row, col = dataset.index(x, y)
            inside = 0 <= row < dataset.height and 0 <= col < dataset.width
            expected.append(whole[row, col] if inside else np.nan)
    values, _ = rasters.sample_raster(path, xs, ys)
    np.testing.assert_array_equal(values, np.array(expected, dtype=np.float32))


def test_points_outside_get_nan_and_never_wrap_around(tmp_path):
    path = tmp_path / "r.tif"
    values = write_raster(path, "float32_tiled")
    _, _, _, height, width, transform = RASTER_KINDS["float32_tiled"]
    # One pixel beyond each edge: a negative index would read the opposite edge.
    cols = np.array([-0.5, width + 0.5, 10.5, 10.5, width - 0.5])
    rows = np.array([10.5, 10.5, -0.5, height + 0.5, 10.5])
    xs, ys = to_coordinates(transform, cols, rows)
    sampled, outside = rasters.sample_raster(path, xs, ys)
    assert outside == 4
    assert np.isnan(sampled[:4]).all()
    assert sampled[4] == values[10, width - 1]


def test_window_plan_reads_block_aligned_windows_within_budget():
    grid = rasters.RasterGrid(from_origin(0, 10, 0.1, 0.1), 1000, 3000, 1, 3000, 4)
    rows, cols = rasters.window_shape(grid, 64 * 2**20)
    assert cols == 3000 and rows * cols * 4 <= 64 * 2**20
    tiled = rasters.RasterGrid(from_origin(0, 10, 0.1, 0.1), 100_000, 200_000, 256, 256, 4)
    rows, cols = rasters.window_shape(tiled, 64 * 2**20)
    assert rows % 256 == 0 and cols % 256 == 0 and rows * cols * 4 <= 64 * 2**20


# --------------------------------------------------------------------------------------
# The 54 rasters of a layout
# --------------------------------------------------------------------------------------


def test_env_table_equals_the_demo_pre_extracted_csv(tiny_demo, tables, tmp_path):
    layout, _, _ = tiny_demo
    output = tmp_path / "env_values.parquet"
    env_table.build_env_table(layout, list(tables.values()), output, workers=2)
    table = pq.read_table(output)
    assert table.schema == env_table.ENV_SCHEMA
    got = table.to_pandas()
    n_observations = sum(len(pd.read_parquet(t)) for t in tables.values())
    assert len(got) == n_observations and got["observation_id"].is_monotonic_increasing
    reference = pd.read_csv(layout.environmental_vectors, sep=";").set_index("observation_id")
    expected = reference.loc[got["observation_id"], list(ENV_VARIABLES)].to_numpy(np.float32)
    values = got[list(ENV_VARIABLES)].to_numpy()
    np.testing.assert_array_equal(values, expected)
    assert np.isnan(values).any()  # coastal points: the NaN semantics were exercised
    # The pre_extracted source gives the same table.
    env_table.build_env_table(
        layout, list(tables.values()), tmp_path / "pre.parquet", "pre_extracted"
    )
    pre = pd.read_parquet(tmp_path / "pre.parquet")
    np.testing.assert_array_equal(pre[list(ENV_VARIABLES)].to_numpy(), values)


def _two_region_layout(tmp_path, fr_value: float, us_value: float) -> DatasetLayout:
    """bio_1 rasters whose FR and USA files both cover longitudes -20..0."""
    layout = DatasetLayout(tmp_path / "glc")
    for region, value in (("fr", fr_value), ("us", us_value)):
        path = layout.raster("bio_1", region)
        path.parent.mkdir(parents=True, exist_ok=True)
        profile = {
            "driver": "GTiff",
            "height": 10,
            "width": 20,
            "count": 1,
            "dtype": "float32",
            "crs": "EPSG:4326",
            "transform": from_origin(-20.0, 50.0, 1.0, 1.0),
        }
        with rasterio.open(path, "w", **profile) as dataset:
            dataset.write(np.full((10, 20), value, np.float32), 1)
    return layout


def test_fr_raster_when_longitude_above_minus_ten_else_usa(tmp_path):
    layout = _two_region_layout(tmp_path, fr_value=1.0, us_value=2.0)
    longitude = np.array([-9.999, -10.0, -10.001, -0.5, -19.5, 5.0])
    latitude = np.full(6, 45.0)
    values, report = env_table.extract_environment(
        layout, longitude, latitude, variables=("bio_1",), progress=False
    )
    np.testing.assert_array_equal(values[:, 0], [1.0, 2.0, 2.0, 1.0, 2.0, np.nan])
    assert report.n_points == {"fr": 3, "us": 3}
    assert report.outside == {"bio_1_FR.tif": 1, "bio_1_USA.tif": 0}


def test_missing_raster_and_projected_raster_are_named(tmp_path):
    layout = _two_region_layout(tmp_path, 1.0, 2.0)
    layout.raster("bio_1", "us").unlink()
    with pytest.raises(InputDataError, match="bio_1_USA.tif: raster is missing"):
        env_table.extract_environment(
            layout, np.array([-50.0]), np.array([45.0]), variables=("bio_1",)
        )
    with rasterio.open(layout.raster("bio_1", "fr"), "r+") as dataset:
        dataset.crs = "EPSG:3857"
    with pytest.raises(InputDataError, match="projected CRS"):
        rasters.sample_raster(layout.raster("bio_1", "fr"), np.array([-5.0]), np.array([45.0]))


def test_pre_extracted_csv_errors_name_the_file(tmp_path):
    path = tmp_path / "environmental_vectors.csv"
    header = ";".join(["observation_id", *ENV_VARIABLES])
    path.write_text(header + "\n10000001;" + ";".join(["1.5"] * 27) + "\n")
    values = env_table.read_pre_extracted(path, np.array([10000001]))
    assert values.dtype == np.float32 and values.shape == (1, 27) and values[0, 0] == 1.5
    with pytest.raises(InputDataError, match="1 observations have no row: 10000002"):
        env_table.read_pre_extracted(path, np.array([10000001, 10000002]))
    path.write_text(header.replace(";", ",") + "\n")
    with pytest.raises(InputDataError, match="line 1"):
        env_table.read_pre_extracted(path, np.array([10000001]))


# --------------------------------------------------------------------------------------
# Windows around the points
# --------------------------------------------------------------------------------------


def reference_windows(path, xs, ys, size: int) -> np.ndarray:
    """The whole raster read masked, NaN-padded by ``size`` on every side, then sliced."""
    with rasterio.open(path) as dataset:
        whole = dataset.read(1, masked=True, out_dtype=np.float32).filled(np.nan)
        padded = np.pad(whole, size, constant_values=np.nan)
        out = np.full((len(xs), size, size), np.nan, np.float32)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            row, col = dataset.index(x, y)
            if 0 <= row < dataset.height and 0 <= col < dataset.width:
                top, left = row - size // 2 + size, col - size // 2 + size
                out[i] = padded[top : top + size, left : left + size]
    return out


@pytest.mark.parametrize("size", [1, 5, 8])
@pytest.mark.parametrize("window_bytes", [1, 64 * 2**20])
def test_env_windows_are_nan_padded_at_raster_edges(tmp_path, size, window_bytes):
    kind = "float32_tiled"
    layout = DatasetLayout(tmp_path / "glc")
    for region in ("fr", "us"):
        write_raster(layout.raster("bio_1", region), kind)
    xs, ys = edge_points(kind, n_random=150)
    output = tmp_path / "windows.npy"
    report = env_windows.extract_env_windows(
        layout,
        xs,
        ys,
        size,
        output,
        variables=("bio_1",),
        window_bytes=window_bytes,
        progress=False,
    )
    windows = np.load(output, mmap_mode="r")
    assert windows.shape == (len(xs), 1, size, size) and windows.dtype == np.float32
    expected = reference_windows(layout.raster("bio_1", "fr"), xs, ys, size)
    np.testing.assert_array_equal(windows[:, 0], expected)
    assert report.outside["bio_1_FR.tif"] > 0
    # The point's own pixel is at index size // 2: the same value as the point extraction.
    values, _ = rasters.sample_raster(layout.raster("bio_1", "fr"), xs, ys)
    np.testing.assert_array_equal(windows[:, 0, size // 2, size // 2], values)
    assert not output.with_name(output.name + ".by-variable.npy").exists()


def test_even_windows_match_the_organizers_slices(tmp_path):
    """For even k the reference cuts raster[row - k/2 : row + k/2, col - k/2 : col + k/2]."""
    layout = DatasetLayout(tmp_path / "glc")
    values = write_raster(layout.raster("bio_1", "fr"), "int16_striped")
    write_raster(layout.raster("bio_1", "us"), "int16_striped")
    _, nodata, _, height, width, transform = RASTER_KINDS["int16_striped"]
    rows, cols = np.array([10, 20, 4]), np.array([10, 30, 48])
    xs, ys = to_coordinates(transform, cols + 0.5, rows + 0.5)
    env_windows.extract_env_windows(
        layout, xs, ys, 8, tmp_path / "w.npy", ("bio_1",), progress=False
    )
    windows = np.load(tmp_path / "w.npy")
    whole = np.where(values == nodata, np.nan, values.astype(np.float32))
    for i, (row, col) in enumerate(zip(rows, cols, strict=True)):
        np.testing.assert_array_equal(windows[i, 0], whole[row - 4 : row + 4, col - 4 : col + 4])


# --------------------------------------------------------------------------------------
# A raster that declares no nodata value (issue 38, case 4)
# --------------------------------------------------------------------------------------

UNDECLARED_FILLS = {
    # case: (variable, its fill value as the re-saved file holds it, as the message says it)
    "int16 -32768 (SoilGrids)": ("bdticm", np.int16(-32768), "-32768"),
    "float32 minimum": ("bio_1", np.float32(-3.4028234663852886e38), "-3.4028235e+38"),
    "WorldClim's -3.4e38": ("bio_1", np.float32(-3.4e38), "-3.4e+38"),
}


@pytest.mark.parametrize("case", list(UNDECLARED_FILLS))
def test_a_raster_without_nodata_value_reads_its_fill_value_as_missing(
    tiny_demo, tables, tmp_path, caplog, case
):
    """A copy re-saved without its nodata tag: its fill value is no value, and the log
    names the raster and the fix (before: bdticm = -32768 in the env table)."""
    from faults_helpers import link_tree, own_copy, rewrite_raster

    variable, fill, said = UNDECLARED_FILLS[case]
    layout, _, _ = tiny_demo
    copy = DatasetLayout(tmp_path / "glc22")
    link_tree(layout.root / "rasters", copy.root / "rasters")
    path = own_copy(copy.raster(variable, "fr"))
    points = env_table.observation_points(list(tables.values()))
    fr = points[points["observation_id"] < 20_000_000].head(3)  # their pixels get the fill
    with rasterio.open(path) as dataset:
        filled = [dataset.index(x, y) for x, y in zip(fr["longitude"], fr["latitude"], strict=True)]

    def undeclare(profile, data):
        data = np.where(data == profile["nodata"], fill, data).astype(data.dtype)
        for row, col in filled:
            data[0, row, col] = fill
        return {**profile, "nodata": None}, data

    rewrite_raster(path, undeclare)
    with caplog.at_level("WARNING"):
        env_table.build_env_table(copy, list(tables.values()), tmp_path / "undeclared.parquet")
    env_table.build_env_table(layout, list(tables.values()), tmp_path / "clean.parquet")
    got = env_table.read_env_table(tmp_path / "undeclared.parquet").set_index("observation_id")
    expected = env_table.read_env_table(tmp_path / "clean.parquet").set_index("observation_id")
    expected.loc[fr["observation_id"], variable] = np.nan
    pd.testing.assert_frame_equal(got, expected)
    assert f"{path} declares no nodata value" in caplog.text
    assert f"rio edit-info --nodata {said} {path}" in caplog.text
    # The env windows read the same rasters the same way.
    env_windows.build_env_patches(copy, list(tables.values()), tmp_path / "windows", size=3)
    windows = np.load(tmp_path / "windows" / env_windows.ENV_PATCH_VALUES)
    assert not (windows == np.float32(fill)).any()
