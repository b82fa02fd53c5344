"""Baselines and blends as ``mlflow.pyfunc`` models, and what every served model shares.

Every ranked model is logged as an MLflow model with one interface, so that the one behind
``final.csv`` loads from the Model Registry (``geolifeclef.evaluation.submission.
register_champion``) whatever its family:

* input: a DataFrame of observations of the workflow (``observation_id``, ``latitude``,
  ``longitude``: rows of ``results/observations/{train,val,test}.parquet``);
* params: ``workdir`` (the folder where the workflow ran, default the current one) and
  ``top_k`` (default 30);
* output: per row, in the input's order, ``observation_id``, ``species_ids`` (the top_k
  species, best first) and ``scores`` (their probabilities).

A baseline (:class:`BaselineModel`) carries the file its predict job saved (the fit behind
its test predictions: the forest's plain arrays, the kNN's train points and settings, the
constant's priors), the species table and where the workflow keeps the env table and patch
statistics it reads; it predicts with its family's module (``load``, then ``predict``), as
the rule did. A blend (:class:`BlendModel`) carries its members' logged models and its
weights, and blends their top K with ``geolifeclef.predictions.table.blend``, as the blend
rule did. Network experiments: ``geolifeclef.experiments.serving.TopSpeciesModel``. Every
model carries the ``geolifeclef`` package itself (``code_paths``) and is built from code:
nothing is pickled.
"""

import json
import logging
import shutil
import tempfile
import time
import warnings
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel
from mlflow.utils import requirements_utils

import geolifeclef
from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.predictions.table import Predictions, blend
from geolifeclef.settings.families import BASELINES

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("observation_id", "latitude", "longitude")
DEFAULT_PARAMS = {"workdir": ".", "top_k": 30}
EXAMPLE_ROWS = 5
SERVING_PACKAGES = (
    "torch",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "scikit-learn",
    "tqdm",
    "timm",
    "torchvision",
)
"""What the package imports to predict (pinned at their installed versions)."""
MODEL_CODE = """# What MLflow runs to build the model (models from code: nothing is pickled).
import mlflow
from {module} import {name}

mlflow.models.set_model({name}())
"""


def check_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The input columns of ``rows`` (ValueError naming the missing ones)."""
    missing = [c for c in INPUT_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"the rows need the columns {list(INPUT_COLUMNS)}; missing {missing}")
    return rows.reset_index(drop=True)


def output_frame(predictions: Predictions, top_k: int) -> pd.DataFrame:
    """A served model's answer: per row, its id, top ``top_k`` species and their scores."""
    return pd.DataFrame(
        {
            "observation_id": predictions.observation_id.astype(np.int64),
            "species_ids": list(predictions.species_ids[:, :top_k].astype(np.int64)),
            "scores": list(predictions.scores[:, :top_k].astype(np.float64)),
        }
    )


def predictions_of(frame: pd.DataFrame) -> Predictions:
    """A served model's answer as ``Predictions`` (float32 scores, as the tables keep)."""
    return Predictions(
        frame["observation_id"].to_numpy(np.int64),
        np.stack(frame["species_ids"].to_numpy()).astype(np.int64),
        np.stack(frame["scores"].to_numpy()).astype(np.float32),
    )


def answer_example(rows: pd.DataFrame) -> pd.DataFrame:
    """An answer of the served models' form for ``rows`` (its values mean nothing): what
    the signature's output schema is inferred from."""
    n = len(rows)
    placeholder = Predictions(
        rows["observation_id"].to_numpy(np.int64),
        np.broadcast_to(np.arange(30, dtype=np.int64), (n, 30)),
        np.zeros((n, 30), dtype=np.float32),
    )
    return output_frame(placeholder, 30)


