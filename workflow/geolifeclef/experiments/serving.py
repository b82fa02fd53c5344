"""A trained experiment as an MLflow model: observation rows in, top-30 species out (the
top K by marginal presence probability for a multi-label task's experiment).

A ``SpeciesModel`` reads a dict of tensors (``tabular`` features and patch modalities)
that ``geolifeclef.models.features.ModelBatch`` builds from ``GlcDataset`` batches, normalised
with the train statistics: not something a user can hand to a reloaded torch module. So
each train run logs, under the experiment's name, an ``mlflow.pyfunc`` model
(:class:`TopSpeciesModel`) that does what ``run_prediction`` does, with the same code:

* input: a DataFrame of observations of the workflow (``observation_id``, ``latitude``,
  ``longitude``: rows of ``results/observations/{train,val,test}.parquet``; other columns
  are dropped);
* params: ``workdir`` (the folder where the workflow ran, default the current one),
  ``top_k`` (default 30), ``tta`` (test-time augmentation, default false);
* output: per row, ``observation_id``, ``species_ids`` (the top_k species, best first)
  and ``scores`` (their probabilities: of a multi-label task's experiment, each species'
  marginal presence probability, which need not sum to 1; the workflow's set selection
  decides how many of them a survey gets).

It carries its weights (``model.pt``), the train normalisation statistics, where the
workflow keeps the env table, patch caches and patch statistics of each split, and the
``geolifeclef`` package itself (``code_paths``): an environment with the requirements of
``requirements.txt`` reloads it without installing this repository. What every served
model shares (input, output, how it is logged): ``geolifeclef.serving.models``. The snippet of
docs/experiments.md ("Reloading a model") is run by ``tests/test_workflow_training.py``.
"""

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from geolifeclef.experiments.trained import ExperimentInputs, experiment_dataset, load_trained
from geolifeclef.experiments.training import pick_device, predict_scores
from geolifeclef.predictions.metrics import top_k as best_of
from geolifeclef.serving.models import DEFAULT_PARAMS as SERVED_PARAMS
from geolifeclef.serving.models import check_rows, example_rows, log_served_model

log = logging.getLogger(__name__)

DEFAULT_PARAMS = {**SERVED_PARAMS, "tta": False}
COORDINATE_TOLERANCE = 1e-4


def predict_rows(
    settings,
    model,
    rows: pd.DataFrame,
    inputs,
    stats: dict,
    top_k: int = 30,
    tta: bool = False,
) -> pd.DataFrame:
    """Top-``top_k`` species of observation ``rows`` by a trained experiment, reading their
    env values, patches and patch statistics where ``inputs`` (an ``ExperimentInputs``
    over every split) says, exactly as ``run_prediction`` reads them (a multi-label
    task's: ranked by marginal presence probability)."""
    rows = check_rows(rows)
    ids = rows["observation_id"].to_numpy(np.int64)
    split_of = _splits_of(ids, inputs)
    device = pick_device()
    model.to(device).eval()
    best = np.zeros((len(ids), top_k), dtype=np.int64)
    scores = np.zeros((len(ids), top_k), dtype=np.float32)
    for split in dict.fromkeys(split_of):
        wanted = np.flatnonzero(split_of == split)
        dataset = experiment_dataset(inputs, split, settings, stats)
        positions = pd.Index(dataset.observation_ids).get_indexer(ids[wanted])
        _check_coordinates(rows.iloc[wanted], dataset.coords[positions])
        chunks = [positions[i : i + 256] for i in range(0, len(positions), 256)]
        batches = (dataset.__getitems__(chunk) for chunk in chunks)
        start = 0
        with torch.no_grad():
            scores_of = predict_scores(
                model, batches, device, tta=tta, multi_label=settings.multi_label
            )
            for _, probabilities, _ in scores_of:
                chosen, chosen_scores = best_of(probabilities, top_k, settings.column_species)
                rows_here = wanted[start : start + len(chosen)]
                best[rows_here], scores[rows_here] = chosen, chosen_scores
                start += len(chosen)
    return pd.DataFrame(
        {
            "observation_id": ids,
            "species_ids": list(best),
            "scores": list(scores.astype(np.float64)),
        }
    )


