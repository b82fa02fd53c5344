"""Snakemake adapter: build one shard of a split's patch cache (geolifeclef.patches.cache)."""

import pandas as pd

from geolifeclef.layout import DatasetLayout
from geolifeclef.patches.cache import build_shard
from geolifeclef.patches.store import CacheSpec, parse_shard
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    geometry = snakemake.params.geometry
    spec = CacheSpec(
        modalities=tuple(snakemake.params.modalities),
        on_bad_file=snakemake.params.on_bad_file,
        store=snakemake.params.store,
        **({"size": geometry[0], "mode": geometry[1]} if geometry else {}),
    )
    shard = parse_shard(snakemake.wildcards.scatteritem)
    report = build_shard(
        DatasetLayout(snakemake.params.data_root),
        pd.read_parquet(snakemake.input.observations),
        snakemake.output.shard,
        spec,
        shard=shard,
        workers=snakemake.threads,
    )
    log.info(
        "%s shard %s: %d observations stored (%d chunks built, %d resumed, %d bad files)",
        snakemake.wildcards.split,
        snakemake.wildcards.scatteritem,
        report.n,
        report.built_chunks,
        report.resumed_chunks,
        len(report.bad_files),
    )
