"""The MLflow UI as a researcher first sees it: the page the workflow's last log line
names, opened in headless Chromium with a fresh profile (skipped where Chromium is not
installed: Debian's `chromium`)."""

import shutil
import signal
import subprocess

import pytest
from faults_helpers import start_mlflow_server, stop

from geolifeclef.tracking.records import runs_page
from geolifeclef.tracking.runs import start_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt install chromium")


def _rendered(url: str, profile) -> str:
    """The page's DOM once its scripts have run (the UI is a single-page app)."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         "--window-size=1600,1000", "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout


def test_the_logged_link_opens_the_evaluate_runs_best_first(tmp_path):
    process, port = start_mlflow_server(tmp_path / "server")
    try:
        uri = f"http://127.0.0.1:{port}"
        errors = {"knn": 0.243, "fitted_blend": 0.204, "constant": 0.8}
        with start_run(uri, "geolifeclef", "all 2026-12-06 06:00", tmp_path / "p.jsonl") as parent:
            for model, error in errors.items():
                with start_run(
                    uri, "geolifeclef", f"evaluate {model}", tmp_path / f"{model}.jsonl",
                    tags={"mlflow.parentRunId": parent.run_id,
                          "snakemake.rule": "evaluate_model"},
                ) as run:  # fmt: skip
                    run.log_params(
                        {"kind": "baseline" if model != "fitted_blend" else "fitted blend"}
                    )
                    run.log_metrics(
                        {"val_top30_error": error, "val_top30_error_low": error - 0.0123}
                    )
            with start_run(
                uri, "geolifeclef", "train env_mlp", tmp_path / "t.jsonl",
                tags={"mlflow.parentRunId": parent.run_id},
            ) as run:  # fmt: skip
                run.log_metrics({"val_top30_error": 0.1})
        line = runs_page(uri, parent.run_id)
        assert line is not None and line.startswith("MLflow runs")
        url = line.split(": ", 1)[1]
        page = _rendered(url, tmp_path / "chromium")
    finally:
        stop(process, signal.SIGTERM)
    # On the runs table in model-training mode, not the GenAI overview.
    assert "Model training" in page and "Welcome to MLflow" not in page
    # With the errors, their interval and the kind as columns (the saved leaderboard view).
    assert "viewStateShareKey" in url
    for error in errors.values():
        assert f">{error}<" in page and f">{round(error - 0.0123, 4)}<" in page
    assert ">fitted blend<" in page
    # One evaluate run a model, nested under the parent yet listed, best first; no train run.
    shown = [name for name in (f"evaluate {m}" for m in errors) if name in page]
    assert sorted(shown, key=page.index) == [
        f"evaluate {m}" for m in sorted(errors, key=errors.get)
    ]
    assert "train env_mlp" not in page and "all 2026-12-06 06:00" not in page
