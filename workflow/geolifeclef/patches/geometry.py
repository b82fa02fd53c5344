"""Patch geometry: a decoded patch cut or averaged down to the size a model reads.

``crop`` keeps the centre S x S pixels (bit-exact with the files); ``resize`` averages
S x S blocks of the source (rounded half up, exact in integers; over the pixels with data
of a modality with a nodata value) and takes the majority code of each block for land
cover (a category, not a quantity). Both return channels first, ``(C, S, S)``, in the
modality's array dtype, as caches and models want them.
"""

import numpy as np

from geolifeclef.layout import ALL_PATCH_MODALITIES

MODES = ("crop", "resize")


def transform_patch(array: np.ndarray, modality: str, size: int, mode: str) -> np.ndarray:
    """A decoded patch (HxW or HxWx3, as ``read_patch`` returns it) as a cache row:
    (channels, size, size) in the cache dtype, centre-cropped or block-resized."""
    chw = array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
    return transform_batch(chw[None], modality, size, mode)[0]


def transform_batch(batch: np.ndarray, modality: str, size: int, mode: str) -> np.ndarray:
    """Decoded patches (B, C, H, W) as cache rows: (B, C, size, size) in the cache dtype,
    centre-cropped or block-resized (the one implementation behind ``transform_patch``)."""
    record = ALL_PATCH_MODALITIES[modality]
    source = batch.shape[-1]
    if mode == "crop" or size == source:
        start = (source - size) // 2
        out = batch[..., start : start + size, start : start + size]
    elif record.continuous and record.nodata is not None:
        out = _block_mean_of_data(batch, source // size, record.nodata)
    elif record.continuous:
        out = _block_mean(batch, source // size)
    else:
        out = _block_majority(batch, source // size)
    return np.ascontiguousarray(out, dtype=record.array_dtype)


def _block_mean(batch: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each (factor x factor) block of the last two axes, rounded half up, exact in
    integer arithmetic.

    Sums strided slices (factor additions per axis) rather than reducing a 6-d view:
    several times faster, and a build spends its time here for ``resize``.
    """
    area = factor * factor
    small = batch.dtype == np.uint8 and area * 255 < 2**16
    rows = batch[..., 0::factor, :].astype(np.uint16 if small else np.int64)
    for i in range(1, factor):
        rows += batch[..., i::factor, :]
    sums = rows[..., 0::factor].copy()
    for j in range(1, factor):
        sums += rows[..., j::factor]
    return (sums.astype(np.int64) + area // 2) // area


def _block_mean_of_data(batch: np.ndarray, factor: int, nodata: int) -> np.ndarray:
    """Mean of the pixels with data of each (factor x factor) block, rounded half up as
    ``_block_mean`` (equal to it where every pixel has data); ``nodata`` where none has."""
    has_data = batch != nodata
    sums = _block_sum(np.where(has_data, batch, 0).astype(np.int64), factor)
    counts = _block_sum(has_data.astype(np.int64), factor)
    means = (sums + counts // 2) // np.maximum(counts, 1)
    return np.where(counts > 0, means, nodata)


def _block_sum(array: np.ndarray, factor: int) -> np.ndarray:
    *lead, height, width = array.shape
    blocks = array.reshape(*lead, height // factor, factor, width // factor, factor)
    return blocks.sum(axis=(-3, -1))


def _block_majority(batch: np.ndarray, factor: int) -> np.ndarray:
    """Most frequent code of each (factor x factor) block of the last two axes, the
    smallest on ties."""
    *lead, height, width = batch.shape
    size = height // factor
    blocks = batch.reshape(*lead, size, factor, size, factor)
    codes = np.moveaxis(blocks, -3, -2).reshape(-1, factor * factor).astype(np.int64)
    n_codes = int(codes.max()) + 1 if codes.size else 1
    cell = np.arange(len(codes))[:, None] * n_codes
    counts = np.bincount((cell + codes).ravel(), minlength=len(codes) * n_codes)
    best = counts.reshape(len(codes), n_codes).argmax(axis=1)
    return best.reshape(*lead, size, size)
