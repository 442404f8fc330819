"""Train one cell: mini-batch training until the training set is fit, a step cap, or divergence.

:func:`train_cell` is the whole run, top to bottom: setup, model, data, state, resume, then the
loop (checkpoint, step, bookkeeping, evaluate), then the summary. The step is the bare loop's
(forward, mean cross-entropy, backward, optimizer step) plus one copy of the step's logits for the
history (``largelr.training.history``). The helpers below it are the phases too long to stand
inline: the model's set-up and the evaluation.

A run stops at the step cap, when the full training set is fit (``target_train_acc``, or its CE
below ``stop_train_ce`` when set), or on divergence -- a non-finite loss or an accuracy collapse
back to chance -- which is a result (``stopped_by="diverged"``), not an error. With
``select_on_val`` the weights of the best evaluation on validation are returned. A run resumed
from a checkpoint ends as an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from largelr.config import TrainSettings
from largelr.evaluate import Split, predictions_and_losses
from largelr.models import build_model
from largelr.progress import step_text, time_text
from largelr.training.compute import ComputeFormat
from largelr.training.data import cell_splits, training_batches
from largelr.training.history import LOSS
from largelr.training.optim import asam_gradients, lr_factor, set_lr, training_loss
from largelr.training.probes import Probes
from largelr.training.state import RunClock, TrainState, interrupt_flag
from largelr.training.summary import summarize

# Sees the model (in train mode) before each step, after ``step`` steps; True stops the run there, counted as
# the step cap (a replay that needs only the first steps: largelr.over_training).
Observer = Callable[[int, nn.Module], bool]


def train_cell(
    spec: dict[str, Any],
    dataset: dict[str, Any],
    device: torch.device,
    log: Callable[[str], None] = print,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1000,
    observer: Observer | None = None,
) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train the cell described by ``spec`` (``largelr.config.cell_spec``): (model, history, summary); the module
    docstring says when it stops. With a ``checkpoint`` path the state is saved there every ``checkpoint_every``
    steps and on SIGTERM/SIGINT (then ``Preempted`` is raised); a later call with the same spec resumes from it."""
    # setup: settings and seed
    settings = TrainSettings(spec["train"], where="train")
    seed = spec["seed"]
    torch.manual_seed(seed)
    # model: built, laid out for the device, compiled if asked
    model, model_spec, compute, forward = set_up_model(spec, dataset, settings, device)
    # data: the training split, and the validation and test splits the evaluations read
    splits = cell_splits(dataset, settings, device, seed)
    train = splits["train"]
    # optimizer, batch order, history, stopping rules (the state a checkpoint saves); the probes
    state = TrainState(model, settings, train, dataset["num_classes"], seed)
    probes = Probes(dataset, train, settings, seed, compute, log)
    # resume: from the checkpoint of this very spec, if there is one
    resumed_from = state.resume(checkpoint, spec, log)
    clock = RunClock(resumed_from)
    rate = None if settings.lr_schedule == "constant" else lr_factor(settings)  # a constant rate needs no update
    max_steps = settings.max_steps
    eval_every = settings.eval_every
    history_every = settings.history_every
    outcome = ("max_steps", None)
    with interrupt_flag() as interrupt, contextlib.closing(training_batches(train, state.order)) as stream:
        while (step := state.step) < max_steps and not (observer and observer(step, model)):
            # checkpoint: every checkpoint_every steps, and on a signal, which then ends the run
            state.checkpoint(checkpoint, spec, interrupt, due=step > resumed_from and step % checkpoint_every == 0)
            # step: forward, loss, backward (ASAM: again at the perturbed weights), update
            x, y, indices = next(stream)
            if rate:
                set_lr(state.optimizer, settings.lr * rate(step))
            logits = take_step(state, forward, compute, settings, x, y)
            state.step = step = step + 1
            # bookkeeping: the step's logits for the history; a history row and the probes when due
            clock.images += len(y)
            state.history.add(step, logits, indices)
            evaluation = step % eval_every == 0 or step == max_steps
            if evaluation or step % history_every == 0 or probes.due(step):
                state.history.record(step, state.params)
            probes.measure(step, evaluation, model, forward, state.history, clock)
            # evaluate: divergence, the training set's fit, validation; log; the stopping rules
            if evaluation and (stop := evaluate_and_decide(state, forward, splits, compute, clock, log)):
                outcome = stop
                break
    # summary: restores the best-on-validation weights, measures the test set
    summary = summarize(state, forward, dataset, train, outcome, clock, compute, model_spec)
    return model, state.history.frame(state.step, settings), summary


