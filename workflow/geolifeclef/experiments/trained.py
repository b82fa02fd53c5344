"""A trained experiment's surroundings: what it reads (per split), how its data is loaded,
and how its saved bundle is rebuilt. Read by the jobs that train and predict
(``geolifeclef.experiments.jobs``) and by the MLflow model (``geolifeclef.experiments.serving``).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from geolifeclef.data.dataset import (
    GlcDataset,
    keep_batch,
    leave_stopping_to_the_main_process,
    make_loader,
    on_device,
)
from geolifeclef.experiments.training import distributed_world, pick_device
from geolifeclef.models.features import ModelBatch
from geolifeclef.models.networks import build_model
from geolifeclef.settings.experiment import ExperimentSettings
from geolifeclef.settings.inputs import TABULAR_SIZES


@dataclass(frozen=True)
class ExperimentInputs:
    """What an experiment reads, per split: patch caches (none when it reads no patches,
    see ``experiment_inputs``) or observation tables, patch statistics tables, the env table
    and the normalisation statistics."""

    observations: dict[str, str]
    env_table: str
    stats: str
    caches: dict[str, str] = field(default_factory=dict)
    patch_stats: dict[str, str] = field(default_factory=dict)
    cubes: dict[str, str] = field(default_factory=dict)
    """A survey edition's packed cube folders (``results/cubes/{split}``)."""


def jpeg_decoding_device() -> str | None:
    """Where an encoded store's JPEGs are decoded: on the GPU when training on CUDA (nvJPEG,
    after the workers), else None (in the workers, on CPU). Derived channels (NDVI, single
    bands) are computed after decoding, on the same device, so they keep GPU decoding."""
    device = pick_device()
    return str(device) if device.type == "cuda" else None


def experiment_dataset(
    inputs: ExperimentInputs, split: str, settings: ExperimentSettings, stats: dict | None = None
):
    """The GlcDataset of ``split`` with the transform to model batches; ``stats``: the
    normalisation statistics (default: read from ``inputs.stats``). Its patches leave the
    workers raw and are made into the model's inputs on the device (``ModelBatch``); a
    multi-label task's labels are multi-hot over the settings' output species."""
    needed = settings.inputs
    stats = json.loads(Path(inputs.stats).read_text()) if stats is None else stats
    common = {
        "env_table": inputs.env_table if needed.env else None,
        "patch_stats": inputs.patch_stats[split] if needed.patch_stats else None,
        "stats": stats,
        "transform": ModelBatch(settings.tabular, settings.cnn_modalities, stats, needed.cubes),
        "species_columns": settings.column_species if settings.multi_label else None,
        "cubes": inputs.cubes[split] if needed.cubes else None,
        "cube_kinds": needed.cubes,
    }
    if needed.patch_modalities:
        return GlcDataset(
            inputs.caches[split],
            modalities=needed.patch_modalities,
            jpeg_device=jpeg_decoding_device(),
            raw_patches=True,
            **common,
        )
    return GlcDataset(None, observations=inputs.observations[split], modalities=(), **common)


def experiment_loader(dataset, batch_size: int, num_workers: int, shuffle: bool, seed: int):
    """A loader over ``dataset``: sharded by rank under torchrun, one order per seed; its
    batches are pinned and made on the training device (``pick_device``)."""
    rank, world = distributed_world()
    device = pick_device()
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
            pin_memory=device.type == "cuda",
            worker_init_fn=leave_stopping_to_the_main_process,
        )
        return on_device(loader, device)
    return make_loader(
        dataset,
        batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        seed=seed,
        pin_memory=device.type == "cuda",
        device=device,
    )


def load_trained(path: str | Path) -> tuple[ExperimentSettings, torch.nn.Module]:
    """A trained model bundle written by ``run_training`` (safe loading only): its
    settings with the data they were trained on (``ExperimentSettings.data``), and the
    model."""
    bundle = torch.load(path, map_location="cpu", weights_only=True)
    settings = ExperimentSettings.from_config(bundle["name"], bundle["settings"])
    settings = settings.with_data(
        bundle["n_classes"],
        bundle.get("env_width", TABULAR_SIZES["env"]),
        bundle.get("species_ids"),
    )
    model = build_model(settings.model, load_weights=False)
    model.load_state_dict(bundle["state_dict"])
    return settings, model
