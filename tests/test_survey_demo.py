"""The GLC 2024/2025 survey demo: every file where SurveyLayout says, in the real formats,
deterministic, with a truth that matches its labels and a signal to learn."""

import hashlib
import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from conftest import REPO
from PIL import Image, JpegImagePlugin
from rasterio.warp import transform as warp_transform

from geolifeclef.demo.surveys import (
    SOLUTION_FILE,
    SUMMARY_FILE,
    TRUTH_FILE,
    WORLD_FILE,
    generate_survey_demo,
    read_world,
    survey_spec_for,
    true_presence_probabilities,
)
from geolifeclef.demo.surveys.spec import HELD_OUT_COUNTRIES, SurveyDemoSpec
from geolifeclef.demo.surveys.species import draw_presences
from geolifeclef.demo.surveys.world import BIOGEOGRAPHIC_REGIONS
from geolifeclef.survey_layout import (
    CUBE_FILE,
    CUBE_SHAPES,
    N_LABEL_SLOTS,
    SURVEY_ARCHIVES,
    SURVEY_SPLITS,
    VALUE_FAMILIES,
    SurveyLayout,
)

YEARS = (2024, 2025)
SAMPLES = {
    2024: (REPO.parent / "shared" / "glc24-sample", 1322301),
    2025: (REPO.parent / "shared" / "glc25-sample", 1027998),
}
PA_COLUMNS = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId"


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> dict:
    """The tiny survey demo of each year: {year: (layout, truth folder, summary)}."""
    base = tmp_path_factory.mktemp("survey-demo")
    result = {}
    for year in YEARS:
        spec = survey_spec_for("tiny", year=year)
        summary = generate_survey_demo(base / f"{year}", base / f"truth{year}", spec, workers=1)
        result[year] = (
            SurveyLayout(base / f"{year}", SURVEY_ARCHIVES[year]),
            base / f"truth{year}",
            summary,
        )
    return result


def _metadata(layout: SurveyLayout) -> dict[str, pd.DataFrame]:
    return {split: pd.read_csv(layout.pa_metadata(split)) for split in SURVEY_SPLITS}


def _labels(train: pd.DataFrame) -> dict[int, np.ndarray]:
    pairs = train[["surveyId", "speciesId"]].drop_duplicates()
    return {
        int(survey): np.sort(group["speciesId"].to_numpy().astype(np.int64))
        for survey, group in pairs.groupby("surveyId")
    }


def _solution(truth) -> pd.DataFrame:
    return pd.read_csv(truth / SOLUTION_FILE, dtype={"predictions": str}, keep_default_na=False)


def _values(layout: SurveyLayout, split: str) -> pd.DataFrame:
    """The five values CSVs of a split joined on surveyId (columns selected by name)."""
    frames = []
    for family in VALUE_FAMILIES:
        frame = pd.read_csv(layout.values(family, split))
        frames.append(
            frame.drop(columns=[c for c in frame if c.startswith("Unnamed")]).set_index("surveyId")
        )
    return pd.concat(frames, axis=1)


def _expected_files(layout: SurveyLayout, metadata: dict[str, pd.DataFrame]) -> set:
    files = {layout.po_metadata, layout.sample_submission}
    for split in SURVEY_SPLITS:
        files.add(layout.pa_metadata(split))
        files.update(layout.values_files(split))
        for survey in metadata[split]["surveyId"].unique():
            files.update(layout.patch(split, bands, survey) for bands in layout.names.patch_folders)
            files.update(layout.cube(kind, split, survey) for kind in CUBE_SHAPES)
    return files


@pytest.mark.parametrize("year", YEARS)
def test_exactly_the_files_of_the_layout_are_written(demos, year):
    layout, _, _ = demos[year]
    written = {p for p in layout.root.rglob("*") if p.is_file()}
    assert written == _expected_files(layout, _metadata(layout))
    # A 3-digit test survey id lands in a one-character second folder.
    test_ids = set(_metadata(layout)["test"]["surveyId"])
    assert 642 in test_ids
    bands = next(iter(layout.names.patch_folders))
    assert layout.patch("test", bands, 642).relative_to(layout.patch_folder("test", bands)).parts[
        :2
    ] == ("42", "6")


