"""PyTorch Dataset and DataLoader over the patch caches and the env table.

What the extraction stage leaves for training (see docs/extraction.md)::

    results/patches/{train,val,test}/        patch caches, decoded or encoded store
                                             (geolifeclef.patches.cache)
    results/environment/env_values.parquet   env values per observation (GLC 2022: 27)
    results/environment/env_patches/         k x k env windows (optional)
    results/normalization/stats.json         train mean/std per channel and variable

Typical use::

    from geolifeclef.data.dataset import GlcDataset, make_loader

    train = GlcDataset(
        "results/patches/train",
        modalities=("rgb", "near_ir"),
        env_table="results/environment/env_values.parquet",
        stats="results/normalization/stats.json",
    )
    loader = make_loader(train, batch_size=256, shuffle=True, num_workers=4)
    for batch in loader:
        batch["rgb"]      # (B, 3, S, S) float32, normalised with the train mean/std
        batch["near_ir"]  # (B, 1, S, S) float32
        batch["env"]      # (B, V) float32, standardised, NaN replaced by env_fill
        batch["coords"]   # (B, 2) float32, latitude and longitude in degrees
        batch["label"]    # (B,) int64 species_id (absent for the test split)

A survey table (GLC 2024 on: ``species_ids``, the set of species present, instead of
``species_id``) gives ``label`` as a multi-hot (B, S) bool over ``species_columns`` (the
sorted species ids of the species table: column j is the j-th id); the loss makes it float
on the training device. Bool is a quarter of the bytes of float32 through the workers'
shared memory and to the GPU (2.6 MB a batch of 256 at 10,000 species), and it joins
and shuffles like any other tensor of the batch.

Reading is by memory mapping, a whole batch at a time (``__getitems__``: one sorted
read per modality and shard). From a decoded store a batch costs a few page reads; from an
encoded store, the batch's file bytes are decoded in the worker (geolifeclef.patches.decode),
then cropped or resized to the store's size and mode: the same batches as a decoded store
of that size and mode. With ``jpeg_device`` (an encoded store on a GPU), the JPEG
modalities stay encoded in the workers and ``make_loader`` decodes them on that device in
batches. The stores are opened lazily in each process, so the dataset is safe in
DataLoader worker processes (fork or spawn) and pickles without their arrays.

Training ships less: with ``raw_patches`` the patches leave the workers as read (uint8,
int16 altitude: a quarter of the bytes of float32 through shared memory and to the GPU)
and the transform (``geolifeclef.models.features.ModelBatch``) leaves them to be
normalised, derived and augmented on the training device, after ``make_loader``'s
transfer (``to_device``).
"""

import itertools
import json
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from geolifeclef.data.cubes import open_cubes
from geolifeclef.data.env_windows import ENV_PATCH_IDS, ENV_PATCH_VALUES
from geolifeclef.data.patch_batches import RawPatches
from geolifeclef.errors import MAX_LISTED, InputDataError
from geolifeclef.layout import ALL_PATCH_MODALITIES, CONTINUOUS_MODALITIES
from geolifeclef.patches.cache import open_patch_cache
from geolifeclef.patches.device_decode import EncodedJpegs, join_encoded
from geolifeclef.patches.normalize import normalize_patches
from geolifeclef.patches.stats import read_patch_stats
from geolifeclef.patches.store import NpyRows, PatchStore

Batch = dict[str, torch.Tensor]
SPECIES_SETS_COLUMN = "species_ids"
"""The column of a survey table that holds each row's set of species present."""


