"""The size and shape of a demo dataset: its spec, the named presets and the two regions.

Everything the generator draws follows from a :class:`DemoSpec` (and its seed), so two runs
with equal specs write the same bytes. The regions' extents and their share of the
observations are fixed here too, as they are part of what a spec means.
"""

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DemoSpec:
    """Size and shape of a demo dataset. Same spec and seed, same bytes."""

    seed: int = 2022
    n_species: int = 500
    n_train: int = 15_000
    """Observations in the train subset (both regions)."""
    n_val: int = 1_000
    n_test: int = 1_000
    patch_size: int = 256
    raster_resolution: float = 0.05
    """Raster pixel size in degrees (the real bioclimatic rasters are 30 arcsec)."""
    n_clusters: int = 80
    """Sampling hot spots (towns, parks) around which observations cluster."""
    block_size: float = 0.5
    """Side in degrees of the spatial blocks that are assigned to train, val or test."""
    zipf_exponent: float = 0.5
    """Species abundance ~ rank ** -zipf_exponent: a long tail."""


DEMO_SCALES = {
    "tiny": DemoSpec(n_species=60, n_train=300, n_val=60, n_test=60, patch_size=64, n_clusters=12),
    "small": DemoSpec(),
    "large": DemoSpec(n_species=5_000, n_train=200_000, n_val=5_000, n_test=8_000, n_clusters=800),
}
"""Named presets: ``tiny`` for tests, ``small`` for the default demo, ``large`` to stress."""

REGION_BOUNDS = {
    # west, south, east, north of the raster extents, as the real rasters roughly cover
    "fr": (-5.5, 41.0, 10.0, 51.5),
    "us": (-125.0, 24.0, -66.5, 49.5),
}
REGION_SHARE = {"fr": 0.55, "us": 0.45}


def spec_for(scale: str, **overrides) -> DemoSpec:
    """The preset ``scale`` with the given fields replaced (None values ignored)."""
    if scale not in DEMO_SCALES:
        raise ValueError(f"unknown demo scale {scale!r}; choose one of {sorted(DEMO_SCALES)}")
    return replace(DEMO_SCALES[scale], **{k: v for k, v in overrides.items() if v is not None})
