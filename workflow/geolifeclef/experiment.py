"""An experiment end to end: settings from the config -> trained model -> predictions.

The rules ``train_model`` and ``predict_model`` describe their work as a typed job
(:class:`TrainingJob`, :class:`PredictionJob`: every input, output and setting, passed in by
the rule) and call :func:`run_training` and :func:`run_prediction`. A job also runs
outside Snakemake from its JSON file (and so under torchrun for several GPUs, see
``geolifeclef.launch``)::

    python -m geolifeclef.experiment train job.json
    python -m geolifeclef.experiment predict job.json
"""

import contextlib
import hashlib
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .class_frequency import read_species_table
from .features import TABULAR_SIZES, ModelBatch, patch_modalities
from .models import CnnConfig, MlpConfig, ModelConfig, build_model
from .tracking import Tracking
from .training import AugmentConfig, TrainConfig

log = logging.getLogger(__name__)

DEFAULT_TABULAR = ("env", "coordinates")
"""Tabular feature groups of an experiment that names none."""
TRAINING_SPLITS = ("train", "val")
"""The splits a training job reads: it fits on train and picks its best epoch on val."""
PREDICTION_SETTINGS = ("tta",)
"""Keys of an experiment entry that act at prediction only: changing them never retrains."""


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


def _dataclass_from(cls, values: dict[str, Any] | None, **nested):
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    for name, nested_cls in nested.items():
        values[name] = _dataclass_from(nested_cls, values.get(name))
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


def weight_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """The part of an experiment's config entry that shapes its weights: a change here
    retrains (the rule's params), a change elsewhere only re-predicts."""
    return {key: value for key, value in entry.items() if key not in PREDICTION_SETTINGS}


def experiment_modalities(entry: dict[str, Any]) -> tuple[str, ...]:
    """Patch modalities an experiment's config entry loads; empty: it reads no cache."""
    model = entry["model"]
    return patch_modalities(
        model["kind"], model.get("modalities", ()), model.get("tabular", DEFAULT_TABULAR)
    )


