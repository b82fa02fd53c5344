"""Evaluation of a model's val predictions, and the leaderboard of every model.

Each model gets ``metrics.json``: top-1/5/10/30 error, the class-averaged (macro) top-30
error and the top-30 error per frequency bucket of the true species, next to the same
figures for the constant predictor and, on the demo where the true species probabilities
are known, for the Bayes-optimal predictor; and the share of the gap between the constant
predictor and the Bayes limit that the model closes.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path, write_text
from geolifeclef.baselines.constant import constant_predictions
from geolifeclef.data.class_frequency import BUCKETS
from geolifeclef.errors import InputDataError
from geolifeclef.evaluation.leaderboard_view import leaderboard_html, plot_leaderboard
from geolifeclef.evaluation.sweep_report import sweep_markdown, sweep_table
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.predictions.metrics import (
    KAGGLE_K,
    REPORTED_KS,
    evaluate_sets,
    expected_top_k_error,
    gap_closed,
    top_k_chunked,
)
from geolifeclef.predictions.table import Predictions

log = logging.getLogger(__name__)

GROUPS = ("all", *BUCKETS)
"""What the per-bucket plots show: every val observation, then each bucket."""
BOUND = "bayes_optimal"
"""Leaderboard row of the Bayes limit (demo only): a bound, not a model to submit."""


def load_truth(path: str | Path, observation_ids: np.ndarray) -> np.ndarray:
    """The demo's true species probabilities (n, n_species) of ``observation_ids``, in that
    order; column j is species j."""
    with np.load(path) as truth:
        ids = truth["observation_id"].astype(np.int64)
        order = np.argsort(ids)
        position = np.minimum(np.searchsorted(ids, observation_ids, sorter=order), len(ids) - 1)
        rows = order[position]
        if (ids[rows] != observation_ids).any():
            raise InputDataError(
                path,
                "the truth does not cover every val observation",
                "regenerate the demo dataset (delete resources/demo and rerun)",
            )
        return truth["probabilities"][rows]


def _group_errors(metrics: dict) -> dict[str, float]:
    errors = {"all": metrics[f"top{KAGGLE_K}_error"]}
    errors.update({b: v[f"top{KAGGLE_K}_error"] for b, v in metrics["buckets"].items()})
    return errors


def evaluate_model(
    model: str,
    kind: str,
    predictions: Predictions,
    val: pd.DataFrame,
    species: pd.DataFrame,
    truth_path: str | Path | None = None,
) -> dict:
    """All metrics of ``predictions`` on the val observations (see the module docstring)."""
    predictions = predictions.aligned_to(val["observation_id"].to_numpy())
    labels = val["species_id"].to_numpy(dtype=np.int64)
    bucket_of_species = species.set_index("species_id")["bucket"]
    bucket = bucket_of_species.reindex(labels).fillna("tail").to_numpy()
    ks = [k for k in REPORTED_KS if k <= predictions.k]

    def score(sets: np.ndarray) -> dict:
        return evaluate_sets(sets, labels, bucket, BUCKETS, ks)

    metrics = {"model": model, "kind": kind, "split": "val", "k": predictions.k}
    metrics.update(score(predictions.species_ids))
    constant = constant_predictions(species, val["observation_id"].to_numpy(), KAGGLE_K)
    metrics["constant"] = score(constant.species_ids)
    metrics["improvement_over_constant"] = (
        metrics["constant"][f"top{KAGGLE_K}_error"] - metrics[f"top{KAGGLE_K}_error"]
    )
    if truth_path is not None:
        probabilities = load_truth(truth_path, val["observation_id"].to_numpy())
        bayes_sets, _ = top_k_chunked(probabilities, max(ks), chunk_rows=2_000)
        bayes = score(bayes_sets)
        # Expected errors under the true probabilities: the same comparison without the
        # noise of one drawn label per observation.
        model_sets = predictions.species_ids[:, :KAGGLE_K]
        expected = {
            "model": expected_top_k_error(probabilities, model_sets),
            "constant": expected_top_k_error(probabilities, constant.species_ids),
            "bayes": expected_top_k_error(probabilities, bayes_sets[:, :KAGGLE_K]),
        }
        key = f"top{KAGGLE_K}_error"
        metrics["bayes"] = bayes
        metrics["expected_top30_error"] = expected
        metrics["gap_closed"] = gap_closed(metrics[key], metrics["constant"][key], bayes[key])
        metrics["gap_closed_expected"] = gap_closed(
            expected["model"], expected["constant"], expected["bayes"]
        )
    return metrics


def plot_buckets(metrics: dict, path: str | Path) -> None:
    """Top-30 error of the model per bucket of the true species, next to the constant
    predictor and (demo) the Bayes limit, with the number of val observations per bucket."""
    references = [("constant", "constant (30 most frequent)")]
    if "bayes" in metrics:
        references.append(("bayes", "Bayes limit (demo truth)"))
    series = [(metrics["model"], _group_errors(metrics))]
    series += [(label, _group_errors(metrics[key])) for key, label in references]
    figure = new_figure(7.5, 4)
    axes = figure.subplots()
    x = np.arange(len(GROUPS))
    width = 0.8 / len(series)
    for i, (label, errors) in enumerate(series):
        values = [errors[g] for g in GROUPS]
        axes.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    counts = [metrics["n_observations"]] + [
        metrics["buckets"][b]["n_observations"] for b in BUCKETS
    ]
    axes.set_xticks(x, [f"{g}\n(n={c})" for g, c in zip(GROUPS, counts, strict=True)])
    axes.set_ylim(0, 1.15)  # room for the legend above errors of 1
    axes.set_ylabel(f"top-{KAGGLE_K} error (val)")
    axes.set_title(f"{metrics['model']}: top-{KAGGLE_K} error by frequency bucket")
    axes.legend(fontsize=8, ncols=3, loc="upper center")
    save_png(figure, path)


def write_metrics(metrics: dict, path: str | Path) -> None:
    write_text(path, json.dumps(metrics, indent=2, allow_nan=True) + "\n")


def read_metrics(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------------------
# Leaderboard
# --------------------------------------------------------------------------------------

LEADERBOARD_COLUMNS = [
    "rank",
    "model",
    "kind",
    "top30_error",
    "macro_top30_error",
    *[f"{b}_top30_error" for b in BUCKETS],
    "top1_error",
    "top5_error",
    "top10_error",
    "improvement_over_constant",
    "gap_closed",
    "expected_top30_error",
    "n_observations",
    "test_fit",
    "members",
]
"""Columns of the leaderboard. ``test_fit``: what the test predictions were fitted on
(``train+val`` for a refit: its val scores are those of the train-only fit); ``members``:
what a blend averages, with its weights."""


def _row(model: str, kind: str, metrics: dict) -> dict:
    row = {"model": model, "kind": kind, "n_observations": metrics["n_observations"]}
    for k in REPORTED_KS:
        row[f"top{k}_error"] = metrics.get(f"top{k}_error", np.nan)
    row["macro_top30_error"] = metrics["macro_top30_error"]
    for b in BUCKETS:
        row[f"{b}_top30_error"] = metrics["buckets"][b]["top30_error"]
    return row


def build_leaderboard(all_metrics: list[dict]) -> pd.DataFrame:
    """One row per model, best val top-30 error first (ties: model name); on the demo a
    last row gives the Bayes limit (kind ``bound``)."""
    rows = []
    for metrics in all_metrics:
        row = _row(metrics["model"], metrics["kind"], metrics)
        row["improvement_over_constant"] = metrics["improvement_over_constant"]
        row["gap_closed"] = metrics.get("gap_closed", np.nan)
        row["expected_top30_error"] = metrics.get("expected_top30_error", {}).get("model", np.nan)
        row["test_fit"] = metrics.get("test_fit", "train")
        members = metrics.get("members", {})
        row["members"] = ", ".join(f"{name} {weight:.2f}" for name, weight in members.items())
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in LEADERBOARD_COLUMNS if c != "rank"])
    frame = frame.sort_values(["top30_error", "model"], kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    with_truth = [m for m in all_metrics if "bayes" in m]
    if with_truth:
        reference = with_truth[0]
        bound = _row(BOUND, "bound", reference["bayes"])
        bound["improvement_over_constant"] = (
            reference["constant"]["top30_error"] - bound["top30_error"]
        )
        bound["gap_closed"] = 1.0
        bound["expected_top30_error"] = reference["expected_top30_error"]["bayes"]
        bound["test_fit"], bound["members"] = "", ""
        bound["rank"] = pd.NA
        frame = pd.concat([frame, pd.DataFrame([bound])], ignore_index=True)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame[LEADERBOARD_COLUMNS]


def best_model(leaderboard: pd.DataFrame, candidates: list[str] | None = None) -> str:
    """The model with the lowest val top-30 error (among ``candidates`` when given)."""
    models = leaderboard[leaderboard["kind"] != "bound"]
    if candidates is not None:
        models = models[models["model"].isin(candidates)]
    if models.empty:
        raise ValueError("no model on the leaderboard to choose from")
    return str(models.sort_values(["top30_error", "model"]).iloc[0]["model"])


def _format(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4f}"
    return str(value)


def leaderboard_markdown(frame: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table (errors: lower is better)."""
    lines = [
        "| " + " | ".join(frame.columns) + " |",
        "| " + " | ".join("---" for _ in frame.columns) + " |",
    ]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_format(v) for v in row) + " |")
    note = (
        "\nVal top-30 error (lower is better). `gap_closed`: share of the gap between the "
        "constant predictor and the Bayes limit that the model closes (demo only). "
        "`test_fit`: what the test predictions were fitted on; a `train+val` refit is "
        "scored here by its train-only fit. A fitted blend is scored on cross-fitted val "
        "predictions (its weights never saw the rows they are scored on).\n"
    )
    return "\n".join(lines) + "\n" + note


def write_leaderboard(
    all_metrics: list[dict],
    parquet: Path,
    markdown: Path,
    html_path: Path,
    png: Path,
    sweeps: list[dict] = (),
) -> pd.DataFrame:
    """Write the leaderboard in every format; each sweep (``{"name", "base", "varied",
    "members"}``) gets a section of its own: members ranked, varied settings as columns."""

    frame = build_leaderboard(all_metrics)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(parquet) as temporary:
        pq.write_table(table, temporary)
    sections = [(s, sweep_table(all_metrics, s)) for s in sweeps]
    write_text(
        markdown,
        "\n".join([leaderboard_markdown(frame), *(sweep_markdown(t, s) for s, t in sections)]),
    )
    write_text(html_path, leaderboard_html(frame, sections))
    plot_leaderboard(frame, png)
    for row in frame.itertuples(index=False):
        log.info("%-20s %-10s top-30 error %.4f", row.model, row.kind, row.top30_error)
    return frame
