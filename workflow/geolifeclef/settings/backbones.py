"""Backbone names: ``small`` or a model of timm's registry, checked when the workflow is
parsed (``common.smk``) and again by the job that builds the backbone
(``geolifeclef.models.backbones``), with the same words.

timm's registry is read without building a model, but reading it imports timm, which
imports torch and torchvision (~6 s on 2 cores): ``backbone_problem`` imports it only for
a name that is not ``small``, so a config of small CNNs and MLPs parses as fast as before.
"""

import difflib
import re

from geolifeclef.settings.configs import SMALL
from geolifeclef.settings.validation import ConfigError, listing

BACKBONE_KEY = "model.cnn.backbone"
"""The dotted key of an experiment's backbone (as a sweep names it)."""
SUGGESTED = 5
"""Closest timm names a refusal suggests."""
LIST_COMMAND = "python -c \"import timm; print(timm.list_models('{pattern}'))\""
"""The command that lists timm's models whose names match ``pattern``."""


def backbone_problem(name: str) -> str | None:
    """None for ``small`` or a timm model (with or without a pretrained tag:
    ``resnet50.a1_in1k``); else what is wrong, the closest names and the command that
    lists the models of the name's family."""
    if name == SMALL:
        return None
    import timm  # deferred: torch and torchvision, ~6 s; only a timm backbone needs it

    if timm.is_model(name):
        return None
    models = timm.list_models()
    close = difflib.get_close_matches(name.lower(), models, n=SUGGESTED, cutoff=0.6)
    # The family the name starts with (``resnet`` of ``resnet34x``), or every model.
    family = re.match(r"[a-z]*", name.lower()).group()
    pattern = f"{family}*" if family and timm.list_models(f"{family}*") else "*"
    return (
        f"unknown backbone {name!r}: not '{SMALL}' nor a timm model."
        + (f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else "")
        + f" List timm's models with: {LIST_COMMAND.format(pattern=pattern)}"
    )


def check_backbones(experiments: dict, catalog) -> None:
    """Refuse, one line each (``ConfigError``), the experiments whose patch branch names an
    unknown backbone. ``experiments``: name -> ``ExperimentSettings``; ``catalog``: their
    ``Catalog``, for sweep members, which are named by their sweep where it varies the
    backbone (once for all its members) and left to their base experiment's line where
    they take its backbone."""
    problems: dict[str, None] = {}
    for name, settings in experiments.items():
        sweep = catalog.sweeps.get(catalog.sweep_of(name))
        if sweep and BACKBONE_KEY not in sweep.varied:
            continue  # the base experiment's backbone: its own line
        where = f"sweeps.{sweep.name}" if sweep else f"experiments.{name}"
        if settings.model.reads.uses_patches:
            problem = backbone_problem(settings.model.cnn.backbone)
            if problem:
                problems[f"{where}.{BACKBONE_KEY}: {problem}"] = None
        if settings.model.reads.uses_cubes and not sweep:  # sweeps vary the patch CNN's
            problem = backbone_problem(settings.model.cube_cnn.backbone)
            if problem:
                problems[f"{where}.model.cube_cnn.backbone: {problem}"] = None
    if problems:
        raise ConfigError(listing(list(problems)))
