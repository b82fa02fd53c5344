# Environmental values from the rasters and patch caches (see geolifeclef.data.env_table,
# geolifeclef.data.env_windows, geolifeclef.patches.cache, and geolifeclef.data.dataset to read them).


# The rasters, or the archive's pre-extracted CSV when the config asks for it.
ENV_SOURCE = (
    "pre_extracted" if config["environment"]["source"] == "pre_extracted" else "rasters"
)


rule extract_env:
    input:
        observations=rules.ingest_observations.output,
        source=archive_files(ENV_SOURCE),
    output:
        table=results("environment/env_values.parquet"),
    log:
        logs("extract_env"),
    benchmark:
        benchmarks("extract_env")
    conda:
        ENVIRONMENT
    threads: 4
    params:
        data_root=str(DATA_ROOT),
        source=config["environment"]["source"],
        nan_share_limit=config["environment"]["nan_share_limit"],
        archive=archive_fingerprint(ENV_SOURCE),
    script:
        "../scripts/extract_env.py"


rule extract_env_patches:
    input:
        observations=rules.ingest_observations.output,
        rasters=archive_files("rasters"),
    output:
        windows=directory(results("environment/env_patches")),
    log:
        logs("extract_env_patches"),
    benchmark:
        benchmarks("extract_env_patches")
    conda:
        ENVIRONMENT
    threads: 4
    params:
        data_root=str(DATA_ROOT),
        size=config["environment"]["env_patches"]["size"],
        archive=archive_fingerprint("rasters"),
    script:
        "../scripts/extract_env_patches.py"


# Patch caches, built in `patches.shards` jobs per split (Snakemake's scatter/gather; the
# shard is the wildcard `scatteritem`, "<i>-of-<n>") that a gather job links into the
# split's cache folder with the index (see geolifeclef.patches.cache).
PATCHES = config["patches"]


scattergather:
    patch_shards=PATCHES["shards"],


rule cache_patch_shard:
    input:
        observations=lambda wildcards: rules.ingest_observations.output[wildcards.split],
        patches=archive_files("patches"),
    output:
        shard=directory(results("patches/shards/{split}/{scatteritem}")),
    log:
        logs("cache_patch_shard/{split}_{scatteritem}"),
    benchmark:
        benchmarks("cache_patch_shard/{split}_{scatteritem}")
    wildcard_constraints:
        split=one_of(SPLITS),
    conda:
        ENVIRONMENT
    # Capped at --cores; the build scales with processes (decoding is CPU-bound).
    threads: 8
    params:
        data_root=str(DATA_ROOT),
        store=PATCHES["store"],
        modalities=PATCHES["modalities"],
        on_bad_file=PATCHES["on_bad_file"],
        # The size and time of every patch file the split reads: one changed reruns the
        # split's shards, and each rebuilds only the chunks whose files changed.
        patch_files=lambda wildcards: split_patch_files(
            rules.ingest_observations.output[wildcards.split], PATCHES["modalities"]
        ),
        # The encoded store keeps the files' bytes: its shards do not depend on the size
        # and mode (applied when read), so changing them only reruns the gather.
        geometry=(
            [PATCHES["size"], PATCHES["mode"]]
            if PATCHES["store"] == "decoded"
            else None
        ),
    script:
        "../scripts/cache_patch_shard.py"


rule cache_patches:
    input:
        observations=lambda wildcards: rules.ingest_observations.output[wildcards.split],
        shards=lambda wildcards: gather.patch_shards(
            rules.cache_patch_shard.output.shard, split=wildcards.split
        ),
    output:
        cache=directory(results("patches/{split}")),
    log:
        logs("cache_patches_{split}"),
    benchmark:
        benchmarks("cache_patches_{split}")
    wildcard_constraints:
        split=one_of(SPLITS),
    conda:
        ENVIRONMENT
    params:
        store=PATCHES["store"],
        size=PATCHES["size"],
        mode=PATCHES["mode"],
        modalities=PATCHES["modalities"],
        on_bad_file=PATCHES["on_bad_file"],
    script:
        "../scripts/cache_patches.py"


def patch_caches(splits):
    """The patch caches of ``splits``, chained from the rule that builds them."""
    return expand(rules.cache_patches.output.cache, split=splits)


rule compute_patch_stats:
    input:
        cache=lambda wildcards: patch_caches([wildcards.split]),
    output:
        table=results("patch_stats/{split}.parquet"),
    log:
        logs("compute_patch_stats_{split}"),
    benchmark:
        benchmarks("compute_patch_stats_{split}")
    wildcard_constraints:
        split=one_of(SPLITS),
    conda:
        ENVIRONMENT
    # Capped at --cores; one process per thread, each reading and summarising a chunk.
    threads: 2
    params:
        workers=lambda wildcards, threads: threads,
    script:
        "../scripts/compute_patch_stats.py"


def patch_stats_tables(splits):
    """The patch statistics tables of ``splits``, chained from the rule that writes them."""
    return expand(rules.compute_patch_stats.output.table, split=splits)


PATCHES_ENABLED = config["patches"]["enabled"]


def cube_caches(splits):
    """GLC 2022 has no time-series cubes (a survey edition's are packed by pack_cubes)."""
    return []


rule compute_normalization_stats:
    input:
        train=rules.ingest_observations.output.train,
        env=rules.extract_env.output.table,
        cache=patch_caches(["train"]) if PATCHES_ENABLED else [],
        patch_stats=patch_stats_tables(["train"]) if PATCHES_ENABLED else [],
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


rule extraction:
    input:
        rules.extract_env.output,
        rules.compute_normalization_stats.output,
        patch_caches(SPLITS) if PATCHES_ENABLED else [],
        patch_stats_tables(SPLITS) if PATCHES_ENABLED else [],
        rules.extract_env_patches.output
        if config["environment"]["env_patches"]["enabled"]
        else [],
