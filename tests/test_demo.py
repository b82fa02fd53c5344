"""The demo generator: deterministic, and in the same formats as the real archive."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import tifffile
from PIL import Image, JpegImagePlugin

from geolifeclef.demo import generate_demo_dataset
from geolifeclef.demo.spec import spec_for
from geolifeclef.demo.truth import SUMMARY_FILE, TRUTH_FILE
from geolifeclef.layout import ENV_VARIABLES, MODALITIES, PATCH_MODALITIES, REGIONS, DatasetLayout
from geolifeclef.patches.files import read_patch


def _digest_tree(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _observation_ids(layout):
    return pd.concat(
        pd.read_csv(p, sep=";", usecols=["observation_id"]) for p in layout.observation_files()
    )["observation_id"].to_numpy()


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tiny_demo, tmp_path):
    layout, truth, _ = tiny_demo
    again = generate_demo_dataset(tmp_path / "a", tmp_path / "ta", spec_for("tiny"), workers=2)
    assert _digest_tree(tmp_path / "a") == _digest_tree(layout.root)
    assert (tmp_path / "ta" / TRUTH_FILE).read_bytes() == (truth / TRUTH_FILE).read_bytes()
    assert again["val"] == json.loads((truth / SUMMARY_FILE).read_text())["val"]
    generate_demo_dataset(tmp_path / "b", tmp_path / "tb", spec_for("tiny", seed=7), workers=1)
    assert _digest_tree(tmp_path / "b") != _digest_tree(layout.root)


def test_observation_csvs_have_the_real_headers_and_separator(tiny_demo, sample_layout):
    layout, _, _ = tiny_demo
    for region in REGIONS:
        for kind in ("train", "test"):
            demo_header = layout.observations(region, kind).read_text().splitlines()[0]
            real_header = sample_layout.observations(region, kind).read_text().splitlines()[0]
            assert demo_header == real_header


def test_observation_ids_are_unique_and_region_coded(tiny_demo):
    layout, _, _ = tiny_demo
    ids = _observation_ids(layout)
    assert len(np.unique(ids)) == len(ids)
    for region, digit in (("fr", 1), ("us", 2)):
        for kind in ("train", "test"):
            frame = pd.read_csv(layout.observations(region, kind), sep=";")
            assert (frame["observation_id"] // 10**7 == digit).all()


def test_patches_match_the_real_formats(tiny_demo, sample_layout):
    layout, _, _ = tiny_demo
    demo_id = int(pd.read_csv(layout.observations("fr", "train"), sep=";")["observation_id"][0])
    real_id = 10823364
    for modality in MODALITIES:
        demo_path, real_path = (
            layout.patch(demo_id, modality),
            sample_layout.patch(real_id, modality),
        )
        assert demo_path.exists(), demo_path
        assert demo_path.relative_to(layout.root).parts[:3] == (
            "patches-fr",
            str(demo_id)[-2:],
            str(demo_id)[-4:-2],
        )
        if modality in ("rgb", "near_ir"):
            with Image.open(demo_path) as demo, Image.open(real_path) as real:
                assert (demo.format, demo.mode) == (real.format, real.mode)
                assert JpegImagePlugin.get_sampling(demo) == JpegImagePlugin.get_sampling(real)
                assert demo.quantization == real.quantization  # same libjpeg quality
                assert demo.info.get("progressive") == real.info.get("progressive")
        else:
            with tifffile.TiffFile(demo_path) as demo, tifffile.TiffFile(real_path) as real:
                assert demo.byteorder == real.byteorder
                demo_page, real_page = demo.pages[0], real.pages[0]
                assert demo_page.dtype == real_page.dtype
                assert demo_page.compression == real_page.compression
                assert demo_page.photometric == real_page.photometric
                for page in (demo_page, real_page):  # strips of 64 KiB, or the whole image
                    height, width = page.shape
                    strip_rows = min(page.rowsperstrip, height)
                    image_bytes = height * width * page.dtype.itemsize
                    assert strip_rows * width * page.dtype.itemsize == min(65536, image_bytes)
                assert demo_page.description == json.dumps({"shape": list(demo_page.shape)})


def test_every_observation_has_its_four_patches(tiny_demo):
    """Each patch file decodes, with the archive's reader, to the size, channels and dtype
    of its modality."""
    layout, _, _ = tiny_demo
    size = spec_for("tiny").patch_size
    for observation_id in _observation_ids(layout):
        for modality in MODALITIES:
            array = read_patch(layout.patch(int(observation_id), modality), modality, size)
            channels = PATCH_MODALITIES[modality].channels
            assert array.shape == ((size, size, channels) if channels > 1 else (size, size))
            assert array.dtype == PATCH_MODALITIES[modality].array_dtype


def test_rasters_are_lzw_geotiffs_in_wgs84_with_nodata_over_the_sea(tiny_demo):
    layout, _, _ = tiny_demo
    for variable in ENV_VARIABLES:
        for region in REGIONS:
            with rasterio.open(layout.raster(variable, region)) as dataset:
                assert dataset.crs.to_epsg() == 4326
                assert dataset.compression.name.lower() == "lzw"
                assert dataset.count == 1 and dataset.nodata is not None
                band = dataset.read(1, masked=True)
                assert 0.05 < band.mask.mean() < 0.6  # sea is masked, land is not
                assert band.compressed().std() > 0


def test_plausible_value_ranges(tiny_demo):
    layout, _, _ = tiny_demo
    with rasterio.open(layout.raster("bio_1", "fr")) as dataset:
        temperature = dataset.read(1, masked=True).compressed()
    assert temperature.min() > -15 and temperature.max() < 30
    with rasterio.open(layout.raster("phihox", "us")) as dataset:
        assert dataset.dtypes[0] == "int16"
        ph = dataset.read(1, masked=True).compressed()
    assert ph.min() >= 40 and ph.max() <= 85


def test_environmental_vectors_cover_every_observation(tiny_demo):
    layout, _, _ = tiny_demo
    vectors = pd.read_csv(layout.environmental_vectors, sep=";")
    assert list(vectors.columns) == ["observation_id", *ENV_VARIABLES]
    assert sorted(vectors["observation_id"]) == sorted(_observation_ids(layout))


def test_truth_is_a_distribution_and_bayes_beats_the_constant_predictor(tiny_demo):
    _, truth, summary = tiny_demo
    with np.load(truth / TRUTH_FILE) as stored:
        probabilities = stored["probabilities"]
        assert set(stored["subset"]) == {"val", "test"}
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    for subset in ("val", "test"):
        bayes = summary[subset]["bayes_top30_error_expected"]
        constant = summary[subset]["constant_top30_error_expected"]
        assert 0 <= bayes < constant <= 1


def test_spatial_split_separates_test_from_train(tiny_demo):
    layout, _, _ = tiny_demo
    spec = spec_for("tiny")
    frames = []
    for region in REGIONS:
        train = pd.read_csv(layout.observations(region, "train"), sep=";")
        test = pd.read_csv(layout.observations(region, "test"), sep=";").assign(subset="test")
        frames += [train, test]
    frame = pd.concat(frames)
    block = (
        np.floor(frame["latitude"] / spec.block_size).astype(int).astype(str)
        + "/"
        + np.floor(frame["longitude"] / spec.block_size).astype(int).astype(str)
    )
    test_blocks = set(block[frame["subset"].to_numpy() == "test"])
    train_blocks = set(block[frame["subset"].to_numpy() == "train"])
    assert test_blocks and not (test_blocks & train_blocks)


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="unknown demo scale"):
        spec_for("huge")


def test_layout_is_the_same_for_demo_and_sample(tiny_demo, sample_layout):
    layout, _, _ = tiny_demo
    for path in sample_layout.root.rglob("*"):
        if path.is_file():
            relative = path.relative_to(sample_layout.root)
            assert relative.parts[0] in {"observations", "patches-fr", "patches-us"}
            assert (layout.root / relative.parts[0]).is_dir()
    # The demo also has what the sample leaves out, at the documented places.
    assert DatasetLayout(layout.root).species_details.is_file()
    assert DatasetLayout(layout.root).landcover_suggested_alignment.is_file()
