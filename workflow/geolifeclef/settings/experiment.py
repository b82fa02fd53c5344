"""An experiment's settings: its config entry as typed objects, built once per experiment
when the workflow is parsed (``common.smk``) and handed by the rules to the jobs; what in
it shapes the weights (a change retrains), what only the predictions (a change
re-predicts), what the model reads, and what its train run logs. The one home of these
decisions: the rules, the jobs (``geolifeclef.experiments.jobs``) and the runs ask here."""

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
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
"""Keys of an experiment entry that leave the train-only fit alone (``ExperimentSettings``
does not read them): test-time augmentation acts at prediction, and ``refit`` adds a second
fit on train + val for the test predictions (with as many epochs as the train-only fit
found best on val)."""


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
    (prediction settings, ``PREDICTION_SETTINGS``, travel in the ``PredictionJob``).

    The Snakefile builds them once per experiment, without ``model.n_classes`` (0): the
    species table gives it when the job runs (``with_classes``). Outside Python they take
    one form, ``to_config``, that ``from_config`` reads back."""

    name: str
    model: ModelConfig
    tabular: tuple[str, ...]
    train: TrainConfig

    @classmethod
    def from_config(cls, name: str, entry: dict[str, Any]) -> "ExperimentSettings":
        """The settings of config entry ``entry``, defaults filled in. Raises ValueError for
        an unknown setting, kind, modality or tabular feature (a timm backbone's name needs
        timm: ``geolifeclef.settings.backbones`` checks it when the workflow is parsed)."""
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
            {**model, "n_tabular": n_tabular},
            mlp=MlpConfig,
            cnn=CnnConfig,
        )
        train = _dataclass_from(TrainConfig, entry.get("train"), augment=AugmentConfig)
        return cls(name, model_config, tabular, train)

    def with_classes(self, n_classes: int) -> "ExperimentSettings":
        """These settings for a classifier of ``n_classes`` species."""
        return replace(self, model=replace(self.model, n_classes=n_classes))

    def to_config(self) -> dict[str, Any]:
        """The settings as a config entry: every value written out (defaults included), lists
        for tuples, without what the job derives (``n_classes``, ``n_tabular``). What a
        trained model's bundle, its ``settings.json``, a job's JSON file and the rule's
        params record hold; ``from_config`` reads it back."""
        model = {**asdict(self.model), "tabular": self.tabular}
        del model["n_classes"], model["n_tabular"]
        return _json_lists({"model": model, "train": asdict(self.train)})

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


def _json_lists(value: Any) -> Any:
    """``value`` with every tuple a list, as JSON and YAML write them (and as the config's
    values are: a logged param reads ``['rgb']``, not ``('rgb',)``)."""
    if isinstance(value, dict):
        return {key: _json_lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_lists(item) for item in value]
    return value


def shaping_settings(settings: ExperimentSettings) -> dict[str, Any]:
    """The settings (``to_config``) that the experiment's model and options actually read:
    what its train run logs as params. Left out: the CNN settings and patch modalities of
    an MLP, the tabular branch of a CNN, augmentation without patches, land-cover settings
    without land cover, the small CNN's width for a timm backbone, momentum without SGD,
    step-schedule settings without a step schedule, the options of other losses, the block
    size without block label swap, and the loader's workers (they do not change the
    batches)."""
    entry = settings.to_config()
    model, cnn, train = entry["model"], entry["model"]["cnn"], entry["train"]
    reads, typed_cnn, typed_train = settings.model.reads, settings.model.cnn, settings.train
    unread = {"model": [], "model.cnn": [], "train": ["num_workers"]}
    if not reads.uses_patches:
        unread["model"] += ["cnn", "modalities"]
        unread["train"] += ["augment"]
    if not reads.uses_tabular:
        unread["model"] += ["mlp", "tabular"]
    if "landcover" not in settings.model.modalities:
        unread["model.cnn"] += ["landcover", "landcover_embedding_dim"]
    elif typed_cnn.landcover == "onehot":
        unread["model.cnn"] += ["landcover_embedding_dim"]
    if typed_cnn.backbone != SMALL:
        unread["model.cnn"] += ["width"]
    if typed_train.optimizer != "sgd":
        unread["train"] += ["momentum"]
    if typed_train.schedule != "step":
        unread["train"] += ["step_epochs", "step_gamma"]
    unread["train"] += [k for loss, k in _LOSS_OPTIONS.items() if loss != typed_train.loss]
    if not typed_train.block_label_swap:
        unread["train"] += ["block_size_degrees"]
    for section, keys in (("model", model), ("model.cnn", cnn), ("train", train)):
        for key in unread[section]:
            keys.pop(key, None)
    return entry


_LOSS_OPTIONS = {"logit_adjusted": "logit_adjust_tau", "class_weighted": "class_weight_power"}
"""Losses -> the setting only they read."""
