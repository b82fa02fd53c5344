"""Snakemake adapter: the constant baseline (see geolifeclef.baselines.constant)."""

from geolifeclef.baselines.constant import constant_predictions
from geolifeclef.baselines.fitting import write_baseline_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    write_baseline_predictions(
        snakemake.input,
        snakemake.input.species,
        dict(snakemake.output.items()),
        snakemake.params.top_k,
        False,  # nothing is fitted: the train counts are in the species table
        lambda rows, queries, species, k: {
            split: constant_predictions(species, frame["observation_id"].to_numpy(), k)
            for split, frame in queries.items()
        },
    )
