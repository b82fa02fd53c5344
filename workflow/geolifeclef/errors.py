"""Errors about the user's input data: each names the file, where in it, and the fix."""

from collections.abc import Iterable
from pathlib import Path

MAX_LISTED = 5
"""Examples an error message lists before "and N more" (the log lists them all)."""


def listed(values: Iterable, limit: int = MAX_LISTED, separator: str = ", ") -> str:
    """``'a, b, c and 4 more'``: the first ``limit`` values of a problem, then a count."""
    values = list(values)
    shown = separator.join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


class InputDataError(ValueError):
    """A data file cannot be used as it is.

    The message reads ``<file>[, line N]: <problem>. <fix>`` so that a user can go
    straight to the place and mend it.
    """

    def __init__(
        self, path: str | Path, problem: str, fix: str = "", line: int | None = None
    ) -> None:
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        self.line = line
        where = f"{self.path}" + (f", line {line}" if line is not None else "")
        message = f"{where}: {problem}"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)
