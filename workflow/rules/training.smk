# PyTorch experiments: train_model -> (refit_model) -> predict_model for each entry of
# `experiments`; evaluation, leaderboard and submission pick them up like the baselines.


def experiment_caches(splits):
    """The patch caches of ``splits`` when the experiment reads patches, else none."""
    return lambda wildcards: (
        patch_caches(splits)
        if experiment_reads(wildcards.experiment).patch_modalities
        else []
    )


def experiment_patch_stats(splits):
    """The patch statistics of ``splits`` when the experiment reads them, else none."""
    return lambda wildcards: (
        patch_stats_tables(splits)
        if experiment_reads(wildcards.experiment).patch_stats
        else []
    )


def experiment_cubes(splits):
    """A survey edition's packed cubes of ``splits`` when the experiment reads cubes."""
    return lambda wildcards: (
        cube_caches(splits) if experiment_reads(wildcards.experiment).cubes else []
    )


def presence_only_table(name):
    """A table of the presence-only pre-training (``surveys`` or ``env``) when the
    experiment pre-trains on them, else none."""
    return lambda wildcards: (
        [rules.prepare_presence_only.output[name]]
        if EXPERIMENT_SETTINGS[wildcards.experiment].train.po_pretrain_epochs
        else []
    )


def pretrained_file(wildcards):
    """The local weights file an experiment starts from, if it names one."""
    pretrained = EXPERIMENT_SETTINGS[wildcards.experiment].model.cnn.pretrained
    return [pretrained] if isinstance(pretrained, str) else []


def refits(experiment):
    return config["experiments"][experiment]["refit"]


def training_inputs():
    """What a fit of an experiment reads (train_model and refit_model alike)."""
    return {
        **{split: rules.ingest_observations.output[split] for split in TRAINING_SPLITS},
        "caches": experiment_caches(TRAINING_SPLITS),
        "patch_stats": experiment_patch_stats(TRAINING_SPLITS),
        "cubes": experiment_cubes(TRAINING_SPLITS),
        "po_surveys": presence_only_table("surveys"),
        "po_env": presence_only_table("env"),
        "pretrained": pretrained_file,
        "env": rules.extract_env.output.table,
        "stats": rules.compute_normalization_stats.output.stats,
        "species": rules.analyze_class_frequency.output.table,
        "rank_frequency": rules.analyze_class_frequency.output.plot,
    }


def served_inputs():
    """Every split's inputs: where the model that a fit logs to MLflow reads the rows it
    predicts (geolifeclef.experiments.serving), relative to the working directory. Plain strings:
    params are pickled for the script, a rule's output objects are not picklable."""
    return {
        "observations": {
            split: str(rules.ingest_observations.output[split]) for split in SPLITS
        },
        "env_table": str(rules.extract_env.output.table),
        "stats": str(rules.compute_normalization_stats.output.stats),
        "caches": {s: str(p) for s, p in zip(SPLITS, patch_caches(SPLITS))},
        "patch_stats": {s: str(p) for s, p in zip(SPLITS, patch_stats_tables(SPLITS))},
        # Only a survey edition has cubes: GLC 2022's params stay as they were (a changed
        # param would retrain its experiments).
        **(
            {"cubes": {s: str(p) for s, p in zip(SPLITS, cube_caches(SPLITS))}}
            if EDITION.surveys
            else {}
        ),
    }


def fit_params(checkpoints, metrics):
    """Params of a fit: the typed weight settings and where its own files go."""
    return {
        "served_inputs": served_inputs(),
        # Prediction settings (tta, refit) are not in them: changing those does not
        # retrain the train-only fit.
        "settings": lambda wildcards: EXPERIMENT_SETTINGS[wildcards.experiment],
        # Snakemake's params trigger skips values other than builtins (a dataclass too),
        # so it compares this text of the settings: a changed weight setting retrains,
        # reordered config keys do not (sorted JSON). The script does not read it.
        "settings_json": lambda wildcards: canonical(
            EXPERIMENT_SETTINGS[wildcards.experiment].to_config()
        ),
        # Not outputs: Snakemake deletes a failed job's outputs, these must survive it.
        "checkpoint_dir": lambda wildcards: model_file(
            wildcards.experiment, checkpoints
        ),
        "local_metrics": lambda wildcards: model_file(wildcards.experiment, metrics),
        "sweep": lambda wildcards: CATALOG.sweep_of(wildcards.experiment) or "",
    }


rule train_model:
    input:
        **training_inputs(),
    output:
        model=model_file("{experiment}", "model.pt"),
        history=model_file("{experiment}", "history.json"),
        curve=report(
            model_file("{experiment}", "learning_curve.png"),
            caption="../report/learning_curve.rst",
            category="Training",
            subcategory="Learning curves",
            labels={"experiment": "{experiment}"},
        ),
    log:
        logs("train_model/{experiment}"),
    benchmark:
        benchmarks("train_model/{experiment}")
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
    conda:
        ENVIRONMENT
    threads: 2
    resources:
        gpu=1,
    params:
        **fit_params("checkpoints", "metrics.jsonl"),
    script:
        "../scripts/train_model.py"


rule refit_model:
    input:
        **training_inputs(),
        # The train-only fit decides how many epochs the refit runs.
        train_history=rules.train_model.output.history,
    output:
        model=model_file("{experiment}", "refit.pt"),
        history=model_file("{experiment}", "refit-history.json"),
    log:
        logs("refit_model/{experiment}"),
    benchmark:
        benchmarks("refit_model/{experiment}")
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
    conda:
        ENVIRONMENT
    threads: 2
    resources:
        gpu=1,
    params:
        **fit_params("checkpoints-refit", "refit-metrics.jsonl"),
    script:
        "../scripts/train_model.py"


rule predict_model:
    input:
        **{split: rules.ingest_observations.output[split] for split in PREDICTED_SPLITS},
        # Val from the train-only fit (an honest score); test from the refit on train + val
        # when the experiment has one.
        model_val=rules.train_model.output.model,
        model_test=lambda wildcards: (
            rules.refit_model.output.model
            if refits(wildcards.experiment)
            else rules.train_model.output.model
        ),
        caches=experiment_caches(PREDICTED_SPLITS),
        patch_stats=experiment_patch_stats(PREDICTED_SPLITS),
        cubes=experiment_cubes(PREDICTED_SPLITS),
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
    conda:
        ENVIRONMENT
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
