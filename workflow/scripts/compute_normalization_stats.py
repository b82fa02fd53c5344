"""Snakemake adapter: train mean/std of every patch channel, env variable and cube channel."""

from geolifeclef.data.normalization import write_normalization_stats
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    stats = write_normalization_stats(
        snakemake.output.stats,
        snakemake.input.train,
        env_table=snakemake.input.env,
        train_cache=snakemake.input.cache[0] if snakemake.input.cache else None,
        train_patch_stats=snakemake.input.patch_stats[0] if snakemake.input.patch_stats else None,
        train_cubes=snakemake.input.cubes[0] if snakemake.input.get("cubes") else None,
    )
    for modality, entry in {**stats.get("patches", {}), **stats.get("cubes", {})}.items():
        if isinstance(entry, dict) and "mean" in entry:
            log.info("%s: mean %s, std %s", modality, entry["mean"], entry["std"])
