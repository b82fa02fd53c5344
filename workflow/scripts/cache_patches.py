"""Snakemake adapter: decode the patches of one split into a cache (geolifeclef.patch_cache)."""

import pandas as pd

from geolifeclef.layout import DatasetLayout
from geolifeclef.patch_cache import CacheSpec, build_patch_cache
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    spec = CacheSpec(
        size=snakemake.params.size,
        mode=snakemake.params.mode,
        modalities=tuple(snakemake.params.modalities),
        on_bad_file=snakemake.params.on_bad_file,
    )
    report = build_patch_cache(
        DatasetLayout(snakemake.params.data_root),
        pd.read_parquet(snakemake.input.observations),
        snakemake.output.cache,
        spec,
        workers=snakemake.threads,
    )
    log.info(
        "%s: %d observations cached (%d chunks built, %d resumed, %d bad files)",
        snakemake.wildcards.split,
        report.n,
        report.built_chunks,
        report.resumed_chunks,
        len(report.bad_files),
    )
