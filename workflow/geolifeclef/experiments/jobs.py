"""An experiment end to end: settings from the config -> trained model -> predictions.

The rules ``train_model`` and ``predict_model`` describe their work as a typed job
(:class:`TrainingJob`, :class:`PredictionJob`: every input, output and setting, passed in by
the rule) and call :func:`run_training` and :func:`run_prediction`. A job also runs
outside Snakemake from its JSON file (and so under torchrun for several GPUs, see
``geolifeclef.experiments.launch``)::

    geolifeclef run-job train job.json
    geolifeclef run-job predict job.json
"""

import contextlib
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from geolifeclef.atomic import atomic_path, write_text
from geolifeclef.data.class_frequency import read_species_table
from geolifeclef.data.dataset import JoinedDataset
from geolifeclef.errors import InputDataError
from geolifeclef.experiments.learning_curve import plot_learning_curve
from geolifeclef.experiments.serving import log_trained_model
from geolifeclef.experiments.trained import (
    ExperimentInputs,
    experiment_dataset,
    experiment_loader,
    load_trained,
)
from geolifeclef.experiments.training import (
    StopRequest,
    block_label_swap,
    distributed_world,
    pick_device,
    predict_scores,
    seed_everything,
    selection_metric,
    train,
)
from geolifeclef.models.backbones import check_backbone
from geolifeclef.models.networks import build_model
from geolifeclef.predictions.metrics import val_name
from geolifeclef.predictions.table import PredictionWriter, table_k
from geolifeclef.rule_logging import logging_to
from geolifeclef.settings.experiment import ExperimentSettings, shaping_settings
from geolifeclef.settings.inputs import TABULAR_SIZES
from geolifeclef.settings.tracking import Tracking
from geolifeclef.tracking import runs as tracking
from geolifeclef.tracking.invocation import sweep_run
from geolifeclef.tracking.records import MODEL_URI_KEY, RUN_ID_KEY, best_epoch_metrics
from geolifeclef.tracking.runs import LocalMetricLog, Tracker, flatten

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Jobs: what a rule hands over
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingJob:
    """Everything ``run_training`` needs: one experiment's settings, inputs and outputs."""

    settings: ExperimentSettings
    """As the Snakefile built them from the config and the edition's task (the data they
    need comes when the job runs: ``model.n_classes`` and a multi-label task's species
    from ``species_table``, the env width from ``inputs.stats``)."""
    inputs: ExperimentInputs
    """Of the splits train and val."""
    species_table: str
    model: str
    history: str
    checkpoint_dir: str
    """Not an output: Snakemake deletes a failed job's outputs, checkpoints must stay."""
    local_metrics: str
    tracking: Tracking
    rule: str = "train_model"
    fingerprint_inputs: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    log_model: bool = True
    log: str | None = None
    """Log file of a job run from JSON (torchrun); a rule logs through its own ``log:``."""
    refit_epochs: int | None = None
    """Refit: train on train + val for this many epochs, without validation (the epochs
    the train-only fit found best), for the test predictions."""
    sweep: str | None = None
    """The sweep the experiment is a member of: its MLflow run nests under the sweep's."""
    learning_curve: str | None = None
    """Where to draw loss and val errors per epoch (``geolifeclef.experiments.learning_curve``)."""
    served_inputs: ExperimentInputs | None = None
    """Every split's inputs, relative to the workflow's folder: where the logged MLflow
    model reads the rows it predicts (``geolifeclef.experiments.serving``); None: no model
    logged."""
    presence_only: ExperimentInputs | None = None
    """The presence-only surveys to pre-train on (split ``train``: their table and their
    borrowed values, ``geolifeclef.data.presence_only``), for settings with
    ``train.po_pretrain_epochs``."""


