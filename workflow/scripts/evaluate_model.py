"""Snakemake adapter: metrics (with the block-bootstrap interval), per-bucket plot, misses per
val block and per-species results of one model on val (geolifeclef.evaluation.scores,
.bootstrap, .species_results), logged to MLflow as an evaluate run (names and links:
geolifeclef.tracking.records) with the model as an MLflow model (geolifeclef.serving: the
URI lands in metrics.json, where the blends and the submission find it)."""

import json
from pathlib import Path

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_table
from geolifeclef.evaluation.bootstrap import spatial_blocks, write_block_errors
from geolifeclef.evaluation.scores import (
    evaluate_model,
    plot_buckets,
    read_metrics,
    val_misses,
    write_metrics,
)
from geolifeclef.evaluation.set_scores import (
    evaluate_set_model,
    plot_set_figures,
    species_set_results,
    write_species_set_results,
)
from geolifeclef.evaluation.species_results import species_results, write_species_results
from geolifeclef.predictions.blend_fit import blend_weights, read_report
from geolifeclef.predictions.metrics import INTERVAL_HIGH, INTERVAL_LOW, KAGGLE_ERROR
from geolifeclef.predictions.set_selection import read_report as read_set_report
from geolifeclef.predictions.set_table import read_sets
from geolifeclef.predictions.table import blend_k, read_predictions
from geolifeclef.rule_logging import logging_to
from geolifeclef.serving.models import log_baseline_model, log_blend_model, log_set_model
from geolifeclef.settings.families import BASELINES as BASELINE_FAMILIES
from geolifeclef.settings.tracking import Tracking
from geolifeclef.tracking.records import (
    DESCRIPTION_TAG,
    MODEL_URI_KEY,
    SETS_MODEL_URI_KEY,
    evaluated_model_id,
    evaluation_description,
    evaluation_links,
    evaluation_metrics,
    evaluation_params,
)
from geolifeclef.tracking.runs import git_commit, start_run


def served_model(tracker) -> str | None:
    """Log the model as an MLflow model into the evaluate run (a baseline, a blend), or
    find the one its train or refit run logged (an experiment); its URI."""
    inputs, params = snakemake.input, snakemake.params
    if params.family in BASELINE_FAMILIES:
        return log_baseline_model(
            tracker,
            snakemake.wildcards.model,
            params.family,
            inputs.model_file,
            inputs.species,
            inputs.env or None,
            list(inputs.patch_stats),
            inputs.val,
            params.chunk_rows,
        )
    if params.family == "experiment":
        return json.loads(Path(inputs.served_history[0]).read_text()).get(MODEL_URI_KEY)
    members = [read_metrics(path) for path in inputs.member_metrics]
    blended = blend_weights(
        params.members,
        inputs.blend_weights[0] if inputs.blend_weights else None,
        params.sweep_members,
        members,
    )
    # A model's val and test tables keep the same K: its metrics.json says it.
    member_k = {found["model"]: found["k"] for found in members}
    return log_blend_model(
        tracker,
        snakemake.wildcards.model,
        blended,
        {found["model"]: found.get(MODEL_URI_KEY) for found in members},
        member_k,
        params.member_params,
        blend_k(params.top_k, (member_k[name] for name, w in blended.items() if w > 0)),
        inputs.val,
    )


def evaluate_top30(model, kind, val, species, bootstrap) -> dict:
    """GLC 2022: the model's top 30 of every val observation."""
    predictions = read_predictions(
        snakemake.input.predictions,
        known_species=species["species_id"].to_numpy(),
        expected_ids=val["observation_id"].to_numpy(),
    )
    predictions = predictions.aligned_to(val["observation_id"].to_numpy())
    metrics = evaluate_model(
        model, kind, predictions, val, species, snakemake.input.truth or None, bootstrap
    )
    write_block_errors(*val_misses(predictions, val, bootstrap), snakemake.output.blocks)
    labels = val["species_id"].to_numpy()
    write_species_results(
        species_results(predictions.species_ids, predictions.scores, labels, species),
        snakemake.output.species,
    )
    return metrics


def evaluate_species_sets(model, kind, val, species, bootstrap) -> dict:
    """A survey edition: the model's val sets, made by its set rule."""
    sets = read_sets(snakemake.input.sets, val["observation_id"].to_numpy())
    metrics, f1 = evaluate_set_model(
        model,
        kind,
        sets,
        val,
        species,
        snakemake.params.task.set_size,
        read_set_report(snakemake.input.set_rule),
        snakemake.input.truth or None,
        bootstrap,
    )
    metrics["k"] = read_predictions(snakemake.input.predictions, marginal=True).k
    blocks = spatial_blocks(val["latitude"], val["longitude"], bootstrap.block_degrees)
    write_block_errors(blocks, 1.0 - f1, snakemake.output.blocks)
    write_species_set_results(species_set_results(sets, val), snakemake.output.species)
    return metrics


with logging_to(snakemake.log[0]) as log:
    model = snakemake.wildcards.model
    kind = snakemake.params.kind
    species = read_species_table(snakemake.input.species)
    val = read_table(snakemake.input.val)
    bootstrap = snakemake.params.bootstrap
    multi_label = snakemake.params.task.multi_label
    evaluate = evaluate_species_sets if multi_label else evaluate_top30
    metrics = evaluate(model, kind, val, species, bootstrap)
    metrics["test_fit"] = snakemake.params.test_fit
    # A fitted blend's weights and fit as its weights.json says (the defaults filled in).
    fitted = read_report(snakemake.input.blend_weights[0]) if snakemake.input.blend_weights else {}
    weights = snakemake.params.members or fitted.get("weights", {})
    settings = fitted.get("fit", snakemake.params.settings)
    if weights:
        metrics["members"] = weights
    (plot_set_figures if multi_label else plot_buckets)(metrics, snakemake.output.plot)
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
        metrics[MODEL_URI_KEY] = served_model(tracker)
        if multi_label:  # what the champion serves: the sets, not the ranking
            metrics[SETS_MODEL_URI_KEY] = log_set_model(
                tracker,
                model,
                metrics[MODEL_URI_KEY],
                metrics["set_rule"],
                metrics["k"],
                {},
                snakemake.input.val,
            )
        write_metrics(metrics, snakemake.output.metrics)
        tracker.log_artifact(snakemake.output.metrics)
        tracker.log_artifact(snakemake.output.plot)
        tracker.log_artifact(snakemake.output.species)
    key, low, high = (
        ("f1", "f1_low", "f1_high")
        if multi_label
        else (KAGGLE_ERROR, INTERVAL_LOW.name, INTERVAL_HIGH.name)
    )
    log.info(
        "%s: val %s %.4f (%.0f%% interval %.4f-%.4f; constant %.4f)",
        model,
        key,
        metrics[key],
        100 * bootstrap.confidence,
        metrics[low],
        metrics[high],
        metrics["constant"][key],
    )
