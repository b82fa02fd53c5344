# Shared names and paths: where the input data lives, where every output goes, which
# models exist. Every rule file reads these; none depends on another for a name.

import functools
import json
import os
import re
import uuid
from dataclasses import asdict
from pathlib import Path

import yaml

from geolifeclef.settings.backbones import check_backbones
from geolifeclef.settings.catalog import build_catalog
from geolifeclef.settings.families import BASELINES, family_of
from geolifeclef.settings.workflow import WorkflowSettings
from geolifeclef.settings.experiment import (
    TRAINING_SPLITS,
    ExperimentSettings,
    shaping_settings,
)
from geolifeclef.layout import PATCH_SIZE, REGIONS, SPLITS, DatasetLayout
from geolifeclef.settings.inputs import PATCH_STAT_GROUPS
from geolifeclef.settings.sweeps import parse_selector
from geolifeclef.settings.archive import (
    archive_inputs,
    check_archive,
    fingerprint,
    patch_files_fingerprint,
)
from geolifeclef.settings.tracking import Tracking, default_tracking_uri
from geolifeclef.settings.validation import ConfigError, check_settings, validate_config

# -- where files go ---------------------------------------------------------------------
# The edition (geolifeclef.editions, decided in the Snakefile) gives the layout and the task.
TASK = EDITION.task
DEMO_ROOT = EDITION.demo_root
DEMO_TRUTH = EDITION.demo_truth
USING_DEMO = not config["data"]["root"]
DATA_ROOT = DEMO_ROOT if USING_DEMO else Path(config["data"]["root"]).expanduser()
LAYOUT = EDITION.layout(DATA_ROOT)
# The rules across fields that jobs check, checked before any job. The archive's patches
# are 256 px; the demo's have the side its config gives (a preset's is checked by the job).
check_settings(
    config,
    source_patch_size=(
        LAYOUT.names.patch_size
        if EDITION.surveys
        else config["demo"]["patch_size"] if USING_DEMO else PATCH_SIZE
    ),
)

# Every rule runs in the one environment that `make setup` installs with pip, or conda from
# environment.yml with --software-deployment-method conda (relative to the rule files).
ENVIRONMENT = "../../environment.yml"


def results(path):
    """A path under results/ (every output of the workflow but the demo dataset)."""
    return f"results/{path}"


def logs(name):
    return f"logs/{name}.log"


def benchmarks(name):
    return f"benchmarks/{name}.tsv"


def predictions(model, split):
    """The predictions table of any model (baseline, blend or experiment) and split."""
    return results(f"predictions/{model}/{split}.parquet")


def model_file(model, name):
    """A file of a trained model's folder (weights, history, checkpoints, forest)."""
    return results(f"models/{model}/{name}")


# -- which models exist -------------------------------------------------------------------
# Sweeps become experiments here, before anything reads the experiment names.
CATALOG = build_catalog(
    config,
    yaml.safe_load(CONFIG_SCHEMA.read_text())["properties"]["experiments"][
        "additionalProperties"
    ],
)
config["experiments"] = CATALOG.experiments
validate_config(config, CONFIG_SCHEMA)  # every sweep member, as any experiment
# Each experiment's typed settings, built once from its validated entry and the edition's
# task (one species per row, or the set present: multi-label): the rules hand them to the
# jobs, and a bad setting stops the workflow before any job runs.
EXPERIMENT_SETTINGS = {
    name: ExperimentSettings.from_config(name, entry, multi_label=TASK.multi_label)
    for name, entry in CATALOG.experiments.items()
}
# Every other stage's typed settings (geolifeclef.settings.workflow), the same way: the
# rules hand their sections to the jobs.
SETTINGS = WorkflowSettings.from_config(config)
BASELINE_SETTINGS = SETTINGS.baselines
# What the workflow reads from the archive (geolifeclef.settings.archive), checked before any
# job: the folder and the observation CSVs, which every target starts from, here; each other
# part in the input function of a step that reads it, which Snakemake calls for every step
# of the planned targets, also one whose outputs exist (alone, it would keep outputs whose
# input is gone). And each part's fingerprint is a param of the step that reads it: a
# changed, replaced or moved file reruns that step and what it feeds, where Snakemake
# alone compares times and keeps results built from another archive.
ARCHIVE_INPUTS = LAYOUT.archive_parts() if EDITION.surveys else archive_inputs(LAYOUT)
# The species a submission may name: GLC 2022's listed species; a survey edition's label ids
# are checked by number (geolifeclef.evaluation.set_submission).
SPECIES_LIST = [] if EDITION.surveys else str(LAYOUT.species_details)
if not USING_DEMO:
    check_archive(LAYOUT, {"observations": ARCHIVE_INPUTS["observations"]})


def archive_files(part):
    """The input function of a step that reads the archive's ``part``: its files, refused
    by name when one is missing (the demo's are outputs of its generation)."""

    def files(wildcards):
        if not USING_DEMO:
            check_archive(LAYOUT, {part: ARCHIVE_INPUTS[part]})
        return [str(p) for p in ARCHIVE_INPUTS[part]]

    return files


def archive_fingerprint(part):
    """The param of a step that reads the archive's ``part``: its files' fingerprint."""
    return lambda wildcards: "demo" if USING_DEMO else part_fingerprint(part)


