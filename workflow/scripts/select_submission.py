"""Snakemake adapter: the configured final submission, checked again, and its model
registered in MLflow as the champion (geolifeclef.evaluation.submission)."""

import os

from geolifeclef.data.observations import read_species_ids, read_table
from geolifeclef.evaluation.submission import register_champion, select_submission
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.tracking import PARENT_RUN_ENV, Tracking

with logging_to(snakemake.log[0]):
    chosen = select_submission(
        snakemake.params.model,
        snakemake.params.candidates,
        dict(zip(snakemake.params.candidates, snakemake.input.candidates, strict=True)),
        snakemake.input.leaderboard or None,
        read_table(snakemake.input.test)["observation_id"].to_numpy(),
        read_species_ids(snakemake.input.species) if snakemake.input.species else None,
        snakemake.output.final,
        snakemake.params.task,
    )
    metrics = dict(zip(snakemake.params.candidates, snakemake.input.metrics, strict=True))
    tracking = Tracking.of_invocation()
    register_champion(
        tracking.uri,
        chosen,
        metrics[chosen],
        os.environ.get(PARENT_RUN_ENV),
        snakemake.params.task,
        snakemake.params.champion,
    )
