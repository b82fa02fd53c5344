"""The rule scripts' logging helper: errors in the log, and each job's peak memory at exit."""

import subprocess
import sys
import textwrap

import pytest

from geolifeclef.rule_logging import read_exit_peak

JOB = textwrap.dedent(
    """
    import multiprocessing, sys
    import numpy as np
    from geolifeclef.rule_logging import logging_to

    def child(mb):
        np.ones(mb * 2**20 // 8)  # touched: resident
        sum(range(30_000_000))  # ~1 CPU s

    if __name__ == "__main__":
        own_mb, child_mb, fail = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "fail"
        with logging_to(sys.argv[1]):
            data = np.ones(own_mb * 2**20 // 8)
            del data
            worker = multiprocessing.get_context("fork").Process(target=child, args=(child_mb,))
            worker.start()
            worker.join()
            if fail:
                raise ValueError("the job failed")
    """
)


@pytest.mark.parametrize("outcome", ["ok", "fail"])
def test_a_job_logs_its_own_and_its_largest_childs_peak_at_exit(tmp_path, outcome):
    """A job that held 300 MB, then ran a worker that held 150 MB and computed for about a
    second, reports both peaks (the memory it had freed included) and the CPU time with the
    worker's, and does so when it fails too."""
    script, log = tmp_path / "job.py", tmp_path / "logs" / "job.log"
    script.write_text(JOB)
    done = subprocess.run(
        [sys.executable, str(script), str(log), "300", "150", outcome], capture_output=True
    )
    assert done.returncode == (0 if outcome == "ok" else 1), done.stderr.decode()
    peak = read_exit_peak(log)
    assert peak is not None, log.read_text()
    assert 300 <= peak.own_mb < 300 + 400  # the interpreter and numpy: under 400 MB
    # The forked worker starts with its parent's pages (numpy, ~50 MB) and adds 150 MB.
    assert 150 <= peak.child_mb < peak.own_mb
    assert peak.cpu_s >= 0.5  # the worker's CPU time counts


def test_a_log_without_a_peak_reads_as_none(tmp_path):
    (tmp_path / "killed.log").write_text("2026-12-06 INFO geolifeclef: halfway\n")
    assert read_exit_peak(tmp_path / "killed.log") is None
    assert read_exit_peak(tmp_path / "absent.log") is None
