"""Bad data never ends in "success": the archive checked before any job, stale results never
passed off as new, nonsense refused where it shows, config rules checked by ``snakemake -n``,
each refusal said once.

Each case runs the workflow as a user would, on a copy of the tiny demo archive, and asserts
the exit status, the message, and that nothing built earlier is lost or passed off as new.
"""

import errno
import os
import shutil

import pandas as pd
import pytest
import yaml
from conftest import run_snakemake
from faults_helpers import copy_tables, damaged_root

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import InputDataError, OutputWriteError
from geolifeclef.layout import DatasetLayout
from geolifeclef.settings.archive import archive_inputs, check_archive, fingerprint
from geolifeclef.settings.validation import ConfigError, check_settings, schema_problems

pytestmark = pytest.mark.faults


def _config(root, **more) -> str:
    return yaml.safe_dump({"data": {"root": str(root)}, "patches": {"enabled": False}, **more})


def _mtimes(folder) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def _build(layout, root):
    """Under ``root``, a workflow folder whose observations and class frequencies were
    built from a copy of the tiny demo's archive (rasters and patches linked): (folder,
    archive layout)."""
    archive = damaged_root(layout, root / "archive")
    work = root / "work"
    work.mkdir()
    (work / "config.yaml").write_text(_config(archive.root))
    done = run_snakemake(work, "observations", "class_frequency", timeout=300)
    assert done.returncode == 0, done.stderr
    return work, archive


@pytest.fixture
def built(tiny_demo, tmp_path):
    """``_build``, for a test that changes the folder or the archive."""
    return _build(tiny_demo[0], tmp_path)


def _refused(result, *needles) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for needle in needles:
        assert needle in output, output
    return output


# --------------------------------------------------------------------------------------
# 1. The archive checked before any job
# --------------------------------------------------------------------------------------


def test_a_missing_input_beside_an_earlier_build_is_refused_and_the_build_kept(built):
    work, archive = built
    before = _mtimes(work / "results")
    archive.species_details.unlink()
    result = run_snakemake(work, "observations", "class_frequency", timeout=120)
    _refused(result, "missing from the archive", "metadata/species_details.csv")
    assert _mtimes(work / "results") == before


def test_a_data_root_that_does_not_exist_is_refused_by_name(built):
    work, archive = built
    before = _mtimes(work / "results")
    (work / "config.yaml").write_text(_config(archive.root.parent / "no-such-archive"))
    result = run_snakemake(work, "--dry-run", "observations", timeout=120)
    _refused(result, "no-such-archive", "data.root: no such folder", "Fix: set data.root")
    assert _mtimes(work / "results") == before


def test_a_deleted_raster_is_refused_even_with_the_env_table_built(built):
    work, archive = built
    assert run_snakemake(work, "extraction", timeout=300).returncode == 0
    before = _mtimes(work / "results")
    raster = archive.raster("bio_3", "us")
    raster.unlink()
    csv = archive.observations("fr", "train")
    csv.write_text(csv.read_text().replace(";val\n", ";train\n", 1))
    result = run_snakemake(work, "extraction", timeout=120)
    _refused(result, "rasters/bio_3/bio_3_USA.tif")
    assert _mtimes(work / "results") == before


