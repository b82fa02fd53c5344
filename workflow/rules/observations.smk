# Observation CSVs -> validated, typed Parquet tables, one per split.


rule ingest_observations:
    input:
        observations=[str(p) for p in LAYOUT.observation_files()],
        species=str(LAYOUT.species_details),
    output:
        **{split: f"results/observations/{split}.parquet" for split in SPLITS},
    log:
        "logs/ingest_observations.log",
    benchmark:
        "benchmarks/ingest_observations.tsv"
    params:
        data_root=str(DATA_ROOT),
    script:
        "../scripts/ingest_observations.py"
