"""Snakemake adapter: validate the observation CSVs and write one Parquet table per split."""

from geolifeclef.layout import DatasetLayout
from geolifeclef.observations import ingest_observations
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    outputs = {split: snakemake.output[split] for split in ("train", "val", "test")}
    ingest_observations(DatasetLayout(snakemake.params.data_root), outputs)
