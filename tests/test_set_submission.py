"""A survey edition's submission: written only when Kaggle would take it, read back by the
one reader that also reads solution files, and scored by `geolifeclef score`."""

import subprocess

import numpy as np
import pytest
from conftest import GEOLIFECLEF

from geolifeclef.errors import InputDataError
from geolifeclef.evaluation.set_submission import (
    check_set_submission,
    format_set_submission,
    read_set_file,
    score_files,
    write_set_submission,
)
from geolifeclef.evaluation.submission_file import SubmissionError
from geolifeclef.predictions.set_table import SpeciesSets

TEST_IDS = np.array([5000108, 642, 1621686])
"""In the test metadata's order (not sorted): the submission keeps it."""


def sets() -> SpeciesSets:
    return SpeciesSets.from_lists([642, 1621686, 5000108], [[9, 3], [11254], [0, 7, 2]])


def test_a_submission_follows_the_test_metadata_order_with_ascending_ids(tmp_path):
    path = tmp_path / "final.csv"
    write_set_submission(path, sets(), TEST_IDS)
    assert path.read_text() == "surveyId,predictions\n5000108,0 2 7\n642,3 9\n1621686,11254\n"
    assert list(read_set_file(path)) == TEST_IDS.tolist()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("surveyId,predictions\n642,3 9\n5000108,2\n1621686,1\n", "not in the order"),
        ("surveyId,predictions\n5000108,1\n642,\n1621686,1\n", "predict no species"),
        ("surveyId,predictions\n5000108,1\n642,11255\n1621686,1\n", "are no label ids"),
        ("surveyId,predictions\n5000108,1\n642,4 4\n1621686,1\n", "written twice"),
        ("surveyId,predictions\n5000108,1\n642,1\n", "have no row: 1621686"),
        ("surveyId,predictions\n5000108,1\n642,1\n1621686,1\n7,1\n", "not test surveys: 7"),
        ("surveyId,predictions\n5000108,1\n642,1;2\n1621686,1\n", "not a non-negative integer"),
        ("Id,Predicted\n5000108,1\n", "header is 'Id,Predicted'"),
        ("\ufeffsurveyId,predictions\n", "byte-order mark"),
    ],
)
def test_what_kaggle_would_refuse_is_refused_naming_the_line_and_fix(text, message):
    with pytest.raises(SubmissionError, match=message) as raised:
        check_set_submission(text, "final.csv", TEST_IDS)
    assert "final.csv" in str(raised.value) and "Fix:" in str(raised.value)


def test_nothing_is_written_when_the_check_fails(tmp_path):
    path = tmp_path / "final.csv"
    with pytest.raises(InputDataError, match="no set for 1 survey"):
        write_set_submission(path, sets(), np.array([642, 7, 1621686]))  # 7 has no set
    assert not path.exists()


def test_score_is_the_samples_f1_against_a_solution_file(tmp_path):
    submission, solution = tmp_path / "final.csv", tmp_path / "solution.csv"
    submission.write_text(format_set_submission(sets(), TEST_IDS))
    # 5000108: 2 of 3 right of 4 true -> 2*2/(3+4); 642: 1 of 2, 1 true -> 2/3; 1621686: 0
    solution.write_text("surveyId,predictions\n642,3\n1621686,5\n5000108,0 2 8 9\n")
    expected = np.mean([4 / 7, 2 / 3, 0.0])
    assert score_files(submission, solution)["f1"] == pytest.approx(expected)
    printed = subprocess.run(
        [str(GEOLIFECLEF), "score", str(submission), str(solution)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed.startswith(f"samples F1 {expected:.5f} over 3 surveys")
    solution.write_text("surveyId,predictions\n642,3\n99,1\n")
    failed = subprocess.run(
        [str(GEOLIFECLEF), "score", str(submission), str(solution)], capture_output=True, text=True
    )
    assert failed.returncode == 1 and "have no row: 99" in failed.stderr
