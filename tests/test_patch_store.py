"""The encoded store, sharded builds, and the Dataset over either store (CPU and the
deferred GPU decoding path, run here with torchvision's CPU decoder)."""

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import copy_patch_folders

from geolifeclef.data.dataset import GlcDataset, JoinedDataset, make_loader
from geolifeclef.data.env_table import build_env_table
from geolifeclef.data.normalization import write_normalization_stats
from geolifeclef.layout import MODALITIES
from geolifeclef.models.features import ModelBatch
from geolifeclef.patches.cache import (
    build_patch_cache,
    build_shard,
    gather_shards,
    open_patch_cache,
    shard_folders,
)
from geolifeclef.patches.device_decode import EncodedJpegs, crop_or_resize
from geolifeclef.patches.geometry import transform_batch
from geolifeclef.patches.store import STORES, CacheSpec, NpyRows


def read_everything(cache_dir) -> dict[str, np.ndarray]:
    cache = open_patch_cache(cache_dir)
    return {m: cache.read(m) for m in cache.modalities}


# --------------------------------------------------------------------------------------
# Rows read, not mapped
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(50, 3, 4, 4), (50,)])
def test_npy_rows_reads_what_numpy_loads(tmp_path, shape):
    """Rows in any order, repeated, in runs and alone; 1-d files by byte ranges; a pickled
    reader opens its own file."""
    array = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    np.save(tmp_path / "a.npy", array)
    rows = NpyRows(tmp_path / "a.npy")
    assert len(rows) == 50 and rows.shape == shape
    for wanted in ([3, 4, 5, 6], [9, 2, 2, 40, 41, 0], [], list(range(50))[::-1]):
        np.testing.assert_array_equal(rows.take(np.array(wanted, dtype=np.int64)), array[wanted])
    again = pickle.loads(pickle.dumps(rows))
    np.testing.assert_array_equal(again.take(np.array([7])), array[[7]])
    if len(shape) == 1:
        starts, ends = np.array([0, 5, 20, 30]), np.array([5, 9, 30, 31])
        parts = rows.byte_ranges(starts, ends)
        for part, start, end in zip(parts, starts, ends, strict=True):
            np.testing.assert_array_equal(part, array[start:end])
    with pytest.raises(IndexError):
        rows.take(np.array([50]))


READ_ALL = textwrap.dedent(
    """
    import sys
    import numpy as np
    from geolifeclef.patches.store import NpyRows
    from geolifeclef.rule_logging import exit_peak

    path, how = sys.argv[1], sys.argv[2]
    array = NpyRows(path) if how == "rows" else np.load(path, mmap_mode="r")
    before = exit_peak().own_mb
    total = 0
    for start in range(0, 4096, 64):
        rows = np.arange(start, start + 64)
        chunk = array.take(rows) if how == "rows" else np.asarray(array[rows])
        total += int(chunk[:, 0].sum())
    print(round(exit_peak().own_mb - before))
    """
)


