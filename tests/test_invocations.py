"""Invocations beside each other and stopped by a signal (issue 38, items 1 and 2).

* A second invocation (a plot asked for while a training runs) clears at its start only
  what dead processes left: temporaries of ``atomic_path`` and MLflow runs record their
  process, and those of live ones are kept.
* SIGTERM (what SLURM sends at preemption and time limit) to Snakemake lets its running
  jobs finish and says so; to the whole process group, it stops a training at a safe point
  with a checkpoint that a rerun resumes to the weights of an uninterrupted run, and every
  run of the stopped jobs ends KILLED.
"""

import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from conftest import copy_workdir, run_snakemake, snakemake_command
from faults_helpers import start_mlflow_server, stop, wait_for_file

from geolifeclef.atomic import atomic_path, remove_stale_temporaries, temporary_owner
from geolifeclef.data.dataset import keep_batch, make_loader
from geolifeclef.errors import StoppedBySignal
from geolifeclef.experiments.training import StopRequest, train
from geolifeclef.models.networks import build_model
from geolifeclef.owners import UNCHECKABLE_AGE_S, Owner, this_process
from geolifeclef.settings.configs import ModelConfig, TrainConfig
from geolifeclef.tracking.invocation import (
    WORKDIR_TAG,
    close_stale_runs,
    start_parent_run,
    stopped_invocation,
)
from geolifeclef.tracking.runs import OWNER_TAG

# --------------------------------------------------------------------------------------
# Owners: which process a temporary or a run belongs to
# --------------------------------------------------------------------------------------


def _dead_owners() -> dict[str, Owner]:
    """Owner records of processes that no longer run, on this host."""
    here = this_process()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return {
        # this process's id, but another process's start: the id was given again since
        "pid-reused": replace(here, start=str(int(here.start) + 1)),
        "ended": replace(here, pid=ended.pid, start=""),
        "before-a-reboot": replace(here, boot="0badb007"),
    }


def _temporary(folder: Path, target: str, owner: Owner | None) -> Path:
    """A temporary as ``atomic_path`` names it (or, without owner, as it did before)."""
    token = f"{owner.token}." if owner else ""
    path = folder / f".tmp-{target}.{token}abc123xy"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("half written")
    return path


def test_a_temporary_records_its_writer(tmp_path):
    with atomic_path(tmp_path / "x.v1.parquet") as temporary:
        assert temporary_owner(temporary) == this_process()
        temporary.write_text("written")
    assert this_process().liveness().value == "alive"
    for owner in _dead_owners().values():
        assert owner.liveness().value == "dead", owner


def test_start_up_clean_up_keeps_the_temporaries_of_live_processes(tmp_path):
    results = tmp_path / "results"
    dead = [_temporary(results / "models", f"{name}.pt", o) for name, o in _dead_owners().items()]
    before_owners = _temporary(results, "old.csv", None)
    elsewhere = Owner("another-node", 4242, "123", "cafe0123", "")
    elsewhere_recent = _temporary(results / "maps", "recent.png", elsewhere)
    elsewhere_old = _temporary(results / "maps", "old.png", elsewhere)
    long_ago = time.time() - UNCHECKABLE_AGE_S - 3600
    os.utime(elsewhere_old, (long_ago, long_ago))
    target = results / "models" / "live" / "model.pt"
    with atomic_path(target) as live:  # this process writes it: alive
        live.write_text("being written")
        found = remove_stale_temporaries([results])
        assert live.exists()
    assert target.read_text() == "being written"  # the live writer's rename worked
    assert sorted(found.removed) == sorted([*dead, before_owners, elsewhere_old])
    assert not any(p.exists() for p in found.removed)
    assert found.unchecked == {elsewhere_recent: elsewhere} and elsewhere_recent.exists()
    removed, unchecked = found.messages()
    assert removed.startswith("removed 5 temporaries of a killed run (their process is gone)")
    assert "live" not in removed
    assert f"{elsewhere_recent} (process 4242 on another-node)" in unchecked
    assert "removed once untouched for 7 days" in unchecked


