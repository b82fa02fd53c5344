"""Snakemake adapter: weighted average of several models' probabilities (predictions.blend),
with the weights of the config (blends, <sweep>:top<n> resolved on val metrics) or those
fitted on val (fitted_blends)."""

from geolifeclef.evaluation.scores import read_metrics
from geolifeclef.predictions.blend_fit import read_weights
from geolifeclef.predictions.table import blend, read_predictions, write_predictions
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.sweeps import resolve_selectors

with logging_to(snakemake.log[0]) as log:
    val_errors = {
        metrics["model"]: metrics["top30_error"]
        for metrics in map(read_metrics, snakemake.input.member_metrics)
    }
    weights = resolve_selectors(
        snakemake.params.weights or read_weights(snakemake.input.weights[0]),
        snakemake.params.sweep_members,
        val_errors,
    )
    models = dict(zip(snakemake.params.members, snakemake.input.members, strict=True))
    used = {name: read_predictions(models[name]) for name, w in weights.items() if w > 0}
    k = min(snakemake.params.top_k, max(m.k for m in used.values()))
    log.info("blending %s into %d ids per observation", weights, k)
    write_predictions(
        snakemake.output.blend,
        blend(list(used.values()), [weights[name] for name in used], k),
        expected_ids=next(iter(used.values())).observation_id,
    )
