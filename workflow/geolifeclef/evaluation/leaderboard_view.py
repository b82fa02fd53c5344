"""The leaderboard as people read it: a titled HTML page and a figure whose axis separates
the best models.

Both say that errors are lower-is-better, what each blend averages (its ``members``), and
keep the reference predictors apart from the models: the Bayes limit (demo only) as a
line, the constant predictor (far behind every model) clipped at the axis edge with its
value written, so that it does not squash the differences between the best models.
"""

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.transforms import ScaledTranslation

from geolifeclef.data.class_frequency import BUCKETS
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.predictions.metrics import (
    DIFFERENCE_LOW,
    INTERVAL_HIGH,
    INTERVAL_LOW,
    KAGGLE_ERROR,
    METRICS,
    bucket_name,
)

REFERENCE_MODEL = "constant"
"""The baseline that every model should beat by far: kept off the figure's axis range."""
HEADERS = {
    "rank": ("#", "rank by val top-30 error"),
    "model": ("model", "baseline, blend (with what it averages) or experiment"),
    "kind": ("kind", ""),
    **{m.name: (f"{m.header} {m.arrow}", m.tooltip) for m in METRICS},
    "n_observations": ("val rows", ""),
    "test_fit": ("test fitted on", "train, or train+val for a refit"),
}
"""Column -> (header, tooltip) of the HTML page; ↓ lower is better, ↑ higher is better.
A metric's come from its entry in ``geolifeclef.predictions.metrics.METRICS``."""
IN_MODEL_CELL = frozenset({"members"})
"""Columns shown under the model's name rather than as columns of their own."""


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4f}"
    return html.escape(str(value))


def leaderboard_html(
    frame: pd.DataFrame,
    sweeps: Sequence[tuple[dict, pd.DataFrame]] = (),
    species_section: str = "",
    confidence: float = 0.95,
) -> str:
    """A standalone HTML page: title, how to read it, the table (best model in bold, the
    Bayes limit in grey, each blend's members under its name), the best and worst species
    (``species_html``), then a section per sweep (``(sweep description, its members
    ranked)``). A column without a header in ``HEADERS`` is refused, not dropped."""
    unknown = [c for c in frame.columns if c not in HEADERS and c not in IN_MODEL_CELL]
    if unknown:
        raise ValueError(
            f"leaderboard column(s) {unknown} have no header: register them in "
            "geolifeclef.predictions.metrics.METRICS (or HEADERS for a descriptive column)"
        )
    columns = [c for c in frame.columns if c in HEADERS]
    head = "".join(
        f"<th title='{html.escape(HEADERS[c][1])}'>{html.escape(HEADERS[c][0])}</th>"
        for c in columns
    )
    rows = []
    for position, row in enumerate(frame.to_dict("records")):
        cells = []
        for column in columns:
            text = _cell(row[column])
            if column == "model" and row.get("members"):
                text += f"<div class='members'>{html.escape(row['members'])}</div>"
            elif column == "model" and row["kind"] == "bound":
                text += "<div class='members'>Bayes limit of the demo data</div>"
            cells.append(f"<td>{text}</td>")
        style = "bound" if row["kind"] == "bound" else ("best" if position == 0 else "")
        rows.append(f"<tr class='{style}'>{''.join(cells)}</tr>")
    n = int(frame["n_observations"].iloc[0]) if len(frame) else 0
    style = (
        "body{font:13px sans-serif;margin:16px}h1{font-size:18px;margin:0 0 4px}"
        "p{margin:2px 0 10px;color:#333;max-width:60em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;"
        "text-align:right;vertical-align:top}th{background:#f3f3f3}"
        "td:nth-child(2),td:nth-child(3),th:nth-child(2),th:nth-child(3){text-align:left}"
        ".members{font-size:11px;color:#555}tr.best td{font-weight:bold}"
        "tr.bound td{color:#777;font-style:italic}"
    )
    intro = (
        f"<p>Every model scored on the same {n} val observations and ranked by <b>top-30 "
        "error: lower is better</b> (↓; ↑ marks a column where higher is better). A blend "
        "lists the models it averages and their weights. "
        f"<i>CI low..high</i>: {confidence:.0%} interval of the top-30 error by a spatial "
        "block bootstrap of val (whole cells of neighbouring observations resampled); "
        "<i>Δ best</i>: the model's error minus the best one's on the same resampled "
        "blocks, with its interval: when <i>Δ CI low</i> is above 0 the best model is "
        "better beyond the noise. A fitted blend is scored on "
        "cross-fitted val predictions; a <code>train+val</code> refit is scored by its "
        "train-only fit. The grey row, on the demo data, is the Bayes limit: the lowest "
        "error any model can reach. Hover a header for its meaning.</p>"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<title>Leaderboard: val top-30 error (lower is better)</title>"
        f"<style>{style}</style></head><body>"
        "<h1>Leaderboard: val top-30 error (lower is better)</h1>"
        f"{intro}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f"</table>{species_section}{_sweep_sections(sweeps)}</body></html>\n"
    )


