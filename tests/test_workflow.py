"""End to end: the Snakemake workflow on a tiny demo, as a user runs it."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, run_snakemake, snakemake_command


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text("demo:\n  scale: tiny\n  seed: 3\n")
    return workdir


@pytest.mark.slow
def test_observations_target_runs_end_to_end(tiny_workdir):
    result = run_snakemake(tiny_workdir, "observations")
    assert result.returncode == 0, result.stderr[-4000:]
    for split in ("train", "val", "test"):
        table = pd.read_parquet(tiny_workdir / "results" / "observations" / f"{split}.parquet")
        assert len(table) > 0 and (table["subset"] == split).all()
    assert (tiny_workdir / "logs" / "ingest_observations.log").read_text()
    assert (tiny_workdir / "benchmarks" / "generate_demo_dataset.tsv").exists()
    # A second invocation finds nothing to do.
    again = run_snakemake(tiny_workdir, "observations", "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_config_with_unknown_key_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("demo:\n  scale: tiny\n  sede: 3\n")
    result = run_snakemake(tmp_path, "observations", "--dry-run")
    assert result.returncode != 0
    assert "sede" in result.stderr + result.stdout


def test_config_with_wrong_type_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("demo:\n  seed: three\n")
    result = run_snakemake(tmp_path, "observations", "--dry-run")
    assert result.returncode != 0
    assert "three" in result.stderr + result.stdout


SECTION_REFUSALS = {
    "baselines": (
        "baselines:\n  kNN: {n_neighbors: 5}\n",
        "baselines.kNN: unknown baseline; did you mean `knn`?",
    ),
    "baselines.random_forest": (
        "baselines:\n  random_forest: {features: [env, wind]}\n",
        "baselines.random_forest.features.1: 'wind' is not one of ['env', 'coordinates'",
    ),
    "maps": (
        "maps:\n  resolutoin: 0.1\n",
        "maps.resolutoin: unknown key; did you mean `resolution`?",
    ),
    "importance": (
        "importance:\n  variables: [bio_99]\n",
        "importance.variables: unknown 'bio_99'; choose among bio_1, bio_2,",
    ),
    "response": (
        "response:\n  variables: [altitude]\n",
        "response.variables: unknown 'altitude'; choose among bio_1,",
    ),
    "mess": (
        "mess:\n  variables: [latitude]\n",
        "mess.variables: unknown 'latitude'; choose among bio_1,",
    ),
    "evaluation": (
        "evaluation:\n  draws: many\n",
        "evaluation.draws: 'many' is not of type 'integer'",
    ),
    "submission": (
        "submission:\n  model: kn\n",
        "submission.model: 'kn' is not 'best' or one of the models ['constant',",
    ),
    # timm's name, not only the schema's string: refused before the fit's upstream steps
    "experiments.model.cnn.backbone": (
        "experiments:\n  odd:\n    model:\n      kind: cnn\n      modalities: [rgb]\n"
        "      cnn: {backbone: resnet34x}\n",
        "experiments.odd.model.cnn.backbone: unknown backbone 'resnet34x': not 'small' nor a "
        "timm model. Did you mean `resnet34`,",
    ),
}


@pytest.mark.parametrize("section", sorted(SECTION_REFUSALS))
def test_a_bad_value_in_any_section_is_refused_before_any_job(tmp_path, section):
    """Every section is typed when the workflow is parsed: a dry run of the targets that
    read it stops with the key's path and what it may be, once, with no traceback."""
    text, message = SECTION_REFUSALS[section]
    (tmp_path / "config.yaml").write_text(f"demo:\n  scale: tiny\n{text}")
    result = run_snakemake(tmp_path, "all", "maps", "importance", "--dry-run", timeout=300)
    shown = result.stdout + result.stderr
    assert result.returncode != 0
    assert shown.count(message) == 1, shown[-3000:]
    assert "Traceback" not in shown
    assert not (tmp_path / "resources").exists()


def test_the_workflow_parses_with_the_settings_package_only(tmp_path):
    # Every SLURM job parses the Snakefile again: torch or mlflow would add seconds to each.
    (tmp_path / "config.yaml").write_text("demo:\n  scale: tiny\n")
    command = snakemake_command(tmp_path, "all", "--dry-run")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", *command[1:]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    imported = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line
    }
    ours = {name for name in imported if name.startswith("geolifeclef")}
    assert {"geolifeclef.settings.experiment", "geolifeclef.settings.inputs"} <= ours
    # the edition (data: layout and task) is decided at parse time, as the Snakefile's first step
    allowed = ("geolifeclef", "geolifeclef.layout", "geolifeclef.errors", "geolifeclef.atomic")
    allowed += ("geolifeclef.editions", "geolifeclef.survey_layout")
    assert {name for name in ours if not name.startswith("geolifeclef.settings")} <= set(allowed)
    assert not {name for name in imported if name.split(".")[0] in ("torch", "mlflow", "sklearn")}


def _rule_blocks() -> dict[str, str]:
    """Rule name -> the text of its block, from every rule file of the workflow."""
    blocks = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        # `rule name:`, or a rule built in a loop: `rule:` then `name:` and its expression.
        pattern = r"^rule (\w+):\n|^ +rule:\n +name:\n +(.+)\n"
        parts = re.split(pattern, path.read_text(), flags=re.M)
        for plain, built, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
            blocks[plain or built] = body.split("\n\n\n")[0]
    return blocks


def test_every_rule_that_runs_a_step_logs_and_benchmarks():
    blocks = _rule_blocks()
    steps = {name: body for name, body in blocks.items() if "    script:" in body}
    assert len(steps) >= 15 and {"train_model", "evaluate_model"} <= set(steps)
    assert 'f"predict_{family.name}"' in steps  # the baselines' rule, built from the records
    for name, body in steps.items():
        assert "    log:" in body, f"rule {name} has no log"
        assert "    benchmark:" in body, f"rule {name} has no benchmark"
    # The others only gather targets: no job runs for them.
    for name, body in blocks.items():
        if name not in steps:
            assert set(re.findall(r"^    (\w+):", body, re.M)) <= {"input", "default_target"}


def test_rule_scripts_get_every_path_and_setting_from_their_rule():
    for script in sorted((REPO / "workflow" / "scripts").glob("*.py")):
        text = script.read_text()
        assert "snakemake.config" not in text, script
        assert "results/" not in text and "resources/" not in text, script
