"""Snakemake adapter: generate the demo dataset (see geolifeclef.demo)."""

from geolifeclef.demo import generate_demo_dataset
from geolifeclef.demo.spec import spec_for
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    settings = snakemake.params.demo
    spec = spec_for(settings["scale"], seed=settings["seed"], patch_size=settings["patch_size"])
    log.info("generating demo dataset %s", spec)
    summary = generate_demo_dataset(
        snakemake.params.root, snakemake.params.truth_dir, spec, workers=snakemake.threads
    )
    for subset, figures in summary.items():
        if subset != "spec":
            log.info("%s: %s", subset, figures)
