"""Series measured at some steps only, off the training step: IG attribution shares on the
dataset's masked regions, and the BC loss ratio on a fixed seeded set of training inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from largelr.config import TrainSettings
from largelr.evaluate import EVAL_BATCH, Split, sample_indices
from largelr.training.compute import ComputeFormat
from largelr.training.history import History
from largelr.training.state import RunClock

REGIONS = ("spurious", "core", "noise")  # where a dataset's masks say its features live
ATTRIBUTION_SAMPLES = 64


class AttributionProbe:
    """IG shares of |attribution| on each masked region (spurious, core, noise), for a fixed seeded
    sample of training inputs: the course of feature use over training (Figs 3 right, 13)."""

    def __init__(
        self,
        dataset: dict[str, Any],
        train: Split,
        every: int,
        seed: int,
        compute: ComputeFormat,
        log: Callable[[str], None],
    ):
        self.masks = {
            region: dataset[f"{region}_mask"] for region in REGIONS if dataset.get(f"{region}_mask") is not None
        }
        self.every = every
        if every and "spurious" not in self.masks:
            log(f"attribution_every = {every} ignored: dataset {dataset.get('name')!r} has no spurious_mask")
            self.every = 0
        if self.every:
            x, self.y, _ = train.samples(sample_indices(len(train), ATTRIBUTION_SAMPLES, seed))
            self.x = compute.prepare(x)

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
        return {
            f"{region}_share": float(region_share(attributions, mask).nanmean()) for region, mask in self.masks.items()
        }


def bc_loss_ratio(logits: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> float:
    """Cross-entropy summed over the bias-conflicting samples (y != b) over that of all samples."""
    losses = F.cross_entropy(logits.float(), y, reduction="none").double()
    total = losses.sum()
    return float(losses[y != b].sum() / total) if bool(total > 0) else math.nan


class FixedBCRatioProbe:
    """The BC loss ratio on a fixed seeded set of ``bc_ratio_samples`` training inputs, measured
    at each evaluation in eval mode: the authors' code's reading of the max BC loss ratio (the
    maximum over evaluations), beside the paper's text (per-step minibatches, History)."""

    def __init__(self, train: Split, n_samples: int, seed: int, compute: ComputeFormat):
        self.n_samples = n_samples
        if n_samples:
            x, self.y, self.b = train.samples(sample_indices(len(train), n_samples, seed))
            self.x = compute.prepare(x)
            self.compute = compute

    @torch.no_grad()
    def ratio(self, forward: nn.Module) -> float:
        was_training = forward.training
        forward.eval()
        try:
            with self.compute.autocast():
                logits = torch.cat(
                    [forward(self.x[i : i + EVAL_BATCH]).float() for i in range(0, len(self.x), EVAL_BATCH)]
                )
        finally:
            forward.train(was_training)
        return bc_loss_ratio(logits, self.y, self.b)


class Probes:
    """Both probes of a run, measured off the training clock: attribution shares every
    ``attribution_every`` steps, the fixed-set BC loss ratio at each evaluation."""

    def __init__(
        self,
        dataset: dict[str, Any],
        train: Split,
        settings: TrainSettings,
        seed: int,
        compute: ComputeFormat,
        log: Callable[[str], None],
    ):
        self.attribution = AttributionProbe(dataset, train, settings.attribution_every, seed, compute, log)
        self.bc_ratio = FixedBCRatioProbe(train, settings.bc_ratio_samples, seed, compute)

    def due(self, step: int) -> bool:
        """Whether the attribution shares are measured after step ``step`` (its history row is then recorded)."""
        return self.attribution.due(step)

    def measure(
        self, step: int, evaluation: bool, model: nn.Module, forward: nn.Module, history: History, clock: RunClock
    ) -> None:
        """Record the series due after step ``step`` in ``history``, timed aside from training."""
        attribution_due = self.attribution.due(step)
        bc_due = evaluation and bool(self.bc_ratio.n_samples)
        if not (attribution_due or bc_due):
            return  # most steps: not even the clock is read
        with clock.aside():
            if attribution_due:
                for name, share in self.attribution.shares(model).items():
                    history.measured(step, name, share)
            if bc_due:
                history.measured(step, "bc_loss_ratio_fixed", self.bc_ratio.ratio(forward))
