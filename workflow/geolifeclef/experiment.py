"""An experiment end to end: settings from the config -> trained model -> predictions.

The rules ``train_model`` and ``predict_model`` call :func:`run_training` and
:func:`run_prediction` with a job dict of their settings, inputs and outputs (see
``workflow/scripts/train_model.py``). Both also run outside Snakemake, from the job written
as JSON (and so under torchrun for several GPUs)::

    python -m geolifeclef.experiment train job.json
    python -m geolifeclef.experiment predict job.json
"""

import hashlib
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .class_frequency import read_species_table
from .layout import ENV_VARIABLES, N_LANDCOVER_CODES
from .models import CnnConfig, MlpConfig, ModelConfig, build_model
from .training import AugmentConfig, TrainConfig

log = logging.getLogger(__name__)

TABULAR_SIZES = {
    "env": len(ENV_VARIABLES),
    "coordinates": 3,
    "landcover_shares": N_LANDCOVER_CODES,
    "altitude_stats": 4,
}
"""Width of each tabular feature group, in the order ``ModelBatch`` concatenates them."""


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


@dataclass(frozen=True)
class ExperimentSettings:
    """One entry of ``experiments`` in the config, as typed objects."""

    name: str
    model: ModelConfig
    tabular: tuple[str, ...]
    train: TrainConfig
    tta: bool

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any], n_classes: int) -> "ExperimentSettings":
        model = dict(entry["model"])
        tabular = tuple(model.pop("tabular", ("env", "coordinates")))
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
        return cls(name, model_config, tabular, train, bool(entry.get("tta", False)))

    @property
    def patch_modalities(self) -> tuple[str, ...]:
        """Modalities to load: those of the CNN plus those the tabular features read."""
        needed = list(self.model.modalities) if self.model.kind != "mlp" else []
        if "landcover_shares" in self.tabular and "landcover" not in needed:
            needed.append("landcover")
        if "altitude_stats" in self.tabular and "altitude" not in needed:
            needed.append("altitude")
        return tuple(needed)

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
# Features
# --------------------------------------------------------------------------------------


def unit_sphere(latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """Coordinates as a 3D unit vector: no seam at +-180 degrees, distances preserved."""
    lat, lon = np.radians(latitude), np.radians(longitude)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def patch_features(
    patches: dict[str, torch.Tensor], groups: tuple[str, ...]
) -> torch.Tensor | None:
    """Tabular features computed from the patches of a batch: the land-cover shares
    (fraction of each code) and altitude statistics (mean, std, min, range of the
    standardised altitude), or None when none is asked for."""
    parts = []
    if "landcover_shares" in groups:
        codes = patches["landcover"].long().flatten(1).clamp(0, N_LANDCOVER_CODES - 1)
        counts = torch.zeros(codes.shape[0], N_LANDCOVER_CODES, device=codes.device)
        counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=counts.dtype))
        parts.append(counts / codes.shape[1])
    if "altitude_stats" in groups:
        altitude = patches["altitude"].float().flatten(1)
        low, high = altitude.amin(1), altitude.amax(1)
        parts.append(torch.stack([altitude.mean(1), altitude.std(1), low, high - low], dim=1))
    return torch.cat(parts, dim=1) if parts else None


class ModelBatch:
    """Turns a ``GlcDataset`` batch into what ``SpeciesModel`` reads: ``tabular`` (the
    chosen feature groups, in TABULAR_SIZES order) and ``patches`` (the CNN's modalities).

    Runs as the dataset's ``transform``, so inside the DataLoader workers.
    """

    def __init__(self, tabular: tuple[str, ...], cnn_modalities: tuple[str, ...]) -> None:
        self.tabular = tuple(g for g in TABULAR_SIZES if g in tabular)
        self.cnn_modalities = tuple(cnn_modalities)

    def __call__(self, batch: dict) -> dict:
        parts = []
        if "env" in self.tabular:
            parts.append(batch["env"].float())
        if "coordinates" in self.tabular:
            coords = batch["coords"].double().numpy()
            parts.append(torch.from_numpy(unit_sphere(coords[:, 0], coords[:, 1])).float())
        derived = patch_features(batch, self.tabular)
        if derived is not None:
            parts.append(derived)
        out = {
            "observation_id": batch["observation_id"],
            "patches": {m: batch[m] for m in self.cnn_modalities},
        }
        if parts:
            out["tabular"] = torch.cat(parts, dim=1)
        if "label" in batch:
            out["label"] = batch["label"]
        return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("train", "predict"):
        print("usage: python -m geolifeclef.experiment {train|predict} job.json", file=sys.stderr)
        return 2
    from .rule_logging import logging_to

    job = json.loads(Path(argv[1]).read_text())
    rank = int(os.environ.get("RANK", 0))
    with logging_to(job.get("log") if rank == 0 else None):
        if argv[0] == "train":
            run_training(job)
        else:
            run_prediction(job)
    return 0


