"""Patch geometry: a decoded patch cut or averaged down to the size a model reads.

``crop`` keeps the centre S x S pixels (bit-exact with the files); ``resize`` averages
S x S blocks of the source (rounded half up, exact in integers) and takes the majority
code of each block for land cover (a category, not a quantity). Both return channels
first, ``(C, S, S)``, in the modality's array dtype, as caches and models want them.
"""

import numpy as np

from .layout import CONTINUOUS_MODALITIES, PATCH_ARRAY_DTYPES

MODES = ("crop", "resize")


def check_geometry(source_size: int, size: int, mode: str) -> None:
    """Refuse a size that the mode cannot produce from ``source_size`` pixel patches."""
    if size > source_size:
        raise ValueError(
            f"patches.size {size} is larger than the source patches ({source_size} px); "
            f"choose a size <= {source_size}"
        )
    if mode == "resize" and source_size % size:
        divisors = [d for d in range(1, source_size + 1) if source_size % d == 0]
        raise ValueError(
            f"patches.mode resize needs a size that divides the source side {source_size}; "
            f"choose one of {divisors[-6:]}, or patches.mode: crop"
        )


def transform_patch(array: np.ndarray, modality: str, size: int, mode: str) -> np.ndarray:
    """A decoded patch (HxW or HxWx3, as ``read_patch`` returns it) as a cache row:
    (channels, size, size) in the cache dtype, centre-cropped or block-resized."""
    hwc = array if array.ndim == 3 else array[:, :, None]
    source, channels = hwc.shape[0], hwc.shape[2]
    if mode == "crop" or size == source:
        start = (source - size) // 2
        out = hwc[start : start + size, start : start + size]
    else:
        factor = source // size
        if modality in CONTINUOUS_MODALITIES:
            out = _block_mean(hwc, factor)
        else:
            out = _block_majority(hwc.reshape(size, factor, size, factor, channels))
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=PATCH_ARRAY_DTYPES[modality])


def _block_mean(hwc: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each (factor x factor) block, rounded half up, exact in integer arithmetic.

    Sums strided slices (factor additions per axis) rather than reducing a 5-d view:
    several times faster, and a build spends its time here for ``resize``.
    """
    area = factor * factor
    small = hwc.dtype == np.uint8 and area * 255 < 2**16
    rows = hwc[0::factor].astype(np.uint16 if small else np.int64)
    for i in range(1, factor):
        rows += hwc[i::factor]
    sums = rows[:, 0::factor].copy()
    for j in range(1, factor):
        sums += rows[:, j::factor]
    return (sums.astype(np.int64) + area // 2) // area


def _block_majority(blocks: np.ndarray) -> np.ndarray:
    """Most frequent code of each (factor x factor) block, the smallest on ties."""
    size, factor, _, _, channels = blocks.shape
    codes = blocks.transpose(0, 2, 4, 1, 3).reshape(-1, factor * factor).astype(np.int64)
    n_codes = int(codes.max()) + 1
    cell = np.arange(len(codes))[:, None] * n_codes
    counts = np.bincount((cell + codes).ravel(), minlength=len(codes) * n_codes)
    best = counts.reshape(len(codes), n_codes).argmax(axis=1)
    return best.reshape(size, size, channels)
