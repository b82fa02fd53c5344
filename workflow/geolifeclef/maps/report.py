"""The maps of one (model, region) as a user gets them, and the summary over all models.

:func:`map_region` renders the GeoTIFFs (``geolifeclef.maps.render``), compares them with the
demo's true maps when there are some (Pearson correlation over the land cells, per species
and for the richness), draws one PNG per map (the region's outline, a colour bar, the
species' name and its train observations; on the demo the true map beside the predicted
one, on the same colour scale) and returns the metrics. :func:`summarize_maps` gathers the
metrics of every model into one table and plot, and lists the models that were not mapped
and why.
"""

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib import colormaps
from matplotlib.patches import Patch

from geolifeclef.atomic import atomic_path, write_text
from geolifeclef.baselines.fitting import species_columns
from geolifeclef.layout import DatasetLayout
from geolifeclef.maps.point_models import PointModel, PointModelSpec
from geolifeclef.maps.render import (
    RICHNESS,
    map_correlations,
    map_grid,
    read_map,
    render_maps,
    species_file,
    species_of_file,
)
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.settings.maps import MapSettings

log = logging.getLogger(__name__)

REGION_NAMES = {"fr": "France", "us": "United States"}
PLOT_SIDE = 900
"""Cells a side of the grids drawn in a PNG (larger grids are decimated for the figure)."""
RICHNESS_LABEL = "effective number of species (1 / sum p^2)"


def _hatch_extrapolation(axes, mess: np.ma.MaskedArray, extent) -> None:
    """Hatch the cells whose MESS is negative (conditions outside the training data's)."""
    outside = (mess.filled(0.0) < 0).astype(float)
    if not outside.any():
        return
    hatched = axes.contourf(
        outside, levels=[0.5, 1.5], colors="none", hatches=["////"], extent=extent, origin="upper"
    )
    hatched.set_edgecolor("0.25")
    hatched.set_linewidth(0.0)
    axes.add_artist(
        axes.legend(
            handles=[Patch(facecolor="none", edgecolor="0.25", hatch="////")],
            labels=["outside the training conditions (MESS < 0)"],
            loc="upper right",
            fontsize=7,
            framealpha=0.8,
        )
    )


