# A survey edition's species sets: each model's ranked predictions cut into one set per
# survey by the set rule chosen on val (geolifeclef.predictions.set_selection).


rule select_sets:
    input:
        val=predictions("{model}", "val"),
        test=predictions("{model}", "test"),
        surveys=rules.ingest_observations.output.val,
    output:
        val=results("sets/{model}/val.parquet"),
        test=results("sets/{model}/test.parquet"),
        rule=results("sets/{model}/rule.json"),
    log:
        logs("select_sets/{model}"),
    benchmark:
        benchmarks("select_sets/{model}")
    wildcard_constraints:
        model=one_of(MODELS),
    conda:
        ENVIRONMENT
    params:
        rules=config["set_selection"]["rules"],
        top_k=config["set_selection"]["top_k"],
    script:
        "../scripts/select_sets.py"


rule sets:
    input:
        expand(rules.select_sets.output, model=MODELS),
