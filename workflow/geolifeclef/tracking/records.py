"""What each MLflow run of the workflow records, and under which names.

One invocation of the workflow is one parent run; its train, refit and evaluate jobs are
child runs (``geolifeclef.tracking.runs`` says how runs are opened and reached). This module
decides what they hold, so that a researcher can compare them in the MLflow UI:

* the parent run is named after the targets and the time (``submission 2026-11-27
  10:15``) and holds the git commit, the targets, the config files and the settings as
  params, the whole config (credentials removed) as ``config.yaml``, and -- logged by the
  leaderboard job, which sees every model's metrics -- the reference figures
  (``constant/...``, ``bayes/...``) once, with the leaderboard itself;
* one name per quantity (``val_`` and the metric's name in
  ``geolifeclef.predictions.metrics.METRICS``): a train run logs ``val_top{k}_error`` per
  epoch and the kept (best) epoch's values as ``best_val_top{k}_error``; an evaluate run
  logs the same ``val_top{k}_error`` (and ``val_macro_top30_error``,
  ``val_<bucket>_top30_error``, the interval ``val_top30_error_low``/``_high``...) for the
  predictions it scores, at the step of the kept epoch for an experiment, so that its
  point lands on the train run's curve;
* an evaluate run is tagged with the train run and the logged model it evaluates
  (``evaluated_run_id``, ``evaluated_model_uri``) and logs the settings of the model it
  scores as params: those of a baseline, the weights of a blend.
"""

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import mlflow
import yaml

from geolifeclef.editions import TOP30, Task
from geolifeclef.predictions.metrics import (
    BUCKET_METRICS,
    EXPECTED_TOP30,
    KAGGLE_ERROR,
    SET_METRICS,
    SET_TASK_METRICS,
    figures,
    val_name,
)
from geolifeclef.tracking.runs import (
    _server_reachable,
    attach_run,
    git_commit,
    redact,
    redact_config,
)

TRACKED_RULES = frozenset(
    {
        "train_model",
        "refit_model",
        "evaluate_model",
        "build_leaderboard",
        "map_model",
        "importance_model",
        "select_submission",  # registers the submitted model, tagged with the parent run
    }
)
"""Rules whose jobs log to MLflow: an invocation that runs none gets no parent run."""
RUN_ID_KEY = "mlflow_run_id"
"""Key of ``history.json`` holding the train run's id (absent when MLflow was offline)."""
MODEL_URI_KEY = "mlflow_model_uri"
"""Key of ``history.json`` holding the logged model's ``models:/`` URI."""
SETS_MODEL_URI_KEY = "mlflow_sets_model_uri"
"""Key of a survey edition's ``metrics.json`` holding the URI of the model of its sets (its
ranked model cut by its set rule: ``geolifeclef.serving.models.SetModel``)."""
EVALUATED_RUN_TAG = "evaluated_run_id"
EVALUATED_MODEL_TAG = "evaluated_model_uri"
REFERENCES = {"constant": "constant", "bayes": "bayes"}
"""Reference predictors of ``metrics.json`` -> prefix of their metrics on the parent run."""
DESCRIPTION_TAG = "mlflow.note.content"
"""The run's description in the MLflow UI (Markdown)."""
UI_PORT = 5000
RUNS_VIEW = "runs?workflowType=machine_learning"
"""MLflow 3.17's UI opens every experiment on its GenAI overview unless its "Model
training" switch is on (or the URL says ``workflowType=machine_learning``): the experiment
tag ``mlflow.experimentKind`` alone does not change where it opens."""
EVALUATE_RUNS_FILTER = "tags.`snakemake.rule` = 'evaluate_model'"


def leaderboard_metric(task: Task = TOP30) -> tuple[str, bool]:
    """(the runs table's key of the metric that ranks a task's models, ascending?): the
    val top-30 error, lowest first; a survey edition's val F1, highest first."""
    return f"metrics.`{val_name(task.metric)}`", not task.higher_is_better


def leaderboard_view(task: Task = TOP30) -> str:
    """The runs table as a leaderboard: the evaluate runs, one a model, best first by the
    task's metric (the UI reads its search box and sort from the URL; a search lists the
    runs nested under an invocation's parent run without a click on its `+`)."""
    order, ascending = leaderboard_metric(task)
    return (
        f"{RUNS_VIEW}&searchFilter={quote(EVALUATE_RUNS_FILTER)}"
        f"&orderByKey={quote(order)}&orderByAsc={str(ascending).lower()}"
    )


LEADERBOARD_VIEW_KEY = "leaderboard"


def leaderboard_columns(task: Task = TOP30) -> tuple[str, ...]:
    """The columns the leaderboard view shows (the UI's column keys): the task's metric,
    its interval, the model's kind."""
    name = val_name(task.metric)
    return (f"metrics.`{name}`", f"metrics.`{name}_low`", f"metrics.`{name}_high`", "params.`kind`")


SHARED_VIEW_TAG = "mlflow.sharedViewState."
"""The UI's shared views: an experiment tag ``<this><key>`` holding the view's search,
sort and columns as JSON, opened by ``viewStateShareKey=<key>`` in the URL. The only way
to open the runs table with chosen columns: the UI keeps the columns a user picks in the
browser's storage."""


