"""Richness maps of a survey edition: how many species a model predicts at each test survey.

The survey archives hold values at the surveys only (no rasters), so a survey edition's map
is drawn at its surveys: each test survey a dot, coloured by the model's predicted richness
-- its expected number of species present (the sum of its K candidates' presence
probabilities) and the size of the set it submits -- beside, on the demo, the true expected
richness (the sum of every species' true presence probability). ``richness.json`` gives the
means and, on the demo, the correlation of predicted and true richness over the surveys.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from geolifeclef.atomic import write_text
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.predictions.set_table import SpeciesSets
from geolifeclef.predictions.table import Predictions


def survey_richness(
    surveys: pd.DataFrame,
    predictions: Predictions,
    sets: SpeciesSets,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per survey of ``surveys`` (their order): coordinates, expected richness (the sum of
    the predicted probabilities), set size, and with ``truth`` (true presence probabilities
    (n, S) in that order, their species) the true expected richness."""
    ids = surveys["observation_id"].to_numpy(np.int64)
    frame = pd.DataFrame(
        {
            "observation_id": ids,
            "latitude": surveys["latitude"].to_numpy(),
            "longitude": surveys["longitude"].to_numpy(),
            "expected_richness": predictions.aligned_to(ids).scores.astype(np.float64).sum(1),
            "set_size": sets.aligned_to(ids).sizes,
        }
    )
    if truth is not None:
        frame["true_richness"] = np.asarray(truth[0], dtype=np.float64).sum(axis=1)
    return frame


def richness_figures(frame: pd.DataFrame) -> dict:
    """Means, and the correlation of predicted and true richness (demo)."""
    figures = {
        "surveys": len(frame),
        "mean_expected_richness": float(frame["expected_richness"].mean()),
        "mean_set_size": float(frame["set_size"].mean()),
    }
    if "true_richness" in frame and len(frame) > 2:
        figures["mean_true_richness"] = float(frame["true_richness"].mean())
        for column in ("expected_richness", "set_size"):
            figures[f"correlation_{column}_true"] = float(
                np.corrcoef(frame[column], frame["true_richness"])[0, 1]
            )
    return figures


def plot_richness(frame: pd.DataFrame, model: str, path: str | Path) -> None:
    """Test surveys coloured by predicted richness and set size (and the truth, demo)."""
    panels = [
        ("expected_richness", f"{model}: expected richness (sum of probabilities)"),
        ("set_size", f"{model}: species in its submitted set"),
    ]
    if "true_richness" in frame:
        panels.append(("true_richness", "true expected richness (demo truth)"))
    figure = new_figure(5.2 * len(panels), 4.6)
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    top = float(np.nanquantile(frame[[c for c, _ in panels]].to_numpy(float), 0.98))
    for axes, (column, title) in zip(axes_list, panels, strict=True):
        dots = axes.scatter(
            frame["longitude"],
            frame["latitude"],
            c=frame[column],
            s=6,
            cmap="viridis",
            vmin=0,
            vmax=max(top, 1.0),
        )
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("longitude")
        axes.set_ylabel("latitude")
        axes.set_aspect(1.5)
        figure.colorbar(dots, ax=axes, shrink=0.8, label="species")
    save_png(figure, path)


def map_richness(
    surveys: pd.DataFrame,
    predictions: Predictions,
    sets: SpeciesSets,
    model: str,
    plot_path: str | Path,
    figures_path: str | Path,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Write the richness map of a model's test surveys and its figures."""
    frame = survey_richness(surveys, predictions, sets, truth)
    plot_richness(frame, model, plot_path)
    figures = {"model": model, **richness_figures(frame)}
    write_text(figures_path, json.dumps(figures, indent=2) + "\n")
    return figures
