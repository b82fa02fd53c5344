"""The truth next to the dataset: every species' probability at val and test, and a summary.

The truth file holds the true probabilities the labels were drawn from, so the
Bayes-optimal top-30 error is known; the summary records it (expected and as sampled)
beside that of the constant most-frequent-species predictor, as the bounds any model
trained on the demo should fall between. The world file keeps what the truth at any other
point needs (the species model and the hidden fields of each region's grid), for the
demo's true species maps.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import rasterio

from geolifeclef.atomic import atomic_path
from geolifeclef.data.rasters import pixel_indices, region_of_points
from geolifeclef.demo.patches import expected_urban_pull, landcover_mix
from geolifeclef.demo.spec import DemoSpec
from geolifeclef.demo.species import NICHE_FIELDS, SpeciesModel, niche_features
from geolifeclef.demo.world import RegionGrid
from geolifeclef.layout import REGIONS
from geolifeclef.predictions.metrics import expected_top_k_error, top_k, top_k_error

TRUTH_FILE = "species_probabilities.npz"
SUMMARY_FILE = "summary.json"
WORLD_FILE = "world.npz"


def summarize_truth(ids, split, species_id, truth_rows, truth, spec: DemoSpec) -> dict:
    """Bayes-optimal and constant-predictor top-30 errors of the drawn dataset."""
    k = 30
    train_counts = np.bincount(species_id[split == "train"], minlength=spec.n_species)
    most_frequent = top_k(train_counts[None, :], k)[0][0]
    summary: dict = {
        "spec": asdict(spec),
        "n_observations": {s: int((split == s).sum()) for s in ("train", "val", "test")},
    }
    for subset in ("val", "test"):
        rows = np.flatnonzero(split[truth_rows] == subset)
        p = truth[rows]
        bayes_sets = top_k(p, k)[0]
        labels = species_id[truth_rows[rows]]
        constant_sets = np.broadcast_to(most_frequent, (len(rows), k))
        summary[subset] = {
            "bayes_top30_error_expected": expected_top_k_error(p, bayes_sets),
            "bayes_top30_error_sampled": top_k_error(bayes_sets, labels),
            "constant_top30_error_expected": expected_top_k_error(p, constant_sets),
            "constant_top30_error_sampled": top_k_error(constant_sets, labels),
        }
    return summary


def write_truth(
    truth_dir: Path,
    ids: np.ndarray,
    split: np.ndarray,
    species_id: np.ndarray,
    truth_rows: np.ndarray,
    truth: np.ndarray,
    spec: DemoSpec,
) -> dict:
    """Write the truth file and the summary under ``truth_dir``; return the summary."""
    summary = summarize_truth(ids, split, species_id, truth_rows, truth, spec)
    truth_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(truth_dir / TRUTH_FILE) as temporary, open(temporary, "wb") as handle:
        np.savez(
            handle,
            observation_id=ids[truth_rows],
            subset=split[truth_rows],
            probabilities=truth,
        )
    with atomic_path(truth_dir / SUMMARY_FILE) as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@dataclass
class DemoWorld:
    """The hidden truth of a demo beyond its observations: the species model, and per region
    the raster grid's transform and the hidden fields species respond to (NICHE_FIELDS)."""

    species: SpeciesModel
    transforms: dict[str, rasterio.Affine]
    fields: dict[str, dict[str, np.ndarray]]


def write_world(truth_dir: Path, grids: list[RegionGrid], species: SpeciesModel) -> None:
    """Write the world file under ``truth_dir``: no random draw, so the dataset's bytes
    are what they are without it."""
    arrays = {f"species.{f.name}": getattr(species, f.name) for f in fields(SpeciesModel)}
    for grid in grids:
        arrays[f"{grid.region}.transform"] = np.array(grid.transform[:6])
        for name in NICHE_FIELDS:
            arrays[f"{grid.region}.{name}"] = grid.fields[name].astype(np.float32)
    truth_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(truth_dir / WORLD_FILE) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def read_world(path: str | Path) -> DemoWorld:
    """The world file written by ``write_world``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    species = SpeciesModel(**{f.name: arrays[f"species.{f.name}"] for f in fields(SpeciesModel)})
    regions = sorted({key.split(".")[0] for key in arrays if key.endswith(".transform")})
    return DemoWorld(
        species,
        {r: rasterio.Affine(*arrays[f"{r}.transform"]) for r in regions},
        {r: {name: arrays[f"{r}.{name}"] for name in NICHE_FIELDS} for r in regions},
    )


def true_probabilities(world: DemoWorld, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """P(species | a site at each point), (n, species): the species model at the hidden
    fields of the point's pixel, with the land-cover mix expected there (that of a site of
    typical urban pull; a real site's patch varies around it). Points outside their
    region's grid get NaN."""
    latitude, longitude = np.asarray(latitude, np.float64), np.asarray(longitude, np.float64)
    n_species = len(world.species.abundance)
    result = np.full((len(latitude), n_species), np.nan)
    region = region_of_points(longitude)
    for index, name in enumerate(REGIONS):
        points = np.flatnonzero(region == name)
        if not len(points) or name not in world.fields:
            continue
        shape = next(iter(world.fields[name].values())).shape
        rows, cols, inside = pixel_indices(
            world.transforms[name], longitude[points], latitude[points], *shape
        )
        points, rows, cols = points[inside], rows[inside], cols[inside]
        env = {k: v[rows, cols].astype(np.float64) for k, v in world.fields[name].items()}
        features = niche_features(env)
        shares = landcover_mix(env, np.full(len(points), expected_urban_pull()))
        lonlat = np.stack([longitude[points], latitude[points]], axis=1)
        result[points] = world.species.probabilities_from_niche(
            world.species.niche_by_products(features),
            np.full(len(points), index),
            shares,
            lonlat,
        )
    return result
