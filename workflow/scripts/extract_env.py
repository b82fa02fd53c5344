"""Snakemake adapter: the 27 environmental values of every observation
(geolifeclef.data.env_table)."""

from geolifeclef.data.env_table import build_env_table
from geolifeclef.layout import DatasetLayout
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    build_env_table(
        DatasetLayout(snakemake.params.data_root),
        list(snakemake.input.observations),
        snakemake.output.table,
        source=snakemake.params.source,
        workers=snakemake.threads,
        nan_share_limit=snakemake.params.nan_share_limit,
    )
