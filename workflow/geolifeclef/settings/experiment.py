"""An experiment's settings: its config entry as typed objects, built once per experiment
when the workflow is parsed (``common.smk``) and handed by the rules to the jobs; what in
it shapes the weights (a change retrains), what only the predictions (a change
re-predicts), what the model reads, and what its train run logs. The one home of these
decisions: the rules, the jobs (``geolifeclef.experiments.jobs``) and the runs ask here."""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from geolifeclef.settings.configs import (
    LOSSES,
    MULTI_LABEL_LOSSES,
    SMALL,
    AugmentConfig,
    CnnConfig,
    MlpConfig,
    ModelConfig,
    TrainConfig,
)
from geolifeclef.settings.inputs import (
    TABULAR_SIZES,
    InputsNeeded,
    inputs_needed,
    model_kind,
    tabular_width,
)

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
        model["kind"],
        model.get("modalities", ()),
        model.get("tabular", DEFAULT_TABULAR),
        model.get("cubes", ()),
    )


@dataclass(frozen=True)
class ExperimentSettings:
    """The weight settings of one entry of ``experiments`` in the config, as typed objects
    (prediction settings, ``PREDICTION_SETTINGS``, travel in the ``PredictionJob``).

    The Snakefile builds them once per experiment, with its edition's task
    (``multi_label``) and without what the data gives when the job runs
    (``with_data``): ``model.n_classes`` (0 until then) and, for a survey edition, the
    env table's width and the species of the output columns. Outside Python they take
    one form, ``to_config``, that ``from_config`` reads back."""

    name: str
    model: ModelConfig
    tabular: tuple[str, ...]
    train: TrainConfig
    multi_label: bool = False
    """The edition's task (``geolifeclef.editions.Task.multi_label``): each row holds the
    set of species present (sigmoid outputs, a binary cross-entropy per species, marginal
    probabilities), instead of one observed species (a softmax over species)."""
    env_width: int = TABULAR_SIZES["env"]
    """Variables of the ``env`` group: GLC 2022's 27, or the env table's (its statistics,
    ``stats.json``, name them), set by ``with_data`` when the job runs."""
    species_ids: tuple[int, ...] | None = None
    """The species id of each output column, ascending (a survey edition's species table,
    whose ids are not contiguous); None: column j is species j (GLC 2022)."""

    def __post_init__(self) -> None:
        problems = _task_problems(self.train, self.multi_label)
        if self.train.po_pretrain_epochs and self.model.kind != "mlp":
            problems.append(
                "train.po_pretrain_epochs pre-trains on the presence-only occurrences, "
                "which have values and coordinates but no patches or cubes (their "
                f"predictors are not in the archive): give it to an mlp, not a {self.model.kind}"
            )
        if problems:
            raise ValueError(f"experiment {self.name}: " + "; ".join(problems))

    @classmethod
    def from_config(
        cls, name: str, entry: dict[str, Any], *, multi_label: bool = False
    ) -> "ExperimentSettings":
        """The settings of config entry ``entry``, defaults filled in; ``multi_label``: the
        edition's task (an entry written by ``to_config`` says it itself). Raises
        ValueError for an unknown setting, kind, modality or tabular feature, or a setting
        the task cannot use (a timm backbone's name needs timm:
        ``geolifeclef.settings.backbones`` checks it when the workflow is parsed)."""
        model = dict(entry["model"])
        tabular = tuple(model.pop("tabular", DEFAULT_TABULAR))
        unknown = set(tabular) - set(TABULAR_SIZES)
        if unknown:
            raise ValueError(f"experiment {name}: unknown tabular features {sorted(unknown)}")
        if not model_kind(model["kind"]).uses_tabular:
            tabular = ()  # a CNN reads no tabular features, whatever the defaults say
        model_config = _dataclass_from(
            ModelConfig,
            {**model, "n_tabular": tabular_width(tabular)},
            mlp=MlpConfig,
            cnn=CnnConfig,
            cube_cnn=CnnConfig,
        )
        train = _dataclass_from(TrainConfig, entry.get("train"), augment=AugmentConfig)
        return cls(name, model_config, tabular, train, bool(entry.get(MULTI_LABEL, multi_label)))

    def with_classes(self, n_classes: int) -> "ExperimentSettings":
        """These settings for a classifier of ``n_classes`` species."""
        return replace(self, model=replace(self.model, n_classes=n_classes))

    def with_data(
        self,
        n_classes: int,
        env_width: int = TABULAR_SIZES["env"],
        species_ids: Sequence[int] | None = None,
    ) -> "ExperimentSettings":
        """These settings for the data of the job: ``n_classes`` output columns, the env
        table's ``env_width`` variables, ``species_ids`` (ascending) the species of the
        columns (None: column j is species j)."""
        if species_ids is not None:
            species_ids = tuple(int(s) for s in species_ids)
            if len(species_ids) != n_classes:
                raise ValueError(f"{len(species_ids)} species ids for {n_classes} classes")
        n_tabular = tabular_width(self.tabular, env_width)
        model = replace(self.model, n_classes=n_classes, n_tabular=n_tabular)
        return replace(self, model=model, env_width=env_width, species_ids=species_ids)

    def data(self) -> dict[str, Any]:
        """What ``with_data`` was given, as a trained model's bundle keeps it beside the
        settings: ``n_classes``, and ``env_width`` and ``species_ids`` where they are not
        GLC 2022's (so that a GLC 2022 bundle holds what it always held)."""
        found: dict[str, Any] = {"n_classes": self.model.n_classes}
        if self.env_width != TABULAR_SIZES["env"]:
            found["env_width"] = self.env_width
        if self.species_ids is not None:
            found["species_ids"] = list(self.species_ids)
        return found

    @property
    def column_species(self) -> np.ndarray:
        """The species id of each output column (int64)."""
        if self.species_ids is None:
            return np.arange(self.model.n_classes, dtype=np.int64)
        return np.asarray(self.species_ids, dtype=np.int64)

    def to_config(self) -> dict[str, Any]:
        """The settings as a config entry: every value written out (defaults included), lists
        for tuples, without what the job derives (``n_classes``, ``n_tabular``, see
        ``data``), with ``multi_label: true`` for a multi-label task. What a trained
        model's bundle, its ``settings.json``, a job's JSON file and the rule's params
        record hold; ``from_config`` reads it back."""
        model = {**self._model_values(), "tabular": self.tabular}
        del model["n_classes"], model["n_tabular"]
        entry: dict[str, Any] = {"model": model, "train": self._train_values()}
        if self.multi_label:
            entry[MULTI_LABEL] = True
        return _json_lists(entry)

    def _model_values(self) -> dict[str, Any]:
        """The model settings the kind reads: a model without cubes has no cube settings,
        so that the settings, files and fingerprint of a model that reads none (every
        GLC 2022 one) read as they did before there were cubes."""
        values = asdict(self.model)
        if not self.model.reads.uses_cubes:
            del values["cubes"], values["cube_cnn"]
        return values

    def _train_values(self) -> dict[str, Any]:
        """The training settings the task reads: a single-label task has no
        ``pos_weight``, so a GLC 2022 experiment's settings, files and fingerprint read as
        they did before there was one."""
        values = asdict(self.train)
        if not self.multi_label:
            for key in MULTI_LABEL_TRAIN_SETTINGS:
                del values[key]
        return values

    @property
    def inputs(self) -> InputsNeeded:
        """What the experiment reads (see ``experiment_inputs``)."""
        return inputs_needed(self.model.kind, self.model.modalities, self.tabular, self.model.cubes)

    @property
    def cnn_modalities(self) -> tuple[str, ...]:
        return self.model.modalities if self.model.reads.uses_patches else ()

    def fingerprint(self) -> str:
        """Hash of everything that shapes the weights: a checkpoint of other settings is
        never resumed."""
        shaping: dict[str, Any] = {
            "model": self._model_values(),
            "tabular": self.tabular,
            "train": self._train_values(),
        }
        if self.multi_label:  # absent for GLC 2022: its checkpoints keep their names
            shaping[MULTI_LABEL] = True
        if self.species_ids is not None:
            shaping["species_ids"] = self.species_ids
        text = json.dumps(shaping, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


MULTI_LABEL_TRAIN_SETTINGS = (
    "pos_weight",
    "focal_gamma",
    "asymmetric_gamma_neg",
    "asymmetric_clip",
    "po_pretrain_epochs",
)
"""Training settings that only a multi-label task reads (absent from a GLC 2022
experiment's settings, files and fingerprint)."""
MULTI_LABEL = "multi_label"
"""The key of ``to_config`` that says an experiment's task is multi-label."""
_SINGLE_LABEL_LOSSES = ("logit_adjusted", "balanced_softmax", "class_weighted")


def _task_problems(train: TrainConfig, multi_label: bool) -> list[str]:
    """The training settings that the task cannot use, one sentence each."""
    if not multi_label:
        defaults = TrainConfig()
        problems = [
            f"train.{key} {getattr(train, key)} is a setting of a multi-label edition's "
            "binary cross-entropy (the species present in each survey); this edition "
            "predicts one species per observation (softmax): remove it"
            for key in MULTI_LABEL_TRAIN_SETTINGS
            if getattr(train, key) != getattr(defaults, key)
        ]
        if train.loss in MULTI_LABEL_LOSSES:
            problems.append(
                f"train.loss {train.loss} is a multi-label loss (a binary cross-entropy per "
                "species); this edition predicts one species per observation: use one of "
                f"{[loss for loss in LOSSES if loss not in MULTI_LABEL_LOSSES]}"
            )
        return problems
    problems = []
    if train.loss in _SINGLE_LABEL_LOSSES:
        problems.append(
            f"train.loss {train.loss} is a softmax loss over one species per row; a "
            "multi-label edition trains with cross_entropy (a binary cross-entropy per "
            "species, train.pos_weight weighting the species present)"
        )
    if train.label_smoothing:
        problems.append(
            "train.label_smoothing is not applied to a multi-label edition's binary "
            "cross-entropy: set it to 0"
        )
    if train.block_label_swap:
        problems.append(
            "train.block_label_swap swaps one species per observation and has no "
            "multi-label version yet: set it to 0"
        )
    return problems


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
    if settings.multi_label:  # refused unless 0 (_task_problems): nothing to log
        unread["train"] += ["label_smoothing", "block_label_swap"]
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
    unread["train"] += [
        key for loss, keys in _LOSS_OPTIONS.items() if loss != typed_train.loss for key in keys
    ]
    if not typed_train.block_label_swap:
        unread["train"] += ["block_size_degrees"]
    for section, keys in (("model", model), ("model.cnn", cnn), ("train", train)):
        for key in unread[section]:
            keys.pop(key, None)
    return entry


_LOSS_OPTIONS = {
    "logit_adjusted": ("logit_adjust_tau",),
    "class_weighted": ("class_weight_power",),
    "focal": ("focal_gamma",),
    "asymmetric": ("asymmetric_gamma_neg", "asymmetric_clip"),
}
"""Losses -> the settings only they read."""
