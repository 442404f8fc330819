"""Reading a split and scoring a model on it: below training and the analyses alike.

A :class:`Split` is one split of a dataset dict, in memory (moved to the device once,
batches sliced there) or lazy (image files read through a DataLoader). Training, pruning,
representations, attributions and the hi/lo maps all read their inputs through it, so
"a test batch" and "a seeded test sample" mean the same thing everywhere.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EVAL_BATCH = 2000
LAZY_EVAL_BATCH = 256  # image-file datasets: full-size images, smaller batches

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def sample_indices(n_total: int, n_samples: int, seed: int) -> torch.Tensor:
    """A fixed seeded subset of indices, so every cell of a dataset is analysed on the same inputs."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=generator)[: min(n_samples, n_total)].sort().values


class Split:
    """One split on the device (in-memory sets) or read through a DataLoader (lazy sets).

    ``indices`` restricts it to a subset (the part of train kept for training, a held-out
    validation part, a seeded test sample). ``batches()`` yields (x, y, b) on the device in
    order; ``samples(indices)`` gathers single items.
    """

    def __init__(
        self,
        dataset: dict[str, Any],
        split: str,
        device: torch.device | str,
        indices: torch.Tensor | None = None,
        num_workers: int = 0,
    ):
        self.device, self.lazy = torch.device(device), bool(dataset.get("lazy"))
        part = dataset[split]
        take = (lambda t: t[indices]) if indices is not None else (lambda t: t)
        self.y, self.b = take(part["y"]).to(self.device), take(part["b"]).to(self.device)
        self.workers, self.pin = int(num_workers), self.device.type == "cuda"
        if not self.lazy:
            self.x = take(part["x"]).to(self.device).contiguous()  # batches gathered from it are contiguous too
            return
        from largelr.datasets.lazy import LazyImageDataset

        images: torch.utils.data.Dataset = LazyImageDataset(dataset, split)
        if indices is not None:
            images = torch.utils.data.Subset(images, indices.tolist())
        self.images = images
        self._eval_loader = None

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        """The whole split in order, as (x, y, b) batches on the device."""
        if not self.lazy:
            size = batch_size or EVAL_BATCH
            for i in range(0, len(self.y), size):
                yield self.x[i : i + size], self.y[i : i + size], self.b[i : i + size]
            return
        for x, y, b in self.loader(batch_size or LAZY_EVAL_BATCH):
            yield (
                x.to(self.device, non_blocking=True),
                y.to(self.device, non_blocking=True),
                b.to(self.device, non_blocking=True),
            )

    def loader(self, batch_size: int) -> torch.utils.data.DataLoader:
        """An in-order DataLoader over a lazy split (workers kept alive between passes)."""
        if self._eval_loader is None or self._eval_loader.batch_size != batch_size:
            self._eval_loader = torch.utils.data.DataLoader(
                self.images,
                batch_size=batch_size,
                shuffle=False,
                num_workers=self.workers,
                pin_memory=self.pin,
                persistent_workers=self.workers > 0,
            )
        return self._eval_loader

    def samples(self, indices: torch.Tensor) -> Batch:
        """Inputs, labels and bias labels at ``indices`` (positions in this split), on the device."""
        on_device = indices.to(self.device)
        if not self.lazy:
            return self.x[on_device], self.y[on_device], self.b[on_device]
        if len(indices):
            x = torch.stack([self.images[int(i)][0] for i in indices])
        else:
            x = torch.zeros(0, *self.images[0][0].shape) if len(self.images) else torch.zeros(0)
        return x.to(self.device), self.y[on_device], self.b[on_device]


def test_sample(dataset: dict[str, Any], n_samples: int, device: torch.device | str, seed: int = 0) -> Batch:
    """The fixed seeded sample of ``n_samples`` test inputs every analysis uses (inputs, labels, bias labels)."""
    test = Split(dataset, "test", "cpu")
    x, y, b = test.samples(sample_indices(len(test), n_samples, seed))
    return x.to(device), y.to(device), b.to(device)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Predicted classes in eval mode, batched; restores the training flag."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_split(model: nn.Module, split: Split, batch_size: int | None = None) -> torch.Tensor:
    """Predicted classes [N] (on the split's device) of a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x).argmax(1) for x, _, _ in split.batches(batch_size)])
    finally:
        model.train(was_training)


@torch.no_grad()
def predictions_and_losses(
    model: nn.Module,
    split: Split,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits' argmax, per-sample cross-entropy and true-class probability over a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    preds, losses, true_probs = [], [], []
    try:
        for x, y, _ in split.batches():
            with autocast():
                logits = model(prepare(x)).float()
            ce = F.cross_entropy(logits, y, reduction="none")
            preds.append(logits.argmax(1))
            losses.append(ce)
            true_probs.append(torch.exp(-ce))
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(losses), torch.cat(true_probs)


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
