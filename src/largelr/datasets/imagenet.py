"""ImageNet (ILSVRC-2012) as a lazy index of ImageFolder trees (see :mod:`largelr.datasets.lazy`).

Expected layout under ``data_root``: ``imagenet/{train,val}/<wnid>/<image>``; ``val`` must
already be sorted into class folders (as ``torchvision.datasets.ImageNet`` prepares it). The
official val set serves as the test split; b = y (ImageNet has no known bias label).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from largelr.checks import defaults
from largelr.data_files import IMAGENET_ADVICE, IMAGENET_FOLDER, missing_imagenet
from largelr.datasets.bases import DataMissingError
from largelr.datasets.lazy import LazySplit, assemble_lazy, lazy_split, raise_if_missing
from largelr.registry.kinds import IMAGENET_PARAMS


def class_folders(directory: Path) -> tuple[list[str], dict[str, int]]:
    """Sorted class folder names and their indices, as ImageFolder discovers them."""
    try:
        from torchvision.datasets.folder import find_classes  # imported on use: slow import

        return find_classes(directory)
    except FileNotFoundError as error:  # find_classes' error for a folder without subfolders
        raise DataMissingError(f"ImageNet not found: {directory} has no class folders. {IMAGENET_ADVICE}") from error


def image_folder_split(root: Path, split: str, class_to_idx: dict[str, int]) -> LazySplit:
    """Paths (relative to root) and labels of ``root/split``; b = y (ImageNet has no known bias label)."""
    directory = root / split
    try:
        from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

        samples = make_dataset(directory, class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as error:  # make_dataset's error for a class folder without images
        raise ValueError(f"{directory}: {error}") from error
    labels = np.array([label for _, label in samples], dtype=np.int64)
    return lazy_split([Path(path).relative_to(root).as_posix() for path, _ in samples], labels, labels)


def build_imagenet(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """Classes = sorted train class folders; the official val set serves as the test split."""
    params = {**defaults(IMAGENET_PARAMS), **params}
    root = Path(data_root).expanduser().resolve() / IMAGENET_FOLDER
    raise_if_missing(missing_imagenet(params, data_root))
    classes, class_to_idx = class_folders(root / "train")
    val_classes, _ = class_folders(root / "val")
    if val_classes != classes:
        raise ValueError(
            f"{root / 'val'}: class folders differ from {root / 'train'} ({len(val_classes)} vs {len(classes)} classes)"
        )
    splits = {
        "train": image_folder_split(root, "train", class_to_idx),
        "test": image_folder_split(root, "val", class_to_idx),
    }
    return assemble_lazy("imagenet", splits, len(classes), len(classes), root, params, seed)
