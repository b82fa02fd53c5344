"""Predictions: the one format in which every model hands over its output.

Baselines, blends and the PyTorch models all write, per model and split,
``results/predictions/{model}/{split}.parquet`` with one row per observation of the split:

=================  ===============  ==========================================================
column             Arrow type       meaning
=================  ===============  ==========================================================
``observation_id`` ``int64``        every observation of the split exactly once
``species_ids``    ``list<int32>``  the K best species, best first, K distinct ids; the same
                                    K on every row, K >= 30 (config ``predictions.top_k``)
``scores``         ``list<float32>`` the model's probability of each of these species, same
                                    order: non-increasing, in [0, 1], summing to <= 1 (a
                                    multi-label task's: marginal, no bound on the sum)
=================  ===============  ==========================================================

Row order is free (readers sort by ``observation_id``). The first 30 ids of a row are its
Kaggle submission; ``scores`` must be probabilities (e.g. a softmax), because blends average
them across models, counting an id outside a model's K as probability 0. Ties between equal
scores are ordered by the smaller species id (see :func:`geolifeclef.predictions.metrics.top_k`).

In a multi-label task (GLC 2024 on: the set of species present in each survey) ``scores``
are each candidate's MARGINAL presence probability (e.g. a sigmoid per species): each in
[0, 1] and non-increasing, but a row may sum to more than 1 (its sum is the expected number
of species present). Writers and readers of such tables pass ``marginal=True`` to the
checks (:func:`check_predictions`).

How to write it, from what a model has:

* arrays of the top K already: ``write_predictions(path, Predictions(ids, species, scores))``;
* a score matrix (observations x species) in memory or as a ``np.memmap``:
  ``write_predictions(path, predictions_from_scores(ids, matrix, k))`` (processed by chunks);
* batches, as a PyTorch loop yields them::

      with PredictionWriter(path, k=100) as writer:
          for ids, probabilities in batches:            # (b,), (b, n_species) numpy
              writer.add_scores(ids, probabilities)     # column j = species j

Every writer validates the table (:func:`check_predictions`) and writes atomically: a table
that breaks the format is refused with the row and the fix, and nothing is left behind.
"""

import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import MAX_LISTED, InputDataError
from geolifeclef.predictions.metrics import (
    KAGGLE_K,
    SCORE_CHUNK_ROWS,
    top_k,
    top_k_chunked,
    top_k_of_candidates,
)

log = logging.getLogger(__name__)

PREDICTION_SCHEMA = pa.schema(
    [
        ("observation_id", pa.int64()),
        ("species_ids", pa.list_(pa.int32())),
        ("scores", pa.list_(pa.float32())),
    ]
)
MIN_K = KAGGLE_K
"""Fewest species per row: a Kaggle submission needs 30."""
PROBABILITY_TOLERANCE = 1e-3
"""Slack on [0, 1] and on the row sum, for float32 rounding of a softmax."""
FIX = "write predictions with geolifeclef.predictions.table (see its docstring for the format)"


