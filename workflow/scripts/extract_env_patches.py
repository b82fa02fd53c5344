"""Snakemake adapter: k x k windows of the 27 rasters around every observation."""

from geolifeclef.data.env_windows import build_env_patches
from geolifeclef.layout import DatasetLayout
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    build_env_patches(
        DatasetLayout(snakemake.params.data_root),
        list(snakemake.input.observations),
        snakemake.output.windows,
        size=snakemake.params.size,
        workers=snakemake.threads,
    )
