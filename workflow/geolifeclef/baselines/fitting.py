"""What every baseline shares: which rows fit the model of each split, writing its
predictions, and the file of a fit (``save_fit``, ``load_fit``).
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from geolifeclef.atomic import atomic_path
from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_table
from geolifeclef.errors import InputDataError
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


def label_columns(rows: pd.DataFrame, species: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (n + 1,), columns): row i's labels are the species-table columns
    ``columns[offsets[i]:offsets[i + 1]]`` -- its one ``species_id`` (GLC 2022), or the
    species present in a survey (``species_ids``, a survey edition)."""
    if "species_ids" not in rows:
        return np.arange(len(rows) + 1), species_columns(species, rows["species_id"].to_numpy())
    sizes = rows["species_ids"].map(len).to_numpy(dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in rows["species_ids"]] or [[]])
    return offsets, species_columns(species, flat.astype(np.int64))


def label_matrix(rows: pd.DataFrame, species: pd.DataFrame):
    """(rows, species) sparse 0/1 matrix of each row's labels (``label_columns``), float64."""
    offsets, columns = label_columns(rows, species)
    values = np.ones(len(columns), dtype=np.float64)
    return sparse.csr_array((values, columns, offsets), shape=(len(rows), len(species)))


def fitting_rows(
    train: pd.DataFrame, val: pd.DataFrame, refit: bool, splits=("val", "test")
) -> dict[str, pd.DataFrame]:
    """The observations that fit the model predicting each split: val always from train
    alone (an honest estimate of the test error); test from train, or from train + val
    with ``refit`` (more data for the submission, as the GLC 2022 winners did)."""
    both = pd.concat([train, val], ignore_index=True) if refit else train
    return {split: (train if split == "val" else both) for split in splits}


def run_baseline(
    module,
    settings,
    tables: dict[str, str | Path],
    species_table: str | Path,
    outputs: dict[str, str | Path],
    model_path: str | Path,
    top_k: int,
    chunk_rows: int,
    sources=None,
    n_jobs: int = 1,
    marginal: bool = False,
) -> None:
    """What every baseline's rule does: read the observation tables (``train`` and each
    predicted split) and the species table, fit the family's ``module`` on the rows
    ``fitting_rows`` gives each split (once per distinct rows), save the fit that predicts
    test to ``model_path`` (what the maps, the point queries and its MLflow model reload),
    and write each split's top-``top_k`` predictions (``marginal``: presence probabilities
    of a survey edition, ``check_predictions``)."""
    species = read_species_table(species_table)
    queries = {split: read_table(tables[split]) for split in outputs}
    fitting = fitting_rows(
        read_table(tables["train"]), queries["val"], settings.refit, tuple(outputs)
    )
    k = table_k(top_k, len(species))
    predicted: dict[str, Predictions] = {}
    for rows in {id(frame): frame for frame in fitting.values()}.values():
        model = module.fit(rows, species, settings, sources, n_jobs)
        splits = [split for split in queries if fitting[split] is rows]
        if "test" in splits:
            model.save(model_path)
        for split in splits:
            predicted[split] = model.predict(queries[split], k, chunk_rows)
        log.info("%s: fitted on %d rows, predicted %s", module.__name__, len(rows), splits)
    write_split_predictions(
        outputs,
        predicted,
        {split: frame["observation_id"].to_numpy() for split, frame in queries.items()},
        species["species_id"].to_numpy(),
        marginal,
    )


def save_fit(path: str | Path, format: str, arrays: dict[str, np.ndarray], **header) -> None:
    """A baseline's fit as one ``.npz`` of plain ``arrays`` and a JSON header naming its
    ``format`` (with the ``header`` entries), written atomically. The forest has a file of
    its own (``geolifeclef.baselines.forest_file``)."""
    text = np.array(json.dumps({"format": format, **header}))
    with atomic_path(path) as part, open(part, "wb") as out:
        np.savez(out, header=text, **arrays)


def load_fit(
    path: str | Path, format: str, what: str, fix: str
) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays that ``save_fit`` wrote in ``format`` (loading runs no code: no
    pickle); ``InputDataError`` ("not a saved ``what``", ``fix``) for any other file."""
    with np.load(path, allow_pickle=False) as saved:
        header = json.loads(str(saved["header"])) if "header" in saved else {}
        if header.get("format") != format:
            raise InputDataError(path, f"not a saved {what} ({format})", fix)
        return header, {name: saved[name] for name in saved.files if name != "header"}
