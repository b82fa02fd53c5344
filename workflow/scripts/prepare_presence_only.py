"""Snakemake adapter: the presence-only occurrences as surveys to pre-train on, with their
nearest survey's values (geolifeclef.data.presence_only)."""

import pandas as pd

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.presence_only import presence_only_tables, write_presence_only
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    columns = ["observation_id", "latitude", "longitude"]
    tables = presence_only_tables(
        pd.read_parquet(snakemake.input.po),
        pd.concat([pd.read_parquet(path, columns=columns) for path in snakemake.input.surveys]),
        pd.read_parquet(snakemake.input.env),
        read_species_table(snakemake.input.species)["species_id"].to_numpy(),
        snakemake.params.max_distance_km,
    )
    write_presence_only(tables, snakemake.output.surveys, snakemake.output.env)
