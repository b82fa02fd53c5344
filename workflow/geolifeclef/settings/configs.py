"""The typed settings of an experiment: model, patch branch, training and augmentation.

Each default lives here once (``ExperimentSettings.from_config`` turns a config entry into
these and the schema documents them). Nothing here imports torch (a timm backbone's name is
checked by ``geolifeclef.settings.backbones``, which imports timm only for such a name), so that
the Snakefile, and every SLURM job that parses it, stays quick; ``models`` and ``training``
build from these.
"""

from dataclasses import dataclass, field

from geolifeclef.settings.inputs import CNN_MODALITIES, CUBE_MODALITIES, ModelKind, model_kind

SMALL = "small"
"""The small CNN: four strided conv stages, fast enough for the CPU demo."""


LANDCOVER_MODES = ("onehot", "embedding")


@dataclass(frozen=True)
class MlpConfig:
    """The tabular branch."""

    hidden: int = 256
    layers: int = 3
    dropout: float = 0.1
    quadratic: bool = False
    """Also feed the squares of the standardised features: MaxEnt's quadratic features (a
    species' niche is a bump in each variable, which a square makes one linear step)."""


@dataclass(frozen=True)
class CnnConfig:
    """The patch branch."""

    backbone: str = SMALL
    """``small``, or the name of any timm model (``resnet34``, ``mobilenetv3_large_100``)."""
    width: int = 32
    """Channels of the first stage of the small CNN (timm models have their own)."""
    landcover: str = "embedding"
    """How land-cover codes enter the CNN: ``onehot`` (34 channels) or ``embedding``."""
    landcover_embedding_dim: int = 4
    pretrained: str | bool | None = None
    """ImageNet weights of the timm backbone: a local file (safetensors or state dict),
    ``True`` for the Hugging Face cache, None to train from scratch."""
    input_size: int | None = None
    """Side the stacked patches are area-resized to before the backbone (e.g. 32 for a
    CPU demo); None keeps the cache's size."""


@dataclass(frozen=True)
class ModelConfig:
    """What to build: ``kind`` in ``inputs.MODEL_KINDS``, inputs and outputs."""

    kind: str
    n_classes: int = 0
    """Species the classifier scores: read from the species table when the job runs
    (``ExperimentSettings.with_classes``); 0 until then, as when the Snakefile builds it."""
    n_tabular: int = 0
    """Features of the tabular branch (env values, coordinates, patch statistics)."""
    modalities: tuple[str, ...] = ()
    """Patch modalities the CNN reads, stacked in this order (``inputs.CNN_MODALITIES``:
    the archive's and derived ones such as ``ndvi``)."""
    mlp: MlpConfig = field(default_factory=MlpConfig)
    cnn: CnnConfig = field(default_factory=CnnConfig)
    dropout: float = 0.2
    """Dropout before the classifier."""
    head_hidden: int = 0
    """Width of a hidden layer (linear, ReLU, dropout) before the classifier; 0: none
    (the 1st place put 2048 after MobileNetV3)."""
    cubes: tuple[str, ...] = ()
    """Time-series cubes (``inputs.CUBE_MODALITIES``: ``landsat``, ``bioclim``), each read
    by its own CNN (``cube_cnn``): the organizers' ResNet-18 per cube."""
    cube_cnn: CnnConfig = field(default_factory=CnnConfig)
    """The CNN of each cube (its ``landcover`` settings are not read)."""

    def __post_init__(self) -> None:
        uses_patches, uses_tabular = self.reads.uses_patches, self.reads.uses_tabular
        if uses_patches and not self.modalities:
            raise ValueError(f"a {self.kind} model needs at least one patch modality")
        if self.reads.uses_cubes and not self.cubes:
            raise ValueError(f"a {self.kind} model needs at least one cube ({CUBE_MODALITIES})")
        unknown_cubes = set(self.cubes) - set(CUBE_MODALITIES)
        if unknown_cubes:
            raise ValueError(
                f"unknown cubes {sorted(unknown_cubes)}; choose from {CUBE_MODALITIES}"
            )
        unknown = set(self.modalities) - set(CNN_MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {CNN_MODALITIES}")
        if uses_tabular and self.n_tabular <= 0:
            raise ValueError(f"a {self.kind} model needs tabular features (n_tabular > 0)")
        if self.cnn.landcover not in LANDCOVER_MODES:
            raise ValueError(f"cnn.landcover must be one of {LANDCOVER_MODES}")

    @property
    def reads(self) -> ModelKind:
        """The kind's record: whether it reads tabular features, patches or both."""
        return model_kind(self.kind)


LOSSES = (
    "cross_entropy",
    "logit_adjusted",
    "balanced_softmax",
    "class_weighted",
    "focal",
    "asymmetric",
)
"""``cross_entropy`` is a softmax over species for a single-label task, a binary
cross-entropy per species for a multi-label one; ``focal`` and ``asymmetric`` are
multi-label only (binary cross-entropies that weigh down the many easy absences), the
others single-label only."""
MULTI_LABEL_LOSSES = ("focal", "asymmetric")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of the patches during training (and test-time augmentation)."""

    flip: bool = True
    rotate: bool = True
    """Random multiples of 90 degrees: patches are north-up but species do not care."""
    brightness: float = 0.1
    """Maximum relative change of the brightness of rgb and near_ir."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; logged as MLflow params."""

    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    step_epochs: int = 10
    step_gamma: float = 0.1
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    loss: str = "cross_entropy"
    logit_adjust_tau: float = 1.0
    class_weight_power: float = 0.5
    pos_weight: float = 1.0
    """Weight of a present species in a multi-label task's binary cross-entropy (the
    organizers used 1 and 10: a survey lists a few species of thousands)."""
    focal_gamma: float = 2.0
    """The focal loss's exponent: each term weighted by (1 - p_t)^gamma (Lin et al. 2017)."""
    asymmetric_gamma_neg: float = 4.0
    """The asymmetric loss's exponent on absences (Ridnik et al. 2021; presences: 0)."""
    asymmetric_clip: float = 0.05
    """The asymmetric loss's probability shift: an absence predicted below it costs nothing."""
    po_pretrain_epochs: int = 0
    """Epochs of pre-training on the presence-only occurrences (each one a presence of its
    species at its point, the others absent) before the fit on the surveys; 0: none. Its
    epoch kept is the best on val, like the fit's."""
    block_label_swap: float = 0.0
    """Probability that a training label is swapped with another from its spatial block."""
    block_size_degrees: float = 0.1
    early_stopping_patience: int = 5
    steps_per_epoch: int | None = None
    """Batches an epoch trains on at most (None: all of train): a quick check of a large
    dataset, or a timed rehearsal at the archive's counts whose epoch is extrapolated from
    its steps. The schedule counts the capped epoch; val is always evaluated whole."""
    seed: int = 0
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {self.loss!r}")
        if not self.pos_weight > 0:
            raise ValueError(f"pos_weight must be positive, not {self.pos_weight!r}")
        if self.po_pretrain_epochs < 0:
            raise ValueError(f"po_pretrain_epochs must be 0 or more, not {self.po_pretrain_epochs}")
