"""Snakemake adapter: a survey edition's species table, its summary and the rank-frequency
plot (geolifeclef.data.survey_species)."""

from geolifeclef.data.class_frequency import BucketThresholds
from geolifeclef.data.observations import read_table
from geolifeclef.data.survey_species import analyze_survey_species
from geolifeclef.layout import SPLITS
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    settings = snakemake.params.settings
    analyze_survey_species(
        {split: read_table(snakemake.input[split]) for split in SPLITS},
        read_table(snakemake.input.po),
        BucketThresholds(settings["head_above"], settings["tail_below"]),
        table_path=snakemake.output.table,
        summary_path=snakemake.output.summary,
        plot_path=snakemake.output.plot,
    )
