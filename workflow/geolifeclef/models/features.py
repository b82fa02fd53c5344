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

from dataclasses import dataclass

import numpy as np
import torch

from geolifeclef.layout import CONTINUOUS_MODALITIES, region_digits
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


def normalize_patches(data: torch.Tensor, mean, std) -> torch.Tensor:
    """Patches (B, C, S, S) as float32 ``(x - mean) / std`` per channel (train statistics),
    on their device; ``data`` is left as it is."""
    shape = (1, -1, 1, 1)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=data.device).view(shape)
    std = torch.as_tensor(std, dtype=torch.float32, device=data.device).view(shape)
    # In place on a fresh copy: one float batch, not three (a 256 px batch is ~0.5 GB).
    return data.to(torch.float32, copy=True).sub_(mean).div_(std.clamp_min(1e-6))


RGB_BANDS = ("red", "green", "blue")


@dataclass
class RawPatches:
    """A batch's patches as read, to be made into the CNN's modalities on a device.

    ``sources``: the cached modalities the CNN's modalities come from, in their cache
    dtypes (uint8, int16 altitude), or JPEG bytes still encoded (``EncodedJpegs``, decoded
    by ``on_device``). ``stats``: the ``patches`` section of the normalisation statistics
    (None: the patches are used as they are).
    """

    sources: dict
    modalities: tuple[str, ...]
    stats: dict | None = None

    def pin_memory(self) -> "RawPatches":
        """Page-locked copies of the tensors, for asynchronous copies to a GPU (the
        DataLoader's ``pin_memory`` calls it)."""
        pinned = {
            m: v.pin_memory() if isinstance(v, torch.Tensor) else v for m, v in self.sources.items()
        }
        return RawPatches(pinned, self.modalities, self.stats)

    def on_device(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The CNN's modalities on ``device``: continuous ones float32 normalised, NDVI from
        the raw reflectances, single bands normalised with their band's statistics,
        ``landcover`` uint8 codes."""
        device = torch.device(device)
        raw = {
            m: v.on_device(device) if hasattr(v, "on_device") else v.to(device, non_blocking=True)
            for m, v in self.sources.items()
        }
        return {m: self._make(m, raw) for m in self.modalities}

    def _make(self, modality: str, raw: dict[str, torch.Tensor]) -> torch.Tensor:
        if modality == "ndvi":
            return ndvi(raw["rgb"][:, :1], raw["near_ir"])
        if modality in RGB_BANDS:
            band = RGB_BANDS.index(modality)
            return self._normalized(raw["rgb"][:, band : band + 1], "rgb", band)
        if modality in CONTINUOUS_MODALITIES:
            return self._normalized(raw[modality], modality)
        return raw[modality]

    def _normalized(self, data: torch.Tensor, source: str, band: int | None = None):
        if self.stats is None:
            return data
        entry = self.stats[source]
        pick = slice(None) if band is None else slice(band, band + 1)
        return normalize_patches(data, entry["mean"][pick], entry["std"][pick])


class ModelBatch:
    """Turns a ``GlcDataset`` batch into what ``SpeciesModel`` reads: ``tabular`` (the
    chosen feature groups, in TABULAR_SIZES order) and ``patches`` (the CNN's modalities).

    Runs as the dataset's ``transform``, so inside the DataLoader workers: ``patches`` is
    then a ``RawPatches``, which the loader (``geolifeclef.data.dataset.to_device``) makes
    into the CNN's modalities on the training device. With ``stats`` (the normalisation
    statistics) the dataset must leave the patches raw (``GlcDataset(raw_patches=True)``);
    without, they are used as the dataset gives them.
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
        out = {"observation_id": batch["observation_id"], "patches": self._patches(batch)}
        if parts:
            out["tabular"] = torch.cat(parts, dim=1)
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
