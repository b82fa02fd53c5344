"""End to end: `snakemake maps` on the tiny demo, point queries from the command line, the
report and the MLflow runs of the maps."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import rasterio
from conftest import GEOLIFECLEF, copy_workdir, read_config, run_snakemake

from geolifeclef.layout import ENV_VARIABLES
from geolifeclef.predictions.table import read_predictions

CONFIG = read_config("maps")
MAPPED = ("knn", "random_forest", "env_mlp", "mlp_knn")
QUERIED = ("knn", "random_forest", "env_mlp")


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, demo_workdir):
    workdir = copy_workdir(demo_workdir, tmp_path_factory.mktemp("maps"), CONFIG)
    predictions = [f"results/predictions/{m}/val.parquet" for m in QUERIED]
    # The maps and the importance of four models: beyond the default 900 s on a busy machine.
    result = run_snakemake(workdir, "maps", "importance", *predictions, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_maps_of_every_env_model_and_the_reason_for_the_others(mapped):
    maps = mapped / "results" / "maps"
    for model in MAPPED:
        for region in ("fr", "us"):
            metrics = json.loads((maps / model / f"{region}.json").read_text())
            names = [entry["map"] for entry in metrics["maps"]]
            assert names[-1] == "richness" and len(names) >= 3
            for name in names:
                assert (maps / model / region / f"{name}.png").stat().st_size > 10_000
                with rasterio.open(maps / model / region / f"{name}.tif") as tif:
                    assert tif.crs.to_epsg() == 4326 and tif.dtypes[0] == "float32"
                    assert tif.res == pytest.approx((0.1, 0.1))
                    assert tif.profile["tiled"] and tif.nodata == -9999
                    values = tif.read(1, masked=True)
                    assert 0 < values.count() < values.size  # land and sea
            # Compared with the demo's true maps (NaN only for a flat predicted map: a kNN
            # whose 100 neighbours hold the same few observations of a species everywhere).
            correlations = np.array([entry["correlation"] for entry in metrics["maps"]], float)
            finite = correlations[np.isfinite(correlations)]
            assert len(finite) >= len(correlations) - 1 and (np.abs(finite) <= 1).all()
    summary = (maps / "summary.md").read_text()
    assert "`cnn_only`: experiment cnn_only reads patches (rgb)" in summary
    assert "`constant`" in summary
    assert "not mapped" in (mapped / "logs" / "describe_map_model" / "cnn_only.log").read_text()
    assert not (mapped / "results" / "models" / "cnn_only").exists()  # nothing trained for it
    assert (maps / "correlations.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("model", QUERIED)
def test_query_command_gives_the_models_prediction_at_an_observation(mapped, model):
    val = pd.read_parquet(mapped / "results" / "observations" / "val.parquet").head(5)
    points = mapped / f"points-{model}.csv"
    val[["latitude", "longitude"]].to_csv(points, index=False)
    answers = mapped / f"answers-{model}.csv"
    command = [str(GEOLIFECLEF), "query", "--model", model]
    result = subprocess.run(
        [*command, "--points", str(points), "--output", str(answers)],
        cwd=mapped,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: a point on a sea pixel
    assert "Demo species" in result.stdout
    assert "the training conditions (MESS" in result.stdout  # results/mess/ is there
    table = pd.read_csv(answers)
    expected = read_predictions(mapped / "results" / "predictions" / model / "val.parquet")
    expected = expected.aligned_to(val["observation_id"].to_numpy())
    answered = table["point"].unique()
    assert len(answered) >= 3
    for point in answered:
        row = int(point.split()[-1]) - 2  # "line N" of the CSV
        mine = table[table["point"] == point].sort_values("rank")
        assert mine["species_id"].tolist() == expected.species_ids[row].tolist()
        np.testing.assert_allclose(mine["probability"], expected.scores[row], rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_query_command_refuses_bad_points_and_models_that_read_patches(mapped):
    command = [str(GEOLIFECLEF), "query", "--model", "knn"]
    refused = subprocess.run(
        [*command, "--lat", "nan", "--lon", "2"], cwd=mapped, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "not a number" in refused.stderr
    patches = subprocess.run(
        [str(GEOLIFECLEF), "query", "--model", "cnn_only", "--lat", "46", "--lon", "2"],
        cwd=mapped,
        capture_output=True,
        text=True,
    )
    assert patches.returncode == 2 and "reads patches" in patches.stderr


@pytest.mark.slow
def test_importance_response_curves_and_mess_of_every_mapped_model(mapped):
    results = mapped / "results"
    for model in MAPPED:
        table = pd.read_parquet(results / "importance" / f"{model}.parquet")
        assert set(table["kind"]) == {"variable", "group"} and len(table) == 29 + 4
        assert (table["rows"] == 60).all() and (results / "importance" / f"{model}.png").exists()
        for region in ("fr", "us"):
            curves = results / "maps" / model / "responses" / region
            assert len(list(curves.glob("species_*.png"))) == 3  # head, medium, tail
            assert len(pd.read_parquet(curves / "responses.parquet")) == 3 * 2 * 5
    # The kNN reads coordinates only: shuffling an env variable changes nothing.
    knn = pd.read_parquet(results / "importance" / "knn.parquet").set_index("feature")
    assert (knn.loc[list(ENV_VARIABLES), "increase"] == 0).all()
    for region in ("fr", "us"):
        with rasterio.open(results / "mess" / f"{region}.tif") as tif:
            values = tif.read(1, masked=True)
            assert values.min() < 0 < values.max()


@pytest.mark.slow
def test_report_and_mlflow_show_the_maps(mapped):
    result = run_snakemake(mapped, "maps", "importance", "--report", str(mapped / "report.html"))
    assert result.returncode == 0, result.stderr[-4000:]
    report = (mapped / "report.html").read_text()
    assert "richness.png" in report and "correlations.png" in report
    assert "knn.png" in report  # the importance plots, and the response curves
    assert "Response curves" in report
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{mapped / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("geolifeclef")
    runs = client.search_runs([experiment.experiment_id], "tags.`snakemake.rule` = 'map_model'")
    assert {run.data.tags["wildcards.model"] for run in runs} == set(MAPPED)
    run = next(r for r in runs if r.info.run_name == "maps env_mlp fr")
    assert "mlflow.parentRunId" in run.data.tags
    assert "map_correlation.richness" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "maps/fr")}
    assert "maps/fr/richness.png" in artifacts and "maps/fr/fr.json" in artifacts
    runs = client.search_runs(
        [experiment.experiment_id], "tags.`snakemake.rule` = 'importance_model'"
    )
    assert {run.data.tags["wildcards.model"] for run in runs} == set(MAPPED)
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "importance")}
    assert len(artifacts) == 2
