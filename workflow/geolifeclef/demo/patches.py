"""The four patches of every observation: land cover, altitude, RGB and near-infrared.

Each site gets an expected land-cover mix from its hidden environment; its patches are then
rendered from a local draw around that mix, with smooth noise for texture and relief. Each
observation renders from its own seed, so the patches are the same whatever process renders
them, and the work is spread over worker processes. Rendering also returns the share of
each aligned land-cover class in the patch, which species respond to.
"""

import functools
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from geolifeclef.demo.sites import Sites
from geolifeclef.demo.spec import DemoSpec
from geolifeclef.layout import LANDCOVER_CODES, REGIONS, DatasetLayout
from geolifeclef.patches.files import write_patch

log = logging.getLogger(__name__)

ALIGNED_LANDCOVER = (
    "artificial",
    "cropland",
    "grassland",
    "broadleaf_forest",
    "conifer_forest",
    "shrubland",
    "wetland",
    "water",
    "bare",
)
"""The shared land-cover legend the demo draws patches from (``suggested_landcover``)."""

# Per aligned class: RGB colour and near-infrared reflectance of the imagery.
_CLASS_RGB = np.array(
    [
        [150, 145, 140],
        [200, 185, 120],
        [140, 170, 90],
        [60, 110, 50],
        [40, 80, 50],
        [150, 140, 90],
        [90, 120, 110],
        [40, 70, 110],
        [190, 180, 170],
    ],
    dtype=np.float32,
)
_CLASS_NIR = np.array([70, 140, 170, 210, 180, 130, 110, 20, 90], dtype=np.float32)

URBAN_PULL_MEAN = 0.3
URBAN_PULL_SD = 0.3
"""A site's urban pull is drawn from N(mean, sd), clipped to [0, 1]."""


def expected_urban_pull() -> float:
    """Mean urban pull of a site: the mean of the clipped normal (the demo's truth maps
    evaluate the species model at the land-cover mix of this typical pull)."""
    mu, sd = URBAN_PULL_MEAN, URBAN_PULL_SD
    low, high = (0 - mu) / sd, (1 - mu) / sd

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    def pdf(x: float) -> float:
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    # E[clip(X, 0, 1)] = E[X; 0 < X < 1] + P(X >= 1) for X ~ N(mu, sd)
    inside = mu * (cdf(high) - cdf(low)) + sd * (pdf(low) - pdf(high))
    return inside + 1 - cdf(high)


def landcover_mix(env: dict[str, np.ndarray], urban: np.ndarray) -> np.ndarray:
    """Expected land-cover mix (rows sum to 1) from the hidden environment at each site."""
    t, p, e = env["temperature"], env["precipitation"], env["elevation"]
    logits = np.stack(
        [
            2.5 * urban - 1.0,  # artificial
            0.15 * (t - 8) - e / 600,  # cropland
            0.3 + 0.0 * t,  # grassland
            (p - 800) / 400 - np.abs(t - 11) / 6,  # broadleaf forest
            (e - 800) / 500 - (t - 6) / 6,  # conifer forest
            (t - 14) / 3 - (p - 600) / 300,  # shrubland
            (p - 1100) / 300 - e / 400,  # wetland
            -1.5 + 0.0 * t,  # water
            (e - 2000) / 300,  # bare
        ],
        axis=1,
    )
    logits -= logits.max(axis=1, keepdims=True)
    mix = np.exp(logits)
    return mix / mix.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class PatchJob:
    """Everything needed to render and write the patches of one observation."""

    observation_id: int
    region: str
    mix: np.ndarray
    elevation: float
    seed: int


def patch_jobs(
    ids: np.ndarray, sites: Sites, spec: DemoSpec, rng: np.random.Generator
) -> list[PatchJob]:
    """One job per site; draws each site's urban pull, which sets its land-cover mix."""
    # Urban pull: how close a site is to a sampling hot spot (towns attract observers).
    urban = np.clip(rng.normal(URBAN_PULL_MEAN, URBAN_PULL_SD, len(ids)), 0, 1)
    mix = landcover_mix(sites.env, urban)
    return [
        PatchJob(
            int(ids[i]),
            REGIONS[sites.region_index[i]],
            mix[i],
            float(sites.env["elevation"][i]),
            spec.seed * 100_003 + int(ids[i]),
        )
        for i in range(len(ids))
    ]


