"""Where the surveys are: presence-absence surveys clustered around observer hot spots, their
split, attributes and ids; and presence-only occurrences, biased towards people.

PA surveys cluster around hot spots (survey programmes, field stations) outside the areas
that 2025 holds out, and are split 95/5 by whole 10 km blocks (LAEA), as the organizers
split GLC 2024. For 2025 further test surveys are drawn around hot spots inside the held-out
countries (its geographic shift). Each survey has a year (2017-2021), a plot area and a
coordinate uncertainty as in the real metadata (a few written empty or ``-inf``), and a
local land-cover mix drawn around the one its environment and human pressure make likely
(the 2022 demo's :func:`~geolifeclef.demo.patches.landcover_mix`): species respond to it,
and its patches and cubes are rendered from it.
"""

from dataclasses import dataclass, fields

import numpy as np

from geolifeclef.demo.patches import landcover_mix
from geolifeclef.demo.surveys.spec import HELD_OUT_COUNTRIES, SurveyDemoSpec
from geolifeclef.demo.surveys.world import COUNTRIES, EuropeGrid, to_laea

SURVEY_YEARS = (2017, 2018, 2019, 2020, 2021)
_YEAR_WEIGHTS = (0.17, 0.19, 0.21, 0.21, 0.22)
PLOT_AREAS_M2 = (1.0, 4.0, 10.0, 16.0, 25.0, 50.0, 79.0, 100.0, 200.0, 400.0, 707.0, 1000.0)
_AREA_WEIGHTS = (0.04, 0.08, 0.08, 0.1, 0.16, 0.08, 0.14, 0.12, 0.07, 0.06, 0.05, 0.02)
GEO_UNCERTAINTIES_M = (0.0, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0)
_UNCERTAINTY_WEIGHTS = (0.05, 0.2, 0.2, 0.3, 0.1, 0.08, 0.05, 0.02)
MISSING_AREA_SHARE = 0.03
"""Share of surveys whose area is written empty; a third as many get ``-inf``."""

PA_TRAIN_ID_RANGE = (212, 3_919_656)
PA_TEST_ID_RANGE = (1_000, 3_919_235)
"""GLC 2024's id ranges (GLC24-25-FORMAT §1, §4); a few test ids have 3 digits (642 first)."""
HELD_OUT_ID_START = 5_000_000
"""GLC 2025's new test surveys have 7-digit ids from 5,000,000 (the sample's 5000108)."""
PO_ID_RANGE = (1, 3_919_663)


@dataclass
class Surveys:
    """PA surveys, one row each."""

    lonlat: np.ndarray
    """(n, 2) longitude, latitude."""
    split: np.ndarray
    """``train`` or ``test``."""
    held_out: np.ndarray
    """True for 2025's test surveys in the held-out areas."""
    year: np.ndarray
    area_m2: np.ndarray
    """The plot's true area (species respond to it)."""
    area_written: np.ndarray
    """``areaInM2`` as written: the area, NaN (an empty cell) or ``-inf``."""
    geo_uncertainty_m: np.ndarray
    """``geoUncertaintyInM`` as written (NaN: empty)."""
    region: np.ndarray
    country: np.ndarray
    env: dict[str, np.ndarray]
    """The hidden fields at the survey's pixel."""
    mix: np.ndarray
    """(n, len(ALIGNED_LANDCOVER)) the local land-cover mix."""

    def __len__(self) -> int:
        return len(self.lonlat)

    @classmethod
    def concatenate(cls, parts: list["Surveys"]) -> "Surveys":
        values = {}
        for field in fields(cls):
            if field.name == "env":
                values["env"] = {k: np.concatenate([p.env[k] for p in parts]) for k in parts[0].env}
            else:
                values[field.name] = np.concatenate([getattr(p, field.name) for p in parts])
        return cls(**values)