class SpeciesSets:
    """Each row's set of species present, as output columns (``species_columns``: column j
    is the j-th of the sorted species ids), stored compressed (offsets into one array of
    columns): what a dataset keeps of a survey table's ``species_ids`` lists."""

    def __init__(self, offsets: np.ndarray, columns: np.ndarray, n_columns: int) -> None:
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.columns = np.asarray(columns, dtype=np.int64)
        self.n_columns = int(n_columns)

    @classmethod
    def from_lists(
        cls,
        lists: pd.Series,
        observation_ids: np.ndarray,
        species_columns: np.ndarray,
        source: str | Path,
    ) -> "SpeciesSets":
        """The sets of a table's ``species_ids`` lists; InputDataError naming ``source``
        and the row for a missing list or a species that is not a column."""
        missing = lists.isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise InputDataError(
                source,
                f"row {row} (observation_id {observation_ids[row]}) has no "
                f"{SPECIES_SETS_COLUMN} list",
                "write an empty list for a survey without species (the test surveys)",
            )
        lengths = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(lists))
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = (
            np.concatenate([np.asarray(v, dtype=np.int64) for v in lists])
            if offsets[-1]
            else np.zeros(0, dtype=np.int64)
        )
        known = np.asarray(species_columns, dtype=np.int64)
        columns = np.searchsorted(known, values).clip(0, max(len(known) - 1, 0))
        unknown = (known[columns] != values) if len(known) else np.ones(len(values), bool)
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            row = int(np.searchsorted(offsets, first, side="right") - 1)
            raise InputDataError(
                source,
                f"row {row} (observation_id {observation_ids[row]}) lists species "
                f"{values[first]}, which is not in the species table ({unknown.sum()} "
                "unknown id(s) in all)",
                "build the species table from the same survey tables (rerun the rule that "
                "writes it)",
            )
        return cls(offsets, columns, len(known))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def columns_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``rows``, column) of every species present in ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, lengths = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        firsts = np.cumsum(lengths) - lengths
        within = np.arange(int(lengths.sum())) - np.repeat(firsts, lengths)
        positions = np.repeat(np.arange(len(rows)), lengths)
        return positions, self.columns[np.repeat(starts, lengths) + within]

    def multi_hot(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_columns) bool: True where the species is present."""
        positions, columns = self.columns_of(rows)
        out = np.zeros((len(rows), self.n_columns), dtype=bool)
        out[positions, columns] = True
        return out


class GlcDataset(Dataset):
    """Observations of one split with their patches, env values, coordinates and labels.

    Parameters
    ----------
    cache_dir:
        A patch cache folder (``results/patches/{split}``); it fixes the observations
        and their order. ``None`` for an env-only dataset: then give ``observations``.
    modalities:
        Patch modalities to return, a subset of the cache's (``rgb``, ``near_ir``,
        ``altitude``, ``landcover``); ``None``: all that the cache holds; ``()``: none.
    env_table:
        ``results/environment/env_values.parquet``: adds ``env`` (its variables: those
        ``stats`` names, else the table's columns; GLC 2022's 27) and ``env_missing``
        (True where the raster had no value) to every sample.
    stats:
        ``results/normalization/stats.json`` (train statistics); required when
        ``normalize`` is True and continuous patches or env values are returned.
    normalize:
        True: ``rgb``, ``near_ir``, ``altitude`` become float32 ``(x - mean) / std`` per
        channel; ``env`` and ``env_patches`` are standardised per variable and their NaNs
        replaced by ``env_fill`` (0 = the train mean). False: raw cache dtypes (uint8,
        int16) and raw env values with NaN.
    env_fill:
        Value of a missing (NaN) env value after standardisation.
    drop_filled:
        Leave out observations whose patch of a chosen modality was missing or unreadable
        and filled with zeros when the cache was built (``patches.on_bad_file: fill``).
    observations:
        An observation table (``results/observations/{split}.parquet``) for an env-only
        dataset (``cache_dir=None``).
    env_patches:
        ``results/environment/env_patches``: adds ``env_patches`` (27, k, k) windows.
    patch_stats:
        ``results/patch_stats/{split}.parquet``: adds ``patch_stats``, the statistics of the
        observation's patches (``geolifeclef.patches.stats.PATCH_STAT_COLUMNS``), standardised
        like ``env`` when ``normalize``.
    transform:
        Called on every batch dict (after normalisation), e.g. for augmentation; must be
        picklable when the loader has workers.
    jpeg_device:
        Only for an encoded store: a device (``"cuda"``, ``"cuda:1"``) on which to decode
        the JPEG modalities (``rgb``, ``near_ir``). Batches then hold ``EncodedJpegs`` for
        them, which ``make_loader`` decodes, crops or resizes and normalises on that
        device. None (default): decoded in the worker processes, as from a decoded store.
    raw_patches:
        True: patches stay in their cache dtypes (and JPEGs decoded on ``jpeg_device``
        stay uint8) even when ``normalize`` (env values and patch statistics are still
        standardised), for a ``transform`` that normalises them on the device
        (``ModelBatch`` with ``stats``).
    species_columns:
        For a survey table (``species_ids`` lists): the sorted species ids of the
        species table, the columns of the multi-hot ``label``.
    cubes:
        A survey edition's packed cube folder of the split (``results/cubes/{split}``,
        ``geolifeclef.data.cubes``): adds each of ``cube_kinds`` (``landsat`` (B, 6, 4, 21),
        ``bioclim`` (B, 4, 19, 12)), float32, standardised per channel with the train
        statistics (``stats["cubes"]``) when ``normalize``, NaN (a cloudy cell, a missing
        cube) then 0, the train mean.

    Samples and batches are dicts of tensors: ``observation_id`` int64, one entry per
    modality ((C, S, S); ``landcover`` always stays uint8 codes, 0 = missing, for an
    embedding or one-hot), ``coords`` (latitude, longitude) float32, ``label`` int64 when
    every observation of the split has a species_id (a survey table: bool (S,) over
    ``species_columns`` when a row of the split lists a species: not the test split),
    and the env entries above.
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        *,
        modalities: Sequence[str] | None = None,
        env_table: str | Path | None = None,
        stats: str | Path | dict | None = None,
        normalize: bool = True,
        env_fill: float = 0.0,
        drop_filled: bool = False,
        observations: str | Path | None = None,
        env_patches: str | Path | None = None,
        transform: Callable[[Batch], Batch] | None = None,
        patch_stats: str | Path | None = None,
        jpeg_device: str | None = None,
        raw_patches: bool = False,
        species_columns: Sequence[int] | np.ndarray | None = None,
        cubes: str | Path | None = None,
        cube_kinds: Sequence[str] = (),
    ) -> None:
        self.jpeg_device = None
        self.raw_patches = raw_patches
        if cache_dir is not None:
            cache = open_patch_cache(cache_dir)
            self.cache_dir: Path | None = Path(cache_dir)
            index = cache.index
            self.modalities = tuple(cache.modalities if modalities is None else modalities)
            for modality in self.modalities:
                cache.check_modality(modality)  # a clear KeyError for a modality not cached
            if cache.kind == "encoded" and jpeg_device is not None:
                self.jpeg_device = str(jpeg_device)
        elif observations is not None:
            self.cache_dir = None
            index = pd.read_parquet(observations)
            index["row"] = np.arange(len(index))
            if modalities:
                raise ValueError("patch modalities need cache_dir (a patch cache folder)")
            self.modalities = ()
        else:
            raise ValueError("give cache_dir (a patch cache) or observations (a table)")
        if drop_filled and self.modalities:
            filled = index[[f"filled_{m}" for m in self.modalities]].to_numpy(bool).any(axis=1)
            index = index[~filled]
        self.rows = index["row"].to_numpy(np.int64)
        self.observation_ids = index["observation_id"].to_numpy(np.int64)
        self.coords = index[["latitude", "longitude"]].to_numpy(np.float32)
        species = index.get("species_id")
        self.labels = (
            species.to_numpy(np.int64)
            if species is not None and len(species) and species.notna().all()
            else None
        )
        self.label_sets = self._species_sets(
            index, species_columns, cache_dir if cache_dir is not None else observations
        )
        self.normalize = normalize
        self.env_fill = float(env_fill)
        self.transform = transform
        self.cube_kinds = tuple(cube_kinds) if cubes is not None else ()
        self.cube_dir = Path(cubes) if cubes is not None else None
        self.cube_rows = self._cube_rows() if cubes is not None else None
        self.stats = self._load_stats(
            stats, env_wanted=env_table or env_patches, patch_stats_wanted=patch_stats
        )
        self.env = self._load_env(env_table) if env_table is not None else None
        self.patch_stats = (
            read_patch_stats(patch_stats, self.observation_ids) if patch_stats is not None else None
        )
        self.env_patch_dir = Path(env_patches) if env_patches is not None else None
        self.env_patch_rows = self._env_patch_rows() if env_patches is not None else None
        self._handles: dict[str, object] | None = None
        self._pid: int | None = None

    # -- setup ---------------------------------------------------------------------------

    def _load_stats(
        self, stats: str | Path | dict | None, env_wanted: object, patch_stats_wanted: object
    ) -> dict | None:
        if isinstance(stats, str | Path):
            stats = json.loads(Path(stats).read_text())
        if not self.normalize:
            return stats
        sections = {"patches"} if set(self.modalities) & set(CONTINUOUS_MODALITIES) else set()
        sections |= {"environment"} if env_wanted else set()
        sections |= {"patch_stats"} if patch_stats_wanted else set()
        sections |= {"cubes"} if self.cube_kinds else set()
        absent = sorted(s for s in sections if stats is None or s not in stats)
        if absent:
            raise ValueError(
                f"normalize=True needs the {' and '.join(absent)} statistics of the train split "
                "(stats=results/normalization/stats.json); or pass normalize=False"
            )
        return stats

    def _species_sets(
        self, index: pd.DataFrame, species_columns, source: str | Path
    ) -> SpeciesSets | None:
        """A survey table's sets of species present, or None: a table of one species per
        observation, or whose rows list none (the test split)."""
        if SPECIES_SETS_COLUMN not in index.columns:
            return None
        lists = index[SPECIES_SETS_COLUMN]
        if not any(len(v) for v in lists.dropna()):
            return None
        if species_columns is None:
            raise ValueError(
                f"{source} lists the species of each survey ({SPECIES_SETS_COLUMN}): give "
                "species_columns (the sorted ids of the species table) to read them"
            )
        return SpeciesSets.from_lists(lists, self.observation_ids, species_columns, source)

    def _load_env(self, env_table: str | Path) -> np.ndarray:
        env = pd.read_parquet(env_table).set_index("observation_id")
        missing = np.setdiff1d(self.observation_ids, env.index.to_numpy())
        if len(missing):
            raise KeyError(
                f"{env_table} has no row for {len(missing)} observations "
                f"(first: {missing[:MAX_LISTED]}); "
                "rebuild it with: snakemake results/environment/env_values.parquet"
            )
        variables = env_variables(env, self.stats)
        absent = [v for v in variables if v not in env.columns]
        if absent:
            raise InputDataError(
                env_table,
                f"no column {absent[:MAX_LISTED]} of the variables that the normalisation "
                "statistics were computed on",
                "recompute them on this table: snakemake results/normalization/stats.json",
            )
        return env.loc[self.observation_ids, variables].to_numpy(np.float32)

    def _cube_rows(self) -> np.ndarray:
        """The row of each observation in the packed cube folder (packed in the order of
        the split's table; a patch cache's order may differ)."""
        ids = open_cubes(self.cube_dir).index["observation_id"].to_numpy(np.int64)
        order = np.argsort(ids, kind="stable")
        found = np.searchsorted(ids[order], self.observation_ids)
        found = np.clip(found, 0, max(0, len(ids) - 1))
        rows = order[found] if len(ids) else found
        absent = (
            self.observation_ids
            if not len(ids)
            else self.observation_ids[ids[rows] != self.observation_ids]
        )
        if len(absent):
            raise InputDataError(
                self.cube_dir,
                f"no cubes of {len(absent)} surveys of this split (first: {absent[:MAX_LISTED]})",
                f"pack them again from this split's table: snakemake {self.cube_dir}",
            )
        return rows

    def _env_patch_rows(self) -> np.ndarray:
        ids = np.load(self.env_patch_dir / ENV_PATCH_IDS)
        rows = np.searchsorted(ids, self.observation_ids)
        rows = np.clip(rows, 0, max(0, len(ids) - 1))
        if len(ids) == 0 or (ids[rows] != self.observation_ids).any():
            raise KeyError(f"{self.env_patch_dir} lacks some observations of this dataset")
        return rows

    def _arrays(self) -> dict[str, object]:
        """The patch store and the env windows' file, opened once per process (a worker
        re-opens its own)."""
        if self._handles is None or self._pid != os.getpid():
            handles = {}
            if self.cache_dir is not None:
                handles["store"] = open_patch_cache(self.cache_dir, index=False)
            if self.env_patch_dir is not None:
                handles["env_patches"] = NpyRows(self.env_patch_dir / ENV_PATCH_VALUES)
            if self.cube_dir is not None:
                packed = open_cubes(self.cube_dir)
                handles.update({kind: getattr(packed, kind) for kind in self.cube_kinds})
            self._handles, self._pid = handles, os.getpid()
        return self._handles

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"], state["_pid"] = None, None  # each process opens its own files
        return state

    # -- access --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Batch:
        """One sample: the batch of one, without the batch dimension."""
        return {key: value[0] for key, value in self.__getitems__([index]).items()}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """A whole batch at once (the DataLoader calls this with a batch of indices)."""
        positions = np.asarray(indices, dtype=np.int64)
        arrays = self._arrays()
        batch: Batch = {
            "observation_id": torch.from_numpy(self.observation_ids[positions]),
            "coords": torch.from_numpy(self.coords[positions]),
        }
        if self.labels is not None:
            batch["label"] = torch.from_numpy(self.labels[positions])
        elif self.label_sets is not None:
            batch["label"] = torch.from_numpy(self.label_sets.multi_hot(positions))
        for modality in self.modalities:
            rows = self.rows[positions]
            if self.jpeg_device is not None and ALL_PATCH_MODALITIES[modality].codec == "jpeg":
                batch[modality] = self._encoded_jpegs(arrays["store"], modality, rows)
                continue
            data = torch.from_numpy(arrays["store"].read(modality, rows))
            if self.normalize and not self.raw_patches and modality in CONTINUOUS_MODALITIES:
                entry = self.stats["patches"][modality]
                data = normalize_patches(data, entry["mean"], entry["std"])
            batch[modality] = data
        if self.env is not None:
            env = torch.from_numpy(self.env[positions])
            batch["env_missing"] = torch.isnan(env)
            batch["env"] = self._normalize_env(env) if self.normalize else env
        if self.patch_stats is not None:
            values = torch.from_numpy(self.patch_stats[positions])
            batch["patch_stats"] = (
                self._standardize(values, "patch_stats") if self.normalize else values
            )
        if self.cube_rows is not None:
            rows = self.cube_rows[positions]
            order = np.argsort(rows, kind="stable")  # one forward pass over the map
            for kind in self.cube_kinds:
                cube = np.empty((len(rows), *arrays[kind].shape[1:]), dtype=np.float32)
                cube[order] = arrays[kind][rows[order]]
                batch[kind] = self._standardized_cube(torch.from_numpy(cube), kind)
        if self.env_patch_rows is not None:
            windows = torch.from_numpy(arrays["env_patches"].take(self.env_patch_rows[positions]))
            batch["env_patches"] = self._normalize_env(windows) if self.normalize else windows
        return self.transform(batch) if self.transform is not None else batch

    def _encoded_jpegs(self, store: PatchStore, modality: str, rows: np.ndarray) -> EncodedJpegs:
        """The JPEG bytes of ``rows``, to decode on ``jpeg_device`` (see make_loader)."""
        blobs = store.blobs(modality, rows)
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum([len(blob) for blob in blobs], out=offsets[1:])
        data = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
        entry = self.stats["patches"][modality] if self.normalize and not self.raw_patches else {}
        return EncodedJpegs(
            torch.from_numpy(data),
            torch.from_numpy(offsets),
            modality,
            store.source_size,
            store.size,
            store.mode,
            tuple(entry["mean"]) if entry else None,
            tuple(entry["std"]) if entry else None,
        )

    def _standardized_cube(self, cube: torch.Tensor, kind: str) -> torch.Tensor:
        """A batch of cubes (B, C, ...) standardised per channel, NaN -> 0 (the train
        mean); as read (NaN kept) when not ``normalize``."""
        if not self.normalize:
            return cube
        # An infinite cell is no value either: NaN, then the train mean as any NaN.
        cube = torch.where(torch.isinf(cube), torch.nan, cube)
        return standardize_columns(cube, self.stats["cubes"][kind])

    def _normalize_env(self, values: torch.Tensor) -> torch.Tensor:
        """Standardise env values (B, V) or windows (B, V, k, k); NaN -> env_fill."""
        return self._standardize(values, "environment")

    def _standardize(self, values: torch.Tensor, section: str) -> torch.Tensor:
        """``(x - mean) / std`` per column (axis 1) with a stats section; NaN -> env_fill."""
        return standardize_columns(values, self.stats[section], self.env_fill)


