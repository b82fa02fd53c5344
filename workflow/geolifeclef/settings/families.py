"""The model families: every kind of model the workflow fits, ranks, maps and serves, one
record each. The one place that knows, per family, how it is configured (its settings
type), what it reads, where it is fitted and predicted, whether it can be mapped (and
why not), and which MLflow model serves it; the rules, the catalog, the maps and the
point-model loader ask here instead of switching on kind strings.

A baseline family is its settings class here and its module (``implementation``), which
holds ``fit(rows, species, settings, sources, n_jobs)`` and ``load(path, species, sources,
n_jobs)``; both give a fitted model with ``predict(rows, k, chunk_rows)`` (top K),
``probabilities_at(latitude, longitude, env)`` (maps) and ``save(path)`` (one file, the
MLflow model's weights). The rule ``predict_<name>``, its job, its map and its MLflow model
are built from the record: adding a baseline is its module, its record and its test.

Torch- and scikit-learn-free: the Snakefile reads it when the workflow is parsed.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from geolifeclef.settings.inputs import PATCH_STAT_GROUPS
from geolifeclef.settings.validation import check_forest, typed_settings, unknown_hint

POINT_FEATURES = ("env", "coordinates", "country")
"""Features known at any point (the rasters' values, the point, the region whose rasters
it is read from): a model reading only these can be mapped."""


# --------------------------------------------------------------------------------------
# Settings of the baselines
# --------------------------------------------------------------------------------------


class BaselineSettings:
    """What a baseline's settings say to the workflow (a family's settings subclass it):
    ``refit``, what the predict job reads besides the observation and species tables
    (``env``: the env table; ``patch_stats``: the patch statistics tables), and why the
    model cannot be mapped (None: it can)."""

    refit: bool

    @property
    def reads(self) -> tuple[str, ...]:
        return ()

    @property
    def unmappable_reason(self) -> str | None:
        return None


@dataclass(frozen=True)
class ConstantSettings(BaselineSettings):
    """The constant has nothing to set: the train counts are in the species table."""

    refit: ClassVar[bool] = False

    @property
    def unmappable_reason(self) -> str | None:
        return "predicts the same species everywhere: its map would be flat"


@dataclass(frozen=True)
class KnnSettings(BaselineSettings):
    """``n_neighbors`` train observations vote; ``prior_weight`` pseudo-observations drawn
    from the train prior fill the rest of the K ids and keep scores probabilities."""

    n_neighbors: int = 100
    prior_weight: float = 1.0
    refit: bool = False
    """Test predictions from the neighbours among train + val (val ones: train only)."""


@dataclass(frozen=True)
class RegionPriorSettings(BaselineSettings):
    """The species most observed in the observation's region (France or the US), smoothed
    towards the global train prior by ``prior_weight`` pseudo-observations."""

    prior_weight: float = 1.0
    refit: bool = False
    """Test predictions from the counts of train + val (val ones: train only)."""

    def __post_init__(self) -> None:
        if not self.prior_weight > 0:
            raise ValueError(f"prior_weight {self.prior_weight}: more than 0")


@dataclass(frozen=True)
class ForestSettings(BaselineSettings):
    n_estimators: int = 16
    max_depth: int = 10
    features: tuple[str, ...] = ("env", "coordinates")
    """Feature groups, from FOREST_FEATURE_GROUPS (the organizers': env and coordinates)."""
    max_samples: float | None = None
    """Share of the train rows each tree is fitted on (None: as many as there are rows,
    drawn with replacement). Bounds the time of a fit; memory is bounded by the depth."""
    refit: bool = False
    """Test predictions from a forest refitted on train + val (val ones stay train-only)."""
    bins: int | None = None
    """Fit on each feature binned to this many quantile levels of the fitting rows (None:
    on the values themselves). sklearn scores a candidate split per distinct value, at a
    cost that grows with the classes: with at most ``bins`` values per feature a tree fits
    ~10x faster at thousands of species. Predictions need no binning (``bin_edges``)."""
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        check_forest(self.n_estimators, self.max_depth, self.features, self.max_samples, self.bins)

    @property
    def reads(self) -> tuple[str, ...]:
        """``env`` (the env table) always (its rows check the extraction contract), and
        ``patch_stats`` when a feature group is a patch statistic."""
        return ("env", "patch_stats") if set(self.features) & set(PATCH_STAT_GROUPS) else ("env",)

    @property
    def unmappable_reason(self) -> str | None:
        extra = sorted(set(self.features) - set(POINT_FEATURES))
        return f"reads {', '.join(extra)}, known only at observation points" if extra else None


# --------------------------------------------------------------------------------------
# Settings of the fitted blends
# --------------------------------------------------------------------------------------


FIT_METHODS = ("likelihood", "top30")


@dataclass(frozen=True)
class BlendFit:
    """How a fitted blend's weights are chosen (config ``fitted_blends.<name>``)."""

    method: str = "likelihood"
    """``likelihood`` or ``top30`` (the module docstring)."""
    shrink: float = 0.0
    """Share of the weight spread equally over the members after the fit (0: none)."""
    fallback: bool = True
    """Become the best member (by val error) when the cross-fitted blend is worse."""

    def __post_init__(self):
        if self.method not in FIT_METHODS:
            raise ValueError(f"blend fit method {self.method!r}: one of {', '.join(FIT_METHODS)}")
        if not 0.0 <= self.shrink <= 1.0:
            raise ValueError(f"blend fit shrink {self.shrink}: between 0 and 1")


# --------------------------------------------------------------------------------------
# The records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One kind of model. ``kind`` is its leaderboard kind (``baseline``, ``experiment``,
    ``blend``, ``fitted blend``); a baseline family is also one model, named as the family."""

    name: str
    kind: str
    settings: type | None = None
    """Its settings class, defaults in the class: a baseline's (config
    ``baselines.<name>``), a fitted blend's fit (``fitted_blends.<name>`` less ``models``);
    an experiment's are ``geolifeclef.settings.experiment.ExperimentSettings``."""
    implementation: str = ""
    """The module that fits, predicts, maps and saves it (imported by the jobs only)."""
    served_by: str = ""
    """The ``mlflow.pyfunc`` model class that serves it (``module:Class``)."""
    threads: int = 1
    default: bool = True
    """A baseline that runs without a config section (else: when ``baselines.<name>`` is
    in the config, e.g. ``region_prior: {}``)."""
    mem_mb: dict[str, int] = field(default_factory=lambda: {"demo": 2_000, "archive": 4_000})
    """Memory of its predict job on the demo and on the archive (the SLURM profile's
    figures override the archive's: profiles/slurm/config.yaml)."""

    def settings_from(self, values: dict[str, Any] | None, where: str):
        """The typed settings of ``values`` (the config section at ``where``)."""
        return typed_settings(self.settings, values, where)


