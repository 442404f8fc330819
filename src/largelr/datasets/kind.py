"""The pieces every dataset builder shares; the kinds' records are in :mod:`largelr.registry.kinds`.

A dataset is a plain dict of tensors and python scalars (``torch.load(weights_only=True)``
reads it back):

``name`` (the config name), ``kind``, ``traits`` (see :class:`largelr.registry.kinds.Kind`), ``train``/``test``
(and ``val`` where the source has one), each ``{"x", "y", "b", "g"}`` with ``g = y *
num_bias + b`` the (y, b) group id; ``num_classes``, ``num_bias``, ``input_shape``, the
region masks ``spurious_mask``, ``core_mask`` and ``noise_mask`` (bool tensors of
``input_shape`` marking where each feature lives, or None), ``normalization`` and
``params`` (the construction parameters used, with ``seed`` and the realized ``rho`` of
each split). Lazily read natural sets hold image paths instead of ``x``. A sample is
bias-aligned (BA) when ``y == b`` and bias-conflicting (BC) otherwise.

The file carries its own traits, so no analysis is told the kind from outside.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# One split's tensors: {"x", "y", "b"} and, once assembled, "g".
SplitTensors = dict[str, torch.Tensor]


def is_identity(normalization: dict[str, Any]) -> bool:
    return normalization["mean"] in (0, 0.0) and normalization["std"] in (1, 1.0)


def standardized(x: torch.Tensor, normalization: dict[str, Any]) -> torch.Tensor:
    """(x - mean) / std; per-channel lists broadcast over [N, C, H, W], scalars over anything."""
    mean, std = (torch.as_tensor(normalization[key], dtype=x.dtype) for key in ("mean", "std"))
    if mean.dim():
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return (x - mean) / std


# --- bias labels ---------------------------------------------------------------------------


def group_ids(y: torch.Tensor, b: torch.Tensor, num_bias: int) -> torch.Tensor:
    """One id per (class, bias) group: ``y * num_bias + b`` (stored per sample as ``g``)."""
    return y * num_bias + b


def assign_bias(y: torch.Tensor, rho: float, num_bias: int, generator: torch.Generator) -> torch.Tensor:
    """Bias labels with exactly ``round(rho * N)`` bias-conflicting samples.

    Rule: ``n_bc = round(rho * N)`` samples, chosen uniformly at random (``torch.randperm``
    with ``generator``), get a bias label drawn uniformly among the ``num_bias - 1`` values
    different from their ``y``; all other samples get ``b = y``. Requires ``0 <= y < num_bias``
    and ``num_bias >= 2``.
    """
    n_conflicting = round(rho * len(y))
    conflicting = torch.randperm(len(y), generator=generator)[:n_conflicting]
    # A nonzero shift modulo num_bias hits each value != y exactly once.
    shift = torch.randint(1, num_bias, (n_conflicting,), generator=generator)
    b = y.clone()
    b[conflicting] = (y[conflicting] + shift) % num_bias
    return b


def lff_bias(y: torch.Tensor, aligned_ratio: float, num_bias: int) -> torch.Tensor:
    """Bias labels as LfF's public release assigns them (Nam et al. 2020, ``make_attr_labels``): no draw.

    For class k, r_k[j] = ``aligned_ratio`` for j = k and (1 - aligned_ratio) / (num_bias - 1) otherwise;
    its n_k samples, in dataset order, are cut into consecutive blocks for bias values 0, 1, ...,
    num_bias - 1 at the milestones round(n_k * cumsum(r_k)) (numpy's round, half to even), so every
    class has exact proportions. ``aligned_ratio`` 1 - rho gives a biased training split, 1 / num_bias
    a test split uniform over the bias values. Requires ``0 <= y < num_bias``.
    """
    ratios = np.full((num_bias, num_bias), (1.0 - aligned_ratio) / (num_bias - 1))
    np.fill_diagonal(ratios, aligned_ratio)
    b = torch.empty_like(y)
    for label in range(num_bias):
        members = torch.nonzero(y == label).flatten()
        milestones = np.round(len(members) * np.cumsum(ratios[label]))
        # position i within the class gets the first bias value whose milestone exceeds i
        positions = np.arange(len(members))
        values = np.searchsorted(milestones, positions, side="right")
        b[members] = torch.from_numpy(np.minimum(values, num_bias - 1)).to(y.dtype)
    return b


def unbiased_bias(n: int, num_bias: int, generator: torch.Generator) -> torch.Tensor:
    """Bias labels uniform over all values, independent of y (rho about (num_bias-1)/num_bias)."""
    return torch.randint(0, num_bias, (n,), generator=generator)


def realized_rho(split: SplitTensors) -> float:
    return (split["y"] != split["b"]).double().mean().item()


# Append only: a stream's position seeds it, so reordering would change every dataset.
SPLIT_STREAMS = (
    "train",
    "test",
    "train-colour",
    "test-colour",
    "train-pick",
    "test-pick",
    "train-corrupt",
    "test-corrupt",
    "train-noise",
    "test-noise",
    "train-subsample",
    "test-subsample",
)


def split_generator(seed: int, stream: str, *indices: int) -> torch.Generator:
    """Independent generator per (seed, stream, indices), so train and test draws never overlap."""
    state = np.random.SeedSequence([seed, SPLIT_STREAMS.index(stream), *indices]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def with_group_ids(split: SplitTensors, num_bias: int) -> SplitTensors:
    return {**split, "g": group_ids(split["y"], split["b"], num_bias)}


def assemble(
    name: str,
    train: SplitTensors,
    test: SplitTensors,
    num_classes: int,
    num_bias: int,
    spurious_mask: torch.Tensor | None,
    core_mask: torch.Tensor | None,
    params: dict[str, Any],
    seed: int,
    noise_mask: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The dataset dict of an in-memory set (module docstring); ``kind`` and ``traits`` are added by
    :func:`largelr.datasets.build_dataset`."""
    recorded = {
        **params,
        "seed": seed,
        "realized_rho_train": realized_rho(train),
        "realized_rho_test": realized_rho(test),
    }
    return {
        "name": name,
        "train": with_group_ids(train, num_bias),
        "test": with_group_ids(test, num_bias),
        "num_classes": num_classes,
        "num_bias": num_bias,
        "input_shape": list(train["x"].shape[1:]),
        "spurious_mask": spurious_mask,
        "core_mask": core_mask,
        "noise_mask": noise_mask,
        "params": recorded,
        # Inputs are used as stored (pixels in [0, 1], parity bits in {-1, 1}): identity normalization.
        "normalization": {"mean": 0.0, "std": 1.0},
    }
