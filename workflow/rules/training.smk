# PyTorch experiments: train_model -> predict_model for each entry of `experiments`;
# evaluation, leaderboard and submission pick them up like the baselines.


def experiment_caches(splits):
    """The patch caches of ``splits`` when the experiment reads patches, else none."""
    return lambda wildcards: (
        patch_caches(splits) if reads_patches(wildcards.experiment) else []
    )


rule train_model:
    input:
        **{split: rules.ingest_observations.output[split] for split in TRAINING_SPLITS},
        caches=experiment_caches(TRAINING_SPLITS),
        env=rules.extract_env.output.table,
        stats=rules.compute_normalization_stats.output.stats,
        species=rules.analyze_class_frequency.output.table,
        rank_frequency=rules.analyze_class_frequency.output.plot,
    output:
        model=model_dir("{experiment}") + "/model.pt",
        history=model_dir("{experiment}") + "/history.json",
    log:
        logs("train_model/{experiment}"),
    benchmark:
        benchmarks("train_model/{experiment}")
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
    threads: 2
    resources:
        gpu=1,
    params:
        # Canonical JSON: reordering keys in the config is no change. Prediction settings
        # (test-time augmentation) are left out: changing them does not retrain.
        settings=lambda wildcards: canonical(
            weight_settings(config["experiments"][wildcards.experiment])
        ),
        # Not outputs: Snakemake deletes a failed job's outputs, these must survive it.
        checkpoint_dir=lambda wildcards: model_dir(wildcards.experiment)
        + "/checkpoints",
        local_metrics=lambda wildcards: model_dir(wildcards.experiment)
        + "/metrics.jsonl",
    script:
        "../scripts/train_model.py"


rule predict_model:
    input:
        **{split: rules.ingest_observations.output[split] for split in PREDICTED_SPLITS},
        model=rules.train_model.output.model,
        caches=experiment_caches(PREDICTED_SPLITS),
        env=rules.extract_env.output.table,
        stats=rules.compute_normalization_stats.output.stats,
    output:
        **{split: predictions("{experiment}", split) for split in PREDICTED_SPLITS},
    log:
        logs("predict_model/{experiment}"),
    benchmark:
        benchmarks("predict_model/{experiment}")
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
        expand(rules.predict_model.output, experiment=EXPERIMENTS),
