"""Snakemake adapter: metrics and per-bucket plot of one model on val (geolifeclef.evaluation)."""

from geolifeclef.class_frequency import read_species_table
from geolifeclef.evaluation import evaluate_model, plot_buckets, write_metrics
from geolifeclef.observations import read_table
from geolifeclef.predictions import read_predictions
from geolifeclef.rule_logging import logging_to
from geolifeclef.tracking import numeric_metrics, start_run, tracking_settings

with logging_to(snakemake.log[0]) as log:
    species = read_species_table(snakemake.input.species)
    val = read_table(snakemake.input.val)
    predictions = read_predictions(
        snakemake.input.predictions,
        known_species=species["species_id"].to_numpy(),
        expected_ids=val["observation_id"].to_numpy(),
    )
    metrics = evaluate_model(
        snakemake.wildcards.model,
        snakemake.params.kind,
        predictions,
        val,
        species,
        snakemake.input.truth or None,
    )
    write_metrics(metrics, snakemake.output.metrics)
    plot_buckets(metrics, snakemake.output.plot)
    uri, experiment = tracking_settings(snakemake.config)
    with start_run(
        uri,
        experiment,
        f"evaluate {snakemake.wildcards.model}",
        f"results/evaluation/{snakemake.wildcards.model}/metrics.jsonl",
        tags={
            "snakemake.rule": snakemake.rule,
            "wildcards.model": snakemake.wildcards.model,
            "model_kind": snakemake.params.kind,
        },
    ) as tracker:
        tracker.log_metrics(numeric_metrics(metrics))
        tracker.log_artifact(snakemake.output.metrics)
        tracker.log_artifact(snakemake.output.plot)
    log.info(
        "%s: val top-30 error %.4f (constant %.4f)",
        snakemake.wildcards.model,
        metrics["top30_error"],
        metrics["constant"]["top30_error"],
    )
