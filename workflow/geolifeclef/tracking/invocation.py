"""The MLflow runs of a workflow invocation, around its jobs' runs (``geolifeclef.tracking.runs``).

* One parent run per invocation, started by the Snakefile's ``onstart`` and ended by
  ``onsuccess``/``onerror``; its id reaches the jobs through ``PARENT_RUN_ENV``.
* One run per sweep, under the parent, that the sweep's train runs nest under
  (``SWEEP_RUNS_ENV``); deleted at the end when nothing of the sweep ran.
* Runs that a dead process left RUNNING (a killed invocation's, or a killed job's under a
  parent ended FAILED) are marked KILLED when the next invocation starts; those of live
  processes (an invocation running beside it) are left alone (``close_stale_runs``).
* An invocation stopped by SIGTERM (``StopSignal``) ends its parent run KILLED, or
  FINISHED when the jobs it let finish were the last ones (``stopped_invocation``).
"""

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mlflow

from geolifeclef.owners import (
    UNCHECKABLE_AGE_TEXT,
    Liveness,
    Owner,
    OwnerCheck,
    clearable,
    this_process,
)
from geolifeclef.settings.tracking import SWEEP_RUNS_ENV
from geolifeclef.tracking.runs import (
    OWNER_TAG,
    _experiment_id,
    _server_reachable,
    artifacts_beside,
    redact,
)

log = logging.getLogger(__name__)


WORKFLOW_KIND = {"glc.kind": "workflow"}
"""Tag of the parent run of a workflow invocation."""
WORKDIR_TAG = "glc.workdir"


