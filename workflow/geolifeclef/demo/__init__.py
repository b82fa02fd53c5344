"""Deterministic demo datasets in the exact layout of each edition's archive, with known
truth: GeoLifeCLEF 2022 here, the GLC 2024 and 2025 surveys in :mod:`.surveys`.

The generator draws a small world whose species behave like real ones, so that every
stage of the workflow has something real to learn and measure:

* two regions (France and the conterminous US) with land masks, hidden smooth fields
  (elevation, temperature, precipitation, continentality, soil) from which the 27 rasters
  are derived as real bioclimatic and pedologic variables would be (:mod:`.world`);
* observation sites spatially clustered around "cities", split train/val/test by spatial
  blocks, so that test lies in areas that train never saw, as in the real split
  (:mod:`.sites`);
* per observation, four 1 m patches rendered from a local land-cover mix (land cover
  depends on the environment), an altitude patch and RGB/near-infrared imagery
  (:mod:`.patches`);
* species whose presence depends on their environmental niche, the land cover of the
  patch, their geographic range and a Zipf-like abundance: a long tail, as in GLC
  (:mod:`.species`).

Next to the dataset (not inside its layout) it writes the true probability of every
species for every val and test observation, so the Bayes-optimal top-30 error is known,
and the species model with the hidden fields, from which the true species maps are
computed (:mod:`.truth`). The CSV files are written by :mod:`.tables`; sizes and presets are in
:mod:`.spec`.
"""

from pathlib import Path

import numpy as np

from geolifeclef.demo.patches import (
    ALIGNED_LANDCOVER,
    PatchJob,
    landcover_mix,
    patch_jobs,
    render_patches,
    write_all_patches,
)
from geolifeclef.demo.sites import (
    Sites,
    draw_observation_ids,
    locate_sites,
    sample_sites,
    site_counts,
)
from geolifeclef.demo.spec import DEMO_SCALES, REGION_BOUNDS, REGION_SHARE, DemoSpec, spec_for
from geolifeclef.demo.species import (
    NICHE_FIELDS,
    SpeciesModel,
    draw_labels,
    draw_species,
    niche_features,
    sites_by_region,
)
from geolifeclef.demo.tables import write_environmental_vectors, write_metadata, write_observations
from geolifeclef.demo.truth import (
    SUMMARY_FILE,
    TRUTH_FILE,
    WORLD_FILE,
    DemoWorld,
    read_world,
    summarize_truth,
    true_probabilities,
    write_truth,
    write_world,
)
from geolifeclef.demo.world import (
    FLOAT_NODATA,
    INT_NODATA,
    RegionGrid,
    make_region_grid,
    raster_values,
    write_rasters,
)
from geolifeclef.layout import REGIONS, DatasetLayout

__all__ = [
    "ALIGNED_LANDCOVER",
    "DEMO_SCALES",
    "FLOAT_NODATA",
    "INT_NODATA",
    "NICHE_FIELDS",
    "REGION_BOUNDS",
    "REGION_SHARE",
    "SUMMARY_FILE",
    "TRUTH_FILE",
    "WORLD_FILE",
    "DemoSpec",
    "DemoWorld",
    "PatchJob",
    "RegionGrid",
    "SpeciesModel",
    "draw_species",
    "generate_demo_dataset",
    "landcover_mix",
    "make_region_grid",
    "niche_features",
    "raster_values",
    "read_world",
    "render_patches",
    "sample_sites",
    "spec_for",
    "summarize_truth",
    "true_probabilities",
    "write_all_patches",
    "write_rasters",
]


def generate_demo_dataset(root: Path, truth_dir: Path, spec: DemoSpec, workers: int = 1) -> dict:
    """Write a demo dataset under ``root`` and its truth under ``truth_dir``; return the summary.

    Every draw comes from one generator seeded by ``spec.seed``, in the order of the steps
    below, so the same spec writes the same bytes: do not reorder them.
    """
    root, truth_dir = Path(root), Path(truth_dir)
    layout = DatasetLayout(root)
    rng = np.random.default_rng(spec.seed)
    # The world and its sites, region by region: each region's draws follow the previous's.
    counts = site_counts(spec)
    regions, grids = [], []
    for region in REGIONS:
        grid = make_region_grid(region, spec, rng)
        grids.append(grid)
        rasters = write_rasters(layout, grid, raster_values(grid, rng))
        regions.append(locate_sites(grid, rasters, sample_sites(grid, counts[region], spec, rng)))
    sites = Sites.concatenate(regions)
    ids = draw_observation_ids(sites.region_index, rng)
    shares = write_all_patches(root, patch_jobs(ids, sites, spec, rng), spec.patch_size, workers)
    features = niche_features(sites.env)
    species = draw_species(spec, sites_by_region(features, sites), rng)
    write_world(truth_dir, grids, species)
    species_id, truth_rows, truth = draw_labels(species, sites, features, shares, spec, rng)
    write_observations(layout, ids, sites, species_id, rng)
    write_metadata(layout, spec)
    write_environmental_vectors(layout, ids, sites.env_values)
    return write_truth(truth_dir, ids, sites.split, species_id, truth_rows, truth, spec)
