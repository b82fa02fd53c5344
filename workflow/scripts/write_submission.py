"""Snakemake adapter: a model's test predictions -> checked Kaggle CSV
(geolifeclef.evaluation.submission)."""

from geolifeclef.data.observations import read_species_ids, read_table
from geolifeclef.evaluation.submission import write_submission
from geolifeclef.predictions.table import read_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    test_ids = read_table(snakemake.input.test)["observation_id"].to_numpy()
    known_species = read_species_ids(snakemake.input.species)
    predictions = read_predictions(
        snakemake.input.predictions, known_species=known_species, expected_ids=test_ids
    )
    write_submission(snakemake.output.csv, predictions, test_ids, known_species)
