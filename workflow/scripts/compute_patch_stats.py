"""Snakemake adapter: per-observation statistics of a split's patches
(geolifeclef.patches.stats)."""

from geolifeclef.patches.stats import compute_patch_stats
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    compute_patch_stats(
        snakemake.input.cache[0], snakemake.output.table, workers=snakemake.params.workers
    )
