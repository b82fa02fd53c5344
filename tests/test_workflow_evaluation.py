"""End to end: baselines, a blend, the leaderboard, the submission and the report."""

import pandas as pd
import pytest
from conftest import copy_workdir, run_snakemake

from geolifeclef.data.observations import read_species_ids
from geolifeclef.evaluation.submission import check_submission_file
from geolifeclef.predictions.table import read_predictions


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, demo_workdir):
    workdir = copy_workdir(demo_workdir, tmp_path_factory.mktemp("evaluation"), "evaluation")
    result = run_snakemake(workdir, "submission")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


@pytest.mark.slow
def test_submission_target_writes_a_valid_submission_of_the_best_model(evaluated):
    results = evaluated / "results"
    test_ids = pd.read_parquet(results / "observations" / "test.parquet")["observation_id"]
    species = read_species_ids(evaluated / "resources/demo/glc22/metadata/species_details.csv")
    check_submission_file(results / "submission" / "final.csv", test_ids.to_numpy(), species)
    leaderboard = pd.read_parquet(results / "evaluation" / "leaderboard.parquet")
    models = leaderboard[leaderboard["kind"] != "bound"]
    assert set(models["model"]) >= {"constant", "knn", "mix"}
    assert leaderboard["kind"].iloc[-1] == "bound"  # the demo's Bayes limit, last
    assert models["top30_error"].is_monotonic_increasing
    best = models["model"].iloc[0]
    final = (results / "submission" / "final.csv").read_text()
    assert final == (results / "submission" / f"{best}.csv").read_text()
    assert "| mix | blend |" in (results / "evaluation" / "leaderboard.md").read_text()
    # Intervals: each model's around its error; the best one's difference to itself is 0.
    assert (models["top30_error_low"] <= models["top30_error"]).all()
    assert (models["top30_error"] <= models["top30_error_high"]).all()
    assert models[["difference_to_best", "difference_to_best_high"]].iloc[0].tolist() == [0, 0]
    assert (models["difference_to_best"].iloc[1:] >= 0).all()
    species = pd.read_parquet(results / "evaluation" / best / "species.parquet")
    val = pd.read_parquet(results / "observations" / "val.parquet")
    assert species["val_count"].sum() == len(val)
    assert (
        species["top30_recall"].between(0, 1).all() and species["auc"].dropna().between(0, 1).all()
    )
    page = (results / "evaluation" / "leaderboard.html").read_text()
    assert f"Best and worst species of {best}" in page
    blend = read_predictions(results / "predictions" / "mix" / "val.parquet")
    assert blend.k == 60  # capped at the tiny demo's 60 species
    assert (evaluated / "logs" / "select_submission.log").read_text().count(best) >= 1


@pytest.mark.slow
def test_report_renders_the_evaluation(evaluated):
    result = run_snakemake(evaluated, "submission", "--report", str(evaluated / "report.html"))
    assert result.returncode == 0, result.stderr[-4000:]
    report = (evaluated / "report.html").read_text()
    for name in ("rank_frequency.png", "leaderboard.html", "leaderboard.png", "buckets.png"):
        assert name in report
    again = run_snakemake(evaluated, "submission", "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("submission: {model: nope}\n", "submission.model: 'nope'"),
        ("blends: {mix: {constant: 1, forest: 1}}\n", "unknown model 'forest'"),
        ("blends: {knn: {constant: 1}}\n", "'knn' is used twice or reserved"),
        ("blends: {mix: {constant: 0}}\n", "less than or equal to the minimum of 0"),
        ("evaluation: {draws: 0}\n", "evaluation.draws: 0 is less than the minimum of 1"),
        ("evaluation: {block_degrees: -1}\n", "evaluation.block_degrees: -1 is less than"),
    ],
)
def test_wrong_evaluation_settings_are_refused(tmp_path, config, message):
    (tmp_path / "config.yaml").write_text("demo:\n  scale: tiny\n" + config)
    result = run_snakemake(tmp_path, "submission", "--dry-run")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
