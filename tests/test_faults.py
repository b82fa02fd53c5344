"""Fault injection (issue #7): damaged inputs, killed jobs, lost services, unsafe inputs.

Every bad input must stop its step with an error that names the file and the fix, and the
failing step must write nothing; a killed job must leave nothing that a later step trusts
and the next run must finish as if nothing happened; a lost MLflow server must cost no
training. Run alone with ``pytest -m faults``.

Cases already covered elsewhere, not repeated here:

* tests/test_observations.py: missing and renamed column, ',' separator, non-numeric, NaN,
  out-of-range and swapped coordinates (fr train), duplicate id, id of the wrong region
  (fr train), 7-digit id, unknown species, bad subset, too many or too few fields, header
  only, empty file, missing file, a test id also in train; the harmless quirks of a file
  saved again (BOM, CRLF, blank lines, quoted header or fields, spaces) accepted.
* tests/test_patch_cache.py: missing patch files (fail policy); a truncated JPEG, a file
  that is no TIFF and a missing file (fill policy); SIGKILL during patch caching, then
  resume.
* tests/test_environment.py: missing raster, raster in a projected CRS, bad pre-extracted
  CSV.
* tests/test_workflow.py: config with an unknown key, with a wrong type (real snakemake).
* tests/test_tracking.py: MLflow server unreachable at start; secret keys and URI
  credentials dropped by ``flatten``.
"""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import yaml
from conftest import (
    REPO,
    SCHEMA,
    copy_patch_folders,
    copy_workdir,
    run_snakemake,
    snakemake_command,
)
from faults_helpers import (
    copy_tables,
    damaged_root,
    files_containing,
    link_tree,
    own_copy,
    rewrite_raster,
    start_mlflow_server,
    stop,
)
from snakemake.utils import validate

from geolifeclef.data.env_table import build_env_table, read_env_table
from geolifeclef.data.observations import ingest_observations
from geolifeclef.errors import InputDataError
from geolifeclef.layout import DatasetLayout
from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.files import PatchFileError, write_patch
from geolifeclef.patches.store import STORES, CacheSpec

pytestmark = pytest.mark.faults


PASSWORD = "hunter2-Pa55w0rd"


def _assert_names_file_and_fix(error: Exception, path: Path) -> None:
    message = str(error)
    assert str(path) in message, message
    assert "Fix:" in message, message


def _nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# --------------------------------------------------------------------------------------
# Observation CSVs (direct calls)
# --------------------------------------------------------------------------------------


def _lines(change):
    """A damage on the text lines of a file (its final line end kept)."""

    def damage(data: bytes) -> bytes:
        return ("\n".join(change(data.decode().splitlines())) + "\n").encode()

    return damage


def _field(line: str, index: int, value: str) -> str:
    fields = line.split(";")
    fields[index] = value
    return ";".join(fields)


def _cut_after_second_separator(data: bytes) -> bytes:
    """A copy cut short in the middle of a row: after ``id;latitude;`` of a middle row."""
    lines = data.split(b"\n")
    middle = len(lines) // 2
    head = b"\n".join(lines[:middle]) + b"\n"
    row = lines[middle]
    return head + row[: row.index(b";", row.index(b";") + 1) + 1]


def _latin1_on_line_4(data: bytes) -> bytes:
    """An accented letter saved as Latin-1 (one byte 0xe9, never valid UTF-8 alone)."""
    lines = data.split(b"\n")
    lines[3] = lines[3] + "\xe9".encode("latin-1")
    return b"\n".join(lines)


