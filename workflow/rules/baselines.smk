# Baselines (geolifeclef.baselines), fitted on train (test also on train + val with their
# `refit`), one rule predict_<name> per baseline family (geolifeclef.settings.families).
# Every model writes predictions(model, split) in the format of geolifeclef.predictions.table.

for family in (BASELINES[name] for name in BASELINE_MODELS):

    rule:
        name:
            f"predict_{family.name}"
        input:
            species=rules.analyze_class_frequency.output.table,
            train=rules.ingest_observations.output.train,
            val=rules.ingest_observations.output.val,
            test=rules.ingest_observations.output.test,
            env=(
                rules.extract_env.output.table
                if "env" in BASELINE_SETTINGS[family.name].reads
                else []
            ),
            patch_stats=(
                patch_stats_tables(SPLITS)
                if "patch_stats" in BASELINE_SETTINGS[family.name].reads
                else []
            ),
        output:
            **{split: predictions(family.name, split) for split in PREDICTED_SPLITS},
            # The fit behind the test predictions: the maps, the point queries and its
            # MLflow model reload it (the family's module: load).
            model=model_file(family.name, "model.npz"),
        log:
            logs(f"predict_{family.name}"),
        benchmark:
            benchmarks(f"predict_{family.name}")
        conda:
            ENVIRONMENT
        threads: family.threads
        resources:
            mem_mb=family.mem_mb["demo" if USING_DEMO else "archive"],
        params:
            family=family.name,
            settings=BASELINE_SETTINGS[family.name],
            settings_key=rerun_key(BASELINE_SETTINGS[family.name]),
            top_k=config["predictions"]["top_k"],
            chunk_rows=config["predictions"]["chunk_rows"],
            # A survey edition's scores are presence probabilities, its env table's
            # columns its values tables' (geolifeclef.editions).
            marginal=TASK.multi_label,
            env_variables=EDITION.env_variables,
        script:
            "../scripts/predict_baseline.py"


rule baselines:
    input:
        [getattr(rules, f"predict_{name}").output for name in BASELINE_MODELS],
