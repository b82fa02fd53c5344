"""The long tail: how many observations each species has, per split and region.

The per-species table written here, ``results/class_frequency/species.parquet``, is what
later steps read for class priors and frequency buckets (losses, samplers, the constant
baseline, per-bucket metrics). One row per species listed in
``metadata/species_details.csv``, sorted by ``species_id``:

================  ========  ===============================================================
column            type      meaning
================  ========  ===============================================================
``species_id``    int32     the species
``train_count``   int64     observations in the train subset
``val_count``     int64     observations in the val subset
``train_fr``      int64     train observations in France (``train_us``: in the US)
``val_fr``        int64     val observations in France (``val_us``: in the US)
``prior``         float64   ``train_count / number of train observations`` (sums to 1; 0 for a
                            species never seen in train -- smooth it where a log is taken)
``rank``          int64     1 = most observed in train; ties go to the smaller species id
``bucket``        string    ``head`` (train_count > head_above), ``tail`` (train_count <
                            tail_below, unseen species included) or ``medium`` (the rest)
================  ========  ===============================================================
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path, write_text
from geolifeclef.errors import InputDataError
from geolifeclef.layout import REGIONS
from geolifeclef.plotting import new_figure, save_png
from geolifeclef.settings.validation import check_buckets

log = logging.getLogger(__name__)

BUCKETS = ("head", "medium", "tail")
"""Frequency buckets, most observed first."""

SPECIES_TABLE_SCHEMA = pa.schema(
    [
        ("species_id", pa.int32()),
        ("train_count", pa.int64()),
        ("val_count", pa.int64()),
        *[(f"{split}_{region}", pa.int64()) for split in ("train", "val") for region in REGIONS],
        ("prior", pa.float64()),
        ("rank", pa.int64()),
        ("bucket", pa.string()),
    ]
)


@dataclass(frozen=True)
class BucketThresholds:
    """Head: more than ``head_above`` train observations; tail: fewer than ``tail_below``."""

    head_above: int = 100
    tail_below: int = 20

    def __post_init__(self) -> None:
        check_buckets(self.head_above, self.tail_below)

    def bucket(self, train_counts: np.ndarray) -> np.ndarray:
        """Bucket name of each train count."""
        counts = np.asarray(train_counts)
        return np.where(
            counts > self.head_above, "head", np.where(counts < self.tail_below, "tail", "medium")
        )

    def short(self) -> dict[str, str]:
        """Train-count range of each bucket, for axis labels."""
        return {
            "head": f"> {self.head_above}",
            "medium": f"{self.tail_below}-{self.head_above}",
            "tail": f"< {self.tail_below}",
        }

    def describe(self) -> dict[str, str]:
        return {
            "head": f"> {self.head_above} train observations",
            "medium": f"{self.tail_below} to {self.head_above} train observations",
            "tail": f"< {self.tail_below} train observations",
        }


def _counts(species: np.ndarray, frame: pd.DataFrame, source: str) -> np.ndarray:
    """Observations per listed species (aligned to ``species``)."""
    labels = frame["species_id"].to_numpy(dtype=np.int64)
    position = np.searchsorted(species, labels)
    position = np.minimum(position, len(species) - 1)
    unknown = species[position] != labels
    if unknown.any():
        raise InputDataError(
            source,
            f"species_id {labels[unknown][0]} is not in metadata/species_details.csv",
            "rerun ingest_observations (it checks species ids)",
        )
    return np.bincount(position, minlength=len(species)).astype(np.int64)


def species_table(
    train: pd.DataFrame,
    val: pd.DataFrame,
    species_ids: np.ndarray,
    thresholds: BucketThresholds,
) -> pd.DataFrame:
    """The per-species table (see the module docstring) from the train and val tables."""
    species = np.unique(np.asarray(species_ids, dtype=np.int64))
    table = pd.DataFrame({"species_id": species.astype(np.int32)})
    table["train_count"] = _counts(species, train, "train observations")
    table["val_count"] = _counts(species, val, "val observations")
    for split, frame in (("train", train), ("val", val)):
        for region in REGIONS:
            table[f"{split}_{region}"] = _counts(
                species, frame[frame["region"] == region], f"{split} observations"
            )
    total = table["train_count"].sum()
    table["prior"] = table["train_count"] / total if total else 0.0
    order = np.lexsort((species, -table["train_count"].to_numpy()))
    rank = np.empty(len(species), dtype=np.int64)
    rank[order] = np.arange(1, len(species) + 1)
    table["rank"] = rank
    table["bucket"] = thresholds.bucket(table["train_count"].to_numpy())
    return table


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of counts: 0 when all species are equally observed, -> 1 when a few
    species hold every observation."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(values), values.sum()
    if n == 0 or total == 0:
        return float("nan")
    cumulative = np.cumsum(values)
    return float((n + 1 - 2 * (cumulative / total).sum()) / n)


def summarize(
    table: pd.DataFrame,
    observations: dict[str, pd.DataFrame],
    thresholds: BucketThresholds,
    rare_below: list[int],
) -> dict:
    """The long-tail figures of ``summary.json``."""
    train = table["train_count"].to_numpy()
    val = table["val_count"].to_numpy()
    n_species = len(table)
    top = max(1, int(np.ceil(0.01 * n_species)))
    rare_in_train = (val > 0) & (train < thresholds.tail_below)
    unseen_in_train = (val > 0) & (train == 0)
    buckets = {}
    for bucket in BUCKETS:
        rows = (table["bucket"] == bucket).to_numpy()
        buckets[bucket] = {
            "rule": thresholds.describe()[bucket],
            "n_species": int(rows.sum()),
            "train_share": _share(train[rows].sum(), train.sum()),
            "val_share": _share(val[rows].sum(), val.sum()),
        }
    return {
        "n_observations": {
            split: {
                "total": int(len(frame)),
                **{r: int((frame["region"] == r).sum()) for r in REGIONS},
            }
            for split, frame in observations.items()
        },
        "n_species": {
            "listed": int(n_species),
            "in_train": int((train > 0).sum()),
            "in_val": int((val > 0).sum()),
            **{
                f"in_train_{r}": int((table[f"train_{r}"] > 0).sum())
                for r in REGIONS
                if f"train_{r}" in table
            },
        },
        "train_count": {
            "max": int(train.max()) if n_species else 0,
            "median": float(np.median(train)) if n_species else 0.0,
            "mean": float(train.mean()) if n_species else 0.0,
        },
        "gini_train": gini(train),
        "top_1pct_species": int(top),
        "top_1pct_train_share": _share(np.sort(train)[::-1][:top].sum(), train.sum()),
        "species_with_train_count_below": {str(n): int((train < n).sum()) for n in rare_below},
        "val_species_rare_in_train": {
            "rule": f"in val, < {thresholds.tail_below} train observations",
            "n_species": int(rare_in_train.sum()),
            "val_share": _share(val[rare_in_train].sum(), val.sum()),
        },
        "val_species_unseen_in_train": {
            "n_species": int(unseen_in_train.sum()),
            "val_share": _share(val[unseen_in_train].sum(), val.sum()),
        },
        "buckets": buckets,
    }


def _share(part: float, total: float) -> float:
    return float(part / total) if total else float("nan")


def plot_rank_frequency(table: pd.DataFrame, thresholds: BucketThresholds, path: Path) -> None:
    """Log-log rank-frequency plot of train counts (all and per region), with the bucket
    thresholds, and the share of species vs. observations per bucket."""
    figure = new_figure(11, 4.2)
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    for column, label, style in (
        ("train_count", "train, both regions", "-"),
        *((f"train_{r}", f"train, {r}", "--") for r in REGIONS if f"train_{r}" in table),
        ("val_count", "val", ":"),
    ):
        counts = np.sort(table[column].to_numpy())[::-1]
        counts = counts[counts > 0]
        if len(counts):
            left.loglog(np.arange(1, len(counts) + 1), counts, style, label=label)
    for value, name in ((thresholds.head_above, "head"), (thresholds.tail_below, "tail")):
        left.axhline(value, color="grey", lw=0.8)
        left.annotate(f"{name} threshold {value}", (1, value), va="bottom", fontsize=8)
    left.set_xlabel("species rank (1 = most observed)")
    left.set_ylabel("observations")
    left.set_title("Rank-frequency of species")
    left.legend(fontsize=8)
    species_share = [(table["bucket"] == b).mean() for b in BUCKETS]
    total = table["train_count"].sum()
    observation_share = [
        table.loc[table["bucket"] == b, "train_count"].sum() / total if total else 0
        for b in BUCKETS
    ]
    x = np.arange(len(BUCKETS))
    right.bar(x - 0.2, species_share, 0.4, label="share of species")
    right.bar(x + 0.2, observation_share, 0.4, label="share of train observations")
    right.set_xticks(x, [f"{b}\n{thresholds.short()[b]}" for b in BUCKETS])
    right.set_xlabel("bucket (train observations per species)")
    right.set_ylim(0, 1)
    right.set_title("Frequency buckets")
    right.legend(fontsize=8)
    save_png(figure, path)


def write_species_table(table: pd.DataFrame, path: Path) -> None:
    arrow = pa.Table.from_pandas(table, schema=SPECIES_TABLE_SCHEMA, preserve_index=False)
    with atomic_path(path) as temporary:
        pq.write_table(arrow, temporary)


SPECIES_COLUMNS = ("species_id", "train_count", "val_count", "prior", "rank", "bucket")
"""The columns every edition's species table has (GLC 2022's adds the regions' counts; a
survey edition's, ``geolifeclef.data.survey_species``, the presence-only counts)."""