@dataclass(frozen=True)
class ExperimentSettings:
    """The weight settings of one entry of ``experiments`` in the config, as typed objects
    (prediction settings, ``PREDICTION_SETTINGS``, travel in the ``PredictionJob``)."""

    name: str
    model: ModelConfig
    tabular: tuple[str, ...]
    train: TrainConfig

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any], n_classes: int) -> "ExperimentSettings":
        model = dict(entry["model"])
        tabular = tuple(model.pop("tabular", DEFAULT_TABULAR))
        unknown = set(tabular) - set(TABULAR_SIZES)
        if unknown:
            raise ValueError(f"experiment {name}: unknown tabular features {sorted(unknown)}")
        n_tabular = sum(TABULAR_SIZES[t] for t in tabular) if model["kind"] != "cnn" else 0
        model_config = _dataclass_from(
            ModelConfig,
            {**model, "n_classes": n_classes, "n_tabular": n_tabular},
            mlp=MlpConfig,
            cnn=CnnConfig,
        )
        train = _dataclass_from(TrainConfig, entry.get("train"), augment=AugmentConfig)
        return cls(name, model_config, tabular, train)

    @property
    def patch_modalities(self) -> tuple[str, ...]:
        """Modalities to load: those of the CNN plus those the tabular features read."""
        return patch_modalities(self.model.kind, self.model.modalities, self.tabular)

    @property
    def cnn_modalities(self) -> tuple[str, ...]:
        return self.model.modalities if self.model.kind != "mlp" else ()

    def fingerprint(self) -> str:
        """Hash of everything that shapes the weights: a checkpoint of other settings is
        never resumed."""
        text = json.dumps(
            {"model": asdict(self.model), "tabular": self.tabular, "train": asdict(self.train)},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------
# Jobs: what a rule hands over
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentInputs:
    """What an experiment reads, per split: patch caches (none when it reads no patches,
    see ``experiment_modalities``) or observation tables, the env table and statistics."""

    observations: dict[str, str]
    env_table: str
    stats: str
    caches: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingJob:
    """Everything ``run_training`` needs: one experiment's settings, inputs and outputs."""

    name: str
    settings: dict[str, Any]
    """The experiment's config entry (``weight_settings`` of it)."""
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


@dataclass(frozen=True)
class PredictionJob:
    """Everything ``run_prediction`` needs: a trained model, inputs and one output per split."""

    model: str
    inputs: ExperimentInputs
    """Of the predicted splits."""
    outputs: dict[str, str]
    top_k: int
    tta: bool = False
    """Average over the 8 flips and rotations of the patches (a prediction setting)."""
    log: str | None = None


def write_job(job: TrainingJob | PredictionJob, path: str | Path) -> None:
    Path(path).write_text(json.dumps(asdict(job), indent=1))


def read_job(path: str | Path) -> TrainingJob | PredictionJob:
    """A job written by ``write_job`` (the kind is told by its fields)."""
    values = json.loads(Path(path).read_text())
    values["inputs"] = ExperimentInputs(**values["inputs"])
    if "tracking" in values:
        values["tracking"] = Tracking(**values["tracking"])
        for key in ("fingerprint_inputs", "artifacts"):
            values[key] = tuple(values[key])
        return TrainingJob(**values)
    return PredictionJob(**values)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("train", "predict"):
        print("usage: python -m geolifeclef.experiment {train|predict} job.json", file=sys.stderr)
        return 2
    from .rule_logging import logging_to

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


def _dataset(inputs: ExperimentInputs, split: str, settings: ExperimentSettings):
    """The GlcDataset of ``split`` with the transform to model batches."""
    from .dataset import GlcDataset

    modalities = settings.patch_modalities
    common = {
        "env_table": inputs.env_table if "env" in settings.tabular else None,
        "stats": inputs.stats,
        "transform": ModelBatch(settings.tabular, settings.cnn_modalities),
    }
    if modalities:
        # On CUDA, an encoded store's JPEGs are decoded on the GPU (ignored for decoded).
        from .training import pick_device

        device = pick_device()
        jpeg_device = str(device) if device.type == "cuda" else None
        return GlcDataset(
            inputs.caches[split], modalities=modalities, jpeg_device=jpeg_device, **common
        )
    return GlcDataset(None, observations=inputs.observations[split], modalities=(), **common)


def _loader(dataset, batch_size: int, num_workers: int, shuffle: bool, seed: int):
    """A loader over ``dataset``: sharded by rank under torchrun, one order per seed."""
    from torch.utils.data import DataLoader, DistributedSampler

    from .dataset import decoding_on_device, keep_batch, make_loader
    from .training import distributed_world

    rank, world = distributed_world()
    if world > 1 and shuffle:
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=num_workers,
            collate_fn=keep_batch,
            pin_memory=torch.cuda.is_available(),
        )
        return decoding_on_device(loader)
    return make_loader(
        dataset,
        batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        seed=seed,
        pin_memory=torch.cuda.is_available(),
    )


def load_species_counts(species_table: str | Path) -> np.ndarray:
    """Train observations per species id (index = species id = class index)."""
    table = read_species_table(species_table)
    counts = np.zeros(int(table["species_id"].max()) + 1, dtype=np.int64)
    counts[table["species_id"].to_numpy()] = table["train_count"].to_numpy()
    return counts


