"""How a training job starts: one process, or one process per GPU under torchrun."""

import sys


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