def env_variables(env: pd.DataFrame, stats: dict | None = None) -> list[str]:
    """The env variables a model reads, in order: those the normalisation statistics were
    computed on (``stats["environment"]["variables"]``), else the env table's value
    columns (GLC 2022's 27, a survey edition's own)."""
    if stats and "environment" in stats:
        return list(stats["environment"]["variables"])
    return [column for column in env.columns if column != "observation_id"]


def standardize_columns(values: torch.Tensor, entry: dict, fill: float = 0.0) -> torch.Tensor:
    """Values (B, C) or windows (B, C, k, k) standardised per column with a section of
    ``stats.json`` (its ``mean`` and ``std``); NaN -> ``fill``. What a model reads, from the
    tables (this Dataset) or from the rasters at any point (``geolifeclef.maps.point_models``)."""
    shape = (1, -1) + (1,) * (values.dim() - 2)
    mean = torch.tensor(entry["mean"], dtype=torch.float32).view(shape)
    std = torch.tensor(entry["std"], dtype=torch.float32).view(shape)
    out = (values - mean) / std.clamp_min(1e-6)
    return torch.nan_to_num(out, nan=fill)


def to_device(batch, device: torch.device | str):
    """``batch`` (dicts of tensors, at any depth) on ``device``: tensors copied there
    (asynchronously from pinned memory), and what waits for the device made there: JPEG
    bytes decoded (``EncodedJpegs``), raw patches made into a model's inputs
    (``RawPatches``): anything with an ``on_device(device)`` method."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if hasattr(batch, "on_device"):
        return batch.on_device(device)
    return batch


class DeviceLoader:
    """Iterates a DataLoader and yields its batches made on ``device`` (``to_device``):
    the one place where a training loop's batches meet the GPU."""

    def __init__(self, loader: DataLoader, device: torch.device | str) -> None:
        self.loader, self.device = loader, torch.device(device)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield to_device(batch, self.device)

    def __getattr__(self, name: str):
        if name == "loader":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)  # sampler, dataset, batch_size, ...