def leaderboard_view_state(task: Task = TOP30) -> dict[str, Any]:
    """The leaderboard view as the UI's shared view state."""
    order, ascending = leaderboard_metric(task)
    return {
        "searchFilter": EVALUATE_RUNS_FILTER,
        "orderByKey": order,
        "orderByAsc": ascending,
        "selectedColumns": list(leaderboard_columns(task)),
    }


# --------------------------------------------------------------------------------------
# The parent run of an invocation
# --------------------------------------------------------------------------------------


def invocation_run_name(targets: Sequence[str], when: datetime | None = None) -> str:
    """``"submission 2026-11-27 10:15"``: what the invocation built, and when."""
    when = when or datetime.now()
    shown = " ".join(targets) or "all"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} {when:%Y-%m-%d %H:%M}"


def invocation_params(
    targets: Sequence[str], config: Mapping[str, Any], config_files: Sequence[str], commit: str
) -> dict[str, Any]:
    """Params of the parent run: targets, commit, config files and the settings of every
    section of the config but ``experiments`` (each train run logs its own experiment's
    settings; here only their names, to keep one column per setting in the runs table)."""
    return {
        "targets": " ".join(targets),
        "git_commit": commit,
        "config_files": ", ".join(str(f) for f in config_files),
        "experiments": ", ".join(config.get("experiments", {})),
        **{key: value for key, value in config.items() if key != "experiments"},
    }


def invocation_description(targets: Sequence[str], commit: str) -> str:
    return (
        f"Workflow invocation: `snakemake {' '.join(targets)}` at commit `{commit}`.\n\n"
        "Child runs: one per train, refit and evaluate job (expand this row in the runs "
        "table). Params: the settings of this invocation; artifact `config.yaml`: the whole "
        "config. Metrics `constant/...` and `bayes/...` are the reference predictors on "
        "val (the Bayes limit only on the demo data); `leaderboard/` holds the ranking."
    )


def describe_invocation(
    tracking_uri: str,
    run_id: str,
    targets: Sequence[str],
    config: Mapping[str, Any],
    config_files: Sequence[str],
) -> None:
    """Record on the parent run what the invocation builds and with which settings:
    ``invocation_params``, the commit as MLflow's source tag, a description, and the
    config (credentials removed) as ``config.yaml``. A no-op when MLflow is unreachable."""

    commit = git_commit()
    with attach_run(tracking_uri, run_id, os.devnull) as tracker:
        tracker.log_params(invocation_params(targets, config, config_files, commit))
        tracker.set_tags(
            {
                "mlflow.source.git.commit": commit,
                "mlflow.source.name": "Snakefile",
                DESCRIPTION_TAG: invocation_description(targets, commit),
            }
        )
        text = yaml.safe_dump(redact_config(config), sort_keys=False)
        tracker.log_text(text, "config.yaml")


def runs_page(tracking_uri: str, run_id: str, task: Task = TOP30) -> str | None:
    """How to see the runs of the experiment of ``run_id`` in the MLflow UI: the URL of its
    runs table as a leaderboard (the shared view ``LEADERBOARD_VIEW_KEY``, saved on the
    experiment here: the evaluate runs best first, with their errors as columns; the same
    search and sort without the columns if the view cannot be saved), after the ``mlflow
    ui`` command for a sqlite store; None if unreachable."""

    if not _server_reachable(tracking_uri, 3.0):
        return None
    try:
        client = mlflow.MlflowClient(tracking_uri)
        experiment_id = client.get_run(run_id).info.experiment_id
    except Exception:  # the page is a convenience: never fail the invocation for it
        return None
    try:
        state = json.dumps(leaderboard_view_state(task))
        client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + LEADERBOARD_VIEW_KEY, state)
        view = f"{RUNS_VIEW}&viewStateShareKey={LEADERBOARD_VIEW_KEY}"
    except Exception:  # as above: the search and sort still come from the URL
        view = leaderboard_view(task)
    route = f"#/experiments/{experiment_id}/{view}"
    what = "MLflow runs (the evaluate runs, best first)"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{what}: {redact(tracking_uri).rstrip('/')}/{route}"
    # Quoted as a shell word: the command pastes whole for a folder with spaces or quotes.
    return (
        f"{what}: mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 "
        f"--port {UI_PORT}, then open http://127.0.0.1:{UI_PORT}/{route}"
    )


# --------------------------------------------------------------------------------------
# Metrics: one name per quantity
# --------------------------------------------------------------------------------------


def _val_errors(values: Mapping[str, Any]) -> dict[str, float]:
    """``metrics.json`` errors of one predictor -> ``val_<name>`` of each metric of
    predicted sets and each bucket's (``val_top30_error``, ``val_tail_top30_error``...;
    NaN left out)."""
    metrics = (*SET_METRICS, *BUCKET_METRICS)
    return _finite({val_name(m.name): m.value_in(values) for m in metrics})


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value
    }


