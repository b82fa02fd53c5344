"""What a user reads when something goes wrong (issue "Faults a user meets", items 5 and 6):
a config error that a dry run can see is refused by it, and each fault's message names the
file, the problem and the fix in the user's words, once."""

import errno
import io
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import copy_patch_folders, copy_workdir, run_snakemake, tracking_uri_kept
from PIL import Image

from geolifeclef.errors import OutputWriteError
from geolifeclef.evaluation.submission import CHAMPION_URI, register_champion
from geolifeclef.models.backbones import check_backbone
from geolifeclef.patches.cache import build_patch_cache
from geolifeclef.patches.files import PatchFileError
from geolifeclef.patches.store import STORES, CacheSpec
from geolifeclef.settings.tracking import default_tracking_uri
from geolifeclef.tracking.records import MODEL_URI_KEY, runs_page
from geolifeclef.tracking.runs import start_run

# --------------------------------------------------------------------------------------
# A timm backbone's name is checked when the workflow is parsed
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "close", "family"),
    [
        ("efficientnet-b0", "`efficientnet_b0`", "efficientnet*"),
        ("mobilenetv3_large", "`mobilenetv3_large_100`", "mobilenetv*"),
        ("ResNet50", "`resnet50`", "resnet*"),
    ],
)
def test_an_unknown_backbone_is_answered_with_its_own_family(name, close, family):
    """The closest names are suggested for a typo (a dash, a missing suffix, capitals), and
    the listing command lists the family of the name given, not always ``resnet*``."""
    with pytest.raises(ValueError) as refused:
        check_backbone(name)
    message = str(refused.value)
    assert message.startswith(f"unknown backbone {name!r}: not 'small' nor a timm model.")
    assert f"Did you mean {close}" in message
    assert f"print(timm.list_models('{family}'))" in message


def test_a_dry_run_refuses_unknown_backbones_of_experiments_and_sweeps(tmp_path):
    """Refused before any job, once per place in the config that names it: an experiment's
    entry, and a sweep that varies the backbone (not once per member); a sweep that takes
    its base's backbone is left to the base's line."""
    (tmp_path / "config.yaml").write_text(
        "demo: {scale: tiny, patch_size: 256}\n"
        "experiments:\n"
        "  odd: {model: {kind: cnn, modalities: [rgb], cnn: {backbone: resnet34x}}}\n"
        "  plain: {model: {kind: cnn, modalities: [rgb]}}\n"
        "sweeps:\n"
        "  backbones:\n"
        "    base: plain\n"
        "    grid: {model.cnn.backbone: [small, inception_v4x], train.learning_rate: [0.1, 0.01]}\n"
        "  rates: {base: odd, grid: {train.learning_rate: [0.1, 0.01]}}\n"
    )
    result = run_snakemake(tmp_path, "all", "--dry-run", timeout=300)
    shown = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the config has 2 problem(s)" in shown, shown[-3000:]
    odd = "experiments.odd.model.cnn.backbone: unknown backbone 'resnet34x'"
    sweep = "sweeps.backbones.model.cnn.backbone: unknown backbone 'inception_v4x'"
    assert shown.count(odd) == 1 and shown.count(sweep) == 1, shown[-3000:]
    assert "Did you mean `inception_v4`" in shown and "list_models('inception*')" in shown
    assert "Traceback" not in shown
    assert not (tmp_path / "resources").exists()


# --------------------------------------------------------------------------------------
# A full disk while a patch store is written
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("store", "workers"), [("decoded", 2), ("encoded", 1)])
def test_a_full_disk_names_the_store_file_the_free_space_and_the_fix(
    tiny_demo, tables, small_disk, tmp_path, store, workers
):
    """The build stops with the file being written, the free space and the fix (a decoded
    store: also what it takes and the smaller ways to store the patches), where it raised
    a bare ``[Errno 28]`` (from a worker process too); given room, it resumes from its last
    chunk into the same bytes as a build that never ran out."""
    layout, _, _ = tiny_demo
    disk, remount = small_disk
    observations = pd.read_parquet(tables["train"])
    spec = CacheSpec(size=32, mode="resize", store=store)
    out = disk / "patches" / "train"
    with pytest.raises(OutputWriteError) as refused:
        build_patch_cache(layout, observations, out, spec, workers=workers, chunk_rows=4)
    message = str(refused.value)
    assert refused.value.errno == errno.ENOSPC
    # The file being written (the rows of a chunk, its flags, its offsets), or the shard
    # (the journal, the files' headers): whichever the disk was full for.
    assert f"{disk / 'patches' / 'shards' / 'train'}/" in message, message
    assert "No space left on device, " in message, message
    assert " kB free there. Fix: free space on that disk" in message, message
    assert "snakemake --directory" in message
    assert ("patches.store: encoded" in message) == (store == "decoded"), message
    assert "this shard's decoded patches take 2 MB at patches.size 32" in message or (
        store == "encoded"
    )

    remount("32m")
    report = build_patch_cache(layout, observations, out, spec, workers=workers, chunk_rows=4)
    assert report.resumed_chunks > 0
    build_patch_cache(layout, observations, tmp_path / "clean", spec, chunk_rows=4)
    for path in sorted(out.glob("1-of-1/*")):
        assert path.read_bytes() == (tmp_path / "clean" / "1-of-1" / path.name).read_bytes()