@pytest.mark.parametrize("year", YEARS)
def test_metadata_has_the_archives_columns_and_cell_forms(demos, year):
    layout, _, _ = demos[year]
    lines = layout.pa_metadata("train").read_text().splitlines()
    assert lines[0] == PA_COLUMNS
    assert all(re.fullmatch(r"\d+\.0", line.split(",")[7]) for line in lines[1:])  # 6310.0
    areas = [line.split(",")[4] for line in lines[1:]]
    assert "" in areas and "-inf" in areas
    assert "" in [line.split(",")[3] for line in lines[1:]]
    metadata = _metadata(layout)
    train, test = metadata["train"], metadata["test"]
    assert train.duplicated(["surveyId", "speciesId"]).any()  # readers deduplicate
    assert ",".join(test.columns) == PA_COLUMNS.replace("speciesId,", "")
    assert test["surveyId"].is_unique and test["surveyId"].is_monotonic_increasing
    assert not set(test["surveyId"]) & set(train["surveyId"])
    assert set(train["region"]) <= set(BIOGEOGRAPHIC_REGIONS) and train["region"].nunique() >= 3
    assert train["country"].nunique() >= 5 and train["year"].between(2017, 2021).all()
    species = np.unique(train["speciesId"].astype(np.int64))
    assert species.min() >= 0 and species.max() < N_LABEL_SLOTS
    assert (np.diff(species) > 1).any()  # a random subset of the ids, not 0..S-1
    assert train["surveyId"].between(212, 3_919_655).all()
    po = pd.read_csv(layout.po_metadata)
    expected = (
        "year,month,day,lat,lon,geoUncertaintyInM,taxonRank,date,dayOfYear,speciesId,surveyId"
    )
    assert ",".join(po.columns) == ("publisher," if year == 2025 else "") + expected
    assert po["surveyId"].between(1, 3_919_662).all() and len(po) == survey_spec_for("tiny").n_po
    assert set(po["surveyId"]) & set(train["surveyId"])  # as in the archive: never join them
    assert not set(po["surveyId"]) & set(test["surveyId"])
    assert po["month"].isna().any() and po["speciesId"].isin(species).mean() > 0.5
    sample = pd.read_csv(layout.sample_submission)
    assert list(sample.columns) == ["surveyId", "predictions"]
    assert sample["surveyId"].tolist() == test["surveyId"].tolist()
    assert sample["predictions"].str.split().map(len).eq(25).all()


@pytest.mark.parametrize("year", YEARS)
def test_values_csvs_have_the_archives_columns_with_lost_cells(demos, year):
    layout, _, _ = demos[year]
    metadata = _metadata(layout)
    human_footprint = 16 if year == 2024 else 22
    widths = {
        "bioclimatic": 19,
        "elevation": 1,
        "human_footprint": human_footprint,
        "landcover": 13,
        "soilgrids": 9,
    }
    lost = {"nan": 0, "inf": 0}
    for split in SURVEY_SPLITS:
        for family in VALUE_FAMILIES:
            frame = pd.read_csv(layout.values(family, split))
            indexed = frame.columns[0].startswith("Unnamed")
            assert indexed == (year == 2025 and (family, split) == ("human_footprint", "train"))
            frame = frame.drop(columns=frame.columns[0]) if indexed else frame
            assert frame.columns[0] == "surveyId" and len(frame.columns) == 1 + widths[family]
            assert set(frame["surveyId"]) == set(metadata[split]["surveyId"])
            cells = frame.drop(columns="surveyId").to_numpy(dtype=float)
            lost["nan"] += int(np.isnan(cells).sum())
            lost["inf"] += int(np.isinf(cells).sum())
    assert lost["nan"] > 0 and lost["inf"] > 0
    train = _values(layout, "train")
    assert [f"Bio{i}" for i in range(1, 20)] == [c for c in train if c.startswith("Bio")]
    assert train["Bio1"].median() > 2700  # CHELSA: K x 10
    assert {f"LandCover-{i}" for i in range(1, 14)} <= set(train.columns)
    soil = {c.removeprefix("Soilgrid-") for c in train if c.startswith("Soilgrid-")}
    assert soil == {"bdod", "cec", "cfvo", "clay", "nitrogen", "phh2o", "sand", "silt", "soc"}


