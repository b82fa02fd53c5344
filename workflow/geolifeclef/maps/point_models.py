"""Models that predict at any point: what the species maps and the point queries run.

A model can be evaluated anywhere in the two regions when it reads only what is known
everywhere: the 27 environmental values, the coordinates and the country (the region whose
rasters a point is read from). That is the MLP experiments whose tabular features are
among ``env``, ``coordinates`` and ``country``, the ``random_forest``
and ``knn`` baselines and the blends of these. Models that read patches (CNN, fusion, or
patch features such as land-cover shares) cannot: a patch exists only at an observation.

Each mappable model is described by a :class:`PointModelSpec`, written by the rule
``describe_map_model`` to ``results/maps/{model}/model.json`` (the files it needs and its
settings) and read by the map rules and by ``geolifeclef query``: one way to
reload a model, whoever asks. :func:`load_point_model` turns it into a :class:`PointModel`
whose ``probabilities(latitude, longitude, env)`` returns every species' probability,
column j being row j of the species table, through the same functions as the model's own
prediction rule (``run_prediction``'s batch features, ``forest_probabilities``,
``KnnModel``), so a point query equals the model's prediction at an observation.
"""

import itertools
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from geolifeclef.atomic import write_text
from geolifeclef.baselines.forest import (
    TabularSources,
    feature_matrix,
    feature_names,
    forest_probabilities,
)
from geolifeclef.baselines.forest_file import load_forest
from geolifeclef.baselines.knn import KnnModel, KnnSettings
from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.dataset import standardize_columns
from geolifeclef.data.observations import read_table
from geolifeclef.data.rasters import region_of_points
from geolifeclef.demo.truth import read_world, true_probabilities
from geolifeclef.experiments.trained import load_trained
from geolifeclef.experiments.training import pick_device, predict_scores
from geolifeclef.layout import ENV_VARIABLES, OBSERVATION_ID_DIGITS, REGION_DIGIT
from geolifeclef.models.features import ModelBatch
from geolifeclef.settings.mappable import POINT_FEATURES

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Model specs: how to reload a model, on disk
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointModelSpec:
    """Everything needed to reload a model for predictions at any point.

    ``kind``: ``experiment`` (files ``model``, ``stats``), ``random_forest`` (``forest``),
    ``knn`` (``train``, settings = ``KnnSettings``), ``blend`` (``parts``: specs and
    weights), or ``unmappable`` (``reason`` says why). Paths are relative to the
    workflow's working directory.
    """

    name: str
    kind: str
    species_table: str = ""
    species_details: str = ""
    data_root: str = ""
    files: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    parts: tuple[tuple["PointModelSpec", float], ...] = ()
    reason: str = ""

    @property
    def mappable(self) -> bool:
        return self.kind != "unmappable"

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["parts"] = [
            {"model": part.to_dict(), "weight": weight} for part, weight in self.parts
        ]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PointModelSpec":
        values = dict(values)
        values["parts"] = tuple(
            (cls.from_dict(part["model"]), float(part["weight"]))
            for part in values.get("parts", ())
        )
        return cls(**values)


def write_spec(spec: PointModelSpec, path: str | Path) -> None:

    write_text(path, json.dumps(spec.to_dict(), indent=1) + "\n")


def read_spec(path: str | Path) -> PointModelSpec:
    return PointModelSpec.from_dict(json.loads(Path(path).read_text()))


# --------------------------------------------------------------------------------------
# Point models
# --------------------------------------------------------------------------------------


def point_ids(longitude: np.ndarray) -> np.ndarray:
    """Ids for points that are not observations, in the archive's form: the first digit is
    the region whose rasters the point is read from (what the ``country`` feature reads,
    ``region_digits``), then the point's index."""
    digit = np.where(region_of_points(longitude) == "fr", REGION_DIGIT["fr"], REGION_DIGIT["us"])
    place = 10 ** (OBSERVATION_ID_DIGITS - 1)
    return digit.astype(np.int64) * place + np.arange(len(longitude), dtype=np.int64) % place


class PointModel:
    """Probabilities of every species at points given their coordinates and env values."""

    name: str

    def probabilities(
        self, latitude: np.ndarray, longitude: np.ndarray, env: np.ndarray
    ) -> np.ndarray:
        """(n, species) float probabilities; column j is row j of the species table.

        ``env`` is (n, 27) float32 raster values in ENV_VARIABLES order, NaN where a raster
        has no value (as in the env table).
        """
        raise NotImplementedError


