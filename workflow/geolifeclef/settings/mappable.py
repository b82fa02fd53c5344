"""Which models can be mapped: those reading only what the rasters give at any point.

Decided when the workflow is parsed (the map rules of an unmappable model explain why
instead of failing), so it lives with the settings, torch-free.
"""

from typing import Any

from geolifeclef.settings.experiment import DEFAULT_TABULAR, experiment_inputs

MAPPABLE_BASELINES = ("knn", "random_forest")
"""Baselines that predict from coordinates or env values (``constant`` is the same
everywhere: its map is flat)."""


POINT_FEATURES = ("env", "coordinates", "country")
"""Features known at any point (the rasters' values, the point, the region whose rasters
it is read from): a model reading only these can be mapped."""


def unmappable_reason(name: str, catalog, baselines: dict[str, dict[str, Any]]) -> str | None:
    """Why model ``name`` cannot predict at an arbitrary point; None when it can.
    ``catalog`` is the configuration's ``geolifeclef.settings.catalog.Catalog``, ``baselines`` its
    ``baselines`` section."""
    kind = catalog.kind(name)
    if kind == "baseline":
        if name not in MAPPABLE_BASELINES:
            return f"{name} predicts the same species everywhere: its map would be flat"
        extra = sorted(set(baselines.get(name, {}).get("features", ())) - set(POINT_FEATURES))
        if extra:
            return f"{name} reads {', '.join(extra)}, known only at observation points"
        return None
    if kind == "experiment":
        entry = catalog.experiments[name]
        modalities = experiment_inputs(entry).patch_modalities
        if modalities:
            return (
                f"experiment {name} reads patches ({', '.join(modalities)}), which exist "
                "only at observation points, not on a map grid"
            )
        tabular = entry["model"].get("tabular", DEFAULT_TABULAR)
        extra = sorted(set(tabular) - set(POINT_FEATURES))
        if extra:
            return f"experiment {name} reads {', '.join(extra)}, known only at observation points"
        return None
    if kind == "fitted blend":
        return (
            f"fitted blend {name} weighs its members per spatial fold; only blends with "
            "weights in the config are mapped"
        )
    for part in catalog.blends[name]:
        if part not in catalog.models:  # a `<sweep>:top<n>` selector
            return f"blend '{name}' picks {part} after evaluation; list its members to map it"
        reason = unmappable_reason(part, catalog, baselines)
        if reason is not None:
            return f"blend '{name}' includes {part}, and {reason}"
    return None
