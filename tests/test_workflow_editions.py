"""End to end, the survey editions (GLC 2024, 2025) on their tiny demo worlds: the same
command as GLC 2022 ends in a valid surveyId,predictions submission, scored by
`geolifeclef score` against the demo's hidden answer, on a leaderboard by F1 whose Bayes
row bounds every model's expected F1; the champion predicts final.csv's sets."""

import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import GEOLIFECLEF, REPO, run_snakemake, tracking_uri_kept

from geolifeclef.demo.surveys import generate_survey_demo
from geolifeclef.demo.surveys.spec import survey_spec_for
from geolifeclef.editions import EDITIONS
from geolifeclef.evaluation.set_submission import (
    check_set_submission,
    read_set_file,
    score_files,
)
from geolifeclef.survey_layout import CUBE_SHAPES

TINY = {
    "demo": {"scale": "tiny", "seed": 7},
    "predictions": {"top_k": 40},
    "baselines": {
        "region_prior": {},
        "knn": {"n_neighbors": 20},
        "random_forest": {"n_estimators": 4, "max_depth": 6},
    },
    "blends": {"knn_forest": {"knn": 0.5, "random_forest": 0.5}},
    # values_mlp_po: trained in both editions' tests
    "fitted_blends": {"fitted": {"models": ["knn", "random_forest", "values_mlp_po"]}},
    "evaluation": {"draws": 200},
}


TRAINED = {
    "glc2024": ("values_mlp_po", "landsat_cnn", "sentinel_cnn"),
    "glc2025": ("values_mlp_po", "multimodal"),
}
"""The experiments each edition's test trains: between them, every kind through the rules
that feed it (a cube CNN, an S2 CNN on GLC 2024's JPEGs, the multimodal network on every
modality of GLC 2025's layout, its 4-band GeoTIFF patches among them) and PO pre-training
in both layouts. Each kind also trains a batch on CPU (test_survey_networks.py), and each
edition's full demo trains them all; a network costs ~50 s here (train, predict, evaluate,
submission)."""


def edition_experiments(edition: str) -> dict:
    """The experiments of the edition's own config (the demo's default)."""
    return yaml.safe_load((REPO / EDITIONS[edition].config_file).read_text())["experiments"]


def edition_config(edition: str) -> dict:
    """The tiny demo of ``edition``, each of its experiments trained for 2 epochs (and
    pre-trained for 1); whole entries: a config file given replaces the edition's."""
    experiments = {}
    for name, entry in edition_experiments(edition).items():
        if name not in TRAINED[edition]:
            continue
        train = {**entry["train"], "epochs": 2}
        if train.get("po_pretrain_epochs"):
            train["po_pretrain_epochs"] = 1
        experiments[name] = {**entry, "train": train}
    return {"edition": edition, **TINY, "experiments": experiments}


