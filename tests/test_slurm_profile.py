"""The SLURM profile against a real single-node SLURM cluster (``make test-slurm``).

The cluster tests run only when a cluster answers (SLURM_CONF set by
tools/local-slurm/start.sh); the default test run skips them. They run the demo workflow
with ``--profile profiles/slurm``, check that every rule but the Snakefile's light
``localrules`` became a SLURM job (each split's patch cache as two shard jobs and a gather
job), that GPU rules got a GPU and that every job got from SLURM the CPUs of its threads
and the memory of its ``mem_mb`` (from the cluster's own record of each job), then change
one experiment's training setting and check that exactly that experiment's chain is
rerun: its training, prediction and blends on the cluster, its scoring beside it. The
profile's own checks need no cluster.
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
from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting

from geolifeclef.editions import EDITIONS

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"

# Target rules, and the Snakefile's `localrules` (seconds of work each).
TARGET_RULES = {"all", "submission", "observations"}
LOCAL_RULES = TARGET_RULES | {
    "evaluate_model",
    "build_leaderboard",
    "write_submission",
    "select_submission",
}
GPU_RULES = {"train_model"}
# The rules that need more than the profile's default CPUs, memory or time on the archive.
COSTLY_RULES = {
    "cache_patch_shard",
    "compute_patch_stats",
    "extract_env",
    "extract_env_patches",
    "compute_normalization_stats",
    "predict_random_forest",
    "predict_knn",
    "train_model",
    "refit_model",
    "predict_model",
    "fit_blend",
    "map_model",
}
TIMEOUT = int(os.environ.get("SLURM_TEST_TIMEOUT", "1500"))


def _cluster_up() -> bool:
    if not os.environ.get("SLURM_CONF") or not shutil.which("sinfo"):
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return state.returncode == 0 and state.stdout.strip() in {"idle", "mixed", "allocated"}


def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def first_attempt(expression) -> int:
    """A figure of the profile ("8000 * attempt", as Snakemake evaluates it) at attempt 1."""
    return eval(str(expression), {"__builtins__": {}}, {"attempt": 1})


def profile_mem_mb(rule: str) -> int:
    """The memory (MB) the profile asks for ``rule`` at the first attempt."""
    settings = profile()
    resources = {**settings["default-resources"], **settings["set-resources"].get(rule, {})}
    return first_attempt(resources["mem_mb"])


class PluginResources(dict):
    """A job's resources as the SLURM plugin reads them: by key and as attributes."""

    __getattr__ = dict.__getitem__


class PluginJob:
    """What the SLURM plugin reads of a job to ask for CPUs: its threads and resources."""

    def __init__(self, threads: int, resources: dict) -> None:
        self.threads = threads
        self.resources = PluginResources(resources)


def test_the_plugin_asks_slurm_for_each_jobs_threads_under_the_profile():
    # A `cpus_per_task` resource would win over every rule's threads (the plugin's
    # get_cpu_setting): a job of 8 threads must ask for 8 CPUs, a GPU job for its threads.
    defaults = profile()["default-resources"]
    assert get_cpu_setting(PluginJob(8, defaults), gpu=False) == "--cpus-per-task=8"
    assert get_cpu_setting(PluginJob(13, {**defaults, "gpu": 1}), gpu=True) == "--cpus-per-task=13"


