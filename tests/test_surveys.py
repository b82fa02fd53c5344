"""The GLC 2024/2025 metadata CSVs become the survey tables and the PO table: the archive's
cell formats and traps pass, every broken file is refused naming the file, line and fix.

The CSVs are written here as text, in the organizers' column order and cell formats
(``GLC24-25-FORMAT.md`` §4 and the malpolon fixture's rows), so that each test controls the
bytes the reader sees."""

import gzip
import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import REPO

from geolifeclef.data.surveys import (
    PO_SCHEMA,
    SURVEY_SCHEMA,
    ingest_surveys,
    spatial_blocks,
)
from geolifeclef.errors import InputDataError
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyLayout

HEADER = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId"
TEST_HEADER = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,surveyId"
TRAIN = [  # line 2 onwards
    "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Denmark,6310.0,1167600",
    "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Denmark,2885.0,1167600",
    "5.19824,51.08484,2020,0.0,-inf,ATLANTIC,Belgium,8748.0,1322301",
    "5.40524,48.17742,2017,1.0,,CONTINENTAL,France,6118.0,594792",
    "16.994394,50.289631,2021,,25.0,CONTINENTAL,Czech Republic,96.0,3242671",
    "18.689813,42.596633,2018,0.0,25.0,MEDITERRANEAN,Montenegro,11140.0,866975",
    "25.32627,41.41873,2018,0.0,25.0,CONTINENTAL,Bulgaria,10673.0,2701789",
    "6.384761,52.980603,2017,3.0,9.0,ATLANTIC,Netherlands,11140.0,210764",
    "21.43,41.99,2019,5.0,100.0,CONTINENTAL,The former Yugoslav Republic of Macedonia,2.0,212",
    "21.43,41.99,2019,5.0,100.0,CONTINENTAL,The former Yugoslav Republic of Macedonia,11254.0,212",
]
TEST = [
    "9.41453,57.13412,2017,10.0,79.0,CONTINENTAL,Denmark,1621686",
    "5.09914,44.1882,2021,10.0,50.0,MEDITERRANEAN,France,642",
    "-2.23632,52.721129,2017,1.0,1.0,ATLANTIC,United Kingdom,5000108",
]
PO_HEADER_2025 = (
    "publisher,year,month,day,lat,lon,geoUncertaintyInM,taxonRank,date,dayOfYear,speciesId,surveyId"
)
PO_2025 = [
    "Naturgucker,2019,5.0,12.0,50.1,8.6,10.0,SPECIES,2019-05-12,132,1234.0,1167600",
    "Naturgucker,2019,5.0,12.0,50.1,8.6,10.0,SPECIES,2019-05-12,132,1234.0,1167600",
    "Naturgucker,2019,5.0,12.0,50.1,8.6,10.0,SPECIES,2019-05-12,132,0.0,1167600",
    '"Observation.org, Netherlands",2021,,,52.0,5.1,,SPECIES,2021-01-01,1,9999.0,7',
    "iNaturalist,,,,47.2,2.5,25.0,SPECIES,,,,8",
]
SAMPLES = REPO.parent / "shared"


def _archive(tmp_path, train=TRAIN, test=TEST, header=HEADER, test_header=TEST_HEADER, year=2025):
    root = tmp_path / "archive"
    root.mkdir(parents=True, exist_ok=True)
    layout = SurveyLayout(root, SURVEY_ARCHIVES[year])
    _write(layout.pa_metadata("train"), [header, *train])
    _write(layout.pa_metadata("test"), [test_header, *test])
    return layout


def _write(path, lines, end="\n", prefix=""):
    path.write_bytes((prefix + end.join(lines) + end).encode())


def _outputs(tmp_path, po=True):
    splits = ("train", "val", "test", "po") if po else ("train", "val", "test")
    return {split: tmp_path / "out" / f"{split}.parquet" for split in splits}


def _ingest(layout, tmp_path, val_share=0.0, seed=0, po=True):
    outputs = _outputs(tmp_path, po)
    counts = ingest_surveys(layout, outputs, val_share=val_share, block_km=10, seed=seed)
    tables = {split: pd.read_parquet(path) for split, path in outputs.items()}
    return counts, tables


