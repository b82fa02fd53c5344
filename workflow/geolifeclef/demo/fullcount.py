"""A dataset at the archive's counts, in its layout, for the full-size rehearsal.

The demo (:mod:`geolifeclef.demo`) draws a world whose species have niches, at sizes
a laptop trains on in minutes; its probabilities for every species at every site cost
(sites x species x fields), hours at 1.66 M x 17,037. This generator keeps only what sets
the workflow's costs at the archive's size, and draws it in minutes:

* the counts: 1,587,395 train, 40,080 val and 36,421 test observations, 17,037 species,
  41 % of the observations in France (GLC22-FORMAT.md);
* the long tail of the archive's train counts by rank (:func:`class_counts`);
* the 54 rasters at their real resolutions (:mod:`.realscale`, 3.1 GB);
* spatial structure: each species lives around a centre on land, its observations drawn
  around it (a Gaussian of its own radius), so that a model of the coordinates or the
  environment has something to learn; the split is spatial (blocks of
  ``block_degrees``), as in the archive;
* when asked (``truth``), the true probabilities of every species at the val and test
  observations, the posterior of that mixture (count x Gaussian density, within the
  species' region), kept aside as a memory-mapped ``.npy`` (5.2 GB at full counts: read it
  a chunk at a time);
* 256 px patch files (the demo's renderer) for a share of the observations, in a second
  dataset root that holds only those observations (``archive-patches``: the patch side of
  the rehearsal), with the first root's rasters and metadata linked.

Every step writes its files atomically and is skipped when they exist, so an interrupted
generation resumes; every draw comes from a seed of its own step, so a resumed run writes
what an uninterrupted one would.
"""

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from geolifeclef.atomic import atomic_path
from geolifeclef.demo.patches import ALIGNED_LANDCOVER, PatchJob, write_all_patches
from geolifeclef.demo.realscale import FR_SHARE, land_mask, write_rasters
from geolifeclef.demo.spec import REGION_BOUNDS, DemoSpec
from geolifeclef.demo.tables import write_metadata, write_observations
from geolifeclef.layout import REGION_DIGIT, REGIONS, DatasetLayout

log = logging.getLogger(__name__)

ARCHIVE_SPECIES = 17_037
ARCHIVE_SPLITS = {"train": 1_587_395, "val": 40_080, "test": 36_421}

# The archive's train counts by rank (GLC22-FORMAT.md, from the organizers' files): the most
# frequent species has ~6,700; 12,539 species have fewer than 50, so rank 4,498 is the last
# with 50 or more; every species has at least 3 (train + val). Between them, log(count) is
# linear in log(rank); one more knot at rank 500 is solved so that the counts add up to the
# 1,587,395 train observations (the head holds most of them: a mean of 93 per species).
_TAIL_KNOTS = ((1, 6_700.0), (500, None), (4_498.5, 50.0), (ARCHIVE_SPECIES, 3.0))

ROOT = "archive"
"""The full-count dataset root (no patches), under the output folder."""
PATCH_ROOT = "archive-patches"
"""The root of the observations with patches (the patch side of the rehearsal)."""
TRUTH = "truth"
PROBABILITIES_FILE = "probabilities.npy"
ROWS_FILE = "rows.parquet"
SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class FullCountSpec:
    """Sizes of a full-count dataset; the default is the archive's."""

    n_species: int = ARCHIVE_SPECIES
    n_train: int = ARCHIVE_SPLITS["train"]
    n_val: int = ARCHIVE_SPLITS["val"]
    n_test: int = ARCHIVE_SPLITS["test"]
    patch_share: float = 0.1
    """Share of the observations (every split alike) with patch files; 0: none."""
    patch_size: int = 256
    block_degrees: float = 0.1
    """Side of the spatial blocks dealt to test, val and train."""
    truth: bool = False
    """Write the true probabilities of the val and test observations (5.2 GB at full
    counts, read by no step of the workflow: only when asked)."""
    raster_coarsening: int = 1
    """Raster pixels this many times the real ones (tests); 1: the real resolutions."""
    seed: int = 2022

    @property
    def n_observations(self) -> int:
        return self.n_train + self.n_val + self.n_test

    def scaled(self, share: float) -> "FullCountSpec":
        """The same shape with every count times ``share`` (species and observations)."""
        return replace(
            self,
            n_species=max(2, round(self.n_species * share)),
            n_train=max(2, round(self.n_train * share)),
            n_val=max(1, round(self.n_val * share)),
            n_test=max(1, round(self.n_test * share)),
        )


