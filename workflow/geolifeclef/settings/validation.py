"""The config checked when the workflow is parsed, before any job.

Snakemake's ``validate`` answers a misspelled key with the whole schema (2,270 lines) and
leaves the rules across fields (a size that must divide the source patches, thresholds in
order) to the jobs, which refuse them minutes later, after Snakemake has deleted their
outputs, or on a cluster after queueing. Here each schema error is one line with the key's
path (and, for an unknown key, the closest valid name), and every rule across fields that
a job checks is checked first, by the function the setting's own class calls (so the two
cannot disagree). Only the settings package is imported: the Snakefile imports this.
"""

import difflib
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from geolifeclef.settings.inputs import FOREST_FEATURE_GROUPS


class ConfigError(ValueError):
    """The config cannot be used as it is: one line per problem, each naming its key."""


def schema_problems(config: dict, schema: dict) -> list[str]:
    """One line per schema error of ``config``: ``key.path: problem``."""
    errors = sorted(Draft202012Validator(schema).iter_errors(config), key=_where)
    return [line for error in errors for line in _describe(error)]


def unknown_hint(name: str, known, listed_as: str = "valid keys") -> str:
    """What to say of an unknown ``name``: the closest of ``known``, or all of them."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else f"{listed_as}: {', '.join(known)}"


def _where(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


def _describe(error: ValidationError) -> list[str]:
    where = _where(error)
    prefix = f"{where}." if where else ""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        unknown = [key for key in error.instance if key not in allowed]
        lines = []
        for key in unknown:
            lines.append(f"{prefix}{key}: unknown key; {unknown_hint(str(key), allowed)}")
        return lines
    if error.validator in ("anyOf", "oneOf") and error.context:
        # The alternative that went furthest says the most (e.g. a wrong type in a number).
        best = max(error.context, key=lambda e: len(e.absolute_path))
        return [f"{where or 'config'}: {best.message}"]
    return [f"{where or 'config'}: {error.message}"]


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Refuse a config that breaks its schema, one line a problem (``ConfigError``); then
    fill in the schema's defaults as Snakemake's ``validate`` does."""
    from snakemake.utils import validate  # noqa: PLC0415 (the workflow's own validator)

    schema = yaml.safe_load(Path(schema_path).read_text())
    problems = schema_problems(config, schema)
    if problems:
        raise ConfigError(listing(problems))
    validate(config, str(schema_path))


def check_settings(config: dict, source_patch_size: int | None) -> None:
    """The rules across fields that the jobs check, checked at once on the validated config
    (defaults filled in): every problem, one line each (``ConfigError``).
    ``source_patch_size``: the side of the patch files (None: not known before the demo is
    generated; its job checks the geometry then)."""
    patches, buckets = config["patches"], config["class_frequency"]
    checks = {
        "class_frequency": lambda: check_buckets(buckets["head_above"], buckets["tail_below"]),
    }
    if patches["enabled"] and source_patch_size is not None:
        checks["patches"] = lambda: check_geometry(
            source_patch_size, patches["size"], patches["mode"]
        )
    problems = []
    for section, check in checks.items():
        try:
            check()
        except ValueError as error:
            message = str(error)
            problems.append(message if message.startswith(section) else f"{section}: {message}")
    if problems:
        raise ConfigError(listing(problems))


# -- the rules: each is the check of the setting's own class, which calls it ------------


def check_geometry(source_size: int, size: int, mode: str) -> None:
    """Refuse a patch size that the mode cannot produce from ``source_size`` pixel patches."""
    if size > source_size:
        raise ValueError(
            f"patches.size {size} is larger than the source patches ({source_size} px); "
            f"choose a size <= {source_size}"
        )
    if mode == "resize" and source_size % size:
        divisors = [d for d in range(1, source_size + 1) if source_size % d == 0]
        raise ValueError(
            f"patches.mode resize needs a size that divides the source side {source_size}; "
            f"choose one of {divisors[-6:]}, or patches.mode: crop"
        )


def check_buckets(head_above: int, tail_below: int) -> None:
    """Head: more than ``head_above`` train observations; tail: fewer than ``tail_below``
    (``geolifeclef.data.class_frequency.BucketThresholds``)."""
    if tail_below > head_above + 1:
        raise ValueError(
            f"tail_below ({tail_below}) must not exceed head_above + 1 "
            f"({head_above + 1}): a species cannot be both head and tail"
        )


def check_bootstrap(block_degrees: float, draws: int, confidence: float) -> None:
    """The block bootstrap's settings (``geolifeclef.evaluation.bootstrap.BlockBootstrap``)."""
    problems = []
    if not block_degrees > 0:
        problems.append(f"evaluation.block_degrees must be > 0, got {block_degrees}")
    if not (isinstance(draws, int | np.integer) and not isinstance(draws, bool) and draws >= 1):
        problems.append(f"evaluation.draws must be a whole number >= 1, got {draws}")
    if not 0 < confidence < 1:
        problems.append(f"evaluation.confidence must lie in (0, 1), got {confidence}")
    if problems:
        raise ValueError("; ".join(problems) + " (fix it in the config)")


def check_forest(
    n_estimators: int,
    max_depth: int,
    features: tuple[str, ...],
    max_samples: float | None,
    bins: int | None,
) -> None:
    """The random forest's settings (``geolifeclef.baselines.forest.ForestSettings``)."""
    unknown = set(features) - set(FOREST_FEATURE_GROUPS)
    if unknown or not features:
        raise ValueError(
            f"random_forest.features {list(features)}: choose from {FOREST_FEATURE_GROUPS}"
        )
    for name, value in (("n_estimators", n_estimators), ("max_depth", max_depth)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"random_forest.{name} {value!r}: at least 1")
    if bins is not None and (not isinstance(bins, int) or bins < 2):
        raise ValueError(f"random_forest.bins {bins!r}: at least 2, or null")
    if max_samples is not None and not 0 < max_samples <= 1:
        raise ValueError(f"random_forest.max_samples {max_samples}: a share in (0, 1], or null")


def listing(problems: list[str]) -> str:
    lines = "\n".join(f"  {p}" for p in problems)
    return f"the config has {len(problems)} problem(s); fix them in the config file:\n{lines}"


def typed_settings(cls: type, values: dict[str, Any] | None, where: str):
    """``cls(**values)`` for a config section at ``where``, lists as tuples; ValueError
    naming the key for an unknown key (with the closest name) or a value of the wrong
    type, so that a section without a schema is checked as well as one with."""
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    problems = []
    for key, value in values.items():
        if key not in known:
            problems.append(f"{where}.{key}: unknown key; {unknown_hint(str(key), known)}")
            continue
        if isinstance(value, list):
            value = values[key] = tuple(value)
        allowed = _types(known[key].type)
        if allowed and not _is_instance(value, allowed):
            names = " or ".join(sorted({t.__name__ for t in allowed}))
            problems.append(f"{where}.{key}: {value!r} is not of type {names}")
    if problems:
        raise ValueError("; ".join(problems))
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        message = str(error)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def _types(annotation) -> tuple[type, ...]:
    """The runtime types a field's annotation admits (empty: not checked here)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for part in typing.get_args(annotation) for t in _types(part))
    if origin is not None:
        return (origin,)
    if annotation is type(None):
        return (type(None),)
    return (annotation,) if isinstance(annotation, type) else ()


def _is_instance(value, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in allowed:
        return False  # YAML's true is no number
    if isinstance(value, int) and float in allowed:
        return True
    return isinstance(value, allowed)
