"""Packing the GLC 2024/2025 time-series cubes: the real sample files decode unchanged,
the packed rows equal the files in the order of the ids, the archives' spelling traps are
handled, and every file that cannot be used is refused by name with its fix."""

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from geolifeclef.data import cubes
from geolifeclef.data.cubes import CubeFileError, open_cubes, pack_cubes, read_cube
from geolifeclef.errors import InputDataError, OutputWriteError
from geolifeclef.survey_layout import CUBE_SHAPES, SURVEY_ARCHIVES, SurveyLayout

SAMPLES = {
    2024: (REPO.parent / "shared" / "glc24-sample", 1322301, 1621686),
    2025: (REPO.parent / "shared" / "glc25-sample", 1027998, 5000108),
}


def sample(year: int) -> tuple[SurveyLayout, int, int]:
    root, train_id, test_id = SAMPLES[year]
    if not root.is_dir():
        pytest.skip(f"{root} is not present (only in the development setup)")
    return SurveyLayout(root, SURVEY_ARCHIVES[year]), train_id, test_id


def cube_values(survey: int, kind: str) -> torch.Tensor:
    """A cube whose values tell its survey and position apart."""
    size = int(np.prod(CUBE_SHAPES[kind]))
    values = survey * 10_000 + np.arange(size) + (0.5 if kind == "bioclim" else 0.25)
    return torch.from_numpy(values.astype(np.float32).reshape(CUBE_SHAPES[kind]))


def synthetic(tmp_path: Path, year: int, split: str, ids, value=cube_values) -> SurveyLayout:
    """A cube folder per kind holding ``ids``' cubes under the archive's own names."""
    layout = SurveyLayout(tmp_path / f"glc{year}", SURVEY_ARCHIVES[year])
    for kind in CUBE_SHAPES:
        for survey in ids:
            path = layout.cube(kind, split, survey)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(value(survey, kind), path)
    return layout


def packed_equals_files(folder: Path, layout: SurveyLayout, split: str, ids) -> None:
    packed = open_cubes(folder)
    assert packed.index["observation_id"].tolist() == list(ids)
    assert packed.index["row"].tolist() == list(range(len(ids)))
    for kind in CUBE_SHAPES:
        array = getattr(packed, kind)
        assert array.dtype == np.float32 and array.shape == (len(ids), *CUBE_SHAPES[kind])
        for row, survey in enumerate(ids):
            expected = torch.load(layout.cube(kind, split, survey), weights_only=True).numpy()
            np.testing.assert_array_equal(array[row], expected)


# -- the real sample files --------------------------------------------------------------


@pytest.mark.parametrize("year", sorted(SAMPLES))
def test_the_real_sample_cubes_are_packed_unchanged(year, tmp_path):
    layout, train_id, test_id = sample(year)
    for split, survey in (("train", train_id), ("test", test_id)):
        for kind, shape in CUBE_SHAPES.items():
            cube = read_cube(layout.cube(kind, split, survey), kind)
            assert cube.dtype == np.float32 and cube.shape == shape
        report = pack_cubes(layout, split, np.array([survey]), tmp_path / split, progress=False)
        assert report.n == 1 and report.missing == {"landsat": 0, "bioclim": 0}
        packed_equals_files(tmp_path / split, layout, split, [survey])
        assert (
            not open_cubes(tmp_path / split)
            .index[["missing_landsat", "missing_bioclim"]]
            .any(axis=None)
        )


def test_val_surveys_are_read_from_the_archives_train_cubes(tmp_path):
    layout, train_id, _ = sample(2024)
    pack_cubes(layout, "val", np.array([train_id]), tmp_path / "val", progress=False)
    packed_equals_files(tmp_path / "val", layout, "train", [train_id])


def test_the_packed_arrays_open_as_plain_npy_memory_maps(tmp_path):
    layout, _, test_id = sample(2025)
    pack_cubes(layout, "test", np.array([test_id]), tmp_path / "test", progress=False)
    landsat = np.load(tmp_path / "test" / "landsat.npy", mmap_mode="r")
    assert isinstance(landsat, np.memmap) and landsat.shape == (1, 6, 4, 21)


# -- synthetic folders: order, workers, spelling traps -----------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_rows_follow_the_order_of_the_ids_given(tmp_path, monkeypatch, workers):
    ids = [5_017, 642, 3_919_655, 88, 1_322_301, 7, 10_001]
    layout = synthetic(tmp_path, 2024, "train", ids)
    monkeypatch.setattr(cubes, "CHUNK_ROWS", 2)  # four chunks, over two processes
    order = [3_919_655, 7, 642, 10_001, 88, 5_017]  # a subset, shuffled: 1322301 not asked
    report = pack_cubes(layout, "train", np.array(order), tmp_path / "out", workers=workers)
    assert report.n == len(order)
    packed_equals_files(tmp_path / "out", layout, "train", order)


