"""Snakemake adapter: validate the observation CSVs and write one Parquet table per split."""

from geolifeclef.data.observations import ingest_observations
from geolifeclef.layout import DatasetLayout
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    ingest_observations(DatasetLayout(snakemake.params.data_root), dict(snakemake.output.items()))
