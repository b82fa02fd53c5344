# A survey edition's maps: each model's predicted richness at the test surveys, beside the
# demo's true richness (geolifeclef.maps.richness). The archives hold no rasters, so the
# maps are drawn at the surveys.


rule map_richness:
    input:
        predictions=predictions("{model}", "test"),
        sets=rules.select_sets.output.test,
        test=rules.ingest_observations.output.test,
        truth=rules.generate_demo_dataset.output.truth if USING_DEMO else [],
    output:
        plot=report(
            results("maps/{model}/richness.png"),
            caption="../report/richness.rst",
            category="Maps",
            labels={"model": "{model}"},
        ),
        figures=results("maps/{model}/richness.json"),
    log:
        logs("map_richness/{model}"),
    benchmark:
        benchmarks("map_richness/{model}")
    wildcard_constraints:
        model=one_of(MODELS),
    conda:
        ENVIRONMENT
    script:
        "../scripts/map_richness.py"


rule maps:
    input:
        expand(rules.map_richness.output, model=MODELS),