def _tail_curve(n_species: int, middle: float) -> np.ndarray:
    """Counts by rank (descending floats), the knots placed at the same share of log(rank)."""
    knots = [(r, middle if c is None else c) for r, c in _TAIL_KNOTS]
    x = np.log(np.arange(1, n_species + 1)) / np.log(max(n_species, 2))
    knot_x = np.log([r for r, _ in knots]) / np.log(ARCHIVE_SPECIES)
    return np.exp(np.interp(x, knot_x, np.log([c for _, c in knots])))


def _solve_middle_knot() -> float:
    """The rank-500 count for which the archive's curve adds up to its train count."""
    low, high = 50.0, 6_700.0
    for _ in range(60):
        middle = (low + high) / 2
        if _tail_curve(ARCHIVE_SPECIES, middle).sum() < ARCHIVE_SPLITS["train"]:
            low = middle
        else:
            high = middle
    return (low + high) / 2


_MIDDLE_KNOT = _solve_middle_knot()


def class_counts(n_species: int, n_observations: int) -> np.ndarray:
    """Observations per species, by rank (descending, int64), adding up to
    ``n_observations``: the archive's long tail, scaled."""
    curve = _tail_curve(n_species, _MIDDLE_KNOT)
    exact = curve / curve.sum() * n_observations
    counts = np.floor(exact).astype(np.int64)
    # Largest remainders get the rows the floors left: the sum is exact.
    short = n_observations - counts.sum()
    counts[np.argsort(counts - exact, kind="stable")[:short]] += 1
    counts = np.sort(counts)[::-1]
    # A small dataset's tail rounds to 0: every species is observed, the head pays.
    unseen = counts == 0
    counts[unseen] = 1
    counts[: unseen.sum()] -= 1
    return counts


@dataclass
class Observations:
    """Every observation: id, region index, coordinates, species, split."""

    observation_id: np.ndarray
    region_index: np.ndarray
    lonlat: np.ndarray
    species_id: np.ndarray
    split: np.ndarray

    def take(self, rows: np.ndarray) -> "Observations":
        """The observations ``rows``, in that order."""
        return Observations(
            self.observation_id[rows],
            self.region_index[rows],
            self.lonlat[rows],
            self.species_id[rows],
            self.split[rows],
        )


@dataclass
class SpeciesRanges:
    """Where each species lives: region index, centre (lon, lat) and radius (degrees)."""

    count: np.ndarray
    region_index: np.ndarray
    centre: np.ndarray
    radius: np.ndarray


def draw_species_ranges(spec: FullCountSpec) -> SpeciesRanges:
    """Species counts (all splits), a region each so that France holds ~41 % of the
    observations, and a centre on land and a radius each."""
    rng = np.random.default_rng([spec.seed, 1])
    count = class_counts(spec.n_species, spec.n_observations)
    species = rng.permutation(spec.n_species)  # ranks are not ids
    count = count[np.argsort(species)]
    # Species in a random order until France has its share: the counts decide, not the
    # number of species.
    order = rng.permutation(spec.n_species)
    in_france = np.cumsum(count[order]) <= FR_SHARE * spec.n_observations
    region_index = np.ones(spec.n_species, dtype=np.int64)
    region_index[order[in_france]] = REGIONS.index("fr")
    centre = np.empty((spec.n_species, 2))
    for r, region in enumerate(REGIONS):
        mine = np.flatnonzero(region_index == r)
        centre[mine] = _points_on_land(region, len(mine), rng)
    # Log-uniform radii; the US is larger, its ranges too.
    radius = np.exp(rng.uniform(np.log(0.05), np.log(1.5), spec.n_species))
    radius[region_index == REGIONS.index("us")] *= 2
    return SpeciesRanges(count, region_index, centre, radius)


def _points_on_land(region: str, n: int, rng: np.random.Generator) -> np.ndarray:
    west, south, east, north = REGION_BOUNDS[region]
    found = np.empty((0, 2))
    while len(found) < n:
        lon = rng.uniform(west, east, 2 * n + 16)
        lat = rng.uniform(south, north, 2 * n + 16)
        keep = land_mask(region, lon, lat)
        found = np.concatenate([found, np.stack([lon[keep], lat[keep]], axis=1)])
    return found[:n]


