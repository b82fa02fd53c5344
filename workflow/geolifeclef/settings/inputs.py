"""Which inputs an experiment reads: tabular feature groups, patch modalities and
time-series cubes.

``TABULAR_SIZES`` and ``CNN_MODALITIES`` name what a config may ask for; ``inputs_needed``
is the one answer to "which caches and tables must this experiment load". Torch-free (the
Snakefile reads it); ``features`` builds the model batches from them.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from geolifeclef.layout import (
    ALL_PATCH_MODALITIES,
    ENV_VARIABLES,
    MODALITIES,
    N_LANDCOVER_CODES,
    SURVEY_PATCH_MODALITIES,
)
from geolifeclef.survey_layout import CUBE_SHAPES

BANDS = {"red": ("rgb", 0), "green": ("rgb", 1), "blue": ("rgb", 2), "near_ir": ("near_ir", 0)}
"""Band -> (cache modality, channel)."""
QUANTILES = (25, 50, 75)
PATCH_STAT_GROUPS = {
    "patch_quantiles": tuple(f"{band}_p{q}" for band in BANDS for q in QUANTILES),
    "altitude_stats": tuple(f"altitude_{s}" for s in ("mean", "std", "min", "range")),
    "landcover_shares": tuple(f"landcover_{code}" for code in range(N_LANDCOVER_CODES)),
}
"""Feature group -> its columns, in table order (computed by ``geolifeclef.patches.stats``)."""
PATCH_STAT_COLUMNS = tuple(c for columns in PATCH_STAT_GROUPS.values() for c in columns)
FOREST_FEATURE_GROUPS = ("env", "coordinates", "country", *PATCH_STAT_GROUPS)
"""Feature groups a forest can use: the 27 env values, latitude and longitude, the country
(0 France, 1 US) and the patch statistics (``geolifeclef.patches.stats``)."""

TABULAR_SIZES = {
    "env": len(ENV_VARIABLES),
    "coordinates": 3,
    "country": 1,
    **{group: len(columns) for group, columns in PATCH_STAT_GROUPS.items()},
}
"""Width of each tabular feature group, in the order ``ModelBatch`` concatenates them.
``env`` is GLC 2022's 27 variables; a survey edition's env table has its own columns,
whose number the job reads from the statistics computed on it (``tabular_width``)."""


def tabular_width(groups: Sequence[str], env_width: int = TABULAR_SIZES["env"]) -> int:
    """Features of the tabular groups ``groups`` when the env table has ``env_width``
    variables (default: GLC 2022's 27)."""
    return sum(env_width if group == "env" else TABULAR_SIZES[group] for group in groups)


DERIVED_MODALITIES = {
    "ndvi": ("rgb", "near_ir"),
    "red": ("rgb",),
    "green": ("rgb",),
    "blue": ("rgb",),
}
"""Patch channels computed in the loader, and the cached modalities they come from: NDVI =
(NIR - R) / (NIR + R) (the 2nd place's input), and single bands, so that a stack such as
``[near_ir, green, blue]`` (the 1st place's NIR+G+B) meets a pretrained RGB convolution."""
CNN_MODALITIES = MODALITIES + tuple(DERIVED_MODALITIES) + tuple(SURVEY_PATCH_MODALITIES)
"""What a patch CNN may stack: GLC 2022's modalities and derived channels, and a survey
edition's Sentinel-2 patches (GLC 2024's ``s2_rgb`` and ``s2_nir``, GLC 2025's 4-band
``s2``)."""
CUBE_MODALITIES = tuple(CUBE_SHAPES)
"""The time-series cubes of a survey edition (``landsat``, ``bioclim``): each read by its
own CNN, its first axis the channels (6 Landsat bands, 4 climate variables)."""


def modality_channels(modality: str) -> int:
    """Channels of a (cached or derived) modality in the CNN's stack, or of a cube."""
    if modality in CUBE_SHAPES:
        return CUBE_SHAPES[modality][0]
    return ALL_PATCH_MODALITIES[modality].channels if modality in ALL_PATCH_MODALITIES else 1


@dataclass(frozen=True)
class ModelKind:
    """A kind of model (config ``model.kind``) and which inputs it reads: the one place
    that knows; the networks, the settings, the loader and the maps ask it."""

    name: str
    uses_tabular: bool
    """Reads tabular feature groups (``model.tabular``) through an MLP branch."""
    uses_patches: bool
    """Reads patch modalities (``model.modalities``) through a CNN branch."""
    description: str
    uses_cubes: bool = False
    """Reads time-series cubes (``model.cubes``), each through its own CNN."""


MODEL_KINDS = {
    kind.name: kind
    for kind in (
        ModelKind("mlp", True, False, "an MLP on tabular features"),
        ModelKind("cnn", False, True, "a CNN on patches"),
        ModelKind("fusion", True, True, "a CNN on patches beside an MLP on tabular features"),
        ModelKind("cube", False, False, "a CNN on each time-series cube", uses_cubes=True),
        ModelKind(
            "multimodal",
            True,
            True,
            "an encoder per modality (patches, each cube, tabular), concatenated",
            uses_cubes=True,
        ),
    )
}


def model_kind(name: str) -> ModelKind:
    """The registered kind ``name``, or a ValueError that lists the kinds."""
    if name not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {name!r}; choose one of {tuple(MODEL_KINDS)}")
    return MODEL_KINDS[name]


@dataclass(frozen=True)
class InputsNeeded:
    """What an experiment reads besides the observation tables."""

    patch_modalities: tuple[str, ...]
    """Cached modalities to load; empty: it reads no patch cache."""
    env: bool
    patch_stats: bool
    cubes: tuple[str, ...] = ()
    """Time-series cubes to load (a survey edition's packed cubes); empty: none."""


def inputs_needed(
    kind: str,
    cnn_modalities: Sequence[str],
    tabular: Sequence[str],
    cubes: Sequence[str] = (),
) -> InputsNeeded:
    """The inputs of a model of ``kind`` reading ``cnn_modalities``, ``tabular`` groups
    and ``cubes``."""
    reads = model_kind(kind)
    needed: list[str] = []
    for modality in cnn_modalities if reads.uses_patches else ():
        for source in DERIVED_MODALITIES.get(modality, (modality,)):
            if source not in needed:
                needed.append(source)
    return InputsNeeded(
        tuple(needed),
        env=reads.uses_tabular and "env" in tabular,
        patch_stats=reads.uses_tabular and bool(set(tabular) & set(PATCH_STAT_GROUPS)),
        cubes=tuple(cubes) if reads.uses_cubes else (),
    )
