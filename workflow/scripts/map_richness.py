"""Snakemake adapter: a model's richness map at the test surveys (geolifeclef.maps.richness)."""

from geolifeclef.data.observations import read_table
from geolifeclef.evaluation.set_scores import load_presence_truth
from geolifeclef.maps.richness import map_richness
from geolifeclef.predictions.set_table import read_sets
from geolifeclef.predictions.table import read_predictions
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    surveys = read_table(snakemake.input.test)
    ids = surveys["observation_id"].to_numpy()
    truth = load_presence_truth(snakemake.input.truth, ids) if snakemake.input.truth else None
    figures = map_richness(
        surveys,
        read_predictions(snakemake.input.predictions, marginal=True),
        read_sets(snakemake.input.sets, ids),
        snakemake.wildcards.model,
        snakemake.output.plot,
        snakemake.output.figures,
        truth,
    )
    log.info("%s", figures)
