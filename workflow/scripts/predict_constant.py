"""Snakemake adapter: the constant baseline (see geolifeclef.baselines)."""

from geolifeclef.baselines import constant_predictions
from geolifeclef.class_frequency import read_species_table
from geolifeclef.observations import read_table
from geolifeclef.predictions import table_k, write_split_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    outputs = dict(snakemake.output.items())  # split -> path
    species = read_species_table(snakemake.input.species)
    k = table_k(snakemake.params.top_k, len(species))
    ids = {
        split: read_table(snakemake.input[split])["observation_id"].to_numpy() for split in outputs
    }
    write_split_predictions(
        outputs,
        {split: constant_predictions(species, split_ids, k) for split, split_ids in ids.items()},
        ids,
        species["species_id"].to_numpy(),
    )
