"""Train one cell: mini-batch SGD at a constant learning rate until the training set is fit.

The whole loop is here, top to bottom. Data lives on the device and batches are
indexed there; per-step statistics accumulate in device tensors and cross to the host
only at evaluation intervals, so the GPU is never stalled for a log line.
"""

from __future__ import annotations

import contextlib
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

# Logged every step; "loss" is the cross-entropy whatever the training loss. An "lr" column
# (the rate used at that step) is added from the schedule.
HISTORY_COLUMNS = ["step", "loss", "accuracy", "bc_loss_ratio", "logit_norm", "param_norm"]
EVAL_BATCH = 2000


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


def make_optimizer(params: list[nn.Parameter], settings: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr, decay = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=decay)
    raise ValueError(f"optimizer {name!r} is not known; allowed: ['sgd', 'adam', 'adamw']")


def lr_factor(settings: dict[str, Any]) -> Callable[[int], float]:
    """Multiplier of the base learning rate after ``step`` optimizer steps."""
    schedule, max_steps = settings["lr_schedule"], settings["max_steps"]
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "step":
        return lambda step: settings["lr_step_factor"] if step >= settings["lr_step_at"] else 1.0
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max_steps))
    raise ValueError(f"lr_schedule {schedule!r} is not known; allowed: ['constant', 'step', 'cosine']")


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


class BatchOrder:
    """Index batches: a fresh seeded permutation each epoch, last batch partial.

    Its state (the generator state at the epoch's start and the position in the epoch)
    is enough to regenerate the same order after a restart.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.epoch_state = self.generator.get_state()
        self.batches = torch.randperm(self.n, generator=self.generator).split(self.batch_size)
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


def train_cell(
    spec: dict[str, Any],
    dataset: dict[str, Any],
    device: torch.device,
    log: Callable[[str], None] = print,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train the cell described by ``spec`` (see ``largelr.config.cell_spec``).

    Returns the model, the per-step history and a summary. A non-finite loss stops
    training and is reported as ``diverged`` -- a result, not an error. With a
    ``checkpoint`` path, the state is saved there every ``checkpoint_every`` steps and
    on SIGTERM (then ``Preempted`` is raised); a later call with the same spec resumes
    from it and ends with the same weights and history as an uninterrupted run.
    """
    if dataset.get("lazy"):
        raise NotImplementedError(
            f"dataset {dataset['name']!r} is read lazily from image files; training on lazy datasets "
            "(DataLoader with workers) is not implemented yet -- only in-memory datasets can be trained"
        )
    settings = spec["train"]
    torch.manual_seed(spec["seed"])
    model_spec = {
        "name": spec["model"],
        "input_shape": list(dataset["input_shape"]),
        "num_classes": dataset["num_classes"],
        "params": spec["model_params"],
    }
    model = build_model(**model_spec).to(device).train()
    params = list(model.parameters())
    optimizer = make_optimizer(params, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(settings))

    train = {k: dataset["train"][k].to(device) for k in ("x", "y", "b")}
    conflicting = train["y"] != train["b"]
    max_steps, eval_every = settings["max_steps"], settings["eval_every"]
    stats = torch.zeros(max_steps, len(HISTORY_COLUMNS) - 1, device=device)

    batches = BatchOrder(len(train["y"]), settings["batch_size"], spec["seed"])
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "order": batches}
    step = resume(checkpoint, spec, parts, stats, log)
    resumed_from = step
    stopped_by, diverged_step = "max_steps", None
    started = time.perf_counter()
    with sigterm_flag() as sigterm:
        while step < max_steps:
            if checkpoint and (sigterm["raised"] or (step > resumed_from and step % checkpoint_every == 0)):
                save_checkpoint_state(checkpoint, spec, parts, stats, step)
            if sigterm["raised"]:
                raise Preempted(step, saved=checkpoint is not None)
            idx = batches.next().to(device)
            logits = model(train["x"][idx])
            losses = F.cross_entropy(logits.float(), train["y"][idx], reduction="none")
            loss = training_loss(losses, params, settings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                stats[step] = torch.stack([
                    losses.mean(),  # cross-entropy, whatever the training loss
                    (logits.argmax(1) == train["y"][idx]).float().mean(),
                    losses[conflicting[idx]].sum() / losses.sum(),  # BC loss ratio
                    logits.norm(dim=1).mean(),
                    nn.utils.get_total_norm(params),
                ])
            step += 1
            if step % eval_every == 0 or step == max_steps:
                finite = torch.isfinite(stats[:step, 0])
                if not bool(finite.all()):
                    diverged_step = int((~finite).nonzero()[0]) + 1
                    stopped_by = "diverged"
                    break
                train_acc = (predict(model, train["x"]) == train["y"]).float().mean().item()
                rate = (step - resumed_from) / (time.perf_counter() - started)
                log(f"step {step:>6}  loss {stats[step - 1, 0].item():.4f}  train acc {train_acc:.4f}  {rate:.0f} steps/s")
                if train_acc >= settings["target_train_acc"]:
                    stopped_by = "target_train_acc"
                    break
    wall = time.perf_counter() - started

    history = pd.DataFrame(stats[:step].cpu().double().numpy(), columns=HISTORY_COLUMNS[1:])
    history.insert(0, "step", range(1, step + 1))
    factor = lr_factor(settings)
    history["lr"] = [settings["lr"] * factor(s) for s in range(step)]  # the rate used at each step
    summary: dict[str, Any] = {
        "steps": step,
        "stopped_by": stopped_by,
        "diverged": stopped_by == "diverged",
        "diverged_step": diverged_step,
        "wall_s": wall,
        "steps_per_s": (step - resumed_from) / wall if wall > 0 else math.nan,
        "resumed_from_step": resumed_from,
        "model_spec": model_spec,
    }
    if stopped_by != "diverged":
        summary["train_acc"] = (predict(model, train["x"]) == train["y"]).float().mean().item()
        test = {k: dataset["test"][k].to(device) for k in ("x", "y", "b")}
        summary.update({f"test_{k}": v for k, v in group_accuracies(predict(model, test["x"]), test["y"], test["b"]).items()})
    return model, history, summary


def save_checkpoint_state(path: str | Path, spec: dict[str, Any], parts: dict[str, Any], stats: torch.Tensor, step: int) -> None:
    state = {name: part.state_dict() for name, part in parts.items()}
    state.update(spec=spec, step=step, stats=stats[:step].cpu(), torch_rng=torch.get_rng_state())
    atomic_torch_save(state, path)


def resume(path: str | Path | None, spec: dict[str, Any], parts: dict[str, Any], stats: torch.Tensor,
           log: Callable[[str], None]) -> int:
    """Restore a checkpoint of this very spec into ``parts`` and ``stats``; return its step (0 if none)."""
    if path is None or not Path(path).exists():
        return 0
    state = torch.load(path, map_location=stats.device, weights_only=True)
    if state["spec"] != spec:
        log(f"ignoring checkpoint {path}: it was written for different settings")
        return 0
    for name, part in parts.items():
        part.load_state_dict(state[name])
    step = state["step"]
    stats[:step] = state["stats"].to(stats.device)
    torch.set_rng_state(state["torch_rng"])
    log(f"resuming from step {step} ({path})")
    return step
