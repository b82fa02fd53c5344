"""The torch Dataset/DataLoader over the patch caches, the env table and the env patches."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from geolifeclef.data.dataset import GlcDataset, make_loader
from geolifeclef.layout import ENV_VARIABLES, MODALITIES
from geolifeclef.patches.cache import build_patch_cache, open_patch_cache
from geolifeclef.patches.store import CacheSpec


def test_samples_hold_the_cache_rows_env_values_coordinates_and_labels(extracted):
    dataset = GlcDataset(
        extracted["patches"] / "train", env_table=extracted["env"], normalize=False
    )
    cache = open_patch_cache(extracted["patches"] / "train")
    env = pd.read_parquet(extracted["env"]).set_index("observation_id")
    observations = pd.read_parquet(extracted["tables"]["train"])
    assert len(dataset) == len(observations)
    for i in (0, 7, len(dataset) - 1):
        sample = dataset[i]
        assert int(sample["observation_id"]) == observations["observation_id"].iloc[i]
        for modality in MODALITIES:
            np.testing.assert_array_equal(sample[modality].numpy(), cache.read(modality, [i])[0])
        assert sample["rgb"].dtype == torch.uint8 and sample["altitude"].dtype == torch.int16
        expected_env = env.loc[observations["observation_id"].iloc[i], list(ENV_VARIABLES)]
        np.testing.assert_array_equal(sample["env"].numpy(), expected_env.to_numpy(np.float32))
        np.testing.assert_array_equal(
            sample["coords"].numpy(),
            observations[["latitude", "longitude"]].iloc[i].to_numpy(np.float32),
        )
        assert int(sample["label"]) == observations["species_id"].iloc[i]


def test_test_split_has_no_label(extracted):
    dataset = GlcDataset(extracted["patches"] / "test", modalities=("rgb",), normalize=False)
    assert "label" not in dataset[0] and set(dataset[0]) == {"observation_id", "coords", "rgb"}


def test_normalisation_uses_the_train_statistics(extracted):
    dataset = GlcDataset(
        extracted["patches"] / "val",
        modalities=("rgb", "altitude", "landcover"),
        env_table=extracted["env"],
        stats=extracted["stats"],
        env_fill=-7.0,
    )
    raw = GlcDataset(
        extracted["patches"] / "val",
        modalities=("rgb",),
        env_table=extracted["env"],
        normalize=False,
    )
    stats = pd.read_json(extracted["stats"], typ="series")
    batch, raw_batch = dataset.__getitems__([0, 1, 2]), raw.__getitems__([0, 1, 2])
    mean = torch.tensor(stats["patches"]["rgb"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(stats["patches"]["rgb"]["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(batch["rgb"], (raw_batch["rgb"].float() - mean) / std)
    assert batch["landcover"].dtype == torch.uint8  # categories are never normalised
    env_mean = torch.tensor(stats["environment"]["mean"], dtype=torch.float32)
    env_std = torch.tensor(stats["environment"]["std"], dtype=torch.float32)
    expected = (raw_batch["env"] - env_mean) / env_std
    missing = torch.isnan(raw_batch["env"])
    torch.testing.assert_close(batch["env"][~missing], expected[~missing])
    assert (batch["env"][missing] == -7.0).all()
    assert torch.equal(batch["env_missing"], missing)
    with pytest.raises(ValueError, match="statistics"):
        GlcDataset(extracted["patches"] / "val", modalities=("rgb",))


def test_loader_with_workers_yields_every_observation_once(extracted):
    dataset = GlcDataset(
        extracted["patches"] / "train",
        env_table=extracted["env"],
        env_patches=extracted["env_patches"],
        stats=extracted["stats"],
    )
    loader = make_loader(dataset, batch_size=64, shuffle=True, num_workers=2, seed=3)
    batches = list(loader)
    ids = torch.cat([b["observation_id"] for b in batches]).numpy()
    assert sorted(ids) == sorted(dataset.observation_ids)
    assert not np.array_equal(ids, dataset.observation_ids)  # shuffled
    first = batches[0]
    assert first["rgb"].shape == (64, 3, 32, 32) and first["rgb"].dtype == torch.float32
    assert first["env"].shape == (64, 27) and first["env_patches"].shape == (64, 27, 4, 4)
    assert first["label"].dtype == torch.int64 and first["coords"].shape == (64, 2)
    assert not torch.isnan(first["env_patches"]).any()
    # Each batch matches what the dataset gives for its ids, and the same seed, the same order.
    position = {int(i): k for k, i in enumerate(dataset.observation_ids)}
    rows = [position[int(i)] for i in first["observation_id"]]
    torch.testing.assert_close(first["rgb"], dataset.__getitems__(rows)["rgb"])
    again = next(iter(make_loader(dataset, batch_size=64, shuffle=True, num_workers=0, seed=3)))
    assert torch.equal(again["observation_id"], first["observation_id"])


def test_env_patches_are_the_windows_of_the_observation(extracted):
    dataset = GlcDataset(
        extracted["patches"] / "test",
        modalities=(),
        env_patches=extracted["env_patches"],
        env_table=extracted["env"],
        normalize=False,
    )
    windows = np.load(extracted["env_patches"] / "values.npy")
    ids = np.load(extracted["env_patches"] / "observation_id.npy")
    sample = dataset[5]
    row = int(np.searchsorted(ids, int(sample["observation_id"])))
    np.testing.assert_array_equal(sample["env_patches"].numpy(), windows[row])
    np.testing.assert_array_equal(sample["env_patches"][:, 2, 2].numpy(), sample["env"].numpy())


def test_dataset_pickles_without_its_arrays(extracted):
    dataset = GlcDataset(extracted["patches"] / "train", normalize=False)
    dataset[0]  # opens the memory maps
    blob = pickle.dumps(dataset)
    assert len(blob) < 200_000  # the index, not the 300 x 7 x 32 x 32 bytes of patches
    clone = pickle.loads(blob)
    assert torch.equal(clone[3]["rgb"], dataset[3]["rgb"])


def test_env_only_dataset_and_drop_filled(extracted, tiny_demo, tmp_path):
    dataset = GlcDataset(
        observations=extracted["tables"]["val"], env_table=extracted["env"], normalize=False
    )
    assert set(dataset[0]) == {"observation_id", "coords", "label", "env", "env_missing"}
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(extracted["tables"]["val"])
    # Two observations without files: filled and flagged in the cache.
    observations.loc[[1, 4], "observation_id"] = [10000001, 10000002]
    build_patch_cache(layout, observations, tmp_path / "val", CacheSpec(32, on_bad_file="fill"))
    assert open_patch_cache(tmp_path / "val").index["filled"].sum() == 2
    kept = GlcDataset(tmp_path / "val", modalities=("rgb",), normalize=False, drop_filled=True)
    assert len(kept) == len(observations) - 2
    assert 10000001 not in kept.observation_ids
    with pytest.raises(KeyError, match="holds"):
        GlcDataset(tmp_path / "val", modalities=("nir",), normalize=False)
