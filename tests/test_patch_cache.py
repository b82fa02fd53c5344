"""Patch caches, both stores: bit-exact round trip, crop/resize, bad-file policies, kill and
resume (sharding, the Dataset over both stores and GPU decoding: tests/test_patch_store.py)."""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geolifeclef.data.normalization import patch_statistics, write_normalization_stats
from geolifeclef.layout import MODALITIES, PATCH_MODALITIES, DatasetLayout
from geolifeclef.patches.cache import build_patch_cache, open_patch_cache
from geolifeclef.patches.files import PatchFileError, read_patch
from geolifeclef.patches.geometry import transform_patch
from geolifeclef.patches.store import STORES, CacheSpec
from geolifeclef.settings.validation import check_geometry

REPO = Path(__file__).resolve().parents[1]


def expected_rows(layout, ids, modality, size, mode) -> np.ndarray:
    """What the cache must hold: each file decoded, then transformed."""
    return np.stack(
        [
            transform_patch(read_patch(layout.patch(i, modality), modality), modality, size, mode)
            for i in ids
        ]
    )


def assert_cache_matches_files(cache_dir, layout, observations, size, mode, store=None) -> None:
    cache = open_patch_cache(cache_dir)
    assert store is None or cache.kind == store
    ids = observations["observation_id"].to_numpy()
    np.testing.assert_array_equal(cache.index["observation_id"], ids)
    np.testing.assert_array_equal(cache.index["row"], np.arange(len(ids)))
    for modality in cache.modalities:
        array = cache.read(modality)
        assert array.dtype == PATCH_MODALITIES[modality].array_dtype
        assert array.shape[2:] == (size, size)
        np.testing.assert_array_equal(array, expected_rows(layout, ids, modality, size, mode))


# --------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_crop_cache_is_bit_exact_with_the_files(tiny_demo, tables, tmp_path, store):
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(tables["val"])
    out = tmp_path / "patches" / "val"
    spec = CacheSpec(size=64, mode="crop", store=store)
    report = build_patch_cache(layout, observations, out, spec, workers=2, chunk_rows=16)
    assert report.source_size == 64 and report.built_chunks == 4 and not report.bad_files
    cache = open_patch_cache(out)
    for modality in MODALITIES:  # the files themselves, HWC -> CHW, nothing else
        decoded = np.stack(
            [
                read_patch(layout.patch(i, modality), modality)
                for i in observations["observation_id"]
            ]
        )
        decoded = decoded if decoded.ndim == 4 else decoded[..., None]
        np.testing.assert_array_equal(cache.read(modality), decoded.transpose(0, 3, 1, 2))
    index = cache.index
    assert not index["filled"].any()
    np.testing.assert_array_equal(index["latitude"], observations["latitude"])
    np.testing.assert_array_equal(index["species_id"], observations["species_id"])
    assert cache.kind == store and list(out.parent.iterdir()) == [out]  # no scratch, no shards


@pytest.mark.parametrize("store", STORES)
def test_real_sample_patches_round_trip(sample_layout, tmp_path, store):
    ids = sorted(
        int(p.name.split("_")[0]) for p in sample_layout.root.glob("patches-*/*/*/*_rgb.jpg")
    )
    assert len(ids) == 9
    observations = pd.DataFrame(
        {"observation_id": ids, "latitude": 0.0, "longitude": 0.0, "species_id": 0}
    )
    crop = CacheSpec(256, "crop", store=store)
    build_patch_cache(sample_layout, observations, tmp_path / "crop", crop)
    assert_cache_matches_files(tmp_path / "crop", sample_layout, observations, 256, "crop", store)
    cache = open_patch_cache(tmp_path / "crop")
    rgb = read_patch(sample_layout.patch(ids[0], "rgb"), "rgb")
    np.testing.assert_array_equal(cache.read("rgb")[0], rgb.transpose(2, 0, 1))
    altitude = read_patch(sample_layout.patch(ids[0], "altitude"), "altitude")
    np.testing.assert_array_equal(cache.read("altitude")[0, 0], altitude)  # big-endian file
    resize = CacheSpec(64, "resize", store=store)
    build_patch_cache(sample_layout, observations, tmp_path / "r64", resize)
    assert_cache_matches_files(tmp_path / "r64", sample_layout, observations, 64, "resize", store)