def on_device(loader: DataLoader, device: torch.device | str | None = None) -> DeviceLoader:
    """``loader``'s batches made on ``device`` (default: its GlcDataset's ``jpeg_device``,
    else the CPU)."""
    if device is None:
        device = getattr(loader.dataset, "jpeg_device", None) or "cpu"
    return DeviceLoader(loader, device)


def without_first_batches(loader: DeviceLoader, first: int) -> DeviceLoader:
    """``loader`` from its ``first``-th batch on (the rest of an epoch that a stopped
    training resumes): the same batches as ``loader`` gives from there, in the same order
    (its sampler and generator are used as they are), those before never read."""
    inner = loader.loader
    skipping = DataLoader(
        inner.dataset,
        batch_sampler=_SkipFirst(inner.batch_sampler, first),
        num_workers=inner.num_workers,
        collate_fn=inner.collate_fn,
        pin_memory=inner.pin_memory,
        generator=inner.generator,
        persistent_workers=inner.persistent_workers,
        prefetch_factor=inner.prefetch_factor,
        worker_init_fn=inner.worker_init_fn,
    )
    return DeviceLoader(skipping, loader.device)


class _SkipFirst:
    """A batch sampler without its first ``count`` batches."""

    def __init__(self, batches, count: int) -> None:
        self.batches, self.count = batches, count

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.count, None)

    def __len__(self) -> int:
        return max(len(self.batches) - self.count, 0)