def skip_mlflow_package_scan() -> None:
    """Spare MLflow its map of every installed file to its package (3 s a process here:
    ``importlib_metadata.packages_distributions`` reads the file list of torch's and CUDA's
    wheels), built in each process that logs or loads a model only to name the module of a
    requirement whose version ``importlib.metadata`` cannot find. Ours are the installed
    versions by name (``serving_requirements``): MLflow's check that they are met stays.
    A private attribute: if MLflow drops it, nothing changes but the 3 s."""
    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", False) is None:
        requirements_utils._MODULES_TO_PACKAGES = {}


skip_mlflow_package_scan()


def serving_requirements() -> list[str]:
    """Pinned versions of what the package needs to predict, as installed here."""
    pins = []
    for package in SERVING_PACKAGES:
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return pins


def log_served_model(
    tracker,
    name: str,
    model_class: type,
    artifacts: dict[str, str],
    example: pd.DataFrame,
    default_params: dict[str, Any],
    source: str,
    config: dict | None = None,
    checked: bool = True,
    **kwargs,
) -> str | None:
    """Log ``model_class`` (a ``PythonModel`` of this package, built from code) named
    ``name`` into the tracker's run with its ``artifacts`` (and ``config`` as the artifact
    ``config``, a JSON file), the package, and the signature of every served model's
    answer to ``example`` rows; returns the ``models:/`` URI (None when offline).
    ``checked``: the rows are also its input example, and MLflow checks the model as it
    logs it: it reloads it and predicts them (a model that does not load or predict is
    logged with a warning)."""
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        if config is not None:
            config_file = Path(folder) / "config.json"
            config_file.write_text(json.dumps(config, indent=1))
            artifacts = {"config": str(config_file), **artifacts}
        # MLflow's hint that integer columns cannot hold NaN: observation ids never do.
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer")
        model_code = Path(folder) / "served_model.py"
        model_code.write_text(
            MODEL_CODE.format(module=model_class.__module__, name=model_class.__name__)
        )
        package = Path(folder) / "code" / "geolifeclef"
        shutil.copytree(
            Path(geolifeclef.__file__).parent, package, ignore=shutil.ignore_patterns("__py*")
        )
        return tracker.log_model(
            mlflow.pyfunc.log_model,
            name,
            python_model=str(model_code),
            artifacts=artifacts,
            code_paths=[str(package)],
            signature=infer_signature(example, answer_example(example), params=default_params),
            input_example=example if checked else None,
            pip_requirements=serving_requirements(),
            tags={"mlflow.source.name": source},
            **kwargs,
        )


def example_rows(observations: str | Path) -> pd.DataFrame:
    """The input example of a served model: the first rows of an observation table."""
    table = pd.read_parquet(observations, columns=list(INPUT_COLUMNS))
    return table.head(EXAMPLE_ROWS).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------


class BaselineModel(PythonModel):
    """A fitted baseline as an ``mlflow.pyfunc`` model (see the module docstring)."""

    def load_context(self, context) -> None:
        self.config = json.loads(Path(context.artifacts["config"]).read_text())
        self.species = read_species_table(context.artifacts["species"])
        self.model_path = context.artifacts["model"]
        # Workflow folder -> the fit reloaded with its tables: once, not at every call.
        self.loaded = {}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        params = {**DEFAULT_PARAMS, **(params or {})}
        workdir = Path(params["workdir"])
        if workdir not in self.loaded:
            self.loaded[workdir] = load_baseline(
                self.config, self.model_path, self.species, workdir
            )
        k = int(params["top_k"])
        rows = check_rows(pd.DataFrame(model_input))
        return output_frame(self.loaded[workdir].predict(rows, k, self.config["chunk_rows"]), k)


def load_baseline(config: dict, model_path, species: pd.DataFrame, workdir: Path):
    """The baseline saved at ``model_path``, by its family's ``load``, reading the tables
    ``config`` names under ``workdir`` (the forest's env table and patch statistics)."""
    # deferred: the forest's module (scipy), for a baseline's model only
    from geolifeclef.baselines.forest import TabularSources

    module = import_module(BASELINES[config["family"]].implementation)
    sources = None
    if config["env"]:
        sources = TabularSources.read(
            workdir / config["env"], [workdir / path for path in config["patch_stats"]]
        )
    return module.load(model_path, species, sources)


