"""Snakemake adapter: response curves of one mappable model in one region."""

import pandas as pd

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.observations import read_species_names
from geolifeclef.maps.importance import most_important, read_sample
from geolifeclef.maps.point_models import read_spec
from geolifeclef.maps.response import (
    region_sample,
    response_species,
    write_responses,
)
from geolifeclef.maps.trained_models import load_point_model
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    region = snakemake.wildcards.region
    spec = read_spec(snakemake.input.card)
    settings = snakemake.params.settings
    species = read_species_table(snakemake.input.species)
    chosen = response_species(species, region, settings)
    features = list(settings.variables or ()) or most_important(
        pd.read_parquet(snakemake.input.importance), settings.top
    )
    sample = region_sample(
        read_sample(snakemake.input.val, snakemake.input.env), region, settings.rows, settings.seed
    )
    log.info(
        "%s, %s: species %s along %s, %d val rows", spec.name, region, chosen, features, len(sample)
    )
    write_responses(
        load_point_model(spec, snakemake.threads),
        sample,
        species,
        read_species_names(snakemake.input.species_details),
        chosen,
        features,
        settings,
        snakemake.output.curves,
        region,
    )
