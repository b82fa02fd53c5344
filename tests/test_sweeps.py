"""Sweeps: one config entry, many experiments with stable names, trained and ranked like any
other, grouped in MLflow, summarised per sweep."""

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SCHEMA, copy_workdir, on_demo, read_config, run_snakemake

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


CONFIG = read_config("sweep")


def _jobs(result) -> dict[str, int]:
    text = result.stdout + result.stderr
    table = text.split("Job stats:")[1].split("total")[0]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def swept(tmp_path_factory, demo_workdir) -> Path:
    workdir = copy_workdir(demo_workdir, tmp_path_factory.mktemp("sweep"), CONFIG)
    result = run_snakemake(workdir, "sweep_lr", "leaderboard")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_a_sweep_runs_end_to_end_and_is_summarised(swept):
    members = [p.name for p in (swept / "results" / "models").iterdir() if p.name.startswith("lr-")]
    assert len(members) == 2
    table = (swept / "results" / "sweeps" / "lr" / "members.md").read_text()
    assert "train.learning_rate" in table and all(m in table for m in members)
    assert (swept / "results" / "sweeps" / "lr" / "settings.png").stat().st_size > 5_000
    board = (swept / "results" / "evaluation" / "leaderboard.md").read_text()
    assert "## Sweep `lr` (base experiment `mlp`)" in board
    # The blend of the best member (lr:top1) equals that member's predictions.
    frame = pd.read_parquet(swept / "results" / "evaluation" / "leaderboard.parquet")
    frame = frame.set_index("model")
    best = min(members, key=lambda m: (frame.loc[m, "top30_error"], m))
    blend = pd.read_parquet(swept / "results" / "predictions" / "lr_best" / "val.parquet")
    member = pd.read_parquet(swept / "results" / "predictions" / best / "val.parquet")
    key = "observation_id"
    pd.testing.assert_frame_equal(
        blend.sort_values(key).reset_index(drop=True),
        member.sort_values(key).reset_index(drop=True),
    )


@pytest.mark.slow
def test_members_nest_under_one_sweep_run_in_mlflow(swept):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{swept / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["geolifeclef"])
    sweep_runs = runs[runs["tags.glc.kind"] == "sweep"]
    assert len(sweep_runs) == 1 and sweep_runs["tags.mlflow.runName"].iloc[0] == "sweep lr"
    trained = runs[runs["tags.mlflow.runName"].str.startswith("train lr-")]
    assert len(trained) == 2
    assert (trained["tags.mlflow.parentRunId"] == sweep_runs["run_id"].iloc[0]).all()
    assert set(trained["params.train.learning_rate"]) == {"0.001", "0.01"}


@pytest.mark.slow
def test_changing_one_value_retrains_that_member_only(swept):
    changed = on_demo(CONFIG)
    changed["sweeps"]["lr"]["grid"]["train.learning_rate"] = [0.001, 0.02]
    (swept / "changed.yaml").write_text(yaml.safe_dump(changed))
    result = run_snakemake(
        swept, "sweep_lr", "--dry-run", "--configfile", str(swept / "changed.yaml")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _jobs(result)
    assert jobs["train_model"] == 1 and jobs["predict_model"] == 1
    trained = re.findall(r"results/models/(lr-\w+)/model.pt", result.stdout)
    assert len(set(trained)) == 1 and not (swept / "results" / "models" / trained[0]).exists()
