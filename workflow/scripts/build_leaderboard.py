"""Snakemake adapter: rank every model by val top-30 error (see geolifeclef.evaluation)."""

from geolifeclef.evaluation import read_metrics, write_leaderboard
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    write_leaderboard(
        [read_metrics(path) for path in snakemake.input],
        parquet=snakemake.output.parquet,
        markdown=snakemake.output.markdown,
        html_path=snakemake.output.html,
        png=snakemake.output.plot,
        sweeps=list(snakemake.params.sweeps),
    )
