"""The editions of GeoLifeCLEF the workflow runs: the one place that decides, from the config's
``edition``, the dataset layout and the task.

=========  ==========================================  =========================================
edition    layout                                      task
=========  ==========================================  =========================================
glc2022    ``layout.DatasetLayout`` (observations,     one species per observation, top-30 error
           rasters, 4 patch modalities, fr + us)
glc2024    ``survey_layout.SurveyLayout`` (GLC24       the set of species of each presence-
           names: RGB + NIR JPEG, TimeSeries-Cubes)    absence survey, samples-averaged F1
glc2025    ``survey_layout.SurveyLayout`` (GLC25       the same
           names: 4-band GeoTIFF, Satelite...)
=========  ==========================================  =========================================

Rules and scripts ask the :class:`Edition` (its layout, its ``task``, what its archive holds)
instead of testing the edition's name; GeoPlant's layout would be one more record here. Each
edition has its own config file (``config_file``: its experiments, blends and baselines
differ): ``--config edition=glc2024`` reads ``config/glc2024.yaml``.

Torch-free and light: the Snakefile reads it when the workflow is parsed.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geolifeclef.layout import ENV_VARIABLES, DatasetLayout
from geolifeclef.survey_layout import SURVEY_ARCHIVES, SurveyArchiveNames, SurveyLayout

DEFAULT_EDITION = "glc2022"


@dataclass(frozen=True)
class Task:
    """What an edition asks to predict per row, and how it is scored."""

    name: str
    multi_label: bool
    """Each row (a survey) has a set of species present (True), or one observed species."""
    metric: str
    """The leaderboard's metric: ``top30_error`` (lower is better) or ``f1`` (higher)."""
    higher_is_better: bool
    submission_header: str
    """The first line of a Kaggle submission."""
    set_size: int
    """Species per row of a fixed-size set: the 30 that GLC 2022 scores; the organizers'
    top 25 of GLC 2024/2025 (the set rule ``top_k``)."""

    @property
    def id_column(self) -> str:
        return self.submission_header.split(",")[0]


TOP30 = Task(
    name="top30",
    multi_label=False,
    metric="top30_error",
    higher_is_better=False,
    submission_header="Id,Predicted",
    set_size=30,
)
SPECIES_SETS = Task(
    name="species_sets",
    multi_label=True,
    metric="f1",
    higher_is_better=True,
    submission_header="surveyId,predictions",
    set_size=25,
)


@dataclass(frozen=True)
class Edition:
    """One edition: its name, its archive's layout and its task."""

    name: str
    year: int
    task: Task
    archive: SurveyArchiveNames | None
    """How a survey edition's archive spells its files; None: the GLC 2022 layout."""
    demo_folder: str
    """Folder of the generated demo under ``resources/demo/``."""
    truth_folder: str
    """Folder of the demo's hidden truth under ``resources/demo/``."""
    env_variables: tuple[str, ...] | None
    """The env table's columns: GLC 2022's 27 raster variables; None: a survey edition's
    values tables decide (GLC 2024 and 2025 name them differently)."""

    @property
    def surveys(self) -> bool:
        """Whether the archive holds presence-absence surveys (GLC 2024 on)."""
        return self.archive is not None

    def layout(self, root: str | Path) -> DatasetLayout | SurveyLayout:
        """The layout of an unpacked archive (or the demo) of this edition at ``root``."""
        if self.archive is None:
            return DatasetLayout(Path(root))
        return SurveyLayout(Path(root), self.archive)

    @property
    def config_file(self) -> str:
        """The edition's config, relative to the repository: GLC 2022's is the default one."""
        return "config/config.yaml" if self.name == DEFAULT_EDITION else f"config/{self.name}.yaml"

    @property
    def champion_model(self) -> str:
        """The registered MLflow model of the edition's submitted models (its alias
        ``champion``: the one behind ``final.csv``); one per edition, as their tasks differ."""
        return (
            "geolifeclef-submission"
            if self.name == DEFAULT_EDITION
            else (f"geolifeclef-{self.name}-submission")
        )

    @property
    def demo_root(self) -> Path:
        return Path("resources/demo") / self.demo_folder

    @property
    def demo_truth(self) -> Path:
        return Path("resources/demo") / self.truth_folder


EDITIONS = {
    edition.name: edition
    for edition in (
        # 2022's demo paths are those it always had.
        Edition("glc2022", 2022, TOP30, None, "glc22", "truth", ENV_VARIABLES),
        Edition("glc2024", 2024, SPECIES_SETS, SURVEY_ARCHIVES[2024], "glc24", "glc24-truth", None),
        Edition("glc2025", 2025, SPECIES_SETS, SURVEY_ARCHIVES[2025], "glc25", "glc25-truth", None),
    )
}


def edition_of(config: Mapping[str, Any]) -> Edition:
    """The edition a config names (``edition``, default glc2022)."""
    name = config.get("edition") or DEFAULT_EDITION
    if name not in EDITIONS:
        raise ValueError(f"edition: {name!r} is not one of {sorted(EDITIONS)}")
    return EDITIONS[name]