@functools.cache
def _upsampling_matrix(coarse: int, size: int) -> np.ndarray:
    """(size, coarse) matrix of linear interpolation weights from a coarse grid to pixels."""
    position = np.clip((np.arange(size) + 0.5) * coarse / size - 0.5, 0, coarse - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, coarse - 1)
    weight = position - low
    matrix = np.zeros((size, coarse), dtype=np.float32)
    matrix[np.arange(size), low] += 1 - weight
    matrix[np.arange(size), high] += weight
    return matrix


def smooth_patch_noise(
    rng: np.random.Generator, channels: int, coarse: int, size: int
) -> np.ndarray:
    """(channels, size, size) smooth noise: coarse Gaussian noise, bilinearly upsampled."""
    upsample = _upsampling_matrix(coarse, size)
    noise = rng.standard_normal((channels, coarse, coarse)).astype(np.float32)
    return upsample @ noise @ upsample.T


def argmax_first_axis(scores: np.ndarray) -> np.ndarray:
    """``scores.argmax(axis=0)`` for a few large planes, without strided reads (5x faster)."""
    best = scores[0].copy()
    index = np.zeros(best.shape, dtype=np.intp)
    for channel in range(1, len(scores)):
        better = scores[channel] > best
        np.copyto(best, scores[channel], where=better)
        index[better] = channel
    return index


def render_patches(job: PatchJob, size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render the four patches of one observation; also return its aligned class shares.

    Deterministic from ``job.seed``: the same patches whatever process renders them.
    """
    rng = np.random.default_rng(job.seed)
    n_classes = len(ALIGNED_LANDCOVER)
    coarse = max(2, size // 32)
    # A local draw around the expected mix, so that patches vary beyond the rasters.
    local_mix = rng.dirichlet(job.mix * 6 + 0.05)
    noise = smooth_patch_noise(rng, n_classes, coarse, size)
    scores = np.log(local_mix + 1e-4).astype(np.float32)[:, None, None] + 1.2 * noise
    aligned = argmax_first_axis(scores)
    shares = np.bincount(aligned.ravel(), minlength=n_classes) / aligned.size
    codes = np.asarray(LANDCOVER_CODES[job.region])
    # Aligned class c -> the first region code whose suggested class is c (write_metadata).
    landcover = codes[-(-aligned * len(codes) // n_classes)].astype(np.uint8)
    relief = smooth_patch_noise(rng, 1, 4, size)[0]
    altitude = np.round(job.elevation + 8 * relief)
    texture = smooth_patch_noise(rng, 1, 2 * coarse, size)[0]
    grain = rng.standard_normal((size, size, 1)).astype(np.float32)
    rgb = _CLASS_RGB[aligned] * (1 + 0.08 * texture[..., None]) + 3 * grain
    nir = _CLASS_NIR[aligned] * (1 + 0.08 * texture) + 3 * grain[..., 0]
    patches = {
        "rgb": np.clip(rgb, 0, 255).astype(np.uint8),
        "near_ir": np.clip(nir, 0, 255).astype(np.uint8),
        "altitude": np.clip(altitude, -400, 5000).astype(np.int16),
        "landcover": landcover,
    }
    return patches, shares


def _write_patch_chunk(args: tuple[Path, list[PatchJob], int]) -> np.ndarray:
    root, jobs, size = args
    with threadpool_limits(1):  # one BLAS thread per worker: the workers fill the cores
        return _write_patches(root, jobs, size)


def _write_patches(root: Path, jobs: list[PatchJob], size: int) -> np.ndarray:
    layout = DatasetLayout(root)
    shares = np.empty((len(jobs), len(ALIGNED_LANDCOVER)), dtype=np.float64)
    for i, job in enumerate(jobs):
        patches, shares[i] = render_patches(job, size)
        for modality, array in patches.items():
            write_patch(layout.patch(job.observation_id, modality), modality, array)
    return shares


def write_all_patches(root: Path, jobs: list[PatchJob], size: int, workers: int) -> np.ndarray:
    """Render and write every observation's patches in parallel; return class shares."""
    log.info("writing %d x 4 patches of %d px with %d workers", len(jobs), size, workers)
    chunk = 200
    chunks = [(root, jobs[i : i + chunk], size) for i in range(0, len(jobs), chunk)]
    results = []
    with tqdm(total=len(jobs), desc="demo patches", unit="obs", mininterval=2) as bar:
        if workers <= 1:
            for args in chunks:
                results.append(_write_patch_chunk(args))
                bar.update(len(args[1]))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for args, shares in zip(chunks, pool.map(_write_patch_chunk, chunks), strict=True):
                    results.append(shares)
                    bar.update(len(args[1]))
    return np.concatenate(results) if results else np.empty((0, len(ALIGNED_LANDCOVER)))