@dataclass(frozen=True)
class Predictions:
    """The top-K species of each observation: ids (n,) int64, species_ids and scores (n, K)."""

    observation_id: np.ndarray
    species_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        observation_id = np.asarray(self.observation_id, dtype=np.int64)
        species_ids = np.asarray(self.species_ids)
        scores = np.asarray(self.scores, dtype=np.float32)
        if species_ids.ndim != 2 or scores.shape != species_ids.shape:
            raise ValueError(
                f"species_ids {species_ids.shape} and scores {scores.shape} must be the same (n, K)"
            )
        if observation_id.shape != (len(species_ids),):
            raise ValueError(f"{len(observation_id)} observation ids for {len(species_ids)} rows")
        if species_ids.size and (species_ids.min() < 0 or species_ids.max() > 2**31 - 1):
            raise ValueError("species ids must be non-negative int32 values")
        object.__setattr__(self, "observation_id", observation_id)
        object.__setattr__(self, "species_ids", species_ids.astype(np.int32))
        object.__setattr__(self, "scores", scores)

    @property
    def k(self) -> int:
        return int(self.species_ids.shape[1])

    def __len__(self) -> int:
        return len(self.observation_id)

    def take(self, rows: np.ndarray) -> "Predictions":
        return Predictions(self.observation_id[rows], self.species_ids[rows], self.scores[rows])

    def sorted(self) -> "Predictions":
        """Rows in increasing observation id."""
        return self.take(np.argsort(self.observation_id, kind="stable"))

    def aligned_to(self, observation_ids: np.ndarray, source: str | Path = "predictions"):
        """Rows in the order of ``observation_ids``; InputDataError if one is missing."""
        observation_ids = np.asarray(observation_ids, dtype=np.int64)
        order = np.argsort(self.observation_id, kind="stable")
        position = np.searchsorted(self.observation_id, observation_ids, sorter=order)
        position = np.minimum(position, len(order) - 1)
        if len(order):
            missing = observation_ids[self.observation_id[order[position]] != observation_ids]
        else:
            missing = observation_ids
        if len(missing):
            raise InputDataError(
                source,
                f"no prediction for {len(missing)} observation(s), "
                f"e.g. {missing[:MAX_LISTED].tolist()}",
                "predict every observation of the split (rerun the model's rule)",
            )
        return self.take(order[position])


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _fail(source: str | Path, problem: str, fix: str = FIX) -> None:
    raise InputDataError(source, problem, fix)


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_predictions(
    predictions: Predictions,
    source: str | Path = "predictions",
    *,
    min_k: int = MIN_K,
    known_species: np.ndarray | None = None,
    expected_ids: np.ndarray | None = None,
    marginal: bool = False,
) -> None:
    """Raise InputDataError (naming ``source``, the row and the fix) unless ``predictions``
    follows the format: K >= ``min_k``, distinct known species per row, probabilities best
    first, unique observation ids (exactly ``expected_ids`` when given). ``marginal``: the
    scores are a multi-label task's marginal presence probabilities, each in [0, 1] but
    with no bound on a row's sum."""
    p = predictions
    if p.k < min_k:
        _fail(source, f"{p.k} species per row, at least {min_k} are needed")
    ids, order = p.observation_id, np.argsort(p.observation_id, kind="stable")
    repeated = ids[order][1:][ids[order][1:] == ids[order][:-1]]
    if len(repeated):
        _fail(source, f"observation_id {repeated[0]} has several rows", "keep one row per id")
    ordered = np.sort(p.species_ids, axis=1)
    duplicate = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if duplicate.any():
        row = _first_row(duplicate)
        _fail(source, f"row {row} (observation_id {ids[row]}) repeats a species id")
    if known_species is not None:
        unknown = ~np.isin(p.species_ids, known_species)
        if unknown.any():
            row = _first_row(unknown.any(axis=1))
            species = p.species_ids[row][unknown[row]][0]
            _fail(
                source,
                f"row {row} (observation_id {ids[row]}) predicts species {species}, "
                "which is not in metadata/species_details.csv",
                "predict only listed species ids",
            )
    scores = p.scores
    bad = ~np.isfinite(scores) | (scores < -PROBABILITY_TOLERANCE)
    bad |= scores > 1 + PROBABILITY_TOLERANCE
    if bad.any():
        row = _first_row(bad.any(axis=1))
        _fail(
            source,
            f"row {row} (observation_id {ids[row]}) has a score outside [0, 1] "
            f"({scores[row][bad[row]][0]})",
            "scores are presence probabilities: apply a sigmoid before writing"
            if marginal
            else "scores are probabilities: apply a softmax (or normalise) before writing",
        )
    if p.k > 1 and (np.diff(scores, axis=1) > 0).any():
        row = _first_row((np.diff(scores, axis=1) > 0).any(axis=1))
        _fail(source, f"row {row} (observation_id {ids[row]}) is not sorted best first")
    too_much = scores.astype(np.float64).sum(axis=1) > 1 + PROBABILITY_TOLERANCE
    if too_much.any() and not marginal:  # marginal: the sum is the expected richness
        row = _first_row(too_much)
        _fail(
            source,
            f"row {row} (observation_id {ids[row]}): scores sum to {scores[row].sum():.4f} > 1",
            "scores are probabilities of one species among all: normalise each row",
        )
    if expected_ids is not None:
        expected_ids = np.asarray(expected_ids, dtype=np.int64)
        missing = np.setdiff1d(expected_ids, ids)
        extra = np.setdiff1d(ids, expected_ids)
        if len(missing):
            _fail(
                source,
                f"{len(missing)} observation(s) of the split have no row, e.g. "
                f"{missing[:MAX_LISTED].tolist()}",
                "predict every observation of the split",
            )
        if len(extra):
            _fail(
                source,
                f"{len(extra)} row(s) are for observations not in the split, e.g. "
                f"{extra[:MAX_LISTED].tolist()}",
                "predict the observations of results/observations/<split>.parquet only",
            )


