# Class frequencies, baselines, evaluation and the Kaggle submission.
# Every model writes results/predictions/{model}/{val,test}.parquet (geolifeclef.predictions);
# each is scored on val, ranked on the leaderboard and can become the submission.

import re

PREDICTED_SPLITS = ("val", "test")
BASELINE_MODELS = ["constant", "knn", "random_forest"]  # rules predict_<name>, below
BLEND_MODELS = list(config["blends"])
# Experiments (config key `experiments`, trained by the training stage) write their
# predictions in the same format and are evaluated, ranked and submitted here too.
EXPERIMENT_MODELS = list(config.get("experiments", {}))
MODEL_KIND = {
    **{m: "experiment" for m in EXPERIMENT_MODELS},
    **{m: "blend" for m in BLEND_MODELS},
    **{m: "baseline" for m in BASELINE_MODELS},
}
MODELS = BASELINE_MODELS + BLEND_MODELS + EXPERIMENT_MODELS
RESERVED_NAMES = set(BASELINE_MODELS) | {"final", "leaderboard"}
for _name in BLEND_MODELS + EXPERIMENT_MODELS:
    if _name in RESERVED_NAMES or MODELS.count(_name) > 1:
        raise ValueError(
            f"config: model name {_name!r} is used twice or reserved "
            f"({sorted(RESERVED_NAMES)}); rename the blend or experiment"
        )
for _blend, _weights in config["blends"].items():
    for _part in _weights:
        if _part not in BASELINE_MODELS + EXPERIMENT_MODELS:
            raise ValueError(
                f"config blends.{_blend}: unknown model {_part!r}; "
                f"blend baselines {BASELINE_MODELS} or experiments {EXPERIMENT_MODELS}"
            )
SUBMITTED = config["submission"]["model"]
if SUBMITTED != "best" and SUBMITTED not in MODELS:
    raise ValueError(
        f"config submission.model: {SUBMITTED!r} is not 'best' or one of the models {MODELS}"
    )


