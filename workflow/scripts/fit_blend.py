"""Snakemake adapter: fit a blend's weights on val, with honest cross-fitted val predictions
(geolifeclef.predictions.blend_fit; a survey edition's: .set_blend_fit)."""

import json

import numpy as np

from geolifeclef.atomic import write_text
from geolifeclef.data.observations import read_table
from geolifeclef.predictions.blend_fit import METRIC_WORDS, fit_blend
from geolifeclef.predictions.set_blend_fit import fit_set_blend
from geolifeclef.predictions.set_selection import true_sets
from geolifeclef.predictions.table import read_predictions, write_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    names = snakemake.params.members
    # A survey edition's scores are presence probabilities, its labels species sets.
    marginal = snakemake.params.marginal
    val = read_table(snakemake.input.val)
    ids = val["observation_id"].to_numpy()
    members = [read_predictions(path, marginal=marginal) for path in snakemake.input.members]
    found = (fit_set_blend if marginal else fit_blend)(
        members,
        ids,
        true_sets(val) if marginal else val["species_id"].to_numpy(np.int64),
        val["latitude"].to_numpy(),
        val["longitude"].to_numpy(),
        snakemake.params.top_k,
        snakemake.params.fit,
    )
    write_predictions(snakemake.output.val, found.val, expected_ids=ids, marginal=marginal)
    report = found.report(names)
    write_text(snakemake.output.weights, json.dumps(report, indent=2) + "\n")
    log.info(
        "weights for test %s (%s); val %s cross-fitted %.4f, in-sample %.4f, best member %s %.4f",
        report["weights"],
        found.fit.method,
        METRIC_WORDS[found.metric],
        found.cross_fitted_error,
        found.in_sample_error,
        report["best_member"],
        found.member_errors[found.best_member],
    )