def start_parent_run(
    tracking_uri: str,
    experiment: str,
    name: str,
    workdir: str | Path = ".",
    parent: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str | None:
    """Create the parent run of a workflow invocation in ``workdir`` (or, with ``parent``
    and ``tags``, a run that groups some of its jobs, such as a sweep's); None if MLflow is
    unreachable."""
    if not _server_reachable(tracking_uri, 3.0):
        return None
    try:
        mlflow.set_tracking_uri(tracking_uri)
        experiment_id = _experiment_id(mlflow, experiment, artifacts_beside(tracking_uri))
        all_tags = {
            **WORKFLOW_KIND,
            WORKDIR_TAG: str(Path(workdir).resolve()),
            OWNER_TAG: this_process().token,
            **(tags or {}),
        }
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        run = mlflow.MlflowClient().create_run(experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id
    except Exception as error:
        log.warning("no parent MLflow run (%s)", redact(str(error)))
        return None


@dataclass
class StaleRuns:
    """What ``close_stale_runs`` found: the runs it marked KILLED, and the runs it left
    RUNNING because their process runs on a host it cannot check (names by run id)."""

    closed: dict[str, str] = field(default_factory=dict)
    unchecked: dict[str, str] = field(default_factory=dict)

    def messages(self, shown: int = 5) -> list[str]:
        """What a user is told (nothing about the runs of live processes)."""
        lines = []
        if self.closed:
            names = ", ".join(list(self.closed.values())[:shown])
            lines.append(
                f"marked {len(self.closed)} MLflow runs of a killed run KILLED "
                f"(their process is gone): {names}"
            )
        if self.unchecked:
            names = ", ".join(list(self.unchecked.values())[:shown])
            lines.append(
                f"left {len(self.unchecked)} MLflow runs RUNNING whose process runs on "
                f"another host, which this one cannot check: {names}. They are marked "
                f"KILLED once {UNCHECKABLE_AGE_TEXT} old"
            )
        return lines


def close_stale_runs(tracking_uri: str, experiment: str, workdir: str | Path) -> StaleRuns:
    """Mark KILLED the runs of ``workdir`` still RUNNING whose process is gone (the
    ``OWNER_TAG`` of each run: an invocation's parent and sweep runs, a job's run),
    whatever the status of the run above them; runs without one (written before owners
    were recorded) are taken as dead.

    Called when an invocation starts. Snakemake locks files, not the folder: another
    invocation may run beside this one, and its runs, whose processes live, are left as
    they are. A run belongs to ``workdir`` by its own tag or its parent's (a job's run).
    Nothing happens when MLflow is unreachable or the experiment does not exist yet.
    """
    found = StaleRuns()
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[10:]).exists():
        return found  # no runs at all yet: do not pay for importing MLflow
    if not _server_reachable(tracking_uri, 3.0):
        return found
    try:
        mlflow.set_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient()
        experiment_found = client.get_experiment_by_name(experiment)
        if experiment_found is None:
            return found
        where = str(Path(workdir).resolve())
        owners = OwnerCheck()
        folders: dict[str, str | None] = {}
        now_ms = time.time() * 1000
        running = client.search_runs(
            [experiment_found.experiment_id], "attributes.status = 'RUNNING'", max_results=5000
        )
        for run in running:
            if _folder_of(client, run, folders) != where:
                continue
            owner = Owner.parse(run.data.tags.get(OWNER_TAG))
            liveness = owners.liveness(owner)
            name = f"{run.info.run_name} ({owner or 'no owner recorded'})"
            if clearable(liveness, (now_ms - run.info.start_time) / 1000):
                client.set_terminated(run.info.run_id, "KILLED")
                found.closed[run.info.run_id] = name
            elif liveness is Liveness.UNKNOWN:
                found.unchecked[run.info.run_id] = name
    except Exception as error:
        log.warning("could not close stale MLflow runs (%s)", redact(str(error)))
    return found


def _folder_of(client, run, known: dict[str, str | None]) -> str | None:
    """The workflow folder of ``run``: its own ``WORKDIR_TAG`` (an invocation's runs), else
    its parent's (a job's run), looked up once per parent in ``known``."""
    folder = run.data.tags.get(WORKDIR_TAG)
    parent = run.data.tags.get("mlflow.parentRunId")
    if folder is not None or parent is None:
        return folder
    if parent not in known:
        known[parent] = None  # a parent deleted, or a loop: no folder
        with contextlib.suppress(Exception):  # a parent run deleted meanwhile
            known[parent] = _folder_of(client, client.get_run(parent), known)
    return known[parent]


def sweep_run(sweep: str | None) -> str | None:
    """The run of ``sweep`` in this invocation (from the environment), if there is one."""
    if not sweep:
        return None
    return json.loads(os.environ.get(SWEEP_RUNS_ENV, "{}")).get(sweep)


def end_sweep_runs(tracking_uri: str, runs: Mapping[str, str], status: str) -> None:
    """End the invocation's sweep runs: a run that got members is marked ``status``, one
    that got none (nothing of the sweep had to be trained again) is deleted."""
    if not runs or not _server_reachable(tracking_uri, 3.0):
        return
    try:
        mlflow.set_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient()
        for run_id in runs.values():
            experiment_id = client.get_run(run_id).info.experiment_id
            children = client.search_runs(
                [experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=1
            )
            if children:
                client.set_terminated(run_id, status)
            else:
                client.delete_run(run_id)
    except Exception as error:
        log.warning("could not end the sweep runs (%s)", redact(str(error)))


class StopSignal:
    """Notes whether the invocation got SIGTERM (SLURM's signal at preemption and time
    limit). Snakemake's own handler, kept, then starts no new job, waits for the running
    ones and reports the invocation failed whatever they did; ``stopped_invocation`` says
    what happened instead."""

    def __init__(self, number: int = signal.SIGTERM) -> None:
        self.watched = number
        self.received: int | None = None
        self._previous = signal.getsignal(number)
        signal.signal(number, self._note)

    def _note(self, number: int, frame) -> None:
        self.received = number
        if callable(self._previous):
            self._previous(number, frame)
        elif self._previous == signal.SIG_DFL:  # nobody else handles it: die of it
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)


def stopped_invocation(
    number: int, finished: int, unfinished: int, not_started: int
) -> tuple[str, str, int]:
    """(parent run's status, message, exit status) of an invocation that got signal
    ``number`` and let its running jobs end: ``finished`` of them finished, ``unfinished``
    ended without (stopped by the same signal, or failed), ``not_started`` jobs were left.

    When nothing is left, the invocation did all it had to: FINISHED, exit status 0.
    Else KILLED, and 128 + the signal's number, as a process killed by it."""
    name = signal.Signals(number).name
    if not unfinished and not not_started:
        message = f"{name} came while the last jobs ran: they finished, nothing is left to do"
        return "FINISHED", message, 0
    parts = []
    if finished:
        parts.append(f"{_jobs(finished)} finished (outputs kept)")
    if unfinished:
        parts.append(
            f"{_jobs(unfinished)} ended unfinished (stopped by {name} too, or failed: their "
            "logs say which; a training stopped by it resumes from its checkpoint)"
        )
    if not_started:
        parts.append(f"{_jobs(not_started)} did not start")
    message = f"stopped by {name}: {', '.join(parts)}. Run the same command again to go on"
    return "KILLED", message, 128 + number


def _jobs(count: int) -> str:
    return f"{count} job{'s' if count != 1 else ''}"
