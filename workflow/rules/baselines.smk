# Baselines (geolifeclef.baselines), fitted on train (test also on train + val with their
# `refit`). Every model writes predictions(model, split) in the format of
# geolifeclef.predictions.table.

FOREST_READS_PATCH_STATS = bool(
    set(config["baselines"]["random_forest"]["features"]) & set(PATCH_STAT_GROUPS)
)


rule predict_constant:
    input:
        species=rules.analyze_class_frequency.output.table,
        train=rules.ingest_observations.output.train,
        val=rules.ingest_observations.output.val,
        test=rules.ingest_observations.output.test,
    output:
        **{split: predictions("constant", split) for split in PREDICTED_SPLITS},
    log:
        logs("predict_constant"),
    benchmark:
        benchmarks("predict_constant")
    conda:
        ENVIRONMENT
    params:
        top_k=config["predictions"]["top_k"],
    script:
        "../scripts/predict_constant.py"


rule predict_knn:
    input:
        species=rules.analyze_class_frequency.output.table,
        train=rules.ingest_observations.output.train,
        val=rules.ingest_observations.output.val,
        test=rules.ingest_observations.output.test,
    output:
        **{split: predictions("knn", split) for split in PREDICTED_SPLITS},
    log:
        logs("predict_knn"),
    benchmark:
        benchmarks("predict_knn")
    conda:
        ENVIRONMENT
    params:
        top_k=config["predictions"]["top_k"],
        chunk_rows=config["predictions"]["chunk_rows"],
        settings=config["baselines"]["knn"],
    script:
        "../scripts/predict_knn.py"


rule predict_random_forest:
    input:
        species=rules.analyze_class_frequency.output.table,
        env=rules.extract_env.output.table,
        patch_stats=patch_stats_tables(SPLITS) if FOREST_READS_PATCH_STATS else [],
        train=rules.ingest_observations.output.train,
        val=rules.ingest_observations.output.val,
        test=rules.ingest_observations.output.test,
    output:
        **{split: predictions("random_forest", split) for split in PREDICTED_SPLITS},
        # The fitted trees, for the maps and point queries (geolifeclef.baselines.forest_file).
        forest=model_file("random_forest", "forest.npz"),
    log:
        logs("predict_random_forest"),
    benchmark:
        benchmarks("predict_random_forest")
    conda:
        ENVIRONMENT
    threads: 8
    resources:
        # 8 trees grown at once x 2,047 nodes x 17,037 classes (float64): ~2.2 GB
        mem_mb=2_000 if USING_DEMO else 16_000,
    params:
        top_k=config["predictions"]["top_k"],
        chunk_rows=config["predictions"]["chunk_rows"],
        settings=config["baselines"]["random_forest"],
    script:
        "../scripts/predict_random_forest.py"


rule baselines:
    input:
        rules.predict_constant.output,
        rules.predict_knn.output,
        rules.predict_random_forest.output,
