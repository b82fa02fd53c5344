# Observation CSVs -> validated, typed Parquet tables, one per split.


rule ingest_observations:
    input:
        observations=[str(p) for p in LAYOUT.observation_files()],
        species=str(LAYOUT.species_details),
    output:
        **{split: results(f"observations/{split}.parquet") for split in SPLITS},
    log:
        logs("ingest_observations"),
    benchmark:
        benchmarks("ingest_observations")
    conda:
        ENVIRONMENT
    params:
        data_root=str(DATA_ROOT),
        archive=archive_fingerprint("observations"),
    script:
        "../scripts/ingest_observations.py"


rule observations:
    input:
        rules.ingest_observations.output,
