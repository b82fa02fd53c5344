"""What the MLflow runs record, by name: checked on the functions that decide it (the
workflow test checks the runs a real invocation leaves on a real server)."""

from datetime import datetime

import pytest

from geolifeclef.experiments.learning_curve import plot_learning_curve
from geolifeclef.settings.experiment import ExperimentSettings, shaping_settings
from geolifeclef.tracking.records import (
    best_epoch_metrics,
    evaluated_model_id,
    evaluation_links,
    evaluation_metrics,
    evaluation_params,
    invocation_params,
    invocation_run_name,
    reference_metrics,
)
from geolifeclef.tracking.runs import flatten

ERRORS = {"top1_error": 0.7, "top5_error": 0.5, "top10_error": 0.4, "top30_error": 0.2}
METRICS = {
    "model": "knn",
    "n_observations": 100,
    **ERRORS,
    "macro_top30_error": 0.6,
    "top30_error_low": 0.12,
    "top30_error_high": 0.29,
    "buckets": {"head": {"top30_error": 0.1}, "tail": {"top30_error": float("nan")}},
    "constant": {**ERRORS, "top30_error": 0.8, "macro_top30_error": 0.9, "buckets": {}},
    "bayes": {**ERRORS, "top30_error": 0.15, "macro_top30_error": 0.3, "buckets": {}},
    "improvement_over_constant": 0.6,
    "expected_top30_error": {"model": 0.21, "constant": 0.81, "bayes": 0.16},
    "gap_closed": 0.92,
    "gap_closed_expected": 0.9,
}


def test_the_parent_run_is_named_after_targets_and_time():
    when = datetime(2026, 11, 27, 10, 15)
    assert invocation_run_name(["submission"], when) == "submission 2026-11-27 10:15"
    assert invocation_run_name(["x" * 80], when).endswith("... 2026-11-27 10:15")
    params = invocation_params(
        ["all"], {"demo": {"scale": "small"}, "experiments": {"a": {}, "b": {}}}, ["c.yaml"], "abc"
    )
    assert params == {
        "targets": "all",
        "git_commit": "abc",
        "config_files": "c.yaml",
        "experiments": "a, b",
        "demo": {"scale": "small"},
    }


def test_evaluate_runs_use_the_names_of_the_train_runs():
    named = evaluation_metrics(METRICS)
    # The per-epoch names of training (geolifeclef.experiments.training.evaluate_top_k).
    assert {f"val_top{k}_error" for k in (1, 5, 10, 30)} <= set(named)
    assert named["val_top30_error"] == 0.2 and named["val_head_top30_error"] == 0.1
    assert "val_tail_top30_error" not in named  # NaN: a bucket without val observations
    assert named["val_expected_top30_error"] == 0.21 and named["val_gap_closed"] == 0.92
    # The block-bootstrap interval of the top-30 error (geolifeclef.evaluation.bootstrap).
    assert (named["val_top30_error_low"], named["val_top30_error_high"]) == (0.12, 0.29)
    assert all(name.startswith("val_") for name in named)  # no reference figures here


def test_reference_figures_are_named_apart_for_the_parent_run():
    references = reference_metrics(METRICS)
    assert references["constant/val_top30_error"] == 0.8
    assert references["bayes/val_top30_error"] == 0.15
    assert references["bayes/val_expected_top30_error"] == 0.16
    assert all(name.split("/")[0] in ("constant", "bayes") for name in references)
    assert len(references) == 4  # top-30 only: the chart view opens on these
    without_truth = {k: v for k, v in METRICS.items() if k != "bayes"}
    assert not [name for name in reference_metrics(without_truth) if "bayes" in name]


def test_a_train_run_shows_its_kept_epoch():
    history = [
        {"epoch": 1, "train_loss": 3.0, "val_top30_error": 0.4, "val_top1_error": 0.9},
        {"epoch": 2, "train_loss": 2.0, "val_top30_error": 0.3, "val_top1_error": 0.8},
        {"epoch": 3, "train_loss": 1.0, "val_top30_error": 0.35, "val_top1_error": 0.7},
    ]
    assert best_epoch_metrics(history, 2) == {
        "best_epoch": 2.0,
        "best_val_top30_error": 0.3,
        "best_val_top1_error": 0.8,
    }


