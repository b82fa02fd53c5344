"""Settings of the map stage: the species maps (config ``maps``), the MESS (``mess``), the
permutation importance (``importance``) and the response curves (``response``). Typed when
the workflow is parsed (``geolifeclef.settings.workflow``), so that a bad name or value is
refused before any job; the map jobs receive these objects."""

from dataclasses import dataclass

from geolifeclef.layout import BIOCLIMATIC_VARIABLES, ENV_VARIABLES, PEDOLOGIC_VARIABLES

COORDINATES = ("latitude", "longitude")
FEATURES = (*ENV_VARIABLES, *COORDINATES)
"""What a point model reads: the 27 env variables and the two coordinates."""
VARIABLE_GROUPS = {
    "temperature": BIOCLIMATIC_VARIABLES[:11],  # bio_1..bio_11
    "precipitation": BIOCLIMATIC_VARIABLES[11:],  # bio_12..bio_19
    "soil": PEDOLOGIC_VARIABLES,
    "coordinates": COORDINATES,
}
TOP_K = 30
"""Kaggle's k (``geolifeclef.predictions.metrics.KAGGLE_K``, which the Snakefile cannot
import): the default k of the importance's top-k error."""


def check_names(names, known, setting: str) -> None:
    """ValueError naming ``setting`` when ``names`` holds a name not in ``known``."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"{setting}: unknown {', '.join(map(repr, unknown))}; choose among {', '.join(known)}"
        )


def _at_least_one(section: str, settings, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(settings, name) < 1:
            raise ValueError(f"{section}.{name} must be >= 1, got {getattr(settings, name)}")


def _tuple(values, kind=str):
    return None if values is None else tuple(kind(v) for v in values)


@dataclass(frozen=True)
class MapSettings:
    """Config ``maps``: the grid resolution, which species are mapped, chunk size."""

    resolution: float = 0.05
    species: tuple[int, ...] | None = None
    """Species ids to map in every region; None: ``per_bucket`` species of each frequency
    bucket among those observed in the region's train data."""
    per_bucket: int = 2
    chunk_mb: int = 128
    """Memory of the probabilities of the cells predicted at once (float64, all species):
    about 2,000 cells at the archive's 17,037 species, 33,000 at the demo's 500."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", _tuple(self.species, int))
        if not self.resolution > 0:
            raise ValueError(f"maps.resolution must be > 0, got {self.resolution}")
        _at_least_one("maps", self, ("per_bucket", "chunk_mb"))

    def chunk_cells(self, n_species: int) -> int:
        """Cells predicted at once so that their probabilities take ``chunk_mb``."""
        return max(1, self.chunk_mb * 2**20 // (8 * max(1, n_species)))


@dataclass(frozen=True)
class MessSettings:
    """Config ``mess``: the variables compared (all 27 by default)."""

    variables: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", _tuple(self.variables))
        check_names(self.variables or (), ENV_VARIABLES, "mess.variables")

    @property
    def columns(self) -> list[int]:
        chosen = ENV_VARIABLES if self.variables is None else self.variables
        return [ENV_VARIABLES.index(v) for v in chosen]


@dataclass(frozen=True)
class ImportanceSettings:
    """Config ``importance``: which features and groups are permuted, how often, on how
    many val rows."""

    variables: tuple[str, ...] | None = None
    """Features permuted one at a time; None: the 27 env variables and both coordinates."""
    groups: tuple[str, ...] = tuple(VARIABLE_GROUPS)
    """Groups of ``VARIABLE_GROUPS`` permuted as a block."""
    repeats: int = 3
    top_k: int = TOP_K
    """The k of the top-k error (Kaggle's 30; smaller for a dataset of few species)."""
    rows: int = 5000
    """Val rows sampled (seeded); 0: all of them."""
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", _tuple(self.variables))
        object.__setattr__(self, "groups", _tuple(self.groups))
        check_names(self.variables or (), FEATURES, "importance.variables")
        check_names(self.groups, tuple(VARIABLE_GROUPS), "importance.groups")
        _at_least_one("importance", self, ("repeats", "top_k"))

    @property
    def features(self) -> tuple[str, ...]:
        return FEATURES if self.variables is None else self.variables


@dataclass(frozen=True)
class ResponseSettings:
    """Config ``response``: which species and variables, how fine a curve, how many rows."""

    species: tuple[int, ...] | None = None
    """Species ids; None: one species of each frequency bucket per region, as the maps
    choose them."""
    variables: tuple[str, ...] | None = None
    """Features to vary; None: the ``top`` most important of the model."""
    top: int = 3
    points: int = 25
    rows: int = 300
    """Val rows of the region averaged over (a seeded sample)."""
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", _tuple(self.species, int))
        object.__setattr__(self, "variables", _tuple(self.variables))
        check_names(self.variables or (), FEATURES, "response.variables")
        _at_least_one("response", self, ("top", "points", "rows"))
