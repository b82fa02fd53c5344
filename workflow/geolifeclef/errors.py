"""Errors about the user's input data: each names the file, where in it, and the fix."""

from pathlib import Path


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
