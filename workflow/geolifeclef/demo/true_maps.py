"""The demo's hidden species model as a point model, for its true maps (rule
``map_demo_truth``): the maps draw it as they draw any trained model, and the maps of the
models are correlated with them."""

from pathlib import Path

import numpy as np

from geolifeclef.demo.truth import read_world, true_probabilities
from geolifeclef.maps.point_models import PointModel


class DemoTruthModel(PointModel):
    """The demo's true species probabilities (``demo.truth.true_probabilities``) at any
    point, for the species of ``species_ids`` in that order."""

    def __init__(self, world_path: str | Path, species_ids: np.ndarray, name: str = "truth"):
        self.name = name
        self.world = read_world(world_path)
        self.species_ids = np.asarray(species_ids, dtype=np.int64)

    def probabilities(self, latitude, longitude, env) -> np.ndarray:
        return true_probabilities(self.world, latitude, longitude)[:, self.species_ids]