def take_step(
    state: TrainState,
    forward: Callable,
    compute: ComputeFormat,
    settings: TrainSettings,
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """One update: forward, loss, backward (ASAM: again at the perturbed weights), optimizer step; the logits."""
    x = compute.prepare(x)
    with compute.autocast():
        logits = forward(x)
    loss = training_loss(logits, y, state.params, settings)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if settings.asam_rho:
        asam_gradients(forward, x, y, state.params, state.optimizer, settings, compute.autocast)
    state.optimizer.step()
    return logits


def build_cell_model(spec: dict[str, Any], dataset: dict[str, Any], device: torch.device) -> tuple[nn.Module, dict]:
    """The cell's freshly initialised model (seeded by the caller) and the spec that rebuilds it."""
    model_spec = {
        "name": spec["model"],
        "input_shape": list(dataset["input_shape"]),
        "num_classes": dataset["num_classes"],
        "params": spec["model_params"],
    }
    return build_model(**model_spec).to(device).train(), model_spec


def set_up_model(
    spec: dict[str, Any],
    dataset: dict[str, Any],
    settings: TrainSettings,
    device: torch.device,
) -> tuple[nn.Module, dict, ComputeFormat, nn.Module]:
    """(model, its spec, its compute format, the callable that runs it: the model or its torch.compile'd form)."""
    model, model_spec = build_cell_model(spec, dataset, device)
    compute = ComputeFormat(model, spec["model"], settings, device)
    model = model.to(memory_format=torch.channels_last) if compute.channels_last else model
    forward = torch.compile(model) if settings.compile else model
    return model, model_spec, compute, forward


def evaluate_and_decide(
    state: TrainState,
    forward: nn.Module,
    splits: dict[str, Split | None],
    compute: ComputeFormat,
    clock: RunClock,
    log: Callable[[str], None],
) -> tuple[str, int | None] | None:
    """At an evaluation: divergence check, full-train accuracy and CE, validation (and test with
    ``eval_test``), stopping rules. Returns (stopped_by or diverged reason, diverged step) to stop, else None."""
    step = state.step
    history = state.history
    if (first_bad := history.first_nonfinite_step(step)) is not None:
        return "nonfinite", first_bad

    def accuracy(split: Split) -> tuple[float, float]:
        pred, ce, _ = predictions_and_losses(forward, split, compute.autocast, compute.prepare)
        return (pred == split.y).float().mean().item(), ce.mean().item()

    with clock.aside():
        train_acc, train_ce = accuracy(splits["train"])
        history.measured(step, "train_acc", train_acc)
        val_acc = accuracy(splits["val"])[0] if splits["val"] is not None else None
        if splits["test"] is not None:
            history.measured(step, "test_acc", accuracy(splits["test"])[0])
    steps_per_s, images_per_s = clock.rates(step)
    cap = state.settings.max_steps
    elapsed = time_text(step, cap, clock.resumed_from, clock.elapsed_s())
    log(
        f"step {step_text(step, cap)}  loss {history.stats[step - 1, LOSS].item():.4f}  train acc {train_acc:.4f}  "
        f"{steps_per_s:.1f} steps/s  {images_per_s:.0f} img/s  {elapsed}"
    )
    if val_acc is not None:
        state.stopping.keep_if_best(step, val_acc, state.model)
    return state.stopping.after_evaluation(step, train_acc, train_ce)
