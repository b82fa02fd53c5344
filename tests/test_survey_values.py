"""The values CSVs of GLC 2024 and GLC 2025 (each with its own column set) become one env
table in the 2022 env table's format; every broken file is refused naming file, line, fix.

The CSVs are written here with the archive's column names (``GLC24-25-FORMAT.md`` §7) and
cell formats (CHELSA integers, floats, NaN and ±inf, an unnamed pandas index column)."""

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geolifeclef.data.env_table import read_env_table
from geolifeclef.data.observations import write_table
from geolifeclef.data.survey_values import build_survey_env_table
from geolifeclef.data.surveys import SURVEY_SCHEMA
from geolifeclef.errors import InputDataError
from geolifeclef.survey_layout import SURVEY_ARCHIVES, VALUE_FAMILIES, SurveyLayout

SOILGRIDS = [
    f"Soilgrid-{v}"
    for v in ["bdod", "cec", "cfvo", "clay", "nitrogen", "phh2o", "sand", "silt", "soc"]
]
COLUMNS_2025 = {
    "bioclimatic": [f"Bio{i}" for i in range(1, 20)],
    "elevation": ["Elevation"],
    "human_footprint": [
        f"HumanFootprint-{c}"
        for c in [
            "cemetery",
            "reservoir",
            "greenhouse",
            "farmland",
            "building-copernicus",
            "forest",
            "harbour",
            "building-residential",
            "building-commercial",
            "grass",
            "quarry",
            "road",
            "salt",
            "building-industrial",
            "vineyard",
            "military",
            "construction-site",
            "orchard",
            "meadow",
            "farmyard",
            "dump-site",
            "railway",
        ]
    ],
    "landcover": [f"LandCover-{i}" for i in range(1, 14)],
    "soilgrids": SOILGRIDS,
}
COLUMNS_2024 = COLUMNS_2025 | {
    "human_footprint": [
        f"HumanFootprint-{c}"
        for c in [
            "Built1994",
            "Built2009",
            "croplands1992",
            "croplands2005",
            "Lights1994",
            "Lights2009",
            "NavWater1994",
            "NavWater2009",
            "Pasture1993",
            "Pasture2009",
            "Popdensity1990",
            "Popdensity2010",
            "Railways",
            "Roads",
            "HFP1993",
            "HFP2009",
        ]
    ],
    "landcover": ["LandCover"],
}
SURVEYS = {"train": [1167600, 212, 1322301], "val": [594792], "test": [5000108, 642]}
ARCHIVE_ROWS = {"train": [1167600, 212, 1322301, 594792, 999], "test": [5000108, 642]}
"""Rows of the values files: val's survey is in the train files; 999 is in no table."""


def _cell(survey_id: int, column: int) -> str:
    """A value that says where it belongs: survey id + column / 100 (CHELSA-like integers for
    the first column)."""
    return str(survey_id) if column == 0 else f"{survey_id + column / 100:.2f}"


def _survey_tables(tmp_path):
    paths = []
    for split, ids in SURVEYS.items():
        frame = pd.DataFrame(
            {
                "observation_id": ids,
                "latitude": 50.0,
                "longitude": 5.0,
                "year": pd.array([2019] * len(ids), dtype="Int32"),
                "area_m2": 10.0,
                "geo_uncertainty_m": 1.0,
                "region": "ATLANTIC",
                "country": "Belgium",
                "species_ids": [np.array([1], dtype=np.int32)] * len(ids),
                "subset": split,
            }
        )
        paths.append(tmp_path / "observations" / f"{split}.parquet")
        write_table(frame, paths[-1], SURVEY_SCHEMA)
    return paths


