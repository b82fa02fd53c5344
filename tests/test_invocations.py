"""Invocations beside each other (issue 38, item 1).

* A second invocation (a plot asked for while a training runs) clears at its start only
  what dead processes left: temporaries of ``atomic_path`` and MLflow runs record their
  process, and those of live ones are kept.
"""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
from conftest import copy_workdir, run_snakemake, snakemake_command
from faults_helpers import start_mlflow_server, stop, wait_for_file

from geolifeclef.atomic import atomic_path, remove_stale_temporaries, temporary_owner
from geolifeclef.owners import UNCHECKABLE_AGE_S, Owner, this_process
from geolifeclef.tracking.invocation import (
    WORKDIR_TAG,
    close_stale_runs,
    start_parent_run,
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
# The workflow: the faults as a user meets them
# --------------------------------------------------------------------------------------

EXPERIMENT = {
    "env_mlp": {
        "model": {"kind": "mlp"},
        "train": {"epochs": 3, "batch_size": 16, "early_stopping_patience": 10, "num_workers": 1},
    }
}
MODEL = "results/models/env_mlp/model.pt"
CHECKPOINTS = "results/models/env_mlp/checkpoints"


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
    assert set(_runs(uri, workdir).values()) == {"FINISHED"}
    assert (workdir / MODEL).exists()
