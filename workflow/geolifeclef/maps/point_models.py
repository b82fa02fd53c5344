"""Models that predict at any point: what the species maps and the point queries run.

A model can be evaluated anywhere in the two regions when it reads only what is known
everywhere: the 27 environmental values, the coordinates and the country (the region whose
rasters a point is read from). That is the MLP experiments whose tabular features are
among ``env``, ``coordinates`` and ``country``, the baselines whose settings say so
(``geolifeclef.settings.families``) and the blends of these. Models that read patches
(CNN, fusion, or patch features such as land-cover shares) cannot: a patch exists only at
an observation.

Each mappable model is described by a :class:`PointModelSpec`, written by the rule
``describe_map_model`` to ``results/maps/{model}/model.json`` (the files it needs and its
settings) and read by the map rules and by ``geolifeclef query``: one way to
reload a model, whoever asks. ``geolifeclef.maps.trained_models.load_point_model`` turns
it into a :class:`PointModel`
whose ``probabilities(latitude, longitude, env)`` returns every species' probability,
column j being row j of the species table, through the same functions as the model's own
prediction rule (``run_prediction``'s batch features, the baseline's fitted model), so a
point query equals the model's prediction at an observation.

This module holds the specs and the blends, without torch or scikit-learn: the jobs that
describe models, draw the true maps (``geolifeclef.demo.true_maps``) and the MESS maps,
and summarise them load neither (seconds a job). The trained models are in
``geolifeclef.maps.trained_models``.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geolifeclef.atomic import write_text

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Model specs: how to reload a model, on disk
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointModelSpec:
    """Everything needed to reload a model for predictions at any point.

    ``kind``: a baseline family (file ``model``: what its predict job saved),
    ``experiment`` (files ``model``, ``stats``), ``blend`` (``parts``: specs and weights),
    or ``unmappable`` (``reason`` says why). Paths are relative to the workflow's working
    directory.
    """

    name: str
    kind: str
    species_table: str = ""
    species_details: str = ""
    data_root: str = ""
    files: dict[str, str] = field(default_factory=dict)
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
