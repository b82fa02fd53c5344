"""Errors the user fixes: each names the file, where in it, and the fix (input data that
cannot be used, an output that cannot be written)."""

import contextlib
import errno
import shutil
from collections.abc import Iterable, Iterator
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
    message names the file, the cause, the free space and what to free or fix, where the
    system's error (``[Errno 28] No space left on device``) names none. ``alternative``:
    another fix of a full disk that the writer knows of (a smaller format)."""

    def __init__(self, path: str | Path, cause: OSError, alternative: str = "") -> None:
        self.path = Path(path)
        self.cause = OSError(cause.errno, cause.strerror)  # what a worker process pickles
        self.alternative = alternative
        free = ""
        with contextlib.suppress(OSError):
            free = f", {size_text(shutil.disk_usage(_existing(self.path)).free)} free there"
        if cause.errno in (errno.ENOSPC, errno.EDQUOT):
            problem = f"{cause.strerror or 'no space left on the device'}{free}"
            fix = (
                "free space on that disk (old results, logs, scratch files), or run the "
                "workflow in a folder on a larger one (snakemake --directory)"
                + (f"; or {alternative}" if alternative else "")
            )
        else:
            problem = f"cannot be written ({cause.strerror or cause})"
            fix = f"make {self.path.parent} writable for this user, or run the workflow elsewhere"
        super().__init__(cause.errno, f"{self.path}: {problem}. Fix: {fix}")

    def __reduce__(self):
        # Raised in a worker process, it reaches the parent rebuilt from what made it.
        return (type(self), (self.path, self.cause, self.alternative))


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)
"""System errors of a write that the user fixes outside the workflow (``OutputWriteError``)."""


@contextlib.contextmanager
def writing_to(path: str | Path, alternative: str = "") -> Iterator[None]:
    """Raise a full disk or a folder one may not write (``WRITE_ERRNOS``) met in the block
    as an ``OutputWriteError`` naming ``path`` (the file or folder being written); one named
    already (a file in ``path``) as it is, with ``alternative`` added where it had none;
    any other error as it is."""
    try:
        yield
    except OutputWriteError as error:
        if alternative and not error.alternative:
            raise OutputWriteError(error.path, error.cause, alternative) from error
        raise
    except OSError as error:
        if error.errno in WRITE_ERRNOS:
            raise OutputWriteError(path, error, alternative) from error
        raise


def size_text(count: int) -> str:
    """``count`` bytes in the unit a user reads it in: ``3.2 GB``, ``412 MB``, ``96 kB``."""
    if count >= 2**30:
        return f"{count / 2**30:.1f} GB"
    if count >= 2**20:
        return f"{count / 2**20:.0f} MB"
    return f"{count / 2**10:.0f} kB"


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
