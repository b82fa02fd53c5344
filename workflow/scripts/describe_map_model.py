"""Snakemake adapter: how to reload a model for maps and point queries (point_models)."""

from geolifeclef.maps.point_models import PointModelSpec, read_spec, write_spec
from geolifeclef.rule_logging import logging_to

with logging_to(snakemake.log[0]) as log:
    name = snakemake.wildcards.model
    params = snakemake.params
    inputs = snakemake.input
    named = dict(inputs.items())  # a Namedlist: `in` would look at the values
    if params.reason:
        spec = PointModelSpec(name, "unmappable", reason=params.reason)
        log.warning("%s is not mapped: %s", name, params.reason)
    else:
        parts = named.get("parts", [])
        spec = PointModelSpec(
            name,
            params.kind,
            species_table=inputs.species,
            species_details=inputs.species_details,
            data_root=params.data_root,
            files={k: named[k] for k in ("model", "stats") if k in named},
            parts=tuple(
                (read_spec(path), float(weight))
                for path, (_, weight) in zip(parts, params.parts, strict=True)
            ),
        )
        log.info("%s: %s model from %s", name, params.kind, spec.files or "its parts")
    write_spec(spec, snakemake.output.card)