def test_slurm_says_whether_the_job_of_a_process_on_another_host_ended(tmp_path, monkeypatch):
    """Seen from the login node, a process on a SLURM node is dead once its job left
    SLURM's queue; while squeue lists it, or cannot be asked, it is not."""
    squeue = tmp_path / "bin" / "squeue"
    squeue.parent.mkdir()
    squeue.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  *" 11 "*) echo RUNNING ;;\n'
        '  *" 12 "*) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;;\n'
        '  *" 13 "*) ;;\n'
        '  *) echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1 ;;\n'
        "esac\n"
    )
    squeue.chmod(squeue.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{squeue.parent}:{os.environ['PATH']}")
    on_node = Owner("gpu-node-7", 4242, "123", "cafe0123", "11")
    liveness = {
        job: replace(on_node, slurm_job=job).liveness().value for job in ["11", "12", "13", "14"]
    }
    assert liveness == {"11": "alive", "12": "dead", "13": "dead", "14": "unknown"}
    results = tmp_path / "results"
    ended = _temporary(results, "a.pt", replace(on_node, slurm_job="12"))
    running = _temporary(results, "b.pt", on_node)
    assert remove_stale_temporaries([results]).removed == [ended] and running.exists()


def _run(client, experiment_id, name, owner, workdir=None, parent=None, status="RUNNING"):
    tags = {OWNER_TAG: owner.token}
    if workdir:
        tags[WORKDIR_TAG] = str(workdir)
    if parent:
        tags["mlflow.parentRunId"] = parent
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def test_start_up_closes_the_runs_of_dead_processes_whatever_their_parent(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    workdir = tmp_path / "workflow"
    workdir.mkdir()
    live = this_process()
    dead = _dead_owners()["ended"]
    elsewhere = Owner("another-node", 4242, "123", "cafe0123", "")
    # An invocation running beside, whose parent run start_parent_run made here (alive).
    beside = start_parent_run(uri, "tests", "beside", workdir)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(beside).info.experiment_id
    runs = {
        "beside": beside,
        "beside's training": _run(client, experiment_id, "train a", live, parent=beside),
        # SIGTERM: the parent run ended FAILED while its killed job's run stayed RUNNING
        "failed parent": _run(client, experiment_id, "p", dead, workdir, status="FAILED"),
        "killed job": None,
        "killed parent": _run(client, experiment_id, "q", dead, workdir),
        "on a node": None,
        "other folder": _run(client, experiment_id, "r", dead, tmp_path / "elsewhere"),
    }
    runs["killed job"] = _run(client, experiment_id, "train b", dead, parent=runs["failed parent"])
    runs["on a node"] = _run(
        client, experiment_id, "train c", elsewhere, parent=runs["killed parent"]
    )
    found = close_stale_runs(uri, "tests", workdir)
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {
        "beside": "RUNNING",
        "beside's training": "RUNNING",
        "failed parent": "FAILED",
        "killed job": "KILLED",
        "killed parent": "KILLED",
        "on a node": "RUNNING",
        "other folder": "RUNNING",  # not this folder's: not this invocation's to judge
    }
    assert set(found.closed) == {runs["killed job"], runs["killed parent"]}
    assert set(found.unchecked) == {runs["on a node"]}
    closed, unchecked = found.messages()
    assert closed.startswith("marked 2 MLflow runs of a killed run KILLED (their process is gone)")
    assert f"train b ({dead})" in closed
    assert "train c (process 4242 on another-node)" in unchecked
    assert "marked KILLED once 7 days old" in unchecked


# --------------------------------------------------------------------------------------
# SIGTERM: a training stops at a safe point, and the invocation says what happened
# --------------------------------------------------------------------------------------

N_CLASSES, N_FEATURES = 12, 5
CONFIG = TrainConfig(epochs=3, batch_size=32, learning_rate=3e-3, warmup_epochs=0.5, seed=5)


class _Rows(torch.utils.data.Dataset):
    """Rows of features that a DataLoader reads a batch at a time (as ``GlcDataset``),
    sending SIGTERM to this process when it reads its ``signal_at``-th batch."""

    def __init__(self, signal_at: int | None = None, n: int = 240) -> None:
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
        self.labels = (np.abs(self.x[:, 0] * 3 + self.x[:, 1]).astype(int) % N_CLASSES).astype(
            np.int64
        )
        self.signal_at, self.read = signal_at, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitems__(self, indices):
        self.read += 1
        if self.read == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        rows = np.asarray(indices)
        return {
            "tabular": torch.from_numpy(self.x[rows]),
            "patches": {},
            "label": torch.from_numpy(self.labels[rows]),
            "observation_id": torch.from_numpy(rows.astype(np.int64)),
        }


def _train(folder: Path, rows: _Rows, stop: StopRequest | None = None):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", n_classes=N_CLASSES, n_tabular=N_FEATURES))
    val = _Rows(n=80)
    val_loader = torch.utils.data.DataLoader(val, batch_size=64, collate_fn=keep_batch)
    state = train(
        model,
        lambda epoch: make_loader(rows, CONFIG.batch_size, shuffle=True, seed=epoch),
        list(val_loader),
        CONFIG,
        np.bincount(rows.labels, minlength=N_CLASSES),
        folder / "checkpoint.pt",
        folder / "best.pt",
        stop=stop,
    )
    return model, state


def test_sigterm_stops_training_after_its_step_and_a_rerun_resumes_it_exactly(tmp_path, caplog):
    reference, expected = _train(tmp_path / "reference", _Rows())
    # 8 batches an epoch: the signal comes while the 3rd batch of epoch 2 is read.
    rows = _Rows(signal_at=8 + 3)
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest().watching() as stop, pytest.raises(StoppedBySignal) as stopped:
        _train(tmp_path / "stopped", rows, stop)
    assert signal.getsignal(signal.SIGTERM) is before  # given back
    checkpoint = tmp_path / "stopped" / "checkpoint.pt"
    assert str(stopped.value) == (
        f"training stopped by SIGTERM in epoch 2, after step 3 of 8: checkpoint {checkpoint} "
        "saved; run the workflow again to resume from it"
    )
    assert stopped.value.exit_status == 143
    resumed_rows = _Rows()
    with caplog.at_level("INFO", logger="geolifeclef"):
        resumed, state = _train(tmp_path / "stopped", resumed_rows)
    assert f"resuming from {checkpoint} after epoch 1, at step 3 of epoch 2" in caplog.text
    assert resumed_rows.read == (8 - 3) + 8  # the 3 batches trained before were not read
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    for got, want in zip(state.history, expected.history, strict=True):
        got.pop("samples_per_second"), want.pop("samples_per_second")
        assert got == want


def test_an_invocation_stopped_by_sigterm_says_what_its_jobs_did():
    assert stopped_invocation(signal.SIGTERM, finished=3, unfinished=0, not_started=0) == (
        "FINISHED",
        "SIGTERM came while the last jobs ran: they finished, nothing is left to do",
        0,
    )
    status, message, exit_status = stopped_invocation(
        signal.SIGTERM, finished=2, unfinished=1, not_started=4
    )
    assert (status, exit_status) == ("KILLED", 143)
    assert message == (
        "stopped by SIGTERM: 2 jobs finished (outputs kept), 1 job ended unfinished "
        "(stopped by SIGTERM too, or failed: their logs say which; a training stopped by "
        "it resumes from its checkpoint), 4 jobs did not start. Run the same command again "
        "to go on"
    )
    assert stopped_invocation(signal.SIGTERM, 0, 0, 1)[1] == (
        "stopped by SIGTERM: 1 job did not start. Run the same command again to go on"
    )


# --------------------------------------------------------------------------------------
# The workflow: the faults as a user meets them
# --------------------------------------------------------------------------------------

EXPERIMENT = {
    "env_mlp": {
        "model": {"kind": "mlp"},
        # A loader worker: SIGTERM to the process group reaches it too.
        "train": {"epochs": 3, "batch_size": 16, "early_stopping_patience": 10, "num_workers": 1},
    }
}
MODEL = "results/models/env_mlp/model.pt"
PREDICTIONS = "results/predictions/env_mlp/val.parquet"
CHECKPOINTS = "results/models/env_mlp/checkpoints"
TRAIN_LOG = "logs/train_model/env_mlp.log"


def _start(workdir: Path, output: Path, *targets: str) -> subprocess.Popen:
    """The workflow started as a user starts it, in its own process group."""
    with open(output, "w") as handle:
        return subprocess.Popen(
            snakemake_command(workdir, *targets),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _first_checkpoint(workdir: Path, process: subprocess.Popen, output: Path) -> None:
    """Wait until the training has finished an epoch (and goes on with the next)."""
    wait_for_file(workdir / CHECKPOINTS / "*[0-9a-f].pt", process, output)


def _runs(uri: str, workdir: Path) -> dict[str, str]:
    """The status of each run of ``workdir``'s invocations (named by their targets) and
    of their jobs, by name."""
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("geolifeclef")
    parents = client.search_runs(
        [experiment.experiment_id], f"tags.`{WORKDIR_TAG}` = '{workdir.resolve()}'"
    )
    found = {}
    for parent in parents:
        found[re.sub(r" \S+ \S+$", "", parent.info.run_name)] = parent.info.status
        children = client.search_runs(
            [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
        found.update({child.info.run_name: child.info.status for child in children})
    return found


@pytest.mark.slow
def test_a_second_invocation_leaves_alone_what_a_live_one_writes(demo_workdir, tmp_path):
    """The issue's case: a training runs, and `snakemake results/predictions/constant/
    val.parquet` is started beside it."""
    server, port = start_mlflow_server(tmp_path / "server")
    uri = f"http://127.0.0.1:{port}"
    config = {"experiments": EXPERIMENT, "mlflow": {"tracking_uri": uri}}
    workdir = copy_workdir(demo_workdir, tmp_path / "workflow", config)
    output = tmp_path / "first.out"
    first = _start(workdir, output, MODEL)
    try:
        _first_checkpoint(workdir, first, output)
        # Frozen mid-training while the second starts: its processes and runs are alive.
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            dead = _temporary(workdir / "results" / "models", "x.pt", _dead_owners()["ended"])
            notes = workdir / "results" / "notes.txt"
            with atomic_path(notes) as live:  # a live writer: this test
                live.write_text("written while another invocation starts")
                second = run_snakemake(workdir, "results/predictions/constant/val.parquet")
            beside = _runs(uri, workdir)
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        assert first.wait(timeout=600) == 0, output.read_text()[-3000:]
        after = _runs(uri, workdir)
    finally:
        stop(first)
        stop(server)
    assert second.returncode == 0, second.stderr[-3000:]
    assert notes.read_text() == "written while another invocation starts"
    removed = [line for line in second.stderr.splitlines() if "temporaries" in line]
    said = "removed 1 temporaries of a killed run (their process is gone)"
    assert len(removed) == 1 and removed[0].endswith(f"{said}: {dead.relative_to(workdir)}")
    assert "MLflow runs" not in second.stderr  # none was closed: nothing to say
    assert beside == {MODEL: "RUNNING", "train env_mlp": "RUNNING"}
    assert after == dict.fromkeys(after, "FINISHED"), _why_not_finished(tmp_path, workdir)
    assert (workdir / MODEL).exists()


def _why_not_finished(tmp_path: Path, workdir: Path) -> str:
    """What the server's database holds of each run, and what the training logged of
    MLflow: the failure message of a run left RUNNING (CI saw the training's so, likely as a server
    too busy for one health check left it; it now ends once the server answers within
    ``END_RUN_WAIT_S``)."""
    with sqlite3.connect(tmp_path / "server" / "mlflow.db") as database:
        rows = database.execute("SELECT name, status, start_time, end_time FROM runs").fetchall()
    logged = [
        line
        for line in (workdir / "logs" / "train_model" / "env_mlp.log").read_text().splitlines()
        if "MLflow" in line or "mlflow" in line
    ]
    return f"database: {rows}\ntraining log: {logged}"


@pytest.fixture(scope="module")
def sigterm_to_snakemake(demo_workdir, tmp_path_factory) -> tuple[Path, int, str]:
    """A short training and its val predictions asked for, and SIGTERM sent to Snakemake
    alone while it trains: (its folder, its exit status, its output)."""
    workdir = copy_workdir(
        demo_workdir, tmp_path_factory.mktemp("sigterm-snakemake"), {"experiments": EXPERIMENT}
    )
    output = workdir / "snakemake.out"
    process = _start(workdir, output, PREDICTIONS)
    try:
        _first_checkpoint(workdir, process, output)
        os.kill(process.pid, signal.SIGTERM)
        status = process.wait(timeout=600)
    finally:
        stop(process)
    return workdir, status, output.read_text()


@pytest.mark.slow
def test_sigterm_to_snakemake_lets_its_job_finish_and_reports_it_finished(sigterm_to_snakemake):
    workdir, status, output = sigterm_to_snakemake
    assert "Will exit after finishing currently running jobs" in output  # it came in time
    assert status == 143, output[-3000:]
    said = "stopped by SIGTERM: 1 job finished (outputs kept), 1 job did not start. "
    assert said in output
    assert "did not complete successfully" not in output and "Error in rule" not in output
    assert (workdir / MODEL).exists() and not (workdir / PREDICTIONS).exists()
    runs = _runs(f"sqlite:///{workdir / 'mlflow.db'}", workdir)
    assert runs == {PREDICTIONS: "KILLED", "train env_mlp": "FINISHED"}


@pytest.mark.slow
def test_sigterm_to_all_stops_training_with_a_checkpoint_and_every_run_ends_killed(
    demo_workdir, sigterm_to_snakemake, tmp_path
):
    """As SLURM stops a job at preemption or time limit: SIGTERM to every process."""
    workdir = copy_workdir(demo_workdir, tmp_path / "workflow", {"experiments": EXPERIMENT})
    output = tmp_path / "stopped.out"
    process = _start(workdir, output, PREDICTIONS)
    try:
        _first_checkpoint(workdir, process, output)
        os.killpg(process.pid, signal.SIGTERM)
        status = process.wait(timeout=120)  # promptly: after the step it is in
    finally:
        stop(process)
    text = output.read_text()
    assert status == 143, text[-3000:]
    stopped = re.search(
        r"training stopped by SIGTERM (in|after) epoch .*: checkpoint \S+ saved", text
    )
    assert stopped, text[-3000:]
    assert "stopped by SIGTERM: 1 job ended unfinished (stopped by SIGTERM too, or failed" in text
    assert "Traceback" not in (workdir / TRAIN_LOG).read_text()
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert _runs(uri, workdir) == {PREDICTIONS: "KILLED", "train env_mlp": "KILLED"}
    rerun = run_snakemake(workdir, PREDICTIONS)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "killed run" not in rerun.stderr  # the stopped invocation left nothing to clear
    assert re.search(r"resuming from \S+ after epoch \d", (workdir / TRAIN_LOG).read_text())
    reference = sigterm_to_snakemake[0]
    got, expected = (
        torch.load(folder / MODEL, map_location="cpu", weights_only=True)["state_dict"]
        for folder in (workdir, reference)
    )
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0)
