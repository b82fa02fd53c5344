"""Snakemake adapter: the spatial k-nearest-neighbour baseline (see geolifeclef.baselines)."""

from geolifeclef.baselines import KnnSettings, fitting_rows, knn_predictions, predict_per_fit
from geolifeclef.class_frequency import read_species_table
from geolifeclef.observations import read_table
from geolifeclef.predictions import table_k, write_split_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    outputs = dict(snakemake.output.items())  # split -> path
    species = read_species_table(snakemake.input.species)
    settings = KnnSettings(**snakemake.params.settings)
    queries = {split: read_table(snakemake.input[split]) for split in outputs}
    fitting = fitting_rows(read_table(snakemake.input.train), queries["val"], settings.refit)
    k = table_k(snakemake.params.top_k, len(species))
    write_split_predictions(
        outputs,
        predict_per_fit(
            fitting,
            queries,
            lambda rows, wanted: knn_predictions(
                rows, wanted, species, k, settings, snakemake.params.chunk_rows
            ),
        ),
        {split: frame["observation_id"].to_numpy() for split, frame in queries.items()},
        species["species_id"].to_numpy(),
    )
