"""Patch statistics (quartiles of each band, altitude summary, land-cover shares): equal
to numpy and torch on random and real patches, the same from either store, resumable by
shard, and read as the forest and the MLP read them."""

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from geolifeclef.patches import stats
from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.files import read_patch
from geolifeclef.patches.stats import (
    compute_patch_stats,
    parts_folder,
    patch_statistics,
    read_patch_stats,
)
from geolifeclef.patches.store import CacheSpec
from geolifeclef.settings.inputs import BANDS, PATCH_STAT_COLUMNS, PATCH_STAT_GROUPS, QUANTILES

FRACTIONS = [q / 100 for q in QUANTILES]


def random_patches(rng, n: int, size: int, kind: str) -> dict[str, np.ndarray]:
    """Raw patches of ``n`` observations: uniform noise, constant patches, or pixels of
    two far-apart values (a quartile between them interpolates)."""

    def draw(dtype, low, high, channels):
        shape = (n, channels, size, size)
        if kind == "constant":
            return np.broadcast_to(rng.integers(low, high, (n, channels, 1, 1)), shape).astype(
                dtype
            )
        if kind == "two values":
            return np.where(rng.random(shape) < 0.5, low, high - 1).astype(dtype)
        return rng.integers(low, high, shape).astype(dtype)

    return {
        "rgb": draw(np.uint8, 0, 256, 3),
        "near_ir": draw(np.uint8, 0, 256, 1),
        "altitude": draw(np.int16, -32768, 32768, 1),
        "landcover": draw(np.uint8, 0, 40, 1),  # codes above 33 count as 33
    }


def numpy_statistics(patches: dict[str, np.ndarray]) -> np.ndarray:
    """The columns as numpy computes them on float64 pixels, rounded to float32."""
    columns = []
    for modality, channel in BANDS.values():
        pixels = patches[modality][:, channel].reshape(len(patches[modality]), -1)
        columns.append(np.quantile(pixels.astype(np.float64), FRACTIONS, axis=1).T)
    altitude = patches["altitude"].reshape(len(patches["altitude"]), -1).astype(np.float64)
    low, high = altitude.min(1), altitude.max(1)
    columns.append(np.stack([altitude.mean(1), altitude.std(1), low, high - low], 1))
    codes = np.minimum(patches["landcover"].reshape(len(altitude), -1), 33)
    columns.append(np.stack([np.bincount(row, minlength=34) / row.size for row in codes]))
    return np.concatenate(columns, axis=1).astype(np.float32)


@pytest.mark.parametrize("kind", ["noise", "constant", "two values"])
@pytest.mark.parametrize(("n", "size"), [(5, 1), (4, 2), (3, 3), (6, 7), (3, 64), (2, 256)])
def test_statistics_equal_numpy_exactly(n, size, kind):
    rng = np.random.default_rng(size * 10 + len(kind))
    patches = random_patches(rng, n, size, kind)
    got = patch_statistics(patches, n)
    assert got.dtype == np.float32 and got.shape == (n, len(PATCH_STAT_COLUMNS))
    np.testing.assert_array_equal(got, numpy_statistics(patches))


@pytest.mark.parametrize("size", [1, 2, 5, 64, 256])
def test_quartiles_equal_torch_quantile_exactly(size):
    """What the statistics were computed with before: torch.quantile on float64."""
    rng = np.random.default_rng(size)
    patches = random_patches(rng, 4, size, "noise")
    patches["rgb"][0] = 17  # a constant patch among noisy ones
    got = patch_statistics(patches, 4)[:, : len(PATCH_STAT_GROUPS["patch_quantiles"])]
    expected = []
    for modality, channel in BANDS.values():
        pixels = torch.from_numpy(patches[modality][:, channel].reshape(4, -1)).double()
        expected.append(torch.quantile(pixels, torch.tensor(FRACTIONS).double(), dim=1).T)
    np.testing.assert_array_equal(got, torch.cat(expected, dim=1).numpy().astype(np.float32))


def test_altitude_of_patches_larger_than_256_px_is_exact_too():
    """Past 65,536 pixels the integer sums would overflow: numpy's float way is taken."""
    rng = np.random.default_rng(0)
    patches = {"altitude": rng.integers(-32768, 32768, (2, 1, 300, 300)).astype(np.int16)}
    got = patch_statistics(patches, 2)
    altitude = patches["altitude"].reshape(2, -1).astype(np.float64)
    expected = [altitude.mean(1), altitude.std(1), altitude.min(1), np.ptp(altitude, 1)]
    start = len(PATCH_STAT_GROUPS["patch_quantiles"])
    np.testing.assert_array_equal(got[:, start : start + 4], np.stack(expected, 1).astype("f4"))
    assert np.isnan(got[:, :start]).all() and np.isnan(got[:, start + 4 :]).all()


