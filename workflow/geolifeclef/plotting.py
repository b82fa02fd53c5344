"""Figures for the report: matplotlib's object API (no pyplot, no display needed)."""

from pathlib import Path
from typing import TYPE_CHECKING

from geolifeclef.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> "Figure":
    # deferred: matplotlib costs ~0.5 CPU s a process, and most jobs that import a
    # module with a figure in it (metrics, class frequency) never draw one
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="tight")


def save_png(figure: "Figure", path: str | Path, dpi: int = 110) -> None:
    """Write ``figure`` as a PNG atomically."""
    with atomic_path(path) as temporary:
        # tight: long tick labels (a blend's members) and titles are never cut off
        figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