def test_patches_and_cubes_have_the_real_formats(demos):
    for year in YEARS:
        layout, _, _ = demos[year]
        test = _metadata(layout)["test"]
        for survey, lon, lat in test[["surveyId", "lon", "lat"]].head(5).itertuples(index=False):
            for kind, shape in CUBE_SHAPES.items():
                path = layout.cube(kind, "test", survey)
                cube = torch.load(path, weights_only=True)
                assert cube.dtype == torch.float32 and tuple(cube.shape) == shape
                assert int(CUBE_FILE.search(path.name).group(1)) == survey
                with zipfile.ZipFile(path) as archive:  # the record is named after the file
                    assert archive.namelist()[0].split("/")[0] == path.name.removesuffix(".pt")
            landsat = torch.load(layout.cube("landsat", "test", survey), weights_only=True).numpy()
            assert np.nanmin(landsat) >= 0 and np.nanmax(landsat) <= 255
            assert np.array_equal(
                landsat[~np.isnan(landsat)], np.round(landsat[~np.isnan(landsat)])
            )
            bioclim = torch.load(layout.cube("bioclim", "test", survey), weights_only=True).numpy()
            assert (bioclim[2] >= bioclim[1]).all() and (
                bioclim[1] >= bioclim[3]
            ).all()  # pr, tas, tasmax, tasmin
            if year == 2024:
                for bands, mode in (("rgb", "RGB"), ("nir", "L")):
                    with Image.open(layout.patch("test", bands, survey)) as image:
                        assert (image.format, image.mode, image.size) == ("JPEG", mode, (128, 128))
                        assert "jfif" in image.info and "progressive" not in image.info
            else:
                with rasterio.open(layout.patch("test", "rgbn", survey)) as dataset:
                    assert dataset.count == 4 and dataset.dtypes == ("int16",) * 4
                    assert dataset.nodata == -1 and (dataset.width, dataset.height) == (64, 64)
                    assert dataset.descriptions == ("red", "green", "blue", "nir")
                    assert dataset.compression.value == "LZW" and dataset.crs.to_epsg() is None
                    assert "Lambert_Azimuthal_Equal_Area" in dataset.crs.to_wkt()
                    x, y = dataset.xy(32, 32, offset="ul")  # the centre of the patch
                    (centre_lon,), (centre_lat,) = warp_transform(
                        dataset.crs, "EPSG:4326", [x], [y]
                    )
                    assert abs(centre_lon - lon) < 2e-4 and abs(centre_lat - lat) < 2e-4


@pytest.mark.parametrize("year", sorted(SAMPLES))
def test_the_demo_and_the_real_sample_files_agree_on_format(demos, year):
    root, survey = SAMPLES[year]
    if not root.is_dir():
        pytest.skip(f"{root} is not present (only in the development setup)")
    real = SurveyLayout(root, SURVEY_ARCHIVES[year])
    layout, _, _ = demos[year]
    ours = int(_metadata(layout)["train"]["surveyId"].iloc[0])
    for kind in CUBE_SHAPES:
        a = torch.load(real.cube(kind, "train", survey), weights_only=True)
        b = torch.load(layout.cube(kind, "train", ours), weights_only=True)
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
    for bands in real.names.patch_folders:
        if year == 2024:
            with (
                Image.open(real.patch("train", bands, survey)) as a,
                Image.open(layout.patch("train", bands, ours)) as b,
            ):
                assert (a.format, a.mode, a.size, a.info) == (b.format, b.mode, b.size, b.info)
                assert a.quantization == b.quantization  # libjpeg quality 90
                assert JpegImagePlugin.get_sampling(a) == JpegImagePlugin.get_sampling(b)
        else:
            with (
                rasterio.open(real.patch("train", bands, survey)) as a,
                rasterio.open(layout.patch("train", bands, ours)) as b,
            ):
                same = (
                    "dtypes",
                    "count",
                    "nodata",
                    "descriptions",
                    "res",
                    "width",
                    "height",
                    "compression",
                    "interleaving",
                )
                assert {k: getattr(a, k) for k in same} == {k: getattr(b, k) for k in same}
                assert a.crs == b.crs and a.crs.to_wkt() == b.crs.to_wkt()
                assert a.block_shapes == b.block_shapes and a.tags() == {"AREA_OR_POINT": "Area"}


@pytest.mark.parametrize("year", YEARS)
def test_every_survey_has_a_species_and_richness_is_mostly_5_to_40(demos, year):
    layout, truth, summary = demos[year]
    richness = np.array([len(v) for v in _labels(_metadata(layout)["train"]).values()])
    solution = _solution(truth)
    test_richness = solution["predictions"].str.split().map(len).to_numpy()
    assert richness.min() >= 1 and test_richness.min() >= 1
    assert 8 <= np.median(richness) <= 25
    assert ((richness >= 5) & (richness <= 40)).mean() >= 0.8
    assert summary["richness"]["train"]["mean"] == pytest.approx(richness.mean())


