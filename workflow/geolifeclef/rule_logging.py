"""Logging for rule scripts: to the rule's ``log:`` file and to the console, and the job's
peak memory at exit.

Snakemake's benchmark ``max_rss`` is sampled (every 0.5 s at first, then every 30 s) and
sums the process tree: it misses short peaks and counts a memory-mapped file once per
process. The peak each job reports itself at exit (``ru_maxrss``, the kernel's own
high-water mark) is what a SLURM memory limit must hold; ``read_exit_peak`` reads it back
from the log (bench/rehearsal.py puts it in its table). A child that runs a command (git,
for the run's commit) is charged by Linux with its parent's memory until it execs (it is
spawned by ``vfork``): the largest child of a job without workers is that figure, not a
worker's.
"""

import contextlib
import logging
import re
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from geolifeclef.errors import StoppedBySignal

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_PEAK_LINE = (
    "peak memory at exit: {own:.0f} MB this process, {child:.0f} MB its largest child; "
    "{cpu:.1f} CPU s in all"
)
_PEAK_PATTERN = re.compile(
    r"peak memory at exit: (\d+) MB this process, (\d+) MB its largest child; ([\d.]+) CPU s"
)


@dataclass(frozen=True)
class ExitPeak:
    """A job's peak resident memory in MB: its own process's (threads included) and its
    largest child process's (a worker), each at its high-water mark."""

    own_mb: float
    child_mb: float
    cpu_s: float = float("nan")
    """CPU seconds of the process and its waited-for children (its workers, which
    Snakemake's benchmark undercounts when they end between its samples)."""


def exit_peak() -> ExitPeak:
    """This process's peak RSS, and the largest of its children's: those that ended
    (``RUSAGE_CHILDREN``: the largest waited-for child, grandchildren included) and those
    still running (their high-water mark so far, ``VmHWM`` in /proc).

    This process's own is its ``VmHWM`` where /proc has it: ``ru_maxrss`` would be at
    least its parent's memory when it was started (Linux carries the high-water mark of
    the address space a process had before ``exec``, Snakemake's own ~250 MB for a job).
    """
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = _high_water_mb("self") or mine.ru_maxrss / 1024  # kB on Linux
    child = children.ru_maxrss / 1024
    cpu = mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime
    with contextlib.suppress(ImportError):
        import psutil  # noqa: PLC0415 (the peak is taken once, at exit)

        for process in psutil.Process().children(recursive=True):
            child = max(child, _high_water_mb(process.pid))
    return ExitPeak(own, child, cpu)


def _high_water_mb(pid: int | str) -> float:
    """A running process's peak RSS so far (``VmHWM``); 0 where /proc cannot tell."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return 0.0


def exit_peak_line(peak: ExitPeak) -> str:
    """The log line of a job's peak (what ``read_exit_peak`` reads)."""
    return _PEAK_LINE.format(own=peak.own_mb, child=peak.child_mb, cpu=peak.cpu_s)


def read_exit_peak(log_file: str | Path) -> ExitPeak | None:
    """The peak a job's log reports at its end (``logging_to``); None without one (a job
    that was killed, or a log written before jobs reported it)."""
    path = Path(log_file)
    found = _PEAK_PATTERN.findall(path.read_text(errors="replace")) if path.exists() else []
    if not found:
        return None
    own, child, cpu = found[-1]
    return ExitPeak(float(own), float(child), float(cpu))


class _WithoutTraceback(logging.Formatter):
    """The console's format: a record's message without its traceback (the log has it)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info = record.exc_text = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text = saved


@contextlib.contextmanager
def logging_to(log_file: str | Path | None) -> Iterator[logging.Logger]:
    """Send log records to ``log_file`` and stderr; end with the job's peak memory
    (``exit_peak``). An exception ends the job (exit status 1) with its message printed
    once on the console, and with its traceback in the log, next to what the step did
    before it failed: the console is where a user reads what to fix, the log where a
    developer reads where it happened. A job stopped by a signal at a safe point
    (``StoppedBySignal``) says what it saved, without a traceback, and exits with
    128 + the signal, as a killed process does.
    """
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_WithoutTraceback(FORMAT))
    handlers: list[logging.Handler] = [console]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    for handler in handlers[1:]:
        handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    logging.captureWarnings(True)
    logger = logging.getLogger("geolifeclef")
    try:
        yield logger
    except StoppedBySignal as stopped:
        logger.warning("%s", stopped)
        raise SystemExit(stopped.exit_status) from None
    except Exception as error:
        where = f" (traceback in {log_file})" if log_file else ""
        logger.error("%s: %s%s", type(error).__name__, error, where, exc_info=True)
        # Not raised again: the interpreter would print it a second time, with the
        # traceback, and Snakemake a third.
        raise SystemExit(1) from None
    finally:
        logger.info(exit_peak_line(exit_peak()))
        for handler in handlers:
            handler.flush()
