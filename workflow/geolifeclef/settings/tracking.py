"""Where MLflow runs go: the tracking URI and experiment that the Snakefile resolves once
and hands to every job through the environment (torch- and mlflow-free: the Snakefile
reads it). How runs are named, tagged and logged is ``geolifeclef.tracking``."""

import os
from dataclasses import dataclass
from pathlib import Path

PARENT_RUN_ENV = "GLC_MLFLOW_PARENT_RUN_ID"
SWEEP_RUNS_ENV = "GLC_MLFLOW_SWEEP_RUNS"
"""JSON {sweep: run id} of the invocation's sweep runs (children of its parent run)."""
TRACKING_URI_ENV = "GLC_MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "GLC_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "geolifeclef"


def default_tracking_uri(workdir: str | Path = ".") -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


@dataclass(frozen=True)
class Tracking:
    """Where runs are recorded: the resolved MLflow tracking URI and experiment name."""

    uri: str
    experiment: str

    def export(self) -> None:
        """Hand this target to every job of the invocation, through the environment.

        Not through rule params: params are stored in plain text in .snakemake/metadata
        (a password in the URI would leak there) and a changed param reruns the job, while
        where runs are recorded changes no result.
        """
        os.environ[TRACKING_URI_ENV] = self.uri
        os.environ[EXPERIMENT_ENV] = self.experiment

    @classmethod
    def of_invocation(cls) -> "Tracking":
        """The target the workflow exported (see ``export``)."""
        missing = [name for name in (TRACKING_URI_ENV, EXPERIMENT_ENV) if name not in os.environ]
        if missing:
            raise RuntimeError(f"{missing} not set: run this step through the workflow")
        return cls(os.environ[TRACKING_URI_ENV], os.environ[EXPERIMENT_ENV])
