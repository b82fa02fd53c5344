"""Snakemake adapter: weighted average of several models' probabilities (predictions.blend)."""

from geolifeclef.predictions import blend, read_predictions, write_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    weights = snakemake.params.weights
    models = [read_predictions(path) for path in snakemake.input]
    k = min(snakemake.params.top_k, max(m.k for m in models))
    log.info("blending %s into %d ids per observation", weights, k)
    write_predictions(
        snakemake.output.blend,
        blend(models, list(weights.values()), k),
        expected_ids=models[0].observation_id,
    )
