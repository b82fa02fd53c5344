"""Patch statistics: a few numbers per observation that summarise its patches.

Computed once from a split's patch cache into ``results/patch_stats/{split}.parquet``
(``observation_id`` and the columns below, float32, in the cache's row order), and read as
tabular features by the random forest, the MLP and the fusion model (the 1st place of GLC
2022 fed its forest the same: quartiles of each band, altitude mean and range, land-cover
proportions):

==================  =====================================================================
group               columns
==================  =====================================================================
``patch_quantiles`` ``{red,green,blue,near_ir}_p{25,50,75}``: per-band percentiles of the
                    pixels (numpy's linear interpolation)
``altitude_stats``  ``altitude_{mean,std,min,range}``: metres (std over pixels, ddof 0)
``landcover_shares`` ``landcover_{0..33}``: share of the patch's pixels with each code
==================  =====================================================================

A modality the cache lacks leaves its columns NaN (the features then standardise to the
train mean). Reading goes through ``GlcDataset``, so any patch store works.
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from geolifeclef.atomic import atomic_path
from geolifeclef.layout import N_LANDCOVER_CODES
from geolifeclef.settings.inputs import BANDS, PATCH_STAT_COLUMNS, PATCH_STAT_GROUPS, QUANTILES

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def batch_statistics(batch: "dict[str, torch.Tensor]") -> np.ndarray:
    """(B, len(PATCH_STAT_COLUMNS)) float32 statistics of a raw (unnormalised) batch; NaN
    for the columns of a modality the batch lacks."""
    import torch  # here, not above: the Snakefile reads PATCH_STAT_GROUPS without torch

    first = batch["observation_id"]
    out = np.full((len(first), len(PATCH_STAT_COLUMNS)), np.nan, dtype=np.float32)
    column = 0
    if all(modality in batch for modality, _ in BANDS.values()):
        q = torch.tensor([q / 100 for q in QUANTILES], dtype=torch.float64)
        for modality, channel in BANDS.values():
            pixels = batch[modality][:, channel].flatten(1).double()
            out[:, column : column + len(QUANTILES)] = torch.quantile(pixels, q, dim=1).T.numpy()
            column += len(QUANTILES)
    column = len(PATCH_STAT_GROUPS["patch_quantiles"])
    if "altitude" in batch:
        altitude = batch["altitude"].flatten(1).double()
        low, high = altitude.amin(1), altitude.amax(1)
        stats = [altitude.mean(1), altitude.std(1, correction=0), low, high - low]
        out[:, column : column + 4] = torch.stack(stats, dim=1).numpy()
    column += len(PATCH_STAT_GROUPS["altitude_stats"])
    if "landcover" in batch:
        codes = batch["landcover"].long().flatten(1).clamp(0, N_LANDCOVER_CODES - 1)
        counts = torch.zeros(len(codes), N_LANDCOVER_CODES, dtype=torch.float64)
        counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=torch.float64))
        out[:, column:] = (counts / codes.shape[1]).numpy()
    return out


def compute_patch_stats(
    cache_dir: str | Path, output: str | Path, batch_size: int = 256, workers: int = 0
) -> pd.DataFrame:
    """The patch statistics of every observation of a cache, written to ``output``."""
    from geolifeclef.data.dataset import GlcDataset, make_loader

    dataset = GlcDataset(cache_dir, normalize=False)
    log.info("patch statistics of %d observations from %s", len(dataset), cache_dir)
    loader = make_loader(dataset, batch_size, num_workers=workers)
    ids, values = [], []
    for batch in tqdm(loader, desc="patch statistics", unit="batch", mininterval=5):
        ids.append(batch["observation_id"].numpy())
        values.append(batch_statistics(batch))
    table = pd.DataFrame(
        np.concatenate(values) if values else np.empty((0, len(PATCH_STAT_COLUMNS)), np.float32),
        columns=list(PATCH_STAT_COLUMNS),
    )
    table.insert(0, "observation_id", np.concatenate(ids) if ids else np.empty(0, np.int64))
    with atomic_path(output) as temporary:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), temporary)
    return table


def read_patch_stats(path: str | Path, observation_ids: np.ndarray) -> np.ndarray:
    """(n, len(PATCH_STAT_COLUMNS)) float32 rows of ``observation_ids``, in that order."""
    table = pd.read_parquet(path).set_index("observation_id")
    missing = np.setdiff1d(observation_ids, table.index.to_numpy())
    if len(missing):
        raise KeyError(
            f"{path} has no row for {len(missing)} observations (first: {missing[:5]}); "
            "rebuild it with: snakemake extraction"
        )
    return table.loc[observation_ids, list(PATCH_STAT_COLUMNS)].to_numpy(np.float32)