def _survey(table, survey_id):
    return table.loc[table["observation_id"] == survey_id].iloc[0]


def _refusal(layout, tmp_path, **kwargs) -> str:
    with pytest.raises(InputDataError) as caught:
        ingest_surveys(layout, _outputs(tmp_path), val_share=0.0, block_km=10, seed=0, **kwargs)
    assert not (tmp_path / "out").exists()  # nothing written
    return str(caught.value)


def test_the_archive_formats_become_one_row_per_survey(tmp_path):
    counts, tables = _ingest(_archive(tmp_path), tmp_path, po=False)
    train, test = tables["train"], tables["test"]
    assert pq.read_schema(tmp_path / "out" / "train.parquet").remove_metadata() == SURVEY_SCHEMA
    assert list(train["observation_id"]) == sorted(
        [1167600, 1322301, 594792, 3242671, 866975, 2701789, 210764, 212]
    )
    assert counts["train"] == 8 and counts["val"] == 0 and counts["test"] == 3
    denmark = _survey(train, 1167600)
    assert list(denmark["species_ids"]) == [2885, 6310]  # float-written, sorted
    assert (denmark["latitude"], denmark["longitude"]) == (56.18192, 9.67188)
    assert denmark["year"] == 2020 and denmark["area_m2"] == 79.0
    assert (denmark["region"], denmark["country"]) == ("CONTINENTAL", "Denmark")
    assert np.isnan(_survey(train, 1322301)["area_m2"])  # -inf
    assert np.isnan(_survey(train, 594792)["area_m2"])  # empty
    assert np.isnan(_survey(train, 3242671)["geo_uncertainty_m"])  # empty
    assert list(_survey(train, 212)["species_ids"]) == [2, 11254]  # a 3-digit id, the last slot
    # in the file's order: the submission's rows follow the test metadata
    assert list(test["observation_id"]) == [1621686, 642, 5000108]
    assert all(len(species) == 0 for species in test["species_ids"])
    assert set(train["subset"]) == {"train"} and set(test["subset"]) == {"test"}


def test_val_is_carved_by_spatial_blocks_the_same_whatever_the_row_order(tmp_path):
    # A second survey 300 m from 1167600 shares its block, so it shares its subset.
    neighbour = "9.67188,56.18462,2020,10.0,79.0,CONTINENTAL,Denmark,7.0,77"
    rows = [*TRAIN, neighbour]
    first = _ingest(_archive(tmp_path / "a", rows), tmp_path / "a", val_share=0.3, seed=4)[1]
    shuffled = list(np.random.default_rng(0).permutation(rows))
    second = _ingest(_archive(tmp_path / "b", shuffled), tmp_path / "b", val_share=0.3, seed=4)[1]
    val = set(first["val"]["observation_id"])
    assert val == set(second["val"]["observation_id"])
    assert len(val - {77}) == 2  # 2 of the 8 blocks (0.3 x 8, rounded)
    assert val.isdisjoint(first["train"]["observation_id"])
    assert (77 in val) == (1167600 in val)
    assert set(first["val"]["subset"]) == {"val"}
    assert (
        spatial_blocks(np.array([56.18192, 56.18462]), np.array([9.67188, 9.67188]), 10)[0]
        == spatial_blocks(np.array([56.18192, 56.18462]), np.array([9.67188, 9.67188]), 10)[1]
    )


def test_duplicate_pairs_are_dropped_and_counted(tmp_path):
    counts, tables = _ingest(_archive(tmp_path, [*TRAIN, TRAIN[0], TRAIN[0]]), tmp_path)
    assert counts["duplicate_pairs"] == 2
    assert list(_survey(tables["train"], 1167600)["species_ids"]) == [2885, 6310]


def test_rows_without_species_are_dropped_with_a_warning(tmp_path, caplog):
    rows = [
        *TRAIN,
        "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Denmark,,1167600",  # line 12
        "3.1,45.2,2019,1.0,,CONTINENTAL,France,,999",  # a survey with no species left
    ]
    with caplog.at_level(logging.WARNING):
        counts, tables = _ingest(_archive(tmp_path, rows), tmp_path)
    assert counts["rows_without_species"] == 2 and counts["surveys_without_species"] == 1
    assert 999 not in set(tables["train"]["observation_id"])
    assert list(_survey(tables["train"], 1167600)["species_ids"]) == [2885, 6310]
    assert "2 row(s) without speciesId dropped (line 12, 13)" in caplog.text


