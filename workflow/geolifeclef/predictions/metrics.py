"""Top-k metrics: the one place that defines how predictions are scored.

The GLC 2022 metric is the top-30 error: the share of observations whose true species is
not among the 30 predicted ids. The organizers compute it from sets as

    1 - mean_i sum_j [s_pred[i, j] == y_true[i]]

which equals "label not in the set" only when each set holds distinct ids (a duplicate
would be counted twice), so every set built here holds distinct ids.

Sets are built from scores by :func:`top_k`: the k highest scores, ties broken by the
smaller species id, so the same scores always give the same sets (the organizers'
``argpartition`` picks tied ids arbitrarily). :func:`top_k_chunked` does the same over
row chunks of a score matrix too large for memory (36k test rows x 17k species float32
is 2.5 GB): it only ever holds one chunk and the k best of each row seen so far.

Every figure the workflow reports is one :class:`Metric` of :data:`METRICS` (name,
function, header, direction, tooltip): evaluation computes it, run records log it as
``val_<name>``, both leaderboard views show it with its header and direction, and training
names its per-epoch errors with the same names. Adding a metric of predicted sets is one
entry here.

A multi-label task (GLC 2024 on: the set of species present in each survey) is scored by
the samples-averaged F1 of predicted sets (:func:`top_k_f1`); a training job of such a task
logs, per epoch on val, the F1 of the top-25 sets and the binary cross-entropy of the
probabilities (:data:`MULTI_LABEL_EPOCH_METRICS`), and keeps the epoch of the best F1.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from tqdm import tqdm

from geolifeclef.data.class_frequency import BUCKETS
from geolifeclef.editions import SPECIES_SETS

KAGGLE_K = 30
"""Size of the predicted sets that GLC 2022 scores."""
REPORTED_KS = (1, 5, 10, 30)
"""The top-k errors every evaluation reports."""
SET_K = SPECIES_SETS.set_size
"""Size of the fixed-size sets of a multi-label task: the organizers' top 25."""


# --------------------------------------------------------------------------------------
# From scores to sets
# --------------------------------------------------------------------------------------


SCORE_CHUNK_ROWS = 2_000
"""Rows of a dense (rows, species) score matrix handled at once: 2,000 x 17,037 float64 is
272 MB, so top-k selection and the baselines stay bounded at the archive's size."""


def top_k(
    scores: np.ndarray, k: int, species_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best species of each row: (ids (n, k) int64, scores (n, k)), best first.

    ``scores`` is (n, S); column j is species ``species_ids[j]`` (default: j). Higher
    scores come first; equal scores are ordered by the smaller species id, so the result
    does not depend on the order of the columns.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-d (observations x species), got {scores.shape}")
    n, width = scores.shape
    ids = np.arange(width) if species_ids is None else np.asarray(species_ids)
    if ids.shape != (width,):
        raise ValueError(f"{len(ids)} species ids for {width} score columns")
    if not 1 <= k <= width:
        raise ValueError(f"k={k} but there are only {width} species to choose from")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)  # -score must not wrap around
    if np.isnan(scores).any():
        row = int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])
        raise ValueError(f"scores hold NaN (first in row {row}); a NaN cannot be ranked")
    if n == 0:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=scores.dtype)
    if (np.diff(ids) < 0).any():  # columns in increasing species id: ties resolve by column
        by_id = np.argsort(ids, kind="stable")
        scores, ids = scores[:, by_id], ids[by_id]
    # The k-th largest value of each row is well defined even when values tie: take every
    # score above it, then the first (smallest-id) columns equal to it until k are chosen.
    # This keeps the work per row O(S) even when thousands of species share one score.
    threshold = np.partition(scores, width - k, axis=1)[:, width - k][:, None]
    above = scores > threshold
    tied = scores == threshold
    room = k - above.sum(axis=1, keepdims=True)
    if (tied.sum(axis=1, keepdims=True) == room).all():
        chosen = above | tied  # no tie crosses the k-th place (continuous scores)
    else:
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    rows, cols = np.nonzero(chosen)  # row-major: exactly k per row
    best_ids = ids[cols].reshape(n, k)
    best_scores = scores[rows, cols].reshape(n, k)
    order = np.lexsort((best_ids, -best_scores), axis=1)
    return (
        np.take_along_axis(best_ids, order, axis=1).astype(np.int64),
        np.take_along_axis(best_scores, order, axis=1),
    )