def _land_pixels(grid: EuropeGrid, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(grid.land & mask)
    return rows, cols


def _held_out_mask(grid: EuropeGrid) -> np.ndarray:
    return np.isin(grid.country, [COUNTRIES.index(name) for name in HELD_OUT_COUNTRIES])


def _clustered_points(
    grid: EuropeGrid, n: int, n_hot_spots: int, mask: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``n`` points on land around hot spots drawn on ``mask``'s land; points themselves may
    spill over the mask's border (hence "almost" no training survey in the held-out areas)."""
    rows, cols = _land_pixels(grid, mask)
    pick = rng.choice(len(rows), n_hot_spots, replace=len(rows) < n_hot_spots)
    centre_lon, centre_lat = grid.centres(rows[pick], cols[pick])
    weight = rng.lognormal(0, 1.2, n_hot_spots)
    weight /= weight.sum()
    spread = rng.uniform(0.03, 0.5, n_hot_spots)
    chosen: list[np.ndarray] = []
    have = 0
    while have < n:
        batch = 2 * (n - have) + 100
        spot = rng.choice(n_hot_spots, batch, p=weight)
        lat = centre_lat[spot] + rng.standard_normal(batch) * spread[spot]
        lon = centre_lon[spot] + rng.standard_normal(batch) * spread[spot] / np.cos(
            np.radians(centre_lat[spot])
        )
        r, c, inside = grid.pixels(lon, lat)
        keep = np.flatnonzero(inside & grid.land[r, c])[: n - have]
        chosen.append(np.stack([lon[keep], lat[keep]], axis=1))
        have += len(keep)
    return np.concatenate(chosen)


def block_test_mask(lonlat: np.ndarray, block_km: float, share: float, rng) -> np.ndarray:
    """True for the surveys of randomly ordered whole LAEA blocks of ``block_km``, taken
    until they hold ``share`` of the surveys (the organizers' 95/5 spatial-block split)."""
    x, y = to_laea(lonlat[:, 0], lonlat[:, 1])
    side = block_km * 1000
    keys = np.floor(x / side).astype(np.int64) * 10_000_000 + np.floor(y / side).astype(np.int64)
    blocks, block_of, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = rng.permutation(len(blocks))
    taken = order[: np.searchsorted(np.cumsum(counts[order]), share * len(lonlat)) + 1]
    return np.isin(block_of, taken)


def _attributes(
    grid: EuropeGrid, lonlat: np.ndarray, split: np.ndarray, held_out: bool, rng
) -> Surveys:
    """Years, plot areas, uncertainties and land-cover mixes of surveys at ``lonlat``."""
    n = len(lonlat)
    rows, cols, _ = grid.pixels(lonlat[:, 0], lonlat[:, 1])
    env = {name: field[rows, cols] for name, field in grid.fields.items()}
    year = rng.choice(SURVEY_YEARS, n, p=_YEAR_WEIGHTS).astype(np.int32)
    area = rng.choice(PLOT_AREAS_M2, n, p=_AREA_WEIGHTS)
    missing = rng.random(n)
    area_written = area.copy()
    area_written[missing < MISSING_AREA_SHARE] = np.nan
    area_written[(missing >= MISSING_AREA_SHARE) & (missing < 1.33 * MISSING_AREA_SHARE)] = -np.inf
    uncertainty = rng.choice(GEO_UNCERTAINTIES_M, n, p=_UNCERTAINTY_WEIGHTS)
    uncertainty[rng.random(n) < 0.03] = np.nan
    # Human pressure pulls the land cover towards the artificial class (the 2022 demo's
    # urban pull); the local mix varies around the expected one, as a plot does.
    urban = np.clip(env["human"] + rng.normal(0, 0.15, n), 0, 1)
    expected = landcover_mix(env, urban)
    mix = np.stack([rng.dirichlet(m * 6 + 0.05) for m in expected]) if n else expected
    return Surveys(
        lonlat=lonlat,
        split=split,
        held_out=np.full(n, held_out),
        year=year,
        area_m2=area,
        area_written=area_written,
        geo_uncertainty_m=uncertainty,
        region=grid.region[rows, cols],
        country=grid.country[rows, cols],
        env=env,
        mix=mix,
    )


def draw_pa_surveys(grid: EuropeGrid, spec: SurveyDemoSpec, rng: np.random.Generator) -> Surveys:
    """Train and the spatial-block test: ``spec.n_surveys`` surveys around hot spots outside
    the held-out areas."""
    lonlat = _clustered_points(grid, spec.n_surveys, spec.n_hot_spots, ~_held_out_mask(grid), rng)
    test = block_test_mask(lonlat, spec.block_km, spec.test_share, rng)
    return _attributes(grid, lonlat, np.where(test, "test", "train"), False, rng)


def draw_held_out_surveys(
    grid: EuropeGrid, spec: SurveyDemoSpec, n: int, rng: np.random.Generator
) -> Surveys:
    """2025's shift: ``n`` test surveys around hot spots inside the held-out countries, all
    in them."""
    mask = _held_out_mask(grid)
    n_spots = max(3, int(spec.n_hot_spots * 0.15))
    lonlat = np.empty((0, 2))
    while len(lonlat) < n:
        points = _clustered_points(grid, n, n_spots, mask, rng)
        rows, cols, _ = grid.pixels(points[:, 0], points[:, 1])
        lonlat = np.concatenate([lonlat, points[mask[rows, cols]]])[:n]
    return _attributes(grid, lonlat, np.full(n, "test"), True, rng)


def held_out_count(n_block_test: int, spec: SurveyDemoSpec) -> int:
    """Held-out test surveys that make them ``held_out_share`` of 2025's test."""
    share = spec.held_out_share
    return int(round(n_block_test * share / (1 - share))) if share < 1 else n_block_test


def _sample_range(low: int, high: int, n: int, exclude: np.ndarray, rng) -> np.ndarray:
    """``n`` distinct integers of [low, high) not in ``exclude``, in random order."""
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < n:
        candidates = rng.integers(low, high, 2 * (n - len(chosen)) + 16)
        candidates = candidates[~np.isin(candidates, exclude)]
        chosen = np.concatenate([chosen, candidates])
        _, first = np.unique(chosen, return_index=True)
        chosen = chosen[np.sort(first)]
    return chosen[:n]


def draw_pa_ids(split: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distinct survey ids spread as the archive's: train from 212, test from 1,000 with a
    few of 3 digits (642 first, which lives in ``42/6/642``)."""
    test = split == "test"
    ids = np.empty(len(split), dtype=np.int64)
    n_test = int(test.sum())
    test_ids = _sample_range(*PA_TEST_ID_RANGE, n_test, np.empty(0), rng)
    n_short = min(n_test, max(1, n_test // 200))
    short = np.concatenate([[642], _sample_range(100, 1000, n_short - 1, np.array([642]), rng)])
    test_ids[rng.choice(n_test, n_short, replace=False)] = short[:n_short]
    ids[test] = test_ids
    ids[~test] = _sample_range(*PA_TRAIN_ID_RANGE, len(split) - n_test, test_ids, rng)
    return ids


def draw_held_out_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    return HELD_OUT_ID_START + _sample_range(0, 200_000, n, np.empty(0), rng)


@dataclass
class PresenceOnly:
    """Presence-only surveys (a point, a date, one or a few occurrences each)."""

    survey_id: np.ndarray
    lonlat: np.ndarray
    n_occurrences: np.ndarray
    year: np.ndarray
    day_of_year: np.ndarray
    """Day of the year; 0 where the date is unknown (month and day written empty)."""
    geo_uncertainty_m: np.ndarray
    publisher: np.ndarray
    env: dict[str, np.ndarray]
    mix: np.ndarray
    """The expected land-cover mix at the point (no plot: an occurrence is a point)."""


PUBLISHERS = (
    "iNaturalist.org",
    "Observation.org",
    "Pl@ntNet",
    "Naturalis Biodiversity Center (NL) - Botany",
    "Danish Biodiversity Information Facility",
    "Conservatoire botanique national",
)
_PUBLISHER_WEIGHTS = (0.35, 0.25, 0.2, 0.08, 0.07, 0.05)


def draw_presence_only(
    grid: EuropeGrid, spec: SurveyDemoSpec, pa_train_ids: np.ndarray, excluded: np.ndarray, rng
) -> PresenceOnly:
    """``spec.n_po`` occurrences at points drawn where people are (human pressure, towns
    and roads), over the whole map; a PO survey holds one to a few of them. Some PO survey
    ids equal PA train ids, as in the archive (never join the two on it)."""
    rows, cols = np.nonzero(grid.land)
    weight = np.exp(3.5 * grid.fields["human"][rows, cols])
    weight /= weight.sum()
    counts = np.empty(0, dtype=np.int64)
    while counts.sum() < spec.n_po:
        counts = np.concatenate([counts, rng.geometric(0.75, spec.n_po // 2 + 1)])
    cut = int(np.searchsorted(np.cumsum(counts), spec.n_po)) + 1
    counts = counts[:cut]
    counts[-1] -= counts.sum() - spec.n_po
    n = len(counts)
    pixel = rng.choice(len(rows), n, p=weight)
    lon, lat = grid.centres(rows[pixel], cols[pixel])
    half = grid.resolution / 2
    lonlat = np.stack(
        [lon + rng.uniform(-half, half, n), lat + rng.uniform(-half, half, n)], axis=1
    )
    n_shared = min(n // 4, len(pa_train_ids) // 5)
    shared = rng.choice(pa_train_ids, n_shared, replace=False)
    own = _sample_range(*PO_ID_RANGE, n - n_shared, np.concatenate([pa_train_ids, excluded]), rng)
    survey_id = rng.permutation(np.concatenate([shared, own]))
    day = np.clip(np.round(rng.normal(165, 50, n)), 1, 365).astype(np.int64)
    day[rng.random(n) < 0.02] = 0
    uncertainty = rng.choice(GEO_UNCERTAINTIES_M, n, p=_UNCERTAINTY_WEIGHTS) * 2
    uncertainty[rng.random(n) < 0.1] = np.nan
    r, c, _ = grid.pixels(lonlat[:, 0], lonlat[:, 1])
    env = {name: field[r, c] for name, field in grid.fields.items()}
    return PresenceOnly(
        survey_id=survey_id,
        lonlat=lonlat,
        n_occurrences=counts,
        year=rng.choice(SURVEY_YEARS, n, p=_YEAR_WEIGHTS).astype(np.int32),
        day_of_year=day,
        geo_uncertainty_m=uncertainty,
        publisher=rng.choice(PUBLISHERS, n, p=_PUBLISHER_WEIGHTS),
        env=env,
        mix=landcover_mix(env, env["human"]),
    )