@functools.cache
def part_fingerprint(part):
    """Once per invocation, not once per job: Snakemake calls a param's function for every
    job of the rule, and again when it schedules the job."""
    return fingerprint(ARCHIVE_INPUTS[part])


def split_patch_files(table, modalities):
    """The param of a step that reads the patch files of a split (``table``: its
    observations) for ``modalities``: their fingerprint, so that a changed, replaced or
    restored file reruns the caches of its split only.

    A function of the wildcards alone: Snakemake neither records nor compares a param
    computed from ``input``. Planned before ingest wrote the table, the value is a
    placeholder that nothing records: Snakemake asks again, for the value it records,
    when the job's inputs are written and it schedules the job. A job that a cluster runs
    parses the workflow again, but records nothing: it skips the scan, which every shard
    job of the split would repeat at once on the shared file system."""
    if USING_DEMO:
        return "demo"
    if not IS_MAIN_INVOCATION:
        return "checked by the invocation that planned the job"
    try:
        status = os.stat(table)
    except FileNotFoundError:
        return f"{table} not written yet"
    return split_patch_fingerprint(
        table, status.st_size, status.st_mtime_ns, tuple(modalities)
    )


@functools.cache
def split_patch_fingerprint(table, size, mtime_ns, modalities):
    """Once per table (its path, size and time) and invocation: it stats every patch file
    of the split (7-25 s a million, bench/bench_change_check.py), and every shard job
    of the split asks for it twice."""
    return patch_files_fingerprint(LAYOUT, table, modalities)


PREDICTED_SPLITS = ("val", "test")
BASELINE_MODELS = list(CATALOG.baselines)
BLEND_MODELS = list(CATALOG.blends)
FITTED_BLENDS = list(CATALOG.fitted_blends)
EXPERIMENTS = list(CATALOG.experiments)
SWEEPS = CATALOG.sweeps
MODELS = CATALOG.models
MODEL_KIND = {model: CATALOG.kind(model) for model in MODELS}
SUBMITTED = SETTINGS.submission.model
if TASK.multi_label:
    # Their fit is the likelihood of the sets' cells (predictions.set_blend_fit).
    for name in FITTED_BLENDS:
        if SETTINGS.fitted_blends[name].method != "likelihood":
            raise ConfigError(
                f"fitted_blends.{name}.method: {SETTINGS.fitted_blends[name].method}: "
                f"edition {EDITION.name}'s fitted blends fit by likelihood (top30 is GLC "
                "2022's metric); remove method or set it to likelihood"
            )
SUBMISSION_CANDIDATES = MODELS if SUBMITTED == "best" else [SUBMITTED]


def sweep_description(sweep):
    """A sweep as its rules' params: name, base, varied keys, members and their settings."""
    found = SWEEPS[sweep]
    return {
        "name": found.name,
        "base": found.base,
        "varied": list(found.varied),
        "members": found.members,
    }


def refitted(model):
    """Whether a model's test predictions come from a fit on train + val."""
    if model in EXPERIMENTS:
        return config["experiments"][model]["refit"]
    return BASELINE_SETTINGS[model].refit if model in BASELINE_MODELS else False


def test_fit(model):
    """What the test predictions of ``model`` were fitted on, for the leaderboard."""
    if model in BLEND_MODELS + FITTED_BLENDS:
        refits = {refitted(part) for part in CATALOG.blend_members(model)}
        return (
            "mixed"
            if len(refits) > 1
            else ("train+val" if refits == {True} else "train")
        )
    return "train+val" if refitted(model) else "train"


def one_of(names):
    """Wildcard constraint matching exactly one of ``names`` (nothing when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def canonical(value):
    """A value as sorted JSON: the params Snakemake compares do not depend on key order."""
    return json.dumps(value, sort_keys=True)


def rerun_key(settings):
    """A typed settings object as a param Snakemake compares (it skips values it cannot
    print, such as the object itself): a changed setting reruns the step."""
    return canonical(asdict(settings))


def experiment_reads(experiment):
    """What an experiment reads: patch caches, env table, patch statistics (decided by the
    package, geolifeclef.settings.experiment.ExperimentSettings.inputs)."""
    return EXPERIMENT_SETTINGS[experiment].inputs


# -- tracking ------------------------------------------------------------------------------
# Resolved once here and handed to every job through the environment (Tracking.export says
# why not through params); mlflow.* settings rerun nothing.
TRACKING = Tracking(
    config["mlflow"]["tracking_uri"] or default_tracking_uri(),
    config["mlflow"]["experiment"],
)
TRACKING.export()
# The invocation that the user started; the jobs it spawns (local or SLURM) inherit its id.
IS_MAIN_INVOCATION = "GLC_INVOCATION_ID" not in os.environ
os.environ.setdefault("GLC_INVOCATION_ID", uuid.uuid4().hex[:12])
# A timm backbone's name is checked by the invocation the user started (a dry run too), not
# again by each job that parses the Snakefile anew (on SLURM): reading timm's registry
# imports timm (torch, torchvision: seconds), which only a config naming one pays for.
if IS_MAIN_INVOCATION:
    check_backbones(EXPERIMENT_SETTINGS, CATALOG)
