"""Snakemake adapter: the configured final submission, checked again
(geolifeclef.evaluation.submission)."""

from geolifeclef.data.observations import read_species_ids, read_table
from geolifeclef.evaluation.submission import select_submission
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    select_submission(
        snakemake.params.model,
        snakemake.params.candidates,
        dict(zip(snakemake.params.candidates, snakemake.input.candidates, strict=True)),
        snakemake.input.leaderboard or None,
        read_table(snakemake.input.test)["observation_id"].to_numpy(),
        read_species_ids(snakemake.input.species),
        snakemake.output.final,
    )
