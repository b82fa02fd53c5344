"""Reading and writing the four patch files of an observation, in the archive's formats.

The real files (see ``glc22-sample``): baseline JPEG at libjpeg quality 75 with 4:2:0
chroma subsampling for ``rgb`` and ``near_ir``; TIFF written by tifffile with Deflate
(code 32946), big-endian int16 for ``altitude`` and little-endian uint8 for ``landcover``.
"""

import io
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from geolifeclef.errors import InputDataError
from geolifeclef.layout import ALL_PATCH_MODALITIES

JPEG_QUALITY = 75
TIFF_DEFLATE = 32946  # the old "Deflate (PKZIP)" code of the real files, not Adobe's 8
CODEC_FORMATS = {"jpeg": "JPEG", "tiff": "TIFF"}
"""A modality's codec -> the image format its files are in (in the archive)."""
SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"II+\x00": "TIFF",  # BigTIFF
    b"MM\x00+": "TIFF",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}
"""The first bytes of the image formats a patch file may have been saved in by mistake."""


class PatchFileError(InputDataError):
    """A patch file is missing, unreadable, or not of the expected shape and dtype."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            path,
            problem,
            fix="restore the file from the archive, or set patches.on_bad_file: fill "
            "to fill it with zeros and flag it in the cache index",
        )


def image_format(data: bytes) -> str | None:
    """The image format that a file's first bytes say (``SIGNATURES``; ``WebP``), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for start, name in SIGNATURES.items() if data.startswith(start)), None)


def check_format(path: Path, data: bytes, modality: str) -> None:
    """Refuse a patch file whose bytes are an image of another format than the modality's
    (a PNG saved as ``.jpg``), in the same words whichever store reads it: the decoded
    store's PIL opens a PNG as any image, the encoded store's libjpeg refuses it in its
    own terms. Bytes of no format it knows are left to the decoder (a damaged file)."""
    expected = CODEC_FORMATS[ALL_PATCH_MODALITIES[modality].codec]
    found = image_format(data)
    if found is not None and found != expected:
        raise PatchFileError(
            path,
            f"a {found} image, not a {expected}: {modality} patches are {expected} files, "
            "as in the archive",
        )


def write_patch(path: Path, modality: str, array: np.ndarray) -> None:
    """Write one patch file in the archive's format (``array`` is HxW or HxWx3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = ALL_PATCH_MODALITIES.get(modality)
    if record is None:
        raise ValueError(f"unknown patch modality {modality!r}")
    if record.codec == "jpeg":
        mode = record.jpeg_colorspace[1]
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode=mode).save(
            path, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0"
        )
    else:
        dtype = record.file_dtype
        width = array.shape[1]
        tifffile.imwrite(
            path,
            np.asarray(array).astype(dtype.newbyteorder("="), copy=False),
            byteorder=dtype.byteorder if dtype.byteorder in "<>" else "<",
            compression=TIFF_DEFLATE,
            rowsperstrip=max(
                1, 65536 // (width * dtype.itemsize)
            ),  # 64 KiB strips, as the real files
            resolution=(1, 1),
            resolutionunit="NONE",
        )


def check_bands(path: Path, array: np.ndarray, channels: int) -> None:
    """Raise PatchFileError naming ``path`` unless ``array`` is H x W (one band) or
    H x W x ``channels`` (rgb, the 2025 Sentinel-2 patches), as the decoders return them."""
    ndim = 2 if channels == 1 else 3
    if array.ndim != ndim or (ndim == 3 and array.shape[2] != channels):
        bands = "1 band" if channels == 1 else f"{channels} bands"
        raise PatchFileError(path, f"shape {array.shape}, expected {bands}")


def read_patch(path: Path, modality: str, size: int | None = None) -> np.ndarray:
    """Read one patch file as a native-endian array: HxWx3 for rgb, HxW otherwise.

    Raises PatchFileError naming the file when it is missing, unreadable, or has the
    wrong shape or dtype (``size`` = expected side length, if given).
    """
    path = Path(path)
    record = ALL_PATCH_MODALITIES.get(modality)
    if record is None:
        raise ValueError(f"unknown patch modality {modality!r}")
    try:
        data = path.read_bytes()  # once: its format is checked, then it is decoded
        check_format(path, data, modality)
        if record.codec == "jpeg":
            with Image.open(io.BytesIO(data)) as image:
                expected_mode = record.jpeg_colorspace[1]
                if image.mode != expected_mode:
                    raise PatchFileError(path, f"JPEG mode {image.mode}, expected {expected_mode}")
                array = np.asarray(image)
        else:
            array = tifffile.imread(io.BytesIO(data))
    except FileNotFoundError:
        raise PatchFileError(path, "file is missing") from None
    except PatchFileError:
        raise
    except Exception as error:  # PIL and tifffile raise many kinds on corrupt data
        raise PatchFileError(path, f"unreadable ({type(error).__name__}: {error})") from None
    expected_dtype = record.file_dtype
    if array.dtype.newbyteorder("=") != expected_dtype.newbyteorder("="):
        raise PatchFileError(path, f"dtype {array.dtype}, expected {expected_dtype}")
    check_bands(path, array, record.channels)
    if size is not None and array.shape[:2] != (size, size):
        raise PatchFileError(path, f"shape {array.shape[:2]}, expected ({size}, {size})")
    return array.astype(array.dtype.newbyteorder("="), copy=False)
