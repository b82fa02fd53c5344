"""Snakemake adapter: a survey edition's Sentinel-2 patches of one split in a patch store
(geolifeclef.patches.cache, read by geolifeclef.data.dataset)."""

import pandas as pd

from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.store import CacheSpec
from geolifeclef.rule_logging import logging_to
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyLayout

with logging_to(snakemake.log[0]) as log:
    params = snakemake.params
    layout = SurveyLayout(params.data_root, SURVEY_ARCHIVES[params.year])
    spec = CacheSpec(
        size=params.size,
        mode=params.mode,
        modalities=tuple(params.modalities),
        on_bad_file=params.on_bad_file,
        store=params.store,
    )
    report = build_patch_cache(
        layout.patch_files(snakemake.wildcards.split),
        pd.read_parquet(snakemake.input.observations),
        snakemake.output.cache,
        spec,
        workers=snakemake.threads,
    )
    log.info(
        "%s: %d surveys in a %s store (%s at %d px), %d bad files",
        snakemake.wildcards.split,
        report.n,
        params.store,
        params.mode,
        params.size,
        len(report.bad_files),
    )
