# GeoLifeCLEF (2022, 2024, 2025): from the raw archive (or a generated demo) to a Kaggle
# submission. The rules live in workflow/rules/ (included in the order data flows), their
# logic in the geolifeclef package; workflow/rules/common.smk decides names and where files
# go, geolifeclef.editions the edition's layout and task.

from pathlib import Path

from snakemake.utils import min_version

from geolifeclef.editions import edition_of
from geolifeclef.settings.validation import validate_config

min_version("9.0")

CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"


# The edition's own config file: `--config edition=glc2024` reads config/glc2024.yaml (a
# --configfile given on the command line replaces it).
configfile: edition_of(config).config_file


validate_config(config, CONFIG_SCHEMA)
EDITION = edition_of(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"


# How an archive is read depends on what it holds (the edition's layout): observations,
# rasters and patches (GLC 2022), or presence-absence surveys with their values, cubes and
# Sentinel-2 patches (GLC 2024 on). Both end in the same tables; the rest is shared.
if EDITION.surveys:

    include: "workflow/rules/surveys.smk"

else:

    include: "workflow/rules/demo.smk"
    include: "workflow/rules/observations.smk"
    include: "workflow/rules/extraction.smk"
    include: "workflow/rules/class_frequency.smk"


include: "workflow/rules/baselines.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/blends.smk"


# A survey edition's models answer with species sets, cut from their ranked predictions.
if EDITION.task.multi_label:

    include: "workflow/rules/sets.smk"
    include: "workflow/rules/richness.smk"


include: "workflow/rules/evaluation.smk"
include: "workflow/rules/submission.smk"
include: "workflow/rules/sweeps.smk"


# Species maps, MESS, importance and response curves read the GLC 2022 rasters and regions.
if not EDITION.surveys:

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
