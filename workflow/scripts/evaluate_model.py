"""Snakemake adapter: metrics (with the block-bootstrap interval), per-bucket plot, misses per
val block and per-species results of one model on val (geolifeclef.evaluation.scores,
.bootstrap, .species_results), logged to MLflow as an evaluate run (names and links:
geolifeclef.tracking.records)."""

import json
from pathlib import Path

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_table
from geolifeclef.evaluation.bootstrap import BlockBootstrap, write_block_errors
from geolifeclef.evaluation.scores import evaluate_model, plot_buckets, val_misses, write_metrics
from geolifeclef.evaluation.species_results import species_results, write_species_results
from geolifeclef.predictions.blend_fit import read_report
from geolifeclef.predictions.metrics import INTERVAL_HIGH, INTERVAL_LOW, KAGGLE_ERROR
from geolifeclef.predictions.table import read_predictions
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.tracking import Tracking
from geolifeclef.tracking.records import (
    DESCRIPTION_TAG,
    evaluated_model_id,
    evaluation_description,
    evaluation_links,
    evaluation_metrics,
    evaluation_params,
)
from geolifeclef.tracking.runs import git_commit, start_run

with logging_to(snakemake.log[0]) as log:
    model = snakemake.wildcards.model
    kind = snakemake.params.kind
    species = read_species_table(snakemake.input.species)
    val = read_table(snakemake.input.val)
    predictions = read_predictions(
        snakemake.input.predictions,
        known_species=species["species_id"].to_numpy(),
        expected_ids=val["observation_id"].to_numpy(),
    )
    predictions = predictions.aligned_to(val["observation_id"].to_numpy())
    bootstrap = BlockBootstrap(**snakemake.params.bootstrap)
    metrics = evaluate_model(
        model, kind, predictions, val, species, snakemake.input.truth or None, bootstrap
    )
    write_block_errors(*val_misses(predictions, val, bootstrap), snakemake.output.blocks)
    labels = val["species_id"].to_numpy()
    write_species_results(
        species_results(predictions.species_ids, predictions.scores, labels, species),
        snakemake.output.species,
    )
    metrics["test_fit"] = snakemake.params.test_fit
    # A fitted blend's weights and fit as its weights.json says (the defaults filled in).
    fitted = read_report(snakemake.input.blend_weights[0]) if snakemake.input.blend_weights else {}
    weights = snakemake.params.members or fitted.get("weights", {})
    settings = fitted.get("fit", snakemake.params.settings)
    if weights:
        metrics["members"] = weights
    write_metrics(metrics, snakemake.output.metrics)
    plot_buckets(metrics, snakemake.output.plot)
    history = (
        json.loads(Path(snakemake.input.history[0]).read_text())
        if snakemake.input.history
        else None
    )
    links = evaluation_links(history)
    tracking = Tracking.of_invocation()
    with start_run(
        tracking.uri,
        tracking.experiment,
        f"evaluate {model}",
        snakemake.params.local_metrics,
        tags={
            "snakemake.rule": snakemake.rule,
            "wildcards.model": model,
            "model_kind": kind,
            "test_fit": snakemake.params.test_fit,
            "mlflow.source.name": "workflow/scripts/evaluate_model.py",
            "mlflow.source.git.commit": git_commit(),
            DESCRIPTION_TAG: evaluation_description(model, kind, links),
            **links,
        },
    ) as tracker:
        tracker.log_params(evaluation_params(model, kind, settings, weights))
        # An experiment's figures land at its kept epoch, on its train run's curves.
        tracker.log_metrics(
            evaluation_metrics(metrics),
            step=(history or {}).get("best_epoch"),
            model_id=evaluated_model_id(links),
        )
        tracker.log_artifact(snakemake.output.metrics)
        tracker.log_artifact(snakemake.output.plot)
        tracker.log_artifact(snakemake.output.species)
    log.info(
        "%s: val top-30 error %.4f (%.0f%% interval %.4f-%.4f; constant %.4f)",
        model,
        metrics[KAGGLE_ERROR],
        100 * bootstrap.confidence,
        metrics[INTERVAL_LOW.name],
        metrics[INTERVAL_HIGH.name],
        metrics["constant"][KAGGLE_ERROR],
    )
