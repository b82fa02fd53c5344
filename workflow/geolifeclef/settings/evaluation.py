"""Settings of the evaluation and the submission (config ``evaluation``, ``submission``),
typed when the workflow is parsed (``geolifeclef.settings.workflow``)."""

from dataclasses import dataclass

from geolifeclef.settings.validation import check_bootstrap


@dataclass(frozen=True)
class BlockBootstrap:
    """Settings of the block bootstrap (config section ``evaluation``)."""

    block_degrees: float = 1.0
    """Side of a block, degrees of latitude and longitude."""
    draws: int = 1000
    """Resamplings of the val blocks."""
    seed: int = 0
    """Seed of the count matrix: the same seed gives the same intervals."""
    confidence: float = 0.95
    """Coverage of the intervals (0.95: the 2.5th to the 97.5th percentile of the draws)."""

    def __post_init__(self) -> None:
        check_bootstrap(self.block_degrees, self.draws, self.confidence)


@dataclass(frozen=True)
class SubmissionSettings:
    """Config ``submission``: the model whose test predictions become ``final.csv``
    (``best``: the lowest val top-30 error; the catalog checks a name)."""

    model: str = "best"
