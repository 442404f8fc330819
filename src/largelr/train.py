"""Train one cell: mini-batch training until the training set is fit, a step cap, or divergence.

:func:`train_cell` holds the training step, top to bottom; what the loop carries across steps
lives in a :class:`TrainState` (model, optimizer, batch order, history, stopping rules), which
is what a checkpoint saves and a resumed run restores. In-memory datasets live on the device
and batches are indexed there; lazy (image-file) datasets stream through a DataLoader with
workers in the same seeded order.

The step is the bare loop's (forward, mean cross-entropy, backward, optimizer step) plus the
bookkeeping it cannot do without: one copy of each step's logits, kept with the batch's
indices. From those, one batched pass at the next evaluation gives every step's loss,
accuracy, BC loss ratio and logit norm (divergence detection and the maximum BC loss ratio
need every step); the parameter norm is measured at the steps the history records (every
``history_every`` steps and every evaluation). Nothing crosses to the host between
evaluations, so the GPU is never stalled for a log line. Plain SGD (the paper's optimizer)
runs torch's functional SGD kernel without the ``torch.optim.Optimizer`` class around it
(:class:`PlainSGD`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.sgd import sgd

from largelr.config import TrainSettings
from largelr.evaluate import EVAL_BATCH, Split, group_accuracies, predictions_and_losses, sample_indices
from largelr.io import atomic_torch_save
from largelr.models import build_model
from largelr.progress import step_text, time_text
from largelr.registry.models import MODELS

# Rows every ``history_every`` steps and at every evaluation; "loss" is the
# cross-entropy whatever the training loss. "lr" (the rate used at that step) is added
# from the schedule, and beside it the series measured only at some steps (NaN elsewhere):
# "spurious_share", "core_share", "noise_share" (IG attribution shares on the regions the
# dataset masks, every ``attribution_every`` steps), "train_acc" (the full training set, at every evaluation), "test_acc" (the test
# set, at every evaluation when ``eval_test`` is set) and "bc_loss_ratio_fixed" (the BC loss ratio on a fixed
# seeded set of ``bc_ratio_samples`` training inputs, at every evaluation).
HISTORY_COLUMNS = ["step", "loss", "accuracy", "bc_loss_ratio", "logit_norm", "param_norm"]
LOSS, ACCURACY, BC_RATIO, LOGIT_NORM, PARAM_NORM = range(5)  # the columns of History.stats (HISTORY_COLUMNS[1:])
# Steps (and logit values) kept for the batched per-step statistics before they are reduced.
PENDING_ROWS, PENDING_LIMIT = 1024, 1 << 22
SPARSE_SERIES = ("spurious_share", "core_share", "noise_share", "train_acc", "test_acc", "bc_loss_ratio_fixed")
ATTRIBUTION_SAMPLES = 64
# Accuracy collapse: a run counts as having learned once its train accuracy reached
# chance + LEARNED_MARGIN; it has collapsed when it is back at or below chance + COLLAPSE_MARGIN.
LEARNED_MARGIN = 0.1
COLLAPSE_MARGIN = 0.02  # not aggregate's NEAR_CHANCE_MARGIN (the chance_margin setting), which flags cells


# --- optimizer, schedule, loss -----------------------------------------------------------


class PlainSGD:
    """``torch.optim.SGD``'s update through its functional kernel (``torch.optim.sgd.sgd``).

    The arithmetic is the library's own: the same kernel ``torch.optim.SGD(params, lr, momentum,
    weight_decay)`` calls. Left out is the class around it: its per-step wrappers (profiler and
    hook bookkeeping, grad-mode guards) and its import of ``torch._dynamo`` when it is built,
    which costs every training job about 1.5 s on a CPU. The learning rate is ``param_groups[0]["lr"]``,
    as in a torch optimizer, so schedules set it the same way.
    """

    def __init__(self, params: list[nn.Parameter], lr: float, momentum: float, weight_decay: float):
        self.params, self.momentum, self.weight_decay = params, momentum, weight_decay
        self.param_groups = [{"lr": lr}]
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(params)

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]  # as torch.optim.SGD: skip grad-less
        params = [self.params[i] for i in live]
        buffers = [self.momentum_buffers[i] for i in live]
        sgd(params, [p.grad for p in params], buffers, weight_decay=self.weight_decay, momentum=self.momentum,
            lr=self.param_groups[0]["lr"], dampening=0.0, nesterov=False, maximize=False)
        for i, buffer in zip(live, buffers):  # the kernel creates the buffers at the first step
            self.momentum_buffers[i] = buffer

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.param_groups[0]["lr"], "momentum_buffers": list(self.momentum_buffers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.param_groups[0]["lr"] = state["lr"]
        self.momentum_buffers = [None if buffer is None else buffer.to(p.device)
                                 for buffer, p in zip(state["momentum_buffers"], self.params)]


def make_optimizer(params: list[nn.Parameter], settings: TrainSettings) -> PlainSGD | torch.optim.Optimizer:
    name, lr, decay = settings.optimizer, settings.lr, settings.weight_decay
    if name == "sgd":
        return PlainSGD(params, lr=lr, momentum=settings.momentum, weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=decay)
    try:
        import heavyball
    except ImportError as error:
        raise ImportError("optimizer psgd_kron needs the heavyball package: pip install heavyball") from error
    # heavyball torch.compiles its update kernels (with autotuning) by default; only do that
    # when the cell asks for compilation, so short CPU cells start at once.
    heavyball.utils.compile_mode = "max-autotune-no-cudagraphs" if settings.compile else None
    return heavyball.PSGDKron(params, lr=lr, weight_decay=decay)


def set_lr(optimizer: PlainSGD | torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def lr_factor(settings: TrainSettings | dict[str, Any]) -> Callable[[int], float]:
    """Multiplier of the base learning rate for the optimizer step after ``step`` steps."""
    settings = settings if isinstance(settings, TrainSettings) else TrainSettings(settings)
    schedule, max_steps = settings.lr_schedule, settings.max_steps
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "step":
        return lambda step: settings.lr_step_factor if step >= settings.lr_step_at else 1.0
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max_steps))
    warmup, decay = settings.warmup_steps, round(settings.wsd_decay_fraction * max_steps)

    def warmup_stable_decay(step: int) -> float:
        rising = (step + 1) / warmup if step < warmup else 1.0  # the first step already moves
        falling = (max_steps - step) / decay if decay and step >= max_steps - decay else 1.0  # 0 at max_steps
        return max(0.0, min(rising, falling))

    return warmup_stable_decay


def focal_loss(cross_entropy: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample focal loss (1 - p_t)^gamma * CE, with p_t = exp(-CE); gamma = 0 is CE."""
    if gamma == 0:
        return cross_entropy
    return (1 - torch.exp(-cross_entropy)).pow(gamma) * cross_entropy


