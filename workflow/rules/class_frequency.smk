# The long tail: species counts, priors and frequency buckets (geolifeclef.data.class_frequency).


rule analyze_class_frequency:
    input:
        **rules.ingest_observations.output,
        species=str(LAYOUT.species_details),
    output:
        table=results("class_frequency/species.parquet"),
        summary=results("class_frequency/summary.json"),
        plot=report(
            results("class_frequency/rank_frequency.png"),
            caption="../report/rank_frequency.rst",
            category="Long tail",
        ),
    log:
        logs("analyze_class_frequency"),
    benchmark:
        benchmarks("analyze_class_frequency")
    conda:
        ENVIRONMENT
    params:
        settings=config["class_frequency"],
    script:
        "../scripts/analyze_class_frequency.py"


rule class_frequency:
    input:
        rules.analyze_class_frequency.output,
