"""Batch features: what a model reads, built from a ``GlcDataset`` batch.

A ``GlcDataset`` batch holds raw inputs (normalised patches, env values, coordinates, patch
statistics); a ``SpeciesModel`` reads ``tabular`` (the chosen feature groups, concatenated
in ``TABULAR_SIZES`` order) and ``patches`` (the CNN's modalities, archive or derived).
``ModelBatch`` turns one into the other inside the DataLoader workers; what an experiment
must load for that is decided in ``geolifeclef.settings.inputs`` (``inputs_needed``).
"""

import numpy as np
import torch

from geolifeclef.layout import region_digits
from geolifeclef.settings.inputs import (
    DERIVED_MODALITIES,
    PATCH_STAT_COLUMNS,
    PATCH_STAT_GROUPS,
    TABULAR_SIZES,
)


def unit_sphere(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """Coordinates as a 3D unit vector: no seam at +-180 degrees, distances preserved."""
    lat, lon = np.radians(latitude), np.radians(longitude)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def ndvi(red: torch.Tensor, near_ir: torch.Tensor) -> torch.Tensor:
    """(NIR - R) / (NIR + R) of raw reflectances, 0 where both are 0."""
    red, near_ir = red.float(), near_ir.float()
    total = near_ir + red
    return torch.where(total > 0, (near_ir - red) / total.clamp_min(1e-6), torch.zeros_like(total))


class ModelBatch:
    """Turns a ``GlcDataset`` batch into what ``SpeciesModel`` reads: ``tabular`` (the
    chosen feature groups, in TABULAR_SIZES order) and ``patches`` (the CNN's modalities).

    ``stats`` (the normalisation statistics the dataset used) let derived channels such as
    NDVI be computed from raw reflectances. Runs as the dataset's ``transform``, so inside
    the DataLoader workers.
    """

    def __init__(
        self, tabular: tuple[str, ...], cnn_modalities: tuple[str, ...], stats: dict | None = None
    ) -> None:
        self.tabular = tuple(g for g in TABULAR_SIZES if g in tabular)
        self.cnn_modalities = tuple(cnn_modalities)
        self.stats = stats
        self.stat_columns = {
            group: [PATCH_STAT_COLUMNS.index(c) for c in columns]
            for group, columns in PATCH_STAT_GROUPS.items()
        }

    def __call__(self, batch: dict) -> dict:
        parts = []
        for group in self.tabular:
            if group == "env":
                parts.append(batch["env"].float())
            elif group == "coordinates":
                coords = batch["coords"].double().numpy()
                parts.append(torch.from_numpy(unit_sphere(coords[:, 0], coords[:, 1])).float())
            elif group == "country":
                us = region_digits(batch["observation_id"].numpy()) == 2
                parts.append(torch.from_numpy(us.astype(np.float32))[:, None])
            else:
                parts.append(batch["patch_stats"][:, self.stat_columns[group]].float())
        out = {
            "observation_id": batch["observation_id"],
            "patches": {m: self._patch(batch, m) for m in self.cnn_modalities},
        }
        if parts:
            out["tabular"] = torch.cat(parts, dim=1)
        if "label" in batch:
            out["label"] = batch["label"]
        return out

    def _patch(self, batch: dict, modality: str) -> torch.Tensor:
        if modality not in DERIVED_MODALITIES:
            return batch[modality]
        if modality == "ndvi":
            return ndvi(self._raw(batch, "rgb")[:, :1], self._raw(batch, "near_ir"))
        return batch["rgb"][:, ("red", "green", "blue").index(modality)][:, None]

    def _raw(self, batch: dict, modality: str) -> torch.Tensor:
        """A normalised modality back in its raw units (the dataset's ``(x - mean) / std``
        undone), or as it is when the batch is not normalised."""
        data = batch[modality].float()
        if self.stats is None:
            return data
        entry = self.stats["patches"][modality]
        mean = torch.tensor(entry["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(entry["std"], dtype=torch.float32).view(1, -1, 1, 1)
        return data * std.clamp_min(1e-6) + mean