WORKER_SIGTERM_GRACE_S = 30.0
"""How long a loader worker outlives a SIGTERM: SLURM's default KillWait, after which it
kills the job's processes anyway."""


def leave_stopping_to_the_main_process(_worker_id: int) -> None:
    """A loader worker outlives SIGTERM by ``WORKER_SIGTERM_GRACE_S``: the signal that stops
    a SLURM job reaches every process, and a worker that died of it at once would fail the
    training before it can stop at a safe point (the training's process stops its workers;
    a worker left alone exits when it sees that process gone). It does exit then: when the
    training's process ends on an exception, Python's exit terminates the workers with
    SIGTERM and waits for them, and a worker that ignored it would hold the job until its
    time limit."""
    signal.signal(signal.SIGTERM, _exit_after_grace)


def _exit_after_grace(_number, _frame) -> None:
    timer = threading.Timer(WORKER_SIGTERM_GRACE_S, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def keep_batch(batch: Batch) -> Batch:
    """Collate function for batches that ``GlcDataset.__getitems__`` already assembled."""
    return batch


def make_loader(
    dataset: GlcDataset,
    batch_size: int = 256,
    *,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    device: torch.device | str | None = None,
) -> DeviceLoader:
    """A DataLoader that reads whole batches from the caches (see module docstring),
    yielding them on ``device`` (``on_device``: default the dataset's ``jpeg_device``,
    else the CPU).

    ``shuffle`` draws a new order each epoch from a generator seeded with ``seed``
    (reproducible runs); ``num_workers`` processes read and normalise batches in parallel
    (each opens its own memory maps); ``pin_memory`` for asynchronous copies to a GPU.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=keep_batch,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        worker_init_fn=leave_stopping_to_the_main_process,
    )
    return on_device(loader, device)


class JoinedDataset(Dataset):
    """Several ``GlcDataset`` of the same settings read as one (e.g. train + val for a
    refit): rows of the first, then of the second, ...; batches as ``GlcDataset`` gives."""

    def __init__(self, parts: Sequence[GlcDataset]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])
        self.coords = np.concatenate([p.coords for p in self.parts])
        self.observation_ids = np.concatenate([p.observation_ids for p in self.parts])
        self.jpeg_device = self.parts[0].jpeg_device  # same settings: same device

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([p.labels for p in self.parts])

    @labels.setter
    def labels(self, labels: np.ndarray) -> None:
        for i, part in enumerate(self.parts):
            part.labels = np.asarray(labels[self.offsets[i] : self.offsets[i + 1]])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> Batch:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """The batch in the order of ``indices``, each part read in one call."""
        positions = np.asarray(indices, dtype=np.int64)
        part_of = np.searchsorted(self.offsets, positions, side="right") - 1
        pieces, order = [], []
        for i, part in enumerate(self.parts):
            mine = np.flatnonzero(part_of == i)
            if len(mine):
                pieces.append(part.__getitems__(positions[mine] - self.offsets[i]))
                order.append(mine)
        back = np.argsort(np.concatenate(order), kind="stable")
        return _join_batches(pieces, torch.from_numpy(back))


def _join_batches(pieces: list, order: torch.Tensor):
    """Concatenate batches (dicts of tensors, nested dicts allowed), rows put in ``order``."""
    first = pieces[0]
    if isinstance(first, EncodedJpegs):
        return join_encoded(pieces, order)
    if isinstance(first, RawPatches):  # what ModelBatch ships: join the patches it holds
        return replace(first, sources=_join_batches([p.sources for p in pieces], order))
    if isinstance(first, dict):
        return {key: _join_batches([p[key] for p in pieces], order) for key in first}
    return torch.cat(pieces)[order]
