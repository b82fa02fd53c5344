"""Snakemake adapter: the species and richness maps of one model over one region."""

from dataclasses import asdict

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_species_names, read_table
from geolifeclef.layout import DatasetLayout
from geolifeclef.maps.point_models import read_spec
from geolifeclef.maps.render import choose_species
from geolifeclef.maps.report import (
    RegionSpecies,
    map_region,
    numeric_map_metrics,
    write_map_metrics,
)
from geolifeclef.maps.trained_models import load_point_model
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.tracking import Tracking
from geolifeclef.tracking.runs import start_run

with logging_to(snakemake.log[0]) as log:
    region = snakemake.wildcards.region
    spec = read_spec(snakemake.input.card)
    settings = snakemake.params.settings
    species = read_species_table(snakemake.input.species)
    chosen = choose_species(species, region, settings)
    log.info(
        "%s, %s: mapping species %s at %s degrees", spec.name, region, chosen, settings.resolution
    )
    metrics = map_region(
        load_point_model(spec, snakemake.threads),
        DatasetLayout(snakemake.params.data_root),
        region,
        RegionSpecies(
            species,
            read_species_names(snakemake.input.species_details),
            chosen,
            read_table(snakemake.input.train),
        ),
        settings,
        snakemake.output.maps,
        truth=snakemake.input.truth or None,
        mess=snakemake.input.mess,
        workers=snakemake.threads,
    )
    write_map_metrics(metrics, snakemake.output.metrics)
    for entry in metrics["maps"]:
        log.info("%s: correlation with the truth %s", entry["map"], entry["correlation"])
    # A run of its own, nested under the invocation's parent run: the model's evaluation
    # run may belong to an earlier invocation, finished, and is left as it was recorded.
    tracking = Tracking.of_invocation()
    with start_run(
        tracking.uri,
        tracking.experiment,
        f"maps {spec.name} {region}",
        snakemake.params.local_metrics,
        tags={
            "snakemake.rule": snakemake.rule,
            "wildcards.model": spec.name,
            "wildcards.region": region,
            "model_kind": spec.kind,
        },
    ) as tracker:
        tracker.log_params({"maps": asdict(settings), "species": chosen})
        tracker.log_metrics(numeric_map_metrics(metrics))
        tracker.log_artifact(snakemake.output.metrics, f"maps/{region}")
        for name in [entry["map"] for entry in metrics["maps"]]:
            tracker.log_artifact(f"{snakemake.output.maps}/{name}.png", f"maps/{region}")
