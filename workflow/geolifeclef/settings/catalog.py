"""The models of a configuration: baselines, experiments (sweep members included), blends
and fitted blends, their kinds and what each blend averages; checked once when the
workflow starts, with messages that name the config key and the fix."""

from dataclasses import dataclass
from typing import Any

from geolifeclef.settings.families import BASELINES
from geolifeclef.settings.sweeps import Sweep, expand_sweeps, parse_selector

DEFAULT_BASELINES = tuple(name for name, family in BASELINES.items() if family.default)
"""The baselines of a config that names no other (one model per baseline family)."""
RESERVED_NAMES = frozenset({*BASELINES, "final", "leaderboard"})
KINDS = ("baseline", "experiment", "blend", "fitted blend")


@dataclass(frozen=True)
class Catalog:
    """Every model of a configuration, in leaderboard order of kinds."""

    experiments: dict[str, dict[str, Any]]
    """Experiment name -> entry, sweep members included."""
    sweeps: dict[str, Sweep]
    blends: dict[str, dict[str, float]]
    """Blend name -> {model or ``<sweep>:top<n>``: weight}."""
    fitted_blends: dict[str, list[str]]
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    """The baselines that run, each predicted by the rule ``predict_<name>``: the default
    ones and those the config's ``baselines`` section names."""

    @property
    def models(self) -> list[str]:
        return [*self.baselines, *self.blends, *self.fitted_blends, *self.experiments]

    def kind(self, model: str) -> str:
        if model in self.baselines:
            return "baseline"
        if model in self.blends:
            return "blend"
        if model in self.fitted_blends:
            return "fitted blend"
        return "experiment"

    def blend_members(self, blend: str) -> list[str]:
        """The models whose predictions a blend reads: a selector stands for every member
        of its sweep (the best ones are picked when the blend is made)."""
        if blend in self.fitted_blends:
            return list(self.fitted_blends[blend])
        members: list[str] = []
        for part in self.blends[blend]:
            selector = parse_selector(part)
            names = list(self.sweeps[selector[0]].members) if selector else [part]
            members += [name for name in names if name not in members]
        return members

    def sweep_of(self, experiment: str) -> str | None:
        return next((s.name for s in self.sweeps.values() if experiment in s.members), None)


def build_catalog(config: dict[str, Any], experiment_schema: dict) -> Catalog:
    """The catalog of a validated config (sweeps expanded into experiments). Raises
    ValueError naming the config key for a name used twice, a reserved name, or a blend
    part that is no model."""
    members, sweeps = expand_sweeps(config["sweeps"], config["experiments"], experiment_schema)
    experiments = {**config["experiments"]}
    for name, entry in members.items():
        if name in experiments:
            raise ValueError(f"config: sweep member {name!r} has the name of an experiment")
        experiments[name] = entry
    catalog = Catalog(
        experiments,
        sweeps,
        dict(config["blends"]),
        {name: list(entry["models"]) for name, entry in config["fitted_blends"].items()},
        tuple(n for n, f in BASELINES.items() if f.default or n in config.get("baselines", {})),
    )
    models = catalog.models
    for name in [*catalog.blends, *catalog.fitted_blends, *experiments]:
        if name in RESERVED_NAMES or models.count(name) > 1:
            raise ValueError(
                f"config: model name {name!r} is used twice or reserved "
                f"({sorted(RESERVED_NAMES)}); rename the blend or experiment"
            )
    blendable = [*catalog.baselines, *experiments]
    for key, blends in (("blends", catalog.blends), ("fitted_blends", catalog.fitted_blends)):
        for blend, parts in blends.items():
            for part in parts:
                selector = parse_selector(part) if key == "blends" else None
                if selector and selector[0] not in sweeps:
                    raise ValueError(
                        f"config blends.{blend}: {part!r} names no sweep; sweeps: {sorted(sweeps)}"
                    )
                if not selector and part not in blendable:
                    raise ValueError(
                        f"config {key}.{blend}: unknown model {part!r}; blend baselines "
                        f"{list(catalog.baselines)}, experiments {sorted(experiments)} or "
                        "<sweep>:top<n>"
                    )
    submitted = config["submission"]["model"]
    if submitted != "best" and submitted not in models:
        raise ValueError(
            f"config submission.model: {submitted!r} is not 'best' or one of the models {models}"
        )
    return catalog