def test_evaluate_runs_log_the_settings_of_what_they_score():
    knn = evaluation_params("knn", "baseline", {"n_neighbors": 50, "refit": True}, {})
    assert knn == {"kind": "baseline", "knn.n_neighbors": 50, "knn.refit": True}
    blend = evaluation_params(
        "mix", "fitted blend", {"method": "likelihood"}, {"knn": 0.25, "env_mlp": 0.75}
    )
    assert blend == {
        "kind": "fitted blend",
        "members": "knn, env_mlp",
        "weights": "fitted on val",
        "fit.method": "likelihood",
        "weight.knn": 0.25,
        "weight.env_mlp": 0.75,
    }
    model = {"kind": "fusion", "cnn": {"backbone": "small"}, "tabular": ["env"]}
    settings = {"tta": False, "refit": True, "model": model}
    flat = flatten(evaluation_params("env_mlp", "experiment", settings, {}))
    assert flat["kind"] == "experiment" and flat["tta"] == "False" and flat["refit"] == "True"
    assert flat["model.kind"] == "fusion" and flat["model.cnn.backbone"] == "small"


def test_evaluate_runs_link_to_the_train_run_and_model():
    history = {"best_epoch": 3, "mlflow_run_id": "r1", "mlflow_model_uri": "models:/m-9"}
    links = evaluation_links(history)
    assert links == {"evaluated_run_id": "r1", "evaluated_model_uri": "models:/m-9"}
    assert evaluated_model_id(links) == "m-9"
    assert evaluation_links({"best_epoch": 3}) == {} and evaluation_links(None) == {}


@pytest.mark.parametrize(
    ("entry", "absent", "present"),
    [
        (
            {
                "model": {
                    "kind": "mlp",
                    "modalities": [],
                    "cnn": {"width": 8},
                    "mlp": {"layers": 2},
                },
                "train": {"augment": {"flip": True}, "momentum": 0.9, "epochs": 3},
                "tta": True,
            },
            ["model.cnn", "model.modalities", "train.augment", "train.momentum", "tta"],
            ["model.mlp", "train.epochs"],
        ),
        (
            {
                "model": {
                    "kind": "cnn",
                    "modalities": ["rgb", "landcover"],
                    "tabular": ["env"],
                    "cnn": {"backbone": "resnet18", "width": 8, "landcover": "onehot"},
                },
                "train": {"optimizer": "sgd", "momentum": 0.9, "loss": "logit_adjusted"},
            },
            ["model.tabular", "model.cnn.width", "model.cnn.landcover_embedding_dim"],
            ["train.momentum", "train.logit_adjust_tau", "model.cnn.landcover"],
        ),
    ],
)
def test_a_run_logs_only_the_settings_that_shaped_it(entry, absent, present):
    from geolifeclef.tracking.runs import flatten

    # As the schema fills them: every default present.
    for key, value in {
        "logit_adjust_tau": 1.0,
        "class_weight_power": 0.5,
        "step_epochs": 10,
        "block_size_degrees": 0.1,
        "num_workers": 0,
    }.items():
        entry["train"].setdefault(key, value)
    entry["model"]["cnn"] = {"landcover_embedding_dim": 4, **entry["model"]["cnn"]}
    logged = flatten(shaping_settings(ExperimentSettings.from_config("x", entry)))
    for name in absent + ["train.step_epochs", "train.block_size_degrees", "train.num_workers"]:
        assert not [key for key in logged if key == name or key.startswith(f"{name}.")], name
    for name in present:
        assert [key for key in logged if key == name or key.startswith(f"{name}.")], name
    assert "train.class_weight_power" not in logged


def test_learning_curve_marks_the_kept_epoch(tmp_path):
    history = [
        {"epoch": e, "train_loss": 4 - e, **{f"val_top{k}_error": 0.5 - e / 20 for k in (1, 30)}}
        for e in (1, 2, 3)
    ]
    summary = {"experiment": "x", "best_epoch": 3, "best_val_top30_error": 0.35}
    plot_learning_curve({**summary, "history": history}, tmp_path / "curve.png")
    refit = [{"epoch": e, "train_loss": 4 - e} for e in (1, 2)]  # no val: one panel
    plot_learning_curve({"experiment": "x", "history": refit}, tmp_path / "refit.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "refit.png").stat().st_size < (tmp_path / "curve.png").stat().st_size


def test_the_mlflow_leaderboard_view_ranks_by_the_editions_metric():
    from geolifeclef.editions import SPECIES_SETS, TOP30
    from geolifeclef.tracking.records import leaderboard_view, leaderboard_view_state

    top30 = leaderboard_view_state(TOP30)
    assert (top30["orderByKey"], top30["orderByAsc"]) == ("metrics.`val_top30_error`", True)
    sets = leaderboard_view_state(SPECIES_SETS)
    assert (sets["orderByKey"], sets["orderByAsc"]) == ("metrics.`val_f1`", False)
    assert sets["selectedColumns"][:3] == [
        "metrics.`val_f1`",
        "metrics.`val_f1_low`",
        "metrics.`val_f1_high`",
    ]
    assert "orderByAsc=false" in leaderboard_view(SPECIES_SETS)