@pytest.mark.parametrize("year", YEARS)
def test_the_truth_matches_the_labels_and_the_test_order(demos, year):
    layout, truth, summary = demos[year]
    metadata = _metadata(layout)
    solution = _solution(truth)
    assert solution.columns.tolist() == ["surveyId", "predictions"]
    assert solution["surveyId"].tolist() == metadata["test"]["surveyId"].tolist()
    test_labels = {
        int(i): np.array(text.split(), dtype=np.int64)
        for i, text in zip(solution["surveyId"], solution["predictions"], strict=True)
    }
    assert all((np.diff(y) > 0).all() for y in test_labels.values())  # ascending, unique
    with np.load(truth / TRUTH_FILE) as data:
        ids, species, p = data["observation_id"], data["species_ids"], data["probabilities"]
    assert ids.dtype == np.int64 and species.dtype == np.int32 and p.dtype == np.float32
    assert (np.diff(species) > 0).all() and p.shape == (len(ids), len(species))
    assert set(ids) == set(metadata["train"]["surveyId"]) | set(metadata["test"]["surveyId"])
    assert ((p >= 0) & (p <= 1)).all()
    row = {int(i): k for k, i in enumerate(ids)}
    labels = _labels(metadata["train"]) | test_labels
    present = np.zeros(p.shape, dtype=bool)
    for survey, y in labels.items():
        present[row[survey], np.searchsorted(species, y)] = True
        assert np.isin(y, species).all()
    # The labels were drawn from the truth: present species were the likely ones, and the
    # expected number present is the number drawn (conditioned on one: a little more).
    assert p[present].mean() > 5 * p[~present].mean()
    assert present.sum(axis=1).mean() == pytest.approx(p.sum(axis=1).mean(), rel=0.1)
    scores = summary["test"]
    assert scores["bayes_f1_expected"] > scores["constant_top25_f1_expected"] + 0.1
    assert json.loads((truth / SUMMARY_FILE).read_text())["test"] == scores


def test_the_signal_is_in_the_values_and_patches(demos):
    layout, truth, _ = demos[2024]
    metadata = _metadata(layout)
    train = metadata["train"].drop_duplicates("surveyId").set_index("surveyId")
    with np.load(truth / TRUTH_FILE) as data:
        expected = pd.Series(data["probabilities"].sum(axis=1), index=data["observation_id"])
    values = _values(layout, "train").replace([np.inf, -np.inf], np.nan)
    values = values.fillna(values.median())
    area = np.log(train["areaInM2"].replace(-np.inf, np.nan).fillna(100.0))
    features = np.column_stack([np.ones(len(values)), values.to_numpy(), area.loc[values.index]])
    target = expected.loc[values.index].to_numpy()
    fit = np.linalg.lstsq(features, target, rcond=None)[0]
    r2 = 1 - ((target - features @ fit) ** 2).sum() / ((target - target.mean()) ** 2).sum()
    assert r2 > 0.3  # richness is predictable from what a model sees
    # Species prevalence differs between regions.
    labels = metadata["train"].drop_duplicates(["surveyId", "speciesId"])
    surveys_per_region = train["region"].value_counts()
    regions = surveys_per_region[surveys_per_region >= 20].index
    counts = labels[labels["region"].isin(regions)].groupby(["region", "speciesId"]).size()
    prevalence = counts.unstack(fill_value=0).div(surveys_per_region, axis=0).dropna()
    assert len(regions) >= 2 and (prevalence.max() - prevalence.min()).max() > 0.3
    # The patches show the land cover that the values describe: greener where less is built.
    ratios, built = [], []
    for survey in values.index[:80]:
        nir = np.asarray(Image.open(layout.patch("train", "nir", survey)), dtype=float).mean()
        red = np.asarray(Image.open(layout.patch("train", "rgb", survey)), dtype=float)[
            ..., 0
        ].mean()
        ratios.append(nir / red)
        built.append(values.loc[survey, "HumanFootprint-Built2009"])
    assert np.corrcoef(ratios, built)[0, 1] < -0.3


