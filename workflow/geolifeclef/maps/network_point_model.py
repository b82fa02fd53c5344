"""A trained network experiment at any point, for maps and queries
(``geolifeclef.maps.trained_models.load_point_model`` loads it from its spec)."""

import json
from pathlib import Path

import numpy as np
import torch

from geolifeclef.data.dataset import standardize_columns
from geolifeclef.data.rasters import point_ids
from geolifeclef.experiments.trained import load_trained
from geolifeclef.experiments.training import pick_device, predict_scores
from geolifeclef.maps.point_models import PointModel
from geolifeclef.models.features import ModelBatch
from geolifeclef.settings.families import POINT_FEATURES


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

    def probabilities(self, latitude, longitude, env) -> np.ndarray:

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
