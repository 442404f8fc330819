"""A dataset kind: its record, and the pieces every builder shares.

A dataset is a plain dict of tensors and python scalars (``torch.load(weights_only=True)``
reads it back):

``name`` (the config name), ``kind``, ``traits`` (see :class:`Kind`), ``train``/``test``
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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from largelr.checks import Setting, SettingError, check_section, defaults

Split = dict[str, torch.Tensor]
Builder = Callable[[dict[str, Any], Path, int], dict[str, Any]]
MissingCheck = Callable[[dict[str, Any], Path], "str | None"]


@dataclass(frozen=True)
class Kind:
    """One dataset kind: parameters, builder, the files it needs and its traits.

    ``build(params, data_root, seed)`` returns the dataset dict; ``missing(params, data_root)``
    says from file existence alone what is absent (None: buildable). Traits travel inside the
    dataset file: ``worst_group`` (report worst-group accuracy, as the paper does for the
    natural sets) and ``oracle_background`` (the object is drawn on an exactly black canvas,
    so the black pixels are the background).
    """

    name: str
    doc: str
    params: dict[str, Setting]
    build: Builder
    missing: MissingCheck = lambda params, root: None
    worst_group: bool = False
    oracle_background: bool = False
    flat_inputs: bool = False  # vectors, not images: no background to attribute to

    @property
    def traits(self) -> dict[str, bool]:
        return {"worst_group": self.worst_group, "oracle_background": self.oracle_background}

    def check_params(self, params: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
        """(defaults overridden by the checked params, error messages naming ``where.key``)."""
        checked, errors = check_section(params, self.params, where)
        return {**defaults(self.params), **checked}, errors

    def merged_params(self, params: dict[str, Any]) -> dict[str, Any]:
        merged, errors = self.check_params(params, f"dataset {self.name}")
        if errors:
            raise SettingError("; ".join(errors))
        return merged


# --- parameters several kinds share -----------------------------------------------------


def rho(default: float, doc: str) -> Setting:
    return Setting(default, doc, minimum=0.0, maximum=1.0)


def count(default: int, doc: str) -> Setting:
    return Setting(default, doc, type=int, minimum=1)


FILE_PARAMS = {
    "download": Setting(False, "let torchvision download missing base files (MNIST, CIFAR)", type=bool),
    "verify_checksums": Setting(True, "check base files against the official release", type=bool),
}


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


def unbiased_bias(n: int, num_bias: int, generator: torch.Generator) -> torch.Tensor:
    """Bias labels uniform over all values, independent of y (rho about (num_bias-1)/num_bias)."""
    return torch.randint(0, num_bias, (n,), generator=generator)


def realized_rho(split: Split) -> float:
    return (split["y"] != split["b"]).double().mean().item()


# Append only: a stream's position seeds it, so reordering would change every dataset.
SPLIT_STREAMS = ("train", "test", "train-colour", "test-colour", "train-pick", "test-pick", "train-corrupt",
                 "test-corrupt", "train-noise", "test-noise", "train-subsample", "test-subsample")


def split_generator(seed: int, stream: str, *indices: int) -> torch.Generator:
    """Independent generator per (seed, stream, indices), so train and test draws never overlap."""
    state = np.random.SeedSequence([seed, SPLIT_STREAMS.index(stream), *indices]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def with_group_ids(split: Split, num_bias: int) -> Split:
    return {**split, "g": group_ids(split["y"], split["b"], num_bias)}


def assemble(name: str, train: Split, test: Split, num_classes: int, num_bias: int, spurious_mask: torch.Tensor | None,
             core_mask: torch.Tensor | None, params: dict[str, Any], seed: int,
             noise_mask: torch.Tensor | None = None) -> dict[str, Any]:
    """The dataset dict of an in-memory set (module docstring); ``kind`` and ``traits`` are added by
    :func:`largelr.datasets.build_dataset`."""
    recorded = {**params, "seed": seed, "realized_rho_train": realized_rho(train), "realized_rho_test": realized_rho(test)}
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
