"""Snakemake adapter: train one experiment (on several GPUs through torchrun)."""

import json
import subprocess
import tempfile
from pathlib import Path

from geolifeclef.experiment import run_training
from geolifeclef.launch import training_command
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    name = snakemake.wildcards.experiment
    model_dir = Path(snakemake.output.model).parent
    caches = snakemake.input.caches
    job = {
        "name": name,
        "settings": json.loads(snakemake.params.settings),
        "caches": dict(zip(("train", "val"), caches, strict=True)) if caches else {},
        "observations": dict(zip(("train", "val"), snakemake.input.observations, strict=True)),
        "env_table": snakemake.input.env,
        "stats": snakemake.input.stats,
        "species_table": snakemake.input.species,
        "model": snakemake.output.model,
        "history": snakemake.output.history,
        # Not outputs: Snakemake deletes the outputs of a failed job, checkpoints must stay.
        "checkpoint_dir": str(model_dir / "checkpoints"),
        "local_metrics": str(model_dir / "metrics.jsonl"),
        "mlflow": {
            "tracking_uri": snakemake.config["mlflow"]["tracking_uri"] or None,
            "experiment": snakemake.config["mlflow"]["experiment"],
        },
        "rule": snakemake.rule,
        "fingerprint_inputs": [*snakemake.input.observations, snakemake.input.env],
        "artifacts": [snakemake.input.rank_frequency],
    }
    if job["mlflow"]["tracking_uri"] is None:
        from geolifeclef.tracking import default_tracking_uri

        job["mlflow"]["tracking_uri"] = default_tracking_uri()
    gpus = int(snakemake.resources.get("gpu", 0))
    if gpus > 1:  # one process per GPU; rank 0 writes the outputs
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=model_dir, delete=False) as f:
            json.dump({**job, "log": None}, f)
        command = training_command(gpus, ["-m", "geolifeclef.experiment", "train", f.name])
        log.info("running %s", " ".join(command))
        subprocess.run(command, check=True)
        Path(f.name).unlink()
    else:
        run_training(job)
