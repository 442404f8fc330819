"""Large natural datasets (CelebA, Waterbirds, ImageNet) as lazy indices of image files.

Readers, one module per set with its expected layout under ``data_root``:
:mod:`largelr.datasets.celeba`, :mod:`largelr.datasets.waterbirds`, :mod:`largelr.datasets.imagenet`;
their kind records are in :mod:`largelr.registry.kinds`. The lazy dataset dict they return, their
shared checks and the reading of its images: :mod:`largelr.datasets.lazy`.

The splits are the official ones, so ``seed`` is only recorded in ``params``.

Checks: missing files or folders raise :class:`largelr.datasets.bases.DataMissingError`
(:mod:`largelr.data_files` gives the same message from file existence alone, for workflow parse
time); malformed files raise ``ValueError`` naming the file.
"""

from __future__ import annotations

from largelr.datasets.celeba import build_celeba
from largelr.datasets.imagenet import build_imagenet
from largelr.datasets.waterbirds import build_waterbirds

__all__ = [
    "build_celeba",
    "build_imagenet",
    "build_waterbirds",
]
