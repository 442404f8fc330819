"""Large natural datasets (CelebA, Waterbirds, ImageNet) as lazy indices of image files: their kind records.

Readers, one module per set with its expected layout under ``data_root``:
:mod:`largelr.datasets.celeba`, :mod:`largelr.datasets.waterbirds`, :mod:`largelr.datasets.imagenet`.
The lazy dataset dict they return, their shared checks and the reading of its images:
:mod:`largelr.datasets.lazy`.

The splits are the official ones, so ``seed`` is only recorded in ``params``.

Checks: missing files or folders raise :class:`largelr.datasets.bases.DataMissingError`
(``missing_celeba`` etc. give the same message from file existence alone, for workflow parse
time); malformed files raise ``ValueError`` naming the file.
"""

from __future__ import annotations

from largelr.datasets.celeba import CELEBA_PARAMS, build_celeba, missing_celeba
from largelr.datasets.imagenet import IMAGENET_PARAMS, build_imagenet, missing_imagenet
from largelr.datasets.kind import Kind
from largelr.datasets.waterbirds import WATERBIRDS_PARAMS, build_waterbirds, missing_waterbirds

KINDS = (
    Kind("celeba", "CelebA faces: y = target_attribute (Male), b = spurious_attribute (Blond_Hair), official splits "
         "(lazy)",
         CELEBA_PARAMS, build_celeba, missing_celeba, worst_group=True),
    Kind("waterbirds", "Waterbirds: y = bird type, b = place, metadata.csv splits (lazy)",
         WATERBIRDS_PARAMS, build_waterbirds, missing_waterbirds, worst_group=True),
    Kind("imagenet", "ImageNet ImageFolder trees, b = y (lazy)", IMAGENET_PARAMS, build_imagenet, missing_imagenet),
)
