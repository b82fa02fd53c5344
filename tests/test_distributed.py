"""Multi-GPU launch: the torchrun command runs DistributedDataParallel (gloo on CPU)."""

import json
import subprocess
import sys
import textwrap

from geolifeclef.experiments.launch import training_command

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    from geolifeclef.settings.configs import ModelConfig, TrainConfig
    from geolifeclef.models.networks import build_model
    from geolifeclef.experiments.training import distributed_world, train

    out = sys.argv[1]
    rank, world = distributed_world()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (np.abs(x[:, 0]) * 3).astype(np.int64) % 6

    def loader(epoch):
        rows = np.random.default_rng(epoch).permutation(64)[rank::world]  # this rank's shard
        return [{"tabular": torch.from_numpy(x[rows[i:i + 8]]),
                 "label": torch.from_numpy(y[rows[i:i + 8]]),
                 "observation_id": torch.from_numpy(rows[i:i + 8])} for i in range(0, len(rows), 8)]

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", n_classes=6, n_tabular=4))
    config = TrainConfig(epochs=2, batch_size=8, warmup_epochs=0, seed=1)
    state = train(model, loader, loader(99), config, np.bincount(y, minlength=6),
                  f"{out}/ckpt.pt", f"{out}/best.pt")
    weights = model.head[1].weight.detach()
    report = {"rank": rank, "world": world, "epochs": state.epoch,
              "ddp": torch.distributed.is_initialized(), "weight_sum": float(weights.sum())}
    with open(f"{out}/rank{rank}.json", "w") as handle:  # not stdout: ranks interleave there
        json.dump(report, handle)
    """
)


def test_single_gpu_runs_plain_python():
    assert training_command(1, ["-m", "x"], python="py") == ["py", "-m", "x"]
    assert training_command(0, ["script.py"], python="py") == ["py", "script.py"]


def test_two_processes_train_together_under_torchrun(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    command = training_command(2, [str(script), str(tmp_path)])
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    assert all(r["world"] == 2 and r["ddp"] and r["epochs"] == 2 for r in reports)
    # DistributedDataParallel keeps the replicas identical.
    assert reports[0]["weight_sum"] == reports[1]["weight_sum"]
    assert (tmp_path / "ckpt.pt").exists()
    assert sys.executable in command[0]
