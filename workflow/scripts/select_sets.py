"""Snakemake adapter: a model's val and test predictions cut into species sets by the set
rule chosen on val (geolifeclef.predictions.set_selection)."""

from geolifeclef.data.observations import read_table
from geolifeclef.predictions.set_selection import select_sets, write_report
from geolifeclef.predictions.set_table import write_sets
from geolifeclef.predictions.table import read_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    surveys = read_table(snakemake.input.surveys)
    val = read_predictions(snakemake.input.val, marginal=True)
    test = read_predictions(snakemake.input.test, marginal=True)
    val_sets, test_sets, report = select_sets(
        val, test, surveys, tuple(snakemake.params.rules), snakemake.params.top_k
    )
    write_sets(snakemake.output.val, val_sets, surveys["observation_id"].to_numpy())
    write_sets(snakemake.output.test, test_sets, test.observation_id)
    write_report(report, snakemake.output.rule)
    for name, figures in report["rules"].items():
        log.info("%-12s cross-fitted val F1 %.4f %s", name, figures["cross_fitted_f1"], figures)
    log.info(
        "chosen: %s; mean set size val %.1f, test %.1f",
        report["chosen"],
        report["val_mean_size"],
        report["test_mean_size"],
    )
