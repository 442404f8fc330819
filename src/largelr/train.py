"""Train one cell: mini-batch training until the training set is fit, a step cap, or divergence.

The whole loop is in :func:`train_cell`, top to bottom. In-memory datasets live on the
device and batches are indexed there; lazy (image-file) datasets stream through a
DataLoader with workers in the same seeded order. Per-step statistics accumulate in
device tensors and cross to the host only at evaluation intervals, so the GPU is never
stalled for a log line.
"""

from __future__ import annotations

import contextlib
import copy
import math
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

from largelr.io import atomic_torch_save
from largelr.models import build_model

# Recorded every ``history_every`` steps and at every evaluation; "loss" is the
# cross-entropy whatever the training loss. "lr" (the rate used at that step) is added
# from the schedule and "spurious_share" (IG attribution share on the spurious region,
# NaN except every ``attribution_every`` steps) beside it.
HISTORY_COLUMNS = ["step", "loss", "accuracy", "bc_loss_ratio", "logit_norm", "param_norm"]
EVAL_BATCH = 2000
LAZY_EVAL_BATCH = 256  # image-file datasets: full-size images, smaller batches
ATTRIBUTION_SAMPLES = 64
# Accuracy collapse: a run counts as having learned once its train accuracy reached
# chance + LEARNED_MARGIN; it has collapsed when it is back at or below chance + CHANCE_MARGIN.
LEARNED_MARGIN = 0.1
CHANCE_MARGIN = 0.02
AMP_AUTO_PREFIXES = ("resnet", "wrn", "swin")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def group_accuracies(pred: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Plain, bias-aligned, bias-conflicting and worst-group accuracy."""
    correct = (pred == y).double()
    aligned = y == b
    groups = y * (int(b.max()) + 1) + b
    per_group = [correct[groups == g].mean().item() for g in groups.unique()]

    def mean_or_nan(mask: torch.Tensor) -> float:
        return correct[mask].mean().item() if mask.any() else math.nan

    return {
        "acc": correct.mean().item(),
        "acc_ba": mean_or_nan(aligned),
        "acc_bc": mean_or_nan(~aligned),
        "worst_group_acc": min(per_group),
    }


# --- settings -----------------------------------------------------------------------------


def check_settings(settings: dict[str, Any]) -> None:
    """ValueError naming the train key, its value and what is allowed, before any work starts."""
    from largelr.config import CHOICES

    def fail(key: str, allowed: str) -> None:
        raise ValueError(f"train setting {key} = {settings[key]!r} is not allowed; {allowed}. "
                         "Fix it in the study's `train:` block of config.yaml.")

    for key, allowed in CHOICES.items():
        if key in settings and settings[key] not in allowed:
            fail(key, f"allowed: {list(allowed)}")
    for key in ("max_steps", "eval_every", "batch_size", "history_every"):
        if int(settings[key]) < 1:
            fail(key, "it must be a whole number >= 1")
    for key in ("lr", "asam_rho", "asam_eta", "l1", "weight_decay", "stop_train_ce", "warmup_steps",
                "attribution_every", "num_workers", "collapse_patience", "focal_gamma", "momentum"):
        if not settings[key] >= 0:
            fail(key, "it must be >= 0")
    if not 0 <= settings["wsd_decay_fraction"] <= 1:
        fail("wsd_decay_fraction", "it must lie in [0, 1]")
    if settings["select_on_val"] and not 0 < settings["val_fraction"] < 1:
        fail("val_fraction", "with select_on_val it must lie strictly between 0 and 1")


def make_optimizer(params: list[nn.Parameter], settings: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr, decay = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=decay)
    if name == "psgd_kron":
        try:
            import heavyball
        except ImportError as error:
            raise ImportError("optimizer psgd_kron needs the heavyball package: pip install heavyball") from error
        # heavyball torch.compiles its update kernels (with autotuning) by default; only do that
        # when the cell asks for compilation, so short CPU cells start at once.
        heavyball.utils.compile_mode = "max-autotune-no-cudagraphs" if settings["compile"] else None
        return heavyball.PSGDKron(params, lr=lr, weight_decay=decay)
    raise ValueError(f"optimizer {name!r} is not known; allowed: ['sgd', 'adam', 'adamw', 'psgd_kron']")


def lr_factor(settings: dict[str, Any]) -> Callable[[int], float]:
    """Multiplier of the base learning rate for the optimizer step after ``step`` steps."""
    schedule, max_steps = settings["lr_schedule"], settings["max_steps"]
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "step":
        return lambda step: settings["lr_step_factor"] if step >= settings["lr_step_at"] else 1.0
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max_steps))
    if schedule == "wsd":
        warmup = settings["warmup_steps"]
        decay = round(settings["wsd_decay_fraction"] * max_steps)

        def warmup_stable_decay(step: int) -> float:
            rising = (step + 1) / warmup if step < warmup else 1.0  # the first step already moves
            falling = (max_steps - step) / decay if decay and step >= max_steps - decay else 1.0  # 0 at max_steps
            return max(0.0, min(rising, falling))

        return warmup_stable_decay
    raise ValueError(f"lr_schedule {schedule!r} is not known; allowed: ['constant', 'step', 'cosine', 'wsd']")


def focal_loss(cross_entropy: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample focal loss (1 - p_t)^gamma * CE, with p_t = exp(-CE); gamma = 0 is CE."""
    if gamma == 0:
        return cross_entropy
    return (1 - torch.exp(-cross_entropy)).pow(gamma) * cross_entropy


def training_loss(losses: torch.Tensor, params: list[nn.Parameter], settings: dict[str, Any]) -> torch.Tensor:
    """Mean per-sample loss (CE or focal) plus the L1 penalty."""
    per_sample = focal_loss(losses, settings["focal_gamma"]) if settings["loss"] == "focal" else losses
    loss = per_sample.mean()
    if settings["l1"]:
        loss = loss + settings["l1"] * sum(p.abs().sum() for p in params)
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


class Split:
    """One split on the device (in-memory sets) or read through a DataLoader (lazy sets).

    ``indices`` restricts it to a subset (the part of train kept for training or held out
    for validation). ``batches()`` yields (x, y, b) on the device in order.
    """

    def __init__(self, dataset: dict[str, Any], split: str, device: torch.device, settings: dict[str, Any],
                 indices: torch.Tensor | None = None):
        self.device, self.lazy = device, bool(dataset.get("lazy"))
        part = dataset[split]
        take = (lambda t: t[indices]) if indices is not None else (lambda t: t)
        self.y, self.b = take(part["y"]).to(device), take(part["b"]).to(device)
        if not self.lazy:
            self.x = take(part["x"]).to(device).contiguous()  # batches gathered from it are contiguous too
            return
        from largelr.natural import LazyImageDataset

        images: torch.utils.data.Dataset = LazyImageDataset(dataset, split)
        if indices is not None:
            images = torch.utils.data.Subset(images, indices.tolist())
        self.images = images
        self.workers = int(settings["num_workers"])
        self.pin = device.type == "cuda"
        self.eval_loader = torch.utils.data.DataLoader(
            images, batch_size=LAZY_EVAL_BATCH, shuffle=False, num_workers=self.workers,
            pin_memory=self.pin, persistent_workers=self.workers > 0)

    def __len__(self) -> int:
        return len(self.y)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if not self.lazy:
            for i in range(0, len(self.y), EVAL_BATCH):
                yield self.x[i : i + EVAL_BATCH], self.y[i : i + EVAL_BATCH], self.b[i : i + EVAL_BATCH]
            return
        for x, y, b in self.eval_loader:
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True),
                   b.to(self.device, non_blocking=True))

    def training_batches(self, order: BatchOrder) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches in ``order``'s sequence from its current state on; advances ``order`` in step."""
        if not self.lazy:
            while True:
                idx = order.next().to(self.device)
                # index_select: a plain gather, several times faster than advanced indexing on CPU
                yield self.x.index_select(0, idx), self.y.index_select(0, idx), self.b.index_select(0, idx)
        loader = torch.utils.data.DataLoader(
            self.images, batch_sampler=OrderedBatches(order), num_workers=self.workers, pin_memory=self.pin)
        for x, y, b in loader:
            order.next()  # keep the resumable state in step with the batches consumed
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True),
                   b.to(self.device, non_blocking=True))

    def samples(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels at ``indices``, on the device."""
        if not self.lazy:
            return self.x[indices.to(self.device)], self.y[indices.to(self.device)]
        x = torch.stack([self.images[int(i)][0] for i in indices])
        return x.to(self.device), self.y[indices.to(self.device)]


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, autocast: Callable[[], contextlib.AbstractContextManager],
             prepare: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and per-sample cross-entropy over a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    preds, losses = [], []
    try:
        for x, y, _ in split.batches():
            with autocast():
                logits = model(prepare(x)).float()
            preds.append(logits.argmax(1))
            losses.append(F.cross_entropy(logits, y, reduction="none"))
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(losses)


def held_out_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): a seeded ``fraction`` of n held out, both sorted."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = max(1, round(fraction * n))
    return order[n_val:].sort().values, order[:n_val].sort().values


# --- preemption ---------------------------------------------------------------------------


class Preempted(SystemExit):
    """SIGTERM arrived (e.g. Slurm preemption): stop between steps and exit non-zero."""

    def __init__(self, step: int, saved: bool):
        what = "checkpoint written, rerun the cell to resume" if saved else "no checkpoint path given"
        super().__init__(f"preempted (SIGTERM) at step {step}: {what}")


@contextlib.contextmanager
def sigterm_flag() -> Iterator[dict[str, bool]]:
    """Turn SIGTERM into a flag the training loop checks between steps."""
    flag = {"raised": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.update(raised=True))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the loop -----------------------------------------------------------------------------


def spurious_share_now(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean IG share of |attribution| on the spurious region, for the training-dynamics figure."""
    from largelr.attribute import integrated_gradients, region_share

    was_training = model.training
    try:
        attributions, _ = integrated_gradients(model, x, y)
    finally:
        model.train(was_training)  # integrated_gradients switches to eval mode
    return float(region_share(attributions, mask).nanmean())


def train_cell(
    spec: dict[str, Any],
    dataset: dict[str, Any],
    device: torch.device,
    log: Callable[[str], None] = print,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train the cell described by ``spec`` (see ``largelr.config.cell_spec``).

    Returns the model, the history and a summary. Training stops at the step cap, when
    the full training set is fit (``target_train_acc``, or its cross-entropy falls below
    ``stop_train_ce`` when that is set), or on divergence -- a non-finite loss or an
    accuracy collapse back to chance -- which is a result (``stopped_by="diverged"``),
    not an error. With ``select_on_val`` the weights of the evaluation with the best
    validation accuracy are returned. With a ``checkpoint`` path, the state is saved
    there every ``checkpoint_every`` steps and on SIGTERM (then ``Preempted`` is raised);
    a later call with the same spec resumes from it and ends with the same weights and
    history as an uninterrupted run.
    """
    from largelr.config import TRAIN_DEFAULTS

    settings = {**TRAIN_DEFAULTS, **spec["train"]}
    check_settings(settings)
    seed = spec["seed"]
    torch.manual_seed(seed)
    model_spec = {
        "name": spec["model"],
        "input_shape": list(dataset["input_shape"]),
        "num_classes": dataset["num_classes"],
        "params": spec["model_params"],
    }
    model = build_model(**model_spec).to(device).train()
    has_convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
    channels_last = bool(settings["channels_last"]) and has_convs and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    use_amp = settings["amp"] == "bf16" or (
        settings["amp"] == "auto" and device.type == "cuda" and spec["model"].startswith(AMP_AUTO_PREFIXES))

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    forward = torch.compile(model) if settings["compile"] else model
    params = list(model.parameters())
    optimizer = make_optimizer(params, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(settings))

    # Splits: with select_on_val, validate on the dataset's val split or a seeded part of train.
    select_on_val = bool(settings["select_on_val"])
    train_indices = val = None
    if select_on_val and "val" in dataset:
        val = Split(dataset, "val", device, settings)
    elif select_on_val:
        train_indices, val_indices = held_out_split(len(dataset["train"]["y"]), settings["val_fraction"], seed)
        val = Split(dataset, "train", device, settings, val_indices)
    train = Split(dataset, "train", device, settings, train_indices)
    chance = 1 / dataset["num_classes"]

    max_steps, eval_every, history_every = settings["max_steps"], settings["eval_every"], settings["history_every"]
    stats = torch.full((max_steps, len(HISTORY_COLUMNS) - 1), math.nan, device=device)
    recorded = torch.zeros(max_steps, dtype=torch.bool)
    spurious_share = torch.full((max_steps,), math.nan, dtype=torch.float64)
    attribution_every = int(settings["attribution_every"])
    mask = dataset.get("spurious_mask")
    if attribution_every and mask is None:
        log(f"attribution_every = {attribution_every} ignored: dataset {dataset.get('name')!r} has no spurious_mask")
        attribution_every = 0
    if attribution_every:
        from largelr.data import sample_indices

        probe_x, probe_y = train.samples(sample_indices(len(train), ATTRIBUTION_SAMPLES, seed))
        probe_x = prepare(probe_x)

    order = BatchOrder(len(train), settings["batch_size"], seed)
    loop = {"learned": False, "at_chance": 0, "first_at_chance": None, "best_val": -1.0, "best_step": None,
            "best_state": None}
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "order": order}
    step = resume(checkpoint, spec, parts, stats, recorded, spurious_share, loop, log)
    resumed_from = step
    stopped_by, diverged_step, diverged_reason = "max_steps", None, None
    train_acc = train_ce = math.nan
    images_seen = 0
    side_s = 0.0  # time in evaluations and attributions, left out of the training rates
    started = time.perf_counter()
    stream = train.training_batches(order)
    with sigterm_flag() as sigterm:
        while step < max_steps:
            if checkpoint and (sigterm["raised"] or (step > resumed_from and step % checkpoint_every == 0)):
                save_checkpoint_state(checkpoint, spec, parts, stats, recorded, spurious_share, loop, step)
            if sigterm["raised"]:
                raise Preempted(step, saved=checkpoint is not None)
            x, y, b = next(stream)
            x = prepare(x)
            with autocast():
                logits = forward(x)
            losses = F.cross_entropy(logits.float(), y, reduction="none")
            loss = training_loss(losses, params, settings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings["asam_rho"]:
                moved = [p for p in params if p.grad is not None]
                eps = asam_perturbation(moved, settings["asam_rho"], settings["asam_eta"])
                with torch.no_grad():
                    torch._foreach_add_(moved, eps)
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    perturbed = forward(x)
                training_loss(F.cross_entropy(perturbed.float(), y, reduction="none"), params, settings).backward()
                with torch.no_grad():
                    torch._foreach_sub_(moved, eps)
            optimizer.step()
            scheduler.step()
            images_seen += len(y)
            step += 1
            evaluation = step % eval_every == 0 or step == max_steps
            with torch.no_grad():
                if evaluation or step % history_every == 0:
                    recorded[step - 1] = True
                    stats[step - 1] = torch.stack([
                        losses.mean(),  # cross-entropy, whatever the training loss
                        (logits.argmax(1) == y).float().mean(),
                        losses[y != b].sum() / losses.sum(),  # BC loss ratio
                        logits.float().norm(dim=1).mean(),
                        nn.utils.get_total_norm(params),
                    ])
                else:
                    stats[step - 1, 0] = losses.mean()  # kept for divergence detection only
            if attribution_every and step % attribution_every == 0:
                side_started = time.perf_counter()
                recorded[step - 1] = True
                spurious_share[step - 1] = spurious_share_now(model, probe_x, probe_y, mask)
                side_s += time.perf_counter() - side_started
            if not evaluation:
                continue
            finite = torch.isfinite(stats[:step, 0])
            if not bool(finite.all()):
                diverged_step, diverged_reason = int((~finite).nonzero()[0]) + 1, "nonfinite"
                stopped_by = "diverged"
                break
            side_started = time.perf_counter()
            pred, ce = evaluate(forward, train, autocast, prepare)
            train_acc, train_ce = (pred == train.y).float().mean().item(), ce.mean().item()
            if val is not None:
                val_pred, _ = evaluate(forward, val, autocast, prepare)
                val_acc = (val_pred == val.y).float().mean().item()
            side_s += time.perf_counter() - side_started
            training_s = time.perf_counter() - started - side_s
            log(f"step {step:>6}  loss {stats[step - 1, 0].item():.4f}  train acc {train_acc:.4f}  "
                f"{(step - resumed_from) / training_s:.1f} steps/s  {images_seen / training_s:.0f} img/s")
            if val is not None:
                if val_acc > loop["best_val"]:
                    loop.update(best_val=val_acc, best_step=step,
                                best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
            if train_acc >= chance + LEARNED_MARGIN:
                loop["learned"] = True
            if loop["learned"] and train_acc <= chance + CHANCE_MARGIN:
                loop["at_chance"] += 1
                loop["first_at_chance"] = loop["first_at_chance"] or step
            else:
                loop["at_chance"], loop["first_at_chance"] = 0, None
            if settings["collapse_patience"] and loop["at_chance"] >= settings["collapse_patience"]:
                diverged_step, diverged_reason = loop["first_at_chance"], "collapse"
                stopped_by = "diverged"
                break
            if settings["stop_train_ce"] > 0:
                if train_ce < settings["stop_train_ce"]:
                    stopped_by = "stop_train_ce"
                    break
            elif train_acc >= settings["target_train_acc"]:
                stopped_by = "target_train_acc"
                break
    stream.close()
    wall = time.perf_counter() - started
    training_s = wall - side_s

    rows = recorded[:step].nonzero().squeeze(1)
    history = pd.DataFrame(stats[:step].cpu().double().numpy()[rows.numpy()], columns=HISTORY_COLUMNS[1:])
    history.insert(0, "step", (rows + 1).tolist())
    factor = lr_factor(settings)
    history["lr"] = [settings["lr"] * factor(s) for s in rows.tolist()]  # the rate used at each step
    history["spurious_share"] = spurious_share[:step][rows].numpy()
    summary: dict[str, Any] = {
        "steps": step,
        "stopped_by": stopped_by,
        "diverged": stopped_by == "diverged",
        "diverged_step": diverged_step,
        "diverged_reason": diverged_reason,
        "wall_s": wall,
        "eval_s": side_s,  # part of wall_s spent evaluating (and attributing)
        "steps_per_s": (step - resumed_from) / training_s if training_s > 0 else math.nan,  # training steps only
        "images_per_s": images_seen / training_s if training_s > 0 else math.nan,
        "resumed_from_step": resumed_from,
        "amp": "bf16" if use_amp else "off",
        "model_spec": model_spec,
    }
    if select_on_val:
        source = "val split" if "val" in dataset else f"held-out train fraction {settings['val_fraction']}"
        summary.update(val_acc=loop["best_val"] if loop["best_step"] else math.nan, best_step=loop["best_step"],
                       val_source=source)
        if loop["best_state"] is not None:
            model.load_state_dict(loop["best_state"])
    if stopped_by != "diverged":
        if select_on_val:  # the returned weights are the best ones: measure those
            pred, ce = evaluate(forward, train, autocast, prepare)
            train_acc, train_ce = (pred == train.y).float().mean().item(), ce.mean().item()
        summary.update(train_acc=train_acc, train_ce=train_ce)
        test = Split(dataset, "test", device, settings)
        test_pred, _ = evaluate(forward, test, autocast, prepare)
        summary.update({f"test_{k}": v for k, v in group_accuracies(test_pred, test.y, test.b).items()})
    return model, history, summary


def save_checkpoint_state(path: str | Path, spec: dict[str, Any], parts: dict[str, Any], stats: torch.Tensor,
                          recorded: torch.Tensor, spurious_share: torch.Tensor, loop: dict[str, Any], step: int) -> None:
    state = {name: part.state_dict() for name, part in parts.items()}
    state.update(spec=spec, step=step, stats=stats[:step].cpu(), recorded=recorded[:step].clone(),
                 spurious_share=spurious_share[:step].clone(), loop=loop, torch_rng=torch.get_rng_state())
    atomic_torch_save(state, path)


def resume(path: str | Path | None, spec: dict[str, Any], parts: dict[str, Any], stats: torch.Tensor,
           recorded: torch.Tensor, spurious_share: torch.Tensor, loop: dict[str, Any],
           log: Callable[[str], None]) -> int:
    """Restore a checkpoint of this very spec into ``parts``, the buffers and ``loop``; return its step (0 if none)."""
    if path is None or not Path(path).exists():
        return 0
    # Loaded on the CPU: generator states must stay there; load_state_dict moves the rest.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["spec"] != spec:
        log(f"ignoring checkpoint {path}: it was written for different settings")
        return 0
    for name, part in parts.items():
        part.load_state_dict(state[name])
    step = state["step"]
    stats[:step] = state["stats"].to(stats.device)
    recorded[:step] = state["recorded"]
    spurious_share[:step] = state["spurious_share"]
    loop.update(state["loop"])
    torch.set_rng_state(state["torch_rng"])
    log(f"resuming from step {step} ({path})")
    return step
