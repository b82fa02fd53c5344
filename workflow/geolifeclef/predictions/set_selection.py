"""Set selection, the step of a survey edition between a model's ranked predictions and its
answer: which of its candidates each survey gets.

Every model (baseline, experiment, blend) writes its K best species per survey with their
presence probabilities (``geolifeclef.predictions.table``); this step turns them into sets
(``geolifeclef.predictions.set_table``) by one set rule (``geolifeclef.predictions.set_rules``):
the organizers' fixed top K, one probability threshold, or the per-survey size of highest
expected F1 under the model's own probabilities. The rule is chosen on val, cross-fitted on
two spatial folds as the fitted blends are (``blend_fit.spatial_folds``), so that a rule
fitted on some val surveys is scored on others:

* val sets: each fold's surveys get the chosen rule fitted on the other fold: the honest sets
  the leaderboard scores;
* test sets: the chosen rule refitted on all of val;
* the report (``rule.json``): every rule's cross-fitted F1 and parameters, and the choice.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.atomic import write_text
from geolifeclef.predictions.blend_fit import spatial_folds
from geolifeclef.predictions.f1 import f1_of_prefixes
from geolifeclef.predictions.set_rules import (
    SetRule,
    apply_rule,
    choose_set_rule,
    cross_fitted_sizes,
)
from geolifeclef.predictions.set_table import SpeciesSets
from geolifeclef.predictions.table import Predictions


def true_sets(surveys: pd.DataFrame) -> list[np.ndarray]:
    """Each survey's species present (its ``species_ids``), in the table's order."""
    return [np.asarray(s, dtype=np.int64) for s in surveys["species_ids"]]


def select_sets(
    val: Predictions,
    test: Predictions,
    val_surveys: pd.DataFrame,
    rules: tuple[str, ...],
    top_k: int,
) -> tuple[SpeciesSets, SpeciesSets, dict]:
    """(val sets, test sets, report) of a model's val and test predictions (module
    docstring); ``val_surveys``: the val survey table (truth and coordinates)."""
    val = val.aligned_to(val_surveys["observation_id"].to_numpy())
    truth = true_sets(val_surveys)
    folds = spatial_folds(val_surveys["latitude"], val_surveys["longitude"])
    chosen, report = choose_set_rule(
        val.species_ids, val.scores, truth, folds, top_k=top_k, rules=tuple(rules)
    )
    prefix_f1 = f1_of_prefixes(val.species_ids, truth)
    val_sizes, _ = cross_fitted_sizes(chosen.name, val.scores, prefix_f1, folds, top_k)
    _, test_sizes = apply_rule(chosen, test.species_ids, test.scores)
    report["val_mean_size"] = float(val_sizes.mean()) if len(val_sizes) else None
    report["test_mean_size"] = float(test_sizes.mean()) if len(test_sizes) else None
    return (
        SpeciesSets.from_prefixes(val.observation_id, val.species_ids, val_sizes),
        SpeciesSets.from_prefixes(test.observation_id, test.species_ids, test_sizes),
        report,
    )


def rule_of(report: dict) -> SetRule:
    """The chosen rule a report (``rule.json``) names."""
    chosen = report["chosen"]
    return SetRule(chosen["name"], chosen.get("parameter"))


def write_report(report: dict, path: str | Path) -> None:
    write_text(path, json.dumps(report, indent=2) + "\n")


def read_report(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
