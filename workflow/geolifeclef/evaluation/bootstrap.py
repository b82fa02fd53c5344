"""How sure a val top-30 error is: a spatial block bootstrap of the val observations.

Neighbouring observations share their habitat and often their observer, so their errors
are correlated: resampling single rows would treat them as independent and give intervals
too narrow. The bootstrap resamples whole blocks instead -- cells of ``block_degrees`` x
``block_degrees`` degrees of latitude and longitude -- with replacement, as many as val has,
and recomputes the error of each draw as (errors in the drawn blocks) / (observations in
them). Vectorised: a (draws x blocks) matrix of multinomial counts, drawn once from the
seed, times the per-block sums of errors and of observations.

Every model is scored on the same val blocks with the same count matrix, so the difference
between two models can be taken draw by draw (a paired bootstrap): the interval of
"model minus best" says whether the best model is better beyond the noise of which places
val happens to hold.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import InputDataError
from geolifeclef.settings.evaluation import BlockBootstrap


@dataclass(frozen=True)
class Blocks:
    """The val observations grouped by block: ``cells`` (B, 2) int64 (latitude, longitude
    cell indices, sorted), ``sizes`` (B,) observations per block, ``of_row`` (n,) the block
    of each observation."""

    cells: np.ndarray
    sizes: np.ndarray
    of_row: np.ndarray

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per-block sums of a per-observation ``values`` (e.g. 1 for a missed species)."""
        return np.bincount(
            self.of_row, weights=np.asarray(values, dtype=np.float64), minlength=len(self.cells)
        )


def spatial_blocks(latitude: np.ndarray, longitude: np.ndarray, block_degrees: float) -> Blocks:
    """The block of each observation: the cell of ``block_degrees`` holding it."""
    cells = np.stack(
        [
            np.floor(np.asarray(latitude, dtype=np.float64) / block_degrees),
            np.floor(np.asarray(longitude, dtype=np.float64) / block_degrees),
        ],
        axis=1,
    ).astype(np.int64)
    if len(cells) == 0:
        return Blocks(np.empty((0, 2), np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    unique, of_row, sizes = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    return Blocks(unique, sizes, of_row.reshape(-1))


def block_counts(n_blocks: int, settings: BlockBootstrap) -> np.ndarray:
    """(draws, n_blocks) int64: how often each block is drawn in each resampling (each row
    sums to n_blocks); depends only on the seed, the number of draws and of blocks."""
    if n_blocks < 1:
        raise ValueError("no val blocks to resample: val has no observations")
    rng = np.random.default_rng(settings.seed)
    return rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=settings.draws)


def resampled_means(counts: np.ndarray, sums: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(draws,) mean of each resampling: drawn sums over drawn observations."""
    return (counts @ sums) / (counts @ sizes)


def interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap draws (percentiles)."""
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def mean_interval(
    sums: np.ndarray, sizes: np.ndarray, settings: BlockBootstrap
) -> tuple[float, float]:
    """Interval of a per-observation mean (an error rate) from its per-block sums."""
    counts = block_counts(len(sizes), settings)
    return interval(resampled_means(counts, sums, sizes), settings.confidence)


def paired_differences(
    sums: dict[str, np.ndarray], sizes: np.ndarray, reference: str, settings: BlockBootstrap
) -> dict[str, tuple[float, float, float]]:
    """For each model: (its mean minus ``reference``'s, interval low, high), both taken on
    the same resampled blocks; the reference's own difference is exactly 0."""
    counts = block_counts(len(sizes), settings)
    drawn_sizes = counts @ sizes
    reference_draws = (counts @ sums[reference]) / drawn_sizes
    reference_mean = sums[reference].sum() / sizes.sum()
    result = {}
    for model, model_sums in sums.items():
        draws = (counts @ model_sums) / drawn_sizes - reference_draws
        point = float(model_sums.sum() / sizes.sum() - reference_mean)
        result[model] = (point, *interval(draws, settings.confidence))
    return result


# --------------------------------------------------------------------------------------
# Per-block errors of a model: what the leaderboard pairs models on
# --------------------------------------------------------------------------------------

BLOCK_SCHEMA = pa.schema(
    [
        ("cell_latitude", pa.int64()),
        ("cell_longitude", pa.int64()),
        ("n_observations", pa.int64()),
        ("errors", pa.float64()),
    ]
)


def write_block_errors(blocks: Blocks, errors: np.ndarray, path: str | Path) -> None:
    """Per block: its cell, its val observations, and how many of them the model missed."""
    table = pa.table(
        [blocks.cells[:, 0], blocks.cells[:, 1], blocks.sizes, blocks.sums(errors)],
        schema=BLOCK_SCHEMA,
    )
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def read_block_errors(paths: dict[str, str | Path]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(observations per block, {model: missed per block}) of every model's block file; the
    files must hold the same blocks (the same val and ``evaluation.block_degrees``)."""
    frames = {model: pd.read_parquet(path) for model, path in paths.items()}
    first_model, first = next(iter(frames.items()))
    keys = ["cell_latitude", "cell_longitude", "n_observations"]
    for model, frame in frames.items():
        if list(frame.columns) != BLOCK_SCHEMA.names:
            raise InputDataError(
                paths[model], f"columns {list(frame.columns)}", "rerun evaluate_model"
            )
        if not frame[keys].equals(first[keys]):
            raise InputDataError(
                paths[model],
                f"its val blocks differ from those of {paths[first_model]}",
                "rerun evaluate_model for every model with the same val and "
                "evaluation.block_degrees",
            )
    sizes = first["n_observations"].to_numpy(np.float64)
    return sizes, {model: frame["errors"].to_numpy(np.float64) for model, frame in frames.items()}
