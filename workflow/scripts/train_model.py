"""Snakemake adapter: train one experiment (on several GPUs through torchrun), or refit it
on train + val for the epochs its train-only fit found best (rule refit_model)."""

from geolifeclef.experiments.jobs import TrainingJob, best_epoch
from geolifeclef.experiments.launch import launch_training
from geolifeclef.experiments.trained import ExperimentInputs
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.experiment import TRAINING_SPLITS
from geolifeclef.settings.tracking import Tracking

with logging_to(snakemake.log[0]):
    inputs = snakemake.input
    history = inputs.get("train_history")
    job = TrainingJob(
        settings=snakemake.params.settings,
        inputs=ExperimentInputs(
            observations={split: inputs[split] for split in TRAINING_SPLITS},
            env_table=inputs.env,
            stats=inputs.stats,
            caches=dict(zip(TRAINING_SPLITS, inputs.caches, strict=True)) if inputs.caches else {},
            patch_stats=(
                dict(zip(TRAINING_SPLITS, inputs.patch_stats, strict=True))
                if inputs.patch_stats
                else {}
            ),
            cubes=dict(zip(TRAINING_SPLITS, inputs.cubes, strict=True)) if inputs.cubes else {},
        ),
        species_table=inputs.species,
        model=snakemake.output.model,
        history=snakemake.output.history,
        checkpoint_dir=snakemake.params.checkpoint_dir,
        local_metrics=snakemake.params.local_metrics,
        tracking=Tracking.of_invocation(),
        rule=snakemake.rule,
        fingerprint_inputs=(
            *(inputs[split] for split in TRAINING_SPLITS),
            inputs.env,
            *inputs.po_surveys,
            *inputs.po_env,
        ),
        artifacts=(inputs.rank_frequency,),
        refit_epochs=best_epoch(history) if history else None,
        sweep=snakemake.params.sweep or None,
        learning_curve=snakemake.output.get("curve"),
        served_inputs=ExperimentInputs(**snakemake.params.served_inputs),
        presence_only=(
            ExperimentInputs(
                observations={"train": inputs.po_surveys[0]},
                env_table=inputs.po_env[0],
                stats=inputs.stats,
            )
            if inputs.po_surveys
            else None
        ),
    )
    launch_training(job, int(snakemake.resources.get("gpu", 0)))