def one_of(names):
    """Wildcard constraint matching exactly one of ``names`` (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


rule analyze_class_frequency:
    input:
        train="results/observations/train.parquet",
        val="results/observations/val.parquet",
        test="results/observations/test.parquet",
        species=str(LAYOUT.species_details),
    output:
        table="results/class_frequency/species.parquet",
        summary="results/class_frequency/summary.json",
        plot=report(
            "results/class_frequency/rank_frequency.png",
            caption="../report/rank_frequency.rst",
            category="Long tail",
        ),
    log:
        "logs/analyze_class_frequency.log",
    params:
        settings=config["class_frequency"],
    script:
        "../scripts/analyze_class_frequency.py"


rule predict_constant:
    input:
        species="results/class_frequency/species.parquet",
        val="results/observations/val.parquet",
        test="results/observations/test.parquet",
    output:
        val="results/predictions/constant/val.parquet",
        test="results/predictions/constant/test.parquet",
    log:
        "logs/predict_constant.log",
    params:
        top_k=config["predictions"]["top_k"],
    script:
        "../scripts/predict_constant.py"


rule predict_knn:
    input:
        species="results/class_frequency/species.parquet",
        train="results/observations/train.parquet",
        val="results/observations/val.parquet",
        test="results/observations/test.parquet",
    output:
        val="results/predictions/knn/val.parquet",
        test="results/predictions/knn/test.parquet",
    log:
        "logs/predict_knn.log",
    benchmark:
        "benchmarks/predict_knn.tsv"
    params:
        top_k=config["predictions"]["top_k"],
        chunk_rows=config["predictions"]["chunk_rows"],
        settings=config["baselines"]["knn"],
    script:
        "../scripts/predict_knn.py"


rule predict_random_forest:
    input:
        species="results/class_frequency/species.parquet",
        env=rules.extract_env.output[0],
        train="results/observations/train.parquet",
        val="results/observations/val.parquet",
        test="results/observations/test.parquet",
    output:
        val="results/predictions/random_forest/val.parquet",
        test="results/predictions/random_forest/test.parquet",
    log:
        "logs/predict_random_forest.log",
    benchmark:
        "benchmarks/predict_random_forest.tsv"
    threads: 8
    resources:
        # 16 trees x 2,047 nodes x 17,037 class probabilities (float64): ~4.5 GB
        mem_mb=2_000 if USING_DEMO else 16_000,
    params:
        top_k=config["predictions"]["top_k"],
        chunk_rows=config["predictions"]["chunk_rows"],
        settings=config["baselines"]["random_forest"],
    script:
        "../scripts/predict_random_forest.py"


rule blend_predictions:
    input:
        lambda wildcards: [
            f"results/predictions/{model}/{wildcards.split}.parquet"
            for model in config["blends"][wildcards.blend]
        ],
    output:
        "results/predictions/{blend}/{split}.parquet",
    log:
        "logs/blend_predictions/{blend}_{split}.log",
    wildcard_constraints:
        blend=one_of(BLEND_MODELS),
        split=one_of(PREDICTED_SPLITS),
    params:
        weights=lambda wildcards: config["blends"][wildcards.blend],
        top_k=config["predictions"]["top_k"],
    script:
        "../scripts/blend_predictions.py"


rule evaluate_model:
    input:
        predictions="results/predictions/{model}/val.parquet",
        val="results/observations/val.parquet",
        species="results/class_frequency/species.parquet",
        # The demo's true species probabilities give the Bayes limit.
        truth=str(DEMO_TRUTH / "species_probabilities.npz") if USING_DEMO else [],
    output:
        metrics="results/evaluation/{model}/metrics.json",
        plot=report(
            "results/evaluation/{model}/buckets.png",
            caption="../report/buckets.rst",
            category="Evaluation",
            subcategory="Per-bucket errors",
            labels={"model": "{model}"},
        ),
    log:
        "logs/evaluate_model/{model}.log",
    wildcard_constraints:
        model=one_of(MODELS),
    params:
        kind=lambda wildcards: MODEL_KIND[wildcards.model],
    script:
        "../scripts/evaluate_model.py"


rule build_leaderboard:
    input:
        expand("results/evaluation/{model}/metrics.json", model=MODELS),
    output:
        parquet="results/evaluation/leaderboard.parquet",
        markdown="results/evaluation/leaderboard.md",
        html=report(
            "results/evaluation/leaderboard.html",
            caption="../report/leaderboard.rst",
            category="Evaluation",
            subcategory="Leaderboard",
        ),
        plot=report(
            "results/evaluation/leaderboard.png",
            caption="../report/leaderboard_plot.rst",
            category="Evaluation",
            subcategory="Leaderboard",
        ),
    log:
        "logs/build_leaderboard.log",
    script:
        "../scripts/build_leaderboard.py"


rule write_submission:
    input:
        predictions="results/predictions/{model}/test.parquet",
        test="results/observations/test.parquet",
        species=str(LAYOUT.species_details),
    output:
        "results/submission/{model}.csv",
    log:
        "logs/write_submission/{model}.log",
    wildcard_constraints:
        model=one_of(MODELS),
    script:
        "../scripts/write_submission.py"


rule select_submission:
    input:
        # Choosing the best needs every model's val error; a named model needs none.
        leaderboard=(
            "results/evaluation/leaderboard.parquet" if SUBMITTED == "best" else []
        ),
        candidates=expand(
            "results/submission/{model}.csv",
            model=MODELS if SUBMITTED == "best" else [SUBMITTED],
        ),
        test="results/observations/test.parquet",
        species=str(LAYOUT.species_details),
    output:
        "results/submission/final.csv",
    log:
        "logs/select_submission.log",
    params:
        model=SUBMITTED,
        candidates=MODELS if SUBMITTED == "best" else [SUBMITTED],
    script:
        "../scripts/select_submission.py"


rule class_frequency:
    input:
        rules.analyze_class_frequency.output,


rule baselines:
    input:
        expand(
            "results/predictions/{model}/{split}.parquet",
            model=BASELINE_MODELS,
            split=PREDICTED_SPLITS,
        ),


rule leaderboard:
    input:
        rules.build_leaderboard.output,


rule evaluate:
    input:
        expand("results/evaluation/{model}/buckets.png", model=MODELS),
        rules.build_leaderboard.output,


rule submission:
    input:
        rules.select_submission.output,
