"""Normalisation statistics of the train split: what the Dataset standardises with.

``results/normalization/stats.json`` holds, per continuous patch modality, the mean and
std of each channel over the pixels of the train cache (either store, at its size and
mode: what the Dataset reads), the share of each land-cover code,
and the mean, std and NaN count of each env variable over the train observations.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.atomic import atomic_path
from geolifeclef.data.cubes import CUBE_KINDS, open_cubes
from geolifeclef.errors import InputDataError, listed
from geolifeclef.layout import ALL_PATCH_MODALITIES, CONTINUOUS_MODALITIES
from geolifeclef.patches.cache import open_patch_cache
from geolifeclef.patches.decoded import CHUNK_BYTES
from geolifeclef.patches.store import PatchStore, patch_shape
from geolifeclef.settings.inputs import PATCH_STAT_COLUMNS

STATS_MAX_ROWS = 20_000
"""Cache rows (evenly spaced) that the per-channel statistics are computed from. The
mean's error is ~1/sqrt(rows) of the spread between patches (0.7 % at 20,000), far
below what standardisation needs, and each row costs a decode of every modality: with
200,000 before, the rehearsal's 158,659 train rows at 256 px took 529 s in one process.
The tiny and small demos (15,000 train rows at most) use every row."""


def _merge_moments(
    count: float, mean: np.ndarray, m2: np.ndarray, other: tuple[float, np.ndarray, np.ndarray]
) -> tuple[float, np.ndarray, np.ndarray]:
    """Chan et al.'s parallel update of (count, mean, sum of squared deviations)."""
    n_b, mean_b, m2_b = other
    total = count + n_b
    delta = mean_b - mean
    return total, mean + delta * n_b / total, m2 + m2_b + delta**2 * count * n_b / total


def patch_statistics(cache: PatchStore, max_rows: int = STATS_MAX_ROWS) -> dict:
    """Per-channel mean and std (over pixels) of the continuous modalities, and the share of
    each land-cover code, from the rows without a filled patch (at most ``max_rows`` evenly
    spaced rows: at full scale a subset estimates them to many digits, at a fraction of IO)."""
    stats: dict = {"size": cache.size, "mode": cache.mode, "store": cache.kind}
    for modality in cache.modalities:
        usable = np.flatnonzero(~cache.index[f"filled_{modality}"].to_numpy(bool))
        if len(usable) > max_rows:
            usable = usable[np.linspace(0, len(usable) - 1, max_rows).round().astype(np.int64)]
        shape = patch_shape(1, modality, cache.size)
        channels, row_bytes = (
            shape[1],
            int(np.prod(shape)) * ALL_PATCH_MODALITIES[modality].array_dtype.itemsize,
        )
        step = max(1, CHUNK_BYTES // (row_bytes * 8))
        if modality not in CONTINUOUS_MODALITIES:
            counts = np.zeros(256, dtype=np.int64)
            for start in range(0, len(usable), step):
                block = cache.read(modality, usable[start : start + step])
                counts += np.bincount(block.ravel(), minlength=256)
            last = int(np.flatnonzero(counts).max()) + 1 if counts.any() else 1
            stats[modality] = {
                "rows": len(usable),
                "counts": counts[:last].tolist(),
                "share": (counts[:last] / max(1, counts.sum())).tolist(),
            }
            continue
        count, mean, m2 = 0.0, np.zeros(channels), np.zeros(channels)
        for start in range(0, len(usable), step):
            block = cache.read(modality, usable[start : start + step]).astype(np.float64)
            pixels = block.transpose(1, 0, 2, 3).reshape(channels, -1)
            block_mean = pixels.mean(axis=1)
            block_m2 = ((pixels - block_mean[:, None]) ** 2).sum(axis=1)
            count, mean, m2 = _merge_moments(
                count, mean, m2, (pixels.shape[1], block_mean, block_m2)
            )
        std = np.sqrt(m2 / count) if count else np.full(channels, np.nan)
        stats[modality] = {"rows": len(usable), "mean": mean.tolist(), "std": std.tolist()}
    return stats


def cube_statistics(folder: Path, chunk_rows: int = 8192) -> dict:
    """Per-channel mean and std of each packed cube of ``folder`` (``geolifeclef.data.cubes``)
    over its finite cells (NaN: a cloudy Landsat cell, a missing cube), read in chunks of
    rows from the memory map."""
    packed = open_cubes(folder)
    stats: dict = {}
    for kind in CUBE_KINDS:
        array = getattr(packed, kind)
        channels = array.shape[1]
        count, mean, m2 = np.zeros(channels), np.zeros(channels), np.zeros(channels)
        for start in range(0, len(array), chunk_rows):
            block = np.asarray(array[start : start + chunk_rows], dtype=np.float64)
            cells = block.swapaxes(0, 1).reshape(channels, -1)
            for c in range(channels):
                finite = cells[c][np.isfinite(cells[c])]
                if len(finite):
                    moments = (len(finite), finite.mean(), ((finite - finite.mean()) ** 2).sum())
                    count[c], mean[c], m2[c] = _merge_moments(count[c], mean[c], m2[c], moments)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, mean, np.nan)  # no value at all: refused by name
            std = np.sqrt(m2 / count)
        stats[kind] = {
            "rows": len(array),
            "mean": mean.tolist(),
            "std": np.where(std > 0, std, 1.0).tolist(),
            "finite_cells": count.astype(np.int64).tolist(),
        }
    return stats


