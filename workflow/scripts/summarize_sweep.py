"""Snakemake adapter: a sweep's members ranked and its error against each varied setting."""

from geolifeclef.atomic import write_text
from geolifeclef.evaluation.scores import read_metrics
from geolifeclef.evaluation.sweep_report import plot_sweep, sweep_markdown, sweep_table
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    sweep = snakemake.params.sweep
    frame = sweep_table([read_metrics(path) for path in snakemake.input], sweep)
    write_text(snakemake.output.table, sweep_markdown(frame, sweep))
    plot_sweep(frame, sweep, snakemake.output.plot)
    log.info(
        "sweep %s: best %s (val top-30 error %.4f)",
        sweep["name"],
        frame.iloc[0]["member"],
        frame.iloc[0]["top30_error"],
    )