def training_loss(logits: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter], settings: TrainSettings,
                  ) -> torch.Tensor:
    """Mean per-sample loss (CE or focal) plus the L1 penalty.

    Cross-entropy takes the mean inside ``F.cross_entropy`` (one autograd node, as a bare
    loop); its gradient is the same as that of the mean of the per-sample losses.
    """
    if settings.loss == "focal":
        loss = focal_loss(F.cross_entropy(logits.float(), y, reduction="none"), settings.focal_gamma).mean()
    else:
        loss = F.cross_entropy(logits.float(), y)
    if settings.l1:
        loss = loss + settings.l1 * sum(p.abs().sum() for p in params)
    return loss


@torch.no_grad()
def asam_perturbation(params: list[nn.Parameter], rho: float, eta: float) -> list[torch.Tensor]:
    """Adaptive SAM's ascent step from the current gradients (Kwon et al. 2021, p = 2).

    With T_w = |w| + eta elementwise (for every parameter), eps = rho * T_w^2 g / ||T_w g||_2,
    the norm taken over all parameters together.
    """
    scales = [p.abs() + eta for p in params]
    scaled = [t * p.grad for t, p in zip(scales, params)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
    factor = rho / (norm + 1e-12)
    return [t * s * factor for t, s in zip(scales, scaled)]


def asam_gradients(forward: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter],
                   optimizer: torch.optim.Optimizer, settings: TrainSettings, autocast) -> None:
    """Replace the gradients with ASAM's: the gradient taken at w + eps (eps from the current gradients)."""
    moved = [p for p in params if p.grad is not None]
    eps = asam_perturbation(moved, settings.asam_rho, settings.asam_eta)
    with torch.no_grad():
        torch._foreach_add_(moved, eps)
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        perturbed = forward(x)
    training_loss(perturbed, y, params, settings).backward()
    with torch.no_grad():
        torch._foreach_sub_(moved, eps)


# --- data -------------------------------------------------------------------------------


class BatchOrder:
    """Index batches: a fresh seeded permutation each epoch, last batch partial.

    A last batch of a single sample is dropped (that sample comes again next epoch):
    BatchNorm cannot normalize one sample in training mode. Its state (the generator state
    at the epoch's start and the position in the epoch) is enough to regenerate the same
    order after a restart.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.epoch_state = self.generator.get_state()
        self.batches = torch.randperm(self.n, generator=self.generator).split(self.batch_size)
        if len(self.batches) > 1 and len(self.batches[-1]) == 1:
            self.batches = self.batches[:-1]
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position == len(self.batches):
            self._start_epoch()
        self.position += 1
        return self.batches[self.position - 1]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_state": self.epoch_state, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["epoch_state"])
        self._start_epoch()
        self.position = state["position"]


class OrderedBatches(torch.utils.data.Sampler):
    """A DataLoader batch sampler replaying a copy of a :class:`BatchOrder` from its current state, forever."""

    def __init__(self, order: BatchOrder):
        self.order = order

    def __iter__(self) -> Iterator[list[int]]:
        replay = copy.deepcopy(self.order)
        while True:
            yield replay.next().tolist()


def training_batches(split: Split, order: BatchOrder) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, y, batch indices) of ``split`` in ``order``'s sequence from its current state on; advances ``order``
    in step. The indices (positions in the split, on the CPU) let the history look up the batch's bias labels."""
    if not split.lazy:
        while True:
            idx = order.next()
            on_device = idx.to(split.device)
            # index_select: a plain gather, several times faster than advanced indexing on CPU
            yield split.x.index_select(0, on_device), split.y.index_select(0, on_device), idx
    loader = torch.utils.data.DataLoader(split.images, batch_sampler=OrderedBatches(order), num_workers=split.workers,
                                         pin_memory=split.pin)
    for x, y, _ in loader:
        idx = order.next()  # the loader's batch (it replays a copy of the order); keeps the resumable state in step
        yield x.to(split.device, non_blocking=True), y.to(split.device, non_blocking=True), idx


