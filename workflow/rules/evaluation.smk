# Every model scored on val (geolifeclef.evaluation.scores) and ranked on the leaderboard.

# Settings of the spatial block bootstrap (geolifeclef.settings.evaluation.BlockBootstrap).
BOOTSTRAP = SETTINGS.evaluation


def evaluated_settings(model):
    """What shaped a model, that its evaluate run logs as params
    (geolifeclef.tracking.records.evaluation_params): a baseline's settings; an
    experiment's model settings (those it reads), refit and TTA (a blend's weights, and a
    fitted blend's fit, are read from the config or weights.json)."""
    if model in BASELINE_MODELS:
        return asdict(BASELINE_SETTINGS[model])
    if model in EXPERIMENTS:
        entry = CATALOG.experiments[model]
        shaping = shaping_settings(EXPERIMENT_SETTINGS[model])
        return {"model": shaping["model"], "refit": entry["refit"], "tta": entry["tta"]}
    return {}


def served_model_inputs(wildcards):
    """What the evaluate job logs as the model's MLflow model (geolifeclef.serving.models):
    a baseline's saved fit and the tables it reads; the history naming an experiment's
    logged model (its refit's when it refits: the one that predicted test); a blend's
    members' evaluations (their models' URIs and K)."""
    model = wildcards.model
    if model in BASELINE_MODELS:
        reads = BASELINE_SETTINGS[model].reads
        return {
            "model_file": getattr(rules, f"predict_{model}").output.model,
            "env": rules.extract_env.output.table if "env" in reads else [],
            "patch_stats": patch_stats_tables(SPLITS) if "patch_stats" in reads else [],
        }
    if model in EXPERIMENTS:
        fit = rules.refit_model if refits(model) else rules.train_model
        return {"served_history": expand(fit.output.history, experiment=model)}
    members = CATALOG.blend_members(model)
    return {
        "member_metrics": expand(rules.evaluate_model.output.metrics, model=members)
    }


def served_model_params(model):
    """Each blend member's serving params: an experiment's test-time augmentation."""
    return {
        member: {"tta": CATALOG.experiments[member]["tta"]}
        for member in CATALOG.blend_members(model)
        if member in EXPERIMENTS
    }


def is_blend(model):
    return MODEL_KIND[model] in ("blend", "fitted blend")


rule evaluate_model:
    input:
        unpack(served_model_inputs),
        predictions=predictions("{model}", "val"),
        # A survey edition scores the model's val sets, made by its set rule.
        sets=results("sets/{model}/val.parquet") if TASK.multi_label else [],
        set_rule=results("sets/{model}/rule.json") if TASK.multi_label else [],
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
        bootstrap_key=rerun_key(BOOTSTRAP),
        family=lambda wildcards: family_of(
            MODEL_KIND[wildcards.model], wildcards.model
        ).name,
        member_params=lambda wildcards: (
            served_model_params(wildcards.model) if is_blend(wildcards.model) else {}
        ),
        sweep_members=lambda wildcards: (
            selected_sweeps(wildcards.model) if wildcards.model in BLEND_MODELS else {}
        ),
        top_k=config["predictions"]["top_k"],
        chunk_rows=config["predictions"]["chunk_rows"],
        task=TASK,
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
        bootstrap_key=rerun_key(BOOTSTRAP),
        task=TASK,
    script:
        "../scripts/build_leaderboard.py"


rule leaderboard:
    input:
        rules.build_leaderboard.output,


rule evaluate:
    input:
        expand(rules.evaluate_model.output.plot, model=MODELS),
        rules.build_leaderboard.output,
