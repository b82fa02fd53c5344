# Blends: weighted averages of models' probabilities, one more model each. Fixed blends
# (config `blends`) take their weights from the config; fitted blends (`fitted_blends`)
# fit them on val, with cross-fitted (honest) val predictions (geolifeclef.predictions.blend_fit).


def selected_sweeps(blend):
    """The members of each sweep that a blend selects from with <sweep>:top<n>."""
    selectors = [parse_selector(part) for part in config["blends"].get(blend, {})]
    return {s[0]: list(SWEEPS[s[0]].members) for s in selectors if s}


rule blend_predictions:
    input:
        members=lambda wildcards: [
            predictions(model, wildcards.split)
            for model in CATALOG.blend_members(wildcards.blend)
        ],
        weights=lambda wildcards: (
            [results(f"blends/{wildcards.blend}/weights.json")]
            if wildcards.blend in FITTED_BLENDS
            else []
        ),
        # A <sweep>:top<n> part picks the sweep's best members by their val metrics.
        member_metrics=lambda wildcards: expand(
            rules.evaluate_model.output.metrics,
            model=[
                m
                for members in selected_sweeps(wildcards.blend).values()
                for m in members
            ],
        ),
    output:
        blend=predictions("{blend}", "{split}"),
    log:
        logs("blend_predictions/{blend}_{split}"),
    benchmark:
        benchmarks("blend_predictions/{blend}_{split}")
    wildcard_constraints:
        # A fitted blend's val predictions come from fit_blend (cross-fitted).
        split="val|test",
        blend=one_of(BLEND_MODELS + FITTED_BLENDS),
    conda:
        ENVIRONMENT
    params:
        members=lambda wildcards: CATALOG.blend_members(wildcards.blend),
        weights=lambda wildcards: config["blends"].get(wildcards.blend, {}),
        sweep_members=lambda wildcards: selected_sweeps(wildcards.blend),
        top_k=config["predictions"]["top_k"],
        marginal=TASK.multi_label,
    script:
        "../scripts/blend_predictions.py"


rule fit_blend:
    input:
        members=lambda wildcards: [
            predictions(model, "val")
            for model in CATALOG.blend_members(wildcards.blend)
        ],
        val=rules.ingest_observations.output.val,
    output:
        val=predictions("{blend}", "val"),
        weights=results("blends/{blend}/weights.json"),
    log:
        logs("fit_blend/{blend}"),
    benchmark:
        benchmarks("fit_blend/{blend}")
    wildcard_constraints:
        blend=one_of(FITTED_BLENDS),
    conda:
        ENVIRONMENT
    params:
        members=lambda wildcards: CATALOG.blend_members(wildcards.blend),
        fit=lambda wildcards: SETTINGS.fitted_blends[wildcards.blend],
        fit_key=lambda wildcards: rerun_key(SETTINGS.fitted_blends[wildcards.blend]),
        top_k=config["predictions"]["top_k"],
        marginal=TASK.multi_label,
    script:
        "../scripts/fit_blend.py"


ruleorder: fit_blend > blend_predictions
