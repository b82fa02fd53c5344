"""The truth beside a survey demo (not inside its layout).

* ``presence_probabilities.npz``: every PA survey's (train and test: the workflow carves
  val from train) TRUE presence probability of each species, independent across species.
  The surveys were drawn conditioned on at least one species present, so the truth's
  expected F1 of a nonempty set is E_unconditional[F1] / (1 - prod_j (1 - p_j)).
* ``test_solution.csv``: the hidden test labels as a Kaggle solution file, ``surveyId,
  predictions`` with the ids space-separated ascending, in the test metadata's order.
* ``summary.json``: counts, richness, and the Bayes-optimal expected F1 of test beside a
  constant top-25's (the bounds a model on the demo falls between).
* ``world.npz``: the species model and the hidden fields on the grid, from which
  :func:`true_presence_probabilities` gives the truth at any point (true species and
  richness maps).
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import rasterio

from geolifeclef.atomic import atomic_path, write_text
from geolifeclef.data.rasters import pixel_indices
from geolifeclef.demo.patches import landcover_mix
from geolifeclef.demo.species import NICHE_FIELDS
from geolifeclef.demo.surveys.spec import SurveyDemoSpec
from geolifeclef.demo.surveys.species import REFERENCE_AREA_M2, SurveySpeciesModel, survey_inputs
from geolifeclef.demo.surveys.world import BIOGEOGRAPHIC_REGIONS, COUNTRIES, EuropeGrid

TRUTH_FILE = "presence_probabilities.npz"
SOLUTION_FILE = "test_solution.csv"
SUMMARY_FILE = "summary.json"
WORLD_FILE = "world.npz"
_WORLD_FIELDS = (*NICHE_FIELDS, "human")
"""The hidden fields the truth at a point needs: the niche's and the land cover's."""
_F1_SAMPLES = 1_000
_F1_SEED = 20_250
_F1_MAX_SURVEYS = 2_000
"""The F1 bounds are estimated on at most this many test surveys (evenly spaced in the
test's order): the large preset's 9,000 would take minutes of Monte Carlo."""


def write_presence_probabilities(
    truth_dir: Path, ids: np.ndarray, split: np.ndarray, species_ids: np.ndarray, p: np.ndarray
) -> None:
    """Every survey's true presence probabilities, rows by ``observation_id``."""
    with atomic_path(truth_dir / TRUTH_FILE) as temporary, open(temporary, "wb") as handle:
        np.savez(
            handle,
            observation_id=ids.astype(np.int64),
            subset=split.astype(str),
            species_ids=species_ids.astype(np.int32),
            probabilities=p.astype(np.float32),
        )


def solution_text(test_ids: np.ndarray, labels: list[np.ndarray]) -> str:
    """A Kaggle solution file: ``surveyId,predictions``, ids ascending and space-separated."""
    lines = ["surveyId,predictions"]
    lines += [
        f"{int(i)},{' '.join(str(int(s)) for s in np.sort(y))}"
        for i, y in zip(test_ids, labels, strict=True)
    ]
    return "\n".join(lines) + "\n"


def _expected_f1(
    p: np.ndarray, constant: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per survey: the Bayes-optimal expected F1 (that of the top-k set of the truth, k
    maximising it), that k, and the expected F1 of the set ``constant``; all conditioned on
    at least one species present.

    By Monte Carlo (``_F1_SAMPLES`` draws a survey, a fixed seed), FOR THE SUMMARY ONLY: the
    workflow's expected-F1 module is exact; this one need only be close (its error on a
    mean over hundreds of surveys is well under 0.005)."""
    n, s = p.shape
    bayes, best_k, fixed = np.empty(n), np.empty(n, dtype=np.int64), np.empty(n)
    for i in range(n):
        y = rng.random((_F1_SAMPLES, s), dtype=np.float32) < p[i]
        total = y.sum(axis=1)
        at_least_one = max(1 - np.exp(np.log1p(-np.minimum(p[i], 1 - 1e-12)).sum()), 1e-12)
        # The best k is near the expected richness: sets up to 3 times it (and 20) suffice.
        max_k = min(s, int(3 * p[i].sum()) + 20)
        ranked = np.argsort(-p[i], kind="stable")[:max_k]
        k = np.arange(1, max_k + 1)[None]
        expected = (2 * np.cumsum(y[:, ranked], axis=1) / (k + total[:, None])).mean(axis=0)
        best_k[i] = expected.argmax() + 1
        bayes[i] = expected[best_k[i] - 1] / at_least_one
        hits = y[:, constant].sum(axis=1)
        fixed[i] = (2 * hits / (len(constant) + total)).mean() / at_least_one
    return bayes, best_k, fixed


def _sample_f1(sets: list[np.ndarray], labels: list[np.ndarray]) -> float | None:
    """Samples-averaged F1 of the sets against the drawn labels (None without surveys)."""
    scores = [
        2 * len(np.intersect1d(a, b)) / (len(a) + len(b)) if len(a) + len(b) else 0.0
        for a, b in zip(sets, labels, strict=True)
    ]
    return float(np.mean(scores)) if scores else None


def _richness(counts: np.ndarray) -> dict:
    if not len(counts):
        return {}
    q = np.percentile(counts, [5, 25, 50, 75, 95])
    return {
        "mean": float(counts.mean()),
        **{f"q{int(level):02d}": float(v) for level, v in zip((5, 25, 50, 75, 95), q, strict=True)},
        "min": float(counts.min()),
        "max": float(counts.max()),
        "share_5_to_40": float(((counts >= 5) & (counts <= 40)).mean()),
    }


def summarize(
    spec: SurveyDemoSpec,
    split: np.ndarray,
    held_out: np.ndarray,
    p: np.ndarray,
    presences: np.ndarray,
    counts: dict,
) -> dict:
    """Counts, richness and F1 bounds of the drawn demo: the Bayes-optimal set (the top-k
    of the truth, k maximising its expected F1) and the constant top-25 (the species most
    often present in train), expected and as sampled, on test (and in 2025 on its block and
    held-out parts; on at most ``_F1_MAX_SURVEYS`` of them). Columns of ``p`` and
    ``presences`` are the model's species."""
    train, test = split == "train", split == "test"
    richness = presences.sum(axis=1)
    constant = np.argsort(-presences[train].sum(axis=0), kind="stable")[:25]
    rows = np.flatnonzero(test)
    if len(rows) > _F1_MAX_SURVEYS:
        rows = rows[np.linspace(0, len(rows) - 1, _F1_MAX_SURVEYS).round().astype(np.int64)]
    bayes, best_k, fixed = _expected_f1(p[rows], constant, np.random.default_rng(_F1_SEED))
    labels = [np.flatnonzero(presences[row]) for row in rows]
    ranked = [np.argsort(-p[row], kind="stable")[:k] for row, k in zip(rows, best_k, strict=True)]

    def scores(group: np.ndarray) -> dict:
        """F1 bounds of the scored test surveys ``group`` (a mask over ``rows``)."""
        chosen = np.flatnonzero(group)
        return {
            "n_scored": int(len(chosen)),
            "bayes_f1_expected": float(bayes[chosen].mean()) if len(chosen) else None,
            "bayes_f1_sampled": _sample_f1(
                [ranked[i] for i in chosen], [labels[i] for i in chosen]
            ),
            "bayes_set_size_mean": float(best_k[chosen].mean()) if len(chosen) else None,
            "constant_top25_f1_expected": float(fixed[chosen].mean()) if len(chosen) else None,
            "constant_top25_f1_sampled": _sample_f1(
                [constant] * len(chosen), [labels[i] for i in chosen]
            ),
        }

    summary = {
        "edition": f"glc{spec.year}",
        "spec": asdict(spec),
        "n_surveys": {
            "train": int(train.sum()),
            "test": int(test.sum()),
            "test_held_out": int((test & held_out).sum()),
        },
        **counts,
        "richness": {
            "train": _richness(richness[train]),
            "test": _richness(richness[test]),
            "expected_train": _richness(p[train].sum(axis=1)),
        },
        "test": scores(np.ones(len(rows), dtype=bool)),
    }
    if held_out[rows].any():
        summary["test_block"] = scores(~held_out[rows])
        summary["test_held_out"] = scores(held_out[rows])
    return summary


def write_summary(truth_dir: Path, summary: dict) -> None:
    write_text(truth_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


def write_solution(truth_dir: Path, test_ids: np.ndarray, labels: list[np.ndarray]) -> None:
    write_text(truth_dir / SOLUTION_FILE, solution_text(test_ids, labels))


@dataclass
class SurveyDemoWorld:
    """The hidden truth of a survey demo beyond its surveys: the species model and the
    hidden fields on the grid, with the regions and countries of its pixels."""

    species: SurveySpeciesModel
    transform: rasterio.Affine
    land: np.ndarray
    fields: dict[str, np.ndarray]
    region: np.ndarray
    """Index in ``region_names`` of each pixel's biogeographic region, -1 at sea."""
    country: np.ndarray
    """Index in ``country_names`` of each pixel's country, -1 at sea."""
    region_names: tuple[str, ...]
    country_names: tuple[str, ...]


def write_world(truth_dir: Path, grid: EuropeGrid, model: SurveySpeciesModel) -> None:
    """Write the world file (no random draw)."""
    arrays = {f"species.{f.name}": getattr(model, f.name) for f in fields(SurveySpeciesModel)}
    arrays["transform"] = np.array(grid.transform[:6])
    arrays["land"] = grid.land
    arrays["region"] = grid.region
    arrays["country"] = grid.country
    arrays["region_names"] = np.array(BIOGEOGRAPHIC_REGIONS)
    arrays["country_names"] = np.array(COUNTRIES)
    for name in _WORLD_FIELDS:
        arrays[f"field.{name}"] = grid.fields[name].astype(np.float32)
    with atomic_path(truth_dir / WORLD_FILE) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def read_world(path: str | Path) -> SurveyDemoWorld:
    """The world file written by ``write_world``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    model = SurveySpeciesModel(
        **{f.name: arrays[f"species.{f.name}"] for f in fields(SurveySpeciesModel)}
    )
    return SurveyDemoWorld(
        species=model,
        transform=rasterio.Affine(*arrays["transform"]),
        land=arrays["land"],
        fields={k.removeprefix("field."): v for k, v in arrays.items() if k.startswith("field.")},
        region=arrays["region"],
        country=arrays["country"],
        region_names=tuple(arrays["region_names"].tolist()),
        country_names=tuple(arrays["country_names"].tolist()),
    )


def true_presence_probabilities(
    world: SurveyDemoWorld, latitude: np.ndarray, longitude: np.ndarray
) -> np.ndarray:
    """(n, species) true presence probabilities of a survey at each point: the model at the
    point's hidden fields, with the land-cover mix expected there and a plot of
    ``REFERENCE_AREA_M2`` (a real survey's mix and area vary around them). Points off the
    grid or at sea get NaN; the sum of a row is the true richness there."""
    latitude = np.asarray(latitude, dtype=np.float64)
    longitude = np.asarray(longitude, dtype=np.float64)
    result = np.full((len(latitude), len(world.species.species_ids)), np.nan)
    rows, cols, inside = pixel_indices(world.transform, longitude, latitude, *world.land.shape)
    points = np.flatnonzero(inside & world.land[rows, cols])
    env = {k: v[rows[points], cols[points]].astype(np.float64) for k, v in world.fields.items()}
    mix = landcover_mix(env, env["human"])
    lonlat = np.stack([longitude[points], latitude[points]], axis=1)
    area = np.full(len(points), REFERENCE_AREA_M2)
    result[points] = world.species.probabilities(survey_inputs(env), mix, lonlat, area)
    return result
