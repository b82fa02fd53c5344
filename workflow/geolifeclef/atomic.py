"""Writes that are never seen half-done: write under a temporary name, then rename.

A step killed midway leaves at most a ``.tmp-*`` file that no later step reads, never a
truncated output that Snakemake or a user would trust. A temporary's name records the
process that writes it (``geolifeclef.owners``): ``remove_stale_temporaries`` removes
only those whose process is gone, not those of a live invocation beside.
"""

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from geolifeclef.errors import WRITE_ERRNOS, OutputWriteError
from geolifeclef.owners import (
    UNCHECKABLE_AGE_TEXT,
    Liveness,
    Owner,
    OwnerCheck,
    clearable,
    this_process,
)

TEMPORARY_PREFIX = ".tmp-"
"""Name prefix of the temporaries of ``atomic_path``: nothing else uses it. The full name
is ``.tmp-<target's name>.<owner's token>.<random>``."""


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
            prefix=f"{TEMPORARY_PREFIX}{target.name}.{this_process().token}.",
            dir=target.parent,
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


def temporary_owner(path: str | os.PathLike) -> Owner | None:
    """The process that writes (or wrote) the temporary ``path``; None for a name without
    one (written before owners were recorded)."""
    rest = Path(path).name.removeprefix(TEMPORARY_PREFIX)
    parts = rest.rsplit(".", 2)  # target's name (may hold dots), token, random
    return Owner.parse(parts[1]) if len(parts) == 3 else None


@dataclass
class StaleTemporaries:
    """What ``remove_stale_temporaries`` found: the temporaries it removed and those it
    left because their process runs on a host it cannot check."""

    removed: list[Path] = field(default_factory=list)
    unchecked: dict[Path, Owner] = field(default_factory=dict)

    def messages(self, shown: int = 5) -> list[str]:
        """What a user is told (nothing about the temporaries of live processes)."""
        lines = []
        if self.removed:
            paths = ", ".join(str(p) for p in self.removed[:shown])
            lines.append(
                f"removed {len(self.removed)} temporaries of a killed run "
                f"(their process is gone): {paths}"
            )
        if self.unchecked:
            paths = ", ".join(f"{p} ({owner})" for p, owner in list(self.unchecked.items())[:shown])
            lines.append(
                f"left {len(self.unchecked)} temporaries of processes on other hosts, "
                f"which this one cannot check: {paths}. They are removed once untouched "
                f"for {UNCHECKABLE_AGE_TEXT}; delete them yourself when no job of theirs runs"
            )
        return lines


def remove_stale_temporaries(folders: list[str | os.PathLike]) -> StaleTemporaries:
    """Remove the temporaries under ``folders`` that killed steps left: those whose
    process is gone (``geolifeclef.owners.clearable``). Those of live processes
    (a second invocation runs beside this one) are left as they are, and with them those
    of processes on other hosts that cannot be checked, unless untouched for long."""
    found = StaleTemporaries()
    kept: list[Path] = []
    now = time.time()
    owners = OwnerCheck()
    for folder in map(Path, folders):
        paths = sorted(folder.rglob(f"{TEMPORARY_PREFIX}*")) if folder.is_dir() else []
        for path in paths:
            if not path.exists() or any(path.is_relative_to(k) for k in kept):
                continue  # inside a temporary folder removed a moment ago, or kept
            owner = temporary_owner(path)
            liveness = owners.liveness(owner)
            if not clearable(liveness, now - _last_written(path)):
                kept.append(path)
                if owner is not None and liveness is Liveness.UNKNOWN:
                    found.unchecked[path] = owner
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            found.removed.append(path)
    return found


def _last_written(path: Path) -> float:
    """When anything in ``path`` (a file, or a folder and its files) was last written."""
    try:
        times = [path.lstat().st_mtime]
        if path.is_dir() and not path.is_symlink():
            times += [p.lstat().st_mtime for p in path.rglob("*")]
        return max(times)
    except OSError:  # its writer moved or removed it meanwhile: it lives
        return time.time()