def evaluation_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics an evaluate run logs for a model's ``metrics.json``: every figure of the
    registry it holds as ``val_<name>`` (the names the train runs use; the interval of the
    top-30 error as ``val_top30_error_low``/``_high``, the improvement over the constant
    predictor, on the demo the expected error and the share of the constant-to-Bayes gap
    closed), and ``val_gap_closed_expected``. The differences to the best model need
    every model: they are on the leaderboard. The reference predictors' own figures are
    left to the parent run (``reference_metrics``)."""
    named = {val_name(name): value for name, value in figures(metrics).items()}
    named["val_gap_closed_expected"] = metrics.get("gap_closed_expected")
    # A survey edition's figures (F1, its interval, set sizes...), where its metrics hold them
    named.update({val_name(m.name): m.value_in(metrics) for m in SET_TASK_METRICS})
    return _finite(named)


def reference_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The constant predictor's and (demo) the Bayes limit's val top-30 errors, sampled and
    expected, as ``constant/val_top30_error``, ``bayes/val_expected_top30_error``...:
    logged once, on the parent run, from any model's ``metrics.json`` (they do not depend
    on the model). Only the top-30 figures: MLflow's chart view opens on the parent's
    metrics, and one bar chart per k and bucket buried the models' charts (the
    leaderboard has them all)."""
    named: dict[str, float] = {}
    expected = metrics.get(EXPECTED_TOP30.name, {})
    top30 = val_name(KAGGLE_ERROR)
    for key, prefix in REFERENCES.items():
        if key not in metrics:
            continue
        values = {k: v for k, v in _val_errors(metrics[key]).items() if k == top30}
        if key in expected:
            values[val_name(EXPECTED_TOP30.name)] = float(expected[key])
        named.update({f"{prefix}/{name}": value for name, value in values.items()})
    return named


def best_epoch_metrics(history: Sequence[Mapping[str, Any]], best_epoch: int) -> dict[str, float]:
    """The val errors of the kept epoch (1-based) as ``best_val_top{k}_error``, with
    ``best_epoch``: what a train run's row in the runs table should show, since the
    kept model and the leaderboard use that epoch, not the last one."""
    entry = next((e for e in history if e.get("epoch") == best_epoch), {})
    best = {f"best_{key}": value for key, value in entry.items() if key.startswith("val_")}
    return _finite({"best_epoch": best_epoch, **best})


# --------------------------------------------------------------------------------------
# Params and tags of an evaluate run
# --------------------------------------------------------------------------------------


def evaluation_params(
    model: str, kind: str, settings: Mapping[str, Any], weights: Mapping[str, float]
) -> dict[str, Any]:
    """What shaped the model an evaluate run scores, as params, so that two selected
    evaluate runs show their differences and the compare chart has axes: its ``kind``;
    a baseline's settings (``knn.n_neighbors``, ``random_forest.max_depth``...); an
    experiment's model (``model.kind``, ``model.cnn.backbone``, ``model.tabular``...),
    ``refit`` and ``tta`` (its training settings are on its train run, see
    ``evaluated_run_id``); a blend's members and weights (``weight.<member>``: the fitted
    ones for a fitted blend, with its ``fit.method``)."""
    params: dict[str, Any] = {"kind": kind}
    if kind == "baseline":
        params.update({f"{model}.{key}": value for key, value in settings.items()})
    elif kind in ("blend", "fitted blend"):
        params.update(
            {
                "members": ", ".join(weights),
                "weights": "fitted on val" if kind == "fitted blend" else "config",
                **{f"fit.{key}": value for key, value in settings.items()},
                **{f"weight.{member}": round(float(w), 6) for member, w in weights.items()},
            }
        )
    else:
        params.update(settings)
    return params


def evaluation_links(history: Mapping[str, Any] | None) -> dict[str, str]:
    """Tags of an evaluate run naming the train run and logged model it evaluates (from
    the experiment's ``history.json``; none for a baseline or blend, or when the train
    run was offline)."""
    if not history:
        return {}
    links = {
        EVALUATED_RUN_TAG: history.get(RUN_ID_KEY),
        EVALUATED_MODEL_TAG: history.get(MODEL_URI_KEY),
    }
    return {key: value for key, value in links.items() if value}


def evaluated_model_id(links: Mapping[str, str]) -> str | None:
    """The id (``m-...``) of the logged model an evaluate run evaluates: its metrics are
    linked to it, so that the model's page in MLflow shows its val errors."""
    uri = links.get(EVALUATED_MODEL_TAG, "")
    return uri.removeprefix("models:/") if uri.startswith("models:/") else None


def evaluation_description(model: str, kind: str, links: Mapping[str, str]) -> str:
    text = f"Val metrics of the {kind} **{model}** (the same names as the train runs)."
    if EVALUATED_RUN_TAG in links:
        text += f" Evaluates train run `{links[EVALUATED_RUN_TAG]}`"
        if EVALUATED_MODEL_TAG in links:
            text += f" and its logged model `{links[EVALUATED_MODEL_TAG]}`"
        text += " (tags `evaluated_run_id`, `evaluated_model_uri`)."
    return text
