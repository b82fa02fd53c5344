"""End to end: the extraction targets on the tiny demo, as a user runs them."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import copy_workdir, merged, run_snakemake, write_config

from geolifeclef.data.dataset import GlcDataset, make_loader
from geolifeclef.layout import ENV_VARIABLES
from geolifeclef.patches.cache import open_patch_cache


@pytest.mark.slow
def test_extraction_target_builds_env_table_caches_and_statistics(demo_workdir, tmp_path):
    # The session's shared folder: `snakemake extraction` on tests/configs/demo.yaml.
    results = demo_workdir / "results"
    # The env table equals the generator's pre-extracted values, for every observation.
    env = pd.read_parquet(results / "environment" / "env_values.parquet")
    assert list(env.columns) == ["observation_id", *ENV_VARIABLES]
    assert env["observation_id"].dtype == np.int64 and (env.dtypes[1:] == np.float32).all()
    splits = {
        s: pd.read_parquet(results / "observations" / f"{s}.parquet")
        for s in ("train", "val", "test")
    }
    assert len(env) == sum(len(t) for t in splits.values())
    csv = demo_workdir / "resources/demo/glc22/pre-extracted/environmental_vectors.csv"
    reference = pd.read_csv(csv, sep=";").set_index("observation_id").loc[env["observation_id"]]
    np.testing.assert_array_equal(
        env[list(ENV_VARIABLES)].to_numpy(), reference.to_numpy(np.float32)
    )
    # A cache per split, 32 px from the tiny demo's 64 px patches, in table order.
    for split, table in splits.items():
        cache = open_patch_cache(results / "patches" / split)
        assert cache.size == 32 and cache.meta["mode"] == "resize"
        np.testing.assert_array_equal(cache.index["observation_id"], table["observation_id"])
        assert cache.read("rgb").shape == (len(table), 3, 32, 32)
    windows = np.load(results / "environment" / "env_patches" / "values.npy", mmap_mode="r")
    assert windows.shape == (len(env), 27, 4, 4)
    stats = json.loads((results / "normalization" / "stats.json").read_text())
    assert len(stats["patches"]["rgb"]["mean"]) == 3 and len(stats["environment"]["std"]) == 27
    for rule in (
        "extract_env",
        "extract_env_patches",
        "cache_patches_train",
        "cache_patch_shard/train_1-of-1",
        "compute_normalization_stats",
    ):
        assert (demo_workdir / "logs" / f"{rule}.log").exists()
    # The DataLoader feeds batches from them.
    dataset = GlcDataset(
        results / "patches" / "train",
        env_table=results / "environment" / "env_values.parquet",
        env_patches=results / "environment" / "env_patches",
        stats=results / "normalization" / "stats.json",
    )
    batch = next(iter(make_loader(dataset, batch_size=32, shuffle=True, num_workers=1)))
    assert batch["rgb"].shape == (32, 3, 32, 32) and batch["env"].shape == (32, 27)
    assert batch["label"].shape == (32,)
    # Nothing left to do; a changed cache size reruns only the caches and the statistics.
    workdir = copy_workdir(demo_workdir, tmp_path / "copy", "demo")
    again = run_snakemake(workdir, "extraction", "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr
    write_config(workdir, {"patches": {"size": 16}})
    changed = run_snakemake(workdir, "extraction", "--dry-run")
    planned = changed.stdout + changed.stderr
    assert "cache_patches" in planned and "compute_normalization_stats" in planned
    assert "rule extract_env:" not in planned and "extract_env_patches" not in planned


@pytest.mark.slow
def test_encoded_store_built_in_shards_and_read_at_any_size(demo_workdir, tmp_path):
    # On the shared folder: only the stores and what reads them are rebuilt.
    encoded = {"patches": {"store": "encoded", "shards": 2}}
    copy_workdir(demo_workdir, tmp_path, encoded)
    result = run_snakemake(tmp_path, "extraction")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "rule extract_env:" not in result.stdout + result.stderr
    results = tmp_path / "results"
    # Two shard jobs per split, gathered into each split's cache.
    shard_logs = sorted(
        p.stem for p in (tmp_path / "logs" / "cache_patch_shard").glob("*-of-2.log")
    )
    assert shard_logs == [f"{s}_{i}-of-2" for s in ("test", "train", "val") for i in (1, 2)]
    for split in ("train", "val", "test"):
        table = pd.read_parquet(results / "observations" / f"{split}.parquet")
        cache = open_patch_cache(results / "patches" / split)
        assert cache.kind == "encoded" and len(cache.meta["shards"]) == 2
        np.testing.assert_array_equal(cache.index["observation_id"], table["observation_id"])
        assert cache.read("rgb", [0, len(table) - 1]).shape == (2, 3, 32, 32)
    stats = json.loads((results / "normalization" / "stats.json").read_text())
    assert stats["patches"]["store"] == "encoded" and stats["patches"]["size"] == 32
    # Another size: the shards hold the files' bytes, so only the gather and the
    # statistics rerun; another shard count rebuilds the shards.
    write_config(tmp_path, merged(encoded, {"patches": {"size": 16}}))
    planned = run_snakemake(tmp_path, "extraction", "--dry-run")
    planned = planned.stdout + planned.stderr
    assert "rule cache_patches:" in planned and "compute_normalization_stats" in planned
    assert "cache_patch_shard" not in planned and "rule extract_env:" not in planned
    write_config(tmp_path, merged(encoded, {"patches": {"shards": 3}}))
    planned = run_snakemake(tmp_path, "extraction", "--dry-run")
    assert "3-of-3" in planned.stdout + planned.stderr
