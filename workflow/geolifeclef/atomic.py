"""Writes that are never seen half-done: write under a temporary name, then rename.

A step killed midway leaves at most a ``.tmp-*`` file that no later step reads, never a
truncated output that Snakemake or a user would trust.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from geolifeclef.errors import WRITE_ERRNOS, OutputWriteError

TEMPORARY_PREFIX = ".tmp-"
"""Name prefix of the temporaries of ``atomic_path``: nothing else uses it."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Works for files and for directories (the block creates whatever it wants at the
    temporary path). On any exception the temporary path is removed and ``path`` is left
    as it was.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f"{TEMPORARY_PREFIX}{target.name}.", dir=target.parent
        )
    except OSError as error:
        _raise_named(target, error)
        raise
    os.close(handle)
    temporary = Path(name)
    temporary.unlink()  # the block decides whether it writes a file or a folder there
    try:
        yield temporary
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(temporary, target)
    except OSError as error:
        _raise_named(target, error)
        raise
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def _raise_named(target: Path, error: OSError) -> None:
    """A full disk or a folder one may not write: raise it as an error naming ``target``
    (any other error: the caller raises it as it is)."""
    if error.errno in WRITE_ERRNOS and not isinstance(error, OutputWriteError):
        raise OutputWriteError(target, error) from error


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def remove_stale_temporaries(folders: list[str | os.PathLike]) -> list[Path]:
    """Remove the temporaries that killed steps left under ``folders``; return them.

    Only for a moment when no step can be writing: Snakemake's lock on the working
    directory keeps a second invocation out, so at the start of one they are stale.
    """
    removed = []
    for folder in map(Path, folders):
        found = sorted(folder.rglob(f"{TEMPORARY_PREFIX}*")) if folder.is_dir() else []
        for path in found:
            if not path.exists():
                continue  # inside a temporary folder removed a moment ago
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed
