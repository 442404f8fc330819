"""The per-step statistics a cell records: device buffers filled in batched passes.

The step is the bare loop's plus one copy of each step's logits, kept with the batch's indices.
From those, one batched pass at the next evaluation gives every step's loss, accuracy, BC loss
ratio and logit norm (divergence detection and the maximum BC loss ratio need every step); the
parameter norm is measured at the steps the history records (every ``history_every`` steps and
every evaluation). Nothing crosses to the host between evaluations, so the GPU is never stalled
for a log line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from largelr.config import TrainSettings
from largelr.evaluate import Split
from largelr.training.optim import lr_factor

# Rows every ``history_every`` steps and at every evaluation; "loss" is the
# cross-entropy whatever the training loss. "lr" (the rate used at that step) is added
# from the schedule, and beside it the series measured only at some steps (NaN elsewhere):
# "spurious_share", "core_share", "noise_share" (IG attribution shares on the regions the
# dataset masks, every ``attribution_every`` steps), "train_acc" (the full training set, at
# every evaluation), "test_acc" (the test set, at every evaluation when ``eval_test`` is set)
# and "bc_loss_ratio_fixed" (the BC loss ratio on a fixed seeded set of ``bc_ratio_samples``
# training inputs, at every evaluation).
HISTORY_COLUMNS = ["step", "loss", "accuracy", "bc_loss_ratio", "logit_norm", "param_norm"]
# The columns of History.stats (HISTORY_COLUMNS[1:]).
LOSS = 0
ACCURACY = 1
BC_RATIO = 2
LOGIT_NORM = 3
PARAM_NORM = 4
# Steps (and logit values) kept for the batched per-step statistics before they are reduced.
PENDING_ROWS = 1024
PENDING_LIMIT = 1 << 22
SPARSE_SERIES = ("spurious_share", "core_share", "noise_share", "train_acc", "test_acc", "bc_loss_ratio_fixed")


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
            self.steps[key] = []
            self.indices[key] = []
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
                self.steps[key] = []
                self.indices[key] = []


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
        self.y = train.y  # labels by position in the training split
        self.b = train.b

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

    def measured(self, step: int, name: str, value: float) -> None:
        """A value of one of the SPARSE_SERIES at step ``step`` (1-based), which is then recorded."""
        self.recorded[step - 1] = True
        self.sparse[name][step - 1] = value

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
                rows = rows.pin_memory().to(device, non_blocking=True)
                indices = indices.pin_memory().to(device, non_blocking=True)
            y = self.y[indices]
            b = self.b[indices]
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

    def state_dict(self, step: int) -> dict[str, torch.Tensor]:
        self.flush()
        sparse = {name: series[:step].clone() for name, series in self.sparse.items()}
        return {"stats": self.stats[:step].cpu(), "recorded": self.recorded[:step].clone(), **sparse}

    def load_state_dict(self, state: dict[str, torch.Tensor], step: int) -> None:
        self.stats[:step] = state["stats"].to(self.stats.device)
        self.recorded[:step] = state["recorded"]
        for name, series in self.sparse.items():
            if name in state:  # a checkpoint from before a series existed leaves it NaN
                series[:step] = state[name]
