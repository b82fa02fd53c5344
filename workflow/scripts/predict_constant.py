"""Snakemake adapter: the constant baseline (see geolifeclef.baselines)."""

from geolifeclef.baselines import constant_predictions
from geolifeclef.class_frequency import read_species_table
from geolifeclef.observations import read_table
from geolifeclef.predictions import table_k, write_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    species = read_species_table(snakemake.input.species)
    k = table_k(snakemake.params.top_k, len(species))
    for split in ("val", "test"):
        ids = read_table(snakemake.input[split])["observation_id"].to_numpy()
        write_predictions(
            snakemake.output[split],
            constant_predictions(species, ids, k),
            known_species=species["species_id"].to_numpy(),
            expected_ids=ids,
        )
