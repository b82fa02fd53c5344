"""The `geolifeclef` command as users run it: the installed console script."""

import subprocess
import sys

import pandas as pd
import pytest
from conftest import GEOLIFECLEF

from geolifeclef.cli import COMMANDS


def run(*arguments: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(GEOLIFECLEF), *arguments], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_help_lists_every_command_without_importing_torch():
    result = run("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    code = (
        "import sys\nfrom geolifeclef.cli import main\nmain(['--help'])\n"
        "assert 'torch' not in sys.modules and 'mlflow' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_help(command):
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: geolifeclef" in result.stdout and command in result.stdout


def test_an_unknown_command_is_refused_with_the_choices():
    result = run("predict")
    assert result.returncode == 2
    assert "invalid choice: 'predict'" in result.stderr and "query" in result.stderr


def test_check_submission_names_the_file_and_line(tiny_demo, tables, tmp_path):
    layout, _, _ = tiny_demo
    test_ids = pd.read_parquet(tables["test"])["observation_id"].tolist()
    submission = tmp_path / "my.csv"
    rows = [f"{i},{' '.join(str(s) for s in range(30))}" for i in test_ids]
    rows[3] = rows[3].replace(" 29", " 28")  # a species predicted twice on line 5
    submission.write_text("\n".join(["Id,Predicted", *rows]) + "\n")
    refused = run(
        "check-submission", str(submission), str(tables["test"]), str(layout.species_details)
    )
    assert refused.returncode == 1
    assert str(submission) in refused.stderr and "line 5" in refused.stderr
    assert "predicted twice" in refused.stderr
