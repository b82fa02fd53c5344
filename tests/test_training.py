"""The training loop: resume after a kill, determinism on CPU, losses and schedules."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from geolifeclef.experiments.training import (
    augment_patches,
    block_label_swap,
    evaluate_top_k,
    learning_rate_factor,
    load_checkpoint,
    make_loss,
    make_optimizer,
    train,
)
from geolifeclef.models.networks import build_model
from geolifeclef.predictions.metrics import top_k_error
from geolifeclef.settings.configs import AugmentConfig, ModelConfig, TrainConfig

N_CLASSES = 12
N_FEATURES = 5


class Killed(RuntimeError):
    pass


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    labels = (np.abs(x[:, 0] * 3 + x[:, 1]).astype(int) % N_CLASSES).astype(np.int64)
    return x, labels


def _loader(x, labels, batch_size, shuffle_seed=None):
    order = np.arange(len(x))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(x))
    batches = []
    for start in range(0, len(x), batch_size):
        rows = order[start : start + batch_size]
        batches.append(
            {
                "tabular": torch.from_numpy(x[rows]),
                "patches": {},
                "label": torch.from_numpy(labels[rows]),
                "observation_id": torch.from_numpy(rows.astype(np.int64)),
            }
        )
    return batches


def _run(tmp_path, config, on_epoch=None, name="run", batches=None):
    """Train the tiny MLP; ``batches``: the train loader holds only its first ones."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", n_classes=N_CLASSES, n_tabular=N_FEATURES))
    x, labels = _data()
    vx, vlabels = _data(80, seed=1)
    state = train(
        model,
        lambda epoch: _loader(x, labels, config.batch_size, shuffle_seed=epoch)[:batches],
        _loader(vx, vlabels, 64),
        config,
        np.bincount(labels, minlength=N_CLASSES),
        tmp_path / name / "checkpoint.pt",
        tmp_path / name / "best.pt",
        on_epoch=on_epoch,
    )
    return model, state


CONFIG = TrainConfig(epochs=4, batch_size=32, learning_rate=3e-3, warmup_epochs=0.5, seed=5)


def test_training_learns_something(tmp_path):
    _, state = _run(tmp_path, CONFIG)
    errors = [h["val_top1_error"] for h in state.history]
    assert errors[-1] < errors[0]
    assert state.history[0]["samples_per_second"] > 0
    assert (tmp_path / "run" / "best.pt").exists()


def test_same_seed_same_metrics_on_cpu(tmp_path):
    _, first = _run(tmp_path, CONFIG, name="a")
    _, second = _run(tmp_path, CONFIG, name="b")
    for a, b in zip(first.history, second.history, strict=True):
        assert {k: v for k, v in a.items() if k != "samples_per_second"} == {
            k: v for k, v in b.items() if k != "samples_per_second"
        }


def test_resume_after_a_kill_continues_at_the_right_epoch(tmp_path):
    uninterrupted, reference = _run(tmp_path, CONFIG, name="reference")

    def die_after_second_epoch(epoch, metrics):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _run(tmp_path, CONFIG, on_epoch=die_after_second_epoch, name="killed")
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    probe = build_model(ModelConfig(kind="mlp", n_classes=N_CLASSES, n_tabular=N_FEATURES))
    optimizer = make_optimizer(probe, CONFIG)
    state = load_checkpoint(checkpoint, probe, optimizer)
    assert state.epoch == 2
    assert optimizer.state_dict()["state"]  # Adam moments came back
    seen = []
    resumed, final = _run(tmp_path, CONFIG, on_epoch=lambda e, m: seen.append(e), name="killed")
    assert seen == [3, 4]  # not from zero
    assert [h["epoch"] for h in final.history] == [1, 2, 3, 4]
    for key, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


def test_early_stopping_stops(tmp_path):
    config = TrainConfig(
        epochs=30,
        batch_size=32,
        learning_rate=0.0,
        warmup_epochs=0,
        early_stopping_patience=2,
        seed=1,
    )
    _, state = _run(tmp_path, config)
    assert state.epoch == 3  # epoch 1 sets the best, 2 and 3 do not improve


