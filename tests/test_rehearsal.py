"""The full-size rehearsal: the full-count generator at a tiny size, the rehearsal's configs
(they validate and dry-run), and the SLURM profile against the committed measurements."""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from conftest import REPO, SCHEMA, run_snakemake
from snakemake.utils import validate

from geolifeclef.data.observations import load_observations
from geolifeclef.demo import realscale
from geolifeclef.demo.fullcount import (
    ARCHIVE_SPECIES,
    ARCHIVE_SPLITS,
    PATCH_ROOT,
    ROOT,
    TRUTH,
    FullCountSpec,
    class_counts,
    generate_full_count_dataset,
    read_true_probabilities,
)
from geolifeclef.demo.spec import REGION_BOUNDS
from geolifeclef.layout import ENV_VARIABLES, PATCH_MODALITIES, DatasetLayout
from geolifeclef.patches.files import read_patch
from geolifeclef.rule_logging import ExitPeak, read_exit_peak

sys.path.insert(0, str(REPO / "bench"))
import rehearsal  # noqa: E402

TINY = replace(FullCountSpec().scaled(0.002), raster_coarsening=40, patch_share=0.1, truth=True)
"""3,328 observations of 34 species; rasters 40 times coarser than the real ones; the
truth written (the rehearsal leaves it out)."""


