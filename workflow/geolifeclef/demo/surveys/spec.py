"""The size and shape of a survey demo (GLC 2024 or 2025 layout): its spec and presets.

Everything the generator draws follows from a :class:`SurveyDemoSpec` (and its seed), so
two runs with equal specs write the same bytes. The map's extent and the areas held out of
training in 2025 are fixed here too, as they are part of what a spec means.
"""

from dataclasses import dataclass, replace

from geolifeclef.survey_layout import SURVEY_ARCHIVES

EUROPE_BOUNDS = (-10.0, 35.0, 30.0, 70.0)
"""West, south, east, north of the demo's map (degrees): a Europe-like extent."""

HELD_OUT_COUNTRIES = ("United Kingdom", "Ukraine", "Bulgaria")
"""GLC 2025's shift: test surveys in areas that training almost never saw (GLC24-25-FORMAT
§1: Ukraine, Bulgaria and the UK make up about half the real test, almost none of train)."""


@dataclass(frozen=True)
class SurveyDemoSpec:
    """Size and shape of a survey demo. Same spec and seed, same bytes."""

    year: int = 2025
    """The archive layout written: 2024 (JPEG patches) or 2025 (GeoTIFF patches and a
    held-out test area). Train, the spatial-block test and PO are the same in both."""
    seed: int = 2024
    n_species: int = 400
    """Species of the demo's world, a random subset of the archive's 11,255 label ids."""
    n_surveys: int = 9_000
    """PA surveys in train and the spatial-block test (the whole test of 2024)."""
    test_share: float = 0.05
    """Share of those surveys in test, taken by whole spatial blocks (GLC 2024: 95/5)."""
    held_out_share: float = 0.5
    """2025 only: share of the test surveys in the held-out areas, added to the block test."""
    n_po: int = 30_000
    """Presence-only occurrences (rows of the P0 metadata)."""
    n_hot_spots: int = 150
    """Observer hot spots around which PA surveys cluster."""
    grid_resolution: float = 0.1
    """Pixel size in degrees of the hidden fields."""
    block_km: float = 10.0
    """Side of the spatial blocks of the train/test split (the organizers' 10 km grid)."""
    mean_richness: float = 15.0
    """Mean true richness (expected species per survey) of train, calibrated."""
    zipf_exponent: float = 1.0
    """Species abundance ~ rank ** -zipf_exponent: a long tail."""

    def __post_init__(self) -> None:
        if self.year not in SURVEY_ARCHIVES:
            raise ValueError(f"no survey archive layout for year {self.year}; choose 2024 or 2025")


SURVEY_DEMO_SCALES = {
    "tiny": SurveyDemoSpec(
        n_species=60,
        n_surveys=300,
        test_share=0.1,
        n_po=1_500,
        n_hot_spots=20,
        grid_resolution=0.25,
    ),
    "small": SurveyDemoSpec(),
    "large": SurveyDemoSpec(
        n_species=2_000, n_surveys=90_000, n_po=400_000, n_hot_spots=1_500, grid_resolution=0.05
    ),
}
"""Named presets: ``tiny`` for tests, ``small`` for the default demo, ``large`` to stress."""


def survey_spec_for(scale: str, **overrides) -> SurveyDemoSpec:
    """The preset ``scale`` with the given fields replaced (None values ignored)."""
    if scale not in SURVEY_DEMO_SCALES:
        raise ValueError(
            f"unknown survey demo scale {scale!r}; choose one of {sorted(SURVEY_DEMO_SCALES)}"
        )
    return replace(
        SURVEY_DEMO_SCALES[scale], **{k: v for k, v in overrides.items() if v is not None}
    )
