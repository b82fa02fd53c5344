"""The GLC 2024 and 2025 layouts find the real sample files, with the archives' traps."""

from pathlib import Path

import pytest
from conftest import REPO

from geolifeclef.survey_layout import (
    CUBE_FILE,
    SURVEY_ARCHIVES,
    SurveyLayout,
    patch_subpath,
    resolve,
)

SAMPLES = {
    2024: (REPO.parent / "shared" / "glc24-sample", 1322301, 1621686),
    2025: (REPO.parent / "shared" / "glc25-sample", 1027998, 5000108),
}


@pytest.mark.parametrize("year", sorted(SAMPLES))
def test_every_sample_file_is_where_the_layout_says(year):
    root, train_id, test_id = SAMPLES[year]
    if not root.is_dir():
        pytest.skip(f"{root} is not present (only in the development setup)")
    layout = SurveyLayout(root, SURVEY_ARCHIVES[year])
    for split, survey in (("train", train_id), ("test", test_id)):
        for kind in ("landsat", "bioclim"):
            cube = layout.cube(kind, split, survey)
            assert cube.is_file(), cube
            assert int(CUBE_FILE.search(cube.name).group(1)) == survey
        for bands in layout.names.patch_folders:
            assert layout.patch(split, bands, survey).is_file()


def test_the_landsat_cube_names_differ_between_train_and_test_as_in_the_archives():
    names = SURVEY_ARCHIVES[2024]
    assert names.cube_name("landsat", "train", 7) == "GLC24-PA-train-landsat-time-series_7_cube.pt"
    assert names.cube_name("landsat", "test", 7) == "GLC24-PA-test-landsat_time_series_7_cube.pt"


def test_short_survey_ids_get_a_one_character_second_folder():
    assert patch_subpath(1322301, "jpeg") == Path("01/23/1322301.jpeg")
    assert patch_subpath(642, "jpeg") == Path("42/6/642.jpeg")


def test_a_copy_spelt_otherwise_is_found(tmp_path):
    layout = SurveyLayout(tmp_path, SURVEY_ARCHIVES[2025])
    assert layout.po_metadata.name == "GLC25_P0_metadata_train.csv"
    (tmp_path / "GLC25_PO_metadata_train.csv").write_text("x\n")
    assert resolve(layout.po_metadata) == tmp_path / "GLC25_PO_metadata_train.csv"
    folder = tmp_path / "SatellitePatches" / "PA-train"
    folder.mkdir(parents=True)
    assert resolve(layout.patch_folder("train", "rgbn")) == folder
    assert resolve(tmp_path / "nothing.csv") == tmp_path / "nothing.csv"