def test_2025_tests_surveys_far_from_every_train_survey(demos):
    layout, _, summary = demos[2025]
    metadata = _metadata(layout)
    train = metadata["train"].drop_duplicates("surveyId")
    test = metadata["test"]

    def unit(frame):
        lon, lat = np.radians(frame["lon"].to_numpy()), np.radians(frame["lat"].to_numpy())
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)

    nearest_km = 6371 * np.arccos(np.clip(unit(test) @ unit(train).T, -1, 1)).min(axis=1)
    assert (nearest_km > 10).mean() > 0.4
    assert (nearest_km > 100).sum() >= 10
    held_out = test["country"].isin(HELD_OUT_COUNTRIES)
    assert held_out.mean() > 0.4 and train["country"].isin(HELD_OUT_COUNTRIES).mean() < 0.05
    assert summary["n_surveys"]["test_held_out"] == held_out.sum()
    assert test.loc[held_out, "surveyId"].ge(5_000_000).all()


def test_2024_and_2025_share_train_and_2025s_test_holds_2024s(demos):
    (old, _, _), (new, _, _) = demos[2024], demos[2025]
    assert old.pa_metadata("train").read_bytes() == new.pa_metadata("train").read_bytes()
    assert (
        old.values("soilgrids", "train").read_bytes()
        == new.values("soilgrids", "train").read_bytes()
    )
    survey = int(_metadata(old)["train"]["surveyId"].iloc[0])
    for kind in CUBE_SHAPES:
        a = torch.load(old.cube(kind, "train", survey), weights_only=True)
        assert torch.equal(a, torch.load(new.cube(kind, "train", survey), weights_only=True))
    assert set(_metadata(old)["test"]["surveyId"]) < set(_metadata(new)["test"]["surveyId"])


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_spec_gives_the_same_bytes_whatever_the_workers(demos, tmp_path):
    layout, truth, summary = demos[2025]
    again = generate_survey_demo(
        tmp_path / "a", tmp_path / "ta", survey_spec_for("tiny", year=2025), workers=2
    )
    assert _digest(tmp_path / "a") == _digest(layout.root)
    assert _digest(tmp_path / "ta") == _digest(truth)
    assert again == summary
    generate_survey_demo(
        tmp_path / "b", tmp_path / "tb", survey_spec_for("tiny", year=2025, seed=7)
    )
    assert (tmp_path / "b" / layout.pa_metadata("train").name).read_bytes() != layout.pa_metadata(
        "train"
    ).read_bytes()


def test_the_world_gives_the_truth_at_the_surveys(demos):
    layout, truth, _ = demos[2024]
    world = read_world(truth / WORLD_FILE)
    assert world.region_names == BIOGEOGRAPHIC_REGIONS and "Ukraine" in world.country_names
    test = _metadata(layout)["test"]
    p = true_presence_probabilities(world, test["lat"].to_numpy(), test["lon"].to_numpy())
    with np.load(truth / TRUTH_FILE) as data:
        rows = np.searchsorted(
            data["observation_id"], test["surveyId"], sorter=np.argsort(data["observation_id"])
        )
        truth_p = data["probabilities"][np.argsort(data["observation_id"])[rows]]
    assert p.shape == truth_p.shape and np.isfinite(p).all()
    # The map's truth is the surveys' own, but for the plot's area and land-cover mix.
    assert np.corrcoef(p.sum(axis=1), truth_p.sum(axis=1))[0, 1] > 0.6
    assert np.isnan(true_presence_probabilities(world, np.array([80.0]), np.array([0.0]))).all()


def test_presences_are_drawn_conditioned_on_one_species_exactly():
    # 20 rare species: most unconditioned draws would be empty. Given at least one, the
    # count's mean is 20 p / (1 - (1 - p)^20) and every species is as likely as another.
    p = np.full((20_000, 20), 0.01, dtype=np.float32)
    present = draw_presences(p, np.random.default_rng(0))
    assert present.any(axis=1).all()
    assert present.sum(axis=1).mean() == pytest.approx(0.2 / (1 - 0.99**20), rel=0.02)
    marginal = present.mean(axis=0)
    assert marginal.max() / marginal.min() < 1.3


def test_an_unknown_scale_or_year_is_refused():
    with pytest.raises(ValueError, match="unknown survey demo scale 'huge'"):
        survey_spec_for("huge")
    with pytest.raises(ValueError, match="year 2022"):
        SurveyDemoSpec(year=2022)
