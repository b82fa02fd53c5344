"""An experiment's settings: its config entry as typed objects, and what in it shapes the
weights (a change retrains), what only the predictions (a change re-predicts), what the
model reads, and what its train run logs. The one home of these decisions: the rules
(``common.smk``), the jobs (``geolifeclef.experiments.jobs``) and the runs ask here."""

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from geolifeclef.settings.configs import (
    SMALL,
    AugmentConfig,
    CnnConfig,
    MlpConfig,
    ModelConfig,
    TrainConfig,
)
from geolifeclef.settings.inputs import TABULAR_SIZES, InputsNeeded, inputs_needed, model_kind

DEFAULT_TABULAR = ("env", "coordinates")
"""Tabular feature groups of an experiment that names none."""
TRAINING_SPLITS = ("train", "val")
"""The splits a training job reads: it fits on train and picks its best epoch on val."""
PREDICTION_SETTINGS = ("tta", "refit")
"""Keys of an experiment entry that leave the train-only fit alone: test-time augmentation
acts at prediction, and ``refit`` adds a second fit on train + val for the test predictions
(with as many epochs as the train-only fit found best on val)."""


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


def shaping_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """The weight settings of an experiment's config entry that its model and options
    actually read: what its train run logs as params. Left out: the CNN settings and
    patch modalities of an MLP, the tabular branch of a CNN, augmentation without patches,
    land-cover settings without land cover, the small CNN's width for a timm backbone,
    momentum without SGD, step-schedule settings without a step schedule, the options of
    other losses, the block size without block label swap, and the loader's workers (they
    do not change the batches)."""
    settings = copy.deepcopy(weight_settings(entry))
    model, train = settings.get("model", {}), settings.get("train", {})
    reads = model_kind(model.get("kind"))
    unread = {"model": [], "model.cnn": [], "train": ["num_workers"]}
    if not reads.uses_patches:
        unread["model"] += ["cnn", "modalities"]
        unread["train"] += ["augment"]
    if not reads.uses_tabular:
        unread["model"] += ["mlp", "tabular"]
    cnn = model.get("cnn", {})
    if "landcover" not in model.get("modalities", ()):
        unread["model.cnn"] += ["landcover", "landcover_embedding_dim"]
    elif cnn.get("landcover", CnnConfig.landcover) == "onehot":
        unread["model.cnn"] += ["landcover_embedding_dim"]
    if cnn.get("backbone", CnnConfig.backbone) != SMALL:
        unread["model.cnn"] += ["width"]
    if train.get("optimizer", TrainConfig.optimizer) != "sgd":
        unread["train"] += ["momentum"]
    if train.get("schedule", TrainConfig.schedule) != "step":
        unread["train"] += ["step_epochs", "step_gamma"]
    loss = train.get("loss", TrainConfig.loss)
    unread["train"] += [k for option, k in _LOSS_OPTIONS.items() if option != loss]
    if not train.get("block_label_swap", TrainConfig.block_label_swap):
        unread["train"] += ["block_size_degrees"]
    for section, keys in (("model", model), ("model.cnn", cnn), ("train", train)):
        for key in unread[section]:
            keys.pop(key, None)
    return settings


_LOSS_OPTIONS = {"logit_adjusted": "logit_adjust_tau", "class_weighted": "class_weight_power"}
"""Losses -> the setting only they read."""


def experiment_inputs(entry: dict[str, Any]) -> InputsNeeded:
    """What an experiment's config entry reads: patch caches (which modalities), the env
    table, the patch statistics tables."""
    model = entry["model"]
    return inputs_needed(
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
        if not model_kind(model["kind"]).uses_tabular:
            tabular = ()  # a CNN reads no tabular features, whatever the defaults say
        n_tabular = sum(TABULAR_SIZES[t] for t in tabular)
        model_config = _dataclass_from(
            ModelConfig,
            {**model, "n_classes": n_classes, "n_tabular": n_tabular},
            mlp=MlpConfig,
            cnn=CnnConfig,
        )
        train = _dataclass_from(TrainConfig, entry.get("train"), augment=AugmentConfig)
        return cls(name, model_config, tabular, train)

    @property
    def inputs(self) -> InputsNeeded:
        """What the experiment reads (see ``experiment_inputs``)."""
        return inputs_needed(self.model.kind, self.model.modalities, self.tabular)

    @property
    def cnn_modalities(self) -> tuple[str, ...]:
        return self.model.modalities if self.model.reads.uses_patches else ()

    def fingerprint(self) -> str:
        """Hash of everything that shapes the weights: a checkpoint of other settings is
        never resumed."""
        text = json.dumps(
            {"model": asdict(self.model), "tabular": self.tabular, "train": asdict(self.train)},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]
