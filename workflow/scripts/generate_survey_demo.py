"""Snakemake adapter: generate a survey edition's demo dataset in its archive's layout, with
its hidden truth (see geolifeclef.demo.surveys)."""

from geolifeclef.demo.surveys import generate_survey_demo, survey_spec_for
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    params = snakemake.params
    spec = survey_spec_for(params.scale, year=params.year, seed=params.seed)
    log.info("generating the GLC %d demo dataset %s", params.year, spec)
    summary = generate_survey_demo(params.root, params.truth_dir, spec, workers=snakemake.threads)
    log.info("summary: %s", summary)