def log_baseline_model(
    tracker,
    name: str,
    family: str,
    model_path: str,
    species_table: str,
    env: str | None,
    patch_stats: list[str],
    example_observations: str,
    chunk_rows: int,
) -> str | None:
    """Log the baseline ``name`` saved at ``model_path`` as a :class:`BaselineModel`;
    ``env`` and ``patch_stats``: the tables it reads, relative to the workflow's folder
    (None, []: none). Returns the ``models:/`` URI, or None when offline."""
    if not tracker.online:
        return tracker.log_model(None, name)
    started = time.perf_counter()
    config = {
        "family": family,
        "env": env,
        "patch_stats": list(patch_stats),
        "chunk_rows": chunk_rows,
    }
    example = example_rows(example_observations)
    uri = log_served_model(
        tracker,
        name,
        BaselineModel,
        {"model": model_path, "species": species_table},
        example,
        DEFAULT_PARAMS,
        "workflow/scripts/evaluate_model.py",
        config,
    )
    log.info("logged model %s as %s in %.1f s", name, uri, time.perf_counter() - started)
    return uri


# --------------------------------------------------------------------------------------
# Blends
# --------------------------------------------------------------------------------------


class BlendModel(PythonModel):
    """A blend or fitted blend as an ``mlflow.pyfunc`` model: its members' logged models
    (artifacts ``member-<name>``) and its weights (see the module docstring)."""

    def load_context(self, context) -> None:
        self.config = json.loads(Path(context.artifacts["config"]).read_text())
        self.members = {
            name: mlflow.pyfunc.load_model(context.artifacts[f"member-{name}"])
            for name in self.config["weights"]
        }

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        params = {**DEFAULT_PARAMS, **(params or {})}
        rows = check_rows(pd.DataFrame(model_input))
        return predict_blend(
            self.config, self.members, rows, params["workdir"], int(params["top_k"])
        )


def predict_blend(config: dict, members: dict, rows: pd.DataFrame, workdir, k: int):
    """Top ``k`` of ``rows`` by the members' served models, blended as the blend rule does:
    each member's top K (its table's K), averaged with the weights, the blend's K kept."""
    answers = [
        predictions_of(
            member.predict(
                rows,
                params={
                    "workdir": str(workdir),
                    "top_k": config["member_k"][name],
                    **config["member_params"].get(name, {}),
                },
            )
        )
        for name, member in members.items()
    ]
    blended = blend(answers, list(config["weights"].values()), config["k"])
    return output_frame(blended.aligned_to(rows["observation_id"].to_numpy(np.int64)), k)


def log_blend_model(
    tracker,
    name: str,
    weights: dict[str, float],
    member_uris: dict[str, str | None],
    member_k: dict[str, int],
    member_params: dict[str, dict],
    k: int,
    example_observations: str,
) -> str | None:
    """Log the blend ``name`` of the members' logged models (``member_uris``) with
    ``weights`` (members of weight 0 left out) as a :class:`BlendModel`; ``member_k``: the
    K of each member's table, ``k`` the blend's. None when offline or when a member has
    no logged model (the log says which)."""
    if not tracker.online:
        return tracker.log_model(None, name)
    weights = {member: float(w) for member, w in weights.items() if w > 0}
    missing = [member for member in weights if not member_uris.get(member)]
    if missing:
        log.warning(
            "%s: members %s have no logged MLflow model: the blend is not logged", name, missing
        )
        return None
    started = time.perf_counter()
    config = {
        "weights": weights,
        "member_k": {member: int(member_k[member]) for member in weights},
        "member_params": {m: p for m, p in member_params.items() if m in weights and p},
        "k": int(k),
    }
    try:
        for member in weights:
            mlflow.MlflowClient().get_logged_model(member_uris[member].removeprefix("models:/"))
    except MlflowException as error:
        # E.g. a member logged to another tracking store (a workflow folder copied, or
        # moved to another server): the evaluation stands, the blend has no model.
        log.warning(
            "%s: a member's logged model cannot be loaded (%s): the blend is not logged",
            name,
            error,
        )
        return None
    example = example_rows(example_observations)
    uri = log_served_model(
        tracker,
        name,
        BlendModel,
        {f"member-{member}": member_uris[member] for member in weights},
        example,
        DEFAULT_PARAMS,
        "workflow/scripts/evaluate_model.py",
        config,
        # Not reloaded here: that would load every member (torch, for a network) in
        # each blend's evaluate job; its members were checked as they were logged.
        checked=False,
    )
    log.info("logged model %s as %s in %.1f s", name, uri, time.perf_counter() - started)
    return uri