def test_a_journal_line_cut_by_a_full_disk_is_not_read_as_another_chunk(
    tiny_demo, tables, small_disk, tmp_path
):
    """A short write on a full disk can leave the journal's last line cut (``1`` of
    ``10``); the resumed build cuts it off, where it appended its next line to it (``1``
    and ``9`` read as chunk 19 done, whose rows a later resume never built)."""
    layout, _, _ = tiny_demo
    disk, remount = small_disk
    observations = pd.read_parquet(tables["train"])
    spec = CacheSpec(size=32, mode="resize", store="decoded")
    out = disk / "patches" / "train"
    journal = disk / "patches" / "shards" / "train" / ".1-of-1.build" / "journal.txt"
    for room in ("512k", "32m"):  # full again after a few more chunks, then enough
        with pytest.raises(OutputWriteError):
            build_patch_cache(layout, observations, out, spec, chunk_rows=4)
        remount(room)
        if room == "512k":
            journal.write_text(journal.read_text() + "1")  # what a short write leaves
    # (the second build ran out of room again; the third finishes)
    build_patch_cache(layout, observations, out, spec, chunk_rows=4)
    build_patch_cache(layout, observations, tmp_path / "clean", spec, chunk_rows=4)
    for path in sorted(out.glob("1-of-1/*")):
        assert path.read_bytes() == (tmp_path / "clean" / "1-of-1" / path.name).read_bytes()


# --------------------------------------------------------------------------------------
# A patch file saved in another image format
# --------------------------------------------------------------------------------------


def _saved_as_png(path: Path) -> None:
    """The file's own pixels, saved in PNG under its name (an export tool's default)."""
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        pixels = np.asarray(image)
    Image.fromarray(pixels).save(path, format="PNG")


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize(("modality", "expected"), [("rgb", "JPEG"), ("landcover", "TIFF")])
def test_a_png_under_a_patch_name_is_refused_in_the_same_words_by_both_stores(
    tiny_demo, tables, tmp_path, store, modality, expected
):
    """Where the decoded store took a PNG ``.jpg`` (PIL opens any image) and the encoded
    one refused it in libjpeg's words (``tjDecompressHeader3(): Could not determine
    subsampling level``), both refuse it, saying what it is and what it must be."""
    copy = copy_patch_folders(tiny_demo[0], tmp_path / "glc22")
    observations = pd.read_parquet(tables["val"])
    path = copy.patch(int(observations["observation_id"].iloc[3]), modality)
    _saved_as_png(path)
    spec = CacheSpec(64, "crop", store=store)
    with pytest.raises(PatchFileError) as refused:
        build_patch_cache(copy, observations, tmp_path / "patches" / "val", spec, progress=False)
    problem = (
        f"{path} (a PNG image, not a {expected}: {modality} patches are {expected} files, "
        "as in the archive)"
    )
    assert problem in str(refused.value), str(refused.value)
    assert "Fix: restore the file from the archive" in str(refused.value)


# --------------------------------------------------------------------------------------
# A read-only MLflow store, the champion left as it was, the last line's command
# --------------------------------------------------------------------------------------


@pytest.fixture
def read_only():
    """``read_only(path)``: the file may no longer be written by this user (mode 0444; as
    root, who writes whatever the mode, a read-only bind mount over it, else skipped)."""
    mounted = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o444)
            return
        for options in (["--bind"], ["-o", "remount,ro,bind"]):
            done = subprocess.run(
                ["mount", *options, str(path), str(path)], capture_output=True, text=True
            )
            if done.returncode:
                pytest.skip(f"no read-only file for root here (mount: {done.stderr.strip()})")
            mounted.append(path)

    yield make
    for path in mounted:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


STORE_WITH_A_RUN = """
import sys
from geolifeclef.tracking.runs import start_run
with start_run(sys.argv[1], "geolifeclef", "all", sys.argv[2]) as run:
    run.log_metrics({"val_top30_error": 0.25})
print(run.run_id)
"""


