"""The cell's training batches: a seeded, resumable batch order, and the splits it draws from.

In-memory datasets live on the device and batches are indexed there; lazy (image-file) datasets
stream through a DataLoader with workers in the same seeded order.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch

from largelr.config import TrainSettings
from largelr.evaluate import Split


class BatchOrder:
    """Index batches: a fresh seeded permutation each epoch, last batch partial.

    A last batch of a single sample is dropped (that sample comes again next epoch):
    BatchNorm cannot normalize one sample in training mode. Its state (the generator state
    at the epoch's start and the position in the epoch) is enough to regenerate the same
    order after a restart.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n = n
        self.batch_size = batch_size
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
    loader = torch.utils.data.DataLoader(
        split.images, batch_sampler=OrderedBatches(order), num_workers=split.workers, pin_memory=split.pin
    )
    for x, y, _ in loader:
        idx = order.next()  # the loader's batch (it replays a copy of the order); keeps the resumable state in step
        yield x.to(split.device, non_blocking=True), y.to(split.device, non_blocking=True), idx


def held_out_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): a seeded ``fraction`` of n held out, both sorted."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = max(1, round(fraction * n))
    return order[n_val:].sort().values, order[:n_val].sort().values


def cell_splits(
    dataset: dict[str, Any],
    settings: TrainSettings,
    device: torch.device,
    seed: int,
) -> dict[str, Split | None]:
    """The splits a run evaluates, by name: "train"; "val" with select_on_val (the dataset's val split,
    else a seeded ``val_fraction`` of train held out of training); "test" with eval_test. Absent ones are None."""
    workers = settings.num_workers
    train_indices = None
    val = None
    if settings.select_on_val and "val" not in dataset:
        train_indices, val_indices = held_out_split(len(dataset["train"]["y"]), settings.val_fraction, seed)
    train = Split(dataset, "train", device, train_indices, workers)
    if settings.select_on_val and "val" in dataset:
        val = Split(dataset, "val", device, num_workers=workers)
    elif settings.select_on_val:
        val = Split(dataset, "train", device, val_indices, workers)
    test = Split(dataset, "test", device) if settings.eval_test else None
    return {"train": train, "val": val, "test": test}
