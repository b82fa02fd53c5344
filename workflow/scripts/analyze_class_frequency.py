"""Snakemake adapter: species counts, priors and buckets (see geolifeclef.data.class_frequency)."""

from geolifeclef.data.class_frequency import BucketThresholds, analyze_class_frequency
from geolifeclef.data.observations import read_species_ids, read_table
from geolifeclef.layout import SPLITS
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]):
    settings = snakemake.params.settings
    analyze_class_frequency(
        {split: read_table(snakemake.input[split]) for split in SPLITS},
        read_species_ids(snakemake.input.species),
        BucketThresholds(settings["head_above"], settings["tail_below"]),
        settings["count_thresholds"],
        table_path=snakemake.output.table,
        summary_path=snakemake.output.summary,
        plot_path=snakemake.output.plot,
    )
