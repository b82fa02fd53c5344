"""The hidden species model and the labels drawn from it.

A species' chance of being the one observed at a site depends on its environmental niche
(a few hidden fields it responds to), the land cover of the site's patches, its geographic
range and a Zipf-like abundance: a long tail, as in GLC. Niches are drawn around real sites,
so that every species can occur somewhere. Each observation's label is one draw from its
site's probabilities, which are kept for val and test as the truth.
"""

from dataclasses import dataclass

import numpy as np

from geolifeclef.demo.patches import ALIGNED_LANDCOVER
from geolifeclef.demo.sites import Sites
from geolifeclef.demo.spec import DemoSpec
from geolifeclef.layout import REGIONS

NICHE_FIELDS = (
    "temperature",
    "precipitation",
    "elevation",
    "continentality",
    "soil_ph",
    "soil_clay",
)
_NICHE_SCALE = {
    "temperature": (10.0, 5.0),
    "precipitation": (800.0, 300.0),
    "elevation": (600.0, 600.0),
    "continentality": (0.6, 0.35),
    "soil_ph": (58.0, 10.0),
    "soil_clay": (25.0, 10.0),
}


def niche_features(env: dict[str, np.ndarray]) -> np.ndarray:
    """Standardised hidden environment (n, len(NICHE_FIELDS)) that species respond to."""
    return np.stack(
        [(env[k] - _NICHE_SCALE[k][0]) / _NICHE_SCALE[k][1] for k in NICHE_FIELDS], axis=1
    )


@dataclass
class SpeciesModel:
    """The hidden truth: how likely each species is to be the one observed at a site."""

    abundance: np.ndarray  # (S,)
    region_mask: np.ndarray  # (2, S) 1 where the species lives in fr / us
    niche_mean: np.ndarray  # (S, F)
    niche_precision: np.ndarray  # (S, F), 0 where the species ignores a variable
    landcover_affinity: np.ndarray  # (S, C)
    range_centre: np.ndarray  # (S, 2) lon, lat
    range_radius: np.ndarray  # (S,) degrees

    def probabilities(
        self, region_index: np.ndarray, features: np.ndarray, shares: np.ndarray, lonlat: np.ndarray
    ) -> np.ndarray:
        """P(species | site), (n, S), rows summing to 1."""
        z = features[:, None, :] - self.niche_mean[None]
        log_p = -0.5 * np.einsum("nsf,sf->ns", z**2, self.niche_precision)
        return self.probabilities_from_niche(log_p, region_index, shares, lonlat)

    def niche_by_products(self, features: np.ndarray) -> np.ndarray:
        """The niche term of ``probabilities`` (n, S) by matrix products: equal up to
        rounding, without its (n, S, F) intermediate (the maps' many points)."""
        weighted = self.niche_precision * self.niche_mean
        quadratic = (features**2) @ self.niche_precision.T - 2 * features @ weighted.T
        return -0.5 * (quadratic + (weighted * self.niche_mean).sum(axis=1)[None])

    def probabilities_from_niche(
        self, log_p: np.ndarray, region_index: np.ndarray, shares: np.ndarray, lonlat: np.ndarray
    ) -> np.ndarray:
        """``probabilities`` given its niche term ``log_p`` (n, S), which it updates."""
        log_p += np.log(
            shares @ self.landcover_affinity.T * self.landcover_affinity.shape[1] + 1e-3
        )
        d2 = ((lonlat[:, None, :] - self.range_centre[None]) ** 2).sum(-1)
        log_p += -0.5 * d2 / self.range_radius[None] ** 2
        log_p += np.log(self.abundance)[None]
        log_p[self.region_mask[region_index] == 0] = -np.inf
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)


def sites_by_region(features: np.ndarray, sites: Sites) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{region: (niche features, lonlat)}`` of the sites, the anchors of species niches."""
    return {
        region: (features[sites.region_index == r], sites.lonlat[sites.region_index == r])
        for r, region in enumerate(REGIONS)
    }


def draw_species(
    spec: DemoSpec,
    site_features: dict[str, tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
) -> SpeciesModel:
    """Draw species niches around real sites, so that every species can occur somewhere."""
    s = spec.n_species
    ranks = rng.permutation(s) + 1
    abundance = ranks.astype(np.float64) ** -spec.zipf_exponent
    home = rng.choice(3, s, p=[0.5, 0.42, 0.08])  # fr, us, both
    region_mask = np.stack([(home == 0) | (home == 2), (home == 1) | (home == 2)]).astype(np.int8)
    n_features = len(NICHE_FIELDS)
    niche_mean = np.empty((s, n_features))
    range_centre = np.empty((s, 2))
    for i in range(s):
        region = REGIONS[home[i] % 2] if home[i] < 2 else REGIONS[rng.integers(2)]
        features, lonlat = site_features[region]
        j = rng.integers(len(features))
        niche_mean[i] = features[j] + rng.normal(0, 0.3, n_features)
        range_centre[i] = lonlat[j]
    niche_precision = np.zeros((s, n_features))
    for i in range(s):
        used = rng.choice(n_features, 3, replace=False)
        niche_precision[i, used] = 1.0 / rng.uniform(1.0, 2.5, 3) ** 2
    affinity = rng.dirichlet(np.full(len(ALIGNED_LANDCOVER), 0.6), s)
    radius = np.where(home == 1, rng.uniform(1.5, 6, s), rng.uniform(0.75, 3, s))
    return SpeciesModel(
        abundance, region_mask, niche_mean, niche_precision, affinity, range_centre, radius
    )


def draw_labels(
    species: SpeciesModel,
    sites: Sites,
    features: np.ndarray,
    shares: np.ndarray,
    spec: DemoSpec,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw each site's species; return ``(species_id, truth_rows, truth)``.

    ``truth`` holds the probabilities of every species (float32) at the val and test sites,
    whose row indices are ``truth_rows``.
    """
    n = len(sites.lonlat)
    species_id = np.empty(n, dtype=np.int64)
    truth_rows = np.flatnonzero(sites.split != "train")
    truth = np.empty((len(truth_rows), spec.n_species), dtype=np.float32)
    truth_position = {row: k for k, row in enumerate(truth_rows)}
    # Chunks of about 4M probabilities bound the memory of (n, S) at the large scale.
    chunk = max(1, 4_000_000 // spec.n_species)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        p = species.probabilities(
            sites.region_index[rows], features[rows], shares[rows], sites.lonlat[rows]
        )
        cumulative = p.cumsum(axis=1)
        draws = rng.random(len(rows))[:, None]
        species_id[rows] = np.minimum((cumulative < draws).sum(axis=1), spec.n_species - 1)
        for k, row in enumerate(rows):
            if row in truth_position:
                truth[truth_position[row]] = p[k]
    return species_id, truth_rows, truth
