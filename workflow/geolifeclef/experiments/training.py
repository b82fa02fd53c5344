"""Training and prediction of the PyTorch models.

The loop is plain PyTorch: AdamW or SGD, cosine or step schedule with linear warm-up,
AMP and channels_last on CUDA, gradient clipping, label smoothing, long-tail options
(logit adjustment, balanced softmax, class weights), spatial block label swap, early
stopping on val top-30, a checkpoint after every epoch (a killed job resumes from its last
epoch), seeded and deterministic on CPU, DistributedDataParallel under torchrun. On
SIGTERM (``StopRequest``: SLURM's signal at preemption and time limit) it stops after the
step it is in, with a checkpoint of the epoch so far that a rerun resumes exactly.

Batches are dicts: ``tabular`` (B, F) float, ``patches`` {modality: tensor},
``label`` (B,) int64 species id (absent for test), ``observation_id`` (B,) int64. They
come on the device from the loader (``geolifeclef.data.dataset.make_loader``), or are
moved there first (``to_device``: raw patches are then normalised and derived there);
augmentation runs on the device too.

A multi-label task (``multi_label``: the set of species present in each survey, GLC 2024
on) runs the same loop with its own head: ``label`` is a multi-hot (B, S) bool, the loss
a binary cross-entropy per species (``pos_weight`` on the species present), the outputs
sigmoid marginals, and the epoch kept (and early stopping) goes by the val F1 of the
top-25 sets (``val_top25_f1``), logged with the val BCE.
"""

import contextlib
import itertools
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from geolifeclef.atomic import atomic_path
from geolifeclef.data.dataset import DeviceLoader, to_device, without_first_batches
from geolifeclef.errors import StoppedBySignal
from geolifeclef.layout import REFLECTANCE_MODALITIES
from geolifeclef.predictions.metrics import (
    BCE,
    EPOCH_METRICS,
    LOWER,
    MULTI_LABEL_EPOCH_METRICS,
    TOP25_F1,
    TOP30,
    Metric,
    top_k,
    val_name,
)
from geolifeclef.settings.configs import AugmentConfig, TrainConfig

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Reproducibility and devices
# --------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and make CPU kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device() -> torch.device:
    """The GPU the job was given (CUDA_VISIBLE_DEVICES, LOCAL_RANK), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def distributed_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed() -> bool:
    """Join the process group that torchrun set up; False when not under torchrun."""
    _, world = distributed_world()
    if world <= 1 or torch.distributed.is_initialized():
        return world > 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    return True


# --------------------------------------------------------------------------------------
# Losses, schedules, augmentation
# --------------------------------------------------------------------------------------


def make_loss(
    config: TrainConfig, class_counts: np.ndarray, device: torch.device, multi_label: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss; ``class_counts`` are train observations per species id.

    Logit adjustment and balanced softmax add ``tau * log(prior)`` to the logits during
    training only, which shifts predictions towards rare species at test time.

    ``multi_label``: a binary cross-entropy per species (mean over rows and species) of
    the logits against the multi-hot labels (bool, made float here, on the device), each
    present species weighted by ``config.pos_weight``; the settings refuse the other
    losses and label smoothing for such a task.
    """
    if multi_label:
        return _multi_label_loss(config, device)
    counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64), device=device)
    prior = (counts + 1.0) / (counts + 1.0).sum()
    weight = None
    offset = None
    if config.loss == "class_weighted":
        weight = (counts + 1.0) ** -config.class_weight_power
        weight = (weight / (weight * prior).sum()).float()
    elif config.loss == "logit_adjusted":
        offset = (config.logit_adjust_tau * prior.log()).float()
    elif config.loss == "balanced_softmax":
        offset = prior.log().float()
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if offset is not None:
            logits = logits + offset
        return criterion(logits.float(), labels)

    return loss