def test_learning_rate_schedules():
    config = TrainConfig(epochs=10, warmup_epochs=2, schedule="cosine")
    assert learning_rate_factor(config, 1.0) == pytest.approx(0.5)
    assert learning_rate_factor(config, 2.0) == pytest.approx(1.0)
    assert learning_rate_factor(config, 6.0) == pytest.approx(0.5)
    assert learning_rate_factor(config, 10.0) == pytest.approx(0.0, abs=1e-9)
    step = TrainConfig(epochs=10, warmup_epochs=0, schedule="step", step_epochs=3, step_gamma=0.1)
    assert learning_rate_factor(step, 2.9) == 1.0
    assert learning_rate_factor(step, 3.0) == pytest.approx(0.1)


@pytest.mark.parametrize("loss", ["logit_adjusted", "balanced_softmax", "class_weighted"])
def test_long_tail_losses_favour_rare_classes(loss):
    counts = np.array([1000, 10])
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])  # a model that favours the common class
    labels = torch.tensor([0, 1])
    plain = make_loss(TrainConfig(), counts, torch.device("cpu"))
    adjusted = make_loss(TrainConfig(loss=loss), counts, torch.device("cpu"))
    # Missing the rare class costs more, so training pushes its logit up.
    assert adjusted(logits, labels) > plain(logits, labels) + 0.5


def test_block_label_swap_keeps_labels_within_blocks():
    rng = np.random.default_rng(0)
    lat = np.repeat([45.01, 45.51, 46.01], 50)
    lon = np.full(150, 3.01)
    labels = np.repeat([1, 2, 3], 50) * 10 + rng.integers(0, 3, 150)
    swapped = block_label_swap(labels, lat, lon, 0.5, 0.5, rng)
    assert (swapped != labels).mean() > 0.1
    assert ((swapped // 10) == (labels // 10)).all()  # never crosses a block
    assert (block_label_swap(labels, lat, lon, 0.0, 0.5, rng) == labels).all()


def test_augmentation_moves_all_modalities_together():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    patches = {"rgb": image.repeat(1, 3, 1, 1), "landcover": image[:, 0].long()}
    generator = torch.Generator().manual_seed(3)
    out = augment_patches(patches, AugmentConfig(brightness=0.0), generator)
    torch.testing.assert_close(out["rgb"][:, 0], out["landcover"].float())


def test_invalid_training_settings_are_refused():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")


def test_steps_per_epoch_trains_on_the_first_batches_only(tmp_path):
    """A capped epoch trains exactly as an epoch whose loader holds only its first batches
    (the schedule counting the capped epoch), and val is still evaluated whole."""
    full = TrainConfig(epochs=2, batch_size=32, warmup_epochs=0.5, seed=5)
    capped, state = _run(tmp_path, replace(full, steps_per_epoch=3), name="capped")
    assert "val_top30_error" in state.history[-1]
    truncated, _ = _run(tmp_path, full, name="truncated", batches=3)
    for key, value in truncated.state_dict().items():
        torch.testing.assert_close(capped.state_dict()[key], value)
    uncapped, _ = _run(tmp_path, full, name="uncapped")
    assert any(not torch.equal(uncapped.state_dict()[k], v) for k, v in capped.state_dict().items())


class _Logits(torch.nn.Module):
    """Returns the batch's ``x`` as logits: its scores are chosen by the test."""

    def forward(self, batch):
        return batch["x"]


@pytest.mark.parametrize("classes", [50, 12])
def test_per_epoch_val_errors_are_the_evaluation_metrics(classes):
    """Training's per-epoch errors are the metric registry's, computed as the evaluate runs
    compute them; with fewer classes than k, every class is in the set."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(70, classes, generator=generator)
    labels = torch.randint(0, classes, (70,), generator=generator)
    loader = [
        {
            "observation_id": torch.arange(i, i + 32),
            "x": logits[i : i + 32],
            "label": labels[i : i + 32],
        }
        for i in range(0, 70, 32)
    ]
    found = evaluate_top_k(_Logits(), loader, torch.device("cpu"))
    ranked = np.argsort(-logits.numpy(), axis=1, kind="stable")
    expected = {}
    for k in (1, 5, 10, 30):
        chosen = ranked[:, : min(k, classes)]
        expected[f"val_top{k}_error"] = top_k_error(chosen, labels.numpy())
    assert found == pytest.approx(expected, abs=1e-12)
    assert list(found) == ["val_top1_error", "val_top5_error", "val_top10_error", "val_top30_error"]
    if classes < 30:
        assert found["val_top30_error"] == 0.0