def _store(folder: Path) -> tuple[str, str]:
    """A SQLite MLflow store in ``folder`` with one finished run: (its URI, the run's id).
    Made by another process, as an earlier invocation's: this one holds no connection that
    was opened for writing before the store was made read-only."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    made = subprocess.run(
        [sys.executable, "-c", STORE_WITH_A_RUN, uri, str(folder / "all.jsonl")],
        capture_output=True,
        text=True,
        check=True,
    )
    return uri, made.stdout.split()[-1]


def _warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_read_only_mlflow_store_is_one_line_with_the_fix(tmp_path, read_only, caplog, capfd):
    """Where MLflow printed its SQLAlchemy error, SQL and traceback (some 90 lines a job)
    and the job two more warnings, the job says once what is wrong, where its params and
    metrics go instead, and the fix; it goes on."""
    uri, _ = _store(tmp_path / "store")
    read_only(tmp_path / "store" / "mlflow.db")
    capfd.readouterr()
    local = tmp_path / "evaluation" / "metrics.jsonl"
    with caplog.at_level(logging.INFO), start_run(uri, "geolifeclef", "evaluate knn", local) as run:
        run.log_metrics({"val_top30_error": 0.2})
    printed = capfd.readouterr()
    assert not run.online
    assert "Traceback" not in printed.err + printed.out, printed.err[-3000:]
    assert "SQLAlchemy" not in printed.err + caplog.text
    database = tmp_path / "store" / "mlflow.db"
    assert _warnings(caplog) == [
        f"MLflow store {database} is read-only: this job goes on and logs its params and "
        f"metrics to {local}. Fix: make {database} and its folder writable for this user (or "
        "set mlflow.tracking_uri to a store that is), then replay them with: geolifeclef "
        f"sync-runs {local}"
    ]
    assert '"val_top30_error": 0.2' in local.read_text()


def test_the_champion_left_as_it_was_says_which_rerun_registers_it(tmp_path, read_only, caplog):
    uri, _ = _store(tmp_path / "store")
    metrics = tmp_path / "results" / "evaluation" / "knn" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    # Evaluated while MLflow could not record runs: no model to register.
    metrics.write_text(json.dumps({"top30_error": 0.2}))
    with caplog.at_level(logging.WARNING):
        assert register_champion(uri, "knn", metrics, None) is None
    assert _warnings(caplog) == [
        f"{CHAMPION_URI} is not updated: knn has no MLflow model (MLflow could not record runs "
        "when it was evaluated). Fix: once it can, evaluate it again, which registers it: "
        f"snakemake --forcerun {metrics}"
    ]
    # A logged model, but a store that may not be written now.
    caplog.clear()
    metrics.write_text(json.dumps({"top30_error": 0.2, MODEL_URI_KEY: "models:/m-0123"}))
    read_only(tmp_path / "store" / "mlflow.db")
    with caplog.at_level(logging.WARNING):
        assert register_champion(uri, "knn", metrics, None) is None
    database = tmp_path / "store" / "mlflow.db"
    assert _warnings(caplog) == [
        f"{CHAMPION_URI} is not updated with knn: MLflow store {database} is read-only. Fix: "
        f"make {database} and its folder writable for this user (or set mlflow.tracking_uri "
        "to a store that is), then rerun: snakemake --forcerun select_submission"
    ]


def test_the_last_lines_mlflow_ui_command_pastes_for_a_folder_with_spaces(tmp_path):
    uri, run_id = _store(tmp_path / "my results")
    line = runs_page(uri, run_id)
    command = line.split(": ", 1)[1].split(", then open ")[0]
    words = shlex.split(command)
    assert words[:2] == ["mlflow", "ui"]
    assert words[words.index("--backend-store-uri") + 1] == uri


@pytest.mark.slow
def test_a_workflow_with_a_read_only_mlflow_store_says_so_once_a_job(
    demo_workdir, tmp_path, read_only
):
    """The issue's case: an earlier invocation's store that this user may no longer write.
    The submission is made; each job that records runs says in one line what it does
    instead (its own metrics.jsonl) and the fix, with no MLflow traceback (there were some
    120 lines a job); the champion's line says which rerun registers it."""
    workdir = copy_workdir(demo_workdir, tmp_path / "work", {})
    with tracking_uri_kept():
        mlflow.MlflowClient(default_tracking_uri(workdir)).search_experiments()  # its tables
    read_only(workdir / "mlflow.db")
    result = run_snakemake(workdir, "submission", timeout=1800)
    shown = result.stdout + result.stderr
    assert result.returncode == 0, shown[-4000:]
    assert (workdir / "results" / "submission" / "final.csv").exists()
    assert "Traceback" not in shown and "SQLAlchemy" not in shown, shown[-4000:]
    said = [line for line in shown.splitlines() if "is read-only" in line]
    jobs = shown.count("rule evaluate_model:")
    assert jobs >= 3 and len(said) == jobs, said
    assert len({line.split(" WARNING ", 1)[1] for line in said}) == len(said), said
    assert all("Fix: make" in line for line in said), said
    champion = [line for line in shown.splitlines() if f"{CHAMPION_URI} is not updated" in line]
    assert len(champion) == 1 and "snakemake --forcerun results/evaluation/" in champion[0]
