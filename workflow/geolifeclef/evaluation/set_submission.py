"""A survey edition's Kaggle submission (GLC 2024, 2025), its check, and its score.

Format (the organizers' sample submissions; ``GLC24-25-FORMAT.md`` §9)::

    surveyId,predictions
    642,12 4 9051 ... (the species predicted present, separated by single spaces)

One row per test survey in the order of the test metadata, every test survey exactly once,
comma-separated, header ``surveyId,predictions``; the ids of a row are distinct label ids
(0..11,254), written ascending, at least one (the score of an empty set is 0). A solution
file (the demo's ``test_solution.csv``, GeoPlant's published GLC 2024 test labels) has the
same format, so one reader serves both, and the score of any submission against any
solution file is one command::

    geolifeclef score results/submission/final.csv resources/demo/glc24-truth/test_solution.csv
"""

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from geolifeclef.atomic import write_text
from geolifeclef.editions import SPECIES_SETS
from geolifeclef.errors import InputDataError, listed
from geolifeclef.evaluation.submission_file import SubmissionError, submission_rows
from geolifeclef.predictions.f1 import score_sets
from geolifeclef.predictions.set_table import SpeciesSets
from geolifeclef.survey_layout import N_LABEL_SLOTS

HEADER = SPECIES_SETS.submission_header
_INTEGER = re.compile(r"\d+")


def format_set_submission(sets: SpeciesSets, test_ids: np.ndarray) -> str:
    """The submission text of ``sets``, a row per survey in the order of ``test_ids``."""
    ordered = sets.aligned_to(test_ids)
    rows = [
        f"{survey},{' '.join(map(str, species.tolist()))}"
        for survey, species in zip(ordered.observation_id.tolist(), ordered.lists(), strict=True)
    ]
    return "\n".join([HEADER, *rows]) + "\n"


def parse_set_file(text: str, source: str | Path) -> dict[int, np.ndarray]:
    """{surveyId: its species ids, ascending} of a submission or solution file's text, in
    the file's order; SubmissionError (file, line, fix) for anything Kaggle would refuse."""
    rows: dict[int, np.ndarray] = {}
    line_of: dict[int, int] = {}
    lines = submission_rows(
        text, source, HEADER, "<surveyId>,<species ids separated by single spaces>"
    )
    for number, survey, predicted in lines:
        if not _INTEGER.fullmatch(survey):
            raise SubmissionError(source, f"surveyId {survey!r} is not an integer", "", number)
        survey_id = int(survey)
        if survey_id in line_of:
            raise SubmissionError(
                source,
                f"surveyId {survey_id} repeats line {line_of[survey_id]}",
                "one row per test survey",
                number,
            )
        line_of[survey_id] = number
        tokens = predicted.split(" ") if predicted else []
        bad = [t for t in tokens if not _INTEGER.fullmatch(t)]
        if bad:
            raise SubmissionError(
                source,
                f"species id {bad[0]!r} of survey {survey_id} is not a non-negative integer",
                "separate the ids by single spaces",
                number,
            )
        species = [int(t) for t in tokens]
        if len(set(species)) != len(species):
            repeated = sorted({s for s in species if species.count(s) > 1})
            raise SubmissionError(
                source,
                f"species {listed(repeated)} written twice for survey {survey_id}",
                "write each species once",
                number,
            )
        outside = [s for s in species if s >= N_LABEL_SLOTS]
        if outside:
            raise SubmissionError(
                source,
                f"species {listed(outside)} of survey {survey_id} are no label ids "
                f"(0..{N_LABEL_SLOTS - 1})",
                "predict only the archive's species ids",
                number,
            )
        rows[survey_id] = np.array(sorted(species), dtype=np.int64)
    return rows


def check_set_submission(text: str, source: str | Path, test_ids: np.ndarray) -> None:
    """Raise SubmissionError unless ``text`` is a valid submission for the surveys
    ``test_ids``, in their order, each with at least one species."""
    rows = parse_set_file(text, source)
    expected = np.asarray(test_ids, dtype=np.int64)
    unknown = sorted(set(rows) - set(expected.tolist()))
    if unknown:
        raise SubmissionError(
            source,
            f"{len(unknown)} surveyId(s) are not test surveys: {listed(unknown)}",
            "predict only the surveys of the test metadata",
        )
    missing = sorted(set(expected.tolist()) - set(rows))
    if missing:
        raise SubmissionError(
            source,
            f"{len(missing)} test survey(s) have no row: {listed(missing)}",
            "predict every test survey",
        )
    empty = [survey for survey, species in rows.items() if not len(species)]
    if empty:
        raise SubmissionError(
            source,
            f"{len(empty)} survey(s) predict no species (an F1 of 0): {listed(empty)}",
            "predict at least one species per survey",
        )
    if list(rows) != expected.tolist():
        raise SubmissionError(
            source,
            "rows are not in the order of the test metadata",
            "write one row per test survey in the order of GLC2x_PA_metadata_test.csv",
        )


def write_set_submission(path: str | Path, sets: SpeciesSets, test_ids: np.ndarray) -> None:
    """Format, check, then write atomically; nothing is written when the check fails."""
    text = format_set_submission(sets, test_ids)
    check_set_submission(text, path, test_ids)
    write_text(path, text)


def read_set_file(path: str | Path) -> dict[int, np.ndarray]:
    """A submission or solution file's rows (``parse_set_file``)."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError(path, "file is missing", "give the path of a CSV file")
    return parse_set_file(path.read_bytes().decode("utf-8"), path)


def score_files(submission: str | Path, solution: str | Path) -> dict[str, float]:
    """The samples-averaged F1 (and precision, recall, set sizes) of ``submission`` against
    ``solution``; every surveyId of the solution must have a row in the submission."""
    predicted, truth = read_set_file(submission), read_set_file(solution)
    missing = sorted(set(truth) - set(predicted))
    if missing:
        raise SubmissionError(
            submission,
            f"{len(missing)} survey(s) of {solution} have no row: {listed(missing)}",
            "predict every survey of the solution file",
        )
    surveys = list(truth)
    scores = score_sets([predicted[s] for s in surveys], [truth[s] for s in surveys])
    return scores.summary()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``geolifeclef score SUBMISSION SOLUTION``."""
    parser = argparse.ArgumentParser(
        prog="geolifeclef score",
        description="Samples-averaged F1 of a GLC 2024/2025 submission against a solution "
        "file of the same format (surveyId,predictions), as Kaggle scores it.",
    )
    parser.add_argument("submission", type=Path)
    parser.add_argument("solution", type=Path, help="e.g. the demo's test_solution.csv")
    arguments = parser.parse_args(argv)
    try:
        summary = score_files(arguments.submission, arguments.solution)
    except InputDataError as error:
        print(error, file=sys.stderr)
        return 1
    print(
        f"samples F1 {summary['f1']:.5f} over {summary['rows']} surveys "
        f"(precision {summary['precision']:.4f}, recall {summary['recall']:.4f}, "
        f"{summary['predicted_size']:.1f} species predicted and "
        f"{summary['true_size']:.1f} present on average)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
