# Environmental values from the rasters and patch caches (see geolifeclef.environment,
# geolifeclef.patch_cache, and geolifeclef.dataset to read them for training).

SPLIT_TABLES = [f"results/observations/{split}.parquet" for split in SPLITS]
RASTERS = [str(p) for p in LAYOUT.raster_files()]
PATCH_FOLDERS = [str(LAYOUT.patch_folder(r)) for r in REGIONS]
ENV_TABLE = "results/environment/env_values.parquet"
ENV_PATCHES = "results/environment/env_patches"
NORMALIZATION_STATS = "results/normalization/stats.json"


def env_source_files():
    """The rasters, or the archive's pre-extracted CSV when the config asks for it."""
    if config["environment"]["source"] == "pre_extracted":
        return [str(LAYOUT.environmental_vectors)]
    return RASTERS


rule extract_env:
    input:
        observations=SPLIT_TABLES,
        source=env_source_files(),
    output:
        ENV_TABLE,
    log:
        "logs/extract_env.log",
    benchmark:
        "benchmarks/extract_env.tsv"
    threads: 4
    params:
        data_root=str(DATA_ROOT),
        source=config["environment"]["source"],
    script:
        "../scripts/extract_env.py"


rule extract_env_patches:
    input:
        observations=SPLIT_TABLES,
        rasters=RASTERS,
    output:
        directory(ENV_PATCHES),
    log:
        "logs/extract_env_patches.log",
    benchmark:
        "benchmarks/extract_env_patches.tsv"
    threads: 4
    params:
        data_root=str(DATA_ROOT),
        size=config["environment"]["env_patches"]["size"],
    script:
        "../scripts/extract_env_patches.py"


rule cache_patches:
    input:
        observations="results/observations/{split}.parquet",
        patches=PATCH_FOLDERS,
    output:
        directory("results/patches/{split}"),
    log:
        "logs/cache_patches_{split}.log",
    benchmark:
        "benchmarks/cache_patches_{split}.tsv"
    wildcard_constraints:
        split="|".join(SPLITS),
    # Capped at --cores; the build scales with processes (decoding is CPU-bound).
    threads: 8
    params:
        data_root=str(DATA_ROOT),
        size=config["patches"]["size"],
        mode=config["patches"]["mode"],
        modalities=config["patches"]["modalities"],
        on_bad_file=config["patches"]["on_bad_file"],
    script:
        "../scripts/cache_patches.py"


rule compute_normalization_stats:
    input:
        train="results/observations/train.parquet",
        env=ENV_TABLE,
        cache=["results/patches/train"] if config["patches"]["enabled"] else [],
    output:
        NORMALIZATION_STATS,
    log:
        "logs/compute_normalization_stats.log",
    benchmark:
        "benchmarks/compute_normalization_stats.tsv"
    script:
        "../scripts/compute_normalization_stats.py"


rule extraction:
    input:
        ENV_TABLE,
        NORMALIZATION_STATS,
        (
            expand("results/patches/{split}", split=SPLITS)
            if config["patches"]["enabled"]
            else []
        ),
        [ENV_PATCHES] if config["environment"]["env_patches"]["enabled"] else [],