# --------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------


def _dataset(job: dict, split: str, settings: ExperimentSettings):
    """The GlcDataset of ``split`` with the transform to model batches."""
    from .dataset import GlcDataset

    modalities = settings.patch_modalities
    transform = ModelBatch(
        settings.tabular, settings.model.modalities if settings.model.kind != "mlp" else ()
    )
    common = {
        "env_table": job["env_table"] if "env" in settings.tabular else None,
        "stats": job["stats"],
        "transform": transform,
    }
    if modalities:
        dataset = GlcDataset(job["caches"][split], modalities=modalities, **common)
    else:
        dataset = GlcDataset(None, observations=job["observations"][split], modalities=(), **common)
    return dataset


def _loader(dataset, batch_size: int, num_workers: int, shuffle: bool, seed: int):
    """A loader over ``dataset``: sharded by rank under torchrun, one order per seed."""
    from torch.utils.data import DataLoader, DistributedSampler

    from .dataset import keep_batch, make_loader
    from .training import distributed_world

    rank, world = distributed_world()
    if world > 1 and shuffle:
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=num_workers,
            collate_fn=keep_batch,
            pin_memory=torch.cuda.is_available(),
        )
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


def run_training(job: dict) -> dict:
    """Train one experiment; write ``job["model"]`` (best weights + settings) and
    ``job["history"]``. Logged to MLflow as a run (see geolifeclef.tracking)."""
    from . import tracking
    from .atomic import atomic_path, write_text
    from .training import block_label_swap, distributed_world, seed_everything, train

    counts = load_species_counts(job["species_table"])
    settings = ExperimentSettings.from_config(job["name"], job["settings"], n_classes=len(counts))
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
    train_set = _dataset(job, "train", settings)
    val_set = _dataset(job, "val", settings)
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
    checkpoint = Path(job["checkpoint_dir"]) / f"{settings.fingerprint()}.pt"
    best = Path(job["checkpoint_dir"]) / f"{settings.fingerprint()}-best.pt"
    tags = {
        "git_commit": tracking.git_commit(job.get("repo", ".")),
        "data_fingerprint": tracking.fingerprint(job.get("fingerprint_inputs", [])),
        "snakemake.rule": job.get("rule", "train_model"),
        "wildcards.experiment": settings.name,
        "settings_fingerprint": settings.fingerprint(),
    }
    run_context = (
        tracking.start_run(
            job["mlflow"]["tracking_uri"],
            job["mlflow"]["experiment"],
            f"train {settings.name}",
            job["local_metrics"],
            tags=tags,
        )
        if rank == 0
        else _offline_tracker(job)
    )
    with run_context as tracker:
        tracker.log_params({"experiment": settings.name, **job["settings"]})
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
            "settings": job["settings"],
            "n_classes": len(counts),
            "state_dict": model.state_dict(),
        }
        with atomic_path(job["model"]) as temporary:
            torch.save(bundle, temporary)
        summary = {
            "experiment": settings.name,
            "best_epoch": state.best_epoch + 1,
            "best_val_top30_error": state.best_error,
            "epochs_run": state.epoch,
            "history": state.history,
        }
        write_text(job["history"], json.dumps(summary, indent=2) + "\n")
        tracker.log_metrics({"best_val_top30_error": state.best_error}, step=state.epoch)
        tracker.log_artifact(job["history"])
        config_file = Path(job["history"]).with_name("settings.json")
        write_text(config_file, json.dumps(job["settings"], indent=2) + "\n")
        tracker.log_artifact(config_file)
        for artifact in job.get("artifacts", []):
            tracker.log_artifact(artifact)
        if job.get("log_model", True):
            model.eval()
            tracker.log_model(model)
    return summary


def _offline_tracker(job: dict):
    """Ranks other than 0 do not log: a tracker with nowhere to send anything."""
    import contextlib

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


def run_prediction(job: dict) -> None:
    """Write the top-K predictions of a trained experiment for each split of ``job``."""
    from .predictions import PredictionWriter, table_k
    from .training import pick_device, predict_scores

    settings, model = load_trained(job["model"])
    device = pick_device()
    model.to(device)
    species = np.arange(settings.model.n_classes)
    k = table_k(job["top_k"], len(species))
    for split, output in job["outputs"].items():
        dataset = _dataset(job, split, settings)
        loader = _loader(dataset, 512, settings.train.num_workers, False, 0)
        with PredictionWriter(output, k=k, species_ids=species) as writer:
            scores = predict_scores(
                model, loader, device, tta=settings.tta, progress=f"predict {split}"
            )
            for observation_ids, probabilities, _ in scores:
                writer.add_scores(observation_ids, probabilities)
        log.info("%s: %d predictions -> %s", split, writer.n_rows, output)


if __name__ == "__main__":
    sys.exit(main())