def _sweep_sections(sweeps: Sequence[tuple[dict, pd.DataFrame]]) -> str:
    parts = []
    for sweep, members in sweeps:
        title = html.escape(f"Sweep {sweep['name']} (base {sweep['base']})")
        body = members.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
        parts.append(f"<h2>{title}</h2>{body}")
    return "".join(parts)


def species_html(extremes: pd.DataFrame, model: str) -> str:
    """A section of the page: the best and worst species of each bucket for ``model``
    (``geolifeclef.evaluation.species_results.best_and_worst``)."""
    title = html.escape(f"Best and worst species of {model} by frequency bucket")
    note = (
        "<p>Per bucket, the species most and least often among the 30 predicted on val "
        "(ties: higher AUC). A species beyond the stored top K counts as rank K + 1; the "
        "AUC takes its score outside the top K as 0. Every species: "
        f"<code>results/evaluation/{html.escape(model)}/species.parquet</code>.</p>"
    )
    body = extremes.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
    return f"<h2>{title}</h2>{note}{body}"


def _label(row: dict) -> str:
    if not row.get("members"):
        return row["model"]
    members = " + ".join(row["members"].split(", "))
    return f"{row['model']}\n({members})"


def _below_axis_label(axes, figure):
    """Axes coordinates moved down a fixed 0.5 inch: a legend anchored there clears the
    tick labels and the axis label whatever the figure's height (a share of the axes,
    -0.16, overlapped the label of a short leaderboard)."""
    return axes.transAxes + ScaledTranslation(0, -0.5, figure.dpi_scale_trans)


def _within_noise_of_best(model: dict, position: int) -> bool:
    """Whether the paired interval of the model minus the best one reaches 0."""
    return position > 0 and bool(model.get(DIFFERENCE_LOW.name, np.nan) <= 0)


