"""Snakemake adapter: the demo's true species and richness maps of one region."""

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_species_names
from geolifeclef.demo.true_maps import DemoTruthModel
from geolifeclef.layout import DatasetLayout
from geolifeclef.maps.render import choose_species
from geolifeclef.maps.report import RegionSpecies, map_region
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    region = snakemake.wildcards.region
    settings = snakemake.params.settings
    species = read_species_table(snakemake.input.species)
    chosen = choose_species(species, region, settings)
    log.info("true maps of %s: species %s at %s degrees", region, chosen, settings.resolution)
    map_region(
        DemoTruthModel(snakemake.input.world, species["species_id"].to_numpy()),
        DatasetLayout(snakemake.params.data_root),
        region,
        RegionSpecies(species, read_species_names(snakemake.input.species_details), chosen),
        settings,
        snakemake.output.maps,
        workers=snakemake.threads,
        figures=False,
    )
