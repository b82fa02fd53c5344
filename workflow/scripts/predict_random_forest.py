"""Snakemake adapter: the random forest on environmental variables (geolifeclef.baselines)."""

import pandas as pd

from geolifeclef.baselines import ForestSettings, random_forest_predictions
from geolifeclef.class_frequency import read_species_table
from geolifeclef.observations import read_table
from geolifeclef.predictions import table_k, write_split_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    outputs = {k: v for k, v in snakemake.output.items() if k != "forest"}  # split -> path
    species = read_species_table(snakemake.input.species)
    queries = {split: read_table(snakemake.input[split]) for split in outputs}
    write_split_predictions(
        outputs,
        random_forest_predictions(
            read_table(snakemake.input.train),
            queries,
            pd.read_parquet(snakemake.input.env),
            snakemake.input.env,
            species,
            table_k(snakemake.params.top_k, len(species)),
            ForestSettings(**snakemake.params.settings),
            n_jobs=snakemake.threads,
            chunk_rows=snakemake.params.chunk_rows,
            forest_path=snakemake.output.forest,
        ),
        {split: frame["observation_id"].to_numpy() for split, frame in queries.items()},
        species["species_id"].to_numpy(),
    )
