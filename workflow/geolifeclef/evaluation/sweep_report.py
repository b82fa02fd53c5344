"""How a sweep went: its members ranked by val top-30 error with the settings they vary,
and a plot of the error against each varied setting."""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.plotting import new_figure, save_png
from geolifeclef.predictions.metrics import GAP_CLOSED, KAGGLE_ERROR, top_k_name


def sweep_table(all_metrics: list[dict], sweep: dict) -> pd.DataFrame:
    """One row per member of ``sweep`` (``{"name", "varied", "members": {name: settings}}``)
    that has metrics: rank, member, each varied setting, val errors; best first."""
    by_model = {m["model"]: m for m in all_metrics}
    rows = []
    for member, settings in sweep["members"].items():
        if member not in by_model:
            continue
        metrics = by_model[member]
        rows.append(
            {
                "member": member,
                **{key: settings[key] for key in sweep["varied"]},
                KAGGLE_ERROR: metrics[KAGGLE_ERROR],
                top_k_name(1): metrics.get(top_k_name(1), np.nan),
                GAP_CLOSED.name: metrics.get(GAP_CLOSED.name, np.nan),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values([KAGGLE_ERROR, "member"], kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def sweep_markdown(frame: pd.DataFrame, sweep: dict) -> str:
    """A Markdown section: the sweep's base, members ranked, varied settings as columns."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return str(value)

    lines = [
        f"## Sweep `{sweep['name']}` (base experiment `{sweep['base']}`)",
        "",
        f"{len(frame)} members, ranked by val top-30 error (lower is better); varied: "
        + ", ".join(f"`{key}`" for key in sweep["varied"])
        + ".",
        "",
        "| " + " | ".join(frame.columns) + " |",
        "| " + " | ".join("---" for _ in frame.columns) + " |",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines) + "\n"


def plot_sweep(frame: pd.DataFrame, sweep: dict, path: str | Path) -> None:
    """Val top-30 error against each varied setting (one panel each; a log axis for a
    numeric setting spanning more than a factor of 10, such as a learning rate)."""
    varied = list(sweep["varied"])
    figure = new_figure(max(4.5, 3.6 * len(varied)), 3.4)
    axes = np.atleast_1d(figure.subplots(1, len(varied)))
    for ax, key in zip(axes, varied, strict=True):
        values = frame[key] if not frame.empty else pd.Series(dtype=float)
        numeric = pd.to_numeric(values, errors="coerce")
        if len(values) and numeric.notna().all():
            ax.scatter(numeric, frame[KAGGLE_ERROR], color="tab:blue")
            if numeric.min() > 0 and numeric.max() / numeric.min() > 10:
                ax.set_xscale("log")
        else:
            labels = [str(v) for v in values]
            order = sorted(set(labels))
            ax.scatter([order.index(v) for v in labels], frame[KAGGLE_ERROR], color="tab:blue")
            ax.set_xticks(range(len(order)), order, rotation=20, fontsize=8)
        if len(values):
            best = frame.iloc[0]
            ax.scatter(
                [pd.to_numeric(best[key], errors="coerce")]
                if numeric.notna().all()
                else [sorted({str(v) for v in values}).index(str(best[key]))],
                [best[KAGGLE_ERROR]],
                color="tab:red",
                label="best",
                zorder=3,
            )
        ax.set_xlabel(key)
        ax.set_ylabel("val top-30 error (lower is better)")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Sweep {sweep['name']}: val top-30 error against each varied setting")
    save_png(figure, path)
