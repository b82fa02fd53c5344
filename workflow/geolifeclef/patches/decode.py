"""Decoding the encoded store's bytes: on CPU a batch at a time, JPEGs on a GPU in batches.

The encoded store keeps each patch file's bytes as in the archive. The decoders, chosen
by measurement on the real and the demo files (bench/README.md, "Encoded store"):

- JPEG (``rgb``, ``near_ir``): simplejpeg (libjpeg-turbo), about 2x PIL, bit-exact with
  ``patch_files.read_patch`` (PIL) with its default settings (accurate integer IDCT,
  fancy upsampling; never ``fastdct``/``fastupsample``, which change pixels).
- TIFF (``altitude``, ``landcover``): imagecodecs' libtiff decoder, about 5x
  ``tifffile.imread`` on these small files (whose headers cost more than their pixels),
  bit-exact with it.

A build checks every file with the same decoders (``check_patch_bytes``), so a file the
loader could not decode is found when the store is built, never mid-epoch. JPEGs are
checked at 1/8 scale: the whole entropy-coded stream is parsed (where every decoding
error arises) without the inverse DCT and colour conversion, 1.3-1.8x faster.

On CUDA, ``EncodedJpegs`` carries a batch's JPEG bytes out of the DataLoader workers, and
the loader's move to the device (``geolifeclef.data.dataset.to_device``) decodes them on
the GPU (nvJPEG through torchvision), then crops or resizes (and normalises) them there.
nvJPEG's IDCT is not libjpeg-turbo's: pixels may differ by a few levels from the CPU path
(``bench/bench_gpu_decode.py`` reports it).
"""

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import simplejpeg
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from geolifeclef.layout import PATCH_MODALITIES
from geolifeclef.models.features import normalize_patches
from geolifeclef.patches.files import PatchFileError
from geolifeclef.patches.geometry import transform_batch

"""JPEG modality -> (colorspace simplejpeg decodes to, PIL mode its files must have)."""
PIL_MODES = {"YCbCr": "RGB", "RGB": "RGB", "Gray": "L", "CMYK": "CMYK", "YCCK": "CMYK"}
"""simplejpeg's colour space of a JPEG -> the mode PIL opens it in (read_patch's check)."""
CHECK_SCALE = {"min_height": 1, "min_width": 1, "min_factor": 8}
"""simplejpeg's 1/8-scale decoding: every coefficient parsed, no IDCT at full size."""


def check_patch_bytes(path: Path, data: bytes, modality: str, size: int) -> None:
    """Raise PatchFileError naming ``path`` unless ``data`` decodes with the loader's
    decoder to a ``size`` x ``size`` patch of the modality's colour mode and dtype."""
    try:
        if PATCH_MODALITIES[modality].codec == "jpeg":
            colorspace, expected_mode = PATCH_MODALITIES[modality].jpeg_colorspace
            height, width, found, _ = simplejpeg.decode_jpeg_header(data)
            mode = PIL_MODES.get(found, found)
            if mode != expected_mode:
                raise PatchFileError(path, f"JPEG mode {mode}, expected {expected_mode}")
            shape = (height, width)
            simplejpeg.decode_jpeg(data, colorspace=colorspace, **CHECK_SCALE)
        else:
            array = imagecodecs.tiff_decode(data)
            expected = PATCH_MODALITIES[modality].file_dtype
            if array.dtype.newbyteorder("=") != expected.newbyteorder("="):
                raise PatchFileError(path, f"dtype {array.dtype}, expected {expected}")
            if array.ndim != 2:
                raise PatchFileError(path, f"shape {array.shape}, expected 2 dimensions")
            shape = array.shape
    except PatchFileError:
        raise
    except Exception as error:  # the decoders raise many kinds on corrupt data
        raise PatchFileError(path, f"unreadable ({type(error).__name__}: {error})") from None
    if shape != (size, size):
        raise PatchFileError(path, f"shape {shape}, expected ({size}, {size})")


def decode_batch(blobs: Sequence, modality: str, source_size: int) -> np.ndarray:
    """Decode the checked ``blobs`` (bytes-like) of one modality into (B, C, S, S) source
    pixels in the modality's array dtype; an empty blob (a filled bad file) gives zeros."""
    channels, dtype = PATCH_MODALITIES[modality].channels, PATCH_MODALITIES[modality].array_dtype
    if PATCH_MODALITIES[modality].codec == "jpeg":
        colorspace = PATCH_MODALITIES[modality].jpeg_colorspace[0]
        hwc = np.zeros((len(blobs), source_size, source_size, channels), dtype=dtype)
        for i, blob in enumerate(blobs):
            if len(blob):
                simplejpeg.decode_jpeg(blob, colorspace=colorspace, buffer=hwc[i])
        return hwc.transpose(0, 3, 1, 2)
    out = np.zeros((len(blobs), 1, source_size, source_size), dtype=dtype)
    for i, blob in enumerate(blobs):
        if len(blob):
            imagecodecs.tiff_decode(blob, out=out[i, 0])
    return out


def decode_rows(blobs: Sequence, modality: str, source_size: int, size: int, mode: str):
    """``decode_batch``, then cropped or resized to ``size`` (patch_geometry)."""
    return transform_batch(decode_batch(blobs, modality, source_size), modality, size, mode)


# --------------------------------------------------------------------------------------
# GPU decoding of JPEGs (taken only when a Dataset is asked for it, on CUDA)
# --------------------------------------------------------------------------------------


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
        channels = PATCH_MODALITIES[self.modality].channels
        bounds = self.offsets.tolist()
        present = [i for i in range(len(self)) if bounds[i + 1] > bounds[i]]
        out = torch.zeros(
            (len(self), channels, self.source_size, self.source_size),
            dtype=torch.uint8,
            device=device,
        )
        if present:
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
    """``patch_geometry.transform_batch`` of a continuous (uint8) modality, in torch on the
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
