# Every model scored on val (geolifeclef.evaluation.scores) and ranked on the leaderboard.

# Settings of the spatial block bootstrap (geolifeclef.evaluation.bootstrap.BlockBootstrap).
BOOTSTRAP = config["evaluation"]


def evaluated_settings(model):
    """What shaped a model, that its evaluate run logs as params
    (geolifeclef.tracking.records.evaluation_params): a baseline's settings; an
    experiment's model settings (those it reads), refit and TTA (a blend's weights, and a
    fitted blend's fit, are read from the config or weights.json)."""
    if model in BASELINE_MODELS:
        return config["baselines"].get(model, {})
    if model in EXPERIMENTS:
        entry = CATALOG.experiments[model]
        shaping = shaping_settings(EXPERIMENT_SETTINGS[model])
        return {"model": shaping["model"], "refit": entry["refit"], "tta": entry["tta"]}
    return {}


rule evaluate_model:
    input:
        predictions=predictions("{model}", "val"),
        val=rules.ingest_observations.output.val,
        species=rules.analyze_class_frequency.output.table,
        # The demo's true species probabilities give the Bayes limit.
        truth=rules.generate_demo_dataset.output.truth if USING_DEMO else [],
        blend_weights=lambda wildcards: (
            expand(rules.fit_blend.output.weights, blend=wildcards.model)
            if wildcards.model in FITTED_BLENDS
            else []
        ),
        # An experiment's train run and logged model, which its evaluate run links to.
        history=lambda wildcards: (
            expand(rules.train_model.output.history, experiment=wildcards.model)
            if wildcards.model in EXPERIMENTS
            else []
        ),
    output:
        metrics=results("evaluation/{model}/metrics.json"),
        # Misses per val block: the leaderboard pairs every model on them.
        blocks=results("evaluation/{model}/blocks.parquet"),
        species=results("evaluation/{model}/species.parquet"),
        plot=report(
            results("evaluation/{model}/buckets.png"),
            caption="../report/buckets.rst",
            category="Evaluation",
            subcategory="Per-bucket errors",
            labels={"model": "{model}"},
        ),
    log:
        logs("evaluate_model/{model}"),
    benchmark:
        benchmarks("evaluate_model/{model}")
    wildcard_constraints:
        model=one_of(MODELS),
    conda:
        ENVIRONMENT
    params:
        kind=lambda wildcards: MODEL_KIND[wildcards.model],
        members=lambda wildcards: config["blends"].get(wildcards.model, {}),
        test_fit=lambda wildcards: test_fit(wildcards.model),
        settings=lambda wildcards: evaluated_settings(wildcards.model),
        local_metrics=results("evaluation/{model}/metrics.jsonl"),
        bootstrap=BOOTSTRAP,
    script:
        "../scripts/evaluate_model.py"


rule build_leaderboard:
    input:
        metrics=expand(rules.evaluate_model.output.metrics, model=MODELS),
        blocks=expand(rules.evaluate_model.output.blocks, model=MODELS),
        species=expand(rules.evaluate_model.output.species, model=MODELS),
    output:
        parquet=results("evaluation/leaderboard.parquet"),
        markdown=results("evaluation/leaderboard.md"),
        html=report(
            results("evaluation/leaderboard.html"),
            caption="../report/leaderboard.rst",
            category="Evaluation",
            subcategory="Leaderboard",
        ),
        plot=report(
            results("evaluation/leaderboard.png"),
            caption="../report/leaderboard_plot.rst",
            category="Evaluation",
            subcategory="Leaderboard",
        ),
    log:
        logs("build_leaderboard"),
    benchmark:
        benchmarks("build_leaderboard")
    conda:
        ENVIRONMENT
    params:
        sweeps=[sweep_description(sweep) for sweep in SWEEPS],
        bootstrap=BOOTSTRAP,
    script:
        "../scripts/build_leaderboard.py"


rule leaderboard:
    input:
        rules.build_leaderboard.output,


rule evaluate:
    input:
        expand(rules.evaluate_model.output.plot, model=MODELS),
        rules.build_leaderboard.output,
