"""Snakemake adapter: one split's Landsat and bioclim cubes packed into memory-mapped arrays
(geolifeclef.data.cubes)."""

import pandas as pd

from geolifeclef.data.cubes import pack_cubes
from geolifeclef.rule_logging import logging_to
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyLayout

with logging_to(snakemake.log[0]) as log:
    params = snakemake.params
    surveys = pd.read_parquet(snakemake.input.observations, columns=["observation_id"])
    report = pack_cubes(
        SurveyLayout(params.data_root, SURVEY_ARCHIVES[params.year]),
        snakemake.wildcards.split,
        surveys["observation_id"].to_numpy(),
        snakemake.output.cubes,
        workers=snakemake.threads,
    )
    log.info("%s", report)
