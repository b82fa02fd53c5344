"""Decoding the encoded store's bytes on CPU, a batch at a time (numpy only, no torch: the
cache-building and statistics jobs use it, and importing torch would cost each job seconds).

The encoded store keeps each patch file's bytes as in the archive. The decoders, chosen
by measurement on the real and the demo files (bench/README.md, "Encoded store"):

- JPEG (``rgb``, ``near_ir``; the 2024 Sentinel-2 ``s2_rgb``, ``s2_nir``): simplejpeg
  (libjpeg-turbo), about 2x PIL, bit-exact with ``patches.files.read_patch`` (PIL) with
  its default settings (accurate integer IDCT, fancy upsampling; never
  ``fastdct``/``fastupsample``, which change pixels).
- TIFF (``altitude``, ``landcover``; the 2025 Sentinel-2 ``s2``, four bands): imagecodecs'
  libtiff decoder, about 5x ``tifffile.imread`` on these small files (whose headers cost
  more than their pixels), bit-exact with it.

A build checks every file with the same decoders (``check_patch_bytes``), so a file the
loader could not decode is found when the store is built, never mid-epoch. JPEGs are
checked at 1/8 scale: the whole entropy-coded stream is parsed (where every decoding
error arises) without the inverse DCT and colour conversion, 1.3-1.8x faster.

On CUDA the JPEGs are decoded on the GPU instead (``geolifeclef.patches.device_decode``).
"""

from collections.abc import Sequence
from pathlib import Path

import imagecodecs
import numpy as np
import simplejpeg

from geolifeclef.layout import ALL_PATCH_MODALITIES
from geolifeclef.patches.files import PatchFileError, check_bands, check_format
from geolifeclef.patches.geometry import transform_batch

PIL_MODES = {"YCbCr": "RGB", "RGB": "RGB", "Gray": "L", "CMYK": "CMYK", "YCCK": "CMYK"}
"""simplejpeg's colour space of a JPEG -> the mode PIL opens it in (read_patch's check)."""
CHECK_SCALE = {"min_height": 1, "min_width": 1, "min_factor": 8}
"""simplejpeg's 1/8-scale decoding: every coefficient parsed, no IDCT at full size."""


def check_patch_bytes(path: Path, data: bytes, modality: str, size: int) -> None:
    """Raise PatchFileError naming ``path`` unless ``data`` decodes with the loader's
    decoder to a ``size`` x ``size`` patch of the modality's colour mode and dtype."""
    check_format(path, data, modality)
    record = ALL_PATCH_MODALITIES[modality]
    try:
        if record.codec == "jpeg":
            colorspace, expected_mode = record.jpeg_colorspace
            height, width, found, _ = simplejpeg.decode_jpeg_header(data)
            mode = PIL_MODES.get(found, found)
            if mode != expected_mode:
                raise PatchFileError(path, f"JPEG mode {mode}, expected {expected_mode}")
            shape = (height, width)
            simplejpeg.decode_jpeg(data, colorspace=colorspace, **CHECK_SCALE)
        else:
            array = imagecodecs.tiff_decode(data)
            expected = record.file_dtype
            if array.dtype.newbyteorder("=") != expected.newbyteorder("="):
                raise PatchFileError(path, f"dtype {array.dtype}, expected {expected}")
            check_bands(path, array, record.channels)
            shape = array.shape[:2]
    except PatchFileError:
        raise
    except Exception as error:  # the decoders raise many kinds on corrupt data
        raise PatchFileError(path, f"unreadable ({type(error).__name__}: {error})") from None
    if shape != (size, size):
        raise PatchFileError(path, f"shape {shape}, expected ({size}, {size})")


def decode_batch(blobs: Sequence, modality: str, source_size: int) -> np.ndarray:
    """Decode the checked ``blobs`` (bytes-like) of one modality into (B, C, S, S) source
    pixels in the modality's array dtype; an empty blob (a filled bad file) gives zeros."""
    record = ALL_PATCH_MODALITIES[modality]
    channels, dtype = record.channels, record.array_dtype
    if record.codec == "jpeg":
        colorspace = record.jpeg_colorspace[0]
        hwc = np.zeros((len(blobs), source_size, source_size, channels), dtype=dtype)
        for i, blob in enumerate(blobs):
            if len(blob):
                simplejpeg.decode_jpeg(blob, colorspace=colorspace, buffer=hwc[i])
        return hwc.transpose(0, 3, 1, 2)
    if channels > 1:  # bands interleaved in the file: decoded H x W x bands
        hwc = np.zeros((len(blobs), source_size, source_size, channels), dtype=dtype)
        for i, blob in enumerate(blobs):
            if len(blob):
                imagecodecs.tiff_decode(blob, out=hwc[i])
        return hwc.transpose(0, 3, 1, 2)
    out = np.zeros((len(blobs), 1, source_size, source_size), dtype=dtype)
    for i, blob in enumerate(blobs):
        if len(blob):
            imagecodecs.tiff_decode(blob, out=out[i, 0])
    return out


def decode_rows(blobs: Sequence, modality: str, source_size: int, size: int, mode: str):
    """``decode_batch``, then cropped or resized to ``size`` (patch_geometry)."""
    return transform_batch(decode_batch(blobs, modality, source_size), modality, size, mode)
