"""What every baseline shares: which rows fit the model of each split, and writing
its predictions.
"""

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_table
from geolifeclef.predictions.table import Predictions, table_k, write_split_predictions

log = logging.getLogger(__name__)


def species_columns(species: pd.DataFrame, labels: np.ndarray) -> np.ndarray:
    """Column index (position in the species table) of each species id in ``labels``."""
    listed = species["species_id"].to_numpy(dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    position = np.minimum(np.searchsorted(listed, labels), len(listed) - 1)
    if (listed[position] != labels).any():
        raise ValueError(f"species {labels[listed[position] != labels][0]} is not listed")
    return position


def fitting_rows(
    train: pd.DataFrame, val: pd.DataFrame, refit: bool, splits=("val", "test")
) -> dict[str, pd.DataFrame]:
    """The observations that fit the model predicting each split: val always from train
    alone (an honest estimate of the test error); test from train, or from train + val
    with ``refit`` (more data for the submission, as the GLC 2022 winners did)."""
    both = pd.concat([train, val], ignore_index=True) if refit else train
    return {split: (train if split == "val" else both) for split in splits}


def predict_per_fit(
    fitting: dict[str, pd.DataFrame],
    queries: dict[str, pd.DataFrame],
    predict: Callable[[pd.DataFrame, dict[str, pd.DataFrame]], dict[str, Predictions]],
) -> dict[str, Predictions]:
    """Run ``predict(rows, queries)`` once per distinct set of fitting rows."""
    result: dict[str, Predictions] = {}
    for rows in {id(frame): frame for frame in fitting.values()}.values():
        wanted = {split: queries[split] for split in queries if fitting[split] is rows}
        result.update(predict(rows, wanted))
    return result


Predict = Callable[[pd.DataFrame, dict[str, pd.DataFrame], pd.DataFrame, int], dict]


def write_baseline_predictions(
    tables: dict[str, str | Path],
    species_table: str | Path,
    outputs: dict[str, str | Path],
    top_k: int,
    refit: bool,
    predict: Predict,
) -> None:
    """What every baseline's rule does: read the observation tables (``train`` and each
    predicted split) and the species table, fit on the rows ``fitting_rows`` gives each
    split (``predict(rows, queries, species, k)``), and write each split's predictions."""
    species = read_species_table(species_table)
    queries = {split: read_table(tables[split]) for split in outputs}
    fitting = fitting_rows(read_table(tables["train"]), queries["val"], refit, tuple(outputs))
    k = table_k(top_k, len(species))
    write_split_predictions(
        outputs,
        predict_per_fit(fitting, queries, lambda rows, wanted: predict(rows, wanted, species, k)),
        {split: frame["observation_id"].to_numpy() for split, frame in queries.items()},
        species["species_id"].to_numpy(),
    )
