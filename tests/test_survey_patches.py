"""The Sentinel-2 patches of the GLC 2024 (RGB + NIR JPEGs, 128 px) and 2025 (4-band int16
GeoTIFF, 64 px, nodata -1) surveys in the 2022 patch stores: the real sample files and
synthetic ones are cached unchanged by both stores, and a bad file is refused or filled as
for 2022."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import tifffile
from conftest import REPO
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from geolifeclef.layout import ALL_PATCH_MODALITIES, MODALITIES, PATCH_MODALITIES
from geolifeclef.patches.cache import build_patch_cache, open_patch_cache
from geolifeclef.patches.files import PatchFileError, read_patch, write_patch
from geolifeclef.patches.geometry import transform_batch, transform_patch
from geolifeclef.patches.store import STORES, CacheSpec
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyLayout

SAMPLES = {
    2024: (REPO.parent / "shared" / "glc24-sample", 1322301, 1621686),
    2025: (REPO.parent / "shared" / "glc25-sample", 1027998, 5000108),
}
MODALITIES_OF = {2024: ("s2_rgb", "s2_nir"), 2025: ("s2",)}
SOURCE_SIZE = {2024: 128, 2025: 64}


def sample(year: int) -> tuple[SurveyLayout, int, int]:
    root, train_id, test_id = SAMPLES[year]
    if not root.is_dir():
        pytest.skip(f"{root} is not present (only in the development setup)")
    return SurveyLayout(root, SURVEY_ARCHIVES[year]), train_id, test_id


def surveys(ids) -> pd.DataFrame:
    """What the cache build reads of a survey table (no species_id: null in the index)."""
    ids = np.asarray(ids, dtype=np.int64)
    return pd.DataFrame(
        {"observation_id": ids, "latitude": 50.0 + ids % 7, "longitude": 4.0 + ids % 5}
    )


def file_pixels(path: Path, modality: str) -> np.ndarray:
    """A patch file as (C, H, W), read by another library than the stores use: PIL for
    the JPEGs, rasterio (GDAL) for the GeoTIFF."""
    if ALL_PATCH_MODALITIES[modality].codec == "jpeg":
        with Image.open(path) as image:
            array = np.asarray(image)
        return array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the synthetic files
        with rasterio.open(path) as dataset:
            return dataset.read()


def write_geotiff(path: Path, chw: np.ndarray) -> None:
    """A 2025-style patch: int16 bands interleaved, LZW (the sample's settings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path,
        np.ascontiguousarray(chw.transpose(1, 2, 0)),
        photometric="minisblack",
        planarconfig="contig",
        compression="lzw",
        extrasamples=[0] * (chw.shape[0] - 1),
    )


def synthetic(tmp_path: Path, year: int, split: str, ids) -> SurveyLayout:
    """Patch files of ``ids`` where the archive keeps them; pixels tell surveys apart, and
    the 2025 ones have nodata (-1) pixels, a whole 4 x 4 block of them in survey ids[0]."""
    layout = SurveyLayout(tmp_path / f"glc{year}", SURVEY_ARCHIVES[year])
    size = SOURCE_SIZE[year]
    for survey in ids:
        rng = np.random.default_rng(survey)
        if year == 2024:
            write_patch(
                layout.patch(split, "rgb", survey), "s2_rgb", rng.integers(0, 256, (size, size, 3))
            )
            write_patch(
                layout.patch(split, "nir", survey), "s2_nir", rng.integers(0, 256, (size, size))
            )
        else:
            bands = rng.integers(200, 5400, (4, size, size)).astype(np.int16)
            bands[:, rng.random((size, size)) < 0.05] = -1
            if survey == ids[0]:
                bands[:, :4, :4] = -1  # a block without data
                bands[:, 4, 8] = -1  # and one with some
            write_geotiff(layout.patch(split, "rgbn", survey), bands)
    return layout


def assert_cache_holds_the_files(cache_dir, files, ids, modalities, size, mode) -> None:
    cache = open_patch_cache(cache_dir)
    np.testing.assert_array_equal(cache.index["observation_id"], ids)
    assert cache.modalities == tuple(modalities)
    for modality in modalities:
        array = cache.read(modality)
        assert array.dtype == ALL_PATCH_MODALITIES[modality].array_dtype
        expected = np.stack(
            [
                transform_batch(
                    file_pixels(files.patch(i, modality), modality)[None], modality, size, mode
                )[0]
                for i in ids
            ]
        )
        np.testing.assert_array_equal(array, expected)


