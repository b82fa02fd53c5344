"""Snakemake adapter: the permutation importance of one mappable model on the val rows."""

from dataclasses import asdict

from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.maps.importance import (
    permutation_importance,
    plot_importance,
    read_sample,
    write_importance,
)
from geolifeclef.maps.point_models import read_spec
from geolifeclef.maps.trained_models import load_point_model
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.tracking import Tracking
from geolifeclef.tracking.runs import start_run

with logging_to(snakemake.log[0]) as log:
    spec = read_spec(snakemake.input.card)
    settings = snakemake.params.settings
    species_ids = read_species_table(snakemake.input.species)["species_id"].to_numpy()
    sample = read_sample(snakemake.input.val, snakemake.input.env, settings.rows, settings.seed)
    frame = permutation_importance(
        load_point_model(spec, snakemake.threads), sample, species_ids, settings
    )
    write_importance(frame, snakemake.output.table, snakemake.output.csv)
    plot_importance(frame, snakemake.output.plot)
    # A run of its own under the invocation's parent run, as the maps' (map_model.py).
    tracking = Tracking.of_invocation()
    with start_run(
        tracking.uri,
        tracking.experiment,
        f"importance {spec.name}",
        snakemake.params.local_metrics,
        tags={"snakemake.rule": snakemake.rule, "wildcards.model": spec.name},
    ) as tracker:
        tracker.log_params({"importance": asdict(settings)})
        increase = dict(zip(frame["kind"] + "." + frame["feature"], frame["increase"], strict=True))
        tracker.log_metrics({f"importance.{k}": v for k, v in increase.items()})
        for path in (snakemake.output.csv, snakemake.output.plot):
            tracker.log_artifact(path, "importance")
