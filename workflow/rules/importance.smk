# What drives each mappable model (geolifeclef.maps.importance: permutation importance on
# the val rows) and how it responds to its most important variables (geolifeclef.maps.
# response: partial dependence of a head, a medium and a tail species per region). Not part
# of `all`: `importance`.


rule importance_model:
    input:
        card=rules.describe_map_model.output.card,
        val=rules.ingest_observations.output.val,
        env=rules.extract_env.output.table,
        species=rules.analyze_class_frequency.output.table,
    output:
        table=results("importance/{model}.parquet"),
        csv=results("importance/{model}.csv"),
        plot=report(
            results("importance/{model}.png"),
            caption="../report/importance.rst",
            category="Variable importance",
            labels={"model": "{model}"},
        ),
    log:
        logs("importance_model/{model}"),
    benchmark:
        benchmarks("importance_model/{model}")
    wildcard_constraints:
        model=one_of(MAPPED_MODELS),
    conda:
        ENVIRONMENT
    threads: 1  # as map_model
    params:
        settings=SETTINGS.importance,
        settings_key=rerun_key(SETTINGS.importance),
        local_metrics=results("importance/{model}.jsonl"),
    script:
        "../scripts/importance_model.py"


rule respond_model:
    input:
        card=rules.describe_map_model.output.card,
        val=rules.ingest_observations.output.val,
        env=rules.extract_env.output.table,
        species=rules.analyze_class_frequency.output.table,
        species_details=str(LAYOUT.species_details),
        importance=rules.importance_model.output.table,
    output:
        curves=report(
            directory(results("maps/{model}/responses/{region}")),
            patterns=["{name}.png"],
            caption="../report/responses.rst",
            category="Response curves",
            subcategory="{model}",
            labels={"region": "{region}", "species": "{name}", "model": "{model}"},
        ),
    log:
        logs("respond_model/{model}_{region}"),
    benchmark:
        benchmarks("respond_model/{model}_{region}")
    wildcard_constraints:
        model=one_of(MAPPED_MODELS),
        region=one_of(REGIONS),
    conda:
        ENVIRONMENT
    threads: 1
    params:
        settings=SETTINGS.response,
        settings_key=rerun_key(SETTINGS.response),
    script:
        "../scripts/respond_model.py"


rule importance:
    input:
        expand(rules.importance_model.output, model=MAPPED_MODELS),
        expand(rules.respond_model.output, model=MAPPED_MODELS, region=REGIONS),
