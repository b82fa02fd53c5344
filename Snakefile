# GeoLifeCLEF 2022: from the raw archive (or a generated demo) to a Kaggle submission.
# The rules live in workflow/rules/ (included in the order data flows), their logic in the
# geolifeclef package; workflow/rules/common.smk decides names and where files go.

from pathlib import Path

from snakemake.utils import min_version

from geolifeclef.settings.validation import validate_config

min_version("9.0")

CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"


configfile: "config/config.yaml"


validate_config(config, CONFIG_SCHEMA)


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/observations.smk"
include: "workflow/rules/extraction.smk"
include: "workflow/rules/class_frequency.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/blends.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/submission.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/importance.smk"


# Seconds of work each (read top-k tables, write a CSV or a plot, log to MLflow): on a
# cluster they run beside the scheduler instead of waiting in the queue as jobs.
localrules:
    evaluate_model,
    build_leaderboard,
    write_submission,
    select_submission,


rule all:
    default_target: True
    input:
        rules.observations.input,
        rules.extraction.input,
        rules.class_frequency.input,
        rules.evaluate.input,
        rules.submission.input,