@pytest.fixture(scope="module", params=["glc2024", "glc2025"])
def submitted(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(request.param)
    (workdir / "config.yaml").write_text(yaml.safe_dump(edition_config(request.param)))
    result = run_snakemake(workdir, "submission", timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    return request.param, workdir


@pytest.mark.slow
def test_the_submission_is_valid_and_scored_as_kaggle_scores_it(submitted):
    edition, workdir = submitted
    final = workdir / "results" / "submission" / "final.csv"
    test = pd.read_parquet(workdir / "results" / "observations" / "test.parquet")
    check_set_submission(final.read_text(), final, test["observation_id"].to_numpy())
    solution = workdir / EDITIONS[edition].demo_truth / "test_solution.csv"
    printed = subprocess.run(
        [str(GEOLIFECLEF), "score", str(final), str(solution)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    f1 = score_files(final, solution)["f1"]
    assert printed.startswith(f"samples F1 {f1:.5f} over {len(test)} surveys")
    # the constant's own submission scores lower than the best model's
    constant = score_files(workdir / "results" / "submission" / "constant.csv", solution)
    assert f1 > constant["f1"]
    sizes = [len(s) for s in read_set_file(final).values()]
    assert min(sizes) >= 1 and len(set(sizes)) > 1  # each survey's own number of species


@pytest.mark.slow
def test_the_leaderboard_ranks_by_f1_under_the_bayes_bound(submitted):
    edition, workdir = submitted
    leaderboard = pd.read_parquet(workdir / "results" / "evaluation" / "leaderboard.parquet")
    models = leaderboard[leaderboard["kind"] != "bound"]
    assert {"constant", "knn", "random_forest", "region_prior", "knn_forest", "fitted"} <= set(
        models["model"]
    )
    # The fitted blend: weights by the likelihood of val's sets, its val cross-fitted.
    fitted = models.set_index("model").loc["fitted"]
    assert fitted["kind"] == "fitted blend"
    report = json.loads((workdir / "results" / "blends" / "fitted" / "weights.json").read_text())
    assert set(report["weights"]) == {"knn", "random_forest", "values_mlp_po"}
    assert sum(report["weights"].values()) == pytest.approx(1.0)
    assert report["cross_fitted_log_loss"] > 0 and "fell_back_to_best_member" in report
    # Every network of the edition: the cube, patch and fusion ones, pre-trained on PO or not.
    assert set(edition_config(edition)["experiments"]) <= set(models["model"])
    assert models[["f1", "expected_f1"]].notna().all().all()
    assert models["f1"].is_monotonic_decreasing
    assert models["set_rule"].str.len().gt(0).all()
    bound = leaderboard[leaderboard["model"] == "bayes_optimal"]
    assert len(bound) == 1 and bound.index[0] == leaderboard.index[-1]
    assert (models["expected_f1"] <= bound["expected_f1"].iloc[0] + 1e-9).all()
    assert (models["f1_low"] <= models["f1"]).all() and (models["f1"] <= models["f1_high"]).all()
    best = models["model"].iloc[0]
    final = (workdir / "results" / "submission" / "final.csv").read_text()
    assert final == (workdir / "results" / "submission" / f"{best}.csv").read_text()


@pytest.mark.slow
def test_the_champion_predicts_the_sets_of_final_csv(submitted):
    edition, workdir = submitted
    test = pd.read_parquet(workdir / "results" / "observations" / "test.parquet")
    final = read_set_file(workdir / "results" / "submission" / "final.csv")
    with tracking_uri_kept():
        mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
        champion = mlflow.pyfunc.load_model(f"models:/{EDITIONS[edition].champion_model}@champion")
        answer = champion.predict(
            test[["observation_id", "latitude", "longitude"]].head(8),
            params={"workdir": str(workdir)},
        )
    for survey, species in zip(answer["observation_id"], answer["species_ids"], strict=True):
        np.testing.assert_array_equal(np.asarray(species), final[int(survey)])


SAMPLES = {"glc2024": "glc24-sample", "glc2025": "glc25-sample"}


def sample_files(edition: str) -> dict[str, Path]:
    """The real sample file of each kind (patch band group or cube kind) of an edition."""
    root = REPO.parent / "shared" / SAMPLES[edition]
    if not root.is_dir():
        pytest.skip(f"{root} is not present (only in the development setup)")
    layout = EDITIONS[edition].layout(root)
    survey = {"glc2024": 1322301, "glc2025": 1027998}[edition]
    files = {kind: layout.cube(kind, "train", survey) for kind in CUBE_SHAPES}
    files.update(
        {bands: layout.patch("train", bands, survey) for bands in layout.names.patch_folders}
    )
    return files


@pytest.mark.slow
@pytest.mark.parametrize("edition", ["glc2024", "glc2025"])
def test_an_archive_of_the_real_file_formats_runs_to_a_valid_submission(tmp_path, edition):
    """The archive's layout (a tiny demo's metadata and values) with every patch and cube
    holding the bytes of the real sample files, read with data.root set."""
    real = sample_files(edition)
    archive = tmp_path / "archive"
    spec = survey_spec_for("tiny", year=EDITIONS[edition].year, seed=3)
    generate_survey_demo(archive, tmp_path / "truth", spec)
    layout = EDITIONS[edition].layout(archive)
    replaced = 0
    for kind in CUBE_SHAPES:
        for split in ("train", "test"):
            for path in layout.cube_folder(kind, split).iterdir():
                shutil.copyfile(real[kind], path)
                replaced += 1
    for bands in layout.names.patch_folders:
        for split in ("train", "test"):
            for path in layout.patch_folder(split, bands).rglob("*.*"):
                shutil.copyfile(real[bands], path)
                replaced += 1
    assert replaced >= 3 * 300  # every survey's cubes and patches
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = {**edition_config(edition), "data": {"root": str(archive)}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # What reads the archive (tables, values, cubes) and a submission written from them:
    # the constant's, whose sets need no trained model (the models' are the fixture's).
    submission = "results/submission/constant.csv"
    result = run_snakemake(workdir, "extraction", submission, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    final = workdir / submission
    test = pd.read_parquet(workdir / "results" / "observations" / "test.parquet")
    check_set_submission(final.read_text(), final, test["observation_id"].to_numpy())
    packed = np.load(workdir / "results" / "cubes" / "test" / "landsat.npy", mmap_mode="r")
    expected = torch.load(real["landsat"], weights_only=True).numpy()
    assert packed.shape == (len(test), *CUBE_SHAPES["landsat"])
    np.testing.assert_array_equal(packed[0], expected)


def test_a_fitted_blend_by_top30_error_is_refused_for_species_sets(tmp_path):
    """GLC 2022's top-30 fit has no meaning for species sets: a dry run says so, naming the
    key and the fix, before any job."""
    fitted = {"models": ["knn", "random_forest"], "method": "top30"}
    config = {**edition_config("glc2024"), "fitted_blends": {"fitted": fitted}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "--dry-run", "submission", timeout=300)
    assert result.returncode != 0
    said = "fitted_blends.fitted.method: top30: edition glc2024's fitted blends fit by likelihood"
    output = result.stdout + result.stderr
    assert said in output and "set it to likelihood" in output
    assert len(output.splitlines()) < 25, output
    assert not (tmp_path / "results").exists()
