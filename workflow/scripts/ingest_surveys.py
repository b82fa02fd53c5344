"""Snakemake adapter: a survey edition's metadata CSVs -> the train, val and test survey
tables and the presence-only table (geolifeclef.data.surveys)."""

from geolifeclef.data.surveys import ingest_surveys
from geolifeclef.rule_logging import logging_to
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyLayout

with logging_to(snakemake.log[0]) as log:
    params = snakemake.params
    counts = ingest_surveys(
        SurveyLayout(params.data_root, SURVEY_ARCHIVES[params.year]),
        dict(snakemake.output.items()),
        val_share=params.surveys["val_share"],
        block_km=params.surveys["block_km"],
        seed=params.surveys["seed"],
    )
    log.info("%s", counts)
