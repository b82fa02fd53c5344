"""Evaluation of a survey edition's species sets, and its leaderboard (GLC 2024 on).

Each model's val sets (``geolifeclef.predictions.set_selection``: cross-fitted, so honest)
get ``metrics.json`` with the samples-averaged F1 (the Kaggle metric), precision, recall, the
mean predicted and true set sizes, the F1's interval by a spatial block bootstrap of val,
the F1 per biogeographic region, the set rule that made the sets, and the same figures for
the constant (the ``set_size`` species present in most train surveys, as the organizers'
baseline); on the demo, where each survey's true presence probabilities are known, the
EXPECTED F1 of the model's sets, of the constant's and of the Bayes-optimal sets
(``geolifeclef.predictions.f1``): free of the noise of one drawn survey per place, and the
share of the constant-to-Bayes gap the model closes. Beside it, ``blocks.parquet`` (per val
block, 1 - F1 summed: what the leaderboard pairs models on) and ``species.parquet`` (per
species: present, predicted, hits).

The leaderboard ranks models by val F1, higher is better; on the demo a last row
``bayes_optimal`` gives the bound every model's expected F1 stays under.
"""

import dataclasses
import html
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path, write_text
from geolifeclef.errors import InputDataError
from geolifeclef.evaluation.bootstrap import (
    BlockBootstrap,
    mean_interval,
    paired_differences,
    read_block_errors,
    spatial_blocks,
)
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.predictions.f1 import bayes_optimal, expected_f1, score_sets
from geolifeclef.predictions.metrics import HIGHER, SET_TASK_METRICS
from geolifeclef.predictions.set_table import SpeciesSets

log = logging.getLogger(__name__)

F1 = "f1"
DEFAULT_BOOTSTRAP = BlockBootstrap()

BOUND = "bayes_optimal"
"""Leaderboard row of the Bayes limit (demo only): a bound, not a model to submit."""


LEADERBOARD_COLUMNS = [
    "rank",
    "model",
    "kind",
    *(m.name for m in SET_TASK_METRICS),
    "set_rule",
    "n_observations",
    "test_fit",
    "members",
]


def true_sets(surveys: pd.DataFrame) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.int64) for s in surveys["species_ids"]]


def constant_sets(species: pd.DataFrame, n: int, size: int) -> list[np.ndarray]:
    """The ``size`` species present in most train surveys, for each of ``n`` surveys."""
    best = species.sort_values("rank").head(size)["species_id"].to_numpy(np.int64)
    return [best] * n


def load_presence_truth(path: str | Path, observation_ids: np.ndarray):
    """The demo's true presence probabilities (n, S) of ``observation_ids`` (in that
    order) and the species ids of their columns."""
    with np.load(path) as truth:
        ids = truth["observation_id"].astype(np.int64)
        position = {int(i): row for row, i in enumerate(ids.tolist())}
        missing = [int(i) for i in observation_ids if int(i) not in position]
        if missing:
            raise InputDataError(
                path,
                f"the truth lacks {len(missing)} val survey(s), e.g. {missing[:5]}",
                "regenerate the demo dataset (delete resources/demo and rerun)",
            )
        rows = [position[int(i)] for i in observation_ids]
        return truth["probabilities"][rows], truth["species_ids"].astype(np.int64)


def gap_closed(model: float, constant: float, bayes: float) -> float:
    return float((model - constant) / (bayes - constant)) if bayes != constant else float("nan")


def region_f1(f1: np.ndarray, regions: np.ndarray) -> dict[str, dict]:
    """F1 and surveys per region."""
    frame = pd.DataFrame({"f1": f1, "region": regions})
    grouped = frame.groupby("region")["f1"].agg(["mean", "size"])
    return {str(r): {F1: float(m), "n_observations": int(s)} for r, (m, s) in grouped.iterrows()}