def test_a_survey_whose_rows_disagree_keeps_its_first_row(tmp_path, caplog):
    # As malpolon's GLC 2025 fixture has survey 1027998 at three places.
    rows = [
        *TRAIN,
        "10.3555,57.01814,2018,10.0,79.0,CONTINENTAL,Denmark,10113.0,1027998",
        "10.14324,56.70576,2018,10.0,79.0,CONTINENTAL,Denmark,10112.0,1027998",
        "5.926523,50.826305,2018,10.0,-inf,CONTINENTAL,Denmark,10111.0,1027998",
    ]
    with caplog.at_level(logging.INFO):
        counts, tables = _ingest(_archive(tmp_path, rows), tmp_path)
    survey = _survey(tables["train"], 1027998)
    assert (survey["longitude"], survey["latitude"], survey["area_m2"]) == (10.3555, 57.01814, 79)
    assert list(survey["species_ids"]) == [10111, 10112, 10113]
    assert counts["surveys_with_disagreeing_rows"] == 1
    assert "lon 1, lat 1, areaInM2 1" in caplog.text


def test_columns_are_selected_by_name(tmp_path, caplog):
    """An unnamed index column, malpolon's subset column and reordered columns: the same
    tables as the archive's order."""
    reference = _ingest(_archive(tmp_path / "a"), tmp_path / "a")[1]
    frame = pd.read_csv(_archive(tmp_path / "b").pa_metadata("train"), dtype=str)
    frame["subset"] = "train"
    reordered = frame[["surveyId", "speciesId", "subset", *HEADER.split(",")[:7]]]
    layout = _archive(tmp_path / "b")
    reordered.to_csv(layout.pa_metadata("train"), index=True)  # header ",surveyId,..."
    test = pd.read_csv(layout.pa_metadata("test"), dtype=str)
    test.to_csv(layout.pa_metadata("test"), index=True, index_label="Unnamed: 0")
    with caplog.at_level(logging.INFO):
        tables = _ingest(layout, tmp_path / "b")[1]
    for split in reference:
        pd.testing.assert_frame_equal(tables[split], reference[split])
    assert "column(s) not used, ignored: subset" in caplog.text
    assert "unnamed index column(s) ignored" in caplog.text


def test_bom_crlf_quoted_fields_and_blank_lines_are_accepted(tmp_path):
    reference = _ingest(_archive(tmp_path / "a"), tmp_path / "a")[1]
    layout = _archive(tmp_path / "b")
    quoted = [
        ",".join(f'"{cell}"' if i in (5, 6) else cell for i, cell in enumerate(row.split(",")))
        for row in TRAIN
    ]
    _write(
        layout.pa_metadata("train"), [HEADER, *quoted[:3], "", *quoted[3:], ""], "\r\n", "\ufeff"
    )
    tables = _ingest(layout, tmp_path / "b")[1]
    for split in reference:
        pd.testing.assert_frame_equal(tables[split], reference[split])


def test_the_malpolon_fixture_cells_pass(tmp_path):
    """malpolon's fixture (real cell formats; its subset column mixes train and test, so it
    is split here and the test file loses speciesId)."""
    for year in (2024, 2025):
        fixture = SAMPLES / f"glc{year % 100}-sample" / "extras" / "malpolon-fixture-metadata.csv"
        if not fixture.is_file():
            pytest.skip(f"{fixture} is not present (only in the development setup)")
        frame = pd.read_csv(fixture, dtype=str, keep_default_na=False)
        layout = SurveyLayout(tmp_path / str(year), SURVEY_ARCHIVES[year])
        layout.root.mkdir()
        frame[frame["subset"] == "train"].to_csv(layout.pa_metadata("train"), index=False)
        test = frame[frame["subset"] == "test"].drop(columns=["speciesId", "subset"])
        test.drop_duplicates("surveyId").to_csv(layout.pa_metadata("test"), index=False)
        counts, tables = _ingest(layout, tmp_path / str(year))
        assert counts["train"] == 48 and counts["po"] == 0
        assert len(tables["test"]) == frame.loc[frame["subset"] == "test", "surveyId"].nunique()
    assert np.isnan(_survey(tables["train"], 2149979)["area_m2"])  # -inf in GLC 2025's
    assert list(_survey(tables["train"], 1027998)["species_ids"]) == [10111, 10112, 10113]


