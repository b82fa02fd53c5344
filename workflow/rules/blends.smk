# Blends: weighted averages of models' probabilities, one more model each. Fixed blends
# (config `blends`) take their weights from the config; fitted blends (`fitted_blends`)
# fit them on val, with cross-fitted (honest) val predictions (geolifeclef.blend_fit).


def blend_members(blend):
    """The models a blend (fixed or fitted) averages, in config order."""
    if blend in config["blends"]:
        return list(config["blends"][blend])
    return list(config["fitted_blends"][blend]["models"])


rule blend_predictions:
    input:
        members=lambda wildcards: [
            predictions(model, wildcards.split)
            for model in blend_members(wildcards.blend)
        ],
        weights=lambda wildcards: (
            results(f"blends/{wildcards.blend}/weights.json")
            if wildcards.blend in FITTED_BLENDS
            else []
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
    params:
        members=lambda wildcards: blend_members(wildcards.blend),
        weights=lambda wildcards: config["blends"].get(wildcards.blend, {}),
        top_k=config["predictions"]["top_k"],
    script:
        "../scripts/blend_predictions.py"


rule fit_blend:
    input:
        members=lambda wildcards: [
            predictions(model, "val") for model in blend_members(wildcards.blend)
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
    params:
        members=lambda wildcards: blend_members(wildcards.blend),
        top_k=config["predictions"]["top_k"],
    script:
        "../scripts/fit_blend.py"


ruleorder: fit_blend > blend_predictions
