"""Snakemake adapter: the random forest on tabular features (geolifeclef.baselines.forest)."""

import pandas as pd

from geolifeclef.baselines.fitting import write_baseline_predictions
from geolifeclef.baselines.forest import ForestSettings, TabularSources, random_forest_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    settings = ForestSettings(**snakemake.params.settings)
    patch_stats = snakemake.input.patch_stats
    sources = TabularSources(
        pd.read_parquet(snakemake.input.env),
        snakemake.input.env,
        pd.concat(map(pd.read_parquet, patch_stats), ignore_index=True) if patch_stats else None,
    )
    write_baseline_predictions(
        snakemake.input,
        snakemake.input.species,
        {split: path for split, path in snakemake.output.items() if split != "forest"},
        snakemake.params.top_k,
        settings.refit,
        lambda rows, queries, species, k: random_forest_predictions(
            rows,
            queries,
            sources,
            species,
            k,
            settings,
            n_jobs=snakemake.threads,
            chunk_rows=snakemake.params.chunk_rows,
            # The forest behind the submission (train + val with refit) is the one mapped.
            forest_path=snakemake.output.forest if "test" in queries else None,
        ),
    )
