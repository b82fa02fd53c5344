"""Snakemake adapter: metrics and per-bucket plot of one model on val (geolifeclef.evaluation)."""

from geolifeclef.blend_fit import read_weights
from geolifeclef.class_frequency import read_species_table
from geolifeclef.evaluation import evaluate_model, plot_buckets, write_metrics
from geolifeclef.observations import read_table
from geolifeclef.predictions import read_predictions
from geolifeclef.rule_logging import logging_to
from geolifeclef.tracking import Tracking, numeric_metrics, start_run

with logging_to(snakemake.log[0]) as log:
    model = snakemake.wildcards.model
    species = read_species_table(snakemake.input.species)
    val = read_table(snakemake.input.val)
    predictions = read_predictions(
        snakemake.input.predictions,
        known_species=species["species_id"].to_numpy(),
        expected_ids=val["observation_id"].to_numpy(),
    )
    metrics = evaluate_model(
        model, snakemake.params.kind, predictions, val, species, snakemake.input.truth or None
    )
    metrics["test_fit"] = snakemake.params.test_fit
    weights = snakemake.params.members or (
        read_weights(snakemake.input.blend_weights[0]) if snakemake.input.blend_weights else {}
    )
    if weights:
        metrics["members"] = weights
    write_metrics(metrics, snakemake.output.metrics)
    plot_buckets(metrics, snakemake.output.plot)
    tracking = Tracking.of_invocation()
    with start_run(
        tracking.uri,
        tracking.experiment,
        f"evaluate {model}",
        snakemake.params.local_metrics,
        tags={
            "snakemake.rule": snakemake.rule,
            "wildcards.model": model,
            "model_kind": snakemake.params.kind,
        },
    ) as tracker:
        tracker.log_metrics(numeric_metrics(metrics))
        tracker.log_artifact(snakemake.output.metrics)
        tracker.log_artifact(snakemake.output.plot)
    log.info(
        "%s: val top-30 error %.4f (constant %.4f)",
        model,
        metrics["top30_error"],
        metrics["constant"]["top30_error"],
    )
