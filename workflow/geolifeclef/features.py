"""Batch features: what a model reads, built from a ``GlcDataset`` batch.

A ``GlcDataset`` batch holds raw inputs (patches, env values, coordinates); a
``SpeciesModel`` reads ``tabular`` (the chosen feature groups, concatenated in
``TABULAR_SIZES`` order) and ``patches`` (the CNN's modalities). ``ModelBatch`` turns
one into the other inside the DataLoader workers, and ``patch_modalities`` decides which
patch modalities an experiment must load for that: the one answer to "does this
experiment read the patch caches".
"""

from collections.abc import Sequence

import numpy as np
import torch

from .layout import ENV_VARIABLES, N_LANDCOVER_CODES

TABULAR_SIZES = {
    "env": len(ENV_VARIABLES),
    "coordinates": 3,
    "landcover_shares": N_LANDCOVER_CODES,
    "altitude_stats": 4,
}
"""Width of each tabular feature group, in the order ``ModelBatch`` concatenates them."""

PATCH_FEATURES = {"landcover_shares": "landcover", "altitude_stats": "altitude"}
"""Tabular feature groups computed from a patch modality, and that modality."""


def patch_modalities(
    kind: str, cnn_modalities: Sequence[str], tabular: Sequence[str]
) -> tuple[str, ...]:
    """Patch modalities an experiment loads: those its CNN reads (not for an ``mlp``) and
    those its tabular patch features are computed from; empty when it reads no cache."""
    needed = list(cnn_modalities) if kind != "mlp" else []
    for group, modality in PATCH_FEATURES.items():
        if group in tabular and modality not in needed:
            needed.append(modality)
    return tuple(needed)


def unit_sphere(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """Coordinates as a 3D unit vector: no seam at +-180 degrees, distances preserved."""
    lat, lon = np.radians(latitude), np.radians(longitude)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def patch_features(
    patches: dict[str, torch.Tensor], groups: tuple[str, ...]
) -> torch.Tensor | None:
    """Tabular features computed from the patches of a batch: the land-cover shares
    (fraction of each code) and altitude statistics (mean, std, min, range of the
    standardised altitude), or None when none is asked for."""
    parts = []
    if "landcover_shares" in groups:
        codes = patches["landcover"].long().flatten(1).clamp(0, N_LANDCOVER_CODES - 1)
        counts = torch.zeros(codes.shape[0], N_LANDCOVER_CODES, device=codes.device)
        counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=counts.dtype))
        parts.append(counts / codes.shape[1])
    if "altitude_stats" in groups:
        altitude = patches["altitude"].float().flatten(1)
        low, high = altitude.amin(1), altitude.amax(1)
        parts.append(torch.stack([altitude.mean(1), altitude.std(1), low, high - low], dim=1))
    return torch.cat(parts, dim=1) if parts else None


class ModelBatch:
    """Turns a ``GlcDataset`` batch into what ``SpeciesModel`` reads: ``tabular`` (the
    chosen feature groups, in TABULAR_SIZES order) and ``patches`` (the CNN's modalities).

    Runs as the dataset's ``transform``, so inside the DataLoader workers.
    """

    def __init__(self, tabular: tuple[str, ...], cnn_modalities: tuple[str, ...]) -> None:
        self.tabular = tuple(g for g in TABULAR_SIZES if g in tabular)
        self.cnn_modalities = tuple(cnn_modalities)

    def __call__(self, batch: dict) -> dict:
        parts = []
        if "env" in self.tabular:
            parts.append(batch["env"].float())
        if "coordinates" in self.tabular:
            coords = batch["coords"].double().numpy()
            parts.append(torch.from_numpy(unit_sphere(coords[:, 0], coords[:, 1])).float())
        derived = patch_features(batch, self.tabular)
        if derived is not None:
            parts.append(derived)
        out = {
            "observation_id": batch["observation_id"],
            "patches": {m: batch[m] for m in self.cnn_modalities},
        }
        if parts:
            out["tabular"] = torch.cat(parts, dim=1)
        if "label" in batch:
            out["label"] = batch["label"]
        return out
