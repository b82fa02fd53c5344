# Blends (config `blends`): weighted averages of models' probabilities, one more model.


rule blend_predictions:
    input:
        lambda wildcards: [
            predictions(model, wildcards.split)
            for model in config["blends"][wildcards.blend]
        ],
    output:
        blend=predictions("{blend}", "{split}"),
    log:
        logs("blend_predictions/{blend}_{split}"),
    benchmark:
        benchmarks("blend_predictions/{blend}_{split}")
    wildcard_constraints:
        blend=one_of(BLEND_MODELS),
        split=one_of(PREDICTED_SPLITS),
    params:
        weights=lambda wildcards: config["blends"][wildcards.blend],
        top_k=config["predictions"]["top_k"],
    script:
        "../scripts/blend_predictions.py"
