# The demo dataset, generated in the exact GLC 2022 layout when data.root is null.


rule generate_demo_dataset:
    output:
        observations=[str(p) for p in DatasetLayout(DEMO_ROOT).observation_files()],
        species=str(DatasetLayout(DEMO_ROOT).species_details),
        env_vectors=str(DatasetLayout(DEMO_ROOT).environmental_vectors),
        rasters=[str(p) for p in DatasetLayout(DEMO_ROOT).raster_files()],
        patches=[
            directory(str(DatasetLayout(DEMO_ROOT).patch_folder(r))) for r in REGIONS
        ],
        truth=str(DEMO_TRUTH / "species_probabilities.npz"),
        summary=str(DEMO_TRUTH / "summary.json"),
        # The species model and hidden fields, for the true species maps.
        world=str(DEMO_TRUTH / "world.npz"),
    log:
        logs("generate_demo_dataset"),
    benchmark:
        benchmarks("generate_demo_dataset")
    conda:
        ENVIRONMENT
    threads: 2
    params:
        root=str(DEMO_ROOT),
        truth_dir=str(DEMO_TRUTH),
        demo=config["demo"],
    script:
        "../scripts/generate_demo_dataset.py"
