"""MLflow conventions: the one place that decides how runs are named, tagged and logged.

* The tracking URI comes from the config (default: ``sqlite:///<workdir>/mlflow.db``);
  artifacts go to an explicit location so that they do not depend on the cwd.
* Every train and evaluate job is a run of the configured experiment, nested under one
  parent run per workflow invocation (``GLC_MLFLOW_PARENT_RUN_ID``, set by the Snakefile;
  the invocation's own runs are ``geolifeclef.tracking.invocation``).
* Params are the flattened config; tags carry the git commit, a fingerprint of the input
  data, the Snakemake rule and wildcards, and the process that runs the run
  (``OWNER_TAG``: a run left RUNNING by a dead process is marked KILLED later).
* If the tracking server cannot be reached, the job goes on: metrics are kept in a local
  JSON-lines file beside the job's outputs, and the log says how to sync them later
  (``geolifeclef sync-runs <file>``).
"""

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import pandas as pd
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from geolifeclef.errors import StoppedBySignal
from geolifeclef.owners import this_process
from geolifeclef.settings.tracking import DEFAULT_EXPERIMENT, PARENT_RUN_ENV, default_tracking_uri

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
"""MLflow 3's UI opens an experiment on its GenAI overview unless this tag says it holds
model training runs; with it, the experiment opens on its runs table."""
SYSTEM_METRICS_SECONDS = 10
"""Sampling interval of a train run's system metrics (MLflow's default)."""
LOGGED_LOCALLY_TAG = "glc.logged_locally"
"""On a run whose server stopped answering mid-run: the local log that holds the rest of
its params and metrics (``geolifeclef sync-runs`` replays it)."""
END_RUN_WAIT_S = 15.0
"""How long a run's end waits for a busy server's health check (a call in the middle of a
run waits 5 s): a run left RUNNING misleads."""
OWNER_TAG = "glc.owner"
"""The process that runs a run and ends it (``geolifeclef.owners.Owner.token``): a run
still RUNNING whose process is gone is marked KILLED by the next invocation's start."""
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api[_-]?key|credential)", re.I)
_URI_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


def redact(value: Any) -> Any:
    """Strip credentials from URIs (``https://user:pw@host`` -> ``https://host``)."""
    if isinstance(value, str):
        return _URI_CREDENTIALS.sub(r"\1", value)
    return value


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a nested config without the keys that look secret and without credentials
    in URIs (what ``flatten`` logs as params, kept nested: e.g. for a config.yaml)."""
    return {
        key: redact_config(value) if isinstance(value, Mapping) else redact(value)
        for key, value in config.items()
        if not _SECRET_KEY.search(str(key))
    }


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; keys that look secret are left out."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if _SECRET_KEY.search(str(key)):
            continue
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(redact(value))[:6000]  # MLflow's limit on a param value
    return flat


def git_commit(repo: str | Path | None = None) -> str:
    """The current commit of ``repo`` (default: the repository of this package, whatever
    the working directory), ``-dirty`` when it has changes, or ``unknown``."""
    repo = Path(__file__).parent if repo is None else repo
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fingerprint(paths: list[str | Path]) -> str:
    """Short hash of the inputs: content for files under 64 MiB, size and mtime above."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(str(path).encode())
        if path.is_file() and path.stat().st_size < 64 * 2**20:
            digest.update(path.read_bytes())
        elif path.exists():
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


METRIC_DIGITS = 6
"""Significant digits a metric is logged with: an error over 1,000 rows is 0.227, not
the 0.22699999999999998 of its float sum; an error over the archive's 40,080 val rows
keeps its 5 decimals."""


def clean_metric(value: float) -> float:
    """``value`` rounded to ``METRIC_DIGITS`` significant digits (inf and nan as they are)."""
    return float(f"{float(value):.{METRIC_DIGITS}g}")


