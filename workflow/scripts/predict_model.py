"""Snakemake adapter: top-K predictions of a trained experiment for val and test."""

from geolifeclef.experiment import run_prediction
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    splits = ("val", "test")
    caches = snakemake.input.caches
    run_prediction(
        {
            "model": snakemake.input.model,
            "caches": dict(zip(splits, caches, strict=True)) if caches else {},
            "observations": {split: f"results/observations/{split}.parquet" for split in splits},
            "env_table": snakemake.input.env,
            "stats": snakemake.input.stats,
            "top_k": snakemake.params.top_k,
            "tta": snakemake.params.tta,
            "outputs": {split: snakemake.output[split] for split in splits},
        }
    )
