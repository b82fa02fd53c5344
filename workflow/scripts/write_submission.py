"""Snakemake adapter: a model's test predictions (a survey edition: its test sets) -> checked
Kaggle CSV (geolifeclef.evaluation.submission, .set_submission)."""

from geolifeclef.data.observations import read_species_ids, read_table
from geolifeclef.evaluation.set_submission import write_set_submission
from geolifeclef.evaluation.submission import write_submission
from geolifeclef.predictions.set_table import read_sets
from geolifeclef.predictions.table import read_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    test_ids = read_table(snakemake.input.test)["observation_id"].to_numpy()
    if snakemake.params.task.multi_label:
        sets = read_sets(snakemake.input.sets, test_ids)
        write_set_submission(snakemake.output.csv, sets, test_ids)
        log.info(
            "%d test surveys, %.1f species each -> %s",
            len(sets),
            sets.sizes.mean(),
            snakemake.output.csv,
        )
    else:
        known_species = read_species_ids(snakemake.input.species)
        predictions = read_predictions(
            snakemake.input.predictions, known_species=known_species, expected_ids=test_ids
        )
        write_submission(snakemake.output.csv, predictions, test_ids, known_species)