def held_out_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): a seeded ``fraction`` of n held out, both sorted."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = max(1, round(fraction * n))
    return order[n_val:].sort().values, order[:n_val].sort().values


def cell_splits(dataset: dict[str, Any], settings: TrainSettings, device: torch.device, seed: int,
                ) -> tuple[Split, Split | None]:
    """(train, val): with select_on_val, validate on the dataset's val split or a seeded part of train."""
    workers = settings.num_workers
    if not settings.select_on_val:
        return Split(dataset, "train", device, num_workers=workers), None
    if "val" in dataset:
        return Split(dataset, "train", device, num_workers=workers), Split(dataset, "val", device, num_workers=workers)
    train_indices, val_indices = held_out_split(len(dataset["train"]["y"]), settings.val_fraction, seed)
    return (Split(dataset, "train", device, train_indices, workers),
            Split(dataset, "train", device, val_indices, workers))


# --- model set-up ------------------------------------------------------------------------


class Precision:
    """bf16 autocast and channels-last memory format, as the settings and device allow.

    Channels-last applies to conv models on every device: on a CPU it is 1.0-1.4x faster for the
    VGG-like CNN and ResNet-18 (oneDNN's native layout), on a GPU it is the tensor cores' layout.
    """

    def __init__(self, model: nn.Module, model_name: str, settings: TrainSettings, device: torch.device):
        has_convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
        self.channels_last = settings.channels_last and has_convs
        self.amp = settings.amp == "bf16" or (
            settings.amp == "auto" and device.type == "cuda" and MODELS[model_name].autocast)
        self.device_type = device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    @staticmethod
    def reported() -> contextlib.AbstractContextManager:
        """The precision of every number a cell reports (final train/test accuracy, predictions; the
        analyses too): fp32, so that a test accuracy and the pruning base accuracy it stands beside
        come from one precision even when training ran in bf16 (``amp: bf16``)."""
        return contextlib.nullcontext()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def build_cell_model(spec: dict[str, Any], dataset: dict[str, Any], device: torch.device) -> tuple[nn.Module, dict]:
    """The cell's freshly initialised model (seeded by the caller) and the spec that rebuilds it."""
    model_spec = {"name": spec["model"], "input_shape": list(dataset["input_shape"]),
                  "num_classes": dataset["num_classes"], "params": spec["model_params"]}
    return build_model(**model_spec).to(device).train(), model_spec


def set_up_model(spec: dict[str, Any], dataset: dict[str, Any], settings: TrainSettings, device: torch.device,
                 ) -> tuple[nn.Module, dict, Precision, nn.Module]:
    """(model, its spec, precision, the callable that runs it: the model or its torch.compile'd form)."""
    model, model_spec = build_cell_model(spec, dataset, device)
    precision = Precision(model, spec["model"], settings, device)
    model = model.to(memory_format=torch.channels_last) if precision.channels_last else model
    return model, model_spec, precision, torch.compile(model) if settings.compile else model


# --- what the loop carries across steps ----------------------------------------------------


