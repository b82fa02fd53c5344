"""Snakemake adapter: gather a split's shards into its patch cache (geolifeclef.patches.cache)."""

import pandas as pd

from geolifeclef.patches.cache import gather_shards
from geolifeclef.patches.store import CacheSpec
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    spec = CacheSpec(
        size=snakemake.params.size,
        mode=snakemake.params.mode,
        modalities=tuple(snakemake.params.modalities),
        on_bad_file=snakemake.params.on_bad_file,
        store=snakemake.params.store,
        shards=len(snakemake.input.shards),
    )
    meta = gather_shards(
        list(snakemake.input.shards),
        pd.read_parquet(snakemake.input.observations),
        snakemake.output.cache,
        spec,
    )
    log.info(
        "%s: %d observations in a %s store of %d shards, read at %d px (%s of %d px), %d filled",
        snakemake.wildcards.split,
        meta["n"],
        meta["store"],
        len(meta["shards"]),
        meta["size"],
        meta["mode"],
        meta["source_size"],
        meta["n_filled"],
    )
