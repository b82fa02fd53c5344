"""The Kaggle submission: exact format, every malformed case refused, final selection."""

import numpy as np
import pandas as pd
import pytest

from geolifeclef.evaluation.scores import best_model
from geolifeclef.evaluation.submission import (
    HEADER,
    SubmissionError,
    check_submission,
    format_submission,
    main,
    select_submission,
    write_submission,
)
from geolifeclef.predictions.table import Predictions

TEST_IDS = np.array([10000003, 10000001, 20000002])
KNOWN = np.arange(100)


def _predictions(k: int = 40) -> Predictions:
    rng = np.random.default_rng(0)
    species = np.stack([rng.permutation(100)[:k] for _ in TEST_IDS])
    scores = np.sort(rng.random((len(TEST_IDS), k)), axis=1)[:, ::-1] / k
    return Predictions(TEST_IDS, species, scores)


@pytest.fixture
def text() -> str:
    return format_submission(_predictions())


def test_format_is_kaggles(text):
    lines = text.splitlines()
    assert lines[0] == "Id,Predicted"
    assert [line.split(",")[0] for line in lines[1:]] == ["10000001", "10000003", "20000002"]
    first = _predictions().sorted().species_ids[0][:30].tolist()
    assert lines[1] == "10000001," + " ".join(map(str, first))
    assert text.endswith("\n") and "\r" not in text
    check_submission(text, "s.csv", TEST_IDS, KNOWN)


def _replace_line(text: str, number: int, new: str | None) -> str:
    lines = text.split("\n")
    if new is None:
        del lines[number - 1]
    else:
        lines[number - 1] = new
    return "\n".join(lines)


def _row(text: str, number: int) -> tuple[str, list[str]]:
    observation, predicted = text.split("\n")[number - 1].split(",")
    return observation, predicted.split(" ")


def _species(text, number, change):
    observation, species = _row(text, number)
    return _replace_line(text, number, f"{observation},{' '.join(change(species))}")


MALFORMED = {
    "missing id": (
        lambda t: _replace_line(t, 3, None),
        "1 test observation\\(s\\) have no row",
        None,
    ),
    "duplicate id": (
        lambda t: _replace_line(t, 3, t.split("\n")[1]),
        "Id 10000001 repeats line 2",
        3,
    ),
    "29 ids": (lambda t: _species(t, 2, lambda s: s[:29]), "29 predicted ids", 2),
    "31 ids": (lambda t: _species(t, 2, lambda s: [*s, "99"]), "31 predicted ids", 2),
    "duplicate species": (
        lambda t: _species(t, 3, lambda s: [*s[:29], s[0]]),
        "predicted twice",
        3,
    ),
    "unknown species": (
        lambda t: _species(t, 4, lambda s: [*s[:29], "100"]),
        "species 100 not in",
        4,
    ),
    "bad header": (lambda t: _replace_line(t, 1, "id,predicted"), "header is 'id,predicted'", 1),
    "semicolon header": (lambda t: _replace_line(t, 1, "Id;Predicted"), "header", 1),
    "unknown id": (
        lambda t: _replace_line(t, 2, "10000009," + " ".join(map(str, range(30)))),
        "not a test observation",
        2,
    ),
    "not an integer": (lambda t: _species(t, 2, lambda s: [*s[:29], "1.0"]), "'1.0' is not", 2),
    "double space": (lambda t: _species(t, 2, lambda s: [*s[:29], "", s[29]]), "31 predicted", 2),
    "extra field": (lambda t: _replace_line(t, 2, t.split("\n")[1] + ",x"), "3 comma", 2),
    "empty": (lambda t: "", "file is empty", 1),
    "byte-order mark": (lambda t: "\ufeff" + t, "byte-order mark", 1),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_each_malformed_file_is_refused(text, case):
    mutate, message, line = MALFORMED[case]
    with pytest.raises(SubmissionError, match=message) as error:
        check_submission(mutate(text), "s.csv", TEST_IDS, KNOWN)
    assert error.value.line == line
    assert str(error.value).startswith("s.csv")


def test_nothing_is_written_when_the_check_fails(tmp_path):
    predictions = _predictions()
    predictions.species_ids[1, 3] = 100  # not a listed species
    with pytest.raises(SubmissionError, match="species 100"):
        write_submission(tmp_path / "s.csv", predictions, TEST_IDS, KNOWN)
    with pytest.raises(SubmissionError, match="have no row"):
        write_submission(tmp_path / "s.csv", _predictions(), np.append(TEST_IDS, 1), KNOWN)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="Kaggle needs 30"):
        format_submission(Predictions(TEST_IDS, np.zeros((3, 20)), np.zeros((3, 20))))


def test_best_model_and_final_selection(tmp_path):
    leaderboard = pd.DataFrame(
        {
            "model": ["knn", "constant", "mix", "bayes_optimal"],
            "kind": ["baseline", "baseline", "blend", "bound"],
            "top30_error": [0.3, 0.8, 0.3, 0.1],
        }
    )
    assert best_model(leaderboard) == "knn"  # the bound is not a model; ties by name
    assert best_model(leaderboard, ["constant", "mix"]) == "mix"
    leaderboard.to_parquet(tmp_path / "leaderboard.parquet")
    paths = {}
    for name in ("knn", "constant"):
        paths[name] = tmp_path / f"{name}.csv"
        write_submission(paths[name], _predictions(), TEST_IDS, KNOWN)
    chosen = select_submission(
        "best",
        ["knn", "constant"],
        paths,
        tmp_path / "leaderboard.parquet",
        TEST_IDS,
        KNOWN,
        tmp_path / "final.csv",
    )
    assert chosen == "knn"
    assert (tmp_path / "final.csv").read_text() == paths["knn"].read_text()
    paths["constant"].write_text(HEADER + "\n")  # a damaged candidate is refused
    with pytest.raises(SubmissionError, match="3 test observation"):
        select_submission("constant", ["constant"], paths, None, TEST_IDS, KNOWN, tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_command_line_check(tmp_path, capsys):
    write_submission(tmp_path / "s.csv", _predictions(), TEST_IDS, KNOWN)
    pd.DataFrame({"observation_id": TEST_IDS}).to_parquet(tmp_path / "test.parquet")
    (tmp_path / "species.csv").write_text(
        "species_id;GBIF_species_id\n" + "".join(f"{i};{i}\n" for i in KNOWN)
    )
    arguments = [str(tmp_path / n) for n in ("s.csv", "test.parquet", "species.csv")]
    assert main(arguments) == 0
    assert "valid" in capsys.readouterr().out
    (tmp_path / "s.csv").write_text("Id,Predicted\n")
    assert main(arguments) == 1
    assert "have no row" in capsys.readouterr().err
