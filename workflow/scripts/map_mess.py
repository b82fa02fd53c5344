"""Snakemake adapter: the MESS map of one region against its train observations."""

import json

from geolifeclef.atomic import write_text
from geolifeclef.data.env_table import read_env_table
from geolifeclef.data.observations import read_table
from geolifeclef.layout import DatasetLayout
from geolifeclef.maps.mess import render_mess, train_reference
from geolifeclef.maps.render import map_grid
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    region = snakemake.wildcards.region
    settings = snakemake.params.settings
    reference = train_reference(
        read_table(snakemake.input.train), read_env_table(snakemake.input.env), region, settings
    )
    layout = DatasetLayout(snakemake.params.data_root)
    grid = map_grid(layout, region, snakemake.params.resolution)
    summary = render_mess(
        reference, settings.columns, layout, grid, snakemake.output.mess, snakemake.threads
    )
    write_text(snakemake.output.summary, json.dumps(summary, indent=2, allow_nan=True) + "\n")
