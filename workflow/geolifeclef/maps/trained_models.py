"""The trained models at any point (``geolifeclef.maps.point_models`` says which can be):
the random forest and the kNN here, a network experiment in
``geolifeclef.maps.network_point_model``, reloaded from a spec by ``load_point_model``.
Not beside the specs, because they read the saved models, which the jobs that only read
specs never do. torch and scikit-learn load only for the kinds that need them: a map job
of the forest loads neither (each costs a job ~2-3 CPU s)."""

import itertools

import numpy as np
import pandas as pd

from geolifeclef.baselines.forest import (
    TabularSources,
    feature_matrix,
    feature_names,
    forest_probabilities,
)
from geolifeclef.baselines.forest_file import load_forest
from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_table
from geolifeclef.layout import ENV_VARIABLES
from geolifeclef.maps.point_models import BlendModel, PointModel, PointModelSpec, point_ids
from geolifeclef.settings.mappable import POINT_FEATURES


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

        # deferred: scikit-learn (~2 CPU s a process) for the kNN's map jobs only
        from geolifeclef.baselines.knn import KnnModel, KnnSettings

        self.name = name
        self.model = KnnModel(read_table(train_path), species, KnnSettings(**settings))

    def probabilities(self, latitude, longitude, env) -> np.ndarray:
        return self.model.probabilities(latitude, longitude)


def load_point_model(spec: PointModelSpec, threads: int = 1) -> PointModel:
    """The model a spec describes; ValueError (its reason) when it cannot be mapped."""

    if not spec.mappable:
        raise ValueError(f"model {spec.name} cannot predict at a point: {spec.reason}")
    species = read_species_table(spec.species_table)
    if spec.kind == "experiment":
        # deferred: torch (~2 CPU s a process) for the map jobs of networks only
        from geolifeclef.maps.network_point_model import ExperimentModel

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
