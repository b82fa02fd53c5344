"""Evaluation of a model's val predictions, and the leaderboard of every model.

Each model gets ``metrics.json``: top-1/5/10/30 error, the class-averaged (macro) top-30
error and the top-30 error per frequency bucket of the true species, next to the same
figures for the constant predictor and, on the demo where the true species probabilities
are known, for the Bayes-optimal predictor; and the share of the gap between the constant
predictor and the Bayes limit that the model closes; the confidence interval of the top-30
error by a spatial block bootstrap of val (``geolifeclef.evaluation.bootstrap``). Beside it,
``blocks.parquet`` (the model's misses per val block, which the leaderboard pairs models on)
and ``species.parquet`` (``geolifeclef.evaluation.species_results``).

The leaderboard's columns are the registry ``geolifeclef.predictions.metrics.METRICS``
between the columns that say which model a row is.
"""

import dataclasses
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
from geolifeclef.evaluation.bootstrap import (
    BlockBootstrap,
    mean_interval,
    paired_differences,
    read_block_errors,
    spatial_blocks,
)
from geolifeclef.evaluation.leaderboard_view import (
    leaderboard_html,
    plot_leaderboard,
    species_html,
)
from geolifeclef.evaluation.species_results import best_and_worst
from geolifeclef.evaluation.sweep_report import sweep_markdown, sweep_table
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.predictions.metrics import (
    DIFFERENCE,
    DIFFERENCE_HIGH,
    DIFFERENCE_LOW,
    EXPECTED_TOP30,
    GAP_CLOSED,
    IMPROVEMENT,
    INTERVAL_HIGH,
    INTERVAL_LOW,
    KAGGLE_ERROR,
    KAGGLE_K,
    METRICS,
    SCORE_CHUNK_ROWS,
    SET_METRICS,
    evaluate_sets,
    expected_top_k_error,
    figures,
    gap_closed,
    hits,
    top_k_chunked,
)
from geolifeclef.predictions.table import Predictions

log = logging.getLogger(__name__)

GROUPS = ("all", *BUCKETS)
"""What the per-bucket plots show: every val observation, then each bucket."""
DEFAULT_BOOTSTRAP = BlockBootstrap()
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
    errors = {"all": metrics[KAGGLE_ERROR]}
    errors.update({b: v[KAGGLE_ERROR] for b, v in metrics["buckets"].items()})
    return errors


def val_misses(predictions: Predictions, val: pd.DataFrame, bootstrap: BlockBootstrap):
    """(val blocks, 1 where the true species is not in the model's top 30 else 0), for
    ``predictions`` aligned to ``val``'s rows."""
    blocks = spatial_blocks(val["latitude"], val["longitude"], bootstrap.block_degrees)
    labels = val["species_id"].to_numpy(dtype=np.int64)
    return blocks, ~hits(predictions.species_ids, labels, KAGGLE_K)


def evaluate_model(
    model: str,
    kind: str,
    predictions: Predictions,
    val: pd.DataFrame,
    species: pd.DataFrame,
    truth_path: str | Path | None = None,
    bootstrap: BlockBootstrap = DEFAULT_BOOTSTRAP,
) -> dict:
    """All metrics of ``predictions`` on the val observations (see the module docstring)."""
    predictions = predictions.aligned_to(val["observation_id"].to_numpy())
    labels = val["species_id"].to_numpy(dtype=np.int64)
    bucket_of_species = species.set_index("species_id")["bucket"]
    bucket = bucket_of_species.reindex(labels).fillna("tail").to_numpy()

    def score(sets: np.ndarray) -> dict:
        return evaluate_sets(sets, labels, bucket, BUCKETS)

    metrics = {"model": model, "kind": kind, "split": "val", "k": predictions.k}
    metrics.update(score(predictions.species_ids))
    blocks, misses = val_misses(predictions, val, bootstrap)
    low, high = mean_interval(blocks.sums(misses), blocks.sizes, bootstrap)
    metrics[INTERVAL_LOW.name], metrics[INTERVAL_HIGH.name] = low, high
    metrics["bootstrap"] = {**dataclasses.asdict(bootstrap), "n_blocks": len(blocks.sizes)}
    constant = constant_predictions(species, val["observation_id"].to_numpy(), KAGGLE_K)
    metrics["constant"] = score(constant.species_ids)
    metrics[IMPROVEMENT.name] = metrics["constant"][KAGGLE_ERROR] - metrics[KAGGLE_ERROR]
    if truth_path is not None:
        probabilities = load_truth(truth_path, val["observation_id"].to_numpy())
        widest = min(max(m.k for m in SET_METRICS), probabilities.shape[1])
        bayes_sets, _ = top_k_chunked(probabilities, widest, chunk_rows=SCORE_CHUNK_ROWS)
        bayes = score(bayes_sets)
        # Expected errors under the true probabilities: the same comparison without the
        # noise of one drawn label per observation.
        model_sets = predictions.species_ids[:, :KAGGLE_K]
        expected = {
            "model": expected_top_k_error(probabilities, model_sets),
            "constant": expected_top_k_error(probabilities, constant.species_ids),
            "bayes": expected_top_k_error(probabilities, bayes_sets[:, :KAGGLE_K]),
        }
        key = KAGGLE_ERROR
        metrics["bayes"] = bayes
        metrics[EXPECTED_TOP30.name] = expected
        metrics[GAP_CLOSED.name] = gap_closed(metrics[key], metrics["constant"][key], bayes[key])
        metrics["gap_closed_expected"] = gap_closed(
            expected["model"], expected["constant"], expected["bayes"]
        )
    return metrics