def _values_file(path, columns, ids, index=False, cells=_cell):
    frame = pd.DataFrame(
        {"surveyId": ids} | {name: [cells(i, c) for i in ids] for c, name in enumerate(columns)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=index)


def _archive(tmp_path, year=2025, columns=None):
    layout = SurveyLayout(tmp_path / "archive", SURVEY_ARCHIVES[year])
    columns = columns or (COLUMNS_2025 if year == 2025 else COLUMNS_2024)
    for family in VALUE_FAMILIES:
        for split, ids in ARCHIVE_ROWS.items():
            _values_file(layout.values(family, split), columns[family], ids)
    return layout


def _build(layout, tmp_path, **kwargs):
    output = tmp_path / "environment" / "env_values.parquet"
    report = build_survey_env_table(layout, _survey_tables(tmp_path), output, **kwargs)
    return report, read_env_table(output)


def _refusal(layout, tmp_path, **kwargs) -> str:
    with pytest.raises(InputDataError) as caught:
        _build(layout, tmp_path, **kwargs)
    assert not (tmp_path / "environment").exists()  # nothing written
    return str(caught.value)


@pytest.mark.parametrize("year", [2024, 2025])
def test_each_editions_columns_become_one_float32_table(tmp_path, year):
    layout = _archive(tmp_path, year)
    report, table = _build(layout, tmp_path)
    columns = COLUMNS_2025 if year == 2025 else COLUMNS_2024
    expected = [name for family in VALUE_FAMILIES for name in columns[family]]
    assert (
        list(table.columns) == ["observation_id", *expected] == ["observation_id", *report.columns]
    )
    schema = pq.read_schema(tmp_path / "environment" / "env_values.parquet")
    assert schema.field("observation_id").type == pa.int64()
    assert {schema.field(name).type for name in expected} == {pa.float32()}
    assert list(table["observation_id"]) == [212, 642, 594792, 1167600, 1322301, 5000108]
    row = table.set_index("observation_id").loc[594792]  # val: from the train files
    assert row["Bio1"] == 594792 and row["Bio2"] == np.float32(594792.01)
    assert row[columns["landcover"][0]] == 594792
    assert table.set_index("observation_id").loc[642, "Soilgrid-soc"] == np.float32(642.08)
    assert report.unused_rows[layout.values("elevation", "train").name] == 1  # survey 999
    assert not table.isna().any().any()


def test_the_2024_files_are_found_under_one_level_of_environmental_rasters(tmp_path):
    layout = _archive(tmp_path, 2024)
    doubled = layout.root / "EnvironmentalRasters" / "EnvironmentalRasters"
    for entry in list(doubled.iterdir()):
        entry.rename(layout.root / "EnvironmentalRasters" / entry.name)
    doubled.rmdir()
    assert (layout.root / "EnvironmentalRasters" / "Human Footprint").is_dir()
    assert "HumanFootprint-HFP2009" in _build(layout, tmp_path)[1].columns


def test_nan_inf_empty_cells_an_index_column_and_absent_surveys_give_nan(tmp_path, caplog):
    layout = _archive(tmp_path)
    special = {1167600: "inf", 212: "-inf", 1322301: "nan", 594792: ""}
    _values_file(  # with pandas' index column: header ",surveyId,HumanFootprint-..."
        layout.values("human_footprint", "train"),
        COLUMNS_2025["human_footprint"],
        ARCHIVE_ROWS["train"],
        index=True,
        cells=lambda i, c: special.get(i, "0.5") if c == 0 else "0.25",
    )
    _values_file(layout.values("landcover", "test"), COLUMNS_2025["landcover"], [642])
    with caplog.at_level(logging.INFO):
        report, table = _build(layout, tmp_path)
    table = table.set_index("observation_id")
    assert table["HumanFootprint-cemetery"].isna().sum() == 4
    assert table.loc[642, "HumanFootprint-cemetery"] == np.float32(642)
    assert table.loc[5000108, ["LandCover-1", "LandCover-13"]].isna().all()
    assert table.loc[642, "LandCover-13"] == np.float32(642.12)
    assert report.infinite_counts["HumanFootprint-cemetery"] == 2
    assert report.nan_counts["HumanFootprint-cemetery"] == 4
    assert report.nan_counts["LandCover-1"] == 1
    assert report.absent["GLC25-PA-test-landcover.csv"] == 1
    assert (
        "GLC25-PA-test-landcover.csv: 1 survey(s) have no row, their values are NaN: 5000108"
        in (caplog.text)
    )
    assert "unnamed index column(s) ignored" in caplog.text


def test_a_family_left_out_is_not_read(tmp_path):
    layout = _archive(tmp_path)
    layout.values("human_footprint", "test").unlink()
    families = [family for family in VALUE_FAMILIES if family != "human_footprint"]
    report, table = _build(layout, tmp_path, families=families)
    assert not any(name.startswith("HumanFootprint") for name in table.columns)
    assert "Elevation" in report.columns


def test_a_missing_values_file_is_refused_by_name(tmp_path):
    layout = _archive(tmp_path)
    layout.values("human_footprint", "test").unlink()
    message = _refusal(layout, tmp_path)
    assert "HumanFootprint/GLC25-PA-test-human_footprint.csv: file is missing" in message
    assert "Fix: restore it from the archive, or leave human_footprint out of the values" in (
        message
    )


def test_a_survey_on_two_rows_of_a_values_file_is_refused(tmp_path):
    layout = _archive(tmp_path)
    _values_file(layout.values("elevation", "train"), ["Elevation"], [212, 1167600, 1322301, 212])
    message = _refusal(layout, tmp_path)
    assert "GLC25-PA-train-elevation.csv, line 2: surveyId 212 has more than one row" in message
    assert "(lines 2, 5)" in message and "Fix: keep one row per survey" in message


def test_train_and_test_files_with_other_columns_are_refused_naming_both(tmp_path):
    layout = _archive(tmp_path)
    _values_file(layout.values("soilgrids", "test"), SOILGRIDS[:-1] + ["Soilgrid-ocs"], [642])
    message = _refusal(layout, tmp_path)
    assert "GLC25-PA-test-soilgrids.csv, line 1: its columns differ from those of " in message
    assert "GLC25-PA-train-soilgrids.csv: it lacks Soilgrid-soc and has Soilgrid-ocs besides" in (
        message
    )
    assert "Fix: use the train and test files of the same archive" in message


def test_reordered_test_columns_are_matched_by_name(tmp_path):
    layout = _archive(tmp_path)
    _values_file(layout.values("soilgrids", "test"), SOILGRIDS[::-1], ARCHIVE_ROWS["test"])
    table = _build(layout, tmp_path)[1].set_index("observation_id")
    # The reversed file's first column is Soilgrid-soc and holds the CHELSA-like integer.
    assert table.loc[642, "Soilgrid-soc"] == 642 and table.loc[642, "Soilgrid-bdod"] == np.float32(
        642.08
    )


def test_a_cell_that_is_not_a_number_is_refused_naming_its_line(tmp_path):
    layout = _archive(tmp_path)
    _values_file(
        layout.values("bioclimatic", "test"),
        COLUMNS_2025["bioclimatic"],
        [5000108, 642],
        cells=lambda i, c: "n/d" if (i, c) == (642, 3) else "1",
    )
    message = _refusal(layout, tmp_path)
    assert "GLC25-PA-test-bioclimatic.csv, line 3: Bio4 'n/d' is not a number" in message
    assert "Fix: write a number with '.' as decimal mark in column Bio4" in message


def test_a_values_file_that_matches_no_survey_is_refused(tmp_path):
    layout = _archive(tmp_path)
    for split in ("train", "test"):  # another archive's file: none of these surveys
        _values_file(layout.values("elevation", split), ["Elevation"], [1, 2, 3])
    message = _refusal(layout, tmp_path)
    assert "GLC25-PA-train-elevation.csv: column Elevation has no value for 100% of the 6" in (
        message
    )
    assert "Fix: check that the values file belongs to this archive's surveys" in message


def test_the_nan_share_limit_refuses_a_mostly_empty_column(tmp_path):
    layout = _archive(tmp_path)
    _values_file(layout.values("elevation", "train"), ["Elevation"], [212])
    message = _refusal(layout, tmp_path, nan_share_limit=0.5)
    assert "column Elevation has no value for 50% of the 6 surveys" in message
    assert "(or raise environment.nan_share_limit, now 0.5)" in message
