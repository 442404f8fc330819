"""CelebA (Liu et al. 2015) as a lazy index of its aligned images (see :mod:`largelr.datasets.lazy`).

Expected layout under ``data_root`` (torchvision's / the original release's):
``celeba/list_attr_celeba.txt``, ``celeba/list_eval_partition.txt``,
``celeba/img_align_celeba/<filename>``. The txt files are parsed here rather than by
``torchvision.datasets.CelebA``, which insists on the official md5s. y is ``target_attribute`` and
b ``spurious_attribute``; the defaults follow the paper ("the spurious and core features are the
hair color and gender, respectively"): y = ``Male``, b = ``Blond_Hair``. The common benchmark
swaps them (y = Blond_Hair, b = Male). The splits are the official ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from largelr.checks import defaults
from largelr.data_files import CELEBA_ATTRIBUTES, CELEBA_FOLDER, CELEBA_IMAGES, CELEBA_PARTITION, missing_celeba
from largelr.datasets.lazy import (
    SPLIT_CODES,
    assemble_lazy,
    check_codes,
    check_some_images,
    check_unique,
    raise_if_missing,
    read_table,
    splits_by_code,
)
from largelr.registry.kinds import CELEBA_PARAMS

# The paper: "the spurious and core features are the hair color and gender, respectively". The
# common benchmark's roles (target Blond_Hair, spurious Male) are a config entry away.


def read_celeba_attributes(path: Path) -> tuple[list[str], pd.DataFrame]:
    """Attribute names and a frame (filename column 0, then one ±1 column per attribute)."""
    with open(path) as handle:
        declared, names = handle.readline().strip(), handle.readline().split()
    if not declared.isdigit():
        raise ValueError(f"{path}: first line must be the image count, found {declared!r}")
    table = read_table(path, sep=r"\s+", skiprows=2, header=None, dtype={0: str})
    if table.shape[1] != len(names) + 1 or table.isna().any().any():
        raise ValueError(
            f"{path}: rows must hold a filename and {len(names)} values (one per attribute on line 2), "
            f"found {table.shape[1]} columns or short rows"
        )
    if len(table) != int(declared):
        raise ValueError(f"{path}: first line declares {declared} images, the file lists {len(table)}")
    check_unique(table[0], path)
    values = table.iloc[:, 1:]
    if not values.isin([1, -1]).all().all():
        raise ValueError(f"{path}: attribute values must be 1 or -1")
    return names, table


def read_celeba_partition(path: Path, filenames: pd.Series) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) of each of ``filenames``."""
    table = read_table(path, sep=r"\s+", header=None, dtype={0: str})
    if table.shape[1] != 2:
        raise ValueError(f"{path}: rows must be 'filename split', found {table.shape[1]} columns")
    check_unique(table[0], path)
    codes = table.set_index(0)[1].reindex(filenames.to_numpy())
    if codes.isna().any():
        raise ValueError(f"{path}: no split for {codes.index[codes.isna()][0]!r} (listed in {CELEBA_ATTRIBUTES})")
    return check_codes(codes.reset_index(drop=True), set(SPLIT_CODES), "split", path)


def attribute_column(names: list[str], attribute: str, path: Path) -> int:
    """Column of ``attribute`` in the attribute table (column 0 holds filenames)."""
    if attribute not in names:
        raise ValueError(f"unknown CelebA attribute {attribute!r} (from {path}); available: {', '.join(names)}")
    return names.index(attribute) + 1


def build_celeba(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """y = target attribute present, b = spurious attribute present, official splits."""
    params = {**defaults(CELEBA_PARAMS), **params}
    directory = Path(data_root).expanduser().resolve() / CELEBA_FOLDER
    raise_if_missing(missing_celeba(params, data_root))
    attributes_path = directory / CELEBA_ATTRIBUTES
    names, table = read_celeba_attributes(attributes_path)
    y = (table[attribute_column(names, params["target_attribute"], attributes_path)] == 1).to_numpy(dtype=np.int64)
    b = (table[attribute_column(names, params["spurious_attribute"], attributes_path)] == 1).to_numpy(dtype=np.int64)
    codes = read_celeba_partition(directory / CELEBA_PARTITION, table[0])
    images = directory / CELEBA_IMAGES
    splits = splits_by_code(table[0].tolist(), y, b, codes)
    for split in splits.values():
        check_some_images(images, split["paths"], attributes_path)
    return assemble_lazy("celeba", splits, 2, 2, images, params, seed)
