"""The torch Dataset/DataLoader over the patch caches, the env table and the env patches."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from geolifeclef.data.dataset import GlcDataset, JoinedDataset, make_loader, to_device
from geolifeclef.data.patch_batches import RawPatches
from geolifeclef.experiments.training import augment_patches
from geolifeclef.layout import ENV_VARIABLES, MODALITIES
from geolifeclef.models.features import ModelBatch
from geolifeclef.patches.cache import build_patch_cache, open_patch_cache
from geolifeclef.patches.device_decode import EncodedJpegs
from geolifeclef.patches.normalize import ndvi
from geolifeclef.patches.store import CacheSpec
from geolifeclef.settings.configs import AugmentConfig
from geolifeclef.settings.inputs import DERIVED_MODALITIES


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


# --------------------------------------------------------------------------------------
# Raw patches shipped, made into model inputs on the device: the same batches as before
# --------------------------------------------------------------------------------------


class _ModelBatchBefore:
    """The patches of ``ModelBatch`` before raw shipping (kept as the reference): made in
    the workers from the dataset's normalised float32 patches, NDVI from them with the
    normalisation undone."""

    def __init__(self, cnn_modalities, stats):
        self.cnn_modalities, self.stats = cnn_modalities, stats

    def __call__(self, batch):
        return {"patches": {m: self._patch(batch, m) for m in self.cnn_modalities}}

    def _patch(self, batch, modality):
        if modality not in DERIVED_MODALITIES:
            return batch[modality]
        if modality == "ndvi":
            return ndvi(self._raw(batch, "rgb")[:, :1], self._raw(batch, "near_ir"))
        return batch["rgb"][:, ("red", "green", "blue").index(modality)][:, None]

    def _raw(self, batch, modality):
        entry = self.stats["patches"][modality]
        mean = torch.tensor(entry["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(entry["std"], dtype=torch.float32).view(1, -1, 1, 1)
        return batch[modality].float() * std.clamp_min(1e-6) + mean


def _augment_before(patches, config, generator):
    """``augment_patches`` before it ran on the device: a rotation per sample."""
    first = next(iter(patches.values()))
    batch = first.shape[0]
    flips = torch.rand(batch, generator=generator) < 0.5 if config.flip else None
    turns = torch.randint(0, 4, (batch,), generator=generator) if config.rotate else None
    scale = 1 + (torch.rand(batch, generator=generator) * 2 - 1) * config.brightness
    out = {}
    for modality, t in patches.items():
        shape = (-1, *([1] * (t.dim() - 1)))
        t = torch.where(flips.view(shape), t.flip(-1), t)
        t = torch.stack([torch.rot90(t[i], int(turns[i]), dims=(-2, -1)) for i in range(batch)])
        if modality in ("rgb", "near_ir") and t.is_floating_point():
            t = t * scale.to(t.dtype).view(shape)
        out[modality] = t
    return out


@pytest.fixture(scope="module")
def encoded_val(tiny_demo, extracted, tmp_path_factory):
    """The val split in an encoded store (JPEG and TIFF bytes as in the archive)."""
    folder = tmp_path_factory.mktemp("encoded") / "val"
    observations = pd.read_parquet(extracted["tables"]["val"])
    build_patch_cache(tiny_demo[0], observations, folder, CacheSpec(32, "resize", store="encoded"))
    return folder


@pytest.mark.parametrize("store", ["decoded", "encoded"])
@pytest.mark.parametrize(
    "modalities",
    [("rgb", "near_ir", "ndvi"), ("altitude",), ("landcover",), ("near_ir", "green", "blue")],
)
@pytest.mark.parametrize("augment", [False, True])
def test_raw_patches_made_on_the_device_equal_the_batches_before(
    extracted, encoded_val, store, modalities, augment
):
    """The same rows through the loader before (normalised float32 from the workers,
    augmented before the transfer) and now (raw from the workers; JPEGs of an encoded
    store still encoded, as on a GPU; normalised, derived and augmented after it)."""
    cache = extracted["patches"] / "val" if store == "decoded" else encoded_val
    stats = json.loads(extracted["stats"].read_text())
    sources = tuple(dict.fromkeys(s for m in modalities for s in DERIVED_MODALITIES.get(m, (m,))))
    before_set = GlcDataset(
        cache, modalities=sources, stats=stats, transform=_ModelBatchBefore(modalities, stats)
    )
    now_set = GlcDataset(
        cache,
        modalities=sources,
        stats=stats,
        transform=ModelBatch((), modalities, stats),
        raw_patches=True,
        jpeg_device="cpu",  # where an encoded store's JPEGs are decoded: after the transfer
    )
    rows = list(range(0, len(now_set), 3))
    before = before_set.__getitems__(rows)["patches"]
    shipped = now_set.__getitems__(rows)["patches"]
    assert isinstance(shipped, RawPatches) and set(shipped.sources) == set(sources)
    for source, data in shipped.sources.items():
        if isinstance(data, EncodedJpegs):
            assert store == "encoded" and data.mean is None  # decoded to uint8, then made
        else:
            assert data.dtype == {"altitude": torch.int16}.get(source, torch.uint8)
    now = to_device({"patches": shipped}, "cpu")["patches"]
    if augment:
        config = AugmentConfig(flip=True, rotate=True, brightness=0.3)
        before = _augment_before(before, config, torch.Generator().manual_seed(7))
        now = augment_patches(now, config, torch.Generator().manual_seed(7))
    assert set(now) == set(modalities)
    for modality in modalities:
        assert now[modality].dtype == before[modality].dtype, modality
        # NDVI before came from reflectances with the normalisation undone (float32
        # rounding); now from the raw integers: equal to float32 precision.
        tolerance = 2e-6 if modality == "ndvi" else 0
        torch.testing.assert_close(now[modality], before[modality], rtol=0, atol=tolerance)
    if augment and "rgb" in modalities:  # the augmentation did something
        assert not torch.equal(now["rgb"], to_device({"patches": shipped}, "cpu")["patches"]["rgb"])


def test_the_loader_ships_raw_patches_and_yields_them_made(extracted):
    """Through worker processes: the batches shipped hold uint8/int16 patches, and the
    loader yields them made into the model's float32 inputs (as ``to_device`` makes them)."""
    stats = json.loads(extracted["stats"].read_text())
    modalities = ("rgb", "ndvi", "altitude", "landcover")
    dataset = GlcDataset(
        extracted["patches"] / "train",
        modalities=("rgb", "near_ir", "altitude", "landcover"),
        stats=stats,
        transform=ModelBatch(("coordinates",), modalities, stats),
        raw_patches=True,
    )
    loader = make_loader(dataset, batch_size=32, shuffle=True, num_workers=2, seed=1)
    shipped = next(iter(loader.loader))["patches"]  # what crosses from the workers
    assert {s: d.dtype for s, d in shipped.sources.items()} == {
        "rgb": torch.uint8,
        "near_ir": torch.uint8,
        "altitude": torch.int16,
        "landcover": torch.uint8,
    }
    made = next(iter(loader))
    assert {m: made["patches"][m].dtype for m in modalities} == {
        "rgb": torch.float32,
        "ndvi": torch.float32,
        "altitude": torch.float32,
        "landcover": torch.uint8,
    }
    position = {int(i): k for k, i in enumerate(dataset.observation_ids)}
    rows = [position[int(i)] for i in made["observation_id"]]
    direct = to_device(dataset.__getitems__(rows), "cpu")
    for modality in modalities:
        assert torch.equal(made["patches"][modality], direct["patches"][modality])
    assert torch.equal(made["tabular"], direct["tabular"])