def plot_leaderboard(frame: pd.DataFrame, path: str | Path, confidence: float = 0.95) -> None:
    """Left: val top-30 error of every model with its block-bootstrap interval, best at the
    top, on an axis fitted to the models (the constant predictor clipped at its edge, its
    value written; the Bayes limit as a dashed line); an open dot: a model whose difference
    to the best is within the noise. Right: top-30 error per frequency bucket of the true
    species."""
    models = frame[frame["kind"] != "bound"].to_dict("records")
    bound = frame[frame["kind"] == "bound"]
    limit = float(bound[KAGGLE_ERROR].iloc[0]) if not bound.empty else None
    errors = np.array([m[KAGGLE_ERROR] for m in models], dtype=float)
    lows = np.array([m.get(INTERVAL_LOW.name, np.nan) for m in models], dtype=float)
    highs = np.array([m.get(INTERVAL_HIGH.name, np.nan) for m in models], dtype=float)
    kept = [m["model"] != REFERENCE_MODEL for m in models]
    shown = [*errors[kept], *lows[kept][np.isfinite(lows[kept])]]
    low = min([*shown, *([limit] if limit is not None else [])], default=0.0)
    high = max([*errors[kept], *highs[kept][np.isfinite(highs[kept])]], default=1.0)
    margin = max(0.02, 0.08 * (high - low))
    low, high = max(0.0, low - margin), min(1.0, high + 3 * margin)
    figure = new_figure(11, 1.2 + 0.55 * len(models))
    left, right = figure.subplots(1, 2, width_ratios=(3, 2), sharey=True)
    y = np.arange(len(models))
    colors = {"experiment": "tab:blue", "blend": "tab:purple", "fitted blend": "tab:red"}
    for i, (model, error) in enumerate(zip(models, errors, strict=True)):
        color = colors.get(model["kind"], "tab:gray")
        clipped = error > high
        at = high if clipped else error
        # Dots, not bars: the axis does not start at 0, a bar's length would mislead.
        left.hlines(i, low, at, color=color, lw=1, alpha=0.3)
        if not clipped and np.isfinite(lows[i]) and np.isfinite(highs[i]):
            left.errorbar(
                at,
                i,
                xerr=[[at - lows[i]], [highs[i] - at]],
                color=color,
                capsize=4,
                lw=1.5,
                fmt="none",
            )
        open_dot = _within_noise_of_best(model, i)
        left.plot(
            at,
            i,
            ">" if clipped else "o",
            color=color,
            ms=8,
            markerfacecolor="white" if open_dot else color,
        )
        text = f"{error:.3f} (off the axis) " if clipped else f"  {error:.3f}"
        left.text(at, i - 0.22, text, ha="right" if clipped else "left", fontsize=8)
    legend = {
        kind: Line2D([], [], color=colors.get(kind, "tab:gray"), marker="o", ls="")
        for kind in dict.fromkeys(m["kind"] for m in models)
    }
    if np.isfinite(lows).any():
        legend[f"{confidence:.0%} interval (block bootstrap)"] = Line2D(
            [], [], color="tab:gray", marker="|", ms=10, lw=1.5
        )
    if any(_within_noise_of_best(m, i) for i, m in enumerate(models)):
        legend["open: within the noise of the best"] = Line2D(
            [], [], color="tab:gray", marker="o", markerfacecolor="white", ls=""
        )
    if limit is not None:
        left.axvline(limit, color="black", ls="--", lw=1)
        legend["Bayes limit (demo truth)"] = Line2D([], [], color="black", ls="--", lw=1)
    left.set_xlim(low, high)
    left.set_yticks(y, [_label(m) for m in models], fontsize=8)
    left.set_ylim(len(models) - 0.5, -0.9)  # best at the top, room for its label
    left.set_xlabel("val top-30 error (lower is better)")
    left.set_title("Overall (axis fitted to the models)", fontsize=10)
    # Below the axes: inside, it hid the best models' values.
    left.legend(
        legend.values(),
        legend.keys(),
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, 0),
        bbox_transform=_below_axis_label(left, figure),
        ncols=2,
    )
    markers = {"head": "o", "medium": "s", "tail": "^"}
    for bucket in BUCKETS:
        values = [m[bucket_name(bucket)] for m in models]
        right.scatter(values, y, marker=markers.get(bucket, "o"), label=bucket, zorder=3)
    right.set_xlim(-0.03, 1.03)  # a marker at 0 or 1 (the constant's tail) drawn whole
    right.set_xticks(np.linspace(0, 1, 6))
    right.set_xlabel("val top-30 error per bucket (lower is better)")
    right.set_title("By frequency bucket of the true species", fontsize=10)
    right.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, 0),
        bbox_transform=_below_axis_label(right, figure),
        ncols=3,
    )
    for axes in (left, right):
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle("Leaderboard: every model on val, best first")
    save_png(figure, path)
