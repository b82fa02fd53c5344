"""Permutation importance: how much a mappable model's val top-30 error rises when the
values of one variable, or of one group of variables, are shuffled among the val rows.

A model that reads env values and coordinates (``geolifeclef.maps.point_models``) is
asked, through its point model's ``probabilities(latitude, longitude, env)``, for the
species of a sample of val observations as they are, then with one feature's column
permuted (a seeded permutation, ``repeats`` times): the rise of the top-30 error is what
the model loses without that feature's information (Breiman 2001; biomod2's and elapid's
variable importance). A group (``VARIABLE_GROUPS``: temperature, precipitation, soil,
coordinates) is permuted as a block, one permutation for all its columns, so that the
correlated variables of a group cannot stand in for each other. A variable the model
ignores gives 0 exactly.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path
from geolifeclef.data.env_table import read_env_table
from geolifeclef.data.observations import read_table
from geolifeclef.errors import InputDataError
from geolifeclef.layout import ENV_VARIABLES
from geolifeclef.maps.point_models import PointModel
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.predictions.metrics import KAGGLE_K, top_k, top_k_error
from geolifeclef.settings.maps import COORDINATES, VARIABLE_GROUPS, ImportanceSettings

log = logging.getLogger(__name__)

CHUNK_BYTES = 128 * 2**20
"""Memory of the probabilities predicted at once (float64, every species)."""


@dataclass(frozen=True)
class PointSample:
    """Observations as a point model reads them: coordinates, env values (n, 27, NaN where
    a raster has no value) and, for val rows, their species."""

    latitude: np.ndarray
    longitude: np.ndarray
    env: np.ndarray
    species_id: np.ndarray
    region: np.ndarray

    def __len__(self) -> int:
        return len(self.latitude)

    def column(self, feature: str) -> np.ndarray:
        if feature in COORDINATES:
            return getattr(self, feature)
        return self.env[:, ENV_VARIABLES.index(feature)]

    def with_columns(self, values: dict[str, np.ndarray]) -> "PointSample":
        """A copy with the named features replaced (coordinates or env columns)."""
        env = self.env.copy()
        coordinates = {name: getattr(self, name) for name in COORDINATES}
        for feature, column in values.items():
            if feature in COORDINATES:
                coordinates[feature] = np.broadcast_to(column, self.latitude.shape).copy()
            else:
                env[:, ENV_VARIABLES.index(feature)] = column
        return PointSample(
            coordinates["latitude"], coordinates["longitude"], env, self.species_id, self.region
        )

    def subset(self, rows: np.ndarray) -> "PointSample":
        return PointSample(
            self.latitude[rows],
            self.longitude[rows],
            self.env[rows],
            self.species_id[rows],
            self.region[rows],
        )


def read_sample(
    observations: str | Path, env_table: str | Path, rows: int = 0, seed: int = 0
) -> PointSample:
    """``rows`` observations of a table (0: all; a seeded sample otherwise, in table order)
    with their env values from the env table."""
    table = read_table(observations)
    if rows and rows < len(table):
        keep = np.sort(np.random.default_rng(seed).choice(len(table), rows, replace=False))
        table = table.iloc[keep]
    env = read_env_table(Path(env_table)).set_index("observation_id")
    missing = np.setdiff1d(table["observation_id"].to_numpy(), env.index.to_numpy())
    if len(missing):
        raise InputDataError(
            env_table,
            f"no env values for {len(missing)} observations of {observations} "
            f"(first: {missing[0]})",
            "rebuild the env table (snakemake extraction)",
        )
    values = env.loc[table["observation_id"], list(ENV_VARIABLES)].to_numpy(np.float32)
    return PointSample(
        table["latitude"].to_numpy(np.float64),
        table["longitude"].to_numpy(np.float64),
        values,
        table["species_id"].to_numpy(np.int64),
        table["region"].to_numpy() if "region" in table else np.full(len(table), ""),
    )


def predict(model: PointModel, sample: PointSample, n_species: int) -> np.ndarray:
    """The model's probabilities of every species at the sample's rows, ``CHUNK_BYTES``
    of them at a time."""
    chunk = max(1, CHUNK_BYTES // (8 * max(1, n_species)))
    parts = [
        model.probabilities(
            sample.latitude[start : start + chunk],
            sample.longitude[start : start + chunk],
            sample.env[start : start + chunk],
        )
        for start in range(0, len(sample), chunk)
    ]
    return np.concatenate(parts) if parts else np.empty((0, n_species))


def top_k_error_of(
    model: PointModel, sample: PointSample, species_ids: np.ndarray, k: int = KAGGLE_K
) -> float:
    """Top-k error of the model's predictions at the sample's rows."""
    p = predict(model, sample, len(species_ids))
    predicted, _ = top_k(p, min(k, p.shape[1]), species_ids)
    return top_k_error(predicted, sample.species_id)


IMPORTANCE_COLUMNS = [
    "model",
    "feature",
    "kind",
    "members",
    "baseline_error",
    "permuted_error",
    "increase",
    "increase_std",
    "repeats",
    "rows",
    "top_k",
]


def permutation_importance(
    model: PointModel,
    sample: PointSample,
    species_ids: np.ndarray,
    settings: ImportanceSettings,
) -> pd.DataFrame:
    """One row per feature (``kind`` variable) and group (``kind`` group): the val top-k
    error with its columns permuted (mean of ``repeats`` seeded permutations) and its rise
    over the error of the unpermuted sample, best first."""
    if len(sample) == 0:
        raise ValueError(f"{model.name}: no val rows to permute")
    baseline = top_k_error_of(model, sample, species_ids, settings.top_k)
    log.info(
        "%s: val top-%d error %.4f on %d rows", model.name, settings.top_k, baseline, len(sample)
    )
    permuted = [(f, "variable", (f,)) for f in settings.features]
    permuted += [(g, "group", VARIABLE_GROUPS[g]) for g in settings.groups]
    rows = []
    for index, (name, kind, members) in enumerate(permuted):
        errors = []
        for repeat in range(settings.repeats):
            order = np.random.default_rng([settings.seed, index, repeat]).permutation(len(sample))
            shuffled = sample.with_columns({m: sample.column(m)[order] for m in members})
            errors.append(top_k_error_of(model, shuffled, species_ids, settings.top_k))
        increase = np.asarray(errors) - baseline
        rows.append(
            (
                model.name,
                name,
                kind,
                ",".join(members),
                baseline,
                float(np.mean(errors)),
                float(increase.mean()),
                float(increase.std()),
                settings.repeats,
                len(sample),
                settings.top_k,
            )
        )
        log.info("%s: %s %s permuted: error +%.4f", model.name, kind, name, increase.mean())
    frame = pd.DataFrame(rows, columns=IMPORTANCE_COLUMNS)
    return frame.sort_values(["kind", "increase"], ascending=[False, False], ignore_index=True)


def write_importance(frame: pd.DataFrame, parquet: str | Path, csv: str | Path) -> None:
    with atomic_path(parquet) as temporary:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), temporary)
    with atomic_path(csv) as temporary:
        frame.to_csv(temporary, index=False)


def most_important(frame: pd.DataFrame, n: int) -> list[str]:
    """The ``n`` single features whose permutation raises the error most."""
    variables = frame[frame["kind"] == "variable"].sort_values("increase", ascending=False)
    return variables["feature"].head(n).tolist()


def plot_importance(frame: pd.DataFrame, path: str | Path) -> None:
    """Bars of the error's rise per group (top) and per variable, largest first."""
    groups = frame[frame["kind"] == "group"].sort_values("increase")
    variables = frame[frame["kind"] == "variable"].sort_values("increase")
    parts = [(g, t) for g, t in ((groups, "groups"), (variables, "variables")) if len(g)]
    heights = [max(1.2, 0.22 * len(g) + 0.6) for g, _ in parts]
    figure = new_figure(7.0, sum(heights) + 0.8)
    axes = figure.subplots(len(parts), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (part, title) in zip(axes, parts, strict=True):
        ax.barh(part["feature"], part["increase"], xerr=part["increase_std"], color="#4c72b0")
        ax.axvline(0, color="black", lw=0.5)
        ax.set_title(f"{title} permuted", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    first = frame.iloc[0]
    axes[-1].set_xlabel(f"rise of the val top-{first['top_k']} error when permuted")
    figure.suptitle(
        f"{first['model']}: permutation importance (val top-{first['top_k']} error "
        f"{first['baseline_error']:.3f}, {first['rows']} rows, {first['repeats']} permutations)",
        fontsize=10,
    )
    save_png(figure, path)
