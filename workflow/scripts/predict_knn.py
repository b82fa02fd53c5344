"""Snakemake adapter: the spatial k-nearest-neighbour baseline (see geolifeclef.baselines.knn)."""

from geolifeclef.baselines.fitting import write_baseline_predictions
from geolifeclef.baselines.knn import KnnSettings, knn_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    settings = KnnSettings(**snakemake.params.settings)
    write_baseline_predictions(
        snakemake.input,
        snakemake.input.species,
        dict(snakemake.output.items()),
        snakemake.params.top_k,
        settings.refit,
        lambda rows, queries, species, k: knn_predictions(
            rows, queries, species, k, settings, snakemake.params.chunk_rows
        ),
    )