# -- the real sample files ---------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("year", sorted(SAMPLES))
def test_the_real_sample_patches_are_cached_unchanged(year, store, tmp_path):
    layout, train_id, test_id = sample(year)
    for split, survey in (("train", train_id), ("test", test_id)):
        files = layout.patch_files(split)
        spec = CacheSpec(
            size=SOURCE_SIZE[year], mode="crop", modalities=MODALITIES_OF[year], store=store
        )
        out = tmp_path / split
        report = build_patch_cache(files, surveys([survey]), out, spec, progress=False)
        assert report.source_size == SOURCE_SIZE[year] and not report.bad_files
        assert_cache_holds_the_files(
            out, files, [survey], MODALITIES_OF[year], SOURCE_SIZE[year], "crop"
        )


def test_the_real_2025_patch_has_four_int16_bands_read_as_gdal_reads_them(tmp_path):
    layout, _, test_id = sample(2025)
    files = layout.patch_files("test")
    pixels = read_patch(files.patch(test_id, "s2"), "s2")
    assert pixels.shape == (64, 64, 4) and pixels.dtype == np.int16
    with rasterio.open(files.patch(test_id, "s2")) as dataset:
        assert dataset.nodata == ALL_PATCH_MODALITIES["s2"].nodata == -1
        assert dataset.descriptions == ("red", "green", "blue", "nir")
        np.testing.assert_array_equal(pixels.transpose(2, 0, 1), dataset.read())


def test_the_real_2024_patches_resized_equal_their_files_block_averaged(tmp_path):
    layout, train_id, _ = sample(2024)
    files = layout.patch_files("val")  # val surveys: the archive's train folders
    spec = CacheSpec(size=32, mode="resize", modalities=("s2_rgb", "s2_nir"), store="encoded")
    build_patch_cache(files, surveys([train_id]), tmp_path / "val", spec, progress=False)
    cache = open_patch_cache(tmp_path / "val")
    for modality in ("s2_rgb", "s2_nir"):
        source = read_patch(files.patch(train_id, modality), modality)
        expected = transform_patch(source, modality, 32, "resize")
        np.testing.assert_array_equal(cache.read(modality)[0], expected)
        assert cache.read(modality).shape == (1, ALL_PATCH_MODALITIES[modality].channels, 32, 32)


# -- synthetic files ---------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("year", [2024, 2025])
def test_both_stores_hold_the_survey_patches_in_the_order_of_the_table(year, store, tmp_path):
    ids = [642, 1_322_301, 5_000_108, 88_001, 3_919_655, 10_203]
    files = synthetic(tmp_path, year, "test", ids).patch_files("test")
    order = [3_919_655, 642, 10_203, 1_322_301, 88_001]
    spec = CacheSpec(
        size=SOURCE_SIZE[year], mode="crop", modalities=MODALITIES_OF[year], store=store
    )
    report = build_patch_cache(
        files, surveys(order), tmp_path / "cache", spec, workers=2, chunk_rows=2, progress=False
    )
    assert report.built_chunks == 3 and not report.bad_files
    assert files.patch(642, MODALITIES_OF[year][0]).parent.name == "6"  # 42/6/642
    assert_cache_holds_the_files(
        tmp_path / "cache", files, order, MODALITIES_OF[year], SOURCE_SIZE[year], "crop"
    )