BAD_CSVS = {
    # name: (file, damage, pattern of the problem, line or None)
    "extra column": (
        ("fr", "train"),
        _lines(lambda ls: [ls[0] + ";geo_uncertainty"] + [f"{x};12" for x in ls[1:]]),
        r"unexpected column\(s\) \['geo_uncertainty'\]",
        1,
    ),
    "tab separator": (
        ("us", "test"),
        lambda b: b.replace(b";", b"\t"),
        r"separated by '\\t'",
        1,
    ),
    "NaN latitude (test file)": (
        ("us", "test"),
        _lines(lambda ls: [ls[0], _field(ls[1], 1, "NaN"), *ls[2:]]),
        r"latitude 'NaN' is not a finite number",
        2,
    ),
    "empty longitude": (
        ("fr", "test"),
        _lines(lambda ls: [ls[0], ls[1], _field(ls[2], 2, ""), *ls[3:]]),
        r"longitude '' is not a finite number",
        3,
    ),
    "swapped lat/lon (us)": (
        ("us", "test"),
        _lines(
            lambda ls: [
                ls[0],
                _field(_field(ls[1], 1, ls[1].split(";")[2]), 2, ls[1].split(";")[1]),
                *ls[2:],
            ]
        ),
        r"latitude and longitude look swapped",
        2,
    ),
    "duplicate id (test file)": (
        ("us", "test"),
        _lines(lambda ls: [*ls, ls[3]]),
        r"duplicate observation_id",
        None,
    ),
    "us id in the fr test file": (
        ("fr", "test"),
        _lines(lambda ls: [ls[0], "2" + ls[1][1:], *ls[2:]]),
        r"starts with 2, but ids of region fr start with 1",
        2,
    ),
    "Latin-1 text": (("fr", "train"), _latin1_on_line_4, r"not UTF-8 text \(byte 0xe9\)", 4),
    "UTF-16 text": (
        ("us", "train"),
        lambda b: b.decode().encode("utf-16"),
        r"file is UTF-16 text",
        1,
    ),
    "gzip-compressed file": (
        ("us", "train"),
        lambda b: __import__("gzip").compress(b),
        r"file is compressed",
        None,
    ),
    "NUL bytes of an incomplete copy": (
        ("fr", "train"),
        lambda b: b[: len(b) // 2] + b"\x00" * 4096,
        r"NUL bytes",
        None,
    ),
    "copy cut in the middle of a row": (
        ("fr", "train"),
        _cut_after_second_separator,
        r"longitude .* is not a finite number",
        None,
    ),
    "unbalanced quote": (
        ("us", "train"),
        _lines(lambda ls: [ls[0], '"' + ls[1], *ls[2:]]),
        r"malformed row",
        None,
    ),
    "empty species_details": (
        "species",
        lambda b: b"",
        r"file is empty",
        None,
    ),
    "species_details with ','": (
        "species",
        lambda b: b.replace(b";", b","),
        r"no species_id column",
        1,
    ),
    "species_details in Latin-1": (
        "species",
        lambda b: b + "99999;1;Cirsium acaul\xe9;Plantae\n".encode("latin-1"),
        r"not UTF-8 text \(byte 0xe9\)",
        None,
    ),
}


@pytest.fixture
def editable(tiny_demo, tmp_path) -> DatasetLayout:
    layout, _, _ = tiny_demo
    return copy_tables(layout, tmp_path / "glc22")


def _outputs(tmp_path) -> dict[str, Path]:
    return {split: tmp_path / "out" / f"{split}.parquet" for split in ("train", "val", "test")}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_bad_csv_is_refused_naming_file_line_and_fix(editable, tmp_path, case):
    which, damage, pattern, line = BAD_CSVS[case]
    path = editable.species_details if which == "species" else editable.observations(*which)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(InputDataError, match=pattern) as raised:
        ingest_observations(editable, _outputs(tmp_path))
    assert raised.value.path == path
    _assert_names_file_and_fix(raised.value, path)
    if line is not None:
        assert raised.value.line == line
    assert _nothing_in(tmp_path / "out")


def test_copy_cut_on_a_row_that_still_parses_is_reported(editable, tmp_path, caplog):
    """A copy cut inside the last field may still parse: it cannot be refused, but the log
    says the file lacks the final line end that every archive file has."""
    path = editable.observations("us", "test")
    data = path.read_bytes()
    path.write_bytes(data[: data.rstrip(b"\n").rindex(b".") + 2])  # one decimal kept
    with caplog.at_level(logging.WARNING):
        ingest_observations(editable, _outputs(tmp_path))
    assert f"{path} does not end with a line end" in caplog.text
    assert "check that the copy is complete" in caplog.text


# --------------------------------------------------------------------------------------
# Patch files (direct calls, on_bad_file: fail)
# --------------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:64] = bytes(range(64))
    path.write_bytes(bytes(data))


def _garble_tiff_data(path: Path) -> None:
    """Overwrite the Deflate stream (the bytes after the 8-byte header) with noise."""
    data = bytearray(path.read_bytes())
    data[8:200] = np.random.default_rng(0).integers(0, 256, 192, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


BAD_PATCHES = {
    # name: (modality, damage, pattern)
    "truncated JPEG": ("rgb", _truncate, r"unreadable"),
    "corrupt JPEG header": ("near_ir", _garble_header, r"unreadable"),
    "truncated TIFF": ("altitude", _truncate, r"unreadable"),
    "corrupt TIFF data": ("landcover", _garble_tiff_data, r"unreadable"),
    "wrong shape": (
        "altitude",
        lambda p: write_patch(p, "altitude", np.zeros((32, 32), np.int16)),
        r"shape \(32, 32\), expected \(64, 64\)",
    ),
    "wrong dtype": (
        "altitude",
        lambda p: write_patch(p, "landcover", np.zeros((64, 64), np.uint8)),
        r"dtype uint8, expected >i2",
    ),
    "grey JPEG for rgb": (
        "rgb",
        lambda p: write_patch(p, "near_ir", np.zeros((64, 64), np.uint8)),
        r"JPEG mode L, expected RGB",
    ),
    "colour JPEG for near_ir": (
        "near_ir",
        lambda p: write_patch(p, "rgb", np.zeros((64, 64, 3), np.uint8)),
        r"JPEG mode RGB, expected L",
    ),
}


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("case", list(BAD_PATCHES))
def test_bad_patch_file_stops_the_cache_naming_it(tiny_demo, tables, tmp_path, case, store):
    modality, damage, pattern = BAD_PATCHES[case]
    copy = copy_patch_folders(tiny_demo[0], tmp_path / "glc22")
    observations = pd.read_parquet(tables["val"])
    path = copy.patch(int(observations["observation_id"].iloc[7]), modality)
    damage(path)
    out = tmp_path / "patches" / "val"
    with pytest.raises(PatchFileError, match=pattern) as raised:
        spec = CacheSpec(64, "crop", store=store)  # found at build time by either store
        build_patch_cache(copy, observations, out, spec, progress=False)
    _assert_names_file_and_fix(raised.value, path)
    assert "1 patch files cannot be used" in str(raised.value)
    assert "on_bad_file: fill" in str(raised.value)
    assert not out.exists()


# --------------------------------------------------------------------------------------
# Rasters (direct calls)
# --------------------------------------------------------------------------------------


def _metres(profile, data):
    """No CRS, and a transform in metres (a projected file that lost its CRS)."""
    profile = {**profile, "crs": None}
    profile["transform"] = rasterio.Affine(1000.0, 0, 100_000.0, 0, -1000.0, 6_800_000.0)
    return profile, data


def _no_crs(profile, data):
    return {**profile, "crs": None}, data


def _two_bands(profile, data):
    return {**profile, "count": 2}, np.concatenate([data, data])


def _nodata_everywhere(profile, data):
    return profile, np.full_like(data, profile["nodata"])


def _garble_raster(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 4 :] = bytes(len(data) - len(data) // 4)
    path.write_bytes(bytes(data))


BAD_RASTERS = {
    # name: (damage of bio_1_FR.tif, pattern)
    "truncated raster": (_truncate, r"raster data unreadable, truncated or corrupt"),
    "corrupt raster data": (_garble_raster, r"raster data unreadable, truncated or corrupt"),
    "not a TIFF": (lambda p: p.write_bytes(b"<html>404</html>"), r"unreadable raster"),
    "two bands (wrong variable count)": (
        lambda p: rewrite_raster(p, _two_bands),
        r"raster has 2 bands",
    ),
    "nodata everywhere": (
        lambda p: rewrite_raster(p, _nodata_everywhere),
        r"raster is nodata everywhere",
    ),
    "no CRS, metre bounds": (
        lambda p: rewrite_raster(p, _metres),
        r"raster has no CRS and its bounds .* are not degrees",
    ),
    "another (projected) CRS": (
        lambda p: rewrite_raster(p, lambda pr, d: ({**pr, "crs": "EPSG:2154"}, d)),
        r"projected CRS \(EPSG:2154\)",
    ),
}


@pytest.fixture
def raster_copy(tiny_demo, tmp_path) -> DatasetLayout:
    """The demo's rasters linked, bio_1_FR.tif copied (the one a test damages)."""
    layout, _, _ = tiny_demo
    copy = DatasetLayout(tmp_path / "glc22")
    link_tree(layout.root / "rasters", copy.root / "rasters")
    own_copy(copy.raster("bio_1", "fr"))
    return copy


@pytest.mark.parametrize("case", list(BAD_RASTERS))
def test_bad_raster_stops_extraction_naming_it(raster_copy, tables, tmp_path, case):
    damage, pattern = BAD_RASTERS[case]
    path = raster_copy.raster("bio_1", "fr")
    damage(path)
    out = tmp_path / "environment" / "env_values.parquet"
    with pytest.raises(InputDataError, match=pattern) as raised:
        build_env_table(raster_copy, list(tables.values()), out, workers=2)
    _assert_names_file_and_fix(raised.value, path)
    assert _nothing_in(out.parent)


def test_raster_without_crs_but_in_degrees_is_read_and_reported(
    raster_copy, tiny_demo, tables, tmp_path, caplog
):
    """Re-saving may drop the CRS; bounds in degrees are read as WGS84, with a warning."""
    layout, _, _ = tiny_demo
    rewrite_raster(raster_copy.raster("bio_1", "fr"), _no_crs)
    with caplog.at_level(logging.WARNING):
        build_env_table(raster_copy, list(tables.values()), tmp_path / "damaged.parquet")
    build_env_table(layout, list(tables.values()), tmp_path / "clean.parquet")
    pd.testing.assert_frame_equal(
        read_env_table(tmp_path / "damaged.parquet"), read_env_table(tmp_path / "clean.parquet")
    )
    assert "bio_1_FR.tif has no CRS" in caplog.text


# --------------------------------------------------------------------------------------
# Configuration (schema, direct) and safe parsing
# --------------------------------------------------------------------------------------

INJECTION = "__import__('os').system('touch {marker}')"

BAD_CONFIGS = {
    "unknown key in an experiment's model": (
        {"experiments": {"e": {"model": {"kind": "mlp", "hiden": 3}}}},
        "hiden",
    ),
    "wrong type of epochs": (
        {"experiments": {"e": {"model": {"kind": "mlp"}, "train": {"epochs": "four"}}}},
        "four",
    ),
    "unknown model kind": (
        {"experiments": {"e": {"model": {"kind": "transformer"}}}},
        "transformer",
    ),
    "experiment name that is code": (
        {"experiments": {INJECTION.format(marker="x"): {"model": {"kind": "mlp"}}}},
        "__import__",
    ),
    "wrong type of patches.size": ({"patches": {"size": "64px"}}, "64px"),
    "wrong type of a blend weight": ({"blends": {"b": {"knn": "half"}}}, "half"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_by_the_schema(case):
    config, named = BAD_CONFIGS[case]
    with pytest.raises(Exception, match=re.escape(named)):
        validate(json.loads(json.dumps(config)), str(SCHEMA))


def test_unknown_model_kind_is_refused_outside_the_schema_too():
    from geolifeclef.settings.experiment import ExperimentSettings

    with pytest.raises(ValueError, match="unknown model kind 'transformer'"):
        ExperimentSettings.from_config("e", {"model": {"kind": "transformer"}})


def test_unknown_model_kind_stops_snakemake_before_any_job(tmp_path):
    config = {"data": {"root": str(tmp_path / "nowhere")}, "experiments": {}}
    config["experiments"]["e"] = {"model": {"kind": "transformer"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "--dry-run", timeout=120)
    assert result.returncode != 0
    assert "transformer" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_config_strings_are_never_evaluated(tmp_path):
    """A config value that is Python code stays a string: accepted where any string is,
    never run (no eval/exec in the workflow, see test_no_eval_exec_or_shell_in_the_workflow)."""
    from geolifeclef.tracking.runs import flatten

    marker = tmp_path / "pwned"
    code = INJECTION.format(marker=marker)
    config = {"mlflow": {"experiment": code}, "data": {"root": code}}
    validate(config, str(SCHEMA))
    assert flatten(config)["mlflow.experiment"] == code
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "observations", "--dry-run", timeout=120)
    assert result.returncode != 0  # the "archive" at that path does not exist ...
    assert "data.root: no such folder" in result.stdout + result.stderr  # ... and is named
    assert not marker.exists()


# --------------------------------------------------------------------------------------
# Security: safe loading, no code from config, no secrets in logs, local-only UIs
# --------------------------------------------------------------------------------------


class _Exploit:
    """Unpickling this creates the file ``marker`` (as any code could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoints_with_pickled_objects_are_refused(tmp_path):
    import pickle

    from geolifeclef.experiments.trained import load_trained
    from geolifeclef.experiments.training import load_checkpoint
    from geolifeclef.models.networks import build_model
    from geolifeclef.settings.configs import ModelConfig

    marker = tmp_path / "pwned"
    model = build_model(ModelConfig(kind="mlp", n_classes=5, n_tabular=3))
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "state": _Exploit(marker)}, checkpoint)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(checkpoint, model)
    bundle = tmp_path / "model.pt"
    torch.save({"name": "e", "settings": _Exploit(marker), "n_classes": 5}, bundle)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_trained(bundle)
    assert not marker.exists()


def _code_files() -> list[Path]:
    return [
        REPO / "Snakefile",
        *sorted((REPO / "workflow").rglob("*.py")),
        *sorted((REPO / "workflow").rglob("*.smk")),
        *sorted((REPO / "bench").rglob("*.py")),
    ]


def test_every_torch_load_is_weights_only():
    calls = [
        (path, line)
        for path in _code_files()
        for line in path.read_text().splitlines()
        if "torch.load(" in line
    ]
    assert calls  # the check looks at something
    for path, line in calls:
        assert "weights_only=True" in line, f"{path}: {line.strip()}"


def test_no_eval_exec_or_shell_in_the_workflow():
    """Config values reach no interpreter and no shell: no eval/exec, no shell=True or
    os.system, and every rule that runs something runs a script (no ``shell:`` or ``run:``
    block, where a config value could end up in a command line)."""
    files = _code_files()
    assert len(files) > 20  # the check looks at the whole workflow
    for path in files:
        text = path.read_text()
        assert not re.search(r"(?<![.\w])(eval|exec)\(", text), path
        assert "shell=True" not in text and "os.system(" not in text, path
        assert "os.popen(" not in text, path
    rule_files = [p for p in files if p.suffix == ".smk" or p.name == "Snakefile"]
    directives = set()
    for path in rule_files:
        directives |= set(re.findall(r"^    (\w+):", path.read_text(), re.M))
    assert "script" in directives
    assert not directives & {"shell", "run", "wrapper", "notebook"}, directives
    from geolifeclef.experiments.launch import training_command

    command = training_command(2, ["-m", "geolifeclef.experiments.jobs", "train", "job.json"])
    assert isinstance(command, list) and "--nproc_per_node=2" in command  # argv, no shell


def test_documented_mlflow_commands_bind_to_localhost():
    documents = [
        REPO / "README.md",
        *sorted(REPO.glob("*/README.md")),
        *(REPO / "docs").glob("*.md"),
    ]
    commands = [
        line
        for path in documents
        for line in path.read_text().splitlines()
        if re.search(r"mlflow (ui|server)\b", line)
    ]
    assert commands
    for line in commands:
        assert "--host 127.0.0.1" in line, line
        assert "0.0.0.0" not in line, line


# --------------------------------------------------------------------------------------
# Real snakemake runs on damaged archives
# --------------------------------------------------------------------------------------


def _config(root: Path, **more) -> str:
    return yaml.safe_dump({"data": {"root": str(root)}, "patches": {"enabled": False}, **more})


def test_workflow_bad_csv_writes_no_table_and_names_the_file(tiny_demo, tmp_path):
    layout, _, _ = tiny_demo
    damaged = copy_tables(layout, tmp_path / "archive")
    path = damaged.observations("us", "train")
    path.write_bytes(path.read_bytes()[:-200] + b"\x00" * 200)  # a copy cut short
    (tmp_path / "config.yaml").write_text(_config(damaged.root))
    result = run_snakemake(tmp_path, "observations", timeout=300)
    assert result.returncode != 0
    assert f"{path}, line" in result.stderr and "NUL bytes" in result.stderr
    assert "Fix: copy the file again" in (tmp_path / "logs" / "ingest_observations.log").read_text()
    assert _nothing_in(tmp_path / "results" / "observations")


def test_workflow_bad_raster_and_bad_patch_write_nothing(tiny_demo, tables, tmp_path):
    """One run, --keep-going: extract_env and cache_patches fail side by side."""
    layout, _, _ = tiny_demo
    damaged = damaged_root(layout, tmp_path / "archive")
    raster = own_copy(damaged.raster("bio_19", "us"))
    rewrite_raster(raster, _two_bands)
    val_id = int(pd.read_parquet(tables["val"])["observation_id"].iloc[3])
    patch = own_copy(damaged.patch(val_id, "rgb"))
    _truncate(patch)
    (tmp_path / "config.yaml").write_text(
        _config(damaged.root, patches={"enabled": True, "size": 32})
    )
    result = run_snakemake(
        tmp_path, "results/environment/env_values.parquet", "results/patches/val", "--keep-going"
    )
    assert result.returncode != 0
    assert str(raster) in result.stderr and "raster has 2 bands" in result.stderr
    assert str(patch) in result.stderr and "unreadable" in result.stderr
    assert str(raster) in (tmp_path / "logs" / "extract_env.log").read_text()
    assert str(patch) in (tmp_path / "logs" / "cache_patch_shard" / "val_1-of-1.log").read_text()
    assert not (tmp_path / "results" / "environment" / "env_values.parquet").exists()
    assert not (tmp_path / "results" / "patches" / "val").exists()
    assert (tmp_path / "results" / "observations" / "val.parquet").exists()  # kept


# --------------------------------------------------------------------------------------
# Killed jobs
# --------------------------------------------------------------------------------------

KILLED_SUBMISSION = textwrap.dedent(
    """
    import os, pathlib, signal, sys
    import numpy as np
    from geolifeclef.predictions.table import Predictions
    from geolifeclef.evaluation.submission import write_submission

    original = pathlib.Path.write_text

    def write_half_then_die(self, text, *args, **kwargs):
        original(self, text[: len(text) // 2], *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    pathlib.Path.write_text = write_half_then_die
    ids = np.array([10000001, 10000002, 20000003])
    species = np.stack([np.roll(np.arange(40), i) for i in range(3)])
    scores = np.tile(np.linspace(1, 0.1, 40), (3, 1)).astype(np.float32)
    write_submission(sys.argv[1], Predictions(ids, species, scores), ids, np.arange(40))
    """
)


def test_killed_submission_write_leaves_no_csv_and_a_rerun_writes_it(tmp_path):
    from geolifeclef.evaluation.submission import (
        check_submission_file,
        format_submission,
        write_submission,
    )
    from geolifeclef.predictions.table import Predictions

    folder = tmp_path / "results" / "submission"
    target = folder / "knn.csv"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SUBMISSION, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not list(folder.glob("*.csv"))  # at most a .tmp-* file, which nothing reads
    ids = np.array([10000001, 10000002, 20000003])
    species = np.stack([np.roll(np.arange(40), i) for i in range(3)])
    scores = np.tile(np.linspace(1, 0.1, 40), (3, 1)).astype(np.float32)
    predictions = Predictions(ids, species, scores)
    write_submission(target, predictions, ids, np.arange(40))
    assert target.read_text() == format_submission(predictions)
    check_submission_file(target, ids, np.arange(40))


def test_failed_submission_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """A write that fails midway (disk full) leaves the previous final.csv as it was."""
    import geolifeclef.atomic as atomic
    from geolifeclef.evaluation.submission import write_submission
    from geolifeclef.predictions.table import Predictions

    target = tmp_path / "final.csv"
    target.write_text("previous\n")

    def disk_full(self, text, *args, **kwargs):
        with open(self, "w") as handle:
            handle.write(text[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.Path, "write_text", disk_full)
    ids = np.array([10000001])
    predictions = Predictions(ids, np.arange(30)[None], np.linspace(1, 0, 30)[None])
    with pytest.raises(OSError, match="No space left"):
        write_submission(target, predictions, ids, np.arange(30))
    monkeypatch.undo()
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["final.csv"]


EXPERIMENT = {
    "env_mlp": {
        "model": {"kind": "mlp"},
        "train": {"epochs": 4, "batch_size": 16, "early_stopping_patience": 10},
    }
}
MODEL = "results/models/env_mlp/model.pt"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    process, port = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield port, Path(process.args[3].removeprefix("sqlite:///"))
    stop(process)


@pytest.fixture(scope="module")
def uninterrupted(demo_workdir, mlflow_server, tmp_path_factory) -> Path:
    """A run of one tiny experiment to model.pt on the shared extracted demo, tracked on a
    server whose URI holds a password."""
    port, _ = mlflow_server
    uri = f"http://glc:{PASSWORD}@127.0.0.1:{port}"
    config = {"experiments": EXPERIMENT, "mlflow": {"tracking_uri": uri}}
    workdir = copy_workdir(demo_workdir, tmp_path_factory.mktemp("uninterrupted"), config)
    result = run_snakemake(workdir, MODEL, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def _state_dict(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_killed_training_resumes_and_equals_an_uninterrupted_run(
    uninterrupted, mlflow_server, tmp_path
):
    workdir = tmp_path / "killed"
    # The same upstream results and Snakemake metadata: only train_model is left to do.
    shutil.copytree(
        uninterrupted,
        workdir,
        symlinks=True,
        ignore=lambda folder, names: [n for n in names if n in ("models", "train_model")],
    )
    checkpoints = workdir / "results" / "models" / "env_mlp" / "checkpoints"
    command = snakemake_command(workdir, MODEL)
    with open(tmp_path / "killed.out", "w") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 300
        while not [p for p in checkpoints.glob("*.pt") if "-best" not in p.name]:
            assert process.poll() is None, (tmp_path / "killed.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its job, mid-epoch 2
        process.wait(timeout=60)
    assert not (workdir / MODEL).exists()
    locked = run_snakemake(workdir, MODEL, timeout=120)  # SIGKILL left the lock
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    # A write cut by the kill (the temporary of atomic_path), as a checkpoint save leaves it.
    stale = checkpoints / ".tmp-checkpoint.pt.x1y2z3"
    stale.write_bytes(b"half a checkpoint")
    # The documented recovery: unlock, then rerun (--rerun-incomplete is in the profiles).
    assert run_snakemake(workdir, "--unlock", timeout=120).returncode == 0
    rerun = run_snakemake(workdir, MODEL, "--rerun-incomplete", timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    # The leftovers of the killed invocation are gone, and the rerun says so.
    assert not stale.exists()
    assert "temporaries of a killed run" in rerun.stderr
    assert "MLflow runs of a killed run KILLED" in rerun.stderr
    import mlflow

    port, _ = mlflow_server
    client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
    experiment = client.get_experiment_by_name("geolifeclef")
    parents = client.search_runs(
        [experiment.experiment_id], f"tags.`glc.workdir` = '{workdir.resolve()}'"
    )
    assert sorted(run.info.status for run in parents) == ["FINISHED", "KILLED"]
    killed = next(run for run in parents if run.info.status == "KILLED")
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{killed.info.run_id}'"
    )
    assert children and {run.info.status for run in children} == {"KILLED"}
    log = (workdir / "logs" / "train_model" / "env_mlp.log").read_text()
    resumed = re.search(r"resuming from \S+ after epoch (\d+)", log)
    assert resumed and int(resumed.group(1)) >= 1, log[-2000:]
    assert "generate_demo_dataset" not in rerun.stderr and "extract_env" not in rerun.stderr
    expected, got = _state_dict(uninterrupted / MODEL), _state_dict(workdir / MODEL)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
    history, reference = (
        json.loads((folder / "results/models/env_mlp/history.json").read_text())
        for folder in (workdir, uninterrupted)
    )
    for got_epoch, expected_epoch in zip(history["history"], reference["history"], strict=True):
        got_epoch.pop("samples_per_second"), expected_epoch.pop("samples_per_second")
        assert got_epoch == expected_epoch


# --------------------------------------------------------------------------------------
# Lost services and secrets
# --------------------------------------------------------------------------------------


def test_password_of_the_tracking_uri_is_in_no_log_and_no_param(uninterrupted, mlflow_server):
    import mlflow

    _, store = mlflow_server
    leaks = [p for p in files_containing(uninterrupted, PASSWORD) if p.name != "config.yaml"]
    assert not leaks, leaks
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    runs = mlflow.search_runs(experiment_names=["geolifeclef"])
    train = runs[runs["tags.mlflow.runName"] == "train env_mlp"]
    assert len(train) and (train["params.train.epochs"] == "4").all()  # it went online
    assert not runs.astype(str).apply(lambda c: c.str.contains(PASSWORD)).any().any()
    client = mlflow.MlflowClient()
    for run_id in train["run_id"]:
        run = client.get_run(run_id)
        assert PASSWORD not in json.dumps({**run.data.params, **run.data.tags})


def test_server_lost_mid_training_costs_no_training_and_says_how_to_sync(tmp_path, caplog):
    from geolifeclef.experiments.training import train
    from geolifeclef.models.networks import build_model
    from geolifeclef.settings.configs import ModelConfig, TrainConfig
    from geolifeclef.tracking.runs import start_run

    process, port = start_mlflow_server(tmp_path / "server")
    try:
        uri = f"http://glc:{PASSWORD}@127.0.0.1:{port}"
        torch.manual_seed(0)
        x, y = torch.randn(64, 3), torch.randint(0, 5, (64,))
        ids = torch.arange(64)

        def loader(_epoch=0):
            return [
                {
                    "tabular": x[i : i + 16],
                    "label": y[i : i + 16],
                    "observation_id": ids[i : i + 16],
                }
                for i in range(0, 64, 16)
            ]

        model = build_model(ModelConfig(kind="mlp", n_classes=5, n_tabular=3))
        config = TrainConfig(epochs=3, batch_size=16, early_stopping_patience=10)
        local = tmp_path / "metrics.jsonl"
        with (
            caplog.at_level(logging.WARNING),
            start_run(uri, "faults", "lost-server", local) as tracker,
        ):
            assert tracker.online
            run_id = tracker.run_id

            def on_epoch(epoch, metrics):
                tracker.log_metrics(metrics, step=epoch)
                if epoch == 1:
                    stop(process)  # the server dies after epoch 1 was logged

            state = train(
                model,
                loader,
                loader(),
                config,
                np.ones(5),
                tmp_path / "ckpt.pt",
                tmp_path / "best.pt",
                on_epoch=on_epoch,
            )
    finally:
        stop(process)
    assert state.epoch == 3 and not tracker.online
    records = [json.loads(line) for line in local.read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "metrics"] == [1, 2, 3]
    assert "geolifeclef sync-runs" in caplog.text and str(local) in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD not in local.read_text()
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}")
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_top30_error")
    assert [m.step for m in history] == [1]  # what the server got before it went down
