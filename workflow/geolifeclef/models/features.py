"""Batch features: what a model reads, built from a ``GlcDataset`` batch.

A ``GlcDataset`` batch holds raw inputs (patches, env values, coordinates, patch
statistics); a ``SpeciesModel`` reads ``tabular`` (the chosen feature groups, concatenated
in ``TABULAR_SIZES`` order) and ``patches`` (the CNN's modalities, archive or derived).
``ModelBatch`` turns one into the other in two halves: inside the DataLoader workers the
tabular features, and ``RawPatches``, the patches as read (uint8, int16 altitude, or JPEG
bytes), a quarter of the bytes of float32 to ship; after the transfer to the training
device, ``RawPatches.on_device`` decodes, normalises and derives (NDVI, single bands) them
there. What an experiment must load is decided in ``geolifeclef.settings.inputs``
(``inputs_needed``).
"""

import numpy as np
import torch

from geolifeclef.data.coordinates import unit_sphere
from geolifeclef.data.patch_batches import RawPatches
from geolifeclef.layout import CONTINUOUS_MODALITIES, region_digits
from geolifeclef.settings.inputs import (
    DERIVED_MODALITIES,
    PATCH_STAT_COLUMNS,
    PATCH_STAT_GROUPS,
    TABULAR_SIZES,
)


class ModelBatch:
    """Turns a ``GlcDataset`` batch into what ``SpeciesModel`` reads: ``tabular`` (the
    chosen feature groups, in TABULAR_SIZES order), ``patches`` (the CNN's modalities) and
    ``cubes`` (a survey edition's time-series cubes, by name).

    Runs as the dataset's ``transform``, so inside the DataLoader workers: ``patches`` is
    then a ``RawPatches``, which the loader (``geolifeclef.data.dataset.to_device``) makes
    into the CNN's modalities on the training device. With ``stats`` (the normalisation
    statistics) the dataset must leave the patches raw (``GlcDataset(raw_patches=True)``);
    without, they are used as the dataset gives them.
    """

    def __init__(
        self,
        tabular: tuple[str, ...],
        cnn_modalities: tuple[str, ...],
        stats: dict | None = None,
        cubes: tuple[str, ...] = (),
    ) -> None:
        self.tabular = tuple(g for g in TABULAR_SIZES if g in tabular)
        self.cnn_modalities = tuple(cnn_modalities)
        self.cubes = tuple(cubes)
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
        out = {"observation_id": batch["observation_id"], "patches": self._patches(batch)}
        if parts:
            out["tabular"] = torch.cat(parts, dim=1)
        if self.cubes:  # standardised by the dataset: a few kB a survey
            out["cubes"] = {cube: batch[cube] for cube in self.cubes}
        if "label" in batch:
            out["label"] = batch["label"]
        return out

    def _patches(self, batch: dict) -> RawPatches | dict:
        if not self.cnn_modalities:
            return {}
        sources = {
            source: batch[source]
            for modality in self.cnn_modalities
            for source in DERIVED_MODALITIES.get(modality, (modality,))
        }
        stats = None if self.stats is None else self.stats.get("patches")
        twice = [s for s, d in sources.items() if s in CONTINUOUS_MODALITIES and _normalized(d)]
        if stats is not None and twice:
            raise ValueError(
                f"ModelBatch normalises the patches on the device, but {', '.join(twice)} "
                "came normalised: build the GlcDataset with raw_patches=True"
            )
        return RawPatches(sources, self.cnn_modalities, stats)


def _normalized(data) -> bool:
    """Whether a batch's patches came normalised (float, or JPEGs to be normalised)."""
    if isinstance(data, torch.Tensor):
        return data.is_floating_point()
    return getattr(data, "mean", None) is not None
