"""Errors the user fixes: each names the file, where in it, and the fix (input data that
cannot be used, an output that cannot be written)."""

import contextlib
import errno
import shutil
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


class OutputWriteError(OSError):
    """An output could not be written (a full disk, a folder one may not write): the
    message names the file, the cause and what to free or fix, where the system's error
    (``[Errno 28] No space left on device``) names none."""

    def __init__(self, path: str | Path, cause: OSError) -> None:
        self.path = Path(path)
        free = ""
        with contextlib.suppress(OSError):
            free = f", {shutil.disk_usage(_existing(self.path)).free / 2**30:.1f} GB free there"
        if cause.errno in (errno.ENOSPC, errno.EDQUOT):
            problem = f"{cause.strerror or 'no space left on the device'}{free}"
            fix = (
                "free space on that disk (old results, logs, scratch files), or run the "
                "workflow in a folder on a larger one (snakemake --directory)"
            )
        else:
            problem = f"cannot be written ({cause.strerror or cause})"
            fix = f"make {self.path.parent} writable for this user, or run the workflow elsewhere"
        super().__init__(cause.errno, f"{self.path}: {problem}. Fix: {fix}")


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)
"""System errors of a write that the user fixes outside the workflow (``OutputWriteError``)."""


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (disk_usage needs one)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class StoppedBySignal(Exception):
    """A job stopped on request (SIGTERM: what SLURM sends at preemption and at its time
    limit) at a safe point, its work so far saved: not a failure. Its MLflow run ends
    KILLED and the process exits with 128 + the signal's number, as a killed one would;
    the message says what was saved and that a rerun goes on from it."""

    def __init__(self, signal_number: int, message: str) -> None:
        self.signal_number = signal_number
        super().__init__(message)

    @property
    def exit_status(self) -> int:
        return 128 + self.signal_number
