# PyTorch experiments: train_model -> predict_model for each entry of `experiments`;
# evaluation, leaderboard and submission pick them up like the baselines.

import json
import os
import uuid

from geolifeclef.tracking import PARENT_RUN_ENV, default_tracking_uri

EXPERIMENTS = list(config["experiments"])
MLFLOW_URI = config["mlflow"]["tracking_uri"] or default_tracking_uri()
# One id per workflow invocation; jobs (local or SLURM) inherit it from the environment.
os.environ.setdefault("GLC_INVOCATION_ID", uuid.uuid4().hex[:12])


def canonical(value):
    """A value as sorted JSON: the params Snakemake compares do not depend on key order."""
    return json.dumps(value, sort_keys=True)


def experiment_inputs(wildcards, splits):
    """Caches of the splits when the experiment reads patches, else observation tables."""
    entry = config["experiments"][wildcards.experiment]["model"]
    reads_patches = (entry["kind"] != "mlp" and entry["modalities"]) or {
        "landcover_shares",
        "altitude_stats",
    } & set(entry["tabular"])
    if reads_patches:
        return [f"results/patches/{split}" for split in splits]
    return []


onstart:
    if EXPERIMENTS and PARENT_RUN_ENV not in os.environ:
        from geolifeclef.tracking import start_parent_run

        parent = start_parent_run(
            MLFLOW_URI,
            config["mlflow"]["experiment"],
            f"workflow {os.environ['GLC_INVOCATION_ID']}",
        )
        if parent:
            os.environ[PARENT_RUN_ENV] = parent


def finish_parent_run(status):
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        from geolifeclef.tracking import end_run

        end_run(MLFLOW_URI, parent, status)


onsuccess:
    finish_parent_run("FINISHED")


onerror:
    finish_parent_run("FAILED")


rule train_model:
    input:
        caches=lambda wildcards: experiment_inputs(wildcards, ("train", "val")),
        observations=expand(
            "results/observations/{split}.parquet", split=("train", "val")
        ),
        env=ENV_TABLE,
        stats=NORMALIZATION_STATS,
        species="results/class_frequency/species.parquet",
        rank_frequency="results/class_frequency/rank_frequency.png",
    output:
        model="results/models/{experiment}/model.pt",
        history="results/models/{experiment}/history.json",
    log:
        "logs/train_model/{experiment}.log",
    benchmark:
        "benchmarks/train_model/{experiment}.tsv"
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
    threads: 2
    resources:
        gpu=1,
    params:
        # Canonical JSON: reordering keys in the config is no change. Test-time
        # augmentation is a prediction setting: changing it does not retrain.
        settings=lambda wildcards: canonical(
            {
                key: value
                for key, value in config["experiments"][wildcards.experiment].items()
                if key != "tta"
            }
        ),
    script:
        "../scripts/train_model.py"


rule predict_model:
    input:
        model="results/models/{experiment}/model.pt",
        caches=lambda wildcards: experiment_inputs(wildcards, PREDICTED_SPLITS),
        observations=expand(
            "results/observations/{split}.parquet", split=PREDICTED_SPLITS
        ),
        env=ENV_TABLE,
        stats=NORMALIZATION_STATS,
    output:
        **{
            split: f"results/predictions/{{experiment}}/{split}.parquet"
            for split in PREDICTED_SPLITS
        },
    log:
        "logs/predict_model/{experiment}.log",
    benchmark:
        "benchmarks/predict_model/{experiment}.tsv"
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
    threads: 2
    resources:
        gpu=1,
    params:
        top_k=config["predictions"]["top_k"],
        tta=lambda wildcards: config["experiments"][wildcards.experiment]["tta"],
    script:
        "../scripts/predict_model.py"


rule experiments:
    input:
        expand(
            "results/predictions/{experiment}/{split}.parquet",
            experiment=EXPERIMENTS,
            split=PREDICTED_SPLITS,
        ),