BASELINE_SERVED_BY = "geolifeclef.serving.models:BaselineModel"
FAMILIES = {
    family.name: family
    for family in (
        Family(
            "constant",
            "baseline",
            ConstantSettings,
            "geolifeclef.baselines.constant",
            BASELINE_SERVED_BY,
        ),
        Family(
            "region_prior",
            "baseline",
            RegionPriorSettings,
            "geolifeclef.baselines.region_prior",
            BASELINE_SERVED_BY,
            default=False,
        ),
        Family(
            "knn",
            "baseline",
            KnnSettings,
            "geolifeclef.baselines.knn",
            BASELINE_SERVED_BY,
            mem_mb={"demo": 2_000, "archive": 4_000},
        ),
        Family(
            "random_forest",
            "baseline",
            ForestSettings,
            "geolifeclef.baselines.forest",
            BASELINE_SERVED_BY,
            # 8 trees grown at once x 2,047 nodes x 17,037 classes (float64): ~2.2 GB
            threads=8,
            mem_mb={"demo": 2_000, "archive": 16_000},
        ),
        Family(
            "experiment",
            "experiment",
            implementation="geolifeclef.experiments.jobs",
            served_by="geolifeclef.experiments.serving:TopSpeciesModel",
        ),
        Family("blend", "blend", served_by="geolifeclef.serving.models:BlendModel"),
        Family(
            "fitted_blend",
            "fitted blend",
            BlendFit,
            "geolifeclef.predictions.blend_fit",
            "geolifeclef.serving.models:BlendModel",
        ),
    )
}
"""Every family by name; the baselines first, in leaderboard order."""
BASELINES = {name: family for name, family in FAMILIES.items() if family.kind == "baseline"}
"""The baseline families, each one model of its name, predicted by ``predict_<name>``."""


def family_of(kind: str, model: str) -> Family:
    """The family of a model of leaderboard ``kind`` named ``model``."""
    if kind == "baseline":
        return BASELINES[model]
    return next(family for family in FAMILIES.values() if family.kind == kind)


def baseline_settings(section: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every baseline's typed settings from the config's ``baselines`` section (a baseline
    it leaves out: its class's defaults), and every problem found, one line each naming
    its key (``geolifeclef.settings.workflow`` lists them with the other sections')."""
    problems = []
    for name in section:
        if name not in BASELINES:
            hint = unknown_hint(str(name).lower(), BASELINES, "baselines")
            problems.append(f"baselines.{name}: unknown baseline; {hint}")
    settings = {}
    for name, family in BASELINES.items():
        try:
            settings[name] = family.settings_from(section.get(name), f"baselines.{name}")
        except ValueError as error:
            problems.append(str(error))
    return settings, problems