def evaluate_set_model(
    model: str,
    kind: str,
    sets: SpeciesSets,
    val: pd.DataFrame,
    species: pd.DataFrame,
    set_size: int,
    rule_report: dict | None = None,
    truth_path: str | Path | None = None,
    bootstrap: BlockBootstrap = DEFAULT_BOOTSTRAP,
) -> tuple[dict, np.ndarray]:
    """(metrics, per-survey F1) of a model's val ``sets`` (module docstring)."""
    ids = val["observation_id"].to_numpy(np.int64)
    sets = sets.aligned_to(ids)
    predicted = sets.lists()
    truth = true_sets(val)
    scores = score_sets(predicted, truth)
    f1 = scores.f1
    metrics = {"model": model, "kind": kind, "split": "val", "n_observations": len(val)}
    metrics.update({k: v for k, v in scores.summary().items() if k != "rows"})
    blocks = spatial_blocks(val["latitude"], val["longitude"], bootstrap.block_degrees)
    low, high = mean_interval(blocks.sums(f1), blocks.sizes, bootstrap)
    metrics["f1_low"], metrics["f1_high"] = low, high
    metrics["bootstrap"] = {**dataclasses.asdict(bootstrap), "n_blocks": len(blocks.sizes)}
    metrics["regions"] = region_f1(f1, val["region"].to_numpy(dtype=str))
    if rule_report is not None:
        metrics["set_rule"] = rule_report["chosen"]
        metrics["set_rules"] = rule_report.get("rules", {})
    constant = constant_sets(species, len(val), set_size)
    metrics["constant"] = {
        k: v for k, v in score_sets(constant, truth).summary().items() if k != "rows"
    }
    metrics["improvement_over_constant"] = metrics[F1] - metrics["constant"][F1]
    if truth_path is not None:
        probabilities, species_ids = load_presence_truth(truth_path, ids)
        bayes_sets, bayes_expected = bayes_optimal(probabilities, species_ids)
        expected = {
            "model": float(expected_f1(probabilities, predicted, species_ids).mean()),
            "constant": float(expected_f1(probabilities, constant, species_ids).mean()),
            "bayes": float(bayes_expected.mean()),
        }
        metrics["expected_f1"] = expected
        metrics["bayes"] = {
            **{k: v for k, v in score_sets(bayes_sets, truth).summary().items() if k != "rows"}
        }
        metrics["gap_closed"] = gap_closed(
            expected["model"], expected["constant"], expected["bayes"]
        )
    return metrics, f1


def species_set_results(sets: SpeciesSets, val: pd.DataFrame) -> pd.DataFrame:
    """Per species: val surveys it is present in, predicted in, both (hits), recall and
    precision."""
    sets = sets.aligned_to(val["observation_id"].to_numpy(np.int64))
    present = pd.Series(np.concatenate(true_sets(val) or [[]])).value_counts()
    predicted = pd.Series(sets.species.astype(np.int64)).value_counts()
    hit_ids = [np.intersect1d(p, t) for p, t in zip(sets.lists(), true_sets(val), strict=True)]
    hits = pd.Series(np.concatenate(hit_ids or [[]]).astype(np.int64)).value_counts()
    frame = pd.DataFrame({"present": present, "predicted": predicted, "hits": hits}).fillna(0)
    frame = frame.astype(np.int64).rename_axis("species_id").reset_index()
    frame["recall"] = frame["hits"] / frame["present"].where(frame["present"] > 0)
    frame["precision"] = frame["hits"] / frame["predicted"].where(frame["predicted"] > 0)
    return frame.sort_values("species_id").reset_index(drop=True)


def write_species_set_results(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temporary)


def plot_set_figures(metrics: dict, path: str | Path) -> None:
    """F1, precision and recall of the model beside the constant's (and, on the demo, the
    Bayes-optimal sets'), with the mean set sizes."""
    series = [(metrics["model"], metrics)]
    if metrics["model"] != "constant":
        series.append(("constant (top species)", metrics["constant"]))
    if "bayes" in metrics:
        series.append(("Bayes-optimal sets (demo truth)", metrics["bayes"]))
    names = (F1, "precision", "recall")
    figure = new_figure(7.5, 4)
    axes = figure.subplots()
    x = np.arange(len(names))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        size = values.get("predicted_size", float("nan"))
        bars = axes.bar(
            x + (i - (len(series) - 1) / 2) * width,
            [values[n] for n in names],
            width,
            label=f"{label}: {size:.1f} species a set",
        )
        axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    axes.set_xticks(x, ["samples F1", "precision", "recall"])
    axes.set_ylim(0, 1.25)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_ylabel("val, higher is better")
    true_size = metrics.get("true_size", float("nan"))
    axes.set_title(f"{metrics['model']}: val sets ({true_size:.1f} species present on average)")
    axes.legend(fontsize=8, loc="upper center", ncols=1)
    save_png(figure, path)