@pytest.mark.parametrize(
    ("row", "problem", "fix"),
    [
        (
            "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Denmark,6310.5,1167600",
            "speciesId 6310.5 is not a whole number",
            "species ids are the archive's label ids, 0 to 11,254",
        ),
        (
            "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Denmark,11255.0,1167600",
            "speciesId 11255 is outside 0..11,254",
            "species ids are the archive's label ids, 0 to 11,254",
        ),
        (
            "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Denmark,-1.0,1167600",
            "speciesId -1 is outside 0..11,254",
            "species ids are the archive's label ids",
        ),
        (
            "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Denmark,6310.0,",
            "surveyId is empty",
            "every row needs its surveyId",
        ),
        (
            "56.18192,9.67188,2020,10.0,79.0,CONTINENTAL,Denmark,6310.0,1167600",
            "point (lat 9.67188, lon 56.18192) lies outside Europe; lat and lon look swapped",
            "columns lon and lat hold WGS84 decimal degrees within latitudes 25 to 75, "
            "longitudes -35 to 50",
        ),
        (
            "-74.0,40.7,2020,10.0,79.0,CONTINENTAL,Denmark,6310.0,1167600",
            "point (lat 40.7, lon -74.0) lies outside Europe",
            "columns lon and lat hold WGS84 decimal degrees",
        ),
        (
            "inf,40.7,2020,10.0,79.0,CONTINENTAL,Denmark,6310.0,1167600",
            "point (lat 40.7, lon inf) is not a pair of finite numbers",
            "columns lon and lat hold WGS84 decimal degrees",
        ),
        (
            "9.67188,56.18192,2020,10.0,79 m2,CONTINENTAL,Denmark,6310.0,1167600",
            "areaInM2 '79 m2' is not a number",
            "write a number with '.' as decimal mark in column areaInM2, or leave it empty",
        ),
        (
            "9.67188,56.18192,2020.5,10.0,79.0,CONTINENTAL,Denmark,6310.0,1167600",
            "year 2020.5 is not a whole number",
            "write the survey's year",
        ),
        (
            "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Korea, Republic of,6310.0,1167600",
            "row has 10 fields, the header 9",
            "every row needs 9 fields separated by ','; quote a field that holds a comma",
        ),
    ],
)
def test_a_bad_train_row_is_refused_naming_its_line(tmp_path, row, problem, fix):
    rows = [*TRAIN[:4], row, *TRAIN[4:]]  # line 6
    message = _refusal(_archive(tmp_path, rows), tmp_path)
    assert "GLC25_PA_metadata_train.csv, line 6: " in message
    assert problem in message and f"Fix: {fix}" in message


def test_a_test_survey_that_is_also_in_train_is_refused(tmp_path):
    test = [*TEST, "9.67188,56.18192,2020,10.0,79.0,CONTINENTAL,Denmark,1167600"]  # line 5
    message = _refusal(_archive(tmp_path, test=test), tmp_path)
    assert "GLC25_PA_metadata_test.csv, line 5: surveyId 1167600 is also a survey of " in message
    assert "GLC25_PA_metadata_train.csv. Fix: a test survey must not be in train" in message


def test_a_test_survey_on_two_rows_is_refused(tmp_path):
    message = _refusal(_archive(tmp_path, test=[*TEST, TEST[1]]), tmp_path)
    assert "GLC25_PA_metadata_test.csv, line 3: surveyId 642 appears on more than one row" in (
        message
    )
    assert "(lines 3, 5)" in message and "Fix: the test file has one row per survey" in message


def test_missing_columns_are_refused_naming_them(tmp_path):
    header = HEADER.replace("speciesId", "species").replace("lat,", "latitude,")
    message = _refusal(_archive(tmp_path, header=header), tmp_path)
    assert "GLC25_PA_metadata_train.csv, line 1: missing column(s) lat, speciesId" in message
    assert f"Fix: use the archive's file; its header is {HEADER}" in message