@dataclass(frozen=True)
class PredictionJob:
    """Everything ``run_prediction`` needs: the trained model of each split (the refit one
    for test when the experiment refits), inputs and one output per split."""

    models: dict[str, str]
    inputs: ExperimentInputs
    """Of the predicted splits."""
    outputs: dict[str, str]
    top_k: int
    tta: bool = False
    """Average over the 8 flips and rotations of the patches (a prediction setting)."""
    log: str | None = None


def write_job(job: TrainingJob | PredictionJob, path: str | Path) -> None:
    values = asdict(job)
    if isinstance(job, TrainingJob):  # in the form a config entry has, named
        values["settings"] = {"name": job.settings.name, **job.settings.to_config()}
    Path(path).write_text(json.dumps(values, indent=1))


def read_job(path: str | Path) -> TrainingJob | PredictionJob:
    """A job written by ``write_job`` (the kind is told by its fields)."""
    values = json.loads(Path(path).read_text())
    values["inputs"] = ExperimentInputs(**values["inputs"])
    if "tracking" in values:
        settings = values["settings"]
        values["settings"] = ExperimentSettings.from_config(settings.pop("name"), settings)
        values["tracking"] = Tracking(**values["tracking"])
        for key in ("served_inputs", "presence_only"):
            if values.get(key):
                values[key] = ExperimentInputs(**values[key])
        for key in ("fingerprint_inputs", "artifacts"):
            values[key] = tuple(values[key])
        return TrainingJob(**values)
    return PredictionJob(**values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: geolifeclef run-job {train|predict} job.json\n\n" + (__doc__ or "")
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if len(argv) != 2 or argv[0] not in ("train", "predict"):
        print(usage, file=sys.stderr)
        return 2
    job = read_job(argv[1])
    rank = int(os.environ.get("RANK", 0))
    with logging_to(job.log if rank == 0 else None):
        if argv[0] == "train":
            run_training(job)
        else:
            run_prediction(job)
    return 0


# --------------------------------------------------------------------------------------
# Running jobs
# --------------------------------------------------------------------------------------


def load_species_counts(species_table: str | Path) -> np.ndarray:
    """Train observations per species id (index = species id = class index)."""
    table = read_species_table(species_table)
    counts = np.zeros(int(table["species_id"].max()) + 1, dtype=np.int64)
    counts[table["species_id"].to_numpy()] = table["train_count"].to_numpy()
    return counts


def output_species(
    species_table: str | Path, multi_label: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The classes of a model: (train count of each output column, the species id of
    each column or None). Single-label (GLC 2022): column = species id, as
    ``load_species_counts``. Multi-label: one column per species of the table, in
    ascending id (a survey edition's ids are not contiguous: 0..11,254 in the archive,
    a random subset of them in a demo)."""
    if not multi_label:
        return load_species_counts(species_table), None
    table = read_species_table(species_table).sort_values("species_id", kind="stable")
    return table["train_count"].to_numpy(np.int64), table["species_id"].to_numpy(np.int64)


def env_width(stats: str | Path) -> int:
    """Variables of the env table, as its normalisation statistics name them (GLC 2022's
    27, a survey edition's own)."""
    environment = json.loads(Path(stats).read_text()).get("environment")
    if not environment:
        raise InputDataError(
            stats,
            "no statistics of the env table (section environment)",
            "compute them with the env table: snakemake results/normalization/stats.json",
        )
    return len(environment["variables"])


def run_training(job: TrainingJob) -> dict:
    """Train one experiment; write ``job.model`` (best weights + settings) and
    ``job.history``. Logged to MLflow as a run (see geolifeclef.tracking.runs). On SIGTERM
    it stops at the next safe point with a checkpoint, its run ended KILLED
    (``StoppedBySignal``)."""
    with StopRequest().watching() as stop:
        return _run_training(job, stop)


def _run_training(job: TrainingJob, stop: StopRequest) -> dict:
    counts, species_ids = output_species(job.species_table, job.settings.multi_label)
    settings = _checked_settings(job, len(counts), species_ids)
    config = settings.train
    if job.refit_epochs:
        config = replace(config, epochs=job.refit_epochs)
    make_train_loader, val_loader = _training_loaders(job, settings, config)
    seed_everything(config.seed)  # initial weights: the same in every process, as resumes need
    model = build_model(settings.model)
    checkpoint = Path(job.checkpoint_dir) / f"{settings.fingerprint()}.pt"
    best = Path(job.checkpoint_dir) / f"{settings.fingerprint()}-best.pt"
    rank, _ = distributed_world()
    with _training_run(job, settings, rank) as tracker:
        params = {"experiment": settings.name, **shaping_settings(settings)}
        tracker.log_params(params)
        # The observation tables read: the runs table's Dataset column (digest, rows).
        tracker.log_input(job.inputs.observations["train"], "training")
        tracker.log_input(
            job.inputs.observations["val"], "training" if job.refit_epochs else "validation"
        )
        if config.po_pretrain_epochs:
            _pretrain_on_presence_only(job, settings, model, counts, val_loader, tracker, stop)
        state = train(
            model,
            make_train_loader,
            val_loader,
            config,
            counts,
            checkpoint,
            best,
            on_epoch=lambda epoch, metrics: tracker.log_metrics(metrics, step=epoch),
            multi_label=settings.multi_label,
            stop=stop,
        )
        if rank != 0:
            return {}
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
        _save_bundle(model, settings, job.model)
        return _record_results(job, settings, state, tracker, params)


PRESENCE_ONLY_PREFIX = "po_"
"""What the pre-training's metrics are logged under (``po_loss``, ``po_val_top25_f1``...)."""


def _pretrain_on_presence_only(job, settings, model, counts, val_loader, tracker, stop) -> None:
    """Fit ``model`` on the presence-only surveys for ``po_pretrain_epochs``, with the
    fit's other settings, keeping the epoch best on val (the last one for a refit): the
    weights the fit on the surveys starts from. Checkpointed like the fit (a killed job
    resumes it; a finished one is read back)."""
    config = settings.train
    if job.presence_only is None:
        raise ValueError(
            f"experiment {settings.name}: train.po_pretrain_epochs needs the presence-only "
            "tables (results/presence_only/), which the rule train_model gives"
        )
    dataset = experiment_dataset(job.presence_only, "train", settings)
    _check_labels(settings, dataset, job.presence_only.observations["train"])
    log.info(
        "pre-training on %d presence-only surveys for %d epochs",
        len(dataset),
        config.po_pretrain_epochs,
    )
    pretraining = replace(config, epochs=config.po_pretrain_epochs, po_pretrain_epochs=0)
    stem = Path(job.checkpoint_dir) / f"{settings.fingerprint()}-{PRESENCE_ONLY_PREFIX}"
    train(
        model,
        lambda epoch: experiment_loader(
            dataset, config.batch_size, config.num_workers, True, config.seed * 1000 + epoch
        ),
        val_loader,
        pretraining,
        counts,
        Path(f"{stem}last.pt"),
        Path(f"{stem}best.pt"),
        on_epoch=lambda epoch, metrics: tracker.log_metrics(
            {PRESENCE_ONLY_PREFIX + key: value for key, value in metrics.items()}, step=epoch
        ),
        multi_label=True,
        stop=stop,
    )
    weights = torch.load(f"{stem}best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(weights)


def _checked_settings(job: TrainingJob, n_classes: int, species_ids: np.ndarray | None):
    """The job's settings for ``n_classes`` species (of ``species_ids``, a multi-label
    task's) and the env table's width, its backbone checked before any data is read (as
    the Snakefile did, for a job run without it); logs what is trained."""
    width = env_width(job.inputs.stats) if job.settings.inputs.env else TABULAR_SIZES["env"]
    settings = job.settings.with_data(n_classes, width, species_ids)
    if settings.model.reads.uses_patches:
        try:
            check_backbone(settings.model.cnn.backbone)
        except ValueError as error:
            raise ValueError(f"experiment {settings.name}: {error}") from None
    rank, world = distributed_world()
    log.info(
        "experiment %s: %s model, tabular %s (%d features), modalities %s, cubes %s, "
        "%d classes%s, rank %d of %d; %s",
        settings.name,
        settings.model.kind,
        settings.tabular,
        settings.model.n_tabular,
        settings.inputs.patch_modalities,
        settings.inputs.cubes,
        n_classes,
        " (multi-label)" if settings.multi_label else "",
        rank,
        world,
        " ".join(f"{k}={os.environ.get(k, '-')}" for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")),
    )
    return settings


def _training_loaders(job: TrainingJob, settings, config):
    """A function that gives each epoch's train loader (its labels swapped within spatial
    blocks when ``block_label_swap`` says so), and the val loader (None for a refit, which
    fits on train + val)."""
    train_set = experiment_dataset(job.inputs, "train", settings)
    val_set = experiment_dataset(job.inputs, "val", settings)
    for split, dataset in (("train", train_set), ("val", val_set)):
        _check_labels(settings, dataset, job.inputs.observations[split])
    if job.refit_epochs:
        train_set = JoinedDataset([train_set, val_set])
        log.info("refit on train + val (%d rows) for %d epochs", len(train_set), config.epochs)
    # The settings refuse a block label swap for a multi-label task (no labels array).
    original_labels = train_set.labels.copy() if config.block_label_swap > 0 else None
    coords = train_set.coords

    def make_train_loader(epoch: int):
        if config.block_label_swap > 0:
            rng = np.random.default_rng([config.seed, epoch])
            train_set.labels = block_label_swap(
                original_labels,
                coords[:, 0],
                coords[:, 1],
                config.block_label_swap,
                config.block_size_degrees,
                rng,
            )
        return experiment_loader(
            train_set, config.batch_size, config.num_workers, True, config.seed * 1000 + epoch
        )

    if job.refit_epochs:
        return make_train_loader, None
    val_loader = experiment_loader(
        val_set, max(config.batch_size, 256), config.num_workers, False, 0
    )
    return make_train_loader, val_loader


def _check_labels(settings: ExperimentSettings, dataset, table: str) -> None:
    """A split to fit on must have the labels of the experiment's task: a species per
    row, or a multi-label task's sets of species present."""
    if settings.multi_label and dataset.label_sets is None:
        wanted = "multi-label: it needs species_ids lists, the species of each survey"
    elif not settings.multi_label and dataset.labels is None:
        wanted = "single-label: it needs a species_id on every row"
    else:
        return
    raise InputDataError(
        table,
        f"experiment {settings.name} is {wanted}",
        "train on the observation tables of the config's edition (rerun the rule that writes them)",
    )


def _training_run(job: TrainingJob, settings, rank: int):
    """The MLflow run of the fit (rank 0; the other ranks log nowhere), with its tags."""
    if rank != 0:
        return _offline_tracker()
    tags = {
        "git_commit": tracking.git_commit(),
        "mlflow.source.git.commit": tracking.git_commit(),
        "mlflow.source.name": "workflow/scripts/train_model.py",
        "data_fingerprint": tracking.fingerprint(list(job.fingerprint_inputs)),
        "snakemake.rule": job.rule,
        "wildcards.experiment": settings.name,
        "settings_fingerprint": settings.fingerprint(),
        "fitted_on": _fitted_on(job),
    }
    if job.sweep is not None:
        tags["glc.sweep"] = job.sweep
    return tracking.start_run(
        job.tracking.uri,
        job.tracking.experiment,
        f"{'refit' if job.refit_epochs else 'train'} {settings.name}",
        job.local_metrics,
        tags=tags,
        parent_run_id=sweep_run(job.sweep),
        system_metrics=True,
    )


def _fitted_on(job: TrainingJob) -> str:
    return "train+val" if job.refit_epochs else "train"


def _save_bundle(model, settings, path) -> None:
    """The trained model as ``load_trained`` reads it: weights, settings, class count (and
    a survey edition's env width and output species, ``ExperimentSettings.data``)."""
    bundle = {
        "name": settings.name,
        "settings": settings.to_config(),
        **settings.data(),
        "state_dict": model.state_dict(),
    }
    with atomic_path(path) as temporary:
        torch.save(bundle, temporary)


def _record_results(job: TrainingJob, settings, state, tracker, params: dict) -> dict:
    """Write and log what a fit leaves: the history (with the kept epoch, the run and the
    logged model), the kept epoch's figures, the learning curve, the settings, the MLflow
    model; returns the history."""
    summary = {
        "experiment": settings.name,
        "fitted_on": _fitted_on(job),
        "best_epoch": state.best_epoch + 1,
        # best_val_top30_error (a multi-label task: best_val_top25_f1)
        f"best_{val_name(selection_metric(settings.multi_label).name)}": state.best_value,
        "epochs_run": state.epoch,
        "history": state.history,
    }
    if not job.refit_epochs:
        # The kept epoch's figures under their own names: a run's row in the runs table
        # shows the last value of a per-epoch metric, not the kept one.
        best_metrics = best_epoch_metrics(state.history, state.best_epoch + 1)
        tracker.log_metrics(best_metrics, step=state.best_epoch + 1)
    if job.learning_curve:
        plot_learning_curve(summary, job.learning_curve)
        tracker.log_artifact(job.learning_curve)
    config_file = Path(job.history).with_name("settings.json")
    write_text(config_file, json.dumps(settings.to_config(), indent=2) + "\n")
    tracker.log_artifact(config_file)
    for artifact in job.artifacts:
        tracker.log_artifact(artifact)
    if job.log_model and job.served_inputs is not None:
        model_name = settings.name if not job.refit_epochs else f"{settings.name}_refit"
        summary[MODEL_URI_KEY] = log_trained_model(
            tracker,
            model_name,
            job.model,
            job.served_inputs,
            params=flatten(params),
            step=state.best_epoch + 1,
        )
    if tracker.online:
        summary[RUN_ID_KEY] = tracker.run_id
    summary = {key: value for key, value in summary.items() if value is not None}
    write_text(job.history, json.dumps(summary, indent=2, allow_nan=True) + "\n")
    tracker.log_artifact(job.history)
    return summary


def _offline_tracker():
    """Ranks other than 0 do not log: a tracker with nowhere to send anything."""
    return contextlib.nullcontext(Tracker(LocalMetricLog(os.devnull), None, None))


def best_epoch(history: str | Path) -> int:
    """The epoch (1-based) that a train-only fit kept, from its ``history.json``."""
    return int(json.loads(Path(history).read_text())["best_epoch"])


def run_prediction(job: PredictionJob) -> None:
    """Write the top-K predictions of a trained experiment for each split of ``job``."""
    device = pick_device()
    if job.tta:
        log.info("test-time augmentation: 8 views (2 flips x 4 rotations) averaged")
    for split, output in job.outputs.items():
        settings, model = load_trained(job.models[split])
        model.to(device)
        log.info("%s: predicted by %s", split, job.models[split])
        species = settings.column_species
        k = table_k(job.top_k, len(species))
        dataset = experiment_dataset(job.inputs, split, settings)
        loader = experiment_loader(dataset, 512, settings.train.num_workers, False, 0)
        # A multi-label task's scores are marginal probabilities: a row need not sum to 1.
        marginal = settings.multi_label
        with PredictionWriter(output, k=k, species_ids=species, marginal=marginal) as writer:
            scores = predict_scores(
                model,
                loader,
                device,
                tta=job.tta,
                progress=f"predict {split}",
                multi_label=settings.multi_label,
            )
            for observation_ids, probabilities, _ in scores:
                writer.add_scores(observation_ids, probabilities)
        log.info("%s: %d predictions -> %s", split, writer.n_rows, output)


if __name__ == "__main__":
    sys.exit(main())