def test_reading_a_store_through_npy_rows_keeps_its_pages_out_of_the_process(tmp_path):
    """A worker that reads a whole 256 MB file 64 rows at a time holds a chunk, where a
    memory map would leave every page it read resident in it (counted once per worker by
    Snakemake's and SLURM's accounting)."""
    np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.uint8, (4096, 65_536))[:] = 1
    grown = {}
    for how in ("rows", "mmap"):
        done = subprocess.run(
            [sys.executable, "-c", READ_ALL, str(tmp_path / "big.npy"), how],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        grown[how] = int(done.stdout.strip())
    assert grown["mmap"] >= 200, grown  # MB: the file's pages stayed resident
    assert grown["rows"] < 40, grown  # a 4 MB chunk and the allocator's slack


# --------------------------------------------------------------------------------------
# The encoded store
# --------------------------------------------------------------------------------------


def test_encoded_store_keeps_the_files_bytes(tiny_demo, tables, tmp_path):
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(tables["val"])
    out = tmp_path / "val"
    spec = CacheSpec(64, "crop", store="encoded", shards=2)
    build_patch_cache(layout, observations, out, spec, workers=2, chunk_rows=7)
    cache = open_patch_cache(out)
    ids = observations["observation_id"].to_numpy()
    rows = np.array([5, 0, 59, 31, 30, 5])  # both shards, any order, twice the same
    stored = 0
    for modality in MODALITIES:
        for row, blob in zip(rows, cache.blobs(modality, rows), strict=True):
            assert blob.tobytes() == layout.patch(ids[row], modality).read_bytes()
        stored += sum(
            (out / s / f"{modality}.npy").stat().st_size - 128 for s in ("1-of-2", "2-of-2")
        )
    files = sum(layout.patch(i, m).stat().st_size for i in ids for m in MODALITIES)
    assert stored == files  # the files' bytes, nothing more (and headers of 128 bytes)


@pytest.mark.parametrize("store", STORES)
def test_sharded_build_equals_unsharded(tiny_demo, tables, tmp_path, store):
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(tables["train"])
    one, three = tmp_path / "one" / "train", tmp_path / "three" / "train"
    build_patch_cache(layout, observations, one, CacheSpec(32, store=store), chunk_rows=64)
    sharded = CacheSpec(32, store=store, shards=3)
    build_patch_cache(layout, observations, three, sharded, workers=2, chunk_rows=9)
    a, b = open_patch_cache(one), open_patch_cache(three)
    pd.testing.assert_frame_equal(a.index, b.index)
    assert [s["stop"] for s in b.meta["shards"]] == [100, 200, 300]
    assert {k: v for k, v in a.meta.items() if k != "shards"} == {
        k: v for k, v in b.meta.items() if k != "shards"
    }
    for modality, array in read_everything(one).items():
        np.testing.assert_array_equal(array, b.read(modality))
    if store == "encoded":  # the very same bytes, cut in three
        for modality in MODALITIES:
            joined = b"".join(
                (three / s["name"] / f"{modality}.npy").read_bytes()[128:] for s in b.meta["shards"]
            )
            assert joined == (one / "1-of-1" / f"{modality}.npy").read_bytes()[128:]


def test_gather_refuses_shards_of_another_build(tiny_demo, tables, tmp_path):
    layout, _, _ = tiny_demo
    observations = pd.read_parquet(tables["val"])
    out = tmp_path / "patches" / "val"
    spec = CacheSpec(32, store="encoded", shards=2)
    folders = shard_folders(out, 2)
    for i, folder in enumerate(folders, start=1):
        build_shard(layout, observations, folder, spec, (i, 2), progress=False)
    with pytest.raises(ValueError, match="other settings"):
        gather_shards(
            folders, observations, out, CacheSpec(32, store="encoded", modalities=("rgb",))
        )
    with pytest.raises(ValueError, match="other observations"):
        gather_shards(folders, observations.iloc[::-1], out, spec)
    with pytest.raises(ValueError, match="cover rows 0-30"):
        gather_shards(folders[:1], observations, out, spec)
    with pytest.raises(ValueError, match="divides the source side 64"):
        gather_shards(folders, observations, out, CacheSpec(48, "resize", store="encoded"))
    assert not out.exists()
    # The shards are the files' bytes: any size and mode is a gather away.
    for size, mode in ((64, "crop"), (16, "resize")):
        gather_shards(folders, observations, out, CacheSpec(size, mode, store="encoded"))
        build_patch_cache(layout, observations, tmp_path / f"{size}", CacheSpec(size, mode))
        for modality, array in read_everything(tmp_path / f"{size}").items():
            np.testing.assert_array_equal(open_patch_cache(out).read(modality), array)


def test_crop_or_resize_in_torch_equals_patch_geometry():
    batch = np.random.default_rng(0).integers(0, 256, (5, 3, 64, 64), dtype=np.uint8)
    for size, mode in ((16, "resize"), (32, "resize"), (64, "resize"), (40, "crop"), (64, "crop")):
        out = crop_or_resize(torch.from_numpy(batch), size, mode)
        assert out.dtype == torch.uint8
        np.testing.assert_array_equal(out.numpy(), transform_batch(batch, "rgb", size, mode))


# --------------------------------------------------------------------------------------
# The Dataset over either store
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def both_stores(tiny_demo, tables, tmp_path_factory) -> dict:
    """A decoded and an encoded cache of the val split with a filled bad file, at the
    same size and mode, each with its own statistics, and the env table."""
    layout, _, _ = tiny_demo
    base = tmp_path_factory.mktemp("both")
    damaged = copy_patch_folders(layout, base / "glc22")
    observations = pd.read_parquet(tables["val"])
    damaged.patch(int(observations["observation_id"].iloc[4]), "rgb").unlink()
    env = base / "env.parquet"
    build_env_table(layout, list(tables.values()), env)
    caches = {}
    for store in STORES:
        spec = CacheSpec(32, "resize", on_bad_file="fill", store=store, shards=2)
        build_patch_cache(damaged, observations, base / store, spec, chunk_rows=8)
        write_normalization_stats(base / f"{store}.json", tables["val"], env, base / store)
        caches[store] = base / store
    return {"caches": caches, "env": env, "base": base}


def test_normalisation_statistics_are_the_same_from_either_store(both_stores):
    stats = {
        store: json.loads((both_stores["base"] / f"{store}.json").read_text()) for store in STORES
    }
    for store, entry in stats.items():
        assert entry["patches"].pop("store") == store
        assert entry["patches"]["rgb"]["rows"] == 59  # the filled one is left out
    assert stats["decoded"] == stats["encoded"]


@pytest.mark.parametrize("normalize", [True, False])
def test_dataset_gives_the_same_batches_from_either_store(both_stores, normalize):
    datasets = {
        store: GlcDataset(
            cache,
            env_table=both_stores["env"],
            stats=both_stores["base"] / "decoded.json",
            normalize=normalize,
        )
        for store, cache in both_stores["caches"].items()
    }
    rows = [4, 0, 59, 31, 30, 12]
    a, b = (d.__getitems__(rows) for d in datasets.values())
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    assert normalize or not a["rgb"][0].any()  # row 4 had no rgb file: zeros
    loaders = [make_loader(d, 16, shuffle=True, num_workers=2, seed=5) for d in datasets.values()]
    for x, y in zip(*loaders, strict=True):
        for key in x:
            assert torch.equal(x[key], y[key]), key


def test_jpegs_decoded_later_on_a_device_give_the_same_batches(both_stores):
    """The GPU path (``jpeg_device``), run on the CPU: torchvision decodes the batch's
    JPEGs after the workers (bit-exact there), crops/resizes and normalises them."""
    cache = both_stores["caches"]["encoded"]
    common = {
        "env_table": both_stores["env"],
        "stats": both_stores["base"] / "encoded.json",
        "transform": ModelBatch(("env", "coordinates"), ("rgb", "near_ir", "altitude")),
    }
    deferred = GlcDataset(cache, jpeg_device="cpu", **common)
    direct = GlcDataset(cache, **common)
    raw = deferred.__getitems__([4, 5])
    shipped = raw["patches"].sources  # ModelBatch ships the patches to make on the device
    assert isinstance(shipped["rgb"], EncodedJpegs) and len(shipped["rgb"]) == 2
    assert isinstance(shipped["altitude"], torch.Tensor)  # TIFFs: decoded in workers
    loaders = [
        make_loader(d, 16, shuffle=True, num_workers=n, seed=2)
        for d, n in ((deferred, 2), (direct, 0))
    ]
    batches = 0
    for x, y in zip(*loaders, strict=True):
        for key in ("tabular", "label", "observation_id"):
            assert torch.equal(x[key], y[key]), key
        for modality in ("rgb", "near_ir", "altitude"):
            assert x["patches"][modality].dtype == torch.float32
            torch.testing.assert_close(
                x["patches"][modality], y["patches"][modality], rtol=0, atol=0
            )
        batches += 1
    assert batches == 4  # 60 rows, one of them with no rgb file (zeros, as on the CPU)
    # A decoded store has no JPEG bytes: the same device setting changes nothing there.
    decoded = GlcDataset(both_stores["caches"]["decoded"], jpeg_device="cpu", **common)
    assert decoded.jpeg_device is None


def test_a_refit_joins_deferred_jpegs_of_two_splits_in_batch_order(both_stores):
    """train + val read as one (a refit) on the GPU path: the joined JPEG bytes decode to
    the rows the loader asked for, in its order."""
    cache = both_stores["caches"]["encoded"]
    common = {"stats": both_stores["base"] / "encoded.json", "modalities": ("rgb",)}
    deferred = JoinedDataset([GlcDataset(cache, jpeg_device="cpu", **common)] * 2)
    direct = JoinedDataset([GlcDataset(cache, **common)] * 2)
    assert deferred.jpeg_device == "cpu" and direct.jpeg_device is None
    rows = [70, 3, 119, 4, 60, 0]  # both parts, interleaved, the file-less row 4 included
    joined = deferred.__getitems__(rows)["rgb"]
    assert isinstance(joined, EncodedJpegs) and len(joined) == len(rows)
    torch.testing.assert_close(
        joined.decode("cpu"), direct.__getitems__(rows)["rgb"], rtol=0, atol=0
    )
