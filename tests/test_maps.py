"""Species maps and point queries: georeferencing, chunking, the demo's truth, reloaded
models that predict as their rules did, and refused points."""

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch

from geolifeclef.baselines.forest import ForestSettings, TabularSources, random_forest_predictions
from geolifeclef.baselines.knn import KnnModel, KnnSettings, knn_predictions
from geolifeclef.data.class_frequency import BucketThresholds, species_table
from geolifeclef.data.env_table import extract_environment
from geolifeclef.data.observations import load_observations, read_species_ids, read_species_names
from geolifeclef.data.rasters import point_ids
from geolifeclef.demo.true_maps import DemoTruthModel
from geolifeclef.layout import ENV_VARIABLES, DatasetLayout, region_digits
from geolifeclef.maps.network_point_model import ExperimentModel
from geolifeclef.maps.point_models import (
    PointModel,
    PointModelSpec,
    write_spec,
)
from geolifeclef.maps.query import (
    PRINTED_POINTS,
    PointAnswer,
    check_points,
    main,
    query_points,
)
from geolifeclef.maps.render import (
    NODATA,
    MapSettings,
    choose_species,
    map_correlation,
    map_grid,
    render_maps,
)
from geolifeclef.maps.report import RegionSpecies, map_region
from geolifeclef.maps.trained_models import BaselinePointModel
from geolifeclef.models.networks import build_model
from geolifeclef.settings.catalog import Catalog
from geolifeclef.settings.mappable import unmappable_reason
from geolifeclef.settings.sweeps import Sweep

COARSE = 0.25
"""Grid resolution of these tests (degrees): a few thousand cells per region."""


@pytest.fixture(scope="module")
def demo(tiny_demo, tables, tmp_path_factory):
    """The tiny demo's observations, species table, env table from the rasters, and paths."""
    layout, truth, _ = tiny_demo
    folder = tmp_path_factory.mktemp("maps")
    observations = load_observations(layout)
    species = species_table(
        observations.train,
        observations.val,
        read_species_ids(layout.species_details),
        BucketThresholds(head_above=10, tail_below=4),
    )
    frames = [pd.read_parquet(tables[s]) for s in ("train", "val", "test")]
    points = pd.concat(frames).sort_values("observation_id")
    values, _ = extract_environment(
        layout, points["longitude"].to_numpy(), points["latitude"].to_numpy(), progress=False
    )
    env = pd.DataFrame(values, columns=list(ENV_VARIABLES))
    env.insert(0, "observation_id", points["observation_id"].to_numpy())
    species_path = folder / "species.parquet"
    species.to_parquet(species_path)
    return {
        "layout": layout,
        "truth": truth,
        "folder": folder,
        "train": pd.read_parquet(tables["train"]),
        "val": pd.read_parquet(tables["val"]),
        "species": species,
        "species_path": species_path,
        "env": env,
    }


def _fit_forest(demo, name: str, features: tuple[str, ...]):
    path = demo["folder"] / f"{name}.npz"
    predictions = random_forest_predictions(
        demo["train"],
        {"val": demo["val"]},
        TabularSources(demo["env"], "env"),
        demo["species"],
        30,
        ForestSettings(n_estimators=4, max_depth=6, features=features),
        forest_path=path,
    )
    return path, predictions["val"]


@pytest.fixture(scope="module")
def forest(demo):
    """The forest baseline as predict_random_forest runs it: val predictions, saved trees."""
    return _fit_forest(demo, "forest", ("env", "coordinates"))


@pytest.fixture(scope="module")
def country_forest(demo):
    """The forest on env, coordinates and the country, as the 1st place's tabular part."""
    return _fit_forest(demo, "country-forest", ("env", "coordinates", "country"))


