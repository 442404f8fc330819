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
from dataclasses import dataclass, field
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
    # Parse-time checks of a study against the set's size: the parameters giving the train and test
    # sizes, and the number of classes (None: sizes not known before the build).
    size_keys: tuple[str, str] | None = None
    num_classes: int | None = None
    renamed: dict[str, str] = field(default_factory=dict)  # an old parameter name -> what to write instead

    @property
    def traits(self) -> dict[str, bool]:
        return {"worst_group": self.worst_group, "oracle_background": self.oracle_background}

    def check_params(self, params: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
        """(defaults overridden by the checked params, error messages naming ``where.key``)."""
        old = {key for key in params if key in self.renamed}
        checked, errors = check_section({k: v for k, v in params.items() if k not in old}, self.params, where)
        errors += [f"{where}.{key} = {params[key]!r}: {self.renamed[key]}" for key in sorted(old)]
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


# Input standardisation (x - mean) / std applied when a dataset file is loaded, per the dataset's
# ``standardize`` parameter: the constants of the authors' code (MNIST scalar, CIFAR per channel).
STANDARDIZATIONS: dict[str, dict[str, Any]] = {
    "none": {"mean": 0.0, "std": 1.0},
    "mnist": {"mean": 0.1307, "std": 0.3081},
    "cifar10": {"mean": [0.491, 0.482, 0.447], "std": [0.247, 0.243, 0.262]},
    "cifar100": {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]},
}


def standardize_param(default: str) -> dict[str, Setting]:
    return {"standardize": Setting(default, "inputs standardised on load, (x - mean) / std with the constants of: "
                                   "mnist (0.1307, 0.3081) | cifar10 | cifar100 (per channel) | none (raw [0, 1])",
                                   type=str, choices=tuple(STANDARDIZATIONS))}


def is_identity(normalization: dict[str, Any]) -> bool:
    return normalization["mean"] in (0, 0.0) and normalization["std"] in (1, 1.0)


def standardized(x: torch.Tensor, normalization: dict[str, Any]) -> torch.Tensor:
    """(x - mean) / std; per-channel lists broadcast over [N, C, H, W], scalars over anything."""
    mean, std = (torch.as_tensor(normalization[key], dtype=x.dtype) for key in ("mean", "std"))
    if mean.dim():
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return (x - mean) / std


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


BIAS_ASSIGNMENTS = ("lff", "random")


def bias_assignment(default: str) -> Setting:
    return Setting(default, "lff (LfF's release: deterministic per-class blocks, exact proportions, test split "
                   "uniform over the bias values) | random (exactly round(rho N) conflicting samples drawn at random, "
                   "test bias drawn uniformly)", type=str, choices=BIAS_ASSIGNMENTS)


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