def column_statistics(table: pd.DataFrame, observation_ids: np.ndarray, columns) -> dict:
    """Mean, std and NaN count of each column over the given observations (rows of
    ``table`` by ``observation_id``). A column without spread in train gets std 1, so that
    another value at prediction stays finite after standardisation."""
    rows = table.set_index("observation_id").reindex(observation_ids)
    values = rows[list(columns)].to_numpy(np.float64)
    valid = ~np.isnan(values)
    # A column without a value warns here and is refused by name (``_refuse_undefined``).
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0) if len(values) else np.full(values.shape[1], np.nan)
        std = np.nanstd(values, axis=0) if len(values) else np.full(values.shape[1], np.nan)
    std = np.where(std > 0, std, 1.0)
    return {
        "mean": [float(x) for x in mean],
        "std": [float(x) for x in std],
        "n_nan": [int(x) for x in (~valid).sum(axis=0)],
        "rows": len(values),
    }


def env_statistics(env: pd.DataFrame, observation_ids: np.ndarray) -> dict:
    """Mean, std and NaN count of each env variable (each column of the env table but
    ``observation_id``, in its order: GLC 2022's 27, a survey edition's own) over the given
    observations; ``variables`` names them, and the models read those columns."""
    variables = [column for column in env.columns if column != "observation_id"]
    return {"variables": variables, **column_statistics(env, observation_ids, variables)}


def write_normalization_stats(
    output: Path,
    train_table: Path,
    env_table: Path | None = None,
    train_cache: Path | None = None,
    train_patch_stats: Path | None = None,
    train_cubes: Path | None = None,
) -> dict:
    """Normalisation statistics of the train split, as JSON at ``output``:

    ``{"patches": {modality: {"mean": [...], "std": [...]} | {"counts", "share"}},
    "environment": {"variables", "mean", "std", "n_nan"}, "patch_stats": {"columns",
    "mean", "std", "n_nan"}, "cubes": {cube: {"mean": [...], "std": [...]}}}`` (a
    section is absent when its input is not given).
    """
    stats: dict = {"split": "train"}
    ids = pd.read_parquet(train_table, columns=["observation_id"])["observation_id"].to_numpy()
    if train_cache is not None:
        stats["patches"] = patch_statistics(open_patch_cache(train_cache))
    if env_table is not None:
        stats["environment"] = env_statistics(pd.read_parquet(env_table), ids)
    if train_patch_stats is not None:
        stats["patch_stats"] = {
            "columns": list(PATCH_STAT_COLUMNS),
            **column_statistics(pd.read_parquet(train_patch_stats), ids, PATCH_STAT_COLUMNS),
        }
    if train_cubes is not None:
        stats["cubes"] = cube_statistics(Path(train_cubes))
    _refuse_undefined(stats, {"environment": env_table, "patch_stats": train_patch_stats,
                              "patches": train_cache, "cubes": train_cubes})  # fmt: skip
    with atomic_path(output) as temporary:
        temporary.write_text(json.dumps(stats, indent=1) + "\n")
    return stats


def _refuse_undefined(stats: dict, sources: dict[str, Path | None]) -> None:
    """A NaN mean or std (a column with no train value at all, a modality with no train
    patch) would standardise every value to NaN downstream: an error naming its source."""
    for section, source in sources.items():
        found = stats.get(section)
        if not found:
            continue
        named = found.get("variables") or found.get("columns")
        if named:
            entries = [(named, found)]
        else:  # patches, cubes: {name: {"mean": [a value per channel], ...}}
            entries = [
                ([f"{modality} channel {c}" for c in range(len(entry.get("mean", [])))], entry)
                for modality, entry in found.items()
                if isinstance(entry, dict)
            ]
        for names, entry in entries:
            for key in ("mean", "std"):
                values = np.asarray(entry.get(key, []), dtype=np.float64)
                if np.isnan(values).any():
                    bad = [names[i] for i in np.flatnonzero(np.isnan(values))]
                    raise InputDataError(
                        source,
                        f"no train value to take the {key} of: {listed(bad)}",
                        "check the step that wrote it (its log names the rasters or files "
                        "that gave no value) and rerun it",
                    )
