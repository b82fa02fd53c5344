"""Sweeps: one config entry, many experiments with stable names. The workflow's run of a
sweep (trained, ranked, grouped in MLflow, summarised) is in test_workflow_training.py."""

import re

import pytest
import yaml
from conftest import SCHEMA

from geolifeclef.settings.catalog import build_catalog
from geolifeclef.settings.sweeps import SweepError, expand_sweeps, resolve_selectors

SCHEMA_VALUES = yaml.safe_load(SCHEMA.read_text())
EXPERIMENT_SCHEMA = SCHEMA_VALUES["properties"]["experiments"]["additionalProperties"]
BASE = {
    "mlp": {
        "model": {"kind": "mlp", "tabular": ["env", "coordinates"], "mlp": {"hidden": 64}},
        "train": {"epochs": 2, "learning_rate": 0.001},
    }
}


def test_a_grid_is_every_combination_with_the_base_settings_kept():
    sweep = {
        "base": "mlp",
        "grid": {"train.learning_rate": [0.1, 0.2], "model.mlp.hidden": [8, 16, 32]},
    }
    members, described = expand_sweeps({"lr": sweep}, BASE, EXPERIMENT_SCHEMA)
    assert len(members) == 6 and set(members) == set(described["lr"].members)
    assert all(re.fullmatch(r"lr-[0-9a-f]{6}", name) for name in members)
    combos = {(m["train"]["learning_rate"], m["model"]["mlp"]["hidden"]) for m in members.values()}
    assert combos == {(lr, h) for lr in (0.1, 0.2) for h in (8, 16, 32)}
    for entry in members.values():  # everything else is the base experiment's
        assert entry["train"]["epochs"] == 2 and entry["model"]["tabular"] == ["env", "coordinates"]
    assert described["lr"].varied == ("train.learning_rate", "model.mlp.hidden")
    assert BASE["mlp"]["train"]["learning_rate"] == 0.001  # the base is not changed


def test_names_stay_when_a_grid_grows_or_a_random_sweep_draws_more():
    small = {"base": "mlp", "grid": {"train.learning_rate": [0.1, 0.2]}}
    grown = {"base": "mlp", "grid": {"train.learning_rate": [0.05, 0.1, 0.2]}}
    before, _ = expand_sweeps({"lr": small}, BASE, EXPERIMENT_SCHEMA)
    after, _ = expand_sweeps({"lr": grown}, BASE, EXPERIMENT_SCHEMA)
    assert set(before) < set(after) and all(after[name] == before[name] for name in before)
    space = {
        "train.learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
        "model.dropout": [0.1, 0.3],
    }
    four, d4 = expand_sweeps(
        {"r": {"base": "mlp", "random": {"n": 4, "seed": 3}, "space": space}},
        BASE,
        EXPERIMENT_SCHEMA,
    )
    six, _ = expand_sweeps(
        {"r": {"base": "mlp", "random": {"n": 6, "seed": 3}, "space": space}},
        BASE,
        EXPERIMENT_SCHEMA,
    )
    assert set(four) < set(six)
    other, _ = expand_sweeps(
        {"r": {"base": "mlp", "random": {"n": 4, "seed": 4}, "space": space}},
        BASE,
        EXPERIMENT_SCHEMA,
    )
    assert set(other) != set(four)  # another seed, other draws
    rates = [s["train.learning_rate"] for s in d4["r"].members.values()]
    assert all(1e-4 <= r <= 1e-1 for r in rates)


def test_a_bad_key_names_the_sweep_the_key_and_the_allowed_keys():
    sweep = {"base": "mlp", "grid": {"train.learnin_rate": [0.1]}}
    with pytest.raises(SweepError) as error:
        expand_sweeps({"lr": sweep}, BASE, EXPERIMENT_SCHEMA)
    message = str(error.value)
    assert "sweeps.lr" in message and "'train.learnin_rate'" in message
    assert "train.learning_rate" in message and "model.cnn.backbone" in message
    with pytest.raises(SweepError, match="'nope' is not an experiment"):
        expand_sweeps(
            {"lr": {"base": "nope", "grid": {"train.epochs": [1]}}}, BASE, EXPERIMENT_SCHEMA
        )


def test_top_n_of_a_sweep_share_the_weight():
    weights = {"lr:top2": 1.0, "knn": 0.5}
    members = {"lr": ["lr-a", "lr-b", "lr-c"]}
    errors = {"lr-a": 0.3, "lr-b": 0.2, "lr-c": 0.25}
    assert resolve_selectors(weights, members, errors) == {"lr-b": 0.5, "lr-c": 0.5, "knn": 0.5}


def test_the_catalog_adds_members_and_refuses_blends_of_unknown_sweeps():
    config = {
        "experiments": BASE,
        "sweeps": {"lr": {"base": "mlp", "grid": {"train.learning_rate": [0.1, 0.2]}}},
        "blends": {"best": {"lr:top1": 1.0}},
        "fitted_blends": {},
        "submission": {"model": "best"},
    }
    catalog = build_catalog(config, EXPERIMENT_SCHEMA)
    members = list(catalog.sweeps["lr"].members)
    assert set(members) < set(catalog.experiments) and catalog.kind(members[0]) == "experiment"
    assert catalog.blend_members("best") == members and catalog.sweep_of(members[0]) == "lr"
    config["blends"] = {"best": {"rl:top1": 1.0}}
    with pytest.raises(ValueError, match="'rl:top1' names no sweep"):
        build_catalog(config, EXPERIMENT_SCHEMA)
