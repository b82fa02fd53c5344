"""Which inputs an experiment reads: tabular feature groups and patch modalities.

``TABULAR_SIZES`` and ``CNN_MODALITIES`` name what a config may ask for; ``inputs_needed``
is the one answer to "which caches and tables must this experiment load". Torch-free (the
Snakefile reads it); ``features`` builds the model batches from them.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from .layout import ENV_VARIABLES, MODALITIES, PATCH_CHANNELS
from .patch_stats import PATCH_STAT_GROUPS

TABULAR_SIZES = {
    "env": len(ENV_VARIABLES),
    "coordinates": 3,
    "country": 1,
    **{group: len(columns) for group, columns in PATCH_STAT_GROUPS.items()},
}
"""Width of each tabular feature group, in the order ``ModelBatch`` concatenates them."""

DERIVED_MODALITIES = {
    "ndvi": ("rgb", "near_ir"),
    "red": ("rgb",),
    "green": ("rgb",),
    "blue": ("rgb",),
}
"""Patch channels computed in the loader, and the cached modalities they come from: NDVI =
(NIR - R) / (NIR + R) (the 2nd place's input), and single bands, so that a stack such as
``[near_ir, green, blue]`` (the 1st place's NIR+G+B) meets a pretrained RGB convolution."""
CNN_MODALITIES = MODALITIES + tuple(DERIVED_MODALITIES)


def modality_channels(modality: str) -> int:
    """Channels of a (cached or derived) modality in the CNN's stack."""
    return PATCH_CHANNELS.get(modality, 1)


@dataclass(frozen=True)
class InputsNeeded:
    """What an experiment reads besides the observation tables."""

    patch_modalities: tuple[str, ...]
    """Cached modalities to load; empty: it reads no patch cache."""
    env: bool
    patch_stats: bool


def inputs_needed(kind: str, cnn_modalities: Sequence[str], tabular: Sequence[str]) -> InputsNeeded:
    """The inputs of a model of ``kind`` reading ``cnn_modalities`` and ``tabular`` groups."""
    needed: list[str] = []
    for modality in cnn_modalities if kind != "mlp" else ():
        for source in DERIVED_MODALITIES.get(modality, (modality,)):
            if source not in needed:
                needed.append(source)
    uses_tabular = kind != "cnn"
    return InputsNeeded(
        tuple(needed),
        env=uses_tabular and "env" in tabular,
        patch_stats=uses_tabular and bool(set(tabular) & set(PATCH_STAT_GROUPS)),
    )