def expected_row(layout, observation_id: int) -> dict[str, float]:
    """The statistics of one observation computed by numpy from its four files."""
    rgb = read_patch(layout.patch(observation_id, "rgb"), "rgb").astype(np.float64)
    nir = read_patch(layout.patch(observation_id, "near_ir"), "near_ir").astype(np.float64)
    altitude = read_patch(layout.patch(observation_id, "altitude"), "altitude").astype(float)
    codes = read_patch(layout.patch(observation_id, "landcover"), "landcover")
    row = {}
    for band, pixels in (
        ("red", rgb[..., 0]),
        ("green", rgb[..., 1]),
        ("blue", rgb[..., 2]),
        ("near_ir", nir),
    ):
        for q in (25, 50, 75):
            row[f"{band}_p{q}"] = np.percentile(pixels, q)
    row["altitude_mean"] = altitude.mean()
    row["altitude_std"] = altitude.std()
    row["altitude_min"] = altitude.min()
    row["altitude_range"] = altitude.max() - altitude.min()
    shares = np.bincount(codes.ravel(), minlength=34) / codes.size
    row.update({f"landcover_{code}": shares[code] for code in range(34)})
    return row


def test_statistics_equal_numpy_on_the_real_sample(sample_layout, tmp_path):
    ids = sorted(
        int(p.name.split("_")[0]) for p in sample_layout.root.glob("patches-*/*/*/*_rgb.jpg")
    )
    observations = pd.DataFrame(
        {"observation_id": ids, "latitude": 0.0, "longitude": 0.0, "species_id": 0}
    )
    build_patch_cache(sample_layout, observations, tmp_path / "cache", CacheSpec(256, "crop"))
    table = compute_patch_stats(tmp_path / "cache", tmp_path / "stats.parquet", chunk_rows=4)
    assert list(table.columns) == ["observation_id", *PATCH_STAT_COLUMNS]
    assert table["observation_id"].tolist() == ids
    for observation_id, row in zip(ids, table.itertuples(index=False), strict=True):
        expected = expected_row(sample_layout, observation_id)
        got = row._asdict()
        for column, value in expected.items():
            assert got[column] == pytest.approx(value, rel=1e-6, abs=1e-6), column
    # Real files have varied land cover and relief: the check compared real numbers.
    assert table["altitude_range"].gt(0).any() and table["landcover_0"].lt(1).all()
    rows = read_patch_stats(tmp_path / "stats.parquet", np.array(ids[::-1]))
    np.testing.assert_array_equal(rows, table[list(PATCH_STAT_COLUMNS)].to_numpy()[::-1])
    assert not parts_folder(tmp_path / "stats.parquet").exists()  # the scratch is gone


def test_decoded_and_encoded_stores_give_identical_tables(extracted, tiny_demo, tmp_path):
    """The fixture's decoded 32 px train cache, against an encoded one in 3 shards read
    by 2 worker processes in chunks that do not divide the shards."""
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(extracted["tables"]["train"])
    spec = CacheSpec(32, "resize", store="encoded", shards=3)
    build_patch_cache(layout, observations, tmp_path / "encoded", spec, progress=False)
    output = tmp_path / "stats.parquet"
    table = compute_patch_stats(tmp_path / "encoded", output, workers=2, chunk_rows=7)
    decoded = pd.read_parquet(extracted["patch_stats"]["train"])
    pd.testing.assert_frame_equal(table, decoded)
    pd.testing.assert_frame_equal(pd.read_parquet(output), decoded)
    assert (table.dtypes.iloc[1:] == np.float32).all() and len(table) == len(observations)
    assert table["red_p50"].nunique() > 1 and table["altitude_std"].gt(0).any()


@pytest.fixture()
def sharded_cache(extracted, tiny_demo, tmp_path):
    """The tiny demo's val split in a decoded 32 px cache of 3 shards, and its table
    computed in one go."""
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(extracted["tables"]["val"])
    cache = tmp_path / "cache"
    spec = CacheSpec(32, "resize", shards=3)
    build_patch_cache(layout, observations, cache, spec, progress=False)
    fresh = compute_patch_stats(cache, tmp_path / "fresh.parquet", progress=False)
    return cache, fresh, (layout, observations)


