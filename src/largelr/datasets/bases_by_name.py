"""The bases the constructions name: a gray base by its ``base``/``digit_base`` parameter, and
which files any base needs.

Readers: :mod:`largelr.datasets.bases` (the bundled digits, MNIST, CIFAR) and
:mod:`largelr.datasets.fashion` (Fashion-MNIST); this module picks one by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from largelr.datasets.bases import Base, load_digits_base, load_mnist_unit, unit_range
from largelr.datasets.fashion import load_fashion_mnist
from largelr.registry.kinds import GRAY_BASES


def load_gray(base: str, data_root: str | Path, params: dict[str, Any]) -> Base:
    """Gray images in [0, 1] ([N, 1, 28, 28]) from base ``digits`` (bundled, offline), ``mnist`` or
    ``fashion_mnist`` (under data_root)."""
    if base == "digits":
        return load_digits_base()
    if base == "mnist":
        return load_mnist_unit(data_root, params)
    if base == "fashion_mnist":
        return unit_range(load_fashion_mnist(data_root, params["download"], params["verify_checksums"]))
    raise ValueError(f"dataset parameter base={base!r}: allowed {list(GRAY_BASES)}")