class ExperimentModel(PointModel):
    """A trained experiment that reads env values, coordinates and the country only."""

    def __init__(self, name: str, model_path: str, stats_path: str, species_ids: np.ndarray):

        self.name = name
        self.settings, self.model = load_trained(model_path)
        extra = set(self.settings.tabular) - set(POINT_FEATURES)
        if self.settings.inputs.patch_modalities or extra:
            raise ValueError(
                f"experiment {name} reads features known only at observations: it cannot be mapped"
            )
        self.environment = json.loads(Path(stats_path).read_text())["environment"]
        self.transform = ModelBatch(self.settings.tabular, ())
        self.device = pick_device()
        self.model.to(self.device)
        self.species_ids = np.asarray(species_ids, dtype=np.int64)
        self._torch = torch

    def probabilities(self, latitude, longitude, env) -> np.ndarray:

        torch = self._torch
        # The batch a GlcDataset of these points would give (float32 coordinates, env
        # standardised with the train statistics), turned into model inputs the same way.
        batch = {
            "observation_id": torch.from_numpy(point_ids(longitude)),
            "coords": torch.from_numpy(np.stack([latitude, longitude], axis=1).astype(np.float32)),
            "env": standardize_columns(
                torch.from_numpy(np.asarray(env, dtype=np.float32)), self.environment
            ),
        }
        _, probabilities, _ = next(predict_scores(self.model, [self.transform(batch)], self.device))
        return probabilities[:, self.species_ids]


class ForestModel(PointModel):
    """The random forest that ``predict_random_forest`` fitted and saved (its compact
    arrays, ``geolifeclef.baselines.forest_file``), predicting in ``n_jobs`` threads."""

    def __init__(self, name: str, forest_path: str, species: pd.DataFrame, n_jobs: int = 1):

        self.name = name
        self.forest, names = load_forest(forest_path)
        self.n_jobs = n_jobs
        # Any non-empty subset of POINT_FEATURES, in their order (feature_names' order).
        choices = [
            c
            for n in range(len(POINT_FEATURES), 0, -1)
            for c in itertools.combinations(POINT_FEATURES, n)
        ]
        self.groups = next((g for g in choices if names == feature_names(g)), None)
        if self.groups is None:
            raise ValueError(
                f"{forest_path}: features {names} are not all known at any point; "
                f"a forest on {' and/or '.join(POINT_FEATURES)} can be mapped"
            )
        self.source = forest_path
        self.species = species

    def probabilities(self, latitude, longitude, env) -> np.ndarray:

        ids = point_ids(longitude)
        points = pd.DataFrame({"observation_id": ids, "latitude": latitude, "longitude": longitude})
        values = pd.DataFrame(np.asarray(env, dtype=np.float32), columns=list(ENV_VARIABLES))
        values.insert(0, "observation_id", ids)
        features = feature_matrix(points, self.groups, TabularSources(values, self.source))
        return forest_probabilities(self.forest, features, self.species, self.n_jobs)


class KnnPointModel(PointModel):
    """The spatial kNN baseline, rebuilt from the train table (a ball tree: seconds)."""

    def __init__(self, name: str, train_path: str, species: pd.DataFrame, settings: dict):

        self.name = name
        self.model = KnnModel(read_table(train_path), species, KnnSettings(**settings))

    def probabilities(self, latitude, longitude, env) -> np.ndarray:
        return self.model.probabilities(latitude, longitude)


class BlendModel(PointModel):
    """Weighted average of its parts' full probability vectors (weights normalised).

    The blend rule can only average the K species each part kept; on a map every
    species of every part counts, so the two agree wherever the parts' K cover it.
    """

    def __init__(self, name: str, parts: list[tuple[PointModel, float]]):
        self.name = name
        total = sum(weight for _, weight in parts)
        self.parts = [(model, weight / total) for model, weight in parts]

    def probabilities(self, latitude, longitude, env) -> np.ndarray:
        result = None
        for model, weight in self.parts:
            p = weight * model.probabilities(latitude, longitude, env).astype(np.float64)
            result = p if result is None else result + p
        return result


class DemoTruthModel(PointModel):
    """The demo's hidden species model (``demo.true_probabilities``): the true maps."""

    def __init__(self, world_path: str | Path, species_ids: np.ndarray, name: str = "truth"):

        self.name = name
        self.world = read_world(world_path)
        self.species_ids = np.asarray(species_ids, dtype=np.int64)

    def probabilities(self, latitude, longitude, env) -> np.ndarray:

        return true_probabilities(self.world, latitude, longitude)[:, self.species_ids]


def load_point_model(spec: PointModelSpec, threads: int = 1) -> PointModel:
    """The model a spec describes; ValueError (its reason) when it cannot be mapped."""

    if not spec.mappable:
        raise ValueError(f"model {spec.name} cannot predict at a point: {spec.reason}")
    species = read_species_table(spec.species_table)
    if spec.kind == "experiment":
        return ExperimentModel(
            spec.name, spec.files["model"], spec.files["stats"], species["species_id"].to_numpy()
        )
    if spec.kind == "random_forest":
        return ForestModel(spec.name, spec.files["forest"], species, threads)
    if spec.kind == "knn":
        return KnnPointModel(spec.name, spec.files["train"], species, spec.settings)
    if spec.kind == "blend":
        return BlendModel(
            spec.name, [(load_point_model(part, threads), w) for part, w in spec.parts]
        )
    raise ValueError(f"model {spec.name}: unknown kind {spec.kind!r}")
