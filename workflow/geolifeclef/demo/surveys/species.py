"""The hidden species model of a survey demo, and the presences drawn from it.

Each species has a niche in the 2022 demo's hidden environment
(:data:`~geolifeclef.demo.species.NICHE_FIELDS`), an affinity for land-cover classes, a
geographic range and an abundance on a long tail; its TRUE presence probability in a survey
is ``sigmoid(logit)``, independent across species, the logit rising with the log of the
plot's area (bigger plots hold more species, as real ones). One offset, calibrated on train,
sets the mean richness. A survey's species are drawn independently and conditioned on at
least one being present, as real surveys (no empty survey is ever published). A
presence-only occurrence is one species drawn in proportion to presence probability x
abundance: observers report what is there, and the common species more.
"""

from dataclasses import dataclass

import numpy as np

from geolifeclef.demo.patches import ALIGNED_LANDCOVER
from geolifeclef.demo.species import NICHE_FIELDS, niche_features
from geolifeclef.demo.surveys.spec import SurveyDemoSpec
from geolifeclef.demo.surveys.world import EuropeGrid
from geolifeclef.survey_layout import N_LABEL_SLOTS

REFERENCE_AREA_M2 = 100.0
"""Plot area at which the logit has no area term (PO points and the true maps use it)."""
AREA_SLOPE = 0.3
"""Logit per unit of log(area / REFERENCE_AREA_M2)."""
_CHUNK_VALUES = 4_000_000
"""Probabilities computed at once (rows x species): bounds memory at the large scale."""


@dataclass
class SurveySpeciesModel:
    """The hidden truth: each species' presence probability in a survey."""

    species_ids: np.ndarray
    """(S,) int32, the archive label ids of the species, sorted (the model's columns)."""
    abundance: np.ndarray
    intercept: np.ndarray
    """(S,) log abundance plus the calibrated offset."""
    niche_mean: np.ndarray
    niche_precision: np.ndarray
    landcover_affinity: np.ndarray
    range_centre: np.ndarray
    """(S, 2) lon, lat."""
    range_radius: np.ndarray
    """(S,) degrees of latitude."""

    def logits(
        self, features: np.ndarray, mix: np.ndarray, lonlat: np.ndarray, area_m2: np.ndarray
    ) -> np.ndarray:
        """(n, S) logits of presence at n surveys (``niche_features`` of their hidden
        environment, land-cover mixes, positions and plot areas)."""
        weighted = self.niche_precision * self.niche_mean
        niche = -0.5 * (
            (features**2) @ self.niche_precision.T
            - 2 * features @ weighted.T
            + (weighted * self.niche_mean).sum(axis=1)[None]
        )
        cover = np.log(mix @ self.landcover_affinity.T * len(ALIGNED_LANDCOVER) + 0.05)
        coslat = np.cos(np.radians(lonlat[:, 1]))[:, None]
        d2 = ((lonlat[:, None, 0] - self.range_centre[None, :, 0]) * coslat) ** 2 + (
            lonlat[:, None, 1] - self.range_centre[None, :, 1]
        ) ** 2
        area = AREA_SLOPE * np.log(np.asarray(area_m2, np.float64) / REFERENCE_AREA_M2)[:, None]
        return self.intercept[None] + niche + cover - 0.5 * d2 / self.range_radius**2 + area

    def probabilities(self, features, mix, lonlat, area_m2) -> np.ndarray:
        """(n, S) float32 true presence probabilities (the truth file's, and those the
        presences are drawn from), computed in chunks of rows."""
        n, s = len(features), len(self.species_ids)
        result = np.empty((n, s), dtype=np.float32)
        for rows in _row_chunks(n, s):
            result[rows] = _sigmoid(
                self.logits(features[rows], mix[rows], lonlat[rows], area_m2[rows])
            )
        return result