def run_training(job: TrainingJob) -> dict:
    """Train one experiment; write ``job.model`` (best weights + settings) and
    ``job.history``. Logged to MLflow as a run (see geolifeclef.tracking)."""
    from . import tracking
    from .atomic import atomic_path, write_text
    from .training import block_label_swap, distributed_world, seed_everything, train

    counts = load_species_counts(job.species_table)
    settings = ExperimentSettings.from_config(job.name, job.settings, n_classes=len(counts))
    config = settings.train
    rank, world = distributed_world()
    log.info(
        "experiment %s: %s model, tabular %s, modalities %s, %d classes, rank %d of %d; %s",
        settings.name,
        settings.model.kind,
        settings.tabular,
        settings.patch_modalities,
        len(counts),
        rank,
        world,
        " ".join(f"{k}={os.environ.get(k, '-')}" for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")),
    )
    train_set = _dataset(job.inputs, "train", settings)
    val_set = _dataset(job.inputs, "val", settings)
    original_labels = train_set.labels.copy()
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
        return _loader(
            train_set, config.batch_size, config.num_workers, True, config.seed * 1000 + epoch
        )

    val_loader = _loader(val_set, max(config.batch_size, 256), config.num_workers, False, 0)
    seed_everything(config.seed)  # initial weights: the same in every process, as resumes need
    model = build_model(settings.model)
    checkpoint = Path(job.checkpoint_dir) / f"{settings.fingerprint()}.pt"
    best = Path(job.checkpoint_dir) / f"{settings.fingerprint()}-best.pt"
    tags = {
        "git_commit": tracking.git_commit("."),
        "data_fingerprint": tracking.fingerprint(list(job.fingerprint_inputs)),
        "snakemake.rule": job.rule,
        "wildcards.experiment": settings.name,
        "settings_fingerprint": settings.fingerprint(),
    }
    run_context = (
        tracking.start_run(
            job.tracking.uri,
            job.tracking.experiment,
            f"train {settings.name}",
            job.local_metrics,
            tags=tags,
        )
        if rank == 0
        else _offline_tracker()
    )
    with run_context as tracker:
        tracker.log_params({"experiment": settings.name, **job.settings})
        state = train(
            model,
            make_train_loader,
            val_loader,
            config,
            counts,
            checkpoint,
            best,
            on_epoch=lambda epoch, metrics: tracker.log_metrics(metrics, step=epoch),
        )
        if rank != 0:
            return {}
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
        bundle = {
            "name": settings.name,
            "settings": job.settings,
            "n_classes": len(counts),
            "state_dict": model.state_dict(),
        }
        with atomic_path(job.model) as temporary:
            torch.save(bundle, temporary)
        summary = {
            "experiment": settings.name,
            "best_epoch": state.best_epoch + 1,
            "best_val_top30_error": state.best_error,
            "epochs_run": state.epoch,
            "history": state.history,
        }
        write_text(job.history, json.dumps(summary, indent=2) + "\n")
        tracker.log_metrics({"best_val_top30_error": state.best_error}, step=state.epoch)
        tracker.log_artifact(job.history)
        config_file = Path(job.history).with_name("settings.json")
        write_text(config_file, json.dumps(job.settings, indent=2) + "\n")
        tracker.log_artifact(config_file)
        for artifact in job.artifacts:
            tracker.log_artifact(artifact)
        if job.log_model:
            model.eval()
            tracker.log_model(model)
    return summary


def _offline_tracker():
    """Ranks other than 0 do not log: a tracker with nowhere to send anything."""
    from .tracking import LocalMetricLog, Tracker

    return contextlib.nullcontext(Tracker(LocalMetricLog(os.devnull), None, None))


def load_trained(path: str | Path) -> tuple[ExperimentSettings, torch.nn.Module]:
    """A trained model bundle written by ``run_training`` (safe loading only)."""
    bundle = torch.load(path, map_location="cpu", weights_only=True)
    settings = ExperimentSettings.from_config(
        bundle["name"], bundle["settings"], bundle["n_classes"]
    )
    model = build_model(settings.model)
    model.load_state_dict(bundle["state_dict"])
    return settings, model


def run_prediction(job: PredictionJob) -> None:
    """Write the top-K predictions of a trained experiment for each split of ``job``."""
    from .predictions import PredictionWriter, table_k
    from .training import pick_device, predict_scores

    settings, model = load_trained(job.model)
    device = pick_device()
    model.to(device)
    species = np.arange(settings.model.n_classes)
    k = table_k(job.top_k, len(species))
    if job.tta:
        log.info("test-time augmentation: 8 views (2 flips x 4 rotations) averaged")
    for split, output in job.outputs.items():
        dataset = _dataset(job.inputs, split, settings)
        loader = _loader(dataset, 512, settings.train.num_workers, False, 0)
        with PredictionWriter(output, k=k, species_ids=species) as writer:
            scores = predict_scores(
                model,
                loader,
                device,
                tta=job.tta,
                progress=f"predict {split}",
            )
            for observation_ids, probabilities, _ in scores:
                writer.add_scores(observation_ids, probabilities)
        log.info("%s: %d predictions -> %s", split, writer.n_rows, output)


if __name__ == "__main__":
    sys.exit(main())