@pytest.mark.parametrize("year", [2024, 2025])
def test_train_and_test_cube_names_are_matched_whatever_their_spelling(tmp_path, year):
    layout = synthetic(tmp_path, year, "test", [11, 12])
    layout = synthetic(tmp_path, year, "train", [21, 22])
    # the archive's traps: hyphens in train, underscores in test (GLC24 train: in a folder
    # spelt with underscores)
    train_file = layout.cube("landsat", "train", 21)
    assert "landsat-time-series_21" in train_file.name
    assert "landsat_time_series_11" in layout.cube("landsat", "test", 11).name
    if year == 2024:
        assert train_file.parent.name == "GLC24-PA-train-landsat_time_series"
    # a copy renamed to underscores is matched by the survey id all the same
    train_file.rename(train_file.with_name(train_file.name.replace("-time-series", "_time_series")))
    for split, ids in (("train", [22, 21]), ("test", [12, 11])):
        pack_cubes(layout, split, np.array(ids), tmp_path / split, progress=False)
        packed = open_cubes(tmp_path / split)
        for row, survey in enumerate(ids):
            np.testing.assert_array_equal(packed.landsat[row], cube_values(survey, "landsat"))
            np.testing.assert_array_equal(packed.bioclim[row], cube_values(survey, "bioclim"))


def test_a_copy_with_one_level_of_the_doubled_folder_is_found(tmp_path):
    layout = synthetic(tmp_path, 2024, "train", [31])
    doubled = layout.root / "TimeSeries-Cubes" / "TimeSeries-Cubes"
    for folder in list(doubled.iterdir()):
        folder.rename(layout.root / "TimeSeries-Cubes" / folder.name)
    doubled.rmdir()
    pack_cubes(layout, "train", np.array([31]), tmp_path / "out", progress=False)
    np.testing.assert_array_equal(
        open_cubes(tmp_path / "out").landsat[0], cube_values(31, "landsat")
    )


def test_nan_inside_a_cube_is_kept_and_counted(tmp_path):
    def with_nan(survey, kind):
        cube = cube_values(survey, kind)
        if survey == 2 and kind == "landsat":
            cube[0, 1, :3] = float("nan")
        return cube

    layout = synthetic(tmp_path, 2025, "train", [1, 2, 3], with_nan)
    report = pack_cubes(layout, "train", np.array([1, 2, 3]), tmp_path / "out", progress=False)
    assert report.nan_values == {"landsat": 3, "bioclim": 0}
    assert report.nan_cubes == {"landsat": 1, "bioclim": 0}
    packed = open_cubes(tmp_path / "out")
    assert np.isnan(packed.landsat[1, 0, 1, :3]).all()
    assert np.isnan(packed.landsat).sum() == 3
    assert not packed.index["missing_landsat"].any()


# -- missing cubes ----------------------------------------------------------------------


def test_a_missing_cube_is_refused_naming_the_survey_and_the_file_expected(tmp_path):
    layout = synthetic(tmp_path, 2024, "test", [1, 2])
    with pytest.raises(InputDataError) as caught:
        pack_cubes(layout, "test", np.array([1, 2, 642]), tmp_path / "out", progress=False)
    expected = layout.cube("landsat", "test", 642)
    assert caught.value.path == expected
    message = str(caught.value)
    assert str(expected) in message and "survey 642" in message
    assert "1 landsat (surveys 642), 1 bioclim (surveys 642)" in message
    assert "copy the missing cube files from the archive" in message
    assert "on_missing='fill'" in message
    assert not (tmp_path / "out").exists()


def test_missing_cubes_are_filled_with_nan_and_flagged_when_asked(tmp_path, caplog):
    layout = synthetic(tmp_path, 2025, "test", [1, 2, 3])
    layout.cube("bioclim", "test", 2).unlink()
    report = pack_cubes(
        layout, "test", np.array([3, 2, 1, 9]), tmp_path / "out", on_missing="fill", progress=False
    )
    assert report.missing == {"landsat": 1, "bioclim": 2}
    assert report.nan_values == {"landsat": 0, "bioclim": 0}  # counted apart from NaN read
    packed = open_cubes(tmp_path / "out")
    assert packed.index["missing_landsat"].tolist() == [False, False, False, True]
    assert packed.index["missing_bioclim"].tolist() == [False, True, False, True]
    assert np.isnan(packed.bioclim[[1, 3]]).all() and np.isnan(packed.landsat[3]).all()
    np.testing.assert_array_equal(packed.landsat[1], cube_values(2, "landsat"))
    np.testing.assert_array_equal(packed.bioclim[2], cube_values(1, "bioclim"))
    assert "2 test surveys have no bioclim cube" in caplog.text