# --------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------


def to_table(predictions: Predictions) -> pa.Table:
    n, k = predictions.species_ids.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.Table.from_arrays(
        [
            pa.array(predictions.observation_id, type=pa.int64()),
            pa.ListArray.from_arrays(offsets, pa.array(predictions.species_ids.ravel())),
            pa.ListArray.from_arrays(offsets, pa.array(predictions.scores.ravel())),
        ],
        schema=PREDICTION_SCHEMA,
    )


def write_predictions(path: str | Path, predictions: Predictions, **checks) -> None:
    """Validate (``checks`` as :func:`check_predictions`) and write atomically."""
    check_predictions(predictions, path, **checks)
    with atomic_path(path) as temporary:
        pq.write_table(to_table(predictions), temporary)
    log.info("%d observations x %d species -> %s", len(predictions), predictions.k, path)


def write_split_predictions(
    outputs: dict[str, str | Path],
    predictions: dict[str, Predictions],
    observations: dict[str, np.ndarray],
    known_species: np.ndarray,
    marginal: bool = False,
) -> None:
    """Write each split's predictions to its output, checked to cover exactly the split's
    observation ids with listed species (what every model's rule does)."""
    for split, path in outputs.items():
        write_predictions(
            path,
            predictions[split],
            known_species=known_species,
            expected_ids=observations[split],
            marginal=marginal,
        )


def _list_column(table: pa.Table, name: str, value_type: pa.DataType, path: Path) -> np.ndarray:
    column = table.column(name).combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        _fail(path, f"column {name} is {column.type}, not a list")
    if column.null_count:
        _fail(path, f"column {name} is null in row {_first_row(column.is_null().to_numpy())}")
    lengths = pc.list_value_length(column).to_numpy()
    if len(lengths) and (lengths != lengths[0]).any():
        row = _first_row(lengths != lengths[0])
        _fail(path, f"row {row} has {lengths[row]} {name}, row 0 has {lengths[0]}")
    values = column.flatten()
    if values.null_count:
        _fail(path, f"column {name} holds a null value")
    try:
        values = values.cast(value_type)  # checked: an id that does not fit int32 fails
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        _fail(path, f"column {name} cannot be read as {value_type}: {error}")
    k = int(lengths[0]) if len(lengths) else 0
    return values.to_numpy(zero_copy_only=False).reshape(len(column), k)


def read_predictions(path: str | Path, **checks) -> Predictions:
    """Read and validate a predictions table (``checks`` as :func:`check_predictions`);
    rows sorted by observation id."""
    path = Path(path)
    if not path.exists():
        _fail(path, "file is missing", "run the rule that predicts this model and split")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        _fail(path, f"not a readable Parquet file ({error})", "delete it and rerun its rule")
    missing = [c for c in PREDICTION_SCHEMA.names if c not in table.column_names]
    if missing:
        _fail(path, f"missing column(s) {missing} (columns: {table.column_names})")
    observation_id = table.column("observation_id").combine_chunks()
    if not pa.types.is_integer(observation_id.type) or observation_id.null_count:
        _fail(path, f"observation_id must be non-null integers, not {observation_id.type}")
    try:
        predictions = Predictions(
            observation_id.to_numpy(zero_copy_only=False).astype(np.int64),
            _list_column(table, "species_ids", pa.int32(), path),
            _list_column(table, "scores", pa.float32(), path),
        )
    except ValueError as error:
        _fail(path, str(error))
    check_predictions(predictions, path, **checks)
    return predictions.sorted()


def table_k(top_k: int, n_species: int) -> int:
    """K of the tables a model writes: ``top_k`` (config ``predictions.top_k``), or the
    number of species when there are fewer (the tiny demo has 60)."""
    if top_k > n_species:
        log.info("predictions.top_k=%d but only %d species: K=%d", top_k, n_species, n_species)
    return min(top_k, n_species)


def predictions_from_scores(
    observation_ids: np.ndarray,
    scores: np.ndarray,
    k: int,
    species_ids: np.ndarray | None = None,
    chunk_rows: int = SCORE_CHUNK_ROWS,
) -> Predictions:
    """Top-``k`` predictions from a score matrix (column j = species ``species_ids[j]``,
    default j), processed ``chunk_rows`` rows at a time (a ``np.memmap`` works)."""
    ids, best = top_k_chunked(scores, k, species_ids, chunk_rows, progress=len(scores) > 10_000)
    return Predictions(observation_ids, ids, best)