def test_an_older_copy_of_a_csv_reruns_ingest_and_what_it_feeds(built):
    """Snakemake alone compares times: a CSV replaced by an edited copy with an older time
    would leave the observations "up to date". The fingerprint reruns them."""
    work, archive = built
    csv = archive.observations("us", "test")
    status = csv.stat()
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:-1]))  # one test row fewer
    os.utime(csv, ns=(status.st_atime_ns, status.st_mtime_ns - 10**12))  # older than before
    dry = run_snakemake(work, "--dry-run", "observations", "class_frequency", timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "ingest_observations" in dry.stdout and "analyze_class_frequency" in dry.stdout
    assert run_snakemake(work, "observations", timeout=300).returncode == 0
    test = pd.read_parquet(work / "results" / "observations" / "test.parquet")
    assert len(test) == sum(
        len(archive.observations(r, "test").read_text().splitlines()) - 1 for r in ("fr", "us")
    )


def test_the_archive_check_lists_what_is_missing(tiny_demo, tmp_path):
    layout, _, _ = tiny_demo
    check_archive(layout, archive_inputs(layout))  # the demo is complete
    archive = copy_tables(layout, tmp_path / "archive")  # no rasters, no patches
    parts = archive_inputs(archive)
    check_archive(archive, {"observations": parts["observations"]})
    missing = len(archive.raster_files()) + 2  # the rasters and the two patch folders
    with pytest.raises(InputDataError, match=rf"{missing} file\(s\) that the workflow reads"):
        check_archive(archive, {"rasters": parts["rasters"], "patches": parts["patches"]})
    with pytest.raises(InputDataError, match="pre-extracted/environmental_vectors.csv"):
        check_archive(archive, {"pre_extracted": parts["pre_extracted"]})
    with pytest.raises(InputDataError, match="data.root: no such folder"):
        check_archive(DatasetLayout(tmp_path / "nowhere"), {})
    files = parts["observations"]
    first = fingerprint(files)
    assert fingerprint(files) == first
    os.utime(files[0], ns=(0, 0))
    assert fingerprint(files) != first


# --------------------------------------------------------------------------------------
# 2. Nonsense refused where it shows
# --------------------------------------------------------------------------------------


def test_swapped_rasters_stop_extraction_with_a_hint(tiny_demo, tmp_path):
    layout, _, _ = tiny_demo
    archive = damaged_root(layout, tmp_path / "archive")
    fr, us = archive.raster("bio_1", "fr"), archive.raster("bio_1", "us")
    fr_target, us_target = fr.resolve(), us.resolve()
    fr.unlink()
    us.unlink()
    fr.symlink_to(us_target)
    us.symlink_to(fr_target)
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(_config(archive.root))
    result = run_snakemake(work, "extraction", timeout=300)
    _refused(result, "bio_1_FR.tif: 100% of the", "are bio_1_FR.tif and bio_1_USA.tif swapped?")
    assert not (work / "results" / "environment" / "env_values.parquet").exists()
    assert not (work / "results" / "normalization" / "stats.json").exists()


def test_an_archive_without_val_rows_is_refused_at_ingest(tiny_demo, tmp_path):
    layout, _, _ = tiny_demo
    archive = copy_tables(layout, tmp_path / "archive")
    for region in ("fr", "us"):
        csv = archive.observations(region, "train")
        csv.write_text(csv.read_text().replace(";val\n", ";train\n"))
    shutil.copytree(layout.root / "rasters", archive.root / "rasters")
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(_config(archive.root))
    result = run_snakemake(work, "observations", timeout=300)
    _refused(result, "has subset 'val'", "observations_fr_train.csv and observations_us_train.csv")
    assert not (work / "results" / "observations").exists()


def test_a_nan_normalisation_statistic_is_an_error(tmp_path):
    from geolifeclef.data.normalization import write_normalization_stats
    from geolifeclef.layout import ENV_VARIABLES

    ids = pd.DataFrame({"observation_id": [10000001, 10000002]})
    ids.to_parquet(tmp_path / "train.parquet")
    env = ids.assign(**{v: [1.0, 2.0] for v in ENV_VARIABLES}).assign(bio_1=float("nan"))
    env.to_parquet(tmp_path / "env.parquet")
    with pytest.raises(InputDataError, match="no train value to take the mean of: bio_1"):
        write_normalization_stats(
            tmp_path / "stats.json", tmp_path / "train.parquet", tmp_path / "env.parquet"
        )
    assert not (tmp_path / "stats.json").exists()


# --------------------------------------------------------------------------------------
# 3. Config rules checked by `snakemake -n`, one line a problem
# --------------------------------------------------------------------------------------

CONFIG_CASES = {
    "a resize size that does not divide the patches": (
        {"patches": {"enabled": True, "size": 100, "mode": "resize"}},
        "patches.mode resize needs a size that divides the source side",
    ),
    "buckets out of order": (
        {"class_frequency": {"tail_below": 500}},
        "class_frequency: tail_below (500) must not exceed head_above + 1",
    ),
    "a misspelled top-level key": (
        {"experimnets": {}},
        "experimnets: unknown key; did you mean `experiments`?",
    ),
    "a misspelled nested key": (
        {"baselines": {"random_forest": {"n_estimator": 8}}},
        "baselines.random_forest.n_estimator: unknown key; did you mean `n_estimators`?",
    ),
    "a wrong type": ({"evaluation": {"draws": "many"}}, "evaluation.draws: 'many' is not of type"),
}


@pytest.fixture(scope="module")
def built_once(tiny_demo, tmp_path_factory):
    """``_build``, once for the module's read-only uses."""
    return _build(tiny_demo[0], tmp_path_factory.mktemp("built"))


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_config_problem_stops_a_dry_run_in_a_few_lines(built_once, tmp_path, case):
    """Before any job, on an archive (its patches are 256 px): what was built stays as it
    was (the shards a bad size would have had deleted first), and the refusal is a few
    lines, not the schema."""
    override, message = CONFIG_CASES[case]
    work = tmp_path / "work"
    shutil.copytree(built_once[0], work, symlinks=True)
    config = yaml.safe_load((work / "config.yaml").read_text())
    for key, value in override.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    before = _mtimes(work / "results")
    result = run_snakemake(work, "--dry-run", timeout=120)
    output = _refused(result, message)
    assert output.count(message) == 1
    assert len(output.splitlines()) < 25, output
    assert _mtimes(work / "results") == before


def test_schema_problems_are_one_line_each():
    from conftest import SCHEMA

    schema = yaml.safe_load(SCHEMA.read_text())
    problems = schema_problems({"experimnets": {}, "predictions": {"top_k": 0}}, schema)
    assert problems == [
        "experimnets: unknown key; did you mean `experiments`?",
        "predictions.top_k: 0 is less than the minimum of 30",
    ]


def test_settings_checks_list_every_problem_at_once():
    from conftest import SCHEMA
    from snakemake.utils import validate

    config = {
        "class_frequency": {"tail_below": 500},
        "patches": {"enabled": True, "size": 100, "mode": "resize"},
    }
    validate(config, str(SCHEMA))  # the schema's defaults, as the workflow fills them
    with pytest.raises(ConfigError) as refused:
        check_settings(config, source_patch_size=256)
    lines = str(refused.value).splitlines()
    assert lines[0] == "the config has 2 problem(s); fix them in the config file:"
    assert lines[1].startswith("  class_frequency: tail_below (500)")
    assert lines[2].startswith("  patches.mode resize needs a size that divides")
    config["patches"]["size"] = 64
    config["class_frequency"]["tail_below"] = 20
    check_settings(config, source_patch_size=256)


# --------------------------------------------------------------------------------------
# 4. One message, once; a full disk names the file
# --------------------------------------------------------------------------------------


def test_a_jobs_refusal_is_printed_once_without_a_traceback(tiny_demo, tmp_path):
    layout, _, _ = tiny_demo
    archive = copy_tables(layout, tmp_path / "archive")
    shutil.copytree(layout.root / "rasters", archive.root / "rasters")
    csv = archive.observations("us", "train")
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:3] + [lines[3].replace(";", ",", 1)] + lines[4:]))
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(_config(archive.root))
    result = run_snakemake(work, "observations", timeout=300)
    output = _refused(result, str(csv))
    assert output.count(f"{csv}, line 4") == 1, output
    assert "Traceback" not in output
    log = (work / "logs" / "ingest_observations.log").read_text()
    assert "Traceback" in log and f"{csv}, line 4" in log


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_a_full_disk_or_a_closed_folder_names_the_file_being_written(tmp_path, code):
    target = tmp_path / "results" / "table.parquet"
    with pytest.raises(OutputWriteError) as refused, atomic_path(target) as temporary:
        temporary.write_text("half")
        raise OSError(code, os.strerror(code))
    message = str(refused.value)
    assert str(target) in message and "Fix:" in message
    assert ("GB free" in message) == (code == errno.ENOSPC)
    assert refused.value.errno == code
    assert not target.exists() and list(target.parent.iterdir()) == []
