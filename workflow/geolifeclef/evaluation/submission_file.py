"""What every edition's Kaggle submission file shares: a header line, then one row a test
item of two comma-separated fields, its id and its species ids separated by single spaces
(GLC 2022: ``Id,Predicted``; GLC 2024 and 2025: ``surveyId,predictions``). Each edition's
module checks its ids and species (``geolifeclef.evaluation.submission``, ``.set_submission``).
"""

from pathlib import Path

from geolifeclef.errors import InputDataError


class SubmissionError(InputDataError):
    """A submission (or solution) file that Kaggle would refuse or score wrongly."""


def submission_rows(
    text: str, source: str | Path, header: str, row_form: str
) -> list[tuple[int, str, str]]:
    """(line number, id field, species field) of each row of a submission's ``text`` after
    its ``header``; SubmissionError (file, line, fix) for a byte-order mark, an empty file,
    another header or a row of another number of fields (``row_form`` says what a row is)."""
    if text.startswith("\ufeff"):
        raise SubmissionError(source, "starts with a byte-order mark", "save as plain UTF-8", 1)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        raise SubmissionError(source, "file is empty", f"the first line is {header}", 1)
    if lines[0].rstrip("\r") != header:
        raise SubmissionError(
            source, f"header is {lines[0]!r}", f"the first line must be exactly {header}", 1
        )
    rows = []
    for number, raw in enumerate(lines[1:], start=2):
        fields = raw.rstrip("\r").split(",")
        if len(fields) != 2:
            raise SubmissionError(
                source, f"{len(fields)} comma-separated fields", f"each row is {row_form}", number
            )
        rows.append((number, *fields))
    return rows
