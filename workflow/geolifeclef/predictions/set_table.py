"""Species sets: the one format in which a survey edition's model hands over its answer.

A set task (GLC 2024 on) scores, per survey, a SET of species. Every model's ranked
predictions (``geolifeclef.predictions.table``: its K candidates and their presence
probabilities) become sets by a set rule (``geolifeclef.predictions.set_rules``), written
per model and split as ``results/sets/{model}/{split}.parquet``:

=================  ===============  ==========================================================
column             Arrow type       meaning
=================  ===============  ==========================================================
``observation_id`` ``int64``        every survey of the split exactly once (its surveyId)
``species_ids``    ``list<int32>``  the species predicted present, ascending, distinct, at
                                    least one
=================  ===============  ==========================================================

Rows are in increasing ``observation_id``. The submission, the evaluation and the served
model read these sets; one writer (:func:`write_sets`), one reader (:func:`read_sets`).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geolifeclef.atomic import atomic_path
from geolifeclef.errors import MAX_LISTED, InputDataError

SETS_SCHEMA = pa.schema([("observation_id", pa.int64()), ("species_ids", pa.list_(pa.int32()))])
FIX = "rerun the model's select_sets job"


@dataclass(frozen=True)
class SpeciesSets:
    """Ragged sets: row i's species are ``species[offsets[i]:offsets[i + 1]]``."""

    observation_id: np.ndarray
    offsets: np.ndarray
    species: np.ndarray

    @classmethod
    def from_lists(cls, observation_ids, sets) -> "SpeciesSets":
        """From one sequence of species ids per row (sorted and deduplicated here)."""
        cleaned = [np.unique(np.asarray(s, dtype=np.int64)) for s in sets]
        sizes = np.array([len(s) for s in cleaned], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        species = np.concatenate(cleaned) if cleaned else np.empty(0, np.int64)
        return cls(np.asarray(observation_ids, dtype=np.int64), offsets, species.astype(np.int32))

    @classmethod
    def from_prefixes(cls, observation_ids, ranked_ids: np.ndarray, sizes) -> "SpeciesSets":
        """The first ``sizes[i]`` ids of each row of ``ranked_ids`` (n, K): a set rule's
        answer from a model's ranked candidates."""
        ranked_ids = np.asarray(ranked_ids)
        sizes = np.asarray(sizes, dtype=np.int64)
        keep = np.arange(ranked_ids.shape[1])[None, :] < sizes[:, None]
        return cls.from_lists(
            observation_ids, [row[k] for row, k in zip(ranked_ids, keep, strict=True)]
        )

    def __len__(self) -> int:
        return len(self.observation_id)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def lists(self) -> list[np.ndarray]:
        return [self.species[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]

    def sorted(self) -> "SpeciesSets":
        """Rows in increasing observation id."""
        order = np.argsort(self.observation_id, kind="stable")
        return SpeciesSets.from_lists(self.observation_id[order], [self.lists()[i] for i in order])

    def aligned_to(self, observation_ids: np.ndarray, source: str | Path = "sets") -> "SpeciesSets":
        """Rows in the order of ``observation_ids``; InputDataError if one is missing."""
        observation_ids = np.asarray(observation_ids, dtype=np.int64)
        position = {int(i): row for row, i in enumerate(self.observation_id.tolist())}
        missing = [int(i) for i in observation_ids.tolist() if int(i) not in position]
        if missing:
            raise InputDataError(
                source,
                f"no set for {len(missing)} survey(s), e.g. {missing[:MAX_LISTED]}",
                FIX,
            )
        lists = self.lists()
        return SpeciesSets.from_lists(
            observation_ids, [lists[position[int(i)]] for i in observation_ids.tolist()]
        )


def check_sets(sets: SpeciesSets, source: str | Path, expected_ids: np.ndarray | None = None):
    """Raise InputDataError (source, row, fix) unless every row holds at least one species
    and the rows are exactly ``expected_ids`` (when given), each once."""
    ids = sets.observation_id
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise InputDataError(source, f"survey {unique[counts > 1][0]} has several rows", FIX)
    empty = np.flatnonzero(sets.sizes == 0)
    if len(empty):
        raise InputDataError(
            source, f"row {empty[0]} (survey {ids[empty[0]]}) predicts no species", FIX
        )
    if expected_ids is not None:
        missing = np.setdiff1d(np.asarray(expected_ids, dtype=np.int64), ids)
        extra = np.setdiff1d(ids, expected_ids)
        for found, what in (
            (missing, "survey(s) of the split have no row"),
            (extra, "row(s) are for surveys not in the split"),
        ):
            if len(found):
                raise InputDataError(
                    source, f"{len(found)} {what}, e.g. {found[:MAX_LISTED].tolist()}", FIX
                )


def write_sets(path: str | Path, sets: SpeciesSets, expected_ids: np.ndarray | None = None):
    """Check and write ``sets`` atomically, rows by survey id."""
    check_sets(sets, path, expected_ids)
    ordered = sets.sorted()
    table = pa.Table.from_arrays(
        [
            pa.array(ordered.observation_id, type=pa.int64()),
            pa.ListArray.from_arrays(
                pa.array(ordered.offsets.astype(np.int32)), pa.array(ordered.species, pa.int32())
            ),
        ],
        schema=SETS_SCHEMA,
    )
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def read_sets(path: str | Path, expected_ids: np.ndarray | None = None) -> SpeciesSets:
    """Read and check a sets table (:func:`write_sets`)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(path, "file is missing", FIX)
    table = pq.read_table(path)
    if table.column_names[:2] != SETS_SCHEMA.names:
        raise InputDataError(path, f"columns {table.column_names}, not {SETS_SCHEMA.names}", FIX)
    column = table.column("species_ids").combine_chunks()
    offsets = np.concatenate([[0], np.cumsum(pc.list_value_length(column).to_numpy())])
    sets = SpeciesSets(
        table.column("observation_id").to_numpy().astype(np.int64),
        offsets.astype(np.int64),
        column.flatten().to_numpy().astype(np.int32),
    )
    check_sets(sets, path, expected_ids)
    return sets