def plot_buckets(metrics: dict, path: str | Path) -> None:
    """Top-30 error of the model per bucket of the true species, next to the constant
    predictor and (demo) the Bayes limit, with the number of val observations per bucket."""
    # The constant model is its own reference: drawn once.
    references = (
        [] if metrics["model"] == "constant" else [("constant", "constant (30 most frequent)")]
    )
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
        bars = axes.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
        # The values on the bars: an error of 0 (the constant's head) has no bar to see.
        axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    counts = [metrics["n_observations"]] + [
        metrics["buckets"][b]["n_observations"] for b in BUCKETS
    ]
    axes.set_xticks(x, [f"{g}\n(n={c})" for g, c in zip(GROUPS, counts, strict=True)])
    axes.set_ylim(0, 1.25)  # room for the labels and the legend above errors of 1
    axes.set_yticks(np.linspace(0, 1, 6))
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

MODEL_COLUMNS = ["rank", "model", "kind"]
"""Which model a row is: the leaderboard's first columns."""
DESCRIPTION_COLUMNS = ["n_observations", "test_fit", "members"]
"""What a row was scored on and fitted from: its last columns. ``test_fit``: what the test
predictions were fitted on (``train+val`` for a refit: its val scores are those of the
train-only fit); ``members``: what a blend averages, with its weights."""
LEADERBOARD_COLUMNS = [*MODEL_COLUMNS, *(m.name for m in METRICS), *DESCRIPTION_COLUMNS]
"""Columns of the leaderboard: every registered metric between the two groups above."""


def _row(model: str, kind: str, metrics: dict) -> dict:
    values = {name: np.nan if v is None else v for name, v in figures(metrics).items()}
    return {"model": model, "kind": kind, "n_observations": metrics["n_observations"], **values}


def build_leaderboard(
    all_metrics: list[dict],
    block_errors: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
    bootstrap: BlockBootstrap = DEFAULT_BOOTSTRAP,
) -> pd.DataFrame:
    """One row per model, best val top-30 error first (ties: model name); on the demo a
    last row gives the Bayes limit (kind ``bound``). With ``block_errors`` (observations
    per val block, each model's misses per block: ``read_block_errors``), each model's
    difference to the best one with its paired block-bootstrap interval."""
    rows = []
    for metrics in all_metrics:
        row = _row(metrics["model"], metrics["kind"], metrics)
        row["test_fit"] = metrics.get("test_fit", "train")
        members = metrics.get("members", {})
        row["members"] = ", ".join(f"{name} {weight:.2f}" for name, weight in members.items())
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in LEADERBOARD_COLUMNS if c != "rank"])
    frame = frame.sort_values([KAGGLE_ERROR, "model"], kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    if block_errors is not None and len(frame):
        sizes, misses = block_errors
        differences = paired_differences(misses, sizes, frame["model"].iloc[0], bootstrap)
        columns = [DIFFERENCE.name, DIFFERENCE_LOW.name, DIFFERENCE_HIGH.name]
        frame[columns] = [differences.get(m, (np.nan,) * 3) for m in frame["model"]]
    with_truth = [m for m in all_metrics if "bayes" in m]
    if with_truth:
        reference = with_truth[0]
        bound = _row(BOUND, "bound", reference["bayes"])
        bound[IMPROVEMENT.name] = reference["constant"][KAGGLE_ERROR] - bound[KAGGLE_ERROR]
        bound[GAP_CLOSED.name] = 1.0
        bound[EXPECTED_TOP30.name] = reference[EXPECTED_TOP30.name]["bayes"]
        bound["test_fit"], bound["members"] = "", ""
        bound["rank"] = pd.NA
        frame = pd.concat([frame, pd.DataFrame([bound])], ignore_index=True)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame[LEADERBOARD_COLUMNS]


def best_model(
    leaderboard: pd.DataFrame,
    candidates: list[str] | None = None,
    metric: str = KAGGLE_ERROR,
    higher_is_better: bool = False,
) -> str:
    """The model with the best val ``metric`` (the lowest top-30 error; a survey edition's
    highest F1), among ``candidates`` when given; ties: the first model name."""
    models = leaderboard[leaderboard["kind"] != "bound"]
    if candidates is not None:
        models = models[models["model"].isin(candidates)]
    if models.empty:
        raise ValueError("no model on the leaderboard to choose from")
    ordered = models.sort_values([metric, "model"], ascending=[not higher_is_better, True])
    return str(ordered.iloc[0]["model"])


def _format(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4f}"
    return str(value)


def _markdown_table(frame: pd.DataFrame, headers: list[str]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_format(v) for v in row) + " |")
    return lines


