"""Snakemake adapter: weighted average of several models' probabilities (predictions.blend),
with the weights of the config (blends, <sweep>:top<n> resolved on val metrics) or those
fitted on val (fitted_blends)."""

from geolifeclef.evaluation.scores import read_metrics
from geolifeclef.predictions.blend_fit import blend_weights
from geolifeclef.predictions.table import blend, blend_k, read_predictions, write_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    weights = blend_weights(
        snakemake.params.weights,
        snakemake.input.weights[0] if snakemake.input.weights else None,
        snakemake.params.sweep_members,
        [read_metrics(path) for path in snakemake.input.member_metrics],
    )
    models = dict(zip(snakemake.params.members, snakemake.input.members, strict=True))
    # A survey edition's scores are presence probabilities (need not sum to 1).
    marginal = snakemake.params.marginal
    used = {
        name: read_predictions(models[name], marginal=marginal)
        for name, w in weights.items()
        if w > 0
    }
    k = blend_k(snakemake.params.top_k, (m.k for m in used.values()))
    log.info("blending %s into %d ids per observation", weights, k)
    write_predictions(
        snakemake.output.blend,
        blend(list(used.values()), [weights[name] for name in used], k),
        expected_ids=next(iter(used.values())).observation_id,
        marginal=marginal,
    )
