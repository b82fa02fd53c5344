"""Snakemake adapter: map correlations of every model, and the models not mapped."""

import json
from pathlib import Path

from geolifeclef.maps.point_models import read_spec
from geolifeclef.maps.report import summarize_maps
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    summarize_maps(
        [json.loads(Path(path).read_text()) for path in snakemake.input.metrics],
        [read_spec(path) for path in snakemake.input.cards],
        snakemake.output.table,
        snakemake.output.markdown,
        snakemake.output.get("plot"),
    )