def test_a_refit_joins_the_raw_patches_of_two_splits_in_batch_order(extracted):
    """train + val read as one (a refit) with the patches shipped raw: the joined batch
    holds the rows the loader asked for, in its order, made as each split makes them."""
    stats = json.loads(extracted["stats"].read_text())
    modalities = ("rgb", "ndvi", "altitude")
    parts = [
        GlcDataset(
            extracted["patches"] / split,
            modalities=("rgb", "near_ir", "altitude"),
            stats=stats,
            transform=ModelBatch(("coordinates",), modalities, stats),
            raw_patches=True,
        )
        for split in ("train", "val")
    ]
    joined = JoinedDataset(parts)
    first = len(parts[0])
    rows = [first + 2, 0, first, 5, 1]  # both parts, interleaved
    batch = joined.__getitems__(rows)
    assert isinstance(batch["patches"], RawPatches)
    made = to_device(batch, "cpu")
    for k, row in enumerate(rows):
        part, index = (parts[0], row) if row < first else (parts[1], row - first)
        alone = to_device(part.__getitems__([index]), "cpu")
        assert torch.equal(made["tabular"][k], alone["tabular"][0])
        for modality in modalities:
            assert torch.equal(made["patches"][modality][k], alone["patches"][modality][0])


def test_a_training_process_that_fails_with_persistent_workers_still_exits(tmp_path):
    """Python's exit terminates the loader workers with SIGTERM and waits for them: a
    worker that ignored it would hold a failed job until SLURM's time limit. It outlives
    the signal by a grace period only (shortened here)."""
    import subprocess
    import sys
    import time

    script = tmp_path / "fail.py"
    script.write_text(
        "import torch\n"
        "from geolifeclef.data import dataset\n"
        "dataset.WORKER_SIGTERM_GRACE_S = 1.0\n"
        "loader = torch.utils.data.DataLoader(list(range(64)), batch_size=8, num_workers=2,\n"
        "    persistent_workers=True, worker_init_fn=dataset.leave_stopping_to_the_main_process)\n"
        "next(iter(loader))\n"
        "raise RuntimeError('the training failed')\n"
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "the training failed" in result.stderr
    assert time.monotonic() - start < 60
