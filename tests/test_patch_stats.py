"""Patch statistics (quartiles of each band, altitude summary, land-cover shares) against
numpy on the real sample's patches, and as the forest and the MLP read them."""

import numpy as np
import pandas as pd
import pytest

from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.files import read_patch
from geolifeclef.patches.stats import compute_patch_stats, read_patch_stats
from geolifeclef.patches.store import CacheSpec
from geolifeclef.settings.inputs import PATCH_STAT_COLUMNS


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
    table = compute_patch_stats(tmp_path / "cache", tmp_path / "stats.parquet", batch_size=4)
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
