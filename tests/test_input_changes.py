"""Changed archive files rerun what reads them (issue 38, case 3): a patch file restored or
replaced in place after a cache was built reruns the cache of its split, which rebuilds
only the chunks whose files changed, and leaves the cache built before as it was.

The raster case of the same issue (a raster without nodata value) is in
tests/test_environment.py.
"""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_snakemake
from faults_helpers import damaged_root

from geolifeclef.patches.cache import build_shard, gather_shards, open_patch_cache
from geolifeclef.patches.files import read_patch
from geolifeclef.patches.geometry import transform_patch
from geolifeclef.patches.store import STORES, CacheSpec
from geolifeclef.settings.archive import patch_files_fingerprint

CHUNK_ROWS = 16


def _later(path, seconds: int = 10) -> None:
    """A modification time ``seconds`` after the file's: what a rewrite gets (file systems
    with coarse times could give a quick rewrite the same one)."""
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + seconds * 10**9))


def _expected(layout, observation_id, modality) -> np.ndarray:
    array = read_patch(layout.patch(observation_id, modality), modality)
    return transform_patch(array, modality, 32, "resize")


def _build(layout, observations, shard_dir, store):
    spec = CacheSpec(32, "resize", on_bad_file="fill", store=store)
    return build_shard(layout, observations, shard_dir, spec, chunk_rows=CHUNK_ROWS, progress=False)


def _gather(observations, shard_dir, cache_dir, store):
    spec = CacheSpec(32, "resize", on_bad_file="fill", store=store)
    gather_shards([shard_dir], observations, cache_dir, spec)
    return open_patch_cache(cache_dir)


@pytest.mark.parametrize("store", STORES)
def test_a_restored_patch_file_rebuilds_only_its_chunks(
    demo_patch_copy, tiny_demo, tables, tmp_path, store
):
    """The user's case: a missing file zero-filled by ``on_bad_file: fill``, then restored.
    Snakemake removes the shard folder before it reruns the shard's job."""
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(tables["train"])
    ids = observations["observation_id"].to_numpy()
    row = 2 * CHUNK_ROWS + 3  # in chunk 2
    missing = demo_patch_copy.patch(int(ids[row]), "rgb")
    missing.unlink()
    shard_dir = tmp_path / "shards" / "train" / "1-of-1"
    first = _build(demo_patch_copy, observations, shard_dir, store)
    assert [b.path for b in first.bad_files] == [str(missing)]
    before = _gather(observations, shard_dir, tmp_path / "before", store)
    assert before.index["filled_rgb"].to_numpy().nonzero()[0].tolist() == [row]

    shutil.rmtree(shard_dir)
    shutil.copyfile(layout.patch(int(ids[row]), "rgb"), missing)
    again = _build(demo_patch_copy, observations, shard_dir, store)
    chunks = len(range(0, len(ids), CHUNK_ROWS))
    # The decoded store rewrites the chunk; the encoded one appends from it on.
    assert again.built_chunks == (1 if store == "decoded" else chunks - 2)
    assert again.resumed_chunks == chunks - again.built_chunks and not again.bad_files
    after = _gather(observations, shard_dir, tmp_path / "after", store)
    assert not after.index["filled"].any()
    np.testing.assert_array_equal(after.read("rgb", [row])[0], _expected(layout, ids[row], "rgb"))
    for modality in after.modalities:  # every other row as the files give it
        np.testing.assert_array_equal(
            after.read(modality), np.stack([_expected(layout, i, modality) for i in ids])
        )
    # The cache built before (hard links to the same build's files) is as it was.
    before = open_patch_cache(tmp_path / "before")
    assert before.index["filled_rgb"].to_numpy().nonzero()[0].tolist() == [row]
    assert not before.read("rgb", [row]).any()


@pytest.mark.parametrize("store", STORES)
def test_a_patch_file_replaced_in_place_is_read_again(demo_patch_copy, tables, tmp_path, store):
    """Another image written over a file (same inode): the shard folder is there, and was
    "built already" before this change."""
    observations = pd.read_parquet(tables["val"])
    ids = observations["observation_id"].to_numpy()
    shard_dir = tmp_path / "shards" / "val" / "1-of-1"
    _build(demo_patch_copy, observations, shard_dir, store)
    target, donor = (
        demo_patch_copy.patch(int(ids[-1]), "altitude"),
        demo_patch_copy.patch(int(ids[0]), "altitude"),
    )
    with open(target, "r+b") as handle:  # rewritten in place, as `cp donor target` does
        handle.truncate(0)
        handle.write(donor.read_bytes())
    _later(target)
    report = _build(demo_patch_copy, observations, shard_dir, store)
    assert report.built_chunks == 1  # the last chunk, in either store
    cache = _gather(observations, shard_dir, tmp_path / "cache", store)
    np.testing.assert_array_equal(
        cache.read("altitude", [len(ids) - 1])[0], _expected(demo_patch_copy, ids[0], "altitude")
    )


