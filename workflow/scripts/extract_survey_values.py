"""Snakemake adapter: a survey edition's values CSVs -> the env table of every survey
(geolifeclef.data.survey_values)."""

from geolifeclef.data.survey_values import build_survey_env_table
from geolifeclef.rule_logging import logging_to
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyLayout

with logging_to(snakemake.log[0]) as log:
    params = snakemake.params
    report = build_survey_env_table(
        SurveyLayout(params.data_root, SURVEY_ARCHIVES[params.year]),
        list(snakemake.input.observations),
        snakemake.output.table,
        nan_share_limit=params.nan_share_limit,
    )
    log.info("%s", report)
