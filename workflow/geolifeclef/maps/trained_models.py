"""The trained models at any point (``geolifeclef.maps.point_models`` says which can be),
reloaded from a spec by ``load_point_model``: a baseline through its family's module
(``geolifeclef.settings.families``: ``load`` and the fitted model's ``probabilities_at``),
a network experiment in ``geolifeclef.maps.network_point_model``, a blend from its parts.
Not beside the specs, because they read the saved models, which the jobs that only read
specs never do. torch and scikit-learn load only for the families that need them: a map
job of the forest loads neither (each costs a job ~2-3 CPU s)."""

from importlib import import_module

import numpy as np

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.maps.point_models import BlendModel, PointModel, PointModelSpec
from geolifeclef.settings.families import BASELINES


class BaselinePointModel(PointModel):
    """A fitted baseline (``save``d by its predict job: the one behind its test
    predictions), reloaded by its family's ``load``."""

    def __init__(self, name: str, family: str, model_path: str, species, n_jobs: int = 1):
        self.name = name
        module = import_module(BASELINES[family].implementation)
        self.model = module.load(model_path, species, None, n_jobs)

    def probabilities(self, latitude, longitude, env) -> np.ndarray:
        return self.model.probabilities_at(latitude, longitude, env)


def load_point_model(spec: PointModelSpec, threads: int = 1) -> PointModel:
    """The model a spec describes; ValueError (its reason) when it cannot be mapped."""

    if not spec.mappable:
        raise ValueError(f"model {spec.name} cannot predict at a point: {spec.reason}")
    if spec.kind == "blend":
        return BlendModel(
            spec.name, [(load_point_model(part, threads), w) for part, w in spec.parts]
        )
    species = read_species_table(spec.species_table)
    if spec.kind in BASELINES:
        return BaselinePointModel(spec.name, spec.kind, spec.files["model"], species, threads)
    if spec.kind == "experiment":
        # deferred: torch (~2 CPU s a process) for the map jobs of networks only
        from geolifeclef.maps.network_point_model import ExperimentModel

        return ExperimentModel(
            spec.name, spec.files["model"], spec.files["stats"], species["species_id"].to_numpy()
        )
    raise ValueError(f"model {spec.name}: unknown kind {spec.kind!r}")
