"""Snakemake adapter: top-K predictions of a trained experiment for val and test."""

from geolifeclef.experiments.jobs import PredictionJob, run_prediction
from geolifeclef.experiments.trained import ExperimentInputs
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    inputs = snakemake.input
    splits = list(snakemake.output.keys())
    run_prediction(
        PredictionJob(
            models={split: inputs[f"model_{split}"] for split in splits},
            inputs=ExperimentInputs(
                observations={split: inputs[split] for split in splits},
                env_table=inputs.env,
                stats=inputs.stats,
                caches=dict(zip(splits, inputs.caches, strict=True)) if inputs.caches else {},
                patch_stats=dict(zip(splits, inputs.patch_stats, strict=True))
                if inputs.patch_stats
                else {},
                cubes=dict(zip(splits, inputs.cubes, strict=True)) if inputs.cubes else {},
            ),
            outputs={split: snakemake.output[split] for split in splits},
            top_k=snakemake.params.top_k,
            tta=snakemake.params.tta,
        )
    )
