"""Snakemake adapter: the spatial k-nearest-neighbour baseline (see geolifeclef.baselines)."""

from geolifeclef.baselines import KnnSettings, knn_predictions
from geolifeclef.class_frequency import read_species_table
from geolifeclef.observations import read_table
from geolifeclef.predictions import table_k, write_split_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    outputs = dict(snakemake.output.items())  # split -> path
    species = read_species_table(snakemake.input.species)
    queries = {split: read_table(snakemake.input[split]) for split in outputs}
    write_split_predictions(
        outputs,
        knn_predictions(
            read_table(snakemake.input.train),
            queries,
            species,
            table_k(snakemake.params.top_k, len(species)),
            KnnSettings(**snakemake.params.settings),
            snakemake.params.chunk_rows,
        ),
        {split: frame["observation_id"].to_numpy() for split, frame in queries.items()},
        species["species_id"].to_numpy(),
    )
