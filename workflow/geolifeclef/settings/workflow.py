"""The workflow's settings: one typed object built from the validated config when the
Snakefile is parsed (``common.smk``: ``SETTINGS``), whose sections the rules hand to their
jobs. A wrong value in any section is refused then, every problem at once with its key,
before any job runs (or queues on a cluster); no job builds settings from a raw dict.
The experiments' settings: ``geolifeclef.settings.experiment``, one per experiment."""

from dataclasses import dataclass
from typing import Any

from geolifeclef.settings.evaluation import BlockBootstrap, SubmissionSettings
from geolifeclef.settings.families import BlendFit, baseline_settings
from geolifeclef.settings.maps import (
    ImportanceSettings,
    MapSettings,
    MessSettings,
    ResponseSettings,
)
from geolifeclef.settings.validation import ConfigError, listing, typed_settings

SECTIONS = {
    "maps": MapSettings,
    "mess": MessSettings,
    "importance": ImportanceSettings,
    "response": ResponseSettings,
    "evaluation": BlockBootstrap,
    "submission": SubmissionSettings,
}
"""Config section -> its settings class (the baselines: one class per family)."""


@dataclass(frozen=True)
class WorkflowSettings:
    """Every stage's settings but the experiments', typed."""

    baselines: dict[str, Any]
    """Baseline name -> its family's settings (``geolifeclef.settings.families``)."""
    maps: MapSettings
    mess: MessSettings
    importance: ImportanceSettings
    response: ResponseSettings
    evaluation: BlockBootstrap
    submission: SubmissionSettings
    fitted_blends: dict[str, BlendFit]
    """Fitted blend name -> how its weights are fitted (its ``models``: the catalog)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "WorkflowSettings":
        """The settings of a validated ``config`` (defaults filled in); ``ConfigError``
        listing every problem, each naming its key and what it may be."""
        sections = {}
        sections["baselines"], problems = baseline_settings(config.get("baselines", {}))
        for section, settings_class in SECTIONS.items():
            try:
                sections[section] = typed_settings(settings_class, config.get(section), section)
            except ValueError as error:
                problems.append(str(error))
        sections["fitted_blends"] = {}
        for name, entry in config.get("fitted_blends", {}).items():
            fit = {key: value for key, value in entry.items() if key != "models"}
            try:
                sections["fitted_blends"][name] = typed_settings(
                    BlendFit, fit, f"fitted_blends.{name}"
                )
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ConfigError(listing(problems))
        return cls(**sections)
