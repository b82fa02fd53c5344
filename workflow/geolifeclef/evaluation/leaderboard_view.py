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

from geolifeclef.data.class_frequency import BUCKETS
from geolifeclef.plotting import new_figure, save_png

REFERENCE_MODEL = "constant"
"""The baseline that every model should beat by far: kept off the figure's axis range."""
HEADERS = {
    "rank": ("#", "rank by val top-30 error"),
    "model": ("model", "baseline, blend (with what it averages) or experiment"),
    "kind": ("kind", ""),
    "top30_error": (
        "top-30 error ↓",
        "the Kaggle metric: share of val observations whose species is not among the 30 predicted",
    ),
    "macro_top30_error": ("macro top-30 ↓", "top-30 error averaged over species"),
    **{f"{b}_top30_error": (f"{b} top-30 ↓", f"top-30 error on the {b} species") for b in BUCKETS},
    "top1_error": ("top-1 ↓", ""),
    "top5_error": ("top-5 ↓", ""),
    "top10_error": ("top-10 ↓", ""),
    "improvement_over_constant": (
        "gain over constant ↑",
        "constant's top-30 error minus the model's",
    ),
    "gap_closed": ("gap closed ↑", "share of the constant-to-Bayes gap closed (demo only)"),
    "expected_top30_error": (
        "expected top-30 ↓",
        "expected error under the demo's true probabilities, free of label noise",
    ),
    "n_observations": ("val rows", ""),
    "test_fit": ("test fitted on", "train, or train+val for a refit"),
}
"""Column -> (header, tooltip) of the HTML page; ↓ lower is better, ↑ higher is better."""


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.4f}"
    return html.escape(str(value))


def leaderboard_html(frame: pd.DataFrame, sweeps: Sequence[tuple[dict, pd.DataFrame]] = ()) -> str:
    """A standalone HTML page: title, how to read it, the table (best model in bold, the
    Bayes limit in grey, each blend's members under its name), then a section per sweep
    (``(sweep description, its members ranked)``)."""
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
        "lists the models it averages and their weights. A fitted blend is scored on "
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
        f"</table>{_sweep_sections(sweeps)}</body></html>\n"
    )


def _sweep_sections(sweeps: Sequence[tuple[dict, pd.DataFrame]]) -> str:
    parts = []
    for sweep, members in sweeps:
        title = html.escape(f"Sweep {sweep['name']} (base {sweep['base']})")
        body = members.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
        parts.append(f"<h2>{title}</h2>{body}")
    return "".join(parts)


def _label(row: dict) -> str:
    if not row.get("members"):
        return row["model"]
    members = " + ".join(row["members"].split(", "))
    return f"{row['model']}\n({members})"


def plot_leaderboard(frame: pd.DataFrame, path: str | Path) -> None:
    """Left: val top-30 error of every model, best at the top, on an axis fitted to the
    models (the constant predictor clipped at its edge, its value written; the Bayes limit
    as a dashed line). Right: top-30 error per frequency bucket of the true species."""
    models = frame[frame["kind"] != "bound"].to_dict("records")
    bound = frame[frame["kind"] == "bound"]
    limit = float(bound["top30_error"].iloc[0]) if not bound.empty else None
    errors = np.array([m["top30_error"] for m in models], dtype=float)
    shown = [e for m, e in zip(models, errors, strict=True) if m["model"] != REFERENCE_MODEL]
    low = min([*shown, *([limit] if limit is not None else [])], default=0.0)
    high = max(shown, default=1.0)
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
        left.hlines(i, low, at, color=color, lw=1, alpha=0.5)
        left.plot(at, i, ">" if clipped else "o", color=color, ms=8)
        text = f"{error:.3f} (off the axis) " if clipped else f"  {error:.3f}"
        left.text(at, i - 0.22, text, ha="right" if clipped else "left", fontsize=8)
    legend = {
        kind: Line2D([], [], color=colors.get(kind, "tab:gray"), marker="o", ls="")
        for kind in dict.fromkeys(m["kind"] for m in models)
    }
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
        bbox_to_anchor=(0.5, -0.16),
        ncols=2,
    )
    markers = {"head": "o", "medium": "s", "tail": "^"}
    for bucket in BUCKETS:
        values = [m[f"{bucket}_top30_error"] for m in models]
        right.scatter(values, y, marker=markers.get(bucket, "o"), label=bucket, zorder=3)
    right.set_xlim(0, 1)
    right.set_xlabel("val top-30 error per bucket (lower is better)")
    right.set_title("By frequency bucket of the true species", fontsize=10)
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3)
    for axes in (left, right):
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle("Leaderboard: every model on val, best first")
    save_png(figure, path)
