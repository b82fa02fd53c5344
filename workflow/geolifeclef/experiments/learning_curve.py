"""The learning curve of a trained experiment: loss and val figures per epoch.

Drawn from the summary that training writes (``results/models/<experiment>/history.json``),
for the report and as an artifact of the train run in MLflow.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geolifeclef.plotting import new_figure, save_png
from geolifeclef.predictions.metrics import BCE, REPORTED_KS, TOP25_F1, val_name

VAL_F1 = val_name(TOP25_F1.name)
VAL_BCE = val_name(BCE.name)


def plot_learning_curve(summary: Mapping[str, Any], path: str | Path) -> None:
    """Left: mean train loss per epoch. Right: val top-k errors per epoch (absent for a
    refit, which has no val), with the kept epoch marked; lower is better on both. A
    multi-label task's: the val BCE beside the train loss, and the val top-25 F1 (higher
    is better) on the right."""
    history = summary["history"]
    epochs = [entry["epoch"] for entry in history]
    with_val = any("val_top30_error" in entry for entry in history)
    with_f1 = any(VAL_F1 in entry for entry in history)
    figure = new_figure(10 if with_val or with_f1 else 5.5, 3.8)
    panels = figure.subplots(1, 2 if with_val or with_f1 else 1, squeeze=False)[0]
    loss = panels[0]
    loss.plot(epochs, [entry["train_loss"] for entry in history], marker="o", ms=3)
    loss.set_xlabel("epoch")
    loss.set_ylabel("train loss (mean over the epoch)")
    loss.set_title("Training loss")
    best = summary.get("best_epoch")
    if with_val:
        errors = panels[1]
        for k in REPORTED_KS:
            values = [entry.get(f"val_top{k}_error", float("nan")) for entry in history]
            errors.plot(epochs, values, marker="o", ms=3, label=f"top-{k}")
        errors.set_xlabel("epoch")
        errors.set_ylabel("val error (lower is better)")
        errors.set_title("Val top-k error")
        errors.set_ylim(0, 1.15)  # a band above errors of 1 for the legend
        errors.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        if best:
            kept = summary.get("best_val_top30_error", float("nan"))
            errors.axvline(best, color="grey", ls="--", lw=1)
            errors.annotate(
                f"kept: epoch {best}\ntop-30 {kept:.3f}",
                (best, kept),
                xytext=(6, 14),
                textcoords="offset points",
                fontsize=8,
            )
        errors.legend(fontsize=8, loc="upper center", ncols=len(REPORTED_KS))
    elif with_f1:
        _plot_species_sets(loss, panels[1], epochs, history, best, summary)
    for axes in panels:
        axes.grid(alpha=0.3)
        if len(epochs) <= 20:
            axes.set_xticks(epochs)
    fit = summary.get("fitted_on", "train")
    figure.suptitle(f"{summary['experiment']}: learning curve (fitted on {fit})")
    save_png(figure, path)


def _plot_species_sets(loss, scores, epochs, history, best, summary) -> None:
    """A multi-label task's panels: the val BCE on the loss's axes (unweighted: equal to
    the train loss's scale when pos_weight is 1), the val top-25 F1 with the kept epoch."""
    loss.plot(epochs, [entry.get(VAL_BCE, float("nan")) for entry in history], marker="o", ms=3)
    loss.legend(["train", "val BCE"], fontsize=8)
    values = [entry.get(VAL_F1, float("nan")) for entry in history]
    scores.plot(epochs, values, marker="o", ms=3, color="C2")
    scores.set_xlabel("epoch")
    scores.set_ylabel("val top-25 F1 (higher is better)")
    scores.set_title("Val F1 of the top-25 sets")
    scores.set_ylim(0, 1)
    if best:
        kept = summary.get(f"best_{VAL_F1}", float("nan"))
        scores.axvline(best, color="grey", ls="--", lw=1)
        scores.annotate(
            f"kept: epoch {best}\nF1 {kept:.3f}",
            (best, kept),
            xytext=(6, -24),
            textcoords="offset points",
            fontsize=8,
        )