def _multi_label_loss(
    config: TrainConfig, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A multi-label task's loss, averaged over rows and species, ``pos_weight`` on the
    species present: the binary cross-entropy (``cross_entropy``); ``focal``, each term
    times (1 - p_t)^gamma; ``asymmetric`` (ASL), absences shifted down by ``clip`` and
    weighted by p^gamma_neg, so the thousands of easy absences of a survey weigh little."""
    pos_weight = torch.tensor(config.pos_weight, dtype=torch.float32, device=device)
    if config.loss == "cross_entropy":
        binary = nn.BCEWithLogitsLoss(pos_weight=pos_weight if config.pos_weight != 1.0 else None)
        return lambda logits, present: binary(logits.float(), present.float())

    def loss(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        x, y = logits.float(), present.float()
        p = torch.sigmoid(x)
        if config.loss == "focal":
            terms = nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
            p_true = y * p + (1 - y) * (1 - p)
            weight = (1 - p_true) ** config.focal_gamma
            return (weight * terms * (1 + (pos_weight - 1) * y)).mean()
        shifted = (p - config.asymmetric_clip).clamp(min=0)  # asymmetric
        present_terms = pos_weight * y * nn.functional.logsigmoid(x)
        absent_terms = (
            (1 - y)
            * shifted**config.asymmetric_gamma_neg
            * torch.log((1 - shifted).clamp(min=1e-8))
        )
        return -(present_terms + absent_terms).mean()

    return loss


def learning_rate_factor(config: TrainConfig, progress: float) -> float:
    """Multiplier of the base learning rate at ``progress`` epochs (fractional)."""
    if config.warmup_epochs > 0 and progress < config.warmup_epochs:
        return (progress + 1e-8) / config.warmup_epochs
    if config.schedule == "cosine":
        span = max(config.epochs - config.warmup_epochs, 1e-8)
        done = min(1.0, (progress - config.warmup_epochs) / span)
        return 0.5 * (1 + math.cos(math.pi * done))
    if config.schedule == "step":
        return config.step_gamma ** int(progress // config.step_epochs)
    return 1.0


def augment_patches(
    patches: dict[str, torch.Tensor], config: AugmentConfig, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """The same random flip/rotation for every modality of a sample; brightness on imagery.

    The draws come from ``generator`` (on the CPU) whatever the patches' device, so a seed
    gives the same augmentation on a GPU as on the CPU; square patches."""
    if not patches:
        return patches
    first = next(iter(patches.values()))
    batch = first.shape[0]
    flips = torch.rand(batch, generator=generator) < 0.5 if config.flip else None
    turns = torch.randint(0, 4, (batch,), generator=generator) if config.rotate else None
    scale = None
    if config.brightness > 0:
        scale = 1 + (torch.rand(batch, generator=generator) * 2 - 1) * config.brightness
    out = {}
    for modality, tensor in patches.items():
        t = tensor
        if flips is not None:
            t = torch.where(_expand(flips, t), t.flip(-1), t)
        if turns is not None:  # whole-batch rotations, selected per sample (no loop on B)
            turned = t
            for k in (1, 2, 3):
                turned = torch.where(
                    _expand(turns == k, t), torch.rot90(t, k, dims=(-2, -1)), turned
                )
            t = turned
        if scale is not None and modality in REFLECTANCE_MODALITIES and t.is_floating_point():
            t = t * _expand(scale.to(t.dtype), t)
        out[modality] = t
    return out


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device).view(-1, *([1] * (like.dim() - 1)))


def block_label_swap(
    labels: np.ndarray,
    latitude: np.ndarray,
    longitude: np.ndarray,
    probability: float,
    block_size: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Spatial block label swap (GLC 2022 2nd place): with ``probability``, a label is
    replaced by the label of another observation of the same spatial block.

    Neighbours share most species, so the swap is a label noise that teaches the model
    the local species pool rather than the single observation.
    """
    labels = np.asarray(labels).copy()
    if probability <= 0 or len(labels) == 0:
        return labels
    block = np.floor(np.asarray(latitude) / block_size).astype(np.int64) * 100_000 + np.floor(
        np.asarray(longitude) / block_size
    ).astype(np.int64)
    order = np.argsort(block, kind="stable")
    sorted_blocks = block[order]
    starts = np.flatnonzero(np.r_[True, sorted_blocks[1:] != sorted_blocks[:-1]])
    ends = np.r_[starts[1:], len(order)]
    original = labels.copy()
    for start, end in zip(starts, ends, strict=True):
        if end - start < 2:
            continue
        members = order[start:end]
        swap = members[rng.random(len(members)) < probability]
        if len(swap):
            labels[swap] = original[rng.choice(members, len(swap))]
    return labels


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights."""

    epoch: int = 0
    """Epochs completed."""
    best_value: float | None = None
    """The kept epoch's val figure that chose it (``selection_metric``): its val top-30
    error, or top-25 F1 for a multi-label task; None before an epoch is kept, NaN after
    a refit (no val)."""
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)
    partial: dict | None = None
    """The epoch in progress when training was stopped (``StopRequest``): its ``steps``
    done and the sums its metrics are made of (``seen``, ``loss``, ``seconds``); None
    between epochs."""


def save_checkpoint(
    path: Path, model: nn.Module, optimizer, state: TrainState, augment: torch.Generator
) -> None:
    """Write the checkpoint atomically: a kill mid-write leaves the previous one intact."""
    payload = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": asdict(state),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].tolist(),
        "augment_rng": augment.get_state(),
    }
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(
    path: Path, model: nn.Module, optimizer=None, augment: torch.Generator | None = None
) -> TrainState:
    """Restore weights (and optimizer state, and the augmentation's generator) from
    ``path``; safe loading only."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    _unwrap(model).load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    if augment is not None and "augment_rng" in payload:
        augment.set_state(payload["augment_rng"])
    state = dict(payload["state"])
    if "best_error" in state:  # a checkpoint written before multi-label tasks
        state["best_value"] = state.pop("best_error")
    return TrainState(**state)


class StopRequest:
    """A request to stop training at its next safe point (after a step, or after an
    epoch's checkpoint), made by a signal: SIGTERM is what SLURM sends at preemption and
    at its time limit, some seconds before it kills. ``watching`` installs the handler."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def _note(self, number: int, _frame) -> None:
        self.signal_number = number  # no more in a handler: the loop acts on it

    def requested(self, distributed: bool, device: torch.device) -> bool:
        """Whether to stop now; under torchrun, whether any rank was asked (all stop at
        the same step, or the others would wait for it for ever)."""
        asked = self.signal_number is not None
        if not distributed:
            return asked
        flag = torch.tensor([self.signal_number or 0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self.signal_number = int(flag.item()) or None
        return self.signal_number is not None

    @contextlib.contextmanager
    def watching(self, numbers=(signal.SIGTERM,)) -> Iterator["StopRequest"]:
        """Note ``numbers`` as requests while inside; the previous handlers after."""
        previous = {number: signal.signal(number, self._note) for number in numbers}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters.
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.learning_rate, momentum=config.momentum, nesterov=True
        )
    return torch.optim.AdamW(groups, lr=config.learning_rate)


@torch.no_grad()
def predict_scores(
    model: nn.Module,
    loader: Iterable[dict],
    device: torch.device,
    tta: bool = False,
    progress: str | None = None,
    multi_label: bool = False,
) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yield (observation_ids, probabilities (B, S) float32, labels or None) per batch.

    The probabilities are a softmax over species (one per row), or with ``multi_label``
    each species' marginal presence probability (a sigmoid: a row need not sum to 1).
    With ``tta`` they are averaged over the 8 flips and rotations of the patches.
    """
    model.eval()
    for batch in tqdm(loader, desc=progress, disable=progress is None, mininterval=5):
        batch = to_device(batch, device)
        views = _tta_views(batch["patches"]) if tta and batch.get("patches") else [None]
        probabilities = None
        for view in views:
            inputs = batch if view is None else {**batch, "patches": view}
            with _autocast(device, enabled=True):
                logits = model(inputs).float()
                p = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)
            probabilities = p if probabilities is None else probabilities + p
        probabilities = (probabilities / len(views)).cpu().numpy()
        labels = batch.get("label")
        yield (
            batch["observation_id"].cpu().numpy(),
            probabilities,
            None if labels is None else labels.cpu().numpy(),
        )


def _tta_views(patches: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    views = []
    for flip in (False, True):
        for turns in range(4):
            view = {}
            for modality, tensor in patches.items():
                t = tensor.flip(-1) if flip else tensor
                view[modality] = torch.rot90(t, turns, dims=(-2, -1))
            views.append(view)
    return views


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def evaluate_top_k(
    model: nn.Module, loader: Iterable[dict], device: torch.device, metrics=EPOCH_METRICS
) -> dict[str, float]:
    """The registry's top-k ``metrics`` (``geolifeclef.predictions.metrics``: the functions
    and names of the evaluate runs, ``val_top30_error``...) on a labelled loader, keeping
    each row's top K ids, not its scores."""
    k = max(metric.k for metric in metrics)
    chosen, truth = [], []
    for _, probabilities, labels in predict_scores(model, loader, device):
        best, _ = top_k(probabilities, min(k, probabilities.shape[1]))
        chosen.append(best)
        truth.append(labels)
    predicted = np.concatenate(chosen) if chosen else np.empty((0, k), dtype=np.int64)
    # Fewer classes than k: every class is in the set; the padding (-1) is no label.
    predicted = np.pad(predicted, ((0, 0), (0, k - predicted.shape[1])), constant_values=-1)
    labels = np.concatenate(truth) if truth else np.empty(0, dtype=np.int64)
    return {val_name(metric.name): metric.function(predicted, labels) for metric in metrics}


PROBABILITY_FLOOR = 1e-7
"""Probabilities are clipped to [floor, 1 - floor] for the val BCE: a float32 sigmoid
rounds to exactly 0 or 1 beyond |logit| ~ 17."""


def evaluate_species_sets(
    model: nn.Module,
    loader: Iterable[dict],
    device: torch.device,
    metrics: tuple[Metric, ...] = MULTI_LABEL_EPOCH_METRICS,
) -> dict[str, float]:
    """A multi-label task's figures per epoch on a labelled loader (multi-hot labels):
    the registry's set ``metrics`` (``val_top25_f1``: the F1 of each row's most probable
    species) and the mean binary cross-entropy of the probabilities (``val_bce``,
    unweighted). Sets and truth are output columns, keeping each row's top K, not its
    scores."""
    k = max(metric.k for metric in metrics)
    chosen, truth, cross_entropy, cells = [], [], 0.0, 0
    for _, probabilities, labels in predict_scores(model, loader, device, multi_label=True):
        present = labels.astype(bool)
        best, _ = top_k(probabilities, min(k, probabilities.shape[1]))
        chosen.append(best)
        truth.extend(np.split(np.nonzero(present)[1], np.cumsum(present.sum(axis=1))[:-1]))
        p = np.clip(probabilities.astype(np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        cross_entropy -= np.log(p[present]).sum() + np.log1p(-p[~present]).sum()
        cells += present.size
    predicted = np.concatenate(chosen) if chosen else np.empty((0, k), dtype=np.int64)
    # Fewer species than k: every species is in the set; the padding (-1) is none.
    predicted = np.pad(predicted, ((0, 0), (0, k - predicted.shape[1])), constant_values=-1)
    found = {}
    for metric in metrics:
        if metric is BCE:
            found[val_name(metric.name)] = cross_entropy / cells if cells else float("nan")
        else:
            found[val_name(metric.name)] = metric.function(predicted, truth)
    # Python floats: a NumPy scalar in the history would make the checkpoint unreadable by
    # torch.load(weights_only=True), and the killed fit would not resume.
    return {name: float(value) for name, value in found.items()}


def selection_metric(multi_label: bool) -> Metric:
    """The val figure that keeps an epoch and stops early: the top-30 error, or the top-25
    F1 of a multi-label task."""
    return TOP25_F1 if multi_label else TOP30


def _improves(metric: Metric, value: float, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) in ``metric``'s direction; a
    NaN never does."""
    if metric.direction == LOWER:
        return value < (float("inf") if best is None else best)
    return value > (float("-inf") if best is None else best)


def train_step(
    model: nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
) -> torch.Tensor:
    """One optimisation step on a batch: augmentation (on the device), forward (mixed
    precision on CUDA), backward, gradient clipping, update. Returns the loss (on the
    device)."""
    batch = to_device(batch, device)  # a no-op for a loader's batches, already there
    if batch.get("patches"):
        batch = {**batch, "patches": augment_patches(batch["patches"], config.augment, generator)}
    with _autocast(device, enabled=config.amp):
        logits = model(batch)
    loss = loss_fn(logits, batch["label"])
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss


def train(
    model: nn.Module,
    make_train_loader: Callable[[int], Iterable[dict]],
    val_loader: Iterable[dict] | None,
    config: TrainConfig,
    class_counts: np.ndarray,
    checkpoint_path: Path,
    best_path: Path,
    on_epoch: Callable[[int, dict], None] | None = None,
    multi_label: bool = False,
    stop: StopRequest | None = None,
) -> TrainState:
    """Train ``model``; resume from ``checkpoint_path`` when it exists.

    ``make_train_loader(epoch)`` returns the loader of one epoch (so that a resumed run
    draws the same shuffles and label swaps as an uninterrupted one). The best weights
    by val top-30 error (``multi_label``: top-25 F1, see ``selection_metric``) are saved
    to ``best_path``; without ``val_loader`` (a refit on train + val for a number of
    epochs chosen before) every epoch runs and the last weights are saved there.
    ``on_epoch(epoch, metrics)`` is called after each epoch (MLflow logging). When
    ``stop`` is requested, a checkpoint of the epoch so far is saved after the current
    step (or the epoch's own, between epochs) and ``StoppedBySignal`` raised; resuming
    from it gives the weights of a run that was never stopped.
    """
    seed_everything(config.seed)
    device = pick_device()
    distributed = init_distributed()
    rank, _ = distributed_world()
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    state = TrainState()
    checkpoint_path = Path(checkpoint_path)
    generator = torch.Generator().manual_seed(config.seed)
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, model, optimizer, generator)
        within = state.partial and f", at step {state.partial['steps']} of epoch {state.epoch + 1}"
        log.info("resuming from %s after epoch %d%s", checkpoint_path, state.epoch, within or "")
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    loss_fn = make_loss(config, class_counts, device, multi_label)
    selection = selection_metric(multi_label)
    selected = val_name(selection.name)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp)
    epochs_without_gain = state.epoch - 1 - state.best_epoch if state.best_epoch >= 0 else 0
    stop = stop or StopRequest()
    for epoch in range(state.epoch, config.epochs):
        partial, state.partial = state.partial or {}, None
        if not partial:  # else the generator is where the stopped run left it
            generator.manual_seed(config.seed * 1000 + epoch)
        loader = make_train_loader(epoch)
        model.train()
        n_batches = len(loader) if hasattr(loader, "__len__") else None
        if config.steps_per_epoch is not None and n_batches is not None:
            n_batches = min(n_batches, config.steps_per_epoch)
        done = partial.get("steps", 0)
        seen, total_loss = partial.get("seen", 0), partial.get("loss", 0.0)
        started = time.perf_counter() - partial.get("seconds", 0.0)
        bar = tqdm(
            itertools.islice(_from_batch(loader, done), _left(config.steps_per_epoch, done)),
            total=n_batches,
            initial=done,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=rank != 0,
            mininterval=1 if sys.stderr.isatty() else 15,  # a log file gets a line per 15 s
        )
        batches = done
        for step, batch in enumerate(bar, start=done):
            progress = epoch + (step / n_batches if n_batches else 0.0)
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * learning_rate_factor(config, progress)
            loss = train_step(model, batch, optimizer, loss_fn, scaler, config, device, generator)
            seen += len(batch["label"])
            total_loss += float(loss.detach())
            batches += 1
            rate = seen / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(
                loss=f"{total_loss / batches:.3f}", samples_s=f"{rate:.0f}", refresh=False
            )
            if stop.requested(distributed, device):
                bar.close()
                seconds = time.perf_counter() - started
                sums = {"steps": batches, "seen": seen, "loss": total_loss, "seconds": seconds}
                stopped = replace(state, partial=sums)
                if rank == 0:
                    save_checkpoint(checkpoint_path, model, optimizer, stopped, generator)
                where = f"in epoch {epoch + 1}, after step {batches} of {n_batches or '?'}"
                _stop(stop, where, checkpoint_path)
        metrics = {
            "train_loss": total_loss / max(batches, 1),
            "learning_rate": optimizer.param_groups[0]["lr"],
            "samples_per_second": seen / max(time.perf_counter() - started, 1e-9),
        }
        # Every rank evaluates the whole val set, so that all take the same early stop.
        if val_loader is not None:
            evaluate = evaluate_species_sets if multi_label else evaluate_top_k
            metrics.update(evaluate(_unwrap(model), val_loader, device))
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch + 1, **metrics})
        # Without val (a refit) the last epoch is the one kept.
        if val_loader is None or _improves(selection, metrics[selected], state.best_value):
            state.best_value = metrics.get(selected, float("nan"))
            state.best_epoch = epoch
            epochs_without_gain = 0
            if rank == 0:
                with atomic_path(best_path) as temporary:
                    torch.save(_unwrap(model).state_dict(), temporary)
        else:
            epochs_without_gain += 1
        if rank == 0:
            save_checkpoint(checkpoint_path, model, optimizer, state, generator)
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in metrics.items()})
            if on_epoch is not None:
                on_epoch(epoch + 1, metrics)
        if epochs_without_gain >= config.early_stopping_patience:
            log.info("early stop: no gain in %s for %d epochs", selected, epochs_without_gain)
            break
        if epoch + 1 < config.epochs and stop.requested(distributed, device):
            _stop(stop, f"after epoch {epoch + 1} of {config.epochs}", checkpoint_path)
    if distributed:
        torch.distributed.barrier()
    return state


def _from_batch(loader: Iterable[dict], first: int) -> Iterable[dict]:
    """``loader``'s batches from the ``first``-th on: those before are not read where the
    loader can skip them (``DeviceLoader``), else read and dropped."""
    if first == 0:
        return loader
    if isinstance(loader, DeviceLoader):
        return without_first_batches(loader, first)
    return itertools.islice(loader, first, None)


def _left(steps_per_epoch: int | None, done: int) -> int | None:
    return None if steps_per_epoch is None else max(steps_per_epoch - done, 0)


def _stop(stop: StopRequest, where: str, checkpoint: Path) -> None:
    """End a stopped training: say where it stopped and what a rerun resumes from."""
    name = signal.Signals(stop.signal_number).name
    raise StoppedBySignal(
        stop.signal_number,
        f"training stopped by {name} {where}: checkpoint {checkpoint} saved; "
        "run the workflow again to resume from it",
    )
