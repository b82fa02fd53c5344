"""Snakemake adapter: a baseline family fitted and predicted (geolifeclef.baselines.fitting.
run_baseline, the family's module from geolifeclef.settings.families)."""

from importlib import import_module

from geolifeclef.baselines.fitting import run_baseline
from geolifeclef.baselines.forest import TabularSources
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.families import BASELINES

with logging_to(snakemake.log[0]):
    family = BASELINES[snakemake.params.family]
    reads = snakemake.params.settings.reads
    run_baseline(
        import_module(family.implementation),
        snakemake.params.settings,
        snakemake.input,
        snakemake.input.species,
        {split: path for split, path in snakemake.output.items() if split != "model"},
        snakemake.output.model,
        snakemake.params.top_k,
        snakemake.params.chunk_rows,
        TabularSources.read(
            snakemake.input.env, snakemake.input.patch_stats, snakemake.params.env_variables
        )
        if "env" in reads
        else None,
        snakemake.threads,
        snakemake.params.marginal,
    )
