"""The SLURM profile against a real single-node SLURM cluster (``make test-slurm``).

Runs only when a cluster answers (SLURM_CONF set by tools/local-slurm/start.sh); the
default test run skips it. It runs the demo workflow with ``--profile profiles/slurm``,
checks that every rule but the Snakefile's light ``localrules`` became a SLURM job (each
split's patch cache as two shard jobs and a gather job) and that GPU rules got a GPU, then
changes one experiment's training setting and checks that exactly that experiment's chain
is rerun: its training, prediction and blends on the cluster, its scoring beside it.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake_command

pytestmark = pytest.mark.slurm

# Target rules, and the Snakefile's `localrules` (seconds of work each).
TARGET_RULES = {"all", "submission", "observations"}
LOCAL_RULES = TARGET_RULES | {
    "evaluate_model",
    "build_leaderboard",
    "write_submission",
    "select_submission",
}
GPU_RULES = {"train_model"}
TIMEOUT = int(os.environ.get("SLURM_TEST_TIMEOUT", "1500"))


def _cluster_up() -> bool:
    if not os.environ.get("SLURM_CONF") or not shutil.which("sinfo"):
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return state.returncode == 0 and state.stdout.strip() in {"idle", "mixed", "allocated"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    if not _cluster_up():
        pytest.skip("no SLURM cluster: run `make test-slurm` (starts a local one)")
    workdir = tmp_path_factory.mktemp("slurm")
    config = yaml.safe_load((REPO / "tests" / "slurm-config.yaml").read_text())
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


def local_jobs(output: str) -> dict[str, list[str]]:
    """Per rule, the wildcard values (joined by "_", or "-") of each job that Snakemake
    ran beside the scheduler, from its "localrule NAME:" job descriptions."""
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n\s*\n", output):
        rule = re.search(r"^localrule (\w+):", block, flags=re.M)
        if rule:
            wildcards = re.search(r"^\s+wildcards: (.+)$", block, flags=re.M)
            values = (
                [pair.split("=", 1)[1] for pair in wildcards[1].split(", ")] if wildcards else []
            )
            jobs.setdefault(rule[1], []).append("_".join(values) or "-")
    return jobs


def run_profile(workdir: Path, *extra: str) -> tuple[str, dict[str, list[str]]]:
    """Run the workflow through the SLURM profile; return its output and, per rule, the
    wildcards of each SLURM job it submitted (from Snakemake's submission messages)."""
    command = snakemake_command(
        workdir,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "submission",
        *extra,
        # The test cluster's jobs take seconds: poll squeue every 2 s, not the profile's
        # 20 s that spares a shared slurmctld (MinJobAge 300 >= 3 x 2, SLURM-NOTES.md).
        "--slurm-init-seconds-before-status-checks",
        "2",
        cores=None,
    )
    # SIGINT, not SIGTERM: snakemake ignores SIGTERM while it waits on jobs.
    result = subprocess.run(
        ["timeout", "-s", "INT", "-k", "30", str(TIMEOUT), *command],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    (workdir / f"snakemake-{len(list(workdir.glob('snakemake-*.log')))}.log").write_text(output)
    assert result.returncode == 0, f"snakemake failed ({result.returncode}):\n{output[-6000:]}"
    jobs: dict[str, list[str]] = {}
    for rule, wildcards in re.findall(
        r"submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_(\w+)/(?:(\S+)/)?\d+\.log",
        output,
    ):
        jobs.setdefault(rule, []).append(wildcards)
    print(f"SLURM jobs of this invocation ({sum(map(len, jobs.values()))}):")
    for rule, instances in sorted(jobs.items()):
        print(f"  {rule}: {', '.join(sorted(w or '-' for w in instances))}")
    return output, jobs


@pytest.fixture(scope="module")
def first_invocation(workdir) -> tuple[str, dict[str, list[str]]]:
    """The whole workflow, run once through the profile: (output, jobs per rule)."""
    return run_profile(workdir)


def test_every_rule_runs_as_a_slurm_job_and_gpu_rules_get_a_gpu(workdir, first_invocation):
    output, jobs = first_invocation
    ran = set(re.findall(r"^\s*rule (\w+):", output, flags=re.M))
    assert ran - LOCAL_RULES, "no rule ran"
    assert ran - LOCAL_RULES <= set(jobs), f"rules not submitted to SLURM: {ran - set(jobs)}"
    ran_locally = set(local_jobs(output))
    assert ran_locally <= LOCAL_RULES, f"ran outside SLURM: {ran_locally - LOCAL_RULES}"
    assert "evaluate_model" in ran_locally and "write_submission" in ran_locally
    # Both experiments and both members of the sweep, each a SLURM job of its own.
    assert len(jobs["train_model"]) == 4
    assert sum(w.startswith("lr-") for w in jobs["train_model"]) == 2
    # patches.shards: 2 -> each split's cache is built by two jobs, then gathered by one.
    splits = ("test", "train", "val")
    assert sorted(jobs["cache_patch_shard"]) == [f"{s}_{i}-of-2" for s in splits for i in (1, 2)]
    assert sorted(jobs["cache_patches"]) == list(splits)
    for split in splits:
        meta = (workdir / "results" / "patches" / split / "meta.json").read_text()
        assert '"name": "1-of-2"' in meta and '"name": "2-of-2"' in meta
    for rule in GPU_RULES & set(jobs):
        for log in (workdir / "logs").glob(f"{rule}/*.log"):
            text = log.read_text()
            assert re.search(r"SLURM_JOB_ID=\d+", text), log
            assert re.search(r"CUDA_VISIBLE_DEVICES=\d", text), f"{log}: no GPU given"
    submission = next((workdir / "results" / "submission").glob("*.csv"))
    frame = pd.read_csv(submission)
    assert list(frame.columns) == ["Id", "Predicted"]
    assert frame["Predicted"].str.split().map(len).eq(30).all()


def test_changing_one_experiment_reruns_only_its_chain(workdir, first_invocation):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    name = sorted(config["experiments"])[0]
    config["experiments"][name].setdefault("train", {})["learning_rate"] = 0.0123
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    output, jobs = run_profile(workdir)
    blends = sorted(config["blends"])
    chain = {name, *blends}
    assert {rule: sorted(w or "-" for w in found) for rule, found in jobs.items()} == {
        "train_model": [name],
        "predict_model": [name],
        "blend_predictions": sorted(f"{b}_{split}" for b in blends for split in ("test", "val")),
    }
    ran_locally = local_jobs(output)
    assert {rule: sorted(ran_locally[rule]) for rule in set(ran_locally) - TARGET_RULES} == {
        "evaluate_model": sorted(chain),
        "write_submission": sorted(chain),
        "build_leaderboard": ["-"],
        "select_submission": ["-"],
    }
