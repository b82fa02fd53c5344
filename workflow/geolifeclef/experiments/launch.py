"""How a training job starts: in this process, or one process per GPU under torchrun."""

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from geolifeclef.experiments.jobs import run_training, write_job

log = logging.getLogger(__name__)


def training_command(n_gpus: int, argv: list[str], python: str = sys.executable) -> list[str]:
    """The command that runs ``python argv...`` on ``n_gpus`` GPUs.

    Above one GPU it is torchrun (``torch.distributed.run``) with one process per GPU on
    this node; the processes find each other through a local rendezvous, and
    ``training.init_distributed`` joins them (NCCL on GPUs, gloo on CPU).
    """
    if n_gpus <= 1:
        return [python, *argv]
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={int(n_gpus)}",
        *argv,
    ]


def launch_training(job, n_gpus: int) -> None:
    """Run a ``TrainingJob``: here on one GPU (or the CPU), else one process per GPU
    through torchrun, from the job written as JSON beside its model (rank 0 writes the
    outputs)."""

    if n_gpus <= 1:
        run_training(job)
        return
    folder = Path(job.model).parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=folder, delete=False) as handle:
        path = Path(handle.name)
    try:
        # Logging goes through this process's handlers: the ranks print to its stderr.
        write_job(job, path)
        command = training_command(
            n_gpus, ["-m", "geolifeclef.experiments.jobs", "train", str(path)]
        )
        log.info("running %s", " ".join(command))
        subprocess.run(command, check=True)
    finally:
        path.unlink(missing_ok=True)
