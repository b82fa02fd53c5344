"""Snakemake adapter: rank every model by val top-30 error, with each model's difference to the
best by a paired block bootstrap and the best model's best and worst species (see
geolifeclef.evaluation.scores); the reference figures and the leaderboard go to the
invocation's MLflow parent run, once."""

import os

from geolifeclef.evaluation.scores import read_metrics, write_leaderboard
from geolifeclef.evaluation.set_scores import write_set_leaderboard
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.tracking import PARENT_RUN_ENV, Tracking
from geolifeclef.tracking.records import reference_metrics
from geolifeclef.tracking.runs import attach_run

with logging_to(snakemake.log[0]) as log:
    all_metrics = [read_metrics(path) for path in snakemake.input.metrics]
    models = [metrics["model"] for metrics in all_metrics]
    outputs = {
        "parquet": snakemake.output.parquet,
        "markdown": snakemake.output.markdown,
        "html_path": snakemake.output.html,
        "png": snakemake.output.plot,
        "block_files": dict(zip(models, snakemake.input.blocks, strict=True)),
        "bootstrap": snakemake.params.bootstrap,
    }
    if snakemake.params.task.multi_label:  # a survey edition: species sets, F1
        write_set_leaderboard(all_metrics, **outputs)
    else:
        write_leaderboard(
            all_metrics,
            sweeps=list(snakemake.params.sweeps),
            species_files=dict(zip(models, snakemake.input.species, strict=True)),
            **outputs,
        )
    parent = os.environ.get(PARENT_RUN_ENV)
    with attach_run(Tracking.of_invocation().uri, parent, os.devnull) as tracker:
        if tracker.online:
            tracker.log_metrics(reference_metrics(all_metrics[0]))
            for path in (snakemake.output.markdown, snakemake.output.html, snakemake.output.plot):
                tracker.log_artifact(path, "leaderboard")
            log.info("reference metrics and leaderboard logged to MLflow run %s", parent)