class LocalMetricLog:
    """Metrics kept on disk when MLflow is unreachable, one JSON object per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **payload: Any) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"kind": kind, "time": time.time(), **payload}) + "\n")


class Tracker:
    """One MLflow run, or its local stand-in when the server cannot be reached.

    Use as a context manager from ``start_run``; every method is safe to call either way.
    A server that goes down in the middle of a run switches the tracker to local logging
    for the rest of it, so training never stops for the tracker.
    """

    def __init__(
        self,
        local_log: LocalMetricLog,
        run_id: str | None,
        mlflow_module,
        tracking_uri: str | None = None,
    ) -> None:
        self.local = local_log
        self.run_id = run_id
        self._mlflow = mlflow_module
        self._uri = tracking_uri

    @property
    def online(self) -> bool:
        return self.run_id is not None

    def _call(self, what: str, function, *args, **kwargs) -> Any:
        """``function(*args, **kwargs)``'s result, or None (and local logging from now on)
        when MLflow fails."""
        if not self.online:
            return None
        try:
            # A lost server would stall the call for minutes in MLflow's retries.
            problem = store_problem(self._uri, 5.0) if self._uri else None
            if problem is not None:
                raise ConnectionError(problem.problem)
            return function(*args, **kwargs)
        except Exception as error:  # any transport or server failure
            log.warning(
                "MLflow %s failed (%s); logging locally to %s from now on. "
                "Sync later with: geolifeclef sync-runs %s",
                what,
                short_reason(error),
                self.local.path,
                self.local.path,
            )
            self.run_id = None
            return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        self.local.write("params", params=flat)
        client = self._client()
        if client is not None:
            batch = [Param(k, v) for k, v in flat.items()]
            for start in range(0, len(batch), 100):
                self._call(
                    "log params", client.log_batch, self.run_id, params=batch[start : start + 100]
                )

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, model_id: str | None = None
    ) -> None:
        """Log ``metrics`` at ``step``, each to ``METRIC_DIGITS`` significant digits; with
        ``model_id`` (of a logged model, ``m-...``) they also show on that model's page."""
        values = {k: clean_metric(v) for k, v in metrics.items()}
        self.local.write("metrics", metrics=values, step=step)
        client = self._client()
        if client is not None:
            now = int(time.time() * 1000)
            batch = [Metric(k, v, now, step or 0, model_id=model_id) for k, v in values.items()]
            self._call("log metrics", client.log_batch, self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        values = {k: str(redact(v)) for k, v in tags.items()}
        self.local.write("tags", tags=values)
        client = self._client()
        if client is not None:
            batch = [RunTag(k, v) for k, v in values.items()]
            self._call("set tags", client.log_batch, self.run_id, tags=batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.local.write("artifact", path=str(path))
        client = self._client()
        if client is not None and Path(path).exists():
            self._call("log artifact", client.log_artifact, self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log ``text`` as the artifact ``artifact_file`` (e.g. a redacted config.yaml)."""
        self.local.write("artifact", path=artifact_file)
        client = self._client()
        if client is not None:
            self._call("log text", client.log_text, self.run_id, text, artifact_file)

    def log_model(self, log_function, name: str, **kwargs) -> str | None:
        """Log a model into this run with an MLflow ``log_model`` function (e.g.
        ``mlflow.pyfunc.log_model``) and ``kwargs``; return its ``models:/`` URI, or None
        when MLflow is unreachable (nothing is logged then)."""
        if not self.online:
            self.local.write("model", name=name, skipped="offline")
            return None

        def _log() -> str:
            with _active_run(self._mlflow, self.run_id):
                return log_function(name=name, **kwargs).model_uri

        return self._call("log model", _log)

    def log_input(self, table: str | Path, context: str) -> None:
        """Record an observation table the run read (the runs table's Dataset column): its
        path, MLflow's digest of its rows, its schema and row count, and ``context``
        (``training``, ``validation``)."""
        self.local.write("input", path=str(table), context=context)

        def _log() -> None:
            frame = pd.read_parquet(table)
            dataset = mlflow.data.from_pandas(
                frame, source=str(Path(table).resolve()), name=Path(table).stem
            )
            # Through the client, not mlflow.log_input: that needs the run active, and
            # leaving an active run marks it FINISHED while training goes on (a job killed
            # later would then not be found RUNNING and marked KILLED).
            logged = DatasetInput(
                dataset._to_mlflow_entity(),
                tags=[InputTag(key="mlflow.data.context", value=context)],
            )
            self._mlflow.MlflowClient().log_inputs(self.run_id, datasets=[logged])

        if self.online:
            self._call("log input", _log)

    def _client(self):
        if not self.online:
            return None
        return self._mlflow.MlflowClient()


@contextlib.contextmanager
def _active_run(mlflow_module, run_id: str) -> Iterator[None]:
    active = mlflow_module.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow_module.start_run(run_id=run_id):
        yield


@dataclass(frozen=True)
class StoreProblem:
    """Why MLflow cannot record runs at a tracking URI, and the fix, in a user's words."""

    problem: str
    fix: str


def store_problem(uri: str, timeout: float) -> StoreProblem | None:
    """Why MLflow at ``uri`` cannot record runs, as far as can be told without writing (a
    server that does not answer its health check; a SQLite file, or the folder where SQLite
    writes its journal, that this user may not write); None when it can, or cannot tell."""
    if uri.startswith(("http://", "https://")):
        if _health_answers(uri, timeout):
            return None
        return StoreProblem(
            f"MLflow server {redact(uri)} is unreachable (no answer to its health check)",
            "start it (or set mlflow.tracking_uri to one that answers)",
        )
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(urllib.parse.urlsplit(uri).path.removeprefix("/"))  # without ?options
    folder = database.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    fix = (
        f"make {database} and its folder writable for this user (or set "
        "mlflow.tracking_uri to a store that is)"
    )
    if database.exists() and not os.access(database, os.W_OK):
        return StoreProblem(f"MLflow store {database} is read-only", fix)
    if not os.access(folder, os.W_OK):
        return StoreProblem(f"MLflow store {database}: its folder {folder} is read-only", fix)
    return None


def short_reason(error: BaseException) -> str:
    """The first line of the error at the root of ``error``'s causes, credentials removed:
    ``attempt to write a readonly database`` for an MlflowException raised from SQLAlchemy's
    error raised from sqlite3's, where the whole would be its SQL and parameters."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return redact(lines[0] if lines else type(error).__name__)


class _WithoutDatabaseTracebacks(logging.Filter):
    """MLflow's SQL store logs a database error with its traceback, SQL and parameters
    (some 30 lines) before raising it again as an MlflowException, which the code here
    reports in one line (``short_reason``): that record is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


logging.getLogger("mlflow.store.db.utils").addFilter(_WithoutDatabaseTracebacks())


def _server_reachable(uri: str, timeout: float) -> bool:
    """Whether MLflow at ``uri`` can record runs (``store_problem``)."""
    return store_problem(uri, timeout) is None


def _health_answers(uri: str, timeout: float) -> bool:
    """Whether the MLflow server at ``uri`` answers its health check."""
    # urllib does not take user:password from a URL: send them as basic auth.
    parts = urllib.parse.urlsplit(uri)
    request = urllib.request.Request(f"{redact(uri).rstrip('/')}/health")
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def start_run(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    local_log: str | Path,
    tags: Mapping[str, Any] | None = None,
    artifact_root: str | Path | None = None,
    timeout: float = 5.0,
    parent_run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[Tracker]:
    """Open an MLflow run, nested under ``parent_run_id`` (a sweep's run) or else under the
    invocation's parent run when there is one; with ``system_metrics``, CPU, memory, disk
    and GPU use are logged every ``SYSTEM_METRICS_SECONDS`` while it is open (psutil).

    Falls back to local logging when the tracking URI cannot be reached, and says so. A
    new experiment keeps its artifacts in ``artifact_root`` (default: ``artifacts_beside``).
    """
    local = LocalMetricLog(local_log)
    local.write("run", tracking_uri=redact(tracking_uri), experiment=experiment, run_name=run_name)
    run_id = None
    mlflow_module = None
    status = "FINISHED"
    problem = store_problem(tracking_uri, timeout)
    if problem is None:
        try:
            mlflow.set_tracking_uri(tracking_uri)
            mlflow_module = mlflow
            experiment_id = _experiment_id(
                mlflow, experiment, artifact_root or artifacts_beside(tracking_uri)
            )
            all_tags = {k: str(redact(v)) for k, v in (tags or {}).items()}
            all_tags[OWNER_TAG] = this_process().token
            parent = parent_run_id or os.environ.get(PARENT_RUN_ENV)
            if parent:
                all_tags["mlflow.parentRunId"] = parent
            run = mlflow.MlflowClient().create_run(experiment_id, run_name=run_name, tags=all_tags)
            run_id = run.info.run_id
            local.write("run_id", run_id=run_id)
        except Exception as error:
            problem = StoreProblem(
                f"MLflow at {redact(tracking_uri)} failed ({short_reason(error)})",
                "make it usable (or set mlflow.tracking_uri to a store that is)",
            )
            run_id = None
    if run_id is None:
        log.warning(
            "%s: this job goes on and logs its params and metrics to %s. Fix: %s, then "
            "replay them with: geolifeclef sync-runs %s",
            problem.problem,
            local.path,
            problem.fix,
            local.path,
        )
    tracker = Tracker(local, run_id, mlflow_module, tracking_uri)
    monitor = _system_metrics_monitor(run_id, tracking_uri) if system_metrics else None
    try:
        yield tracker
    except BaseException as error:
        stopped = isinstance(error, KeyboardInterrupt | StoppedBySignal)
        status = "KILLED" if stopped else "FAILED"
        raise
    finally:
        if monitor is not None:
            _finish_system_metrics(monitor)
        if run_id is not None:
            # Also when a call mid-run found the server busy or gone: it may answer now.
            lost = {} if tracker.online else {LOGGED_LOCALLY_TAG: str(local.path)}
            end_run(tracking_uri, run_id, status, tags=lost)


def end_run(
    tracking_uri: str,
    run_id: str,
    status: str = "FINISHED",
    tags: Mapping[str, str] | None = None,
) -> None:
    """Mark a run ended with ``tags`` (a job's run, an invocation's parent), waiting up to
    ``END_RUN_WAIT_S`` for a busy server, or say why it stays RUNNING."""
    if not _server_reachable(tracking_uri, END_RUN_WAIT_S):
        log.warning(
            "MLflow run %s stays RUNNING: %s did not answer within %.0f s (the next "
            "invocation's start marks it KILLED)",
            run_id,
            redact(tracking_uri),
            END_RUN_WAIT_S,
        )
        return
    try:
        mlflow.set_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient()
        for key, value in (tags or {}).items():
            client.set_tag(run_id, key, value)
        client.set_terminated(run_id, status)
    except Exception as error:
        log.warning("could not end MLflow run %s (%s)", run_id, short_reason(error))


def _system_metrics_monitor(run_id: str | None, tracking_uri: str):
    """A started monitor logging the run's system metrics (through psutil, and pynvml
    when there is a GPU), or None when offline or it cannot start: the run goes on."""
    if run_id is None:
        return None
    try:
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=SYSTEM_METRICS_SECONDS, tracking_uri=tracking_uri
        )
        monitor.start()
        return monitor
    except Exception as error:  # whatever stops the monitor must not stop training
        log.warning("no system metrics for run %s: %s", run_id, error)
        return None


def _finish_system_metrics(monitor) -> None:
    """Stop ``monitor`` and log what it sampled since its last point, with a last sample:
    MLflow's monitor drops a window cut short, so a run shorter than
    ``SYSTEM_METRICS_SECONDS`` (the demo's MLPs: ~8 s) had no system metrics at all."""
    monitor.finish()
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as error:  # the run's own results are logged already
        log.warning("no last system metrics sample: %s", error)


@contextlib.contextmanager
def attach_run(tracking_uri: str, run_id: str | None, local_log: str | Path) -> Iterator[Tracker]:
    """A tracker of an existing run (e.g. the invocation's parent run), left open after
    use; an offline tracker when ``run_id`` is None or MLflow cannot be reached."""
    local = LocalMetricLog(local_log)
    mlflow_module = None
    if run_id and _server_reachable(tracking_uri, 3.0):
        mlflow.set_tracking_uri(tracking_uri)
        mlflow_module = mlflow
    yield Tracker(local, run_id if mlflow_module else None, mlflow_module, tracking_uri)


def artifacts_beside(tracking_uri: str) -> Path:
    """Where a new experiment keeps its artifacts: ``mlartifacts`` beside a SQLite store's
    database (a workflow's folder, whatever the process's working directory), else
    ``mlartifacts`` in the working directory."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return Path("mlartifacts")


def _experiment_id(mlflow, name: str, artifact_root: str | Path) -> str:
    """The id of experiment ``name``, created (as a model training experiment, see
    ``EXPERIMENT_KIND_TAG``) when missing; an existing one without the tag gets it."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = Path(artifact_root).resolve().as_uri()
        try:
            return client.create_experiment(
                name,
                artifact_location=location,
                tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND},
            )
        except Exception:  # created by a concurrent job in the meantime
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id


def register_version(
    tracking_uri: str,
    model_uri: str,
    name: str,
    alias: str,
    tags: Mapping[str, Any],
    descriptions: tuple[str, str] = ("", ""),
) -> str:
    """Register a logged model (``models:/m-...``) as a new version of the registered model
    ``name``, tagged with ``tags`` and given ``alias`` (moved from an older version), with
    ``descriptions`` (of the registered model, of the version: the registry page shows
    them); return the version."""
    mlflow.set_tracking_uri(tracking_uri)
    version = mlflow.register_model(
        model_uri, name, tags={k: str(redact(v)) for k, v in tags.items()}
    )
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, alias, version.version)
    model_text, version_text = descriptions
    if model_text:
        client.update_registered_model(name, description=model_text)
    if version_text:
        client.update_model_version(name, version.version, description=version_text)
    return str(version.version)


def numeric_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested metrics dict, flattened: ``{"bucket": {"head": 0.1}}`` ->
    ``{"bucket.head": 0.1}`` (NaN and non-numbers left out)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(numeric_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            flat[name] = float(value)
    return flat


def sync_local_log(path: str | Path, tracking_uri: str, experiment: str) -> str:
    """Replay a local metric log into MLflow as a new run; return its run id."""

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    name = next((r["run_name"] for r in records if r["kind"] == "run"), Path(path).stem)
    experiment_id = _experiment_id(mlflow, experiment, artifacts_beside(tracking_uri))
    run = client.create_run(experiment_id, run_name=name, tags={"glc.synced_from": str(path)})
    for record in records:
        stamp = int(record["time"] * 1000)
        if record["kind"] == "params":
            params = [Param(k, v) for k, v in record["params"].items()]
            for start in range(0, len(params), 100):
                client.log_batch(run.info.run_id, params=params[start : start + 100])
        elif record["kind"] == "metrics":
            step = record.get("step") or 0
            metrics = [Metric(k, v, stamp, step) for k, v in record["metrics"].items()]
            client.log_batch(run.info.run_id, metrics=metrics)
        elif record["kind"] == "tags":
            client.log_batch(
                run.info.run_id, tags=[RunTag(k, v) for k, v in record["tags"].items()]
            )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(
        prog="geolifeclef sync-runs",
        description="Replay local metric logs (metrics.jsonl of jobs that could not reach "
        "MLflow) into MLflow, one new run each.",
    )
    parser.add_argument("log", nargs="+", help="a job's metrics.jsonl")
    parser.add_argument("--tracking-uri", default=default_tracking_uri())
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    args = parser.parse_args(argv)
    for path in args.log:
        run_id = sync_local_log(path, args.tracking_uri, args.experiment)
        print(f"{path} -> run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
