"""Which models can be mapped: those reading only what the rasters give at any point.

Decided when the workflow is parsed (the map rules of an unmappable model explain why
instead of failing), so it lives with the settings, torch-free.
"""

from typing import Any

from geolifeclef.settings.experiment import DEFAULT_TABULAR, experiment_inputs
from geolifeclef.settings.families import BASELINES, POINT_FEATURES


def unmappable_reason(name: str, catalog, baselines: dict[str, Any]) -> str | None:
    """Why model ``name`` cannot predict at an arbitrary point; None when it can.
    ``catalog`` is the configuration's ``geolifeclef.settings.catalog.Catalog``, ``baselines``
    the typed settings of each baseline (a baseline's settings say: ``unmappable_reason``)."""
    kind = catalog.kind(name)
    if kind == "baseline":
        settings = baselines.get(name) or BASELINES[name].settings()
        reason = settings.unmappable_reason
        return None if reason is None else f"{name} {reason}"
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