def read_species_table(path: str | Path) -> pd.DataFrame:
    """Read the per-species table written by :func:`analyze_class_frequency` (or, for a
    survey edition, ``geolifeclef.data.survey_species``)."""
    path = Path(path)
    frame = pq.read_table(path).to_pandas()
    missing = [c for c in SPECIES_COLUMNS if c not in frame.columns]
    if missing:
        raise InputDataError(path, f"missing column(s) {missing}", "rerun analyze_class_frequency")
    return frame


def analyze_class_frequency(
    observations: dict[str, pd.DataFrame],
    species_ids: np.ndarray,
    thresholds: BucketThresholds,
    rare_below: list[int],
    table_path: Path,
    summary_path: Path,
    plot_path: Path,
) -> dict:
    """Write the per-species table, the summary JSON and the rank-frequency plot."""
    table = species_table(observations["train"], observations["val"], species_ids, thresholds)
    summary = summarize(table, observations, thresholds, rare_below)
    write_species_table(table, table_path)
    write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    plot_rank_frequency(table, thresholds, plot_path)
    log.info(
        "%d species, Gini %.3f, top 1%% species hold %.1f%% of train, buckets %s",
        len(table),
        summary["gini_train"],
        100 * summary["top_1pct_train_share"],
        {b: v["n_species"] for b, v in summary["buckets"].items()},
    )
    return summary