@pytest.fixture(scope="module")
def tiny_full_count(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fullcount")
    return out, generate_full_count_dataset(out, TINY, workers=2)


def test_class_counts_have_the_archives_long_tail():
    """At the archive's size the counts are the archive's (GLC22-FORMAT.md): ~6,700 for
    the most frequent species, 12,539 species under 50, at least 3 each; the sum exact."""
    counts = class_counts(ARCHIVE_SPECIES, ARCHIVE_SPLITS["train"])
    assert counts.sum() == ARCHIVE_SPLITS["train"]
    assert np.all(np.diff(counts) <= 0)
    assert abs(counts[0] - 6_700) <= 0.05 * 6_700
    assert abs((counts < 50).sum() - 12_539) <= 0.01 * 12_539
    assert counts.min() == 3
    assert 10 <= np.median(counts) < 100  # a median in the tens
    assert (counts < 10).sum() >= 1_000  # thousands under 10
    # Scaled down, the shape holds: the top quarter of species hold the same share of the
    # observations, and every species is observed.
    small = class_counts(170, 15_870)
    assert small.sum() == 15_870 and small.min() >= 1
    head_share = counts[: ARCHIVE_SPECIES // 4].sum() / counts.sum()
    assert abs(small[: 170 // 4].sum() / small.sum() - head_share) < 0.05


def test_the_tiny_dataset_reads_as_the_archive(tiny_full_count):
    """The workflow's own reader accepts it; the split counts are the spec's; the truth
    holds the val and test rows; the patch root's observations have their four files."""
    out, summary = tiny_full_count
    tables = load_observations(DatasetLayout(out / ROOT))
    sizes = {s: len(tables.split(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": TINY.n_train, "val": TINY.n_val, "test": TINY.n_test}
    assert summary["observations"] == sizes
    train = tables.split("train")
    assert train["species_id"].nunique() == TINY.n_species
    counts = np.sort(train["species_id"].value_counts().to_numpy())[::-1]
    assert counts[0] > 10 * np.median(counts)  # a long tail
    rows, probabilities = read_true_probabilities(out / TRUTH)
    assert isinstance(probabilities, np.memmap)
    assert len(rows) == TINY.n_val + TINY.n_test == len(probabilities)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert set(rows["observation_id"]) == set(tables.split("val")["observation_id"]) | set(
        tables.split("test")["observation_id"]
    )
    patch_layout = DatasetLayout(out / PATCH_ROOT)
    with_patches = load_observations(patch_layout)
    ids = np.concatenate(
        [with_patches.split(s)["observation_id"] for s in ("train", "val", "test")]
    )
    assert len(ids) == summary["with_patches"] == round(TINY.n_observations * TINY.patch_share)
    for modality in PATCH_MODALITIES:
        patch = read_patch(patch_layout.patch(int(ids[0]), modality), modality)
        assert patch.shape[:2] == (TINY.patch_size, TINY.patch_size)
    with rasterio.open(patch_layout.raster(ENV_VARIABLES[0], "fr")) as raster:
        assert raster.res[0] == pytest.approx(40 / 120)  # the coarsened bioclimatic grid


def test_raster_values_are_the_fields_formula_at_every_pixel(tiny_full_count):
    """The rasters' values, computed from terms per row and per column, are the smooth
    field and the land mask written per pixel (sin(23u + 3v), not its expansion), with
    the noise drawn in the same order: the written file is read back and compared."""
    out, _ = tiny_full_count
    layout = DatasetLayout(out / ROOT)
    for variable, region in (("bio_7", "fr"), ("sltppt", "us")):
        transform, height, width = realscale.grid_of(variable, region, TINY.raster_coarsening)
        col, row = np.meshgrid(np.arange(width), np.arange(height))
        lon = transform.c + (col + 0.5) * transform.a
        lat = transform.f + (row + 0.5) * transform.e
        k = ENV_VARIABLES.index(variable) + 1
        smooth = (
            np.sin(0.7 * k + lon * (0.3 + 0.05 * k))
            + np.cos(lat * (0.4 + 0.03 * k) - k)
            + 0.5 * np.sin(2.1 * lon + 0.2 * k) * np.cos(1.7 * lat)
        )
        west, south, east, north = REGION_BOUNDS[region]
        u = (lon - west) / (east - west) - 0.5
        v = (north - lat) / (north - south) - 0.5
        coast = 0.08 * np.sin(23 * u + 3 * v) + 0.06 * np.cos(17 * v - 5 * u)
        land = (u / 0.47) ** 2 + (v / 0.45) ** 2 + coast < 1.0
        rng = np.random.default_rng(ENV_VARIABLES.index(variable))
        with rasterio.open(layout.raster(variable, region)) as raster:
            written = raster.read(1)
        if variable.startswith("bio_"):
            noise = rng.standard_normal((height, width), dtype=np.float32) * 0.05
            expected = (10 * k + 5 * smooth + noise).astype(np.float32)
            np.testing.assert_allclose(written[land], expected[land], rtol=1e-6)
        else:
            noise = rng.integers(-2, 3, (height, width))
            expected = np.round(100 * k + 40 * smooth + noise).astype(np.int16)
            np.testing.assert_array_equal(written[land], expected[land])
        assert land.mean() > 0.5
        # Sea is nodata, land is not.
        np.testing.assert_array_equal(written == raster.nodata, ~land)
        assert (realscale.land_mask(region, lon, lat) == land).mean() > 0.9999


def test_generation_resumes_and_refuses_other_sizes(tiny_full_count, tmp_path):
    out, summary = tiny_full_count
    truth = out / TRUTH / "probabilities.npy"
    before = truth.stat().st_mtime_ns
    assert generate_full_count_dataset(out, TINY) == summary
    assert truth.stat().st_mtime_ns == before  # nothing written twice
    with pytest.raises(ValueError, match="other sizes"):
        generate_full_count_dataset(out, replace(TINY, n_test=TINY.n_test + 1))


@pytest.fixture(scope="module")
def planned(tiny_full_count, tmp_path_factory) -> dict[str, str]:
    """``{run: its dry run's output}``: the rehearsal's configs on the tiny dataset, after
    checking that they validate and plan their targets."""
    out, _ = tiny_full_count
    recipe = yaml.safe_load(rehearsal.RECIPE.read_text())
    plans = {}
    for run, config in rehearsal.rehearsal_configs(recipe, out).items():
        validate(config, str(SCHEMA))
        workdir = tmp_path_factory.mktemp(run)
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        dry = run_snakemake(workdir, "--dry-run", *rehearsal.TARGETS[run])
        assert dry.returncode == 0, dry.stdout + dry.stderr
        plans[run] = dry.stdout
    return plans


def test_the_rehearsal_configs_plan_both_sides(planned):
    """The recipe with only sizes changed: the tabular side trains, refits, maps; the patch
    side builds the store and its statistics, and trains nothing."""
    tabular = rehearsal.planned_rules(planned[rehearsal.TABULAR])
    assert {"predict_random_forest", "train_model", "refit_model", "map_model"} <= tabular
    assert "cache_patch_shard" not in tabular
    patches = rehearsal.planned_rules(planned[rehearsal.PATCHES])
    assert "cache_patch_shard" in patches and "train_model" not in patches


def test_the_table_sizes_every_planned_rule_and_the_profile_holds_its_peaks(planned):
    """bench/rehearsal.md has a row, with a peak at exit, for every rule the rehearsal's two
    runs plan (``snakemake -n`` of their targets: ``all maps`` and the patch side's), and
    the SLURM profile's ``mem_mb`` at the first attempt holds each row's peak scaled to the
    profile's threads."""
    measured = rehearsal.read_table(rehearsal.TABLE)
    rules = set().union(*map(rehearsal.planned_rules, planned.values()))
    planned_measurable = rules & rehearsal.measured_rules()
    assert {"train_model", "cache_patch_shard", "fit_blend"} <= planned_measurable
    profile = yaml.safe_load(rehearsal.PROFILE.read_text())
    problems = rehearsal.table_problems(measured, planned_measurable, profile)
    assert not problems, "bench/rehearsal.md or profiles/slurm/config.yaml: " + "; ".join(problems)


def test_a_table_missing_a_rule_or_a_peak_is_refused():
    """The check above on a table with one planned rule's row removed, with a row whose peak
    is missing, and with a peak above the profile's ``mem_mb``."""
    profile = yaml.safe_load(rehearsal.PROFILE.read_text())
    table = pd.DataFrame(
        {
            "run": ["tabular"] * 3,
            "rule": ["extract_env", "fit_blend", "predict_knn"],
            "job": ["", "winners_fitted", ""],
            "own_mb": [1_000.0, 500.0, np.nan],
            "node_peak_mb": [1_400.0, 90_000.0, np.nan],
        }
    )
    planned = {"extract_env", "fit_blend", "predict_knn", "train_model"}
    assert rehearsal.table_problems(table, planned, profile) == [
        "train_model: no row",
        "fit_blend winners_fitted: peak 90,000 MB at the profile's threads > mem_mb "
        f"{rehearsal.profile_resources(profile, 'fit_blend')[1]:,}",
        "predict_knn : no peak at exit",
    ]
    assert rehearsal.table_problems(table.iloc[:1], {"extract_env"}, profile) == []


def _job(folder: Path, name: str, rule: str, threads: int, peak: tuple[float, float]) -> None:
    """A measured job as a run leaves it: its extended benchmark file and its log."""
    bench = folder / "benchmarks" / f"{name}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"s": [12.5], "max_rss": [3_000.0], "cpu_time": [20.0], "rule_name": [rule],
         "threads": [f"({threads},)"]}
    ).to_csv(bench, sep="\t", index=False)  # fmt: skip
    rehearsal.write_peak(folder / "logs" / f"{name}.log", ExitPeak(*peak, cpu_s=30.0))


def test_the_table_reader_reads_what_the_writer_writes(tmp_path):
    """bench/rehearsal.md round trip: the rows written are the rows the profile test reads,
    each job's peak at exit from its log, scaled to the profile's threads by its rule's
    basis (one process; a worker per thread; a thread's window)."""
    run = tmp_path / rehearsal.TABULAR
    _job(run, "train_model/env_mlp", "train_model", 2, (3_100.0, 0.0))
    _job(run, "cache_patch_shard/train_1-of-8", "cache_patch_shard", 2, (400.0, 150.0))
    _job(run, "extract_env", "extract_env", 2, (1_300.0, 0.0))
    table = tmp_path / "rehearsal.md"
    rehearsal.write_table(tmp_path, table, patch_share=0.1, trees=4)
    read = rehearsal.read_table(table).sort_values("rule").reset_index(drop=True)
    assert read[["rule", "job"]].values.tolist() == [
        ["cache_patch_shard", "train_1-of-8"],
        ["extract_env", ""],
        ["train_model", "env_mlp"],
    ]
    assert read["own_mb"].tolist() == [400.0, 1_300.0, 3_100.0]
    profile = yaml.safe_load(rehearsal.PROFILE.read_text())
    shard_threads = rehearsal.profile_resources(profile, "cache_patch_shard")[0]
    extract_threads = rehearsal.profile_resources(profile, "extract_env")[0]
    assert read["node_peak_mb"].tolist() == [
        400.0 + shard_threads * 150.0,
        1_300.0 + (extract_threads - 2) * rehearsal.EXTRACT_THREAD_MB,
        3_100.0,
    ]
    assert "3,000" in table.read_text()  # Snakemake's sampled figure, beside


def test_a_run_not_rerun_keeps_its_rows_of_the_previous_table(tmp_path):
    """A rehearsal folder with the patch side only: the tabular rows of the earlier table
    stay, with what that run had not measured."""
    table = tmp_path / "rehearsal.md"
    _job(tmp_path / "first" / rehearsal.TABULAR, "extract_env", "extract_env", 2, (1_300.0, 0))
    rehearsal.write_table(tmp_path / "first", table, patch_share=0.1, trees=4)
    second = tmp_path / "second" / rehearsal.PATCHES
    _job(second, "compute_normalization_stats", "compute_normalization_stats", 1, (2_000.0, 0))
    rehearsal.write_table(tmp_path / "second", table, patch_share=0.1, trees=4)
    read = rehearsal.read_table(table).sort_values("rule")
    assert read[["run", "rule", "own_mb"]].values.tolist() == [
        [rehearsal.PATCHES, "compute_normalization_stats", 2_000.0],
        [rehearsal.TABULAR, "extract_env", 1_300.0],
    ]
    text = table.read_text()
    assert "come from the previous table" in text
    assert "(partial" in text.splitlines()[0]  # the earlier run had not run everything


def test_a_step_that_is_not_a_rule_is_measured_as_a_job(tmp_path):
    """``timed`` (the point query): its wall and CPU time in a benchmark file, its peak, the
    largest of its process tree, in its log as a job logs it."""
    held = "x = bytearray(200 * 2**20); x[::4096] = b'1' * len(x[::4096])"
    command = [sys.executable, "-c", held + "; sum(range(30_000_000))"]  # ~1 CPU s
    rehearsal.timed(command, tmp_path, "by_hand")
    peak = read_exit_peak(tmp_path / "logs" / "by_hand.log")
    assert 200 <= peak.own_mb < 400 and peak.cpu_s > 0
    bench = pd.read_csv(tmp_path / "benchmarks" / "by_hand.tsv", sep="\t")
    assert bench["s"].iloc[0] > 0 and bench["threads"].iloc[0] == 1


def test_profile_resources_are_read_at_the_first_attempt():
    assert rehearsal.first_attempt("24000 * attempt") == 24_000
    assert rehearsal.first_attempt(2000) == 2_000
    with pytest.raises(ValueError, match="N \\* attempt"):
        rehearsal.first_attempt("2 ** attempt")
    profile = yaml.safe_load(rehearsal.PROFILE.read_text())
    forest = profile["set-resources"]["predict_random_forest"]["mem_mb"]
    assert forest.endswith("* attempt")
    assert rehearsal.profile_resources(profile, "predict_random_forest") == (
        profile["set-threads"]["predict_random_forest"],
        int(forest.split("*")[0]),
    )
    assert rehearsal.profile_resources(profile, "no_such_rule")[1] == rehearsal.first_attempt(
        profile["default-resources"]["mem_mb"]
    )
