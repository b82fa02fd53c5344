"""Decoding the encoded store's JPEGs on the training device: on CUDA, ``EncodedJpegs``
carries a batch's JPEG bytes out of the DataLoader workers, and the loader's move to the
device (``geolifeclef.data.dataset.to_device``) decodes them on the GPU (nvJPEG through
torchvision), then crops or resizes (and normalises) them there. nvJPEG's IDCT is not
libjpeg-turbo's: pixels may differ by a few levels from the CPU path
(``geolifeclef.patches.decode``; ``bench/bench_gpu_decode.py`` reports it).
"""

import dataclasses
import warnings
from dataclasses import dataclass

import torch

from geolifeclef.layout import ALL_PATCH_MODALITIES
from geolifeclef.patches.normalize import normalize_patches


@dataclass
class EncodedJpegs:
    """The JPEG bytes of one modality for a batch, to decode on a device later.

    ``data`` holds the blobs end to end and ``offsets`` (B + 1) where each starts; an
    empty blob is a filled bad file (zeros). ``mean``/``std`` (per channel) normalise
    after decoding; None keeps uint8.
    """

    data: torch.Tensor
    offsets: torch.Tensor
    modality: str
    source_size: int
    size: int
    mode: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def decode(self, device: torch.device | str) -> torch.Tensor:
        """(B, C, size, size) on ``device``: uint8, or float32 when normalised."""
        device = torch.device(device)
        channels = ALL_PATCH_MODALITIES[self.modality].channels
        bounds = self.offsets.tolist()
        present = [i for i in range(len(self)) if bounds[i + 1] > bounds[i]]
        out = torch.zeros(
            (len(self), channels, self.source_size, self.source_size),
            dtype=torch.uint8,
            device=device,
        )
        if present:
            # deferred: torchvision loads torch._dynamo (~3 CPU s a process); only CUDA
            # decoding needs it, not the CPU jobs that read this module
            from torchvision.io import ImageReadMode, decode_jpeg

            mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
            blobs = [self.data[bounds[i] : bounds[i + 1]] for i in present]
            with warnings.catch_warnings():
                # torchvision 0.29 deprecates its image codecs for TorchCodec, which is not
                # in the pins; decode_jpeg works as documented until it is removed.
                warnings.simplefilter("ignore", DeprecationWarning)
                images = decode_jpeg(blobs, mode=mode, device=device)
            out[torch.tensor(present, device=device)] = torch.stack(images)
        out = crop_or_resize(out, self.size, self.mode)
        return out if self.mean is None else normalize_patches(out, self.mean, self.std)

    def on_device(self, device: torch.device | str) -> torch.Tensor:
        """``decode``: what ``geolifeclef.data.dataset.to_device`` calls."""
        return self.decode(device)


def join_encoded(pieces: list[EncodedJpegs], order: torch.Tensor) -> EncodedJpegs:
    """The rows of ``pieces`` (same modality and settings) end to end, put in ``order``."""
    blobs = []
    for piece in pieces:
        bounds = piece.offsets.tolist()
        blobs += [piece.data[bounds[i] : bounds[i + 1]] for i in range(len(piece))]
    blobs = [blobs[i] for i in order.tolist()]
    offsets = torch.zeros(len(blobs) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor([len(b) for b in blobs], dtype=torch.int64), 0)
    data = torch.cat(blobs) if blobs else pieces[0].data[:0]
    return dataclasses.replace(pieces[0], data=data, offsets=offsets)


def crop_or_resize(batch: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``patches.geometry.transform_batch`` of a continuous (uint8) modality, in torch on the
    batch's device: the centre crop, or the block mean rounded half up (exact)."""
    source = batch.shape[-1]
    if mode == "crop" or size == source:
        start = (source - size) // 2
        return batch[..., start : start + size, start : start + size]
    factor, (b, c) = source // size, batch.shape[:2]
    blocks = batch.reshape(b, c, size, factor, size, factor)
    sums = blocks.sum(dim=(3, 5), dtype=torch.int32)
    area = factor * factor
    return torch.div(sums + area // 2, area, rounding_mode="floor").to(batch.dtype)