# --------------------------------------------------------------------------------------
# Crop and resize
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize(
    ("size", "mode"), [(64, "crop"), (30, "crop"), (32, "resize"), (16, "resize")]
)
def test_crop_and_resize_shapes(modality, size, mode):
    rng = np.random.default_rng(0)
    shape = (64, 64, 3) if modality == "rgb" else (64, 64)
    array = rng.integers(0, 30, shape).astype(PATCH_MODALITIES[modality].array_dtype)
    out = transform_patch(array, modality, size, mode)
    channels = 3 if modality == "rgb" else 1
    assert (
        out.shape == (channels, size, size) and out.dtype == PATCH_MODALITIES[modality].array_dtype
    )
    hwc = array if array.ndim == 3 else array[..., None]
    if mode == "crop":
        start = (64 - size) // 2
        np.testing.assert_array_equal(
            out, hwc[start : start + size, start : start + size].transpose(2, 0, 1)
        )


def test_resize_is_block_mean_rounded_half_up_and_majority_for_landcover():
    altitude = np.array([[1, 2, -3, -4], [3, 4, -5, -5], [0, 0, 7, 7], [0, 1, 7, 8]], np.int16)
    out = transform_patch(altitude, "altitude", 2, "resize")[0]
    # means 2.5 -> 3, -4.25 -> -4, 0.25 -> 0, 7.25 -> 7
    np.testing.assert_array_equal(out, [[3, -4], [0, 7]])
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    mean = rgb.reshape(16, 4, 16, 4, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(
        transform_patch(rgb, "rgb", 16, "resize"), np.floor(mean + 0.5).transpose(2, 0, 1)
    )
    landcover = np.array([[5, 5, 1, 2], [5, 9, 2, 1], [3, 3, 0, 0], [4, 4, 0, 7]], np.uint8)
    # majority 5; tie 1/2 -> 1; tie 3/4 -> 3; majority 0
    np.testing.assert_array_equal(
        transform_patch(landcover, "landcover", 2, "resize")[0], [[5, 1], [3, 0]]
    )


def test_impossible_geometry_is_refused():
    with pytest.raises(ValueError, match="larger than the source"):
        check_geometry(64, 128, "crop")
    with pytest.raises(ValueError, match="divides the source side 256"):
        check_geometry(256, 96, "resize")
    check_geometry(256, 96, "crop")
    with pytest.raises(ValueError, match="patches.mode"):
        CacheSpec(mode="zoom")


# --------------------------------------------------------------------------------------
# Missing and corrupt files
# --------------------------------------------------------------------------------------


# The decoded store redoes only the two bad chunks; the encoded one appends in row order,
# so it redoes everything from the first bad chunk on.
@pytest.mark.parametrize(("store", "rebuilt"), [("decoded", 2), ("encoded", 8)])
def test_missing_files_fail_listing_them_then_a_rerun_redoes_their_chunks(
    demo_patch_copy, tables, tmp_path, store, rebuilt
):
    observations = pd.read_parquet(tables["val"])
    ids = observations["observation_id"].to_numpy()
    missing = [demo_patch_copy.patch(ids[3], "rgb"), demo_patch_copy.patch(ids[40], "altitude")]
    saved = [p.read_bytes() for p in missing]
    for path in missing:
        path.unlink()
    out = tmp_path / "patches" / "val"
    spec = CacheSpec(size=32, mode="resize", on_bad_file="fail", store=store)
    with pytest.raises(PatchFileError) as raised:
        build_patch_cache(demo_patch_copy, observations, out, spec, chunk_rows=8)
    message = str(raised.value)
    assert "2 patch files cannot be used" in message
    assert all(str(path) in message for path in missing) and "file is missing" in message
    assert "on_bad_file: fill" in message
    assert not out.exists()
    for path, data in zip(missing, saved, strict=True):
        path.write_bytes(data)
    report = build_patch_cache(demo_patch_copy, observations, out, spec, chunk_rows=8)
    assert report.built_chunks == rebuilt and report.resumed_chunks == 8 - rebuilt
    assert_cache_matches_files(out, demo_patch_copy, observations, 32, "resize", store)


@pytest.mark.parametrize("store", STORES)
def test_fill_policy_zeros_and_flags_corrupt_and_missing_files(
    demo_patch_copy, tables, tmp_path, store
):
    observations = pd.read_parquet(tables["test"])
    ids = observations["observation_id"].to_numpy()
    demo_patch_copy.patch(ids[0], "near_ir").unlink()
    corrupt_jpeg = demo_patch_copy.patch(ids[5], "rgb")
    corrupt_jpeg.write_bytes(corrupt_jpeg.read_bytes()[:200])  # truncated
    demo_patch_copy.patch(ids[7], "landcover").write_bytes(b"not a tiff at all")
    out = tmp_path / "test"
    spec = CacheSpec(64, "crop", on_bad_file="fill", store=store)
    report = build_patch_cache(demo_patch_copy, observations, out, spec)
    assert len(report.bad_files) == 3
    cache = open_patch_cache(out)
    index = cache.index
    assert index["filled"].sum() == 3 and cache.meta["n_filled"] == 3
    assert index["species_id"].dtype == "Int32" and index["species_id"].isna().all()  # test
    bad = {(0, "near_ir"), (5, "rgb"), (7, "landcover")}
    for row, modality in bad:
        assert index.loc[row, f"filled_{modality}"]
        assert not cache.read(modality)[row].any()  # zeros, and flagged
    for modality in MODALITIES:
        good = [r for r in range(len(ids)) if (r, modality) not in bad]
        np.testing.assert_array_equal(
            cache.read(modality)[good],
            expected_rows(demo_patch_copy, ids[good], modality, 64, "crop"),
        )


def test_unreadable_archive_is_refused(tmp_path, tables):
    observations = pd.read_parquet(tables["val"])
    with pytest.raises(Exception, match="check data.root"):
        build_patch_cache(
            DatasetLayout(tmp_path / "nothing"), observations, tmp_path / "x", CacheSpec()
        )


# --------------------------------------------------------------------------------------
# Killed builds
# --------------------------------------------------------------------------------------

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import pandas as pd
    import geolifeclef.patches.decoded, geolifeclef.patches.encoded
    from geolifeclef.layout import DatasetLayout, MODALITIES, PATCH_MODALITIES
    from geolifeclef.patches.store import CacheSpec
    from geolifeclef.patches.cache import build_patch_cache

    root, table, out, kill_at, store, shards = sys.argv[1:]
    original, calls = geolifeclef.patches.store.write_at, [0]

    def write_then_die(path, data, offset, sync=False):
        if path.name.endswith(".offsets.npy"):  # the encoded store's row offsets
            return original(path, data, offset, sync)
        calls[0] += 1
        if calls[0] == int(kill_at):  # half of a chunk's block on disk, then SIGKILL
            data = memoryview(data).cast("B")
            original(path, data[: len(data) // 2], offset)
            os.kill(os.getpid(), signal.SIGKILL)
        original(path, data, offset, sync)

    # Both stores write each chunk's patches with one write per modality (4 per chunk).
    geolifeclef.patches.decoded.write_at = write_then_die
    geolifeclef.patches.encoded.write_at = write_then_die
    spec = CacheSpec(size=32, mode="resize", store=store, shards=int(shards))
    build_patch_cache(DatasetLayout(root), pd.read_parquet(table), out, spec, chunk_rows=16)
    """
)


def kill_build(layout, table, out, kill_at: int, store: str, shards: int = 1) -> None:
    """Build a cache in a child process that is SIGKILLed at its ``kill_at``-th write."""
    argv = [str(layout.root), str(table), str(out), str(kill_at), store, str(shards)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, *argv], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()


@pytest.mark.parametrize("store", STORES)
def test_kill_during_build_then_rerun_gives_a_correct_cache(tiny_demo, tables, tmp_path, store):
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(tables["train"])
    out = tmp_path / "patches" / "train"
    # 4 modalities per chunk: the 11th write is the 3rd modality of the 3rd chunk.
    kill_build(layout, tables["train"], out, 11, store)
    journal = (out.parent / "shards" / "train" / ".1-of-1.build" / "journal.txt").read_text()
    assert [line.split()[0] for line in journal.splitlines()] == ["0", "1"]
    spec = CacheSpec(size=32, mode="resize", store=store)
    report = build_patch_cache(layout, observations, out, spec, workers=2, chunk_rows=16)
    assert report.resumed_chunks == 2 and report.built_chunks == len(observations) // 16 + 1 - 2
    assert_cache_matches_files(out, layout, observations, 32, "resize", store)
    # A clean build gives the very same bytes.
    build_patch_cache(layout, observations, tmp_path / "clean", spec, chunk_rows=16)
    for path in sorted(out.glob("1-of-1/*")):
        assert path.read_bytes() == (tmp_path / "clean" / "1-of-1" / path.name).read_bytes()


@pytest.mark.parametrize("store", STORES)
def test_killed_sharded_build_resumes_per_shard(tiny_demo, tables, tmp_path, store):
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(tables["train"])  # 300 rows: 3 shards of 100
    out = tmp_path / "patches" / "train"
    # 7 chunks of 16 rows per shard: write 4 x 7 + 10 is in the 3rd chunk of shard 2.
    kill_build(layout, tables["train"], out, 38, store, shards=3)
    shards = out.parent / "shards" / "train"
    assert (shards / "1-of-3" / "shard.json").exists() and not (shards / "2-of-3").exists()
    spec = CacheSpec(size=32, mode="resize", store=store, shards=3)
    report = build_patch_cache(layout, observations, out, spec, chunk_rows=16)
    # Shard 1 is kept whole, shard 2 resumes after its two journaled chunks.
    assert report.resumed_chunks == 7 + 2 and report.built_chunks == 5 + 7
    assert_cache_matches_files(out, layout, observations, 32, "resize", store)


@pytest.mark.parametrize("store", STORES)
def test_scratch_of_another_build_is_discarded(tiny_demo, tables, tmp_path, store):
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(tables["val"])
    out = tmp_path / "val"
    kill_build(layout, tables["val"], out, 6, store)
    other = "decoded" if store == "encoded" else "encoded"
    report = build_patch_cache(layout, observations, out, CacheSpec(16, "crop", store=other))
    assert report.resumed_chunks == 0
    assert_cache_matches_files(out, layout, observations, 16, "crop", other)


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_normalization_stats_equal_numpy_over_the_cache(demo_patch_copy, tables, tmp_path, store):
    observations = pd.read_parquet(tables["train"])
    ids = observations["observation_id"].to_numpy()
    demo_patch_copy.patch(ids[2], "rgb").unlink()
    out = tmp_path / "train"
    spec = CacheSpec(32, "resize", on_bad_file="fill", store=store)
    build_patch_cache(demo_patch_copy, observations, out, spec)
    env = pd.DataFrame({"observation_id": ids})
    rng = np.random.default_rng(0)
    from geolifeclef.layout import ENV_VARIABLES

    for i, name in enumerate(ENV_VARIABLES):
        env[name] = rng.normal(i, 1 + i, len(ids)).astype(np.float32)
    env.loc[:4, "bdticm"] = np.nan
    env.to_parquet(tmp_path / "env.parquet")
    stats = write_normalization_stats(
        tmp_path / "stats.json", tables["train"], tmp_path / "env.parquet", out
    )
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    cache = open_patch_cache(out)
    rgb = np.delete(cache.read("rgb"), 2, axis=0).astype(np.float64)  # the filled row is left out
    np.testing.assert_allclose(
        stats["patches"]["rgb"]["mean"], rgb.mean(axis=(0, 2, 3)), rtol=1e-12
    )
    np.testing.assert_allclose(stats["patches"]["rgb"]["std"], rgb.std(axis=(0, 2, 3)), rtol=1e-10)
    altitude = cache.read("altitude").astype(np.float64)
    np.testing.assert_allclose(stats["patches"]["altitude"]["std"], [altitude.std()], rtol=1e-10)
    counts = np.bincount(cache.read("landcover").ravel())
    assert stats["patches"]["landcover"]["counts"] == counts.tolist()
    environment = stats["environment"]
    assert environment["variables"] == list(ENV_VARIABLES)
    np.testing.assert_allclose(
        environment["mean"], np.nanmean(env[list(ENV_VARIABLES)].to_numpy(np.float64), axis=0)
    )
    assert environment["n_nan"][ENV_VARIABLES.index("bdticm")] == 5


def test_normalization_stats_of_a_large_cache_come_from_evenly_spaced_rows(extracted):
    """Above ``max_rows`` usable rows, the statistics are those of ``max_rows`` rows spread
    over the whole cache (not its first rows), and close to the full cache's."""
    cache = open_patch_cache(extracted["patches"] / "train")
    full = patch_statistics(cache)
    subset = patch_statistics(cache, max_rows=100)
    assert full["rgb"]["rows"] == len(cache.index) > 100 == subset["rgb"]["rows"]
    rows = np.linspace(0, len(cache.index) - 1, 100).round().astype(np.int64)
    rgb = cache.read("rgb", rows).astype(np.float64)
    np.testing.assert_allclose(subset["rgb"]["mean"], rgb.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(subset["rgb"]["std"], rgb.std(axis=(0, 2, 3)), rtol=1e-10)
    spread = np.array(full["rgb"]["std"])
    assert np.all(np.abs(np.subtract(subset["rgb"]["mean"], full["rgb"]["mean"])) < 0.1 * spread)
