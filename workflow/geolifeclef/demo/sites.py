"""Observation sites: where observers went, which split each site is in, and its ids.

Sites cluster around a region's sampling hot spots ("cities"), mostly on land, and are
assigned to train, val or test by the spatial block they fall in, so that test lies in
areas that train never saw, as in the real split. Each site keeps the hidden fields and
the raster values (as written, nodata read as NaN) at its pixel.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from geolifeclef.data.rasters import pixel_indices
from geolifeclef.demo.spec import REGION_BOUNDS, REGION_SHARE, DemoSpec
from geolifeclef.demo.world import FLOAT_NODATA, INT_NODATA, RegionGrid
from geolifeclef.layout import ENV_VARIABLES, REGION_DIGIT, REGIONS


def site_counts(spec: DemoSpec) -> dict[str, dict[str, int]]:
    """``{region: {split: number of sites}}``: the spec's totals shared between regions."""
    totals = {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test}
    return {
        region: {split: max(1, int(round(total * share))) for split, total in totals.items()}
        for region, share in REGION_SHARE.items()
    }


def sample_sites(
    grid: RegionGrid, n: dict[str, int], spec: DemoSpec, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Clustered sites on land, assigned to splits by spatial block.

    Returns ``{split: array of (lon, lat)}`` with ``n[split]`` sites each.
    """
    west, south, east, north = REGION_BOUNDS[grid.region]
    land_rows, land_cols = np.nonzero(grid.land)
    n_clusters = max(3, int(spec.n_clusters * REGION_SHARE[grid.region]))
    pick = rng.choice(len(land_rows), n_clusters, replace=False)
    centre_lon = west + (land_cols[pick] + 0.5) * spec.raster_resolution
    centre_lat = north - (land_rows[pick] + 0.5) * spec.raster_resolution
    weight = rng.lognormal(0, 1.0, n_clusters)
    weight /= weight.sum()
    spread = rng.uniform(0.05, 0.6, n_clusters)
    # Blocks of the split: a block's kind is a fixed draw from its index.
    n_block_cols = int(np.ceil((east - west) / spec.block_size))
    block_kind = rng.choice(
        3,
        size=n_block_cols * int(np.ceil((north - south) / spec.block_size)) + 1,
        p=[0.7, 0.12, 0.18],
    )
    split_code = {"train": 0, "val": 1, "test": 2}
    chosen: dict[str, list[np.ndarray]] = {split: [] for split in n}
    have = dict.fromkeys(n, 0)
    while any(have[s] < n[s] for s in n):
        batch = 4 * sum(n.values()) + 1000
        cluster = rng.choice(n_clusters, batch, p=weight)
        lon = centre_lon[cluster] + rng.standard_normal(batch) * spread[cluster]
        lat = centre_lat[cluster] + rng.standard_normal(batch) * spread[cluster] * 0.75
        row, col, inside = pixel_indices(grid.transform, lon, lat, *grid.land.shape)
        on_land = np.zeros(batch, dtype=bool)
        on_land[inside] = grid.land[row[inside], col[inside]]
        # A few coastal points fall in a sea pixel (NaN env values), as in the real data.
        near_coast = inside & ~on_land
        near_coast[near_coast] = ndimage.binary_dilation(grid.land)[
            row[near_coast], col[near_coast]
        ]
        keep = on_land | (near_coast & (rng.random(batch) < 0.05))
        block = np.floor((lat - south) / spec.block_size) * n_block_cols + np.floor(
            (lon - west) / spec.block_size
        )
        kind = block_kind[np.clip(block.astype(np.int64), 0, len(block_kind) - 1)]
        for split, code in split_code.items():
            if split not in n:
                continue
            selected = np.flatnonzero(keep & (kind == code))[: n[split] - have[split]]
            chosen[split].append(np.stack([lon[selected], lat[selected]], axis=1))
            have[split] += len(selected)
    return {split: np.concatenate(parts) for split, parts in chosen.items()}


@dataclass
class Sites:
    """All observation sites, one row each, in region then split order."""

    lonlat: np.ndarray
    """(n, 2) longitude, latitude."""
    env: dict[str, np.ndarray]
    """Hidden fields at each site's pixel (see :class:`~.world.RegionGrid`)."""
    split: np.ndarray
    region_index: np.ndarray
    """Index in ``REGIONS`` of each site's region."""
    env_values: np.ndarray
    """(n, 27) raster values at each site as written, NaN where nodata."""

    @classmethod
    def concatenate(cls, parts: list["Sites"]) -> "Sites":
        return cls(
            lonlat=np.concatenate([p.lonlat for p in parts]),
            env={k: np.concatenate([p.env[k] for p in parts]) for k in parts[0].env},
            split=np.concatenate([p.split for p in parts]),
            region_index=np.concatenate([p.region_index for p in parts]),
            env_values=np.concatenate([p.env_values for p in parts]),
        )


def locate_sites(
    grid: RegionGrid, rasters: dict[str, np.ndarray], sites: dict[str, np.ndarray]
) -> Sites:
    """The sites of one region (``{split: lonlat}``) with what the grid holds at their pixels."""
    parts = []
    for split, lonlat in sites.items():
        row, col, _ = pixel_indices(grid.transform, lonlat[:, 0], lonlat[:, 1], *grid.land.shape)
        values = np.stack([rasters[v][row, col].astype(np.float32) for v in ENV_VARIABLES], axis=1)
        values[(values == FLOAT_NODATA) | (values == INT_NODATA)] = np.nan
        parts.append(
            Sites(
                lonlat=lonlat,
                env={k: v[row, col] for k, v in grid.fields.items()},
                split=np.full(len(lonlat), split),
                region_index=np.full(len(lonlat), REGIONS.index(grid.region)),
                env_values=values,
            )
        )
    return Sites.concatenate(parts)


def draw_observation_ids(region_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unique 8-digit observation ids, region digit first, in random order."""
    ids = np.empty(len(region_index), dtype=np.int64)
    for r, region in enumerate(REGIONS):
        mask = region_index == r
        ids[mask] = REGION_DIGIT[region] * 10**7 + rng.choice(10**7, mask.sum(), replace=False)
    return ids
