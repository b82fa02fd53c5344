"""Snakemake adapter: fit a blend's weights on val, with honest cross-fitted val predictions
(geolifeclef.predictions.blend_fit)."""

import json

import numpy as np

from geolifeclef.atomic import write_text
from geolifeclef.data.observations import read_table
from geolifeclef.predictions.blend_fit import fit_blend
from geolifeclef.predictions.table import read_predictions, write_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    names = snakemake.params.members
    val = read_table(snakemake.input.val)
    ids = val["observation_id"].to_numpy()
    found = fit_blend(
        [read_predictions(path) for path in snakemake.input.members],
        ids,
        val["species_id"].to_numpy(np.int64),
        val["latitude"].to_numpy(),
        val["longitude"].to_numpy(),
        snakemake.params.top_k,
        snakemake.params.fit,
    )
    write_predictions(snakemake.output.val, found.val, expected_ids=ids)
    report = found.report(names)
    write_text(snakemake.output.weights, json.dumps(report, indent=2) + "\n")
    log.info(
        "weights for test %s (%s); val top-30 error cross-fitted %.4f, in-sample %.4f, "
        "best member %s %.4f",
        report["weights"],
        found.fit.method,
        found.cross_fitted_error,
        found.in_sample_error,
        report["best_member"],
        report["best_member_top30_error"],
    )
