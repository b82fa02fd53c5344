"""Response curves: how a mappable model's probability of a species follows one variable.

Partial dependence (Friedman 2001; biomod2's and elapid's response curves): for each of
``points`` values spanning a variable's observed range (its 1st to 99th percentile over a
sample of the region's val rows), every sampled row gets that value while its other
variables keep their observed values, and the model's probability of the species is
averaged over the rows. The curve is the species' response to the variable with the
others as they occur together in the region, not at an arbitrary mean.

The variables are the model's most important ones (``geolifeclef.maps.importance``), the
species those the maps choose by default (one head, one medium and one tail species per
region, ``maps.render.choose_species``) or the ones the config names.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path
from geolifeclef.baselines.fitting import species_columns
from geolifeclef.maps.importance import PointSample, predict
from geolifeclef.maps.point_models import PointModel
from geolifeclef.maps.render import choose_species, species_file
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.settings.maps import MapSettings, ResponseSettings

log = logging.getLogger(__name__)


def response_species(species: pd.DataFrame, region: str, settings: ResponseSettings) -> list[int]:
    """The configured species (refused when not in the species table), or one species of
    each frequency bucket with train observations in the region."""
    if settings.species is not None:
        unknown = sorted(set(settings.species) - set(species["species_id"].tolist()))
        if unknown:
            raise ValueError(
                f"response.species: {unknown} are not in metadata/species_details.csv; "
                "list species ids of the dataset"
            )
        return list(settings.species)
    return choose_species(species, region, MapSettings(per_bucket=1))


def region_sample(sample: PointSample, region: str, rows: int, seed: int = 0) -> PointSample:
    """``rows`` of the sample's rows in ``region`` (a seeded choice, in their order)."""
    mine = np.flatnonzero(sample.region == region)
    if len(mine) > rows:
        mine = np.sort(np.random.default_rng(seed).choice(mine, rows, replace=False))
    return sample.subset(mine)


def partial_dependence(
    model: PointModel,
    sample: PointSample,
    feature: str,
    values: np.ndarray,
    columns: np.ndarray,
    n_species: int,
) -> np.ndarray:
    """(len(values), len(columns)): the model's probabilities of species ``columns``
    averaged over the sample's rows with ``feature`` set to each value in turn."""
    curves = np.empty((len(values), len(columns)))
    for i, value in enumerate(values):
        fixed = sample.with_columns({feature: np.full(len(sample), value)})
        curves[i] = predict(model, fixed, n_species)[:, columns].mean(axis=0)
    return curves


def feature_range(sample: PointSample, feature: str, points: int) -> np.ndarray:
    """``points`` values from the 1st to the 99th percentile of the feature in the sample."""
    observed = sample.column(feature)
    observed = observed[np.isfinite(observed)]
    if not len(observed):
        return np.empty(0)
    low, high = np.percentile(observed, [1, 99])
    return np.linspace(low, high, points)


def response_curves(
    model: PointModel,
    sample: PointSample,
    species: pd.DataFrame,
    chosen: list[int],
    features: list[str],
    settings: ResponseSettings,
) -> pd.DataFrame:
    """Long table: model, species_id, feature, value, probability (the partial dependence
    of each chosen species on each feature)."""
    columns = species_columns(species, np.asarray(chosen))
    frames = []
    for feature in features:
        values = feature_range(sample, feature, settings.points)
        if not len(values):
            log.warning("%s: no observed value of %s in the sample: no curve", model.name, feature)
            continue
        curves = partial_dependence(model, sample, feature, values, columns, len(species))
        for j, species_id in enumerate(chosen):
            frames.append(
                pd.DataFrame(
                    {
                        "model": model.name,
                        "species_id": int(species_id),
                        "feature": feature,
                        "value": values,
                        "probability": curves[:, j],
                    }
                )
            )
    columns = ["model", "species_id", "feature", "value", "probability"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def plot_responses(
    curves: pd.DataFrame,
    sample: PointSample,
    species_id: int,
    title: str,
    path: str | Path,
) -> None:
    """One panel per feature: the species' response, over a rug of the observed values
    (and of the rows observed as this species, in red)."""
    mine = curves[curves["species_id"] == species_id]
    features = list(dict.fromkeys(mine["feature"]))
    figure = new_figure(3.2 * max(1, len(features)) + 0.4, 3.2)
    axes = figure.subplots(1, max(1, len(features)), squeeze=False)[0]
    present = sample.species_id == species_id
    for ax, feature in zip(axes, features, strict=False):
        curve = mine[mine["feature"] == feature]
        ax.plot(curve["value"], curve["probability"], color="#4c72b0")
        observed = sample.column(feature)
        top = float(curve["probability"].max()) or 1.0
        ax.plot(observed, np.full(len(observed), 0.0), "|", color="0.6", ms=6)
        ax.plot(observed[present], np.full(int(present.sum()), 0.0), "|", color="red", ms=9)
        ax.set_ylim(-0.05 * top, 1.1 * top)
        ax.set_xlabel(feature)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("mean probability (partial dependence)", fontsize=8)
    figure.suptitle(title, fontsize=9)
    save_png(figure, path)


def write_responses(
    model: PointModel,
    sample: PointSample,
    species: pd.DataFrame,
    species_names: dict[int, str],
    chosen: list[int],
    features: list[str],
    settings: ResponseSettings,
    folder: str | Path,
    region: str,
) -> pd.DataFrame:
    """``folder`` as a whole: ``responses.parquet`` and ``species_<id>.png`` per species."""
    curves = response_curves(model, sample, species, chosen, features, settings)
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        pq.write_table(
            pa.Table.from_pandas(curves, preserve_index=False), temporary / "responses.parquet"
        )
        for species_id in chosen:
            name = species_names.get(species_id, str(species_id))
            plot_responses(
                curves,
                sample,
                species_id,
                f"{model.name}, {region}: response of {name} (species {species_id}), "
                f"{len(sample)} val rows",
                temporary / f"{species_file(species_id)}.png",
            )
    return curves