class PendingSteps:
    """Logits and batch indices of the steps whose statistics are not computed yet.

    The logits are copied into float32 buffers allocated once per batch shape and reused: keeping
    each step's own tensors instead would stop the allocator from reusing their memory, and every
    step (forward and backward included) measurably slows down on fresh, cold memory. The indices
    are kept as they are: views of the epoch's permutation, which exists anyway.
    """

    def __init__(self):
        self.buffers: dict[torch.Size, torch.Tensor] = {}
        self.steps: dict[torch.Size, list[int]] = {}
        self.indices: dict[torch.Size, list[torch.Tensor]] = {}

    def add(self, step: int, logits: torch.Tensor, indices: torch.Tensor) -> bool:
        """Keep step ``step``'s values; True when its buffer is full (time to reduce them)."""
        key = logits.shape
        if key not in self.buffers:
            rows = max(1, min(PENDING_ROWS, PENDING_LIMIT // logits.numel()))
            self.buffers[key] = torch.empty((rows, *key), dtype=torch.float32, device=logits.device)
            self.steps[key], self.indices[key] = [], []
        steps = self.steps[key]
        self.buffers[key][len(steps)].copy_(logits.detach())
        steps.append(step)
        self.indices[key].append(indices)
        return len(steps) == len(self.buffers[key])

    def drain(self) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """(steps, logits [k, batch, classes], batch indices [k, batch] on the CPU) per batch shape; then empty."""
        for key, steps in self.steps.items():
            if steps:
                yield steps, self.buffers[key][: len(steps)], torch.stack(self.indices[key])
                self.steps[key], self.indices[key] = [], []


class History:
    """Per-step statistics in device buffers; only ``recorded`` steps reach history.parquet.

    Every step leaves a copy of its logits and its batch indices (:class:`PendingSteps`);
    :meth:`flush` turns them, in one batched pass, into each step's loss, accuracy, BC loss ratio
    and logit norm, before anything reads the buffers. So divergence is found at its step and the
    maximum BC loss ratio covers every step, at the cost of one copy per step. The parameter norm
    needs the parameters of its step: it is measured at the recorded steps only.
    """

    def __init__(self, max_steps: int, train: Split):
        self.stats = torch.full((max_steps, len(HISTORY_COLUMNS) - 1), math.nan, device=train.device)
        self.recorded = torch.zeros(max_steps, dtype=torch.bool)
        self.sparse = {name: torch.full((max_steps,), math.nan, dtype=torch.float64) for name in SPARSE_SERIES}
        self.pending = PendingSteps()
        self.y, self.b = train.y, train.b  # labels by position in the training split

    def add(self, step: int, logits: torch.Tensor, indices: torch.Tensor) -> None:
        """Step ``step`` (1-based) happened with these logits on the batch at these indices."""
        if self.pending.add(step, logits, indices):
            self.flush()

    @torch.no_grad()
    def record(self, step: int, params: list[nn.Parameter]) -> None:
        """Step ``step`` gets a history row: its parameter norm now, the rest from its logits at the next flush."""
        self.recorded[step - 1] = True
        # = nn.utils.get_total_norm
        self.stats[step - 1, PARAM_NORM] = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))

    @torch.no_grad()
    def flush(self) -> None:
        """Statistics of every pending step: per batch shape, one cross-entropy over all their logits.

        The steps of one batch shape are the rows of one matrix (a short last batch has its own), so
        a step's sums do not depend on which steps share the pass.
        """
        device = self.stats.device
        for steps, logits, indices in self.pending.drain():
            rows = torch.tensor(steps) - 1
            if device.type == "cuda":  # pinned copies do not wait for the queued steps
                rows, indices = (t.pin_memory().to(device, non_blocking=True) for t in (rows, indices))
            y, b = self.y[indices], self.b[indices]
            losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
            totals = losses.sum(1)
            self.stats[rows, LOSS] = totals / y.shape[1]  # cross-entropy, whatever the training loss
            self.stats[rows, ACCURACY] = (logits.argmax(2) == y).float().mean(1)
            self.stats[rows, BC_RATIO] = losses.where(y != b, 0.0).sum(1) / totals
            self.stats[rows, LOGIT_NORM] = logits.norm(dim=2).mean(1)

    def first_nonfinite_step(self, step: int) -> int | None:
        self.flush()
        finite = torch.isfinite(self.stats[:step, LOSS])
        return None if bool(finite.all()) else int((~finite).nonzero()[0]) + 1

    def max_bc_loss_ratio(self, step: int) -> tuple[float, int | None]:
        """The largest BC loss ratio of any of the first ``step`` steps (non-finite ones ignored), and its step."""
        self.flush()
        ratios = self.stats[:step, BC_RATIO].double()
        ratios = torch.where(torch.isfinite(ratios), ratios, -math.inf)
        if not step or not bool(torch.isfinite(ratios).any()):
            return math.nan, None
        at = int(ratios.argmax())
        return float(ratios[at]), at + 1

    def max_fixed_bc_loss_ratio(self, step: int) -> tuple[float, int | None]:
        """The largest fixed-set BC loss ratio of the evaluations up to ``step`` (non-finite ones
        ignored), and its step; NaN and None when none was measured."""
        ratios = self.sparse["bc_loss_ratio_fixed"][:step]
        finite = torch.isfinite(ratios)
        if not bool(finite.any()):
            return math.nan, None
        at = int(torch.where(finite, ratios, -math.inf).argmax())
        return float(ratios[at]), at + 1

    def frame(self, step: int, settings: TrainSettings) -> pd.DataFrame:
        self.flush()
        rows = self.recorded[:step].nonzero().squeeze(1)
        history = pd.DataFrame(self.stats[:step].cpu().double().numpy()[rows.numpy()], columns=HISTORY_COLUMNS[1:])
        history.insert(0, "step", (rows + 1).tolist())
        factor = lr_factor(settings)
        history["lr"] = [settings.lr * factor(s) for s in rows.tolist()]  # the rate used at each step
        for name, series in self.sparse.items():
            history[name] = series[:step][rows].numpy()
        return history

    def measured(self, step: int, name: str, value: float) -> None:
        """A value of one of the SPARSE_SERIES at step ``step`` (1-based), which is then recorded."""
        self.recorded[step - 1] = True
        self.sparse[name][step - 1] = value

    def state_dict(self, step: int) -> dict[str, torch.Tensor]:
        self.flush()
        return {"stats": self.stats[:step].cpu(), "recorded": self.recorded[:step].clone(),
                **{name: series[:step].clone() for name, series in self.sparse.items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor], step: int) -> None:
        self.stats[:step] = state["stats"].to(self.stats.device)
        self.recorded[:step] = state["recorded"]
        for name, series in self.sparse.items():
            if name in state:  # a checkpoint from before a series existed leaves it NaN
                series[:step] = state[name]