def _draw_panel(axes, data, bounds, vmin, vmax, cmap, title, observations, mess=None):
    west, south, east, north = bounds
    extent = (west, east, south, north)
    image = axes.imshow(
        data,
        extent=extent,
        origin="upper",
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    if mess is not None:
        _hatch_extrapolation(axes, mess, extent)
    land = (~np.ma.getmaskarray(data)).astype(float)
    if land.any() and not land.all():
        axes.contour(
            land, levels=[0.5], extent=extent, origin="upper", colors="0.2", linewidths=0.6
        )
    if observations is not None and len(observations[0]):
        latitude, longitude = observations
        axes.scatter(
            longitude,
            latitude,
            s=9,
            c="red",
            edgecolors="white",
            linewidths=0.4,
            label=f"train observations ({len(latitude)})",
        )
        axes.legend(loc="lower left", fontsize=7, framealpha=0.8)
    axes.set_xlim(west, east)
    axes.set_ylim(south, north)
    axes.set_aspect(1 / max(0.2, math.cos(math.radians((south + north) / 2))))
    axes.set_xlabel("longitude")
    axes.set_ylabel("latitude")
    axes.set_title(title, fontsize=9)
    return image


def plot_map(
    png: str | Path,
    title: str,
    predicted: str | Path,
    label: str,
    model: str,
    observations: tuple[np.ndarray, np.ndarray] | None = None,
    truth: str | Path | None = None,
    correlation: float | None = None,
    mess: str | Path | None = None,
) -> None:
    """One map as a PNG; with ``truth``, the true map beside it (a species on the same
    colour scale); with ``mess`` (the region's MESS map, same grid), the predicted map's
    cells outside the training conditions hatched."""

    panels = [(read_map(predicted, PLOT_SIDE), f"predicted by {model}")]
    if truth is not None:
        panels.append((read_map(truth, PLOT_SIDE), "truth (demo species model)"))
    # Probabilities share one scale; a richness is compared by its pattern, on its own
    # scale (a label-smoothed model's effective number of species is larger everywhere).
    richness = RICHNESS_LABEL in label
    scales = [[data for (data, _), _ in panels]] if not richness else [[d] for (d, _), _ in panels]
    cmap = colormaps["viridis"].with_extremes(bad="#e3ebf2")
    extrapolation = read_map(mess, PLOT_SIDE)[0] if mess is not None else None
    (_, bounds), _ = panels[0]
    west, south, east, north = bounds
    aspect = (east - west) * math.cos(math.radians((south + north) / 2)) / (north - south)
    figure = new_figure(min(16, 1.2 + 5.2 * len(panels) * max(0.6, min(aspect, 2.2))), 5.4)
    figure.set_layout_engine("constrained")  # the colour bars beside the panels
    axes = list(figure.subplots(1, len(panels), squeeze=False)[0])
    groups = [axes] if not richness else [[ax] for ax in axes]
    for scale, group in zip(scales, groups, strict=True):
        values = np.concatenate([data.compressed() for data in scale])
        vmin = float(np.percentile(values, 0.5)) if richness and len(values) else 0.0
        vmax = float(np.percentile(values, 99.5)) if len(values) else 1.0
        vmax = max(vmax, vmin + 1e-9)
        for ax in group:
            (data, box), panel_title = panels[axes.index(ax)]
            hatch = extrapolation if axes.index(ax) == 0 else None
            image = _draw_panel(ax, data, box, vmin, vmax, cmap, panel_title, observations, hatch)
        figure.colorbar(image, ax=group, label=label, shrink=0.85)
    if correlation is not None and math.isfinite(correlation):
        title += f"   (correlation with the truth r = {correlation:.2f})"
    figure.suptitle(title, fontsize=10)
    save_png(figure, png)


@dataclass(frozen=True)
class RegionSpecies:
    """The species a region's maps show: the species table, their names, which are mapped
    (``chosen``) and the train observations drawn on their maps (None: none drawn)."""

    table: pd.DataFrame
    names: dict[int, str]
    chosen: list[int]
    train: pd.DataFrame | None = None

    def title(self, species_id: int, region: str) -> str:
        row = self.table.set_index("species_id").loc[species_id]
        return (
            f"{self.names.get(species_id, species_id)} (species {species_id}, "
            f"{row['bucket']}: {row[f'train_{region}']} train observations here)"
        )

    def observed(self, species_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        if self.train is None:
            return None
        mine = self.train[self.train["species_id"] == species_id]
        return mine["latitude"].to_numpy(), mine["longitude"].to_numpy()


def map_region(
    model: PointModel,
    layout: DatasetLayout,
    region: str,
    species: RegionSpecies,
    settings: MapSettings,
    folder: str | Path,
    truth: str | Path | None = None,
    mess: str | Path | None = None,
    workers: int = 1,
    figures: bool = True,
    progress: bool = True,
) -> dict:
    """Maps of the chosen species and the richness of ``model`` over ``region``, written to
    ``folder`` as a whole (GeoTIFFs, and PNGs when ``figures``, compared with the true maps
    in ``truth`` and hatched where the region's MESS map ``mess`` is negative); returns the
    metrics."""
    grid = map_grid(layout, region, settings.resolution)
    chosen = np.asarray(species.chosen)
    columns = dict(
        zip(map(species_file, chosen), species_columns(species.table, chosen), strict=True)
    )
    names = [*columns, RICHNESS]
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        cells = settings.chunk_cells(len(species.table))
        summary = render_maps(model, layout, grid, columns, temporary, cells, workers, progress)
        correlations = map_correlations(temporary, truth, names) if truth is not None else {}
        for name in names if figures else []:
            _plot_region_map(
                temporary, name, model.name, region, species, truth, correlations, mess
            )
    return {
        "model": model.name,
        "region": region,
        "grid": {**asdict(grid), "bounds": list(grid.bounds)},
        "cells": summary.cells,
        "land_cells": summary.land_cells,
        "seconds": summary.seconds,
        "land_cells_per_second": summary.cells_per_second,
        "richness": "inverse Simpson index 1 / sum_s p_s^2 (effective number of species)",
        "maps": [_map_entry(name, region, species, correlations) for name in names],
    }


def _plot_region_map(folder: Path, name, model_name, region, species, truth, correlations, mess):
    """The figure of map ``name`` (a species, or the richness) of ``folder``."""
    species_id = species_of_file(name)
    if species_id is None:
        title = f"{model_name}, {REGION_NAMES.get(region, region)}: species richness"
        label, observations = RICHNESS_LABEL, None
    else:
        title = species.title(species_id, region)
        label = "probability that an observation here is this species"
        observations = species.observed(species_id)
    plot_map(
        folder / f"{name}.png",
        title,
        folder / f"{name}.tif",
        label,
        model_name,
        observations,
        Path(truth) / f"{name}.tif" if truth is not None else None,
        correlations.get(name),
        mess,
    )


def _map_entry(name: str, region: str, species: RegionSpecies, correlations: dict) -> dict:
    """What the metrics say of one map: its species and their figures here, its correlation
    with the true map."""
    species_id = species_of_file(name)
    entry = {"map": name, "species_id": species_id, "correlation": correlations.get(name)}
    if species_id is not None:
        row = species.table.set_index("species_id").loc[species_id]
        entry.update(
            name=species.names.get(species_id, str(species_id)),
            bucket=row["bucket"],
            train_observations_in_region=int(row[f"train_{region}"]),
        )
    return entry


def write_map_metrics(metrics: dict, path: str | Path) -> None:
    write_text(path, json.dumps(metrics, indent=2, allow_nan=True) + "\n")


def numeric_map_metrics(metrics: dict) -> dict[str, float]:
    """What an MLflow run of the maps records: sizes, speed, correlations."""
    values = {
        "map.land_cells": metrics["land_cells"],
        "map.seconds": metrics["seconds"],
        "map.land_cells_per_second": metrics["land_cells_per_second"],
    }
    for entry in metrics["maps"]:
        if entry["correlation"] is not None and math.isfinite(entry["correlation"]):
            values[f"map_correlation.{entry['map']}"] = entry["correlation"]
    return values


# --------------------------------------------------------------------------------------
# Summary over models
# --------------------------------------------------------------------------------------


def correlation_table(all_metrics: list[dict]) -> pd.DataFrame:
    """One row per (model, region, map): correlation with the truth, speed."""
    rows = []
    for metrics in all_metrics:
        for entry in metrics["maps"]:
            rows.append(
                {
                    "model": metrics["model"],
                    "region": metrics["region"],
                    "map": entry["map"],
                    "species_id": entry["species_id"],
                    "bucket": entry.get("bucket"),
                    "correlation": entry["correlation"],
                    "land_cells_per_second": metrics["land_cells_per_second"],
                }
            )
    columns = ["model", "region", "map", "species_id", "bucket", "correlation"]
    frame = pd.DataFrame(rows, columns=[*columns, "land_cells_per_second"])
    frame["species_id"] = frame["species_id"].astype("Int64")
    frame["correlation"] = frame["correlation"].astype(float)
    return frame


def summary_markdown(frame: pd.DataFrame, skipped: dict[str, str]) -> str:
    """Correlation of each map with the truth (demo), per model and region; the skipped
    models and why."""
    lines = ["# Species maps", ""]
    if frame["correlation"].notna().any():
        wide = frame.pivot_table(
            index=["region", "map"], columns="model", values="correlation", aggfunc="first"
        )
        lines += [
            "Pearson correlation between the predicted and the true map over the land cells "
            "(demo; richness: effective number of species).",
            "",
            "| region | map | " + " | ".join(wide.columns) + " |",
            "| --- | --- | " + " | ".join("---" for _ in wide.columns) + " |",
        ]
        for (region, name), row in wide.iterrows():
            cells = " | ".join("" if pd.isna(v) else f"{v:.3f}" for v in row)
            lines.append(f"| {region} | {name} | {cells} |")
        lines.append("")
    speed = frame.groupby(["model", "region"])["land_cells_per_second"].first()
    lines += ["| model | region | land cells / s |", "| --- | --- | --- |"]
    lines += [f"| {m} | {r} | {v:.0f} |" for (m, r), v in speed.items()]
    if skipped:
        lines += ["", "Not mapped:", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in sorted(skipped.items())]
    return "\n".join(lines) + "\n"


def plot_correlations(frame: pd.DataFrame, path: str | Path) -> None:
    """Correlation with the true map of each mapped species and the richness, per model."""
    models = sorted(frame["model"].unique())
    groups = frame[["region", "map"]].drop_duplicates().sort_values(["region", "map"])
    labels = [f"{r}\n{m.replace('species_', 'sp ')}" for r, m in groups.itertuples(index=False)]
    figure = new_figure(max(7.0, 0.5 * len(groups) * max(1, len(models)) / 2 + 3), 4.2)
    axes = figure.subplots()
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        mine = frame[frame["model"] == model].set_index(["region", "map"])
        values = [
            mine["correlation"].get((r, m), np.nan) for r, m in groups.itertuples(index=False)
        ]
        axes.bar(x + (i - (len(models) - 1) / 2) * width, values, width, label=model)
    axes.set_xticks(x, labels, fontsize=7)
    axes.set_ylim(min(0.0, float(np.nanmin(frame["correlation"])) - 0.05), 1.15)
    axes.axhline(0, color="black", lw=0.5)
    axes.set_ylabel("correlation with the true map")
    axes.set_title("Demo: predicted vs true maps (per species, and the richness)")
    axes.legend(fontsize=8, ncols=min(4, len(models)), loc="upper center")
    save_png(figure, path)


def summarize_maps(
    all_metrics: list[dict],
    specs: list[PointModelSpec],
    table_path: str | Path,
    markdown_path: str | Path,
    plot_path: str | Path | None = None,
) -> pd.DataFrame:
    """Write the correlation table (Parquet, Markdown) and, when given, its plot."""
    frame = correlation_table(all_metrics)
    skipped = {spec.name: spec.reason for spec in specs if not spec.mappable}
    for name, reason in sorted(skipped.items()):
        log.info("not mapped: %s: %s", name, reason)
    with atomic_path(table_path) as temporary:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temporary)
    write_text(markdown_path, summary_markdown(frame, skipped))
    if plot_path is not None:
        plot_correlations(frame, plot_path)
    return frame