def leaderboard_markdown(frame: pd.DataFrame, bootstrap: BlockBootstrap = DEFAULT_BOOTSTRAP) -> str:
    """The leaderboard as a Markdown table; each metric's column says its direction."""
    arrows = {m.name: f"{m.name} {m.arrow}" for m in METRICS}
    lines = _markdown_table(frame, [arrows.get(c, c) for c in frame.columns])
    note = (
        "\nVal top-30 error (↓ lower is better, ↑ higher is better). "
        f"`{INTERVAL_LOW.name}`..`{INTERVAL_HIGH.name}`: its {bootstrap.confidence:.0%} "
        f"interval by a spatial block bootstrap of val ({bootstrap.draws} draws of "
        f"{bootstrap.block_degrees:g}° cells, seed {bootstrap.seed}); "
        f"`{DIFFERENCE.name}` and its interval: the model minus the best one on the same "
        "resampled blocks -- an interval above 0 means the best model is better beyond the "
        "noise. `gap_closed`: share of the gap between the "
        "constant predictor and the Bayes limit that the model closes (demo only). "
        "`test_fit`: what the test predictions were fitted on; a `train+val` refit is "
        "scored here by its train-only fit. A fitted blend is scored on cross-fitted val "
        "predictions (its weights never saw the rows they are scored on).\n"
    )
    return "\n".join(lines) + "\n" + note


def species_markdown(extremes: pd.DataFrame, model: str) -> str:
    """A Markdown section: the best and worst species of each bucket for ``model``."""
    lines = [
        f"## Best and worst species of `{model}` by frequency bucket",
        "",
        "Per bucket, the species most and least often in the top 30 on val (ties: higher "
        "AUC). Rank beyond the stored top K counts as K + 1; the AUC takes a score outside "
        "the top K as 0.",
        "",
        *_markdown_table(extremes, list(extremes.columns)),
    ]
    return "\n".join(lines) + "\n"


def write_leaderboard(
    all_metrics: list[dict],
    parquet: Path,
    markdown: Path,
    html_path: Path,
    png: Path,
    sweeps: list[dict] = (),
    block_files: dict[str, str | Path] | None = None,
    species_files: dict[str, str | Path] | None = None,
    bootstrap: BlockBootstrap = DEFAULT_BOOTSTRAP,
) -> pd.DataFrame:
    """Write the leaderboard in every format; each sweep (``{"name", "base", "varied",
    "members"}``) gets a section of its own: members ranked, varied settings as columns.
    ``block_files`` (model -> ``blocks.parquet``) give the differences to the best model;
    ``species_files`` (model -> ``species.parquet``) the best model's best and worst
    species per bucket."""

    block_errors = read_block_errors(block_files) if block_files else None
    frame = build_leaderboard(all_metrics, block_errors, bootstrap)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(parquet) as temporary:
        pq.write_table(table, temporary)
    sections = [(s, sweep_table(all_metrics, s)) for s in sweeps]
    best = best_model(frame) if len(frame) else None
    extremes = None
    if species_files and best in species_files:
        extremes = best_and_worst(pd.read_parquet(species_files[best]))
    markdown_parts = [leaderboard_markdown(frame, bootstrap)]
    if extremes is not None:
        markdown_parts.append(species_markdown(extremes, best))
    markdown_parts += [sweep_markdown(t, s) for s, t in sections]
    write_text(markdown, "\n".join(markdown_parts))
    species_section = species_html(extremes, best) if extremes is not None else ""
    write_text(html_path, leaderboard_html(frame, sections, species_section, bootstrap.confidence))
    plot_leaderboard(frame, png, bootstrap.confidence)
    for row in frame.itertuples(index=False):
        log.info("%-20s %-10s top-30 error %.4f", row.model, row.kind, row.top30_error)
    return frame