class Stopping:
    """The stopping rules, applied at each evaluation: fit, train CE, accuracy collapse, best on val."""

    def __init__(self, settings: TrainSettings, num_classes: int):
        self.settings, self.chance = settings, 1 / num_classes
        self.learned, self.at_chance, self.first_at_chance = False, 0, None
        self.best_val, self.best_step, self.best_state = -1.0, None, None

    def after_evaluation(self, step: int, train_acc: float, train_ce: float) -> tuple[str, int | None] | None:
        """(stopped_by, diverged_step) when training should stop after this evaluation, else None."""
        if train_acc >= self.chance + LEARNED_MARGIN:
            self.learned = True
        if self.learned and train_acc <= self.chance + COLLAPSE_MARGIN:
            self.at_chance += 1
            self.first_at_chance = self.first_at_chance or step
        else:
            self.at_chance, self.first_at_chance = 0, None
        if self.settings.collapse_patience and self.at_chance >= self.settings.collapse_patience:
            return "collapse", self.first_at_chance
        if self.settings.stop_train_ce > 0:
            return ("stop_train_ce", None) if train_ce < self.settings.stop_train_ce else None
        return ("target_train_acc", None) if train_acc >= self.settings.target_train_acc else None

    def keep_if_best(self, step: int, val_acc: float, model: nn.Module) -> None:
        if val_acc > self.best_val:
            self.best_val, self.best_step = val_acc, step
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"learned": self.learned, "at_chance": self.at_chance, "first_at_chance": self.first_at_chance,
                "best_val": self.best_val, "best_step": self.best_step, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class TrainState:
    """Everything a resumed run needs: model, optimizer, batch order, history, stopping rules.

    The learning-rate schedule is a function of the step (:func:`lr_factor`), so it needs no state.
    """

    FORMAT = 2  # checkpoints of another format (an older largelr) are not resumed from

    def __init__(self, model: nn.Module, settings: TrainSettings, train: Split, num_classes: int, seed: int):
        self.model, self.settings, self.step = model, settings, 0
        self.params = list(model.parameters())
        self.optimizer = make_optimizer(self.params, settings)
        self.order = BatchOrder(len(train), settings.batch_size, seed)
        self.history = History(settings.max_steps, train)
        self.stopping = Stopping(settings, num_classes)

    def state_dict(self) -> dict[str, Any]:
        parts = {name: getattr(self, name).state_dict() for name in ("model", "optimizer", "order")}
        return {**parts, "format": self.FORMAT, "step": self.step, "history": self.history.state_dict(self.step),
                "loop": self.stopping.state_dict(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("model", "optimizer", "order"):
            getattr(self, name).load_state_dict(state[name])
        self.step = state["step"]
        self.history.load_state_dict(state["history"], self.step)
        self.stopping.load_state_dict(state["loop"])
        torch.set_rng_state(state["torch_rng"])

    def save(self, path: str | Path, spec: dict[str, Any]) -> None:
        atomic_torch_save({"spec": spec, **self.state_dict()}, path)

    def resume(self, path: str | Path | None, spec: dict[str, Any], log: Callable[[str], None]) -> int:
        """Restore a checkpoint of this very spec; returns its step (0 if none)."""
        if path is None or not Path(path).exists():
            return 0
        # Loaded on the CPU: generator states must stay there; load_state_dict moves the rest.
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("spec") != spec or state.get("format") != self.FORMAT:
            log(f"ignoring checkpoint {path}: it was written for different settings (or by an older largelr)")
            return 0
        self.load_state_dict(state)
        log(f"resuming from step {self.step} ({path})")
        return self.step


# --- preemption ---------------------------------------------------------------------------


class Preempted(SystemExit):
    """SIGTERM or SIGINT arrived (Slurm preemption, Ctrl-C): stop between steps and exit non-zero."""

    def __init__(self, step: int, saved: bool, signal_name: str = "SIGTERM"):
        what = "checkpoint written, rerun the cell to resume" if saved else "no checkpoint path given"
        super().__init__(f"preempted ({signal_name}) at step {step}: {what}")


@contextlib.contextmanager
def interrupt_flag() -> Iterator[dict[str, Any]]:
    """Turn SIGTERM and SIGINT into a flag the training loop checks between steps."""
    flag: dict[str, Any] = {"raised": False, "signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        flag.update(raised=True, signal=signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --- the loop -----------------------------------------------------------------------------


REGIONS = ("spurious", "core", "noise")  # where a dataset's masks say its features live
# Sees the model (in train mode) before each step, after ``step`` steps; True stops the run there, counted as
# the step cap (a replay that needs only the first steps: largelr.over_training).
Observer = Callable[[int, nn.Module], bool]


class AttributionProbe:
    """IG shares of |attribution| on each masked region (spurious, core, noise), for a fixed seeded
    sample of training inputs: the course of feature use over training (Figs 3 right, 13)."""

    def __init__(self, dataset: dict[str, Any], train: Split, every: int, seed: int, precision: Precision,
                 log: Callable[[str], None]):
        self.masks = {region: dataset[f"{region}_mask"] for region in REGIONS
                      if dataset.get(f"{region}_mask") is not None}
        self.every = every
        if every and "spurious" not in self.masks:
            log(f"attribution_every = {every} ignored: dataset {dataset.get('name')!r} has no spurious_mask")
            self.every = 0
        if self.every:
            x, self.y, _ = train.samples(sample_indices(len(train), ATTRIBUTION_SAMPLES, seed))
            self.x = precision.prepare(x)

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def shares(self, model: nn.Module) -> dict[str, float]:
        """{region}_share -> mean share over the probe's inputs, for every region the dataset masks."""
        from largelr.analyses.attribute import integrated_gradients, region_share

        was_training = model.training
        try:
            attributions, _ = integrated_gradients(model, self.x, self.y)
        finally:
            model.train(was_training)  # integrated_gradients switches to eval mode
        return {f"{region}_share": float(region_share(attributions, mask).nanmean())
                for region, mask in self.masks.items()}


def bc_loss_ratio(logits: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> float:
    """Cross-entropy summed over the bias-conflicting samples (y != b) over that of all samples."""
    losses = F.cross_entropy(logits.float(), y, reduction="none").double()
    total = losses.sum()
    return float(losses[y != b].sum() / total) if bool(total > 0) else math.nan


class FixedBCRatioProbe:
    """The BC loss ratio on a fixed seeded set of ``bc_ratio_samples`` training inputs, measured
    at each evaluation in eval mode: the authors' code's reading of the max BC loss ratio (the
    maximum over evaluations), beside the paper's text (per-step minibatches, History)."""

    def __init__(self, train: Split, n_samples: int, seed: int, precision: Precision):
        self.n_samples = n_samples
        if n_samples:
            x, self.y, self.b = train.samples(sample_indices(len(train), n_samples, seed))
            self.x, self.precision = precision.prepare(x), precision

    @torch.no_grad()
    def ratio(self, forward: nn.Module) -> float:
        was_training = forward.training
        forward.eval()
        try:
            with self.precision.autocast():
                logits = torch.cat([forward(self.x[i : i + EVAL_BATCH]).float()
                                    for i in range(0, len(self.x), EVAL_BATCH)])
        finally:
            forward.train(was_training)
        return bc_loss_ratio(logits, self.y, self.b)


def train_cell(spec: dict[str, Any], dataset: dict[str, Any], device: torch.device, log: Callable[[str], None] = print,
               checkpoint: str | Path | None = None, checkpoint_every: int = 1000, observer: Observer | None = None,
               ) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train the cell described by ``spec`` (see ``largelr.config.cell_spec``).

    Returns the model, the history and a summary. Training stops at the step cap, when the full
    training set is fit (``target_train_acc``, or its CE below ``stop_train_ce`` when set), or on
    divergence -- a non-finite loss or an accuracy collapse back to chance -- which is a result
    (``stopped_by="diverged"``), not an error. With ``select_on_val`` the weights of the best
    evaluation on validation are returned. With a ``checkpoint`` path, the state is saved there
    every ``checkpoint_every`` steps and on SIGTERM/SIGINT (then ``Preempted`` is raised); a later
    call with the same spec resumes from it and ends as an uninterrupted run would (``observer``: see Observer).
    """
    settings, seed = TrainSettings(spec["train"], where="train"), spec["seed"]
    torch.manual_seed(seed)
    model, model_spec, precision, forward = set_up_model(spec, dataset, settings, device)
    train, val = cell_splits(dataset, settings, device, seed)
    splits = {"train": train, "val": val, "test": Split(dataset, "test", device) if settings.eval_test else None}
    state = TrainState(model, settings, train, dataset["num_classes"], seed)
    probe = AttributionProbe(dataset, train, settings.attribution_every, seed, precision, log)
    bc_probe = FixedBCRatioProbe(train, settings.bc_ratio_samples, seed, precision)
    resumed_from = state.resume(checkpoint, spec, log)
    clock = Clock(resumed_from)
    stream, params, optimizer, history = training_batches(train, state.order), state.params, state.optimizer, state.history
    rate = None if settings.lr_schedule == "constant" else lr_factor(settings)  # a constant rate needs no update
    max_steps, eval_every, history_every = settings.max_steps, settings.eval_every, settings.history_every
    outcome = ("max_steps", None)
    with interrupt_flag() as interrupt:
        while (step := state.step) < max_steps and not (observer and observer(step, model)):
            if checkpoint and (interrupt["raised"] or (step > resumed_from and step % checkpoint_every == 0)):
                state.save(checkpoint, spec)
            if interrupt["raised"]:
                raise Preempted(step, saved=checkpoint is not None, signal_name=interrupt["signal"])
            x, y, indices = next(stream)
            if rate:
                set_lr(optimizer, settings.lr * rate(step))
            x = precision.prepare(x)
            with precision.autocast():
                logits = forward(x)
            loss = training_loss(logits, y, params, settings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.asam_rho:
                asam_gradients(forward, x, y, params, optimizer, settings, precision.autocast)
            optimizer.step()
            state.step = step = step + 1
            clock.images += len(y)
            history.add(step, logits, indices)
            evaluation = step % eval_every == 0 or step == max_steps
            if evaluation or step % history_every == 0 or probe.due(step):
                history.record(step, params)
            measure_probes(step, evaluation, model, forward, probe, bc_probe, history, clock)
            if evaluation and (stop := evaluate_and_decide(state, forward, splits, precision, clock, log)):
                outcome = stop
                break
    stream.close()
    summary = finish(state, forward, dataset, train, outcome, clock, precision, model_spec)
    return model, state.history.frame(state.step, settings), summary


def measure_probes(step: int, evaluation: bool, model: nn.Module, forward: nn.Module, probe: AttributionProbe,
                   bc_probe: FixedBCRatioProbe, history: History, clock: Clock) -> None:
    """The series measured at some steps only, kept out of the training rates: attribution shares
    when due, the fixed-set BC loss ratio at evaluations."""
    attribution_due, bc_due = probe.due(step), evaluation and bool(bc_probe.n_samples)
    if not (attribution_due or bc_due):
        return  # most steps: not even the clock is read
    with clock.aside():
        if attribution_due:
            for name, share in probe.shares(model).items():
                history.measured(step, name, share)
        if bc_due:
            history.measured(step, "bc_loss_ratio_fixed", bc_probe.ratio(forward))


class Clock:
    """Wall time of a run, with evaluations and attributions kept out of the training rates."""

    def __init__(self, resumed_from: int):
        self.started, self.aside_s, self.images, self.resumed_from = time.perf_counter(), 0.0, 0, resumed_from
        self.train_acc, self.train_ce = math.nan, math.nan

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.aside_s += time.perf_counter() - started

    def training_s(self) -> float:
        return time.perf_counter() - self.started - self.aside_s

    def rates(self, step: int) -> tuple[float, float]:
        """(steps/s, images/s) over training time only, since this run started."""
        seconds = self.training_s()
        return ((step - self.resumed_from) / seconds, self.images / seconds) if seconds > 0 else (math.nan, math.nan)


def evaluate_and_decide(state: TrainState, forward: nn.Module, splits: dict[str, Split | None], precision: Precision,
                        clock: Clock, log: Callable[[str], None]) -> tuple[str, int | None] | None:
    """At an evaluation: divergence check, full-train accuracy and CE, validation (and test with
    ``eval_test``), stopping rules. Returns (stopped_by or diverged reason, diverged step) to stop, else None."""
    step, history = state.step, state.history
    if (first_bad := history.first_nonfinite_step(step)) is not None:
        return "nonfinite", first_bad

    def accuracy(split: Split) -> tuple[float, float]:
        pred, ce, _ = predictions_and_losses(forward, split, precision.autocast, precision.prepare)
        return (pred == split.y).float().mean().item(), ce.mean().item()

    with clock.aside():
        clock.train_acc, clock.train_ce = accuracy(splits["train"])
        history.measured(step, "train_acc", clock.train_acc)
        val_acc = accuracy(splits["val"])[0] if splits["val"] is not None else None
        if splits["test"] is not None:
            history.measured(step, "test_acc", accuracy(splits["test"])[0])
    steps_per_s, images_per_s = clock.rates(step)
    cap, elapsed_s = state.settings.max_steps, time.perf_counter() - clock.started
    log(f"step {step_text(step, cap)}  loss {history.stats[step - 1, 0].item():.4f}  train acc {clock.train_acc:.4f}  "
        f"{steps_per_s:.1f} steps/s  {images_per_s:.0f} img/s  {time_text(step, cap, clock.resumed_from, elapsed_s)}")
    if val_acc is not None:
        state.stopping.keep_if_best(step, val_acc, state.model)
    return state.stopping.after_evaluation(step, clock.train_acc, clock.train_ce)


DIVERGENCE_REASONS = ("nonfinite", "collapse")
FIT_CRITERIA = ("target_train_acc", "stop_train_ce")


def converged(stopped_by: str, settings: TrainSettings) -> bool:
    """Trained to the paper's protocol: stopped by its fit criterion, or ran the full step budget
    when no fit criterion is set (a fixed-length schedule, e.g. target_train_acc > 1 and no
    stop_train_ce), never when it diverged or hit the cap before fitting."""
    if stopped_by in FIT_CRITERIA:
        return True
    fit_criterion_set = settings.target_train_acc <= 1 or settings.stop_train_ce > 0
    return stopped_by == "max_steps" and not fit_criterion_set


def finish(state: TrainState, forward: nn.Module, dataset: dict[str, Any], train: Split, outcome: tuple[str, int | None],
           clock: Clock, precision: Precision, model_spec: dict[str, Any]) -> dict[str, Any]:
    """The run's summary (train.json); restores the best-on-validation weights and measures test accuracy."""
    reason, diverged_step = outcome
    stopped_by = "diverged" if reason in DIVERGENCE_REASONS else reason
    steps_per_s, images_per_s = clock.rates(state.step)
    max_bc, max_bc_step = state.history.max_bc_loss_ratio(state.step)
    summary: dict[str, Any] = {
        "steps": state.step, "stopped_by": stopped_by, "diverged": stopped_by == "diverged",
        "converged": converged(stopped_by, state.settings),
        "diverged_step": diverged_step, "diverged_reason": reason if stopped_by == "diverged" else None,
        "wall_s": time.perf_counter() - clock.started,
        "eval_s": clock.aside_s,  # part of wall_s spent evaluating (and attributing)
        "steps_per_s": steps_per_s, "images_per_s": images_per_s,  # training steps only
        "resumed_from_step": clock.resumed_from, "amp": "bf16" if precision.amp else "off", "model_spec": model_spec,
        # the mechanism statistic over every step, whatever history_every records
        "max_bc_loss_ratio": max_bc, "max_bc_loss_ratio_step": max_bc_step,
    }
    fixed_bc, fixed_bc_step = state.history.max_fixed_bc_loss_ratio(state.step)  # over evaluations, fixed set
    summary.update(max_bc_loss_ratio_fixed=fixed_bc, max_bc_loss_ratio_fixed_step=fixed_bc_step)
    settings, stopping = state.settings, state.stopping
    if settings.select_on_val:
        source = "val split" if "val" in dataset else f"held-out train fraction {settings.val_fraction}"
        summary.update(val_acc=stopping.best_val if stopping.best_step else math.nan, best_step=stopping.best_step,
                       val_source=source)
        if stopping.best_state is not None:
            state.model.load_state_dict(stopping.best_state)
    if stopped_by == "diverged":
        return summary
    train_acc, train_ce = clock.train_acc, clock.train_ce
    if settings.select_on_val:  # the returned weights are the best ones: measure those
        pred, ce, _ = predictions_and_losses(forward, train, precision.reported, precision.prepare)
        train_acc, train_ce = (pred == train.y).float().mean().item(), ce.mean().item()
    summary.update(train_acc=train_acc, train_ce=train_ce)
    test = Split(dataset, "test", next(state.model.parameters()).device, num_workers=settings.num_workers)
    test_pred, _, _ = predictions_and_losses(forward, test, precision.reported, precision.prepare)
    summary.update({f"test_{k}": v for k, v in group_accuracies(test_pred, test.y, test.b).items()})
    return summary


def test_predictions(model: nn.Module, dataset: dict[str, Any], spec: dict[str, Any], device: torch.device,
                     diverged: bool) -> pd.DataFrame:
    """predictions.parquet: per test sample its index, y, b, group, predicted class and true-class
    probability, so a new group metric needs no retraining. A diverged cell has no predictions
    (pred -1, p_true NaN)."""
    test = Split(dataset, "test", device)
    frame = pd.DataFrame({"index": range(len(test)), "y": test.y.cpu().numpy(), "b": test.b.cpu().numpy(),
                          "group": (test.y * dataset["num_bias"] + test.b).cpu().numpy()})
    if diverged:
        return frame.assign(pred=-1, p_true=math.nan)
    precision = Precision(model, spec["model"], TrainSettings(spec["train"]), device)
    pred, _, p_true = predictions_and_losses(model, test, precision.reported, precision.prepare)
    return frame.assign(pred=pred.cpu().numpy(), p_true=p_true.double().cpu().numpy())


def train_and_save(spec: dict[str, Any], data_path: str | Path, out_dir: Path, device: torch.device,
                   checkpoint_every: int = 1000, log: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
    """Train one cell and write its files (largelr.config.TRAIN_FILES) into ``out_dir``, train.json last.

    The resume checkpoint lives beside the declared outputs, so a preempted job resumes from it;
    it is removed once the cell's files exist.
    """
    from largelr.config import CELL_KEYS, TRAIN_FILES
    from largelr.datasets import load_dataset
    from largelr.io import provenance, with_cell_keys, write_cell_record, write_parquet
    from largelr.models import save_checkpoint

    dataset = load_dataset(data_path)
    log(f"training {spec['study']}/{spec['dataset']}/{spec['model']} {spec['knob']}={spec['value']} "
        f"seed={spec['seed']} on {device}{placement()} at {timestamp()}")
    checkpoint = out_dir / "checkpoint.pt"
    model, history, summary = train_cell(spec, dataset, device, log=log, checkpoint=checkpoint,
                                         checkpoint_every=checkpoint_every)
    cell = {key: spec[key] for key in CELL_KEYS}
    save_checkpoint(model, summary["model_spec"], out_dir / TRAIN_FILES["model"])
    write_parquet(with_cell_keys(history, cell, device), out_dir / TRAIN_FILES["history"])
    predictions = test_predictions(model, dataset, spec, device, summary["diverged"])
    write_parquet(with_cell_keys(predictions, cell, device), out_dir / TRAIN_FILES["predictions"])
    # train.json last: its presence marks the cell as trained.
    settings = dict(TrainSettings(spec["train"]))  # the spec's explicit settings with every default filled in
    write_cell_record({"cell": cell, "spec": spec, "settings": settings, "summary": summary,
                       "provenance": provenance(device)}, out_dir)
    checkpoint.unlink(missing_ok=True)
    reason = f" ({summary['diverged_reason']} at step {summary['diverged_step']})" if summary["diverged"] else ""
    log(f"done: {summary['stopped_by']}{reason} after {summary['steps']} steps, "
        f"test acc {summary.get('test_acc', math.nan):.4f} at {timestamp()}")


def timestamp() -> str:
    """Local time to the millisecond, for the start and end lines of a cell's log."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def placement() -> str:
    """Where this process runs, from the scheduler's environment: its Slurm job and the GPUs it may see."""
    parts = [f"slurm job {os.environ['SLURM_JOB_ID']}"] if os.environ.get("SLURM_JOB_ID") else []
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        parts.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}")
    return f" ({', '.join(parts)})" if parts else ""