def draw_observations(spec: FullCountSpec, ranges: SpeciesRanges) -> Observations:
    """Each species' observations around its centre, on land but ~2 % near the coast
    (NaN values there, as in the archive); ids of the archive's form; a spatial split."""
    rng = np.random.default_rng([spec.seed, 2])
    species_id = rng.permutation(np.repeat(np.arange(spec.n_species), ranges.count))
    region_index = ranges.region_index[species_id]
    centre, radius = ranges.centre[species_id], ranges.radius[species_id][:, None]
    lonlat = centre.copy()
    todo = np.arange(len(species_id))
    for _ in range(40):  # redraw what fell off its region's box or at sea
        if not len(todo):
            break
        lonlat[todo] = centre[todo] + radius[todo] * rng.standard_normal((len(todo), 2))
        bad = np.zeros(len(todo), dtype=bool)
        for r, region in enumerate(REGIONS):
            mine = region_index[todo] == r
            west, south, east, north = REGION_BOUNDS[region]
            lon, lat = lonlat[todo[mine], 0], lonlat[todo[mine], 1]
            inside = (lon > west) & (lon < east) & (lat > south) & (lat < north)
            coast = rng.random(len(lon)) < 0.02
            bad[mine] = ~inside | ~(land_mask(region, lon, lat) | coast)
        todo = todo[bad]
    lonlat[todo] = centre[todo]  # the last few stay at their species' centre
    observation_id = np.empty(len(species_id), dtype=np.int64)
    for r, region in enumerate(REGIONS):
        mine = np.flatnonzero(region_index == r)
        drawn = rng.choice(10**7, len(mine), replace=False)
        observation_id[mine] = REGION_DIGIT[region] * 10**7 + drawn
    split = spatial_split(lonlat, region_index, spec, rng)
    return Observations(observation_id, region_index, lonlat, species_id, split)


def spatial_split(
    lonlat: np.ndarray, region_index: np.ndarray, spec: FullCountSpec, rng: np.random.Generator
) -> np.ndarray:
    """Blocks of ``spec.block_degrees`` in a random order: the first ones test, the next
    val, the rest train, the last block of each cut so that the counts are exact."""
    cells = np.floor(lonlat / spec.block_degrees).astype(np.int64)
    block = np.unique(np.column_stack([region_index, cells]), axis=0, return_inverse=True)[1]
    block = block.ravel()
    block_rank = rng.permutation(block.max() + 1)[block]
    order = np.lexsort((rng.random(len(block)), block_rank))
    split = np.full(len(block), "train", dtype=object)
    split[order[: spec.n_test]] = "test"
    split[order[spec.n_test : spec.n_test + spec.n_val]] = "val"
    return split.astype(str)


def write_true_probabilities(
    truth_dir: Path, obs: Observations, ranges: SpeciesRanges, chunk: int = 2_000
) -> None:
    """P(species | point) of the val and test observations under the generating mixture
    (count x isotropic Gaussian density of the species' range, within its region), as a
    (rows, species) float32 ``.npy`` written a chunk at a time, and its rows' ids."""
    rows = np.flatnonzero(obs.split != "train")
    truth_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(truth_dir / PROBABILITIES_FILE) as temporary:
        out = np.lib.format.open_memmap(
            temporary, mode="w+", dtype=np.float32, shape=(len(rows), len(ranges.count))
        )
        log_weight = np.log(ranges.count) - 2 * np.log(ranges.radius)
        for start in tqdm(range(0, len(rows), chunk), desc="true probabilities", unit="chunk"):
            part = rows[start : start + chunk]
            d2 = ((obs.lonlat[part, None, :] - ranges.centre[None]) ** 2).sum(-1)
            log_p = log_weight[None] - 0.5 * d2 / ranges.radius[None] ** 2
            log_p[obs.region_index[part, None] != ranges.region_index[None]] = -np.inf
            log_p -= log_p.max(axis=1, keepdims=True)
            p = np.exp(log_p)
            out[start : start + len(part)] = p / p.sum(axis=1, keepdims=True)
        out.flush()
        del out
    with atomic_path(truth_dir / ROWS_FILE) as temporary:
        pd.DataFrame(
            {"observation_id": obs.observation_id[rows], "subset": obs.split[rows]}
        ).to_parquet(temporary, index=False)