# --------------------------------------------------------------------------------------
# Leaderboard
# --------------------------------------------------------------------------------------


def _row(metrics: dict) -> dict:
    row = {m.name: m.value_in(metrics) for m in SET_TASK_METRICS}
    rule = metrics.get("set_rule") or {}
    parameter = rule.get("parameter")
    shown = f"{parameter:.3g}" if isinstance(parameter, float) else parameter
    row["set_rule"] = (
        f"{rule['name']} {shown}".strip() if rule and shown is not None else (rule.get("name", ""))
    )
    row.update(
        model=metrics["model"],
        kind=metrics["kind"],
        n_observations=metrics["n_observations"],
        test_fit=metrics.get("test_fit", "train"),
        members=", ".join(f"{n} {w:.2f}" for n, w in metrics.get("members", {}).items()),
    )
    return row


def build_set_leaderboard(
    all_metrics: list[dict],
    block_errors: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
    bootstrap: BlockBootstrap = DEFAULT_BOOTSTRAP,
) -> pd.DataFrame:
    """One row per model, best val F1 first (ties: model name); on the demo a last row,
    ``bayes_optimal``, with the Bayes-optimal sets' F1 and expected F1 (kind ``bound``)."""
    frame = pd.DataFrame([_row(m) for m in all_metrics])
    frame = frame.sort_values([F1, "model"], ascending=[False, True], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    if block_errors is not None and len(frame):
        sizes, losses = block_errors  # 1 - F1 summed per block: lower is better
        differences = paired_differences(losses, sizes, frame["model"].iloc[0], bootstrap)
        for i, name in enumerate(("difference_to_best", "_low", "_high")):
            column = name if i == 0 else f"difference_to_best{name}"
            # F1 difference = minus the loss difference (the interval's ends swap)
            frame[column] = [0.0 - differences[m][(0, 2, 1)[i]] for m in frame["model"]]
    with_truth = [m for m in all_metrics if "bayes" in m]
    if with_truth:
        reference = with_truth[0]
        bound = {
            **reference["bayes"],
            "model": BOUND,
            "kind": "bound",
            "n_observations": reference["n_observations"],
            "set_rule": "top-k by true probability",
            "test_fit": "",
            "members": "",
            "expected_f1": reference["expected_f1"]["bayes"],
            "gap_closed": 1.0,
            "improvement_over_constant": reference["bayes"][F1] - reference["constant"][F1],
        }
        frame = pd.concat([frame, pd.DataFrame([bound])], ignore_index=True)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame.reindex(columns=LEADERBOARD_COLUMNS)


def _format(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4f}"
    return str(value)


NOTE = (
    "Val samples-averaged F1 (↑ higher is better): per survey 2|P∩T| / (|P| + |T|), averaged "
    "over surveys. Each model's sets come from its set rule (`set_rule`), chosen on val "
    "cross-fitted over two spatial folds, so the val sets are scored by a rule fitted on the "
    "other fold. `f1_low`..`f1_high`: the F1's interval by a spatial block bootstrap of val; "
    "`difference_to_best` and its interval: the model minus the best one on the same "
    "resampled blocks (an interval below 0: the best is better beyond the noise). "
    "`expected_f1`: the F1 expected under the demo's true presence probabilities; "
    "`bayes_optimal`: the sets of highest expected F1, the bound of every model's "
    "expected F1 (demo only)."
)


def write_set_leaderboard(
    all_metrics: list[dict],
    parquet: Path,
    markdown: Path,
    html_path: Path,
    png: Path,
    block_files: dict[str, str | Path] | None = None,
    bootstrap: BlockBootstrap = DEFAULT_BOOTSTRAP,
) -> pd.DataFrame:
    """Write the survey editions' leaderboard as Parquet, Markdown, HTML and a figure."""
    block_errors = read_block_errors(block_files) if block_files else None
    frame = build_set_leaderboard(all_metrics, block_errors, bootstrap)
    with atomic_path(parquet) as temporary:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temporary)
    arrows = {m.name: f"{m.name} {'↑' if m.direction == HIGHER else '↓'}" for m in SET_TASK_METRICS}
    headers = [arrows.get(c, c) for c in frame.columns]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += [
        "| " + " | ".join(_format(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    write_text(markdown, "\n".join(lines) + "\n\n" + NOTE + "\n")
    write_text(html_path, _leaderboard_html(frame))
    plot_set_leaderboard(frame, png, bootstrap.confidence)
    for row in frame.itertuples(index=False):
        log.info("%-20s %-12s F1 %.4f  %s", row.model, row.kind, row.f1, row.set_rule)
    return frame


def _leaderboard_html(frame: pd.DataFrame) -> str:
    tips = {m.name: m.tooltip for m in SET_TASK_METRICS}
    head = "".join(
        f"<th title='{html.escape(tips.get(c, ''))}'>{html.escape(c)}</th>"
        for c in frame.columns
        if c != "members"
    )
    rows = []
    for position, row in enumerate(frame.to_dict("records")):
        cells = []
        for column in frame.columns:
            if column == "members":
                continue
            text = html.escape(_format(row[column]))
            if column == "model" and row.get("members"):
                text += f"<div class='members'>{html.escape(row['members'])}</div>"
            cells.append(f"<td>{text}</td>")
        style = "bound" if row["kind"] == "bound" else ("best" if position == 0 else "")
        rows.append(f"<tr class='{style}'>{''.join(cells)}</tr>")
    style = (
        "body{font:13px sans-serif;margin:16px}h1{font-size:18px}p{max-width:60em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;"
        "text-align:right}th{background:#f3f3f3}.members{font-size:11px;color:#555}"
        "tr.best td{font-weight:bold}tr.bound td{color:#777;font-style:italic}"
    )
    title = "Leaderboard: val samples-averaged F1 (higher is better)"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body><h1>{title}</h1><p>{html.escape(NOTE)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</body></html>\n"
    )


def plot_set_leaderboard(frame: pd.DataFrame, path: str | Path, confidence: float) -> None:
    """Each model's val F1 with its interval, best at the top; the Bayes bound's expected F1
    as a line (demo)."""
    models = frame[frame["kind"] != "bound"].iloc[::-1]
    figure = new_figure(7.5, 0.45 * len(models) + 1.6)
    axes = figure.subplots()
    y = np.arange(len(models))
    f1 = models[F1].to_numpy(float)
    error = np.vstack(
        [f1 - models["f1_low"].to_numpy(float), models["f1_high"].to_numpy(float) - f1]
    )
    axes.barh(y, f1, xerr=error, color="#4c72b0", capsize=3)
    high = models["f1_high"].to_numpy(float)
    for yi, value, top, rule in zip(y, f1, high, models["set_rule"], strict=True):
        # right of the interval, so that the text never covers the bar's end
        axes.annotate(
            f"{value:.3f}  {rule}",
            (np.nanmax([value, top]), yi),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    axes.set_yticks(y, models["model"])
    bound = frame[frame["kind"] == "bound"]
    if len(bound):
        axes.axvline(
            float(bound["expected_f1"].iloc[0]),
            color="grey",
            ls="--",
            label="Bayes limit (expected F1)",
        )
        axes.legend(fontsize=8, loc="lower right")
    axes.set_xlim(0, 1)
    axes.set_xlabel(f"val samples F1 (higher is better), {confidence:.0%} interval")
    axes.set_title("Leaderboard: each model's val F1 and its set rule")
    save_png(figure, path)
