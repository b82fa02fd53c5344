"""MESS: a hand-made case, the map of a tiny demo region, the hatching and the point query."""

import numpy as np
import pandas as pd
import pytest
import rasterio

from geolifeclef.data.env_table import extract_environment
from geolifeclef.layout import ENV_VARIABLES
from geolifeclef.maps.mess import (
    MessReference,
    MessSettings,
    mess,
    mess_at,
    mess_path,
    render_mess,
    train_reference,
)
from geolifeclef.maps.query import PointAnswer, format_answer
from geolifeclef.maps.render import NODATA, map_grid
from geolifeclef.maps.report import plot_map

COARSE = 0.25


def test_mess_is_negative_outside_the_reference_range_and_positive_inside():
    reference = np.column_stack([np.arange(11.0), np.linspace(100, 200, 11)])  # 0..10, 100..200
    points = np.array(
        [
            [5.0, 150.0],  # the medians: 5 of 11 values below, f = 45.5 -> 90.9
            [1.0, 150.0],  # f = 1/11 of the values below 1 -> 2 f = 18.2
            [-2.0, 150.0],  # 2 below the minimum of a range of 10 -> -20
            [5.0, 230.0],  # 30 above the maximum of a range of 100 -> -30
            [0.0, 200.0],  # on both edges: 0 and 2 (100 - 10/11 * 100) -> 0
            [np.nan, 120.0],  # no value of the first variable: the second decides
        ]
    )
    values, least = MessReference(reference).similarity(points)
    np.testing.assert_allclose(values, [1000 / 11, 200 / 11, -20, -30, 0, 400 / 11], atol=1e-9)
    assert least.tolist()[2:4] == [0, 1] and least[5] == 1
    np.testing.assert_allclose(mess(reference, points), values)
    assert np.isnan(mess(reference, np.array([[np.nan, np.nan]])))[0]


def test_a_variable_without_reference_values_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="no reference value of b"):
        MessReference(np.array([[1.0, np.nan], [2.0, np.nan]]), ["a", "b"])
    with pytest.raises(ValueError, match="mess.variables"):
        MessSettings(variables=("bio_1", "elevation"))


@pytest.fixture(scope="module")
def region_mess(tiny_demo, tables, tmp_path_factory):
    """The MESS map of France at 0.25 degrees against the tiny demo's train observations."""
    layout, _, _ = tiny_demo
    train = pd.read_parquet(tables["train"])
    values, _ = extract_environment(
        layout, train["longitude"].to_numpy(), train["latitude"].to_numpy(), progress=False
    )
    env = pd.DataFrame(values, columns=list(ENV_VARIABLES))
    env.insert(0, "observation_id", train["observation_id"].to_numpy())
    settings = MessSettings()
    reference = train_reference(train, env, "fr", settings)
    grid = map_grid(layout, "fr", COARSE)
    path = mess_path(tmp_path_factory.mktemp("results"), "fr")
    path.parent.mkdir()
    summary = render_mess(reference, settings.columns, layout, grid, path)
    return {"layout": layout, "grid": grid, "path": path, "summary": summary, "train": train}


def test_the_mess_map_of_a_region(region_mess):
    grid, path, summary = region_mess["grid"], region_mess["path"], region_mess["summary"]
    with rasterio.open(path) as dataset:
        data = dataset.read(1)
        assert dataset.transform == grid.transform and dataset.nodata == NODATA
    land = data != NODATA
    assert land.sum() == summary["land_cells"] > 0
    # 300 train points cannot span every corner of a region: some cells extrapolate.
    assert 0 < summary["negative_share"] < 1
    assert (data[land] < 0).mean() == pytest.approx(summary["negative_share"])
    assert data[land].max() <= 100
    # The value at a cell is the MESS of its centre's env values.
    row, col = np.argwhere(land)[len(np.argwhere(land)) // 2]
    latitude, longitude = grid.centres(row, row + 1)
    assert mess_at(path, latitude[col : col + 1], longitude[col : col + 1])[0] == pytest.approx(
        data[row, col]
    )
    assert np.isnan(mess_at(path, np.array([0.0]), np.array([0.0])))[0]  # off the map


def test_train_observations_lie_mostly_inside_the_training_conditions(region_mess):
    train = region_mess["train"]
    fr = train[train["region"] == "fr"]
    values = mess_at(region_mess["path"], fr["latitude"].to_numpy(), fr["longitude"].to_numpy())
    values = values[np.isfinite(values)]
    # Their map cells, not the points themselves: a few cells reach beyond a point's values.
    assert (values >= 0).mean() > 0.8


def test_maps_hatch_where_mess_is_negative(region_mess, tmp_path):
    path = region_mess["path"]
    plain, hatched = tmp_path / "plain.png", tmp_path / "hatched.png"
    plot_map(plain, "MESS", path, "MESS", "demo")
    plot_map(hatched, "MESS", path, "MESS", "demo", mess=path)
    assert plain.read_bytes() != hatched.read_bytes()


def test_the_point_answer_says_when_it_extrapolates():
    answer = PointAnswer(46.0, 2.0, "fr", np.array([3, 1]), np.array([0.5, 0.2]), 0)
    outside = format_answer("rf", answer, {3: "Three"}, mess=-12.5)
    assert "outside the training conditions (MESS -12.5" in outside
    assert "within the training conditions (MESS 40.0" in format_answer("rf", answer, {}, 40.0)
    assert "training conditions" not in format_answer("rf", answer, {})
