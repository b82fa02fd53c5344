"""A batch's patches as read, shipped from the DataLoader workers and made into the CNN's
modalities on the training device (decoded, normalised, derived): the loader's half of
``geolifeclef.models.features.ModelBatch``, which builds them."""

from dataclasses import dataclass

import torch

from geolifeclef.layout import CONTINUOUS_MODALITIES
from geolifeclef.patches.normalize import ndvi, normalize_patches

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