@pytest.fixture(scope="module")
def mlp(demo):
    """An (untrained) env + coordinates MLP bundle as run_training writes it, and the stats."""
    settings = {"model": {"kind": "mlp", "tabular": ["env", "coordinates"]}}
    from geolifeclef.settings.experiment import ExperimentSettings

    n_classes = int(demo["species"]["species_id"].max()) + 1
    torch.manual_seed(0)
    typed = ExperimentSettings.from_config("mlp", settings).with_classes(n_classes)
    model = build_model(typed.model)
    path = demo["folder"] / "model.pt"
    bundle = {"name": "mlp", "settings": settings, "n_classes": n_classes}
    torch.save({**bundle, "state_dict": model.state_dict()}, path)
    values = demo["env"][list(ENV_VARIABLES)].to_numpy(np.float64)
    stats = demo["folder"] / "stats.json"
    stats.write_text(
        json.dumps(
            {
                "environment": {
                    "mean": np.nanmean(values, 0).tolist(),
                    "std": np.nanstd(values, 0).tolist(),
                }
            }
        )
    )
    return ExperimentModel("mlp", str(path), str(stats), demo["species"]["species_id"].to_numpy())


class Coordinates(PointModel):
    """Two 'species' whose probability is a known function of the point, the rest uniform."""

    name = "coordinates"

    def probabilities(self, latitude, longitude, env):
        a, b = (latitude + 90) / 400, (longitude + 180) / 800
        rest = np.repeat(((1 - a - b) / 3)[:, None], 3, axis=1)
        return np.column_stack([a, b, rest])


class Mirrored(PointModel):
    """The truth upside down (north-south mirror of the region): a map that is not the truth."""

    name = "mirrored"

    def __init__(self, truth, south, north):
        self.truth, self.middle = truth, south + north

    def probabilities(self, latitude, longitude, env):
        return self.truth.probabilities(self.middle - latitude, longitude, env)


def _render(model, demo, region, tmp_path, columns, chunk_cells=2000):
    folder = tmp_path / f"{region}-{chunk_cells}"
    folder.mkdir()
    grid = map_grid(demo["layout"], region, COARSE)
    render_maps(model, demo["layout"], grid, columns, folder, chunk_cells, progress=False)
    return folder, grid


# --------------------------------------------------------------------------------------
# GeoTIFFs and chunks
# --------------------------------------------------------------------------------------


