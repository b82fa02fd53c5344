"""A deterministic demo in the GLC 2024 or 2025 archive layout (one set of species per
survey), with known truth.

Built like the 2022 demo (:mod:`geolifeclef.demo`), on a Europe-like map:

* a hidden world of smooth environmental fields, biogeographic regions and countries
  (:mod:`.world`), and the monthly climate the values and cubes derive from (:mod:`.climate`);
* presence-absence surveys clustered around observer hot spots, split 95/5 by 10 km blocks,
  and for 2025 a share of test surveys in areas train almost never saw; presence-only
  occurrences where people are (:mod:`.surveys`);
* species with niches, land-cover affinities, ranges and a long tail of abundance, whose TRUE
  presence probabilities are known, independent across species; each survey's species drawn
  from them conditioned on at least one (:mod:`.species`);
* every file of :class:`~geolifeclef.survey_layout.SurveyLayout` in the archive's spelling
  and formats: metadata, sample submission and values CSVs (:mod:`.tables`), Sentinel-2
  patches and time-series cubes (:mod:`.patches`);
* beside the dataset, the truth: presence probabilities, the test solution file, a summary
  with the Bayes-optimal expected F1, and the world (:mod:`.truth`).

Presets and sizes are in :mod:`.spec`.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.demo.surveys.climate import monthly_normals, yearly_anomalies
from geolifeclef.demo.surveys.patches import SurveyFiles, write_survey_files
from geolifeclef.demo.surveys.spec import (
    SURVEY_DEMO_SCALES,
    SurveyDemoSpec,
    survey_spec_for,
)
from geolifeclef.demo.surveys.species import (
    SurveySpeciesModel,
    calibrate,
    draw_occurrence_species,
    draw_presences,
    draw_species,
    survey_inputs,
)
from geolifeclef.demo.surveys.surveys import (
    PresenceOnly,
    Surveys,
    draw_held_out_ids,
    draw_held_out_surveys,
    draw_pa_ids,
    draw_pa_surveys,
    draw_presence_only,
    held_out_count,
)
from geolifeclef.demo.surveys.tables import (
    SAMPLE_SUBMISSION_K,
    survey_values,
    write_pa_metadata,
    write_po_metadata,
    write_sample_submission,
    write_values,
)
from geolifeclef.demo.surveys.truth import (
    SOLUTION_FILE,
    SUMMARY_FILE,
    TRUTH_FILE,
    WORLD_FILE,
    read_world,
    summarize,
    true_presence_probabilities,
    write_presence_probabilities,
    write_solution,
    write_summary,
    write_world,
)
from geolifeclef.demo.surveys.world import EuropeGrid, make_europe_grid, to_laea
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SURVEY_SPLITS, SurveyLayout

__all__ = [
    "SOLUTION_FILE",
    "SUMMARY_FILE",
    "SURVEY_DEMO_SCALES",
    "TRUTH_FILE",
    "WORLD_FILE",
    "DrawnDemo",
    "SurveyDemoSpec",
    "draw_demo",
    "generate_survey_demo",
    "read_world",
    "survey_spec_for",
    "true_presence_probabilities",
]

log = logging.getLogger(__name__)

RANDOM_STREAMS = (
    "world",
    "surveys",
    "species",
    "presences",
    "ids",
    "values",
    "held_out",
    "presence_only",
    "tables",
    "files",
)
"""One generator per concern, seeded by ``(spec.seed, its index)``: a concern's draws do not
move when another's change, so 2024 and 2025 of one seed share their world, train (its
metadata, values and cubes), block test and presence-only occurrences, as the real archives
do (GLC 2025's test is GLC 2024's plus new surveys)."""


@dataclass
class DrawnDemo:
    """Everything a survey demo draws before it writes a file."""

    grid: EuropeGrid
    model: SurveySpeciesModel
    surveys: Surveys
    ids: np.ndarray
    p: np.ndarray
    """(surveys, species) float32 true presence probabilities."""
    presences: np.ndarray
    values: dict[str, pd.DataFrame]
    """The values families of every survey, in survey order, before any cell is lost."""
    po: PresenceOnly
    po_species: list[np.ndarray]


def draw_demo(spec: SurveyDemoSpec, rng: dict[str, np.random.Generator]) -> DrawnDemo:
    """The world, the PA surveys (2025: with the held-out test after the others), their
    species and values, and the presence-only occurrences."""
    grid = make_europe_grid(spec, rng["world"])
    surveys = draw_pa_surveys(grid, spec, rng["surveys"])
    model = draw_species(spec, grid, rng["species"])
    train = surveys.split == "train"
    features = survey_inputs(surveys.env)
    calibrate(
        model,
        features[train],
        surveys.mix[train],
        surveys.lonlat[train],
        surveys.area_m2[train],
        spec.mean_richness,
    )
    p = model.probabilities(features, surveys.mix, surveys.lonlat, surveys.area_m2)
    presences = draw_presences(p, rng["presences"])
    ids = draw_pa_ids(surveys.split, rng["ids"])
    values = survey_values(surveys, spec.year, rng["values"])
    if spec.year == 2025:
        n_held_out = held_out_count(int((surveys.split == "test").sum()), spec)
        held_out = draw_held_out_surveys(grid, spec, n_held_out, rng["held_out"])
        p_held_out = model.probabilities(
            survey_inputs(held_out.env), held_out.mix, held_out.lonlat, held_out.area_m2
        )
        presences = np.concatenate([presences, draw_presences(p_held_out, rng["held_out"])])
        ids = np.concatenate([ids, draw_held_out_ids(n_held_out, rng["held_out"])])
        surveys = Surveys.concatenate([surveys, held_out])
        p = np.concatenate([p, p_held_out])
        held_out_values = survey_values(held_out, spec.year, rng["held_out"])
        values = {
            k: pd.concat([v, held_out_values[k]], ignore_index=True) for k, v in values.items()
        }
    train, test = surveys.split == "train", surveys.split == "test"
    po = draw_presence_only(grid, spec, ids[train], ids[test], rng["presence_only"])
    po_species = draw_occurrence_species(
        model, survey_inputs(po.env), po.mix, po.lonlat, po.n_occurrences, rng["presence_only"]
    )
    return DrawnDemo(grid, model, surveys, ids, p, presences, values, po, po_species)


def generate_survey_demo(
    root: Path, truth_dir: Path, spec: SurveyDemoSpec, workers: int = 1
) -> dict:
    """Write a survey demo under ``root`` (the files of ``SurveyLayout(root,
    SURVEY_ARCHIVES[spec.year])``) and its truth under ``truth_dir``; return the summary.

    Same spec, same bytes, whatever ``workers`` (processes rendering the patches and cubes).
    """
    root, truth_dir = Path(root), Path(truth_dir)
    layout = SurveyLayout(root, SURVEY_ARCHIVES[spec.year])
    rng = {name: np.random.default_rng([spec.seed, i]) for i, name in enumerate(RANDOM_STREAMS)}
    log.info("drawing the world, surveys and species of %s", spec)
    demo = draw_demo(spec, rng)
    surveys, ids, presences = demo.surveys, demo.ids, demo.presences
    train = surveys.split == "train"

    log.info("writing the tables of %d PA surveys under %s", len(surveys), root)
    rows, n_train_rows = write_pa_metadata(
        layout, surveys, ids, presences, demo.model.species_ids, rng["tables"]
    )
    n_po_rows = write_po_metadata(layout, demo.po, demo.po_species, spec.year)
    most_frequent = np.argsort(-presences[train].sum(axis=0), kind="stable")
    write_sample_submission(
        layout, ids[rows["test"]], demo.model.species_ids[most_frequent[:SAMPLE_SUBMISSION_K]]
    )
    for split in SURVEY_SPLITS:
        values = {k: v.iloc[rows[split]].reset_index(drop=True) for k, v in demo.values.items()}
        write_values(layout, split, ids[rows[split]], values, rng["tables"])

    files = SurveyFiles(
        survey_id=ids,
        split=surveys.split,
        mix=surveys.mix,
        temperature=surveys.env["temperature"],
        normals=monthly_normals(surveys.env),
        laea=np.stack(to_laea(surveys.lonlat[:, 0], surveys.lonlat[:, 1]), axis=1),
        seed=spec.seed,
        anomalies=yearly_anomalies(rng["files"]),
    )
    write_survey_files(layout, files, workers)

    log.info("writing the truth under %s", truth_dir)
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_presence_probabilities(truth_dir, ids, surveys.split, demo.model.species_ids, demo.p)
    test_labels = [demo.model.species_ids[presences[row]] for row in rows["test"]]
    write_solution(truth_dir, ids[rows["test"]], test_labels)
    write_world(truth_dir, demo.grid, demo.model)
    counts = {
        "n_rows": {"pa_train": n_train_rows, "po": n_po_rows},
        "n_species": {
            "world": int(len(demo.model.species_ids)),
            "pa_train": int(presences[train].any(axis=0).sum()),
            "po": int(len(np.unique(np.concatenate(demo.po_species)))),
        },
    }
    summary = summarize(spec, surveys.split, surveys.held_out, demo.p, presences, counts)
    write_summary(truth_dir, summary)
    return summary
