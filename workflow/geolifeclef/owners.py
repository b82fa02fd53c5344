"""Which process owns a temporary file or an MLflow run, and whether that process still runs.

Snakemake locks files, not the working directory: a second invocation (a plot asked for
while a training runs) starts beside a live one. What an invocation clears at its start
(``atomic_path``'s temporaries, RUNNING MLflow runs) therefore records its owner, and
only what a dead owner left is cleared.

An owner is a process on a host, told apart from a later process given the same id by its
start (clock ticks since boot, and the boot's id). Whether it still runs:

* on this host, /proc says it (a process with that id and that start, not a zombie);
* on another host (a SLURM node, seen from the login node), it is known dead only when
  SLURM says its job has left the queue (``squeue``); else it is ``UNKNOWN``, and what it
  left is cleared only once older than ``UNCHECKABLE_AGE_S``.

Host names are taken to name one machine each (as SLURM's node names do).
"""

import enum
import functools
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

UNCHECKABLE_AGE_S = 7 * 24 * 3600
"""Age after which what a process on another host left is cleared although its death
cannot be checked: longer than the time limits of SLURM partitions (a job that ran longer
and writes still would lose its temporary; a run still alive and marked KILLED is marked
FINISHED again when it ends)."""
UNCHECKABLE_AGE_TEXT = "7 days"

_TOKEN = re.compile(
    r"^(?P<host>[A-Za-z0-9-]+)~(?P<pid>\d+)~(?P<start>\d*)~(?P<boot>[0-9a-f]*)~(?P<slurm_job>\d*)$"
)


class Liveness(enum.Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"
    """On another host, and SLURM cannot tell."""


@dataclass(frozen=True)
class Owner:
    """A process on a host: what a temporary's name and a run's ``glc.owner`` tag record."""

    host: str
    """The short host name, letters, digits and '-' only."""
    pid: int
    start: str = ""
    """The process's start in clock ticks since boot ('' where /proc is missing)."""
    boot: str = ""
    """The first 8 hex digits of the host's boot id ('' where /proc is missing)."""
    slurm_job: str = ""
    """The SLURM job the process ran in ('' outside SLURM)."""

    @property
    def token(self) -> str:
        """The owner in one word (no '.', no '/'): what ``parse`` reads back."""
        return f"{self.host}~{self.pid}~{self.start}~{self.boot}~{self.slurm_job}"

    @classmethod
    def parse(cls, token: str | None) -> "Owner | None":
        """The owner that ``token`` records; None for anything else (a temporary or a run
        written before owners were recorded)."""
        found = _TOKEN.match(token or "")
        if found is None:
            return None
        values = found.groupdict()
        return cls(
            values["host"], int(values["pid"]), values["start"], values["boot"], values["slurm_job"]
        )

    def __str__(self) -> str:
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"process {self.pid} on {self.host}{job}"

    def liveness(self) -> Liveness:
        """Whether the process still runs (see the module's docstring)."""
        here = this_process()
        if self.host != here.host:
            return _slurm_job_liveness(self.slurm_job) if self.slurm_job else Liveness.UNKNOWN
        if self.boot and here.boot and self.boot != here.boot:
            return Liveness.DEAD  # the host was restarted since
        start, state = _process_start(self.pid)
        if state is None:
            return Liveness.DEAD
        if state in ("Z", "X") or (self.start and start and self.start != start):
            return Liveness.DEAD  # a zombie, or another process given the same id since
        return Liveness.ALIVE


def this_process() -> Owner:
    """The owner record of the calling process (of a forked child: its own)."""
    return _owner_of(os.getpid())


class OwnerCheck:
    """The liveness of owners, each asked once (in one clean-up, many temporaries and runs
    share an owner, and asking SLURM takes a command)."""

    def __init__(self) -> None:
        self._known: dict[Owner, Liveness] = {}

    def liveness(self, owner: Owner | None) -> Liveness:
        """Whether ``owner`` still runs; DEAD without an owner (what was written before
        owners were recorded, by a version of the workflow that no live invocation runs)."""
        if owner is None:
            return Liveness.DEAD
        if owner not in self._known:
            self._known[owner] = owner.liveness()
        return self._known[owner]


def clearable(liveness: Liveness, age_s: float) -> bool:
    """Whether what an owner left, last written ``age_s`` seconds ago, may be cleared: its
    process is gone, or it runs on a host that cannot be checked and it is older than
    ``UNCHECKABLE_AGE_S``."""
    return liveness is Liveness.DEAD or (liveness is Liveness.UNKNOWN and age_s > UNCHECKABLE_AGE_S)


@functools.lru_cache(maxsize=4)
def _owner_of(pid: int) -> Owner:
    start, _ = _process_start(pid)
    return Owner(_host_name(), pid, start or "", _boot_id(), os.environ.get("SLURM_JOB_ID", ""))


def _host_name() -> str:
    """The host's short name, in the letters a token allows."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "localhost"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return ""


def _process_start(pid: int) -> tuple[str, str | None]:
    """(start in clock ticks since boot, state letter) of process ``pid`` on this host;
    state None when there is no such process. Without /proc: ('', 'R') when a signal
    could reach it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "", None
    except OSError:
        return _signal_reaches(pid)
    # The name (field 2) is in parentheses and may hold spaces: fields count from its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19], fields[0]


def _signal_reaches(pid: int) -> tuple[str, str | None]:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "", None
    except PermissionError:
        pass
    return "", "R"


def _slurm_job_liveness(job: str) -> Liveness:
    """DEAD when SLURM no longer knows job ``job`` or lists it no more among its pending
    and running jobs; UNKNOWN when ``squeue`` cannot be asked."""
    try:
        answer = subprocess.run(
            ["squeue", "--noheader", "--jobs", job, "--format", "%T"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return Liveness.UNKNOWN
    if answer.returncode == 0:
        return Liveness.ALIVE if answer.stdout.strip() else Liveness.DEAD
    if "invalid job id" in answer.stderr.lower():
        return Liveness.DEAD
    return Liveness.UNKNOWN
