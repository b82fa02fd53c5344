"""Sweeps: many experiments from one config entry.

A sweep (config ``sweeps``) names a base experiment and the settings to vary, by dotted
keys into the experiment's entry (``train.learning_rate``, ``model.cnn.backbone``):

* ``grid``: every combination of the listed values;
* ``random: {n, seed}`` with a ``space``: ``n`` draws, each setting from its list, or from
  a range ``{low, high}`` (uniform; ``log: true`` for log-uniform, as for rates; ``int:
  true`` for whole numbers).

Each member is an ordinary experiment, named ``{sweep}-{key}`` where ``key`` is a short
hash of the member's varied settings: the same settings keep the same name whatever else
the sweep holds (a value added to a grid, a larger ``n``), so finished members are never
retrained. Random draws are taken one member at a time from one seeded generator in a
fixed key order, so the first ``n`` members stay the same when ``n`` grows.
"""

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SELECTOR = ":top"
"""``{sweep}:top{n}`` in a blend: the ``n`` best members of the sweep by val top-30 error."""


@dataclass(frozen=True)
class Sweep:
    """An expanded sweep: its members' names and the settings that vary between them."""

    name: str
    base: str
    varied: tuple[str, ...]
    """Dotted keys of the varied settings, in config order."""
    members: dict[str, dict[str, Any]]
    """Member name -> its varied settings (dotted key -> value)."""


class SweepError(ValueError):
    """A sweep that cannot be expanded: names the sweep, the key and what is allowed."""


def allowed_keys(experiment_schema: dict, prefix: str = "") -> list[str]:
    """Every dotted key of an experiment entry that a sweep may vary (leaves of the schema)."""
    keys = []
    for name, node in experiment_schema.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        if node.get("type") == "object" and "properties" in node:
            keys += allowed_keys(node, f"{dotted}.")
        else:
            keys.append(dotted)
    return keys


def set_dotted(entry: dict, key: str, value: Any) -> dict:
    """A copy of ``entry`` with ``key`` (dotted) set to ``value``."""
    out = copy.deepcopy(entry)
    node = out
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def member_name(sweep: str, settings: dict[str, Any]) -> str:
    """``{sweep}-{6 hex}``: the same settings, the same name."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return f"{sweep}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def _draw(spec: Any, rng: np.random.Generator, where: str) -> Any:
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    if isinstance(spec, dict) and {"low", "high"} <= set(spec):
        low, high = float(spec["low"]), float(spec["high"])
        if spec.get("log"):
            if low <= 0:
                raise SweepError(f"{where}: a log-uniform range needs low > 0, not {low}")
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return int(round(value)) if spec.get("int") else float(f"{value:.6g}")
    raise SweepError(f"{where}: give a list of values or a range {{low: ..., high: ...}}")


def member_settings(entry: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The varied settings of each member of one sweep entry, in a stable order."""
    if "grid" in entry:
        grid = entry["grid"]
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"{where}.grid.{key}: give a non-empty list of values")
        keys = list(grid)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    rng = np.random.default_rng(entry["random"].get("seed", 0))
    space = entry["space"]
    return [
        {key: _draw(spec, rng, f"{where}.space.{key}") for key, spec in space.items()}
        for _ in range(entry["random"]["n"])
    ]


def expand_sweeps(
    sweeps: dict[str, dict], experiments: dict[str, dict], experiment_schema: dict
) -> tuple[dict[str, dict], dict[str, Sweep]]:
    """The experiments of every sweep (name -> entry: the base experiment's entry with the
    member's settings), and each sweep's description. Raises SweepError naming the sweep,
    the key and the allowed keys for a key that is not an experiment setting."""
    allowed = allowed_keys(experiment_schema)
    members_by_name: dict[str, dict] = {}
    described = {}
    for name, entry in sweeps.items():
        where = f"sweeps.{name}"
        base = entry["base"]
        if base not in experiments:
            raise SweepError(
                f"{where}.base: {base!r} is not an experiment; choose one of {sorted(experiments)}"
            )
        varied = list(entry["grid"] if "grid" in entry else entry["space"])
        for key in varied:
            if key not in allowed:
                close = [k for k in allowed if k.split(".")[-1] == key.split(".")[-1]]
                raise SweepError(
                    f"{where}: {key!r} is not an experiment setting"
                    + (f" (did you mean {close}?)" if close else "")
                    + f"; allowed keys: {', '.join(allowed)}"
                )
        members = {}
        for settings in member_settings(entry, where):
            member = copy.deepcopy(experiments[base])
            for key, value in settings.items():
                member = set_dotted(member, key, value)
            members[member_name(name, settings)] = settings
            members_by_name[member_name(name, settings)] = member
        described[name] = Sweep(name, base, tuple(varied), members)
    return members_by_name, described


def parse_selector(part: str) -> tuple[str, int] | None:
    """``("lr", 3)`` for ``"lr:top3"``; None for a plain model name."""
    if SELECTOR not in part:
        return None
    sweep, _, count = part.partition(SELECTOR)
    if not count.isdigit() or int(count) < 1:
        raise SweepError(f"{part!r}: write {{sweep}}:top{{n}} with n >= 1, e.g. {sweep}:top3")
    return sweep, int(count)


def resolve_selectors(
    weights: dict[str, float],
    sweep_members: dict[str, list[str]],
    val_errors: dict[str, float],
) -> dict[str, float]:
    """A blend's weights with each ``{sweep}:top{n}`` replaced by the ``n`` members of the
    sweep with the lowest val top-30 error (ties: name), sharing its weight equally."""
    resolved: dict[str, float] = {}
    for part, weight in weights.items():
        selector = parse_selector(part)
        if selector is None:
            resolved[part] = resolved.get(part, 0.0) + weight
            continue
        sweep, n = selector
        ranked = sorted(sweep_members[sweep], key=lambda m: (val_errors[m], m))[:n]
        for member in ranked:
            resolved[member] = resolved.get(member, 0.0) + weight / len(ranked)
    return resolved
