"""Snakemake adapter: the random forest on tabular features (geolifeclef.baselines)."""

import pandas as pd

from geolifeclef.baselines import (
    ForestSettings,
    TabularSources,
    fitting_rows,
    predict_per_fit,
    random_forest_predictions,
)
from geolifeclef.class_frequency import read_species_table
from geolifeclef.observations import read_table
from geolifeclef.predictions import table_k, write_split_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    outputs = dict(snakemake.output.items())  # split -> path
    species = read_species_table(snakemake.input.species)
    settings = ForestSettings(**snakemake.params.settings)
    queries = {split: read_table(snakemake.input[split]) for split in outputs}
    fitting = fitting_rows(read_table(snakemake.input.train), queries["val"], settings.refit)
    patch_stats = snakemake.input.patch_stats
    sources = TabularSources(
        pd.read_parquet(snakemake.input.env),
        snakemake.input.env,
        pd.concat(map(pd.read_parquet, patch_stats), ignore_index=True) if patch_stats else None,
    )
    k = table_k(snakemake.params.top_k, len(species))
    write_split_predictions(
        outputs,
        predict_per_fit(
            fitting,
            queries,
            lambda rows, wanted: random_forest_predictions(
                rows,
                wanted,
                sources,
                species,
                k,
                settings,
                n_jobs=snakemake.threads,
                chunk_rows=snakemake.params.chunk_rows,
            ),
        ),
        {split: frame["observation_id"].to_numpy() for split, frame in queries.items()},
        species["species_id"].to_numpy(),
    )
