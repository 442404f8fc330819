"""The run's summary (train.json's ``summary``): why it stopped, whether it converged, its rates,
the mechanism statistics, and the accuracies of the weights it returns."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from largelr.config import TrainSettings
from largelr.evaluate import Split, group_accuracies, predictions_and_losses
from largelr.training.compute import ComputeFormat
from largelr.training.state import RunClock, TrainState

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


def run_summary(
    state: TrainState,
    outcome: tuple[str, int | None],
    clock: RunClock,
    compute: ComputeFormat,
    model_spec: dict[str, Any],
) -> dict[str, Any]:
    """How the run went: steps, why it stopped, its rates, the maximum BC loss ratios."""
    reason, diverged_step = outcome
    stopped_by = "diverged" if reason in DIVERGENCE_REASONS else reason
    steps_per_s, images_per_s = clock.rates(state.step)
    max_bc, max_bc_step = state.history.max_bc_loss_ratio(state.step)
    summary: dict[str, Any] = {
        "steps": state.step,
        "stopped_by": stopped_by,
        "diverged": stopped_by == "diverged",
        "converged": converged(stopped_by, state.settings),
        "diverged_step": diverged_step,
        "diverged_reason": reason if stopped_by == "diverged" else None,
        "wall_s": clock.elapsed_s(),
        "eval_s": clock.aside_s,  # part of wall_s spent evaluating (and attributing)
        "steps_per_s": steps_per_s,  # training steps only
        "images_per_s": images_per_s,
        "resumed_from_step": clock.resumed_from,
        "amp": "bf16" if compute.amp else "off",
        "model_spec": model_spec,
        # the mechanism statistic over every step, whatever history_every records
        "max_bc_loss_ratio": max_bc,
        "max_bc_loss_ratio_step": max_bc_step,
    }
    fixed_bc, fixed_bc_step = state.history.max_fixed_bc_loss_ratio(state.step)  # over evaluations, fixed set
    summary.update(max_bc_loss_ratio_fixed=fixed_bc, max_bc_loss_ratio_fixed_step=fixed_bc_step)
    return summary


def summarize(
    state: TrainState,
    forward: nn.Module,
    dataset: dict[str, Any],
    train: Split,
    outcome: tuple[str, int | None],
    clock: RunClock,
    compute: ComputeFormat,
    model_spec: dict[str, Any],
) -> dict[str, Any]:
    """The run's summary; restores the best-on-validation weights and measures test accuracy."""
    summary = run_summary(state, outcome, clock, compute, model_spec)
    settings = state.settings
    stopping = state.stopping
    if settings.select_on_val:
        source = "val split" if "val" in dataset else f"held-out train fraction {settings.val_fraction}"
        val_acc = stopping.best_val if stopping.best_step else math.nan
        summary.update(val_acc=val_acc, best_step=stopping.best_step, val_source=source)
        if stopping.best_state is not None:
            state.model.load_state_dict(stopping.best_state)
    if summary["diverged"]:
        return summary
    train_acc = stopping.last_train_acc
    train_ce = stopping.last_train_ce
    if settings.select_on_val:  # the returned weights are the best ones: measure those
        pred, ce, _ = predictions_and_losses(forward, train, compute.reported, compute.prepare)
        train_acc = (pred == train.y).float().mean().item()
        train_ce = ce.mean().item()
    summary.update(train_acc=train_acc, train_ce=train_ce)
    test = Split(dataset, "test", next(state.model.parameters()).device, num_workers=settings.num_workers)
    test_pred, _, _ = predictions_and_losses(forward, test, compute.reported, compute.prepare)
    summary.update({f"test_{k}": v for k, v in group_accuracies(test_pred, test.y, test.b).items()})
    return summary