def interrupt_after_first_shard(cache, output, monkeypatch) -> None:
    """Run until the second shard's first chunk, which fails as a kill would stop it."""
    second = pq.read_table(cache / "index.parquet").num_rows // 3  # shard_rows(n, 2, 3)
    real = stats.row_statistics

    def failing(store, start, stop):
        if start >= second:
            raise KeyboardInterrupt
        return real(store, start, stop)

    monkeypatch.setattr(stats, "row_statistics", failing)
    with pytest.raises(KeyboardInterrupt):
        compute_patch_stats(cache, output, progress=False)
    monkeypatch.setattr(stats, "row_statistics", real)


def test_an_interrupted_run_resumes_from_the_shards_it_finished(sharded_cache, monkeypatch):
    cache, fresh, _ = sharded_cache
    output = cache.parent / "stats.parquet"
    interrupt_after_first_shard(cache, output, monkeypatch)
    assert not output.exists()
    parts = sorted(p.name for p in parts_folder(output).iterdir())
    assert parts == ["1-of-3.parquet"]  # written; 2-of-3 and 3-of-3 missing
    computed = []
    real = stats.row_statistics

    def counting(store, start, stop):
        computed.append(start)
        return real(store, start, stop)

    monkeypatch.setattr(stats, "row_statistics", counting)
    table = compute_patch_stats(cache, output, progress=False)
    pd.testing.assert_frame_equal(table, fresh)
    pd.testing.assert_frame_equal(pd.read_parquet(output), fresh)
    second = len(fresh) // 3
    assert computed and min(computed) == second  # the first shard was not recomputed
    assert not parts_folder(output).exists()


@pytest.mark.parametrize("damage", ["truncated", "a value changed"])
def test_a_damaged_part_file_is_recomputed_and_named(sharded_cache, monkeypatch, caplog, damage):
    cache, fresh, _ = sharded_cache
    output = cache.parent / "stats.parquet"
    interrupt_after_first_shard(cache, output, monkeypatch)
    part = parts_folder(output) / "1-of-3.parquet"
    if damage == "truncated":
        part.write_bytes(part.read_bytes()[:-100])
    else:  # a valid Parquet file whose numbers are not those it was written with
        table = pq.read_table(part)
        values = table.to_pandas()
        values["red_p25"] += 1
        changed = pa.Table.from_pandas(values, preserve_index=False)
        pq.write_table(changed.replace_schema_metadata(table.schema.metadata), part)
    with caplog.at_level(logging.WARNING, logger="geolifeclef.patches.stats"):
        table = compute_patch_stats(cache, output, progress=False)
    assert any(str(part) in record.getMessage() for record in caplog.records)
    pd.testing.assert_frame_equal(table, fresh)


def test_the_parts_of_another_build_of_the_cache_are_not_reused(sharded_cache, monkeypatch):
    cache, _, (layout, observations) = sharded_cache
    output = cache.parent / "stats.parquet"
    interrupt_after_first_shard(cache, output, monkeypatch)
    # The same rows at another size: other pixels, other statistics.
    build_patch_cache(layout, observations, cache, CacheSpec(16, "resize", shards=3))
    table = compute_patch_stats(cache, output, progress=False)
    expected = compute_patch_stats(cache, cache.parent / "expected.parquet", progress=False)
    pd.testing.assert_frame_equal(table, expected)
    first = slice(0, len(table) // 3)  # the rows of the part left by the interrupted run
    before = pd.read_parquet(cache.parent / "fresh.parquet")[list(PATCH_STAT_COLUMNS)]
    assert not np.array_equal(table[list(PATCH_STAT_COLUMNS)][first], before[first])


def test_a_cache_without_a_modality_leaves_its_columns_nan(extracted, tmp_path, tiny_demo):
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(extracted["tables"]["val"]).head(10)
    spec = CacheSpec(32, "resize", modalities=("altitude", "landcover"))
    build_patch_cache(layout, observations, tmp_path / "cache", spec)
    table = compute_patch_stats(tmp_path / "cache", tmp_path / "stats.parquet")
    quantiles = [c for c in PATCH_STAT_COLUMNS if c.endswith(("_p25", "_p50", "_p75"))]
    assert table[quantiles].isna().all().all()
    assert table["altitude_mean"].notna().all()
    np.testing.assert_allclose(table.filter(like="landcover_").sum(axis=1), 1.0, rtol=1e-6)


def test_unknown_observations_are_refused(extracted):
    with pytest.raises(KeyError, match="no row for 1 observations"):
        read_patch_stats(extracted["patch_stats"]["val"], np.array([99999999]))
