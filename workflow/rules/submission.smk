# The Kaggle submission: every model's test predictions as a checked CSV, and final.csv.


rule write_submission:
    input:
        predictions=predictions("{model}", "test"),
        # A survey edition submits the model's test sets (its set rule's).
        sets=results("sets/{model}/test.parquet") if TASK.multi_label else [],
        test=rules.ingest_observations.output.test,
        species=SPECIES_LIST,
    output:
        csv=results("submission/{model}.csv"),
    log:
        logs("write_submission/{model}"),
    benchmark:
        benchmarks("write_submission/{model}")
    wildcard_constraints:
        model=one_of(MODELS),
    conda:
        ENVIRONMENT
    params:
        task=TASK,
    script:
        "../scripts/write_submission.py"


rule select_submission:
    input:
        # Choosing the best needs every model's val error; a named model needs none.
        leaderboard=(
            rules.build_leaderboard.output.parquet if SUBMITTED == "best" else []
        ),
        candidates=expand(
            rules.write_submission.output.csv, model=SUBMISSION_CANDIDATES
        ),
        test=rules.ingest_observations.output.test,
        species=SPECIES_LIST,
        # What registers the submitted model in MLflow (geolifeclef.evaluation.submission.
        # register_champion): each candidate's val score and logged model.
        metrics=expand(rules.evaluate_model.output.metrics, model=SUBMISSION_CANDIDATES),
    output:
        final=results("submission/final.csv"),
    log:
        logs("select_submission"),
    benchmark:
        benchmarks("select_submission")
    conda:
        ENVIRONMENT
    params:
        model=SUBMITTED,
        candidates=SUBMISSION_CANDIDATES,
        task=TASK,
        champion=EDITION.champion_model,
    script:
        "../scripts/select_submission.py"


rule submission:
    input:
        rules.select_submission.output,