def test_the_profile_sizes_every_costly_rule_and_names_only_real_rules(tmp_path):
    settings = profile()
    for rule in COSTLY_RULES:
        resources = settings["set-resources"].get(rule, {})
        assert {"mem_mb", "runtime"} <= set(resources), f"{PROFILE}: {rule} lacks mem_mb/runtime"
        assert profile_mem_mb(rule) > profile_mem_mb("<default>"), f"{rule}: no more memory"
    # The rules of every edition's config, as Snakemake reads them (a baseline's rule is
    # built from its family's record, in a loop; a survey edition has rules of its own).
    rules = set()
    for edition in EDITIONS.values():
        shutil.copy(REPO / edition.config_file, tmp_path / "config.yaml")
        listing = subprocess.run(
            snakemake_command(tmp_path, "--list-rules", cores=None),
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        rules |= set(listing.stdout.split())
    assert {"train_model", "predict_knn", "predict_random_forest"} <= rules
    named = set(settings["set-resources"]) | set(settings["set-threads"])
    assert named <= rules, f"{PROFILE} names rules that do not exist: {named - rules}"


def job_caps() -> tuple[int, int]:
    """The most threads and memory (MB) a job of the test may ask for: the profile asks
    for what the archive needs (13 CPUs and 32 GB for a GPU job), more than the test node
    has. Two jobs side by side: 2 threads each (or the node's CPUs) and half its memory."""
    node = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%c %m"], capture_output=True, text=True, check=True
    )
    cpus, memory = node.stdout.split()[:2]
    return min(2, int(cpus)), int(memory) // 2


def finished_jobs() -> dict[int, dict[str, str]]:
    """The cluster's own record of every finished job, by job id: its fields (ProcCnt, the
    CPUs it was given; Tres, with mem=<MB>M) from the job completion log that slurm.conf
    names (JobCompLoc; tools/local-slurm/start.sh)."""
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    location = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, flags=re.M)
    assert location, "the cluster keeps no job completion log (JobCompLoc in slurm.conf)"
    jobs = {}
    for line in Path(location[1]).read_text().splitlines():
        fields = dict(field.split("=", 1) for field in line.split() if "=" in field)
        jobs[int(fields["JobId"])] = fields
    return jobs


def slurm_job_ids(output: str) -> dict[str, list[int]]:
    """Per rule, the SLURM job ids of the jobs Snakemake submitted (from its messages)."""
    ids: dict[str, list[int]] = {}
    for job_id, rule in re.findall(
        r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", output
    ):
        ids.setdefault(rule, []).append(int(job_id))
    return ids


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
    threads, memory_mb = job_caps()
    command = snakemake_command(
        workdir,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "submission",
        *extra,
        # Snakemake's own caps shrink each job's request to fit, as on a cluster of small
        # nodes (mem_mb's scope is local: a cap per job, not a sum over jobs).
        "--max-threads",
        str(threads),
        "--resources",
        f"mem_mb={memory_mb}",
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


@pytest.mark.slurm
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


@pytest.mark.slurm
def test_every_job_gets_its_threads_as_cpus_and_its_mem_mb_from_slurm(first_invocation):
    output, _ = first_invocation
    threads, memory_mb = job_caps()
    records = finished_jobs()
    granted: dict[str, set[tuple[int, int]]] = {}
    for rule, ids in slurm_job_ids(output).items():
        assert set(ids) <= set(records), (
            f"{rule}: no SLURM record of jobs {set(ids) - set(records)}"
        )
        for job_id in ids:
            memory = re.search(r"\bmem=(\d+)M", records[job_id]["Tres"])
            assert memory, f"job {job_id} ({rule}): {records[job_id]['Tres']}"
            granted.setdefault(rule, set()).add((int(records[job_id]["ProcCnt"]), int(memory[1])))
    print("CPUs and MB per rule, as SLURM gave them:", dict(sorted(granted.items())))
    # Every job's memory is its rule's mem_mb in the profile (capped per job to fit the node).
    for rule, given in granted.items():
        assert {mb for _, mb in given} == {min(profile_mem_mb(rule), memory_mb)}, rule
    # CPUs follow threads: `threads: 2` -> 2 CPUs, no threads -> 1, the profile's 8 and 13
    # (set-threads) -> the test's cap of 2 (--max-threads), a GPU job included.
    assert {c for c, _ in granted["generate_demo_dataset"]} == {min(2, threads)}
    assert {c for c, _ in granted["ingest_observations"]} == {1}
    assert {c for c, _ in granted["cache_patch_shard"]} == {min(8, threads)}
    assert {c for c, _ in granted["train_model"]} == {min(13, threads)}


@pytest.mark.slurm
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
