# A survey edition's archive (GLC 2024, 2025; geolifeclef.survey_layout) read into the
# workflow's tables: the demo generated in the archive's layout when data.root is null, the
# presence-absence surveys (val carved from train by spatial blocks) and presence-only
# occurrences, the species table, the values of every survey and its time-series cubes.
# The rule and target names are GLC 2022's (demo.smk, observations.smk, extraction.smk,
# class_frequency.smk): every stage after these tables is shared.

from geolifeclef.survey_layout import CUBE_SHAPES, SURVEY_SPLITS, resolve


rule generate_demo_dataset:
    output:
        metadata=[str(p) for p in EDITION.layout(DEMO_ROOT).metadata_files()],
        po=str(EDITION.layout(DEMO_ROOT).po_metadata),
        sample_submission=str(EDITION.layout(DEMO_ROOT).sample_submission),
        values=[
            str(p)
            for split in SURVEY_SPLITS
            for p in EDITION.layout(DEMO_ROOT).values_files(split)
        ],
        cubes=[
            directory(str(EDITION.layout(DEMO_ROOT).cube_folder(kind, split)))
            for split in SURVEY_SPLITS
            for kind in CUBE_SHAPES
        ],
        patches=[
            directory(str(folder))
            for split in SURVEY_SPLITS
            for folder in EDITION.layout(DEMO_ROOT).patch_folders(split)
        ],
        truth=str(DEMO_TRUTH / "presence_probabilities.npz"),
        # The hidden test answer, as a Kaggle solution file (geolifeclef score reads it).
        solution=str(DEMO_TRUTH / "test_solution.csv"),
        summary=str(DEMO_TRUTH / "summary.json"),
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
        year=EDITION.year,
        scale=config["demo"]["scale"],
        seed=config["demo"]["seed"],
    script:
        "../scripts/generate_survey_demo.py"


rule ingest_observations:
    input:
        metadata=archive_files("observations"),
        # The presence-only occurrences, when the archive has them (the demo always does).
        po=(
            str(LAYOUT.po_metadata)
            if USING_DEMO
            else [str(p) for p in [resolve(LAYOUT.po_metadata)] if p.exists()]
        ),
    output:
        **{split: results(f"observations/{split}.parquet") for split in SPLITS},
        po=results("observations/po.parquet"),
    log:
        logs("ingest_observations"),
    benchmark:
        benchmarks("ingest_observations")
    conda:
        ENVIRONMENT
    params:
        data_root=str(DATA_ROOT),
        year=EDITION.year,
        surveys=config["surveys"],
        archive=archive_fingerprint("observations"),
    script:
        "../scripts/ingest_surveys.py"


rule observations:
    input:
        rules.ingest_observations.output,


rule analyze_class_frequency:
    input:
        **rules.ingest_observations.output,
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
        "../scripts/analyze_survey_species.py"


rule class_frequency:
    input:
        rules.analyze_class_frequency.output,


rule extract_env:
    input:
        observations=[rules.ingest_observations.output[split] for split in SPLITS],
        source=archive_files("values"),
    output:
        table=results("environment/env_values.parquet"),
    log:
        logs("extract_env"),
    benchmark:
        benchmarks("extract_env")
    conda:
        ENVIRONMENT
    params:
        data_root=str(DATA_ROOT),
        year=EDITION.year,
        nan_share_limit=config["environment"]["nan_share_limit"],
        archive=archive_fingerprint("values"),
    script:
        "../scripts/extract_survey_values.py"


rule pack_cubes:
    input:
        observations=lambda wildcards: rules.ingest_observations.output[wildcards.split],
        cubes=archive_files("cubes"),
    output:
        cubes=directory(results("cubes/{split}")),
    log:
        logs("pack_cubes_{split}"),
    benchmark:
        benchmarks("pack_cubes_{split}")
    wildcard_constraints:
        split=one_of(SPLITS),
    conda:
        ENVIRONMENT
    threads: 2
    params:
        data_root=str(DATA_ROOT),
        year=EDITION.year,
        archive=archive_fingerprint("cubes"),
    script:
        "../scripts/pack_cubes.py"


def cube_caches(splits):
    """The packed cubes of ``splits``, chained from the rule that packs them."""
    return expand(rules.pack_cubes.output.cubes, split=splits)


# The Sentinel-2 patches in a store per split (geolifeclef.patches.cache, as GLC 2022's):
# the archive's modalities (GLC 2024: s2_rgb and s2_nir JPEGs; GLC 2025: the 4-band s2
# GeoTIFF), read by the experiments that name them.
PATCHES = config["patches"]
PATCHES_ENABLED = PATCHES["enabled"]
SURVEY_PATCH_MODALITIES = list(EDITION.archive.patch_modalities)


rule cache_survey_patches:
    input:
        observations=lambda wildcards: rules.ingest_observations.output[wildcards.split],
        patches=archive_files("patches"),
    output:
        cache=directory(results("patches/{split}")),
    log:
        logs("cache_survey_patches_{split}"),
    benchmark:
        benchmarks("cache_survey_patches_{split}")
    wildcard_constraints:
        split=one_of(SPLITS),
    conda:
        ENVIRONMENT
    threads: 2
    params:
        data_root=str(DATA_ROOT),
        year=EDITION.year,
        store=PATCHES["store"],
        size=PATCHES["size"],
        mode=PATCHES["mode"],
        modalities=SURVEY_PATCH_MODALITIES,
        on_bad_file=PATCHES["on_bad_file"],
        archive=archive_fingerprint("patches"),
    script:
        "../scripts/cache_survey_patches.py"


def patch_caches(splits):
    """The patch caches of ``splits``, chained from the rule that builds them."""
    return expand(rules.cache_survey_patches.output.cache, split=splits)


def patch_stats_tables(splits):
    """No patch statistics tables for a survey edition (GLC 2022's quantile features)."""
    return []


rule compute_normalization_stats:
    input:
        train=rules.ingest_observations.output.train,
        env=rules.extract_env.output.table,
        cache=patch_caches(["train"]) if PATCHES_ENABLED else [],
        patch_stats=[],
        cubes=cube_caches(["train"]),
    output:
        stats=results("normalization/stats.json"),
    log:
        logs("compute_normalization_stats"),
    benchmark:
        benchmarks("compute_normalization_stats")
    conda:
        ENVIRONMENT
    script:
        "../scripts/compute_normalization_stats.py"


# The presence-only occurrences as surveys to pre-train on, with the values of their
# nearest presence-absence survey (geolifeclef.data.presence_only).
rule prepare_presence_only:
    input:
        po=rules.ingest_observations.output.po,
        surveys=[rules.ingest_observations.output[split] for split in SPLITS],
        env=rules.extract_env.output.table,
        species=rules.analyze_class_frequency.output.table,
    output:
        surveys=results("presence_only/surveys.parquet"),
        env=results("presence_only/env_values.parquet"),
    log:
        logs("prepare_presence_only"),
    benchmark:
        benchmarks("prepare_presence_only")
    conda:
        ENVIRONMENT
    params:
        max_distance_km=config["presence_only"]["max_distance_km"],
    script:
        "../scripts/prepare_presence_only.py"


rule extraction:
    input:
        rules.extract_env.output,
        rules.compute_normalization_stats.output,
        cube_caches(SPLITS),
        patch_caches(SPLITS) if PATCHES_ENABLED else [],