def test_a_map_cell_holds_the_prediction_at_its_centre(demo, tmp_path):
    folder, grid = _render(Coordinates(), demo, "fr", tmp_path, {"lat": 0, "lon": 1})
    with rasterio.open(folder / "lat.tif") as lat_map, rasterio.open(folder / "lon.tif") as lon_map:
        assert lat_map.crs.to_epsg() == 4326
        assert lat_map.dtypes[0] == "float32" and lat_map.nodata == NODATA
        assert lat_map.profile["tiled"] and lat_map.compression.value == "DEFLATE"
        assert lat_map.bounds.left <= -5.5 and lat_map.bounds.right >= 10.0
        lat_values, lon_values = lat_map.read(1), lon_map.read(1)
        land = lat_values != NODATA
        assert 0.2 < land.mean() < 0.95  # the sea is nodata
        for row, col in np.argwhere(land)[:: max(1, land.sum() // 40)]:
            lon, lat = lat_map.xy(row, col)  # the cell's centre
            assert lat_map.index(lon, lat) == (row, col)
            assert lat_values[row, col] == pytest.approx((lat + 90) / 400, abs=1e-6)
            assert lon_values[row, col] == pytest.approx((lon + 180) / 800, abs=1e-6)
        # And a land cell is where the rasters have values at the centre.
        rows, cols = np.nonzero(np.ones_like(land))
        lons, lats = rasterio.transform.xy(grid.transform, rows, cols)
        env, problems = check_points(demo["layout"], np.array(lats), np.array(lons))
        assert np.array_equal(land.ravel(), ~np.isnan(env).all(axis=1))


@pytest.mark.parametrize("kind", ["forest", "mlp", "knn"])
def test_chunked_and_one_shot_maps_agree(demo, forest, mlp, kind, tmp_path):
    models = {
        "forest": lambda: BaselinePointModel(
            "rf", "random_forest", str(forest[0]), demo["species"]
        ),
        "mlp": lambda: mlp,
        "knn": lambda: BaselinePointModel("knn", "knn", str(knn_file), demo["species"]),
    }
    knn_file = tmp_path / "knn.npz"
    KnnModel(demo["train"], demo["species"], KnnSettings()).save(knn_file)
    model = models[kind]()
    columns = {"a": 0, "b": 5}
    chunked, _ = _render(model, demo, "us", tmp_path, columns, chunk_cells=37)
    whole, _ = _render(model, demo, "us", tmp_path, columns, chunk_cells=10**9)
    for name in ("a", "b", "richness"):
        with rasterio.open(chunked / f"{name}.tif") as a, rasterio.open(whole / f"{name}.tif") as b:
            np.testing.assert_allclose(a.read(1), b.read(1), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------
# The demo's truth
# --------------------------------------------------------------------------------------


def test_the_truth_maps_with_correlation_one_and_a_wrong_map_does_not(demo, tmp_path):
    species = demo["species"]
    truth = DemoTruthModel(demo["truth"] / "world.npz", species["species_id"].to_numpy())
    settings = MapSettings(resolution=COARSE, per_bucket=1)
    chosen = choose_species(species, "fr", settings)
    names = read_species_names(demo["layout"].species_details)
    common = (demo["layout"], "fr", RegionSpecies(species, names, chosen), settings)
    map_region(truth, *common, tmp_path / "truth", figures=False, progress=False)
    same = map_region(truth, *common, tmp_path / "same", truth=tmp_path / "truth", progress=False)
    _, south, _, north = map_grid(demo["layout"], "fr", COARSE).bounds
    wrong = map_region(
        Mirrored(truth, south, north),
        *common,
        tmp_path / "wrong",
        truth=tmp_path / "truth",
        figures=False,
        progress=False,
    )
    assert [m["map"] for m in same["maps"]] == [f"species_{s}" for s in chosen] + ["richness"]
    for entry in same["maps"]:
        assert entry["correlation"] == pytest.approx(1.0, abs=1e-9)
        assert (tmp_path / "same" / f"{entry['map']}.png").stat().st_size > 10_000
    assert all(entry["correlation"] < 0.95 for entry in wrong["maps"])
    assert (
        map_correlation(tmp_path / "same" / "richness.tif", tmp_path / "truth" / "richness.tif")
        > 0.999
    )


def test_true_probabilities_are_the_species_model_at_observed_sites(demo):
    """At val sites the true map (expected land cover) is close to the stored truth (the
    site's own patch): same species model, hidden fields read back from the world file."""
    species = demo["species"]
    truth = DemoTruthModel(demo["truth"] / "world.npz", species["species_id"].to_numpy())
    with np.load(demo["truth"] / "species_probabilities.npz") as stored:
        val_rows = stored["subset"] == "val"
        ids, probabilities = stored["observation_id"][val_rows], stored["probabilities"][val_rows]
    val = demo["val"].set_index("observation_id").loc[ids]
    mapped = truth.probabilities(val["latitude"].to_numpy(), val["longitude"].to_numpy(), None)
    assert np.allclose(mapped.sum(axis=1), 1)
    correlation = np.corrcoef(np.log(mapped.ravel() + 1e-9), np.log(probabilities.ravel() + 1e-9))
    assert correlation[0, 1] > 0.8
    # The maps' niche term by matrix products is the generator's, up to rounding.
    model, rng = truth.world.species, np.random.default_rng(0)
    features, shares = rng.normal(size=(50, 6)), rng.dirichlet(np.ones(9), 50)
    lonlat, region = np.c_[rng.uniform(-5, 10, 50), rng.uniform(41, 51, 50)], np.zeros(50, int)
    np.testing.assert_allclose(
        model.probabilities_from_niche(model.niche_by_products(features), region, shares, lonlat),
        model.probabilities(region, features, shares, lonlat),
        atol=1e-12,
    )


# --------------------------------------------------------------------------------------
# Point queries
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["forest", "country_forest", "knn"])
def test_a_point_query_is_the_prediction_of_an_observation_there(
    demo, forest, country_forest, kind
):
    """Also for a forest that reads the country: a point's country is its region."""
    species = demo["species"]
    val = demo["val"]
    if kind in ("forest", "country_forest"):
        fitted = forest if kind == "forest" else country_forest
        model = BaselinePointModel("rf", "random_forest", str(fitted[0]), species)
        expected = fitted[1]
    else:
        settings = KnnSettings(n_neighbors=20)
        KnnModel(demo["train"], species, settings).save(demo["folder"] / "knn.npz")
        model = BaselinePointModel("knn", "knn", str(demo["folder"] / "knn.npz"), species)
        expected = knn_predictions(demo["train"], {"val": val}, species, 30, settings)["val"]
    where = (
        model,
        demo["layout"],
        species["species_id"].to_numpy(),
        val["latitude"].to_numpy(),
        val["longitude"].to_numpy(),
    )
    answers = query_points(*where)
    expected = expected.aligned_to(val["observation_id"].to_numpy())
    answered = [i for i, a in enumerate(answers) if isinstance(a, PointAnswer)]
    assert len(answered) >= 0.9 * len(val)  # the rest lie on sea pixels, as in the real data
    # Predicted a few rows at a time (chunks that end mid-way and between refused points):
    # the same answers and refusals.
    chunked = query_points(*where, chunk_rows=7)
    assert len(answered) > 7 and len(answered) % 7
    for one, other in zip(answers, chunked, strict=True):
        assert type(one) is type(other)
        if isinstance(one, str):
            assert one == other
        else:
            assert one.region == other.region and one.missing_env == other.missing_env
            assert np.array_equal(one.species_ids, other.species_ids)
            assert np.array_equal(one.probabilities, other.probabilities)
    for i in answered:
        assert np.array_equal(answers[i].species_ids, expected.species_ids[i])
        np.testing.assert_allclose(answers[i].probabilities, expected.scores[i], rtol=1e-5)


def test_bad_points_are_refused_with_the_reason(demo):
    layout = demo["layout"]
    with rasterio.open(layout.raster("bio_1", "fr")) as raster:
        sea_row, sea_col = np.argwhere(raster.read_masks(1) == 0)[0]
        sea_lon, sea_lat = raster.xy(sea_row, sea_col)
    land = demo["val"].iloc[0]
    latitude = np.array([land["latitude"], np.nan, 95.0, 30.0, sea_lat])
    longitude = np.array([land["longitude"], 3.0, 3.0, -30.0, sea_lon])
    env, problems = check_points(layout, latitude, longitude)
    assert problems[0] is None and not np.isnan(env[0]).all()
    assert "not a number" in problems[1]
    assert "out of range" in problems[2]
    assert "outside both regions" in problems[3] and "France: longitude -5.5..10" in problems[3]
    assert "the sea" in problems[4]


def test_query_command_answers_refuses_and_explains_unmappable_models(
    demo, forest, tmp_path, capsys
):
    maps_dir = tmp_path / "maps"
    common = {
        "species_table": str(demo["species_path"]),
        "species_details": str(demo["layout"].species_details),
        "data_root": str(demo["layout"].root),
    }
    write_spec(
        PointModelSpec("rf", "random_forest", files={"model": str(forest[0])}, **common),
        maps_dir / "rf" / "model.json",
    )
    reason = "experiment cnn reads patches (rgb), which exist only at observation points"
    write_spec(PointModelSpec("cnn", "unmappable", reason=reason), maps_dir / "cnn" / "model.json")
    land = demo["val"].iloc[0]
    args = ["--maps-dir", str(maps_dir), "--model"]
    assert main([*args, "rf", "--lat", str(land["latitude"]), "--lon", str(land["longitude"])]) == 0
    shown = capsys.readouterr().out
    assert shown.count("Demo species") == 30 and "probability" in shown
    assert main([*args, "rf", "--lat", "10", "--lon", "10"]) == 1
    assert "outside both regions" in capsys.readouterr().err
    assert main([*args, "cnn", "--lat", "46", "--lon", "2"]) == 2
    assert reason in capsys.readouterr().err
    points = tmp_path / "points.csv"
    points.write_text(f"latitude;longitude\n{land['latitude']};{land['longitude']}\nnan;2\n")
    assert main([*args, "rf", "--points", str(points), "--output", str(tmp_path / "o.csv")]) == 1
    assert f"{points}, line 3: refused" in capsys.readouterr().err
    one = pd.read_csv(tmp_path / "o.csv")
    assert len(one) == 30 and one["rank"].tolist() == list(range(1, 31))
    # Many points into a file: a summary on the screen, every answer in the file, the same
    # as asked alone.
    many = demo["val"].head(PRINTED_POINTS + 5)
    many[["latitude", "longitude"]].to_csv(points, index=False)
    code = main([*args, "rf", "--points", str(points), "--output", str(tmp_path / "m.csv")])
    shown = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "m.csv")
    answered = table["point"].nunique()
    assert f"{answered} points answered, {len(many) - answered} refused" in shown
    assert "Demo species" not in shown and code == (0 if answered == len(many) else 1)
    assert len(table) == 30 * answered > 30 * PRINTED_POINTS
    first = table[table["point"] == "line 2"]
    pd.testing.assert_frame_equal(first.reset_index(drop=True), one.assign(point="line 2"))


# --------------------------------------------------------------------------------------
# Which models and species
# --------------------------------------------------------------------------------------


def test_a_point_has_the_country_of_the_region_whose_rasters_it_reads():
    """What the ``country`` feature reads at a map cell or a queried point: the id's first
    digit, from the reference's longitude rule, as an observation's."""
    longitude = np.array([2.35, -9.9, -10.1, -100.0, 5.0])
    ids = point_ids(longitude)
    assert region_digits(ids).tolist() == [1, 1, 2, 2, 1]
    assert len(set(ids.tolist())) == len(ids) and (ids < 10**8).all()


def test_only_models_of_what_is_known_everywhere_are_mappable():
    """env values, coordinates and the country (a point's region) are known at any point."""
    config = {
        "experiments": {
            "env_mlp": {"model": {"kind": "mlp", "tabular": ["env", "coordinates"]}},
            "country_mlp": {"model": {"kind": "mlp", "tabular": ["env", "country"]}},
            "mlp_shares": {"model": {"kind": "mlp", "tabular": ["env", "landcover_shares"]}},
            "fusion": {"model": {"kind": "fusion", "modalities": ["rgb"]}},
            "ndvi_cnn": {"model": {"kind": "cnn", "modalities": ["ndvi"]}},
        },
        "blends": {
            "good": {"knn": 1, "env_mlp": 1},
            "bad": {"knn": 1, "fusion": 1},
            "picked": {"knn": 1, "lr:top2": 1},
        },
        "fitted_blends": {"fitted": ["knn", "env_mlp"]},
    }
    catalog = Catalog(
        config["experiments"],
        {"lr": Sweep("lr", "env_mlp", ("train.learning_rate",), {})},
        config["blends"],
        config["fitted_blends"],
    )

    def reason(name, forest_features=("env", "coordinates")):
        baselines = {"random_forest": ForestSettings(features=forest_features)}
        return unmappable_reason(name, catalog, baselines)

    assert reason("knn") is None and reason("random_forest") is None
    assert reason("random_forest", ("env", "coordinates", "country")) is None
    assert reason("country_mlp") is None
    assert "patch_quantiles" in reason("random_forest", ("env", "patch_quantiles"))
    assert "flat" in reason("constant")
    assert reason("env_mlp") is None
    assert "landcover_shares" in reason("mlp_shares")
    assert "reads patches (rgb)" in reason("fusion")
    assert "reads patches (rgb, near_ir)" in reason("ndvi_cnn")  # NDVI's sources
    assert reason("good") is None
    assert "includes fusion" in reason("bad")
    assert "lr:top2" in reason("picked")
    assert "fitted blend" in reason("fitted")


def test_species_are_chosen_per_bucket_among_those_observed_in_the_region(demo):
    species = demo["species"]
    for region in ("fr", "us"):
        chosen = choose_species(species, region, MapSettings(per_bucket=2))
        rows = species.set_index("species_id").loc[chosen]
        assert (rows[f"train_{region}"] > 0).all()
        assert len(chosen) == len(set(chosen))
        assert set(rows["bucket"]) == set(species.loc[species[f"train_{region}"] > 0, "bucket"])
    assert choose_species(species, "fr", MapSettings(species=(3, 1))) == [3, 1]
    with pytest.raises(ValueError, match="maps.species"):
        choose_species(species, "fr", MapSettings(species=(99_999,)))


def test_a_grid_covers_the_rasters_of_its_region(demo):
    grid = map_grid(demo["layout"], "us", 0.05)
    assert grid.bounds[0] == pytest.approx(-125.0) and grid.bounds[3] == pytest.approx(49.5)
    assert (grid.width, grid.height) == (1170, 510)
    assert map_grid(demo["layout"], "us", 0.3).width == 195
    with pytest.raises(ValueError, match="positive"):
        map_grid(DatasetLayout(demo["layout"].root), "fr", 0)