def read_true_probabilities(truth_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The truth's rows (observation_id, subset) and probabilities, memory-mapped."""
    rows = pd.read_parquet(Path(truth_dir) / ROWS_FILE)
    return rows, np.load(Path(truth_dir) / PROBABILITIES_FILE, mmap_mode="r")


def patch_rows(obs: Observations, spec: FullCountSpec) -> np.ndarray:
    """The observations with patch files: a random ``patch_share`` of them."""
    n = round(len(obs.observation_id) * spec.patch_share)
    rng = np.random.default_rng([spec.seed, 3])
    return np.sort(rng.choice(len(obs.observation_id), n, replace=False))


def write_patch_files(
    root: Path, obs: Observations, rows: np.ndarray, spec: FullCountSpec, workers: int
) -> None:
    """The four patch files of the observations ``rows`` (the demo's renderer: land cover
    from a drawn class mix, altitude, RGB and near infrared from the land cover), skipping
    those whose files are there: a killed run resumes."""
    layout = DatasetLayout(root)
    rng = np.random.default_rng([spec.seed, 4])
    mixes = rng.dirichlet(np.full(len(ALIGNED_LANDCOVER), 0.6), len(rows))
    elevation = np.abs(obs.lonlat[rows, 1] - 40) * 60  # a plausible relief, metres
    jobs = [
        PatchJob(
            int(obs.observation_id[row]),
            REGIONS[obs.region_index[row]],
            mixes[k],
            float(elevation[k]),
            spec.seed * 100_003 + int(obs.observation_id[row]),
        )
        for k, row in enumerate(rows)
    ]
    # The renderer writes landcover last: with it there, the observation is complete.
    todo = [j for j in jobs if not layout.patch(j.observation_id, "landcover").exists()]
    log.info("patches: %d of %d observations to write", len(todo), len(jobs))
    if todo:
        write_all_patches(root, todo, spec.patch_size, workers)


def _write_observation_tables(layout: DatasetLayout, obs: Observations) -> None:
    """The archive's four observation CSVs of ``obs``, rows shuffled (the demo's writer)."""
    rng = np.random.default_rng(len(obs.observation_id))
    write_observations(layout, obs.observation_id, obs, obs.species_id, rng)


def _link_shared_files(full: DatasetLayout, patch_root: Path) -> None:
    """The patch root's rasters and metadata are the full root's (symbolic links)."""
    for name in ("rasters", "metadata"):
        link = patch_root / name
        if not link.exists():
            patch_root.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(full.root / name, patch_root), link)


def generate_full_count_dataset(
    out: Path, spec: FullCountSpec = FullCountSpec(), workers: int = 1
) -> dict:
    """Write the dataset under ``out`` (``archive/``, ``archive-patches/``, ``truth/``),
    resuming what an earlier call left; return what was written (sizes, counts)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / SPEC_FILE
    if spec_file.exists() and json.loads(spec_file.read_text()) != asdict(spec):
        raise ValueError(
            f"{out} holds a dataset of other sizes ({spec_file}); use another folder or delete it"
        )
    with atomic_path(spec_file) as temporary:
        temporary.write_text(json.dumps(asdict(spec), indent=2) + "\n")
    layout = DatasetLayout(out / ROOT)
    write_rasters(layout.root, coarsening=spec.raster_coarsening, workers=workers)
    write_metadata(layout, DemoSpec(n_species=spec.n_species))
    ranges = draw_species_ranges(spec)
    obs = draw_observations(spec, ranges)
    if not all(p.exists() for p in layout.observation_files()):
        _write_observation_tables(layout, obs)
    if spec.truth and not (out / TRUTH / ROWS_FILE).exists():
        write_true_probabilities(out / TRUTH, obs, ranges)
    with_patches = patch_rows(obs, spec) if spec.patch_share > 0 else np.empty(0, np.int64)
    if len(with_patches):
        patch_layout = DatasetLayout(out / PATCH_ROOT)
        _link_shared_files(layout, patch_layout.root)
        write_patch_files(patch_layout.root, obs, with_patches, spec, workers)
        if not all(p.exists() for p in patch_layout.observation_files()):
            _write_observation_tables(patch_layout, obs.take(with_patches))
    train_counts = np.bincount(obs.species_id[obs.split == "train"], minlength=spec.n_species)
    return {
        "observations": {s: int((obs.split == s).sum()) for s in ("train", "val", "test")},
        "france_share": float((obs.region_index == REGIONS.index("fr")).mean()),
        "species": spec.n_species,
        "train_counts": {
            "max": int(train_counts.max()),
            "median": float(np.median(train_counts)),
            "below_50": int((train_counts < 50).sum()),
            "below_10": int((train_counts < 10).sum()),
        },
        "with_patches": len(with_patches),
    }