def _splits_of(ids: np.ndarray, inputs) -> np.ndarray:
    """The split whose observation table holds each id; an error names the unknown ones."""
    split_of = np.full(len(ids), "", dtype=object)
    for split, path in inputs.observations.items():
        known = pd.read_parquet(path, columns=["observation_id"])["observation_id"]
        split_of[np.isin(ids, known.to_numpy()) & (split_of == "")] = split
    unknown = ids[split_of == ""]
    if len(unknown):
        tables = ", ".join(inputs.observations.values())
        raise KeyError(
            f"{len(unknown)} observation ids are in none of {tables} (first: "
            f"{unknown[:5].tolist()}): the model reads the env values and patches that the "
            "workflow extracted for its observations; add new points to the dataset and "
            "rerun the workflow, or give the workdir param where it ran"
        )
    return split_of


def _check_coordinates(rows: pd.DataFrame, known: np.ndarray) -> None:
    given = rows[["latitude", "longitude"]].to_numpy(np.float64)
    off = np.abs(given - known).max(axis=1) > COORDINATE_TOLERANCE
    if off.any():
        first = rows.iloc[int(np.flatnonzero(off)[0])]
        raise ValueError(
            f"observation {int(first['observation_id'])}: latitude/longitude "
            f"({first['latitude']}, {first['longitude']}) differ from the workflow's "
            "observation table; the model reads the data extracted for the id"
        )


class TopSpeciesModel(PythonModel):
    """The ``mlflow.pyfunc`` model of a trained experiment (see the module docstring)."""

    def load_context(self, context) -> None:
        self.settings, self.model = load_trained(context.artifacts["model"])
        self.stats = json.loads(Path(context.artifacts["stats"]).read_text())
        self.inputs = ExperimentInputs(**json.loads(Path(context.artifacts["config"]).read_text()))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        params = {**DEFAULT_PARAMS, **(params or {})}
        return predict_rows(
            self.settings,
            self.model,
            pd.DataFrame(model_input),
            _under(self.inputs, Path(params["workdir"])),
            self.stats,
            top_k=int(params["top_k"]),
            tta=bool(params["tta"]),
        )


def _under(inputs, workdir: Path):
    """``inputs`` (paths relative to the workflow's folder) under ``workdir``."""

    def moved(value):
        if isinstance(value, dict):
            return {key: str(workdir / path) for key, path in value.items()}
        return str(workdir / value)

    return ExperimentInputs(**{key: moved(value) for key, value in asdict(inputs).items()})


def log_trained_model(
    tracker,
    name: str,
    bundle: str | Path,
    served_inputs,
    example_split: str = "val",
    params: dict[str, Any] | None = None,
    step: int = 0,
) -> str | None:
    """Log the trained ``bundle`` (``model.pt``) as a :class:`TopSpeciesModel` named
    ``name`` into the tracker's run, with a signature and an input example of real rows of
    ``example_split``; ``served_inputs``: where the workflow keeps every split's inputs
    (relative to its folder). Returns the ``models:/`` URI, or None when offline."""
    if not tracker.online:
        return tracker.log_model(None, name)
    started = time.perf_counter()
    uri = log_served_model(
        tracker,
        name,
        TopSpeciesModel,
        {"model": str(bundle), "stats": served_inputs.stats},
        example_rows(served_inputs.observations[example_split]),
        DEFAULT_PARAMS,
        "workflow/scripts/train_model.py",
        asdict(served_inputs),
        params=params,
        step=step,
    )
    log.info("logged model %s as %s in %.1f s", name, uri, time.perf_counter() - started)
    return uri