# --------------------------------------------------------------------------------------
# Species sets (a survey edition)
# --------------------------------------------------------------------------------------


class SetModel(PythonModel):
    """A survey edition's answer as an ``mlflow.pyfunc`` model: a ranked model's logged
    model (artifact ``ranked``) asked for its table's K, cut by the set rule chosen on val
    (``geolifeclef.predictions.set_rules``). Output per row: ``observation_id``,
    ``species_ids`` (its set, ascending, as in ``final.csv``) and ``scores`` (their
    presence probabilities)."""

    def load_context(self, context) -> None:
        self.config = json.loads(Path(context.artifacts["config"]).read_text())
        self.ranked = mlflow.pyfunc.load_model(context.artifacts["ranked"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        params = {**DEFAULT_PARAMS, **(params or {})}
        rows = check_rows(pd.DataFrame(model_input))
        return predict_sets(self.config, self.ranked, rows, params["workdir"])


def predict_sets(config: dict, ranked, rows: pd.DataFrame, workdir) -> pd.DataFrame:
    """The sets of ``rows``: the ranked model's K best, cut by the configured rule."""
    # deferred: the set rules (scipy), for a survey edition's model only
    from geolifeclef.predictions.set_rules import SetRule

    answer = predictions_of(
        ranked.predict(
            rows, params={"workdir": str(workdir), "top_k": config["k"], **config["params"]}
        )
    )
    sizes = SetRule(**config["rule"]).sizes(answer.scores.astype(np.float64))
    species, scores = [], []
    for ids, values, size in zip(answer.species_ids, answer.scores, sizes, strict=True):
        order = np.argsort(ids[:size], kind="stable")
        species.append(ids[:size][order].astype(np.int64))
        scores.append(values[:size][order].astype(np.float64))
    return pd.DataFrame(
        {"observation_id": answer.observation_id, "species_ids": species, "scores": scores}
    )


def log_set_model(
    tracker,
    name: str,
    ranked_uri: str | None,
    rule: dict,
    k: int,
    params: dict,
    example_observations: str,
) -> str | None:
    """Log the sets of the ranked model at ``ranked_uri`` (its table's ``k`` best, its
    serving ``params``) under set ``rule`` (``SetRule.as_dict``) as a :class:`SetModel`:
    what a survey edition's champion serves. None when offline or without a ranked model."""
    if not tracker.online or ranked_uri is None:
        return tracker.log_model(None, name) if not tracker.online else None
    config = {"rule": rule, "k": int(k), "params": params}
    uri = log_served_model(
        tracker,
        f"{name}-sets",
        SetModel,
        {"ranked": ranked_uri},
        example_rows(example_observations),
        DEFAULT_PARAMS,
        "workflow/scripts/evaluate_model.py",
        config,
        # Not reloaded here: the ranked model was checked as it was logged.
        checked=False,
    )
    log.info("logged the sets of %s as %s", name, uri)
    return uri