def top_k_of_candidates(
    rows: np.ndarray, ids: np.ndarray, scores: np.ndarray, n: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of sparse candidates (row, species id, score), as :func:`top_k`.

    Every row 0..n-1 needs at least ``k`` candidates and a (row, id) pair may occur once.
    """
    rows, ids, scores = np.asarray(rows), np.asarray(ids), np.asarray(scores)
    per_row = np.bincount(rows, minlength=n)
    if n and per_row.min() < k:
        row = int(np.argmin(per_row))
        raise ValueError(f"row {row} has {per_row[row]} candidate species, fewer than k={k}")
    order = np.lexsort((ids, -scores, rows))
    starts = np.concatenate([[0], np.cumsum(per_row)[:-1]])
    position = np.arange(len(order)) - starts[rows[order]]
    chosen = order[position < k]
    return ids[chosen].reshape(n, k).astype(np.int64), scores[chosen].reshape(n, k)


def top_k_chunked(
    scores: np.ndarray,
    k: int,
    species_ids: np.ndarray | None = None,
    chunk_rows: int = SCORE_CHUNK_ROWS,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` over row chunks of ``scores`` (an array, ``np.memmap``, or any object
    with ``shape`` and row slicing); identical results, memory of one chunk."""
    n = scores.shape[0]
    return top_k_of_chunks(
        (scores[start : start + chunk_rows] for start in range(0, n, chunk_rows)),
        k,
        species_ids,
        total=n if progress else None,
    )


def top_k_of_chunks(
    chunks: Iterable[np.ndarray],
    k: int,
    species_ids: np.ndarray | None = None,
    total: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` of a score matrix that arrives as consecutive row chunks (e.g. from a
    model's batches); ``total`` (rows) shows a progress bar."""
    id_parts, score_parts = [], []
    with tqdm(total=total, desc="top-k", unit="obs", disable=total is None, mininterval=2) as bar:
        for chunk in chunks:
            ids, best = top_k(np.asarray(chunk), k, species_ids)
            id_parts.append(ids)
            score_parts.append(best)
            bar.update(len(ids))
    if not id_parts:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    return np.concatenate(id_parts), np.concatenate(score_parts)


# --------------------------------------------------------------------------------------
# Errors from sets
# --------------------------------------------------------------------------------------


def check_distinct(predicted: np.ndarray) -> None:
    """Raise ValueError if a row of ``predicted`` repeats an id (the metric assumes sets)."""
    predicted = np.asarray(predicted)
    if predicted.ndim != 2 or predicted.shape[1] < 2:
        return
    ordered = np.sort(predicted, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise ValueError(
            f"row {row} repeats a species id ({repeated.sum()} rows do); "
            "predicted sets must hold distinct ids"
        )


def hits(predicted: np.ndarray, labels: np.ndarray, k: int | None = None) -> np.ndarray:
    """Boolean per row: is the label among the first ``k`` ids (default: all columns)?"""
    predicted = np.asarray(predicted)
    labels = np.asarray(labels)
    if predicted.ndim != 2 or len(predicted) != len(labels):
        raise ValueError(f"predicted {predicted.shape} and labels {labels.shape} do not match")
    k = predicted.shape[1] if k is None else k
    if not 1 <= k <= predicted.shape[1]:
        raise ValueError(f"k={k} but only {predicted.shape[1]} ids per row")
    return (predicted[:, :k] == labels[:, None]).any(axis=1)


def top_k_error(predicted: np.ndarray, labels: np.ndarray, k: int | None = None) -> float:
    """Share of rows whose label is not in the first ``k`` columns of ``predicted``.

    ``predicted`` is (n, K) species ids, best first; ``k`` defaults to K. NaN when there
    are no rows.
    """
    hit = hits(predicted, labels, k)
    if len(hit) == 0:
        return float("nan")
    return float(1.0 - hit.mean())


def macro_top_k_error(predicted: np.ndarray, labels: np.ndarray, k: int | None = None) -> float:
    """Class-averaged top-k error: the error of each species present in ``labels``,
    averaged with equal weight per species (rare species count as much as common ones)."""
    hit = hits(predicted, labels, k)
    if len(hit) == 0:
        return float("nan")
    _, species_index = np.unique(np.asarray(labels), return_inverse=True)
    per_species_hits = np.bincount(species_index, weights=hit.astype(np.float64))
    per_species_count = np.bincount(species_index)
    return float(1.0 - (per_species_hits / per_species_count).mean())


def expected_top_k_error(probabilities: np.ndarray, predicted: np.ndarray) -> float:
    """Expected top-k error of sets ``predicted`` when labels follow ``probabilities``.

    ``probabilities`` is (n, S) with column j = species j. With ``predicted`` the k most
    probable ids per row this is the Bayes-optimal error.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    covered = np.take_along_axis(probabilities, np.asarray(predicted), axis=1).sum(axis=1)
    return float(1.0 - covered.mean())


def grouped_top_k_error(
    predicted: np.ndarray,
    labels: np.ndarray,
    group_of_observation: np.ndarray,
    groups: Iterable[str],
    k: int = KAGGLE_K,
) -> dict[str, dict[str, float | int]]:
    """Top-k and macro top-k error of the observations of each group (e.g. the frequency
    bucket of their true species); a group without observations gets NaN errors."""
    group_of_observation = np.asarray(group_of_observation)
    labels = np.asarray(labels)
    result: dict[str, dict[str, float | int]] = {}
    for group in groups:
        rows = group_of_observation == group
        result[group] = {
            "n_observations": int(rows.sum()),
            "n_species": int(len(np.unique(labels[rows]))),
            top_k_name(k): top_k_error(predicted[rows], labels[rows], k),
            macro_top_k_name(k): macro_top_k_error(predicted[rows], labels[rows], k),
        }
    return result


def evaluate_sets(
    predicted: np.ndarray,
    labels: np.ndarray,
    bucket_of_observation: np.ndarray | None = None,
    buckets: Iterable[str] = (),
) -> dict:
    """Every metric of :data:`SET_METRICS` of predicted sets (n, K) against true labels
    (those reading more than K ids per row left out).

    Returns ``{"n_observations", <metric name>: value..., "buckets": {bucket: {...}}}``.
    """
    predicted = np.asarray(predicted)
    check_distinct(predicted)
    metrics: dict = {"n_observations": int(len(labels))}
    for metric in SET_METRICS:
        if metric.k <= predicted.shape[1]:
            metrics[metric.name] = metric.function(predicted, labels)
    if bucket_of_observation is not None:
        metrics["buckets"] = grouped_top_k_error(
            predicted, labels, bucket_of_observation, buckets, KAGGLE_K
        )
    return metrics


def top_k_f1(predicted: np.ndarray, truth: Sequence[np.ndarray], k: int | None = None) -> float:
    """Samples-averaged F1 of sets: per row, ``2 |P & T| / (|P| + |T|)`` with P the first
    ``k`` ids of its row of ``predicted`` (n, K) (default all; -1 pads a row of fewer) and
    T its true set ``truth[i]`` (the ids present), averaged over rows; a row with neither
    predicted nor true species scores 1. NaN when there are no rows.

    Ids are any non-negative integers (species ids, or the output columns they are
    mapped to, the same in both). The minimal F1 that training logs per epoch; the
    evaluation's F1 and expected F1 are ``geolifeclef.predictions.f1``'s."""
    predicted = np.asarray(predicted, dtype=np.int64)
    n = len(predicted)
    if predicted.ndim != 2 or len(truth) != n:
        raise ValueError(f"predicted {predicted.shape} and {len(truth)} true sets do not match")
    if n == 0:
        return float("nan")
    predicted = predicted[:, : predicted.shape[1] if k is None else k]
    true_sizes = np.fromiter((len(t) for t in truth), dtype=np.int64, count=n)
    true_ids = np.concatenate([np.asarray(t, dtype=np.int64) for t in truth])
    width = int(max(predicted.max(initial=0), true_ids.max(initial=0))) + 1
    rows = np.repeat(np.arange(n), predicted.shape[1])
    chosen = predicted.ravel() >= 0
    predicted_keys = rows[chosen] * width + predicted.ravel()[chosen]
    true_keys = np.repeat(np.arange(n), true_sizes) * width + true_ids
    hit = np.isin(predicted_keys, true_keys)
    true_positives = np.bincount(rows[chosen][hit], minlength=n)
    sizes = np.bincount(rows[chosen], minlength=n) + true_sizes
    f1 = np.divide(2.0 * true_positives, sizes, out=np.ones(n, dtype=np.float64), where=sizes > 0)
    return float(f1.mean())


def gap_closed(model_error: float, constant_error: float, bayes_error: float) -> float:
    """Share of the gap between the constant predictor and the Bayes limit that a model
    closes: 0 = no better than constant, 1 = Bayes-optimal (NaN without a gap)."""
    gap = constant_error - bayes_error
    if not np.isfinite(gap) or gap <= 0:
        return float("nan")
    return float((constant_error - model_error) / gap)


# --------------------------------------------------------------------------------------
# The registry: one entry per reported figure
# --------------------------------------------------------------------------------------


def top_k_name(k: int) -> str:
    """``top30_error``: the name of the top-k error in metrics.json and the leaderboard."""
    return f"top{k}_error"


def macro_top_k_name(k: int) -> str:
    return f"macro_{top_k_name(k)}"


def bucket_name(bucket: str) -> str:
    """``tail_top30_error``: the top-30 error on the observations of a bucket's species."""
    return f"{bucket}_{KAGGLE_ERROR}"


def top_k_f1_name(k: int) -> str:
    """``top25_f1``: the F1 of the top-k sets of a multi-label task (apart from the top-k
    errors' names: a run of either task never shows the other's figure)."""
    return f"top{k}_f1"


def val_name(name: str) -> str:
    """``val_top30_error``: the MLflow name of a figure on val (train and evaluate runs)."""
    return f"val_{name}"


KAGGLE_ERROR = top_k_name(KAGGLE_K)
"""``top30_error``, the Kaggle metric, by which models are ranked."""
LOWER, HIGHER = "lower", "higher"
"""Directions: which way a figure is better."""


def _top_level(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda record: record.get(name)


@dataclass(frozen=True)
class Metric:
    """One reported figure.

    ``name``: its key in metrics.json, leaderboard column and (after ``val_``) MLflow
    name; ``function``: (predicted sets (n, K) best first, labels (n,)) -> value, for a
    figure of predicted sets, or None for one that evaluation derives from others
    (``geolifeclef.evaluation.scores`` says how); ``k``: ids per row the function reads;
    ``read``: its value in a model's metrics.json (default: the top-level ``name``).
    """

    name: str
    header: str
    direction: str
    tooltip: str
    function: Callable[[np.ndarray, np.ndarray], float] | None = None
    k: int = 0
    read: Callable[[Mapping[str, Any]], Any] | None = None

    def __post_init__(self) -> None:
        if self.direction not in (LOWER, HIGHER):
            raise ValueError(f"metric {self.name}: direction must be {LOWER!r} or {HIGHER!r}")

    @property
    def arrow(self) -> str:
        """``↓`` when lower is better, ``↑`` when higher is."""
        return "↓" if self.direction == LOWER else "↑"

    def value_in(self, record: Mapping[str, Any]) -> Any:
        """This figure in a model's metrics.json (None when it has none)."""
        return (self.read or _top_level(self.name))(record)


def _top_k_metric(k: int, header: str = "", tooltip: str = "") -> Metric:
    header = header or f"top-{k}"
    return Metric(top_k_name(k), header, LOWER, tooltip, partial(top_k_error, k=k), k)


TOP30 = _top_k_metric(
    KAGGLE_K,
    "top-30 error",
    "the Kaggle metric: share of val observations whose species is not among the 30 predicted",
)
MACRO_TOP30 = Metric(
    macro_top_k_name(KAGGLE_K),
    "macro top-30",
    LOWER,
    "top-30 error averaged over species",
    partial(macro_top_k_error, k=KAGGLE_K),
    KAGGLE_K,
)
SET_METRICS = (
    TOP30,
    MACRO_TOP30,
    *(_top_k_metric(k) for k in REPORTED_KS if k != KAGGLE_K),
)
"""The figures of predicted sets, computed by :func:`evaluate_sets` for every model and
reference predictor."""
EPOCH_METRICS = tuple(
    sorted((m for m in SET_METRICS if m.name == top_k_name(m.k)), key=lambda m: m.k)
)
"""The top-k errors a training job logs per epoch on val (early stopping goes by top-30)."""
TOP25_F1 = Metric(
    top_k_f1_name(SET_K),
    "top-25 F1",
    HIGHER,
    "samples-averaged F1 of the 25 most probable species of each val survey (the "
    "organizers' fixed-size sets)",
    partial(top_k_f1, k=SET_K),
    SET_K,
)
BCE = Metric(
    "bce",
    "BCE",
    LOWER,
    "binary cross-entropy of the predicted presence probabilities, averaged over the val "
    "surveys and the species (unweighted)",
)
MULTI_LABEL_EPOCH_METRICS = (TOP25_F1, BCE)
"""The figures a training job of a multi-label task logs per epoch on val (early stopping
goes by the top-25 F1: the first); BCE, of probabilities and not of sets, is computed by
the training loop."""
BUCKET_METRICS = tuple(
    Metric(
        bucket_name(b),
        f"{b} top-30",
        LOWER,
        f"top-30 error on the val observations of the {b} species",
        read=lambda record, b=b: record.get("buckets", {}).get(b, {}).get(KAGGLE_ERROR),
    )
    for b in BUCKETS
)
"""Top-30 error per frequency bucket of the true species (metrics.json ``buckets``)."""
INTERVAL_LOW = Metric(
    f"{KAGGLE_ERROR}_low",
    "CI low",
    LOWER,
    "lower end of the confidence interval of the top-30 error (spatial block bootstrap of val)",
)
INTERVAL_HIGH = Metric(
    f"{KAGGLE_ERROR}_high",
    "CI high",
    LOWER,
    "upper end of the confidence interval of the top-30 error (spatial block bootstrap of val)",
)
DIFFERENCE = Metric(
    "difference_to_best",
    "Δ best",
    LOWER,
    "top-30 error minus the best model's, on the same val observations",
)
DIFFERENCE_LOW = Metric(
    "difference_to_best_low",
    "Δ CI low",
    LOWER,
    "lower end of the interval of the difference to the best model (the same resampled "
    "blocks for both): above 0, the best model is better beyond the noise",
)
DIFFERENCE_HIGH = Metric(
    "difference_to_best_high",
    "Δ CI high",
    LOWER,
    "upper end of the interval of the difference to the best model",
)
IMPROVEMENT = Metric(
    "improvement_over_constant",
    "gain over constant",
    HIGHER,
    "constant's top-30 error minus the model's",
)
GAP_CLOSED = Metric(
    "gap_closed", "gap closed", HIGHER, "share of the constant-to-Bayes gap closed (demo only)"
)
EXPECTED_TOP30 = Metric(
    f"expected_{KAGGLE_ERROR}",
    "expected top-30",
    LOWER,
    "expected error under the demo's true probabilities, free of label noise",
    read=lambda record: record.get(f"expected_{KAGGLE_ERROR}", {}).get("model"),
)
METRICS = (
    TOP30,
    INTERVAL_LOW,
    INTERVAL_HIGH,
    DIFFERENCE,
    DIFFERENCE_LOW,
    DIFFERENCE_HIGH,
    MACRO_TOP30,
    *BUCKET_METRICS,
    *(m for m in SET_METRICS if m not in (TOP30, MACRO_TOP30)),
    IMPROVEMENT,
    GAP_CLOSED,
    EXPECTED_TOP30,
)
"""Every reported figure, in the leaderboard's order of columns."""


# --------------------------------------------------------------------------------------
# The survey editions (GLC 2024 on): species sets scored by samples-averaged F1
# (geolifeclef.predictions.f1, geolifeclef.evaluation.set_scores)
# --------------------------------------------------------------------------------------


def _expected_f1(record: Mapping[str, Any]) -> float | None:
    return record.get("expected_f1", {}).get("model")


SET_TASK_METRICS = (
    Metric("f1", "F1", HIGHER, "samples-averaged F1 of the val sets: the Kaggle metric"),
    Metric("f1_low", "CI low", HIGHER, "lower end of the F1's interval (block bootstrap)"),
    Metric("f1_high", "CI high", HIGHER, "upper end of the F1's interval"),
    Metric(
        "difference_to_best",
        "Δ best",
        HIGHER,
        "F1 minus the best model's, on the same val surveys",
    ),
    Metric(
        "difference_to_best_low",
        "Δ CI low",
        HIGHER,
        "lower end of the difference's interval (the same resampled blocks)",
    ),
    Metric(
        "difference_to_best_high",
        "Δ CI high",
        HIGHER,
        "upper end of the difference's interval: below 0, the best model is better beyond "
        "the noise",
    ),
    Metric("precision", "precision", HIGHER, "mean share of a predicted set that is present"),
    Metric("recall", "recall", HIGHER, "mean share of a survey's species that are predicted"),
    Metric("predicted_size", "set size", HIGHER, "mean number of species predicted"),
    Metric("true_size", "true size", HIGHER, "mean number of species present"),
    Metric(
        "improvement_over_constant",
        "gain over constant",
        HIGHER,
        "F1 minus the constant's",
    ),
    Metric(
        "gap_closed",
        "gap closed",
        HIGHER,
        "share of the constant-to-Bayes gap in expected F1 closed (demo only)",
    ),
    Metric(
        "expected_f1",
        "expected F1",
        HIGHER,
        "F1 expected under the demo's true presence probabilities (demo only)",
        read=_expected_f1,
    ),
)
"""The figures of the survey editions' leaderboard, in its order of columns."""


def figures(record: Mapping[str, Any]) -> dict[str, Any]:
    """Every figure of :data:`METRICS` in one model's metrics.json (None where absent)."""
    return {metric.name: metric.value_in(record) for metric in METRICS}


def ranking_error(record: Mapping[str, Any]) -> float:
    """What ranks a model in its metrics.json, lower is better, whatever the edition: its
    val top-30 error (GLC 2022), or 1 - its val F1 (a survey edition)."""
    if KAGGLE_ERROR in record:
        return float(record[KAGGLE_ERROR])
    return 1.0 - float(record["f1"])