def _row_chunks(n: int, s: int) -> list[slice]:
    """Slices of rows holding about ``_CHUNK_VALUES`` values of ``s`` columns each."""
    chunk = max(1, _CHUNK_VALUES // max(1, s))
    return [slice(start, start + chunk) for start in range(0, n, chunk)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) of a very negative logit: inf, p = 0
        return 1.0 / (1.0 + np.exp(-x))


def draw_species(spec: SurveyDemoSpec, grid: EuropeGrid, rng: np.random.Generator):
    """Species anchored at random land points (niche and range centre), so that every part
    of the map, surveyed or not, has its own species. Niches (a standard deviation of 0.55
    to 1.55 in three of the standardised fields) and ranges (1 to 4 degrees) are narrow
    enough that the 25 most frequent species score a fraction of what the truth can, as in
    GLC 2024 (0.12 against 0.36 for the best published sets): on the small preset, an
    expected F1 of 0.18 for that constant, 0.59 for the Bayes-optimal sets."""
    s = spec.n_species
    species_ids = np.sort(rng.choice(N_LABEL_SLOTS, s, replace=False)).astype(np.int32)
    abundance = (rng.permutation(s) + 1.0) ** -spec.zipf_exponent
    rows, cols = np.nonzero(grid.land)
    anchor = rng.choice(len(rows), s)
    lon, lat = grid.centres(rows[anchor], cols[anchor])
    env = {name: grid.fields[name][rows[anchor], cols[anchor]] for name in NICHE_FIELDS}
    n_features = len(NICHE_FIELDS)
    niche_mean = niche_features(env) + rng.normal(0, 0.3, (s, n_features))
    niche_precision = np.zeros((s, n_features))
    for i in range(s):
        used = rng.choice(n_features, 3, replace=False)
        niche_precision[i, used] = 1.0 / rng.uniform(0.55, 1.55, 3) ** 2
    return SurveySpeciesModel(
        species_ids=species_ids,
        abundance=abundance,
        intercept=np.log(abundance),
        niche_mean=niche_mean,
        niche_precision=niche_precision,
        landcover_affinity=rng.dirichlet(np.full(len(ALIGNED_LANDCOVER), 0.6), s),
        range_centre=np.stack([lon, lat], axis=1),
        range_radius=rng.uniform(1.0, 4.0, s),
    )


def calibrate(model: SurveySpeciesModel, features, mix, lonlat, area_m2, mean_richness: float):
    """Shift every intercept by one offset so that the surveys' mean expected richness is
    ``mean_richness`` (Newton's method on at most 4,000 surveys, the first ones: the mean
    richness rises monotonically with the offset)."""
    rows = slice(0, 4_000)
    logits = model.logits(features[rows], mix[rows], lonlat[rows], area_m2[rows])
    offset = 0.0
    for _ in range(50):
        p = _sigmoid(logits + offset)
        excess = p.sum(axis=1).mean() - mean_richness
        if abs(excess) < 1e-9 * mean_richness:
            break
        slope = (p * (1 - p)).sum(axis=1).mean()
        offset -= np.clip(excess / max(slope, 1e-12), -5, 5)
    model.intercept = model.intercept + offset


def draw_presences(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, S) presences, each species independently with probability ``p``, conditioned on
    at least one per row (in chunks of rows, one after the other).

    A row drawn empty is redrawn from the conditional law directly, which is what redrawing
    it until one species is present gives, in bounded time: the first present species J
    has P(J = j) = p_j prod_{l<j} (1 - p_l) / (1 - prod_l (1 - p_l)), the later ones stay
    independent.
    """
    present = np.empty(p.shape, dtype=bool)
    for rows in _row_chunks(*p.shape):
        present[rows] = _draw_conditioned(p[rows].astype(np.float64), rng)
    return present


def _draw_conditioned(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    present = rng.random(p.shape) < p
    empty = np.flatnonzero(~present.any(axis=1))
    if len(empty):
        q = p[empty]
        log_none_before = np.cumsum(np.log1p(-np.minimum(q, 1 - 1e-12)), axis=1)
        log_none_before = np.concatenate(
            [np.zeros((len(empty), 1)), log_none_before[:, :-1]], axis=1
        )
        first = q * np.exp(log_none_before)
        cumulative = np.cumsum(first, axis=1)
        draw = rng.random(len(empty)) * cumulative[:, -1]
        j = np.minimum((cumulative < draw[:, None]).sum(axis=1), q.shape[1] - 1)
        later = rng.random(q.shape) < q
        columns = np.arange(q.shape[1])[None]
        present[empty] = (later & (columns > j[:, None])) | (columns == j[:, None])
    return present


def draw_occurrence_species(
    model: SurveySpeciesModel,
    features: np.ndarray,
    mix: np.ndarray,
    lonlat: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """For each PO survey (a point of a plot of ``REFERENCE_AREA_M2``), ``counts[i]``
    distinct species drawn in proportion to presence probability x abundance (Gumbel
    top-k: the largest keys log w + Gumbel win), in chunks of surveys."""
    species: list[np.ndarray] = []
    for rows in _row_chunks(len(counts), len(model.species_ids)):
        area = np.full(len(counts[rows]), REFERENCE_AREA_M2)
        p = model.probabilities(features[rows], mix[rows], lonlat[rows], area)
        keys = np.log(p * model.abundance[None] + 1e-300) + rng.gumbel(size=p.shape)
        most = int(counts[rows].max())
        top = np.argpartition(-keys, most - 1, axis=1)[:, :most]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, axis=1)), axis=1)
        species += [model.species_ids[t[:c]] for t, c in zip(top, counts[rows], strict=True)]
    return species


def survey_inputs(env: dict[str, np.ndarray]) -> np.ndarray:
    """``niche_features`` of hidden fields (the species' view of the environment)."""
    return niche_features({name: env[name] for name in NICHE_FIELDS})
