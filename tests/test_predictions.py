"""The predictions format: round trip, streaming writer, every refusal, blending."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geolifeclef.errors import InputDataError
from geolifeclef.predictions.table import (
    Predictions,
    PredictionWriter,
    blend,
    predictions_from_scores,
    read_predictions,
    write_predictions,
)


def _probabilities(n: int, width: int, seed: int = 0) -> np.ndarray:
    scores = np.random.default_rng(seed).random((n, width)).astype(np.float32)
    return scores / scores.sum(axis=1, keepdims=True)


@pytest.fixture
def valid() -> Predictions:
    return predictions_from_scores(np.arange(10, 20), _probabilities(10, 50), k=30)


def test_round_trip_keeps_everything_and_sorts_rows(tmp_path, valid):
    shuffled = valid.take(np.random.default_rng(1).permutation(len(valid)))
    write_predictions(tmp_path / "p.parquet", shuffled, known_species=np.arange(50))
    schema = pq.read_schema(tmp_path / "p.parquet")
    assert str(schema.field("species_ids").type) == "list<element: int32>"
    assert str(schema.field("scores").type) == "list<element: float>"
    back = read_predictions(tmp_path / "p.parquet", expected_ids=np.arange(10, 20))
    assert np.array_equal(back.observation_id, valid.observation_id)
    assert np.array_equal(back.species_ids, valid.species_ids)
    assert np.array_equal(back.scores, valid.scores)


def test_writer_streams_batches_and_equals_the_one_shot_table(tmp_path, valid):
    scores = _probabilities(10, 50)
    with PredictionWriter(tmp_path / "w.parquet", k=30, expected_ids=np.arange(10, 20)) as writer:
        for start in range(0, 10, 3):
            writer.add_scores(np.arange(10, 20)[start : start + 3], scores[start : start + 3])
    back = read_predictions(tmp_path / "w.parquet")
    assert np.array_equal(back.species_ids, valid.species_ids)


def test_writer_leaves_nothing_when_the_table_is_invalid(tmp_path):
    scores = _probabilities(4, 50)
    with pytest.raises(InputDataError, match="observation_id 1 has several rows"):  # noqa: SIM117
        with PredictionWriter(tmp_path / "w.parquet", k=30) as writer:
            writer.add_scores(np.array([0, 1]), scores[:2])
            writer.add_scores(np.array([1, 2]), scores[2:])
    assert list(tmp_path.iterdir()) == []


def _with(p: Predictions, **changes) -> Predictions:
    fields = {"observation_id": p.observation_id, "species_ids": p.species_ids, "scores": p.scores}
    fields = {name: np.array(value, copy=True) for name, value in fields.items()}
    for name, change in changes.items():
        change(fields[name]) if callable(change) else fields.update({name: change})
    return Predictions(**fields)


def _set(index, value):
    def change(array):
        array[index] = value

    return change


@pytest.mark.parametrize(
    ("changes", "checks", "message"),
    [
        ({"species_ids": _set((3, 5), -7)}, {}, "non-negative"),
        ({"species_ids": _set((3, 5), 999)}, {"known_species": np.arange(50)}, "species 999"),
        ({"observation_id": _set(4, 10)}, {}, "observation_id 10 has several rows"),
        ({"scores": _set((2, 0), 1.5)}, {}, "outside \\[0, 1\\]"),
        ({"scores": _set((2, 0), np.nan)}, {}, "outside \\[0, 1\\]"),
        ({"scores": _set((2, 29), 0.9)}, {}, "not sorted best first"),
        ({}, {"expected_ids": np.arange(10, 21)}, "1 observation\\(s\\) of the split have no row"),
        ({}, {"expected_ids": np.arange(11, 20)}, "not in the split"),
        ({}, {"min_k": 31}, "30 species per row, at least 31"),
    ],
)
def test_invalid_tables_are_refused(tmp_path, valid, changes, checks, message):
    if "non-negative" in message:
        with pytest.raises(ValueError, match=message):
            _with(valid, **changes)
        return
    with pytest.raises(InputDataError, match=message) as error:
        write_predictions(tmp_path / "p.parquet", _with(valid, **changes), **checks)
    assert "p.parquet" in str(error.value) and error.value.fix
    assert not (tmp_path / "p.parquet").exists()


def test_repeated_species_in_a_row_is_refused(tmp_path, valid):
    species = valid.species_ids.copy()
    species[6, 10] = species[6, 3]
    with pytest.raises(InputDataError, match="row 6 .* repeats a species"):
        write_predictions(tmp_path / "p.parquet", _with(valid, species_ids=species))


def test_scores_that_sum_above_one_are_refused(tmp_path, valid):
    scores = np.full_like(valid.scores, 0.5)
    with pytest.raises(InputDataError, match="sum to 15"):
        write_predictions(tmp_path / "p.parquet", _with(valid, scores=scores))


def test_files_from_other_writers_are_read_or_refused_with_the_row(tmp_path):
    ids = [list(range(30)), list(range(1, 31))]
    scores = [[1 / 30] * 30] * 2
    table = pa.table(
        {
            "observation_id": pa.array([1, 2], pa.int64()),
            "species_ids": pa.array(ids, pa.list_(pa.int64())),  # int64 is cast
            "scores": pa.array(scores, pa.list_(pa.float64())),
        }
    )
    pq.write_table(table, tmp_path / "ok.parquet")
    assert read_predictions(tmp_path / "ok.parquet").species_ids.dtype == np.int32
    ragged = table.set_column(1, "species_ids", pa.array([ids[0], ids[1][:29]]))
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    with pytest.raises(InputDataError, match="row 1 has 29 species_ids, row 0 has 30"):
        read_predictions(tmp_path / "ragged.parquet")
    negative = table.set_column(1, "species_ids", pa.array([[-1, *ids[0][1:]], ids[1]]))
    pq.write_table(negative, tmp_path / "negative.parquet")
    with pytest.raises(InputDataError, match="negative.parquet: species ids must be non-negative"):
        read_predictions(tmp_path / "negative.parquet")
    pq.write_table(table.drop_columns(["scores"]), tmp_path / "no_scores.parquet")
    with pytest.raises(InputDataError, match="missing column"):
        read_predictions(tmp_path / "no_scores.parquet")


def test_blend_by_hand():
    a = Predictions([7], [[1, 2]], [[0.6, 0.4]])
    b = Predictions([7], [[2, 3]], [[0.5, 0.5]])
    blended = blend([a, b], [1.0, 1.0], k=3)
    assert blended.species_ids.tolist() == [[2, 1, 3]]
    assert blended.scores[0] == pytest.approx([0.45, 0.30, 0.25])
    # Weights are normalised; a species a model did not keep counts as 0 for it.
    blended = blend([a, b], [3.0, 1.0], k=2)
    assert blended.species_ids.tolist() == [[1, 2]]
    assert blended.scores[0] == pytest.approx([0.45, 0.425])


def test_blend_aligns_rows_and_needs_the_same_observations(valid):
    other = predictions_from_scores(np.arange(10, 20), _probabilities(10, 50, seed=2), k=30)
    shuffled = other.take(np.arange(len(other))[::-1])
    assert np.array_equal(
        blend([valid, other], [1, 2], 30).species_ids,
        blend([valid, shuffled], [1, 2], 30).species_ids,
    )
    assert np.array_equal(blend([valid, valid], [1, 5], 30).species_ids, valid.species_ids)
    with pytest.raises(ValueError, match="same observations"):
        blend([valid, valid.take(np.arange(5))], [1, 1], 30)
    with pytest.raises(ValueError, match="positive"):
        blend([valid, other], [1, 0], 30)
