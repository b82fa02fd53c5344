# GeoLifeCLEF 2022: from the raw archive (or a generated demo) to a Kaggle submission.
# The rules live in workflow/rules/, their logic in the geolifeclef package.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/observations.smk"
include: "workflow/rules/extraction.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/training.smk"


rule observations:
    input:
        expand("results/observations/{split}.parquet", split=SPLITS),


rule all:
    default_target: True
    input:
        rules.observations.input,
        # -- extraction targets --
        rules.extraction.input,
        # -- evaluation targets --
        rules.class_frequency.input,
        rules.evaluate.input,
        rules.submission.input,