def test_unchanged_files_rebuild_nothing_and_the_shard_is_linked_again(
    demo_patch_copy, tables, tmp_path
):
    observations = pd.read_parquet(tables["val"])
    shard_dir = tmp_path / "shards" / "val" / "1-of-1"
    _build(demo_patch_copy, observations, shard_dir, "encoded")
    built = {p.name: p.read_bytes() for p in shard_dir.iterdir()}
    shutil.rmtree(shard_dir)  # as Snakemake does when a file of another shard changed
    report = _build(demo_patch_copy, observations, shard_dir, "encoded")
    assert report.built_chunks == 0 and report.resumed_chunks == report.n // CHUNK_ROWS + 1
    assert {p.name: p.read_bytes() for p in shard_dir.iterdir()} == built


def test_the_fingerprint_of_a_split_follows_its_patch_files_only(demo_patch_copy, tables):
    modalities = ("rgb", "near_ir")
    val = pd.read_parquet(tables["val"])["observation_id"].to_numpy()
    train = pd.read_parquet(tables["train"])["observation_id"].to_numpy()
    first = patch_files_fingerprint(demo_patch_copy, tables["val"], modalities)
    assert patch_files_fingerprint(demo_patch_copy, tables["val"], modalities) == first
    # A file of another split, or of a modality the caches do not read: no change.
    _later(demo_patch_copy.patch(int(train[0]), "rgb"))
    _later(demo_patch_copy.patch(int(val[0]), "altitude"))
    assert patch_files_fingerprint(demo_patch_copy, tables["val"], modalities) == first
    # A file of the split rewritten (its time), then gone, then back as it was.
    path = demo_patch_copy.patch(int(val[5]), "near_ir")
    data, status = path.read_bytes(), path.stat()
    _later(path)
    changed = patch_files_fingerprint(demo_patch_copy, tables["val"], modalities)
    path.unlink()
    gone = patch_files_fingerprint(demo_patch_copy, tables["val"], modalities)
    path.write_bytes(data)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert len({first, changed, gone}) == 3
    assert patch_files_fingerprint(demo_patch_copy, tables["val"], modalities) == first
    assert patch_files_fingerprint(demo_patch_copy, tables["val"], ("rgb",)) != first


@pytest.mark.slow
def test_a_restored_patch_file_reruns_the_cache_of_its_split_only(tiny_demo, tables, tmp_path):
    """The issue's case end to end: `on_bad_file: fill` zero-fills a missing val file; the
    user restores it; the next run rebuilds the val cache (was: "Nothing to be done")."""
    layout, _, _ = tiny_demo
    archive = damaged_root(layout, tmp_path / "archive")  # patches linked file by file
    observation_id, other_id = pd.read_parquet(tables["val"])["observation_id"].iloc[[4, 9]]
    missing = archive.patch(observation_id, "near_ir")
    missing.unlink()
    work = tmp_path / "work"
    work.mkdir()
    config = {
        "data": {"root": str(archive.root)},
        "patches": {"enabled": True, "size": 32, "on_bad_file": "fill"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    targets = ("results/patches/val", "results/patches/test")
    first = run_snakemake(work, *targets, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    val = work / "results" / "patches" / "val"
    assert open_patch_cache(val).index["filled_near_ir"].sum() == 1
    steady = run_snakemake(work, "--dry-run", *targets, timeout=300)
    assert "Nothing to be done" in steady.stdout + steady.stderr  # the param is stable

    shutil.copyfile(layout.patch(observation_id, "near_ir"), missing)
    planned = run_snakemake(work, "--dry-run", *targets, timeout=300)
    plan = planned.stdout + planned.stderr
    assert "cache_patch_shard" in plan and "cache_patches" in plan, plan
    assert "split=test" not in plan and "split=val" in plan, plan
    rerun = run_snakemake(work, *targets, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    cache = open_patch_cache(val)
    assert not cache.index["filled"].any()
    row = int(np.flatnonzero(cache.index["observation_id"] == observation_id)[0])
    np.testing.assert_array_equal(
        cache.read("near_ir", [row])[0], _expected(layout, observation_id, "near_ir")
    )
    log = (work / "logs" / "cache_patch_shard" / "val_1-of-1.log").read_text()
    assert f"1 patch files changed since the shard was built from them: {missing}" in log
    assert "1 chunks built" in log
    # Then written over in place (the same inode, as `cp` does): found too.
    with open(missing, "r+b") as handle:
        handle.truncate(0)
        handle.write(layout.patch(other_id, "near_ir").read_bytes())
    _later(missing)
    assert "cache_patch_shard" in run_snakemake(work, "--dry-run", *targets).stdout