@pytest.mark.parametrize("store", STORES)
def test_nodata_is_kept_as_in_the_file_and_left_out_of_resized_means(store, tmp_path):
    ids = [7, 8]
    files = synthetic(tmp_path, 2025, "train", ids).patch_files("train")
    spec = CacheSpec(size=16, mode="resize", modalities=("s2",), store=store)
    build_patch_cache(files, surveys(ids), tmp_path / "cache", spec, progress=False)
    resized = open_patch_cache(tmp_path / "cache").read("s2")
    source = file_pixels(files.patch(7, "s2"), "s2").astype(np.int64)
    assert (resized[0, :, 0, 0] == -1).all()  # a block with no data stays nodata
    block = source[:, 4:8, 8:12]
    valid = block != -1
    assert not valid.all()
    sums, counts = np.where(valid, block, 0).sum(axis=(1, 2)), valid.sum(axis=(1, 2))
    np.testing.assert_array_equal(resized[0, :, 1, 2], (sums + counts // 2) // counts)
    assert (resized >= -1).all() and ((resized == -1) | (resized >= 200)).all()


def test_without_nodata_the_resize_is_the_2022_block_mean():
    rng = np.random.default_rng(3)
    bands = rng.integers(0, 9000, (2, 4, 64, 64)).astype(np.int16)
    ours = transform_batch(bands, "s2", 16, "resize")
    for band in range(4):  # altitude: an int16 quantity without nodata, 2022's path
        altitude = transform_batch(bands[:, band : band + 1], "altitude", 16, "resize")
        np.testing.assert_array_equal(ours[:, band : band + 1], altitude)


# -- bad files ---------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_a_missing_or_damaged_survey_patch_is_refused_naming_it_and_the_fix(store, tmp_path):
    ids = [11, 12, 13]
    layout = synthetic(tmp_path, 2025, "test", ids)
    files = layout.patch_files("test")
    files.patch(12, "s2").unlink()
    damaged = files.patch(13, "s2")
    damaged.write_bytes(damaged.read_bytes()[:300])
    spec = CacheSpec(size=64, mode="crop", modalities=("s2",), store=store)
    with pytest.raises(PatchFileError) as caught:
        build_patch_cache(files, surveys(ids), tmp_path / "cache", spec, progress=False)
    message = str(caught.value)
    assert f"{files.patch(12, 's2')} (file is missing)" in message
    assert f"{damaged} (unreadable" in message
    assert "restore the file from the archive, or set patches.on_bad_file: fill" in message
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("store", STORES)
def test_bad_survey_patches_are_filled_with_zeros_and_flagged_when_asked(store, tmp_path):
    ids = [21, 22, 23]
    files = synthetic(tmp_path, 2024, "train", ids).patch_files("train")
    files.patch(22, "s2_nir").unlink()
    Image.new("L", (128, 128)).save(files.patch(23, "s2_rgb"), format="JPEG")  # grey, not RGB
    spec = CacheSpec(
        size=128, mode="crop", modalities=("s2_rgb", "s2_nir"), store=store, on_bad_file="fill"
    )
    report = build_patch_cache(files, surveys(ids), tmp_path / "cache", spec, progress=False)
    assert sorted((b.observation_id, b.modality) for b in report.bad_files) == [
        (22, "s2_nir"),
        (23, "s2_rgb"),
    ]
    assert "JPEG mode L, expected RGB" in {b.problem for b in report.bad_files}
    cache = open_patch_cache(tmp_path / "cache")
    assert cache.index["filled_s2_nir"].tolist() == [False, True, False]
    assert cache.index["filled_s2_rgb"].tolist() == [False, False, True]
    assert not cache.read("s2_nir")[1].any() and not cache.read("s2_rgb")[2].any()
    np.testing.assert_array_equal(
        cache.read("s2_nir")[0], file_pixels(files.patch(21, "s2_nir"), "s2_nir")
    )


@pytest.mark.parametrize("store", STORES)
def test_a_patch_of_the_other_edition_is_refused(store, tmp_path):
    files = synthetic(tmp_path, 2025, "test", [30, 31, 32]).patch_files("test")
    # the 2024 NIR JPEG under the 2025 name; a 3-band TIFF
    write_patch(files.patch(31, "s2"), "s2_nir", np.zeros((64, 64), np.uint8))
    write_geotiff(files.patch(32, "s2"), np.zeros((3, 64, 64), np.int16))
    spec = CacheSpec(size=64, mode="crop", modalities=("s2",), store=store)
    with pytest.raises(PatchFileError) as caught:
        build_patch_cache(files, surveys([30, 31, 32]), tmp_path / "cache", spec, progress=False)
    message = str(caught.value)
    assert f"{files.patch(31, 's2')} (a JPEG image, not a TIFF: s2 patches are TIFF" in message
    assert f"{files.patch(32, 's2')} (shape (64, 64, 3), expected 4 bands)" in message


# -- the files' places -------------------------------------------------------------------


def test_survey_patch_files_are_where_the_archives_keep_them(tmp_path):
    files = SurveyLayout(tmp_path, SURVEY_ARCHIVES[2024]).patch_files("val")
    assert files.modalities == ("s2_rgb", "s2_nir")
    assert files.patch(642, "s2_nir") == (
        tmp_path / "PA_Train_SatellitePatches_NIR/pa_train_patches_nir/42/6/642.jpeg"
    )
    with pytest.raises(ValueError, match="this archive has \\['s2_rgb', 's2_nir'\\]"):
        files.patch(642, "s2")
    # in bulk, as the change check asks for them: the same paths
    ids = [642, 1322301, 5_000_108]
    assert files.patch_paths(ids, "s2_rgb") == [str(files.patch(i, "s2_rgb")) for i in ids]
    # a copy spelling GLC 2025's Satelite with two l's is found
    (tmp_path / "SatellitePatches" / "PA-test").mkdir(parents=True)
    files = SurveyLayout(tmp_path, SURVEY_ARCHIVES[2025]).patch_files("test")
    assert files.patch(5_000_108, "s2") == tmp_path / "SatellitePatches/PA-test/08/01/5000108.tiff"


def test_the_2022_modalities_are_unchanged():
    assert MODALITIES == ("rgb", "near_ir", "altitude", "landcover")
    assert tuple(PATCH_MODALITIES) == MODALITIES
    assert CacheSpec().modalities == MODALITIES
    assert all(ALL_PATCH_MODALITIES[m] is PATCH_MODALITIES[m] for m in MODALITIES)