def test_a_missing_cube_folder_is_refused_naming_it(tmp_path):
    layout = synthetic(tmp_path, 2025, "train", [1])
    shutil.rmtree(layout.cube_folder("bioclim", "train"))
    with pytest.raises(InputDataError) as caught:
        pack_cubes(layout, "train", np.array([1]), tmp_path / "out", on_missing="fill")
    assert caught.value.path == layout.cube_folder("bioclim", "train")
    assert "BioclimTimeSeries/cubes/PA-train under" in str(caught.value)


def test_two_files_for_one_survey_are_refused(tmp_path):
    layout = synthetic(tmp_path, 2024, "test", [5])
    path = layout.cube("landsat", "test", 5)
    shutil.copy(path, path.with_name(path.name.replace("_time_series", "-time-series")))
    with pytest.raises(InputDataError, match="a second cube file for survey 5") as caught:
        pack_cubes(layout, "test", np.array([5]), tmp_path / "out", progress=False)
    assert "keep the archive's file and remove the other" in str(caught.value)


# -- files that cannot be used ----------------------------------------------------------


class NotATensor:
    pass


def damage(path: Path, how: str) -> str:
    """Damage one cube file; the problem its refusal must state."""
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "not a readable torch file: cut short or corrupt (RuntimeError: PytorchStreamReader"
    if how == "empty":
        path.write_bytes(b"")
        return "empty file"
    if how == "garbage":
        path.write_bytes(os.urandom(3000))
        return "not a torch zip file: corrupt, or another kind of file"
    if how == "pickled object":  # weights_only refuses to unpickle it
        torch.save(NotATensor(), path)
        return "holds objects other than tensors (refused unread)"
    if how == "dict":
        torch.save({"cube": torch.zeros(6, 4, 21)}, path)
        return "holds a dict, not a tensor"
    if how == "wrong shape":
        torch.save(torch.zeros(6, 4, 20), path)
        return "shape (6, 4, 20), expected (6, 4, 21) for a landsat cube"
    if how == "bioclim in the landsat folder":
        torch.save(cube_values(1, "bioclim"), path)
        return "shape (4, 19, 12), expected (6, 4, 21) for a landsat cube"
    raise AssertionError(how)


HOW = ("truncated", "empty", "garbage", "pickled object", "dict", "wrong shape")


@pytest.mark.parametrize("how", [*HOW, "bioclim in the landsat folder"])
def test_a_cube_file_that_cannot_be_used_is_refused_naming_it_and_the_fix(tmp_path, how):
    layout = synthetic(tmp_path, 2024, "train", [1, 2, 3])
    path = layout.cube("landsat", "train", 2)
    problem = damage(path, how)
    with pytest.raises(CubeFileError) as caught:
        pack_cubes(layout, "train", np.array([1, 2, 3]), tmp_path / "out", progress=False)
    message = str(caught.value)
    assert caught.value.path == path
    assert message.startswith(f"{path}: {problem}")
    assert "Fix: re-copy it from the archive" in message
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_every_bad_file_is_listed_after_all_were_read_and_the_old_output_kept(
    tmp_path, monkeypatch
):
    ids = list(range(1, 9))
    layout = synthetic(tmp_path, 2025, "test", ids)
    output = tmp_path / "out"
    pack_cubes(layout, "test", np.array(ids), output, progress=False)
    before = (output / "landsat.npy").read_bytes()
    bad = [layout.cube("landsat", "test", 2), layout.cube("bioclim", "test", 7)]
    damage(bad[0], "truncated")
    damage(bad[1], "dict")
    monkeypatch.setattr(cubes, "CHUNK_ROWS", 3)
    with pytest.raises(CubeFileError) as caught:
        pack_cubes(layout, "test", np.array(ids), output, workers=2, progress=False)
    message = str(caught.value)
    assert message.startswith(f"{sorted(bad)[0]}: 2 cube files cannot be used: ")
    assert all(str(path) in message for path in bad)
    assert "Fix: re-copy them from the archive" in message
    assert (output / "landsat.npy").read_bytes() == before


def test_a_full_disk_names_the_cube_array_and_the_free_space(small_disk):
    """The rows are written, not through a memory map, whose write on a full disk kills
    the process with a bare "Bus error"; given room, the same call packs them all."""
    disk, remount = small_disk
    ids = list(range(100, 200))  # 5.7 kB a survey: more than the disk's 256 kB
    layout = synthetic(disk.parent, 2024, "train", ids)
    with pytest.raises(OutputWriteError) as refused:
        pack_cubes(layout, "train", np.array(ids), disk / "cubes", progress=False)
    message = str(refused.value)
    assert refused.value.errno == errno.ENOSPC
    assert message.startswith(f"[Errno 28] {disk}/") and ".npy: No space left" in message
    assert " kB free there. Fix: free space on that disk" in message, message
    assert not (disk / "cubes").exists()  # nothing half-written under the output's name
    remount("2m")
    pack_cubes(layout, "train", np.array(ids), disk / "cubes", progress=False)
    packed_equals_files(disk / "cubes", layout, "train", ids)