class PredictionWriter:
    """Stream predictions to ``path`` batch by batch; validated (``checks`` as
    :func:`check_predictions`, e.g. ``marginal=True``) and renamed into place on a clean
    exit of the ``with`` block, discarded on an exception."""

    def __init__(
        self, path: str | Path, k: int, species_ids: np.ndarray | None = None, **checks
    ) -> None:
        self.path = Path(path)
        self.k = k
        self.species_ids = species_ids
        self.checks = checks
        self._stack = contextlib.ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self.n_rows = 0

    def __enter__(self) -> "PredictionWriter":
        self._temporary = self._stack.enter_context(atomic_path(self.path))
        self._writer = pq.ParquetWriter(self._temporary, PREDICTION_SCHEMA)
        return self

    def add_scores(self, observation_ids: np.ndarray, scores: np.ndarray) -> None:
        """Add a batch from its score matrix (b, n_species) (the top k are kept)."""
        ids, best = top_k(scores, self.k, self.species_ids)
        self.add(Predictions(observation_ids, ids, best))

    def add(self, predictions: Predictions) -> None:
        """Add a batch already reduced to its top k."""
        if predictions.k != self.k:
            raise ValueError(f"batch has {predictions.k} species per row, the writer {self.k}")
        assert self._writer is not None, "use PredictionWriter in a with block"
        self._writer.write_table(to_table(predictions))
        self.n_rows += len(predictions)

    def __exit__(self, kind, value, traceback) -> bool:
        assert self._writer is not None
        self._writer.close()
        if kind is None:
            # Validate the whole file (ids unique across batches) before it takes its name.
            try:
                read_predictions(self._temporary, **self.checks)
            except InputDataError as error:
                failure = InputDataError(self.path, error.problem, error.fix)
                with contextlib.suppress(InputDataError):
                    self._stack.__exit__(InputDataError, failure, None)  # drops the file
                raise failure from None
            log.info("%d observations x %d species -> %s", self.n_rows, self.k, self.path)
        return bool(self._stack.__exit__(kind, value, traceback))


# --------------------------------------------------------------------------------------
# Blending
# --------------------------------------------------------------------------------------


def blend_k(top_k: int, member_ks: Iterable[int]) -> int:
    """The K of a blend: ``top_k``, at most the largest K of its (weighted) members."""
    return min(top_k, max(member_ks))


def blend(models: Sequence[Predictions], weights: Sequence[float], k: int) -> Predictions:
    """Weighted average of several models' probabilities, over their top-K tables.

    A species outside a model's K counts as probability 0 for that model. Weights are
    normalised to sum to 1, so the blend's scores are probabilities again. Every model must
    cover the same observations; ``k`` up to the largest model K always works.
    """
    if len(models) != len(weights) or not models:
        raise ValueError(f"{len(models)} models for {len(weights)} weights")
    weights_array = np.asarray(weights, dtype=np.float64)
    if (weights_array <= 0).any() or not np.isfinite(weights_array).all():
        raise ValueError(f"blend weights must be positive, got {list(weights)}")
    weights_array /= weights_array.sum()
    reference = models[0].sorted()
    for model in models[1:]:
        if len(model) != len(reference) or not np.array_equal(
            np.sort(model.observation_id), reference.observation_id
        ):
            raise ValueError("the blended models do not predict the same observations")
    aligned = [reference] + [m.aligned_to(reference.observation_id) for m in models[1:]]
    n = len(reference)
    species = np.concatenate([m.species_ids.astype(np.int64) for m in aligned], axis=1).ravel()
    scores = np.concatenate(
        [w * m.scores.astype(np.float64) for w, m in zip(weights_array, aligned, strict=True)],
        axis=1,
    ).ravel()
    rows = np.repeat(np.arange(n), sum(m.k for m in aligned))
    # Sum the weighted probabilities of each (row, species) pair (one int64 key sorts
    # several times faster than a two-key lexsort).
    order = np.argsort(rows * (int(species.max(initial=0)) + 1) + species, kind="stable")
    rows, species, scores = rows[order], species[order], scores[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (species[1:] != species[:-1])
    starts = np.flatnonzero(first)
    summed = np.add.reduceat(scores, starts) if len(starts) else scores
    ids, best = top_k_of_candidates(rows[starts], species[starts], summed, n, k)
    return Predictions(reference.observation_id, ids, best.astype(np.float32))
