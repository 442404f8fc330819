"""Train one cell: mini-batch SGD at a constant learning rate until the training set is fit.

The whole loop is here, top to bottom. Data lives on the device and batches are
indexed there; per-step statistics accumulate in device tensors and cross to the host
only at evaluation intervals, so the GPU is never stalled for a log line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from largelr.models import build_model

# Logged every step; "loss" is the cross-entropy whatever the training loss. An "lr" column
# (the rate used at that step) is added from the schedule.
HISTORY_COLUMNS = ["step", "loss", "accuracy", "bc_loss_ratio", "logit_norm", "param_norm"]
EVAL_BATCH = 2000


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    was_training = model.training
    model.eval()
    preds = torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return preds


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


def batch_order(n: int, batch_size: int, generator: torch.Generator):
    """Endless stream of index batches: a fresh permutation each epoch, last batch partial."""
    while True:
        perm = torch.randperm(n, generator=generator)
        yield from perm.split(batch_size)


def train_cell(
    spec: dict[str, Any],
    dataset: dict[str, Any],
    device: torch.device,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train the cell described by ``spec`` (see ``largelr.config.cell_spec``).

    Returns the model, the per-step history and a summary. A non-finite loss stops
    training and is reported as ``diverged`` -- a result, not an error.
    """
    if dataset.get("lazy"):
        raise NotImplementedError(
            f"dataset {dataset['name']!r} is read lazily from image files; training on lazy datasets "
            "(DataLoader with workers) is not implemented yet -- only in-memory datasets can be trained"
        )
    settings = spec["train"]
    torch.manual_seed(spec["seed"])
    order = torch.Generator().manual_seed(spec["seed"])
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

    stopped_by, diverged_step, step = "max_steps", None, 0
    started = time.perf_counter()
    batches = batch_order(len(train["y"]), settings["batch_size"], order)
    while step < max_steps:
        idx = next(batches).to(device)
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
            rate = step / (time.perf_counter() - started)
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
        "steps_per_s": step / wall if wall > 0 else math.nan,
        "model_spec": model_spec,
    }
    if stopped_by != "diverged":
        summary["train_acc"] = (predict(model, train["x"]) == train["y"]).float().mean().item()
        test = {k: dataset["test"][k].to(device) for k in ("x", "y", "b")}
        summary.update({f"test_{k}": v for k, v in group_accuracies(predict(model, test["x"]), test["y"], test["b"]).items()})
    return model, history, summary
