"""The MLflow runs of a workflow invocation, around its jobs' runs (``geolifeclef.tracking.runs``).

* One parent run per invocation, started by the Snakefile's ``onstart`` and ended by
  ``onsuccess``/``onerror``; its id reaches the jobs through ``PARENT_RUN_ENV``.
* One run per sweep, under the parent, that the sweep's train runs nest under
  (``SWEEP_RUNS_ENV``); deleted at the end when nothing of the sweep ran.
* Runs that a killed invocation left RUNNING are marked KILLED when the next one starts.
"""

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import mlflow

from geolifeclef.settings.tracking import SWEEP_RUNS_ENV
from geolifeclef.tracking.runs import (
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
        all_tags = {**WORKFLOW_KIND, WORKDIR_TAG: str(Path(workdir).resolve()), **(tags or {})}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        run = mlflow.MlflowClient().create_run(experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id
    except Exception as error:
        log.warning("no parent MLflow run (%s)", redact(str(error)))
        return None


def close_stale_runs(tracking_uri: str, experiment: str, workdir: str | Path) -> list[str]:
    """Mark KILLED the runs that a killed invocation in ``workdir`` left RUNNING (its parent
    run and the children still running under it); return their ids.

    Called when an invocation starts: Snakemake's lock keeps a second one out of the same
    working directory, so a parent run of this directory still RUNNING is a dead one.
    Nothing happens when MLflow is unreachable or the experiment does not exist yet.
    """
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[10:]).exists():
        return []  # no runs at all yet: do not pay for importing MLflow
    if not _server_reachable(tracking_uri, 3.0):
        return []
    closed: list[str] = []
    try:
        mlflow.set_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        running = "attributes.status = 'RUNNING'"
        where = str(Path(workdir).resolve()).replace("'", "\\'")
        parents = client.search_runs(
            [found.experiment_id],
            f"{running} and tags.`glc.kind` = 'workflow' and tags.`{WORKDIR_TAG}` = '{where}'",
        )
        stack = list(parents)
        while stack:  # a parent, its sweep runs, their train runs
            run = stack.pop()
            stack += client.search_runs(
                [found.experiment_id],
                f"{running} and tags.`mlflow.parentRunId` = '{run.info.run_id}'",
            )
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    except Exception as error:
        log.warning("could not close stale MLflow runs (%s)", redact(str(error)))
    return closed


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


def end_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Mark a run (the invocation's parent) as ended; a no-op when MLflow is unreachable."""
    if not _server_reachable(tracking_uri, 3.0):
        return
    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.MlflowClient().set_terminated(run_id, status)
    except Exception as error:
        log.warning("could not end MLflow run %s (%s)", run_id, redact(str(error)))