def test_a_file_separated_by_semicolons_is_refused(tmp_path):
    rows = [row.replace(",", ";") for row in TRAIN]
    message = _refusal(_archive(tmp_path, rows, header=HEADER.replace(",", ";")), tmp_path)
    assert "GLC25_PA_metadata_train.csv, line 1: columns are separated by ';'" in message
    assert "Fix: save the file with ',' as separator" in message


def test_a_missing_file_is_refused_by_name(tmp_path):
    layout = _archive(tmp_path)
    layout.pa_metadata("test").unlink()
    message = _refusal(layout, tmp_path)
    assert "GLC25_PA_metadata_test.csv: file is missing" in message
    assert "Fix: restore GLC25_PA_metadata_test.csv (the PA test metadata)" in message


def test_the_po_table_has_unique_pairs_and_is_never_joined_with_pa(tmp_path, caplog):
    layout = _archive(tmp_path)
    _write(layout.po_metadata, [PO_HEADER_2025, *PO_2025])
    with caplog.at_level(logging.WARNING):
        counts, tables = _ingest(layout, tmp_path)
    po = tables["po"]
    assert pq.read_schema(tmp_path / "out" / "po.parquet").remove_metadata() == PO_SCHEMA
    # PO survey 1167600 is another survey than PA 1167600: each keeps its own species.
    assert list(po.loc[po["observation_id"] == 1167600, "species_id"]) == [0, 1234]
    assert list(_survey(tables["train"], 1167600)["species_ids"]) == [2885, 6310]
    assert list(po["observation_id"]) == [7, 1167600, 1167600]  # survey 8 had no species
    assert counts["po"] == 3
    assert po["year"].isna().sum() == 0 and po.loc[0, "latitude"] == 52.0
    assert "row(s) without speciesId dropped (line 6)" in caplog.text


def test_the_po_file_of_2024_without_publisher_and_spelt_po_is_read(tmp_path):
    layout = _archive(tmp_path, year=2024)
    header = PO_HEADER_2025.removeprefix("publisher,")
    rows = [row.split(",", 1)[1] for row in PO_2025[:3]]
    _write(layout.root / "GLC24_PO_metadata_train.csv", [header, *rows])  # letter O
    assert _ingest(layout, tmp_path)[0]["po"] == 2


def test_an_archive_without_po_file_gives_an_empty_po_table(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        counts, tables = _ingest(_archive(tmp_path), tmp_path)
    assert counts["po"] == 0 and tables["po"].empty
    assert pq.read_schema(tmp_path / "out" / "po.parquet").remove_metadata() == PO_SCHEMA
    assert "GLC25_P0_metadata_train.csv is not in the archive" in caplog.text


def test_a_bad_po_row_is_refused_naming_its_line(tmp_path):
    layout = _archive(tmp_path)
    bad = "iNaturalist,2020,,,47.2,2.5,25.0,SPECIES,,,12000.0,8"
    _write(layout.po_metadata, [PO_HEADER_2025, *PO_2025, bad])  # line 7
    message = _refusal(layout, tmp_path)
    assert "GLC25_P0_metadata_train.csv, line 7: speciesId 12000 is outside 0..11,254" in message


@pytest.mark.parametrize(
    ("damage", "problem", "fix"),
    [
        (
            lambda text: text.replace("Montenegro", "Crna Gora \u017dabljak").encode("cp1250"),
            "line 7: not UTF-8 text (byte 0x8e)",
            "save the file as UTF-8",
        ),
        (lambda text: gzip.compress(text.encode()), "file is compressed", "unpack it in place"),
        (
            lambda text: text.encode()[:300] + b"\x00" * 64,
            "line 5: file holds NUL bytes",
            "copy the file again from the archive",
        ),
    ],
)
def test_a_damaged_file_is_refused_naming_the_damage(tmp_path, damage, problem, fix):
    layout = _archive(tmp_path)
    path = layout.pa_metadata("train")
    path.write_bytes(damage(path.read_text()))
    message = _refusal(layout, tmp_path)
    assert f"GLC25_PA_metadata_train.csv{',' if 'line' in problem else ':'} {problem}" in message
    assert f"Fix: {fix}" in message
