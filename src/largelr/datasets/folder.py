"""Your own dataset without code: a folder of images plus a CSV (the Waterbirds metadata shape).

``<data_root>/<folder>/<metadata>`` (default ``metadata.csv``) lists one image per row:

* ``path``: the image file, relative to ``<data_root>/<folder>`` (any format PIL reads);
* ``y``: the class label, integers 0..C-1;
* ``b`` (optional): the spurious (bias) label, integers 0..B-1; absent, b = y (no known bias);
* ``split``: ``train``, ``val`` or ``test`` (or the codes 0, 1, 2 of Waterbirds' metadata).

Images are read once into memory, converted to RGB (or gray with ``grayscale: true``), resized
(bilinear, antialiased) and centre-cropped to ``image_size``, as floats in [0, 1]; a set too
large for memory belongs in a lazy kind (:mod:`largelr.datasets.natural`).

Traits come from the CSV: a ``b`` column that differs from ``y`` somewhere defines groups, and
then the dataset reports worst-group accuracy (``worst_group``), as the paper does for its
natural sets with groups (CelebA, Waterbirds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from largelr.data_files import missing_folder
from largelr.datasets.bases import DataMissingError
from largelr.datasets.kind import assemble
from largelr.datasets.lazy import check_unique, decode_rgb_pil, read_table

SPLIT_NAMES = {"train": "train", "val": "val", "test": "test", "0": "train", "1": "val", "2": "test"}
REQUIRED_COLUMNS = ("path", "y", "split")


def label_column(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Non-negative integer labels, or ValueError naming the file, column and first bad value."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() | (values < 0) | (values != values.round())
    if bad.any():
        raise ValueError(f"{path}: column {column!r} must hold integers >= 0, found {table[column][bad].iloc[0]!r}")
    return values.to_numpy(dtype=np.int64)


def read_metadata(path: Path) -> pd.DataFrame:
    table = read_table(path, dtype={"path": str, "split": str})
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; required: path, y, split (b optional)")
    check_unique(table["path"], path)
    unknown = ~table["split"].str.strip().isin(list(SPLIT_NAMES))
    if unknown.any():
        raise ValueError(
            f"{path}: split must be train, val or test (or 0, 1, 2), found {table['split'][unknown].iloc[0]!r}"
        )
    table["split"] = table["split"].str.strip().map(SPLIT_NAMES)
    for split in ("train", "test"):
        if not (table["split"] == split).any():
            raise ValueError(f"{path}: no {split} rows; a folder dataset needs train and test images")
    return table


def read_image(path: Path, size: int, grayscale: bool) -> torch.Tensor:
    """[C, size, size] float in [0, 1]: shorter side resized to size, centre crop."""
    import torchvision.transforms.functional as TF  # imported on use: slow import

    if not path.is_file():
        raise DataMissingError(f"folder dataset: image {path} is listed in the CSV but does not exist")
    pixels = decode_rgb_pil(path).float() / 255
    if grayscale:
        pixels = pixels.mean(dim=0, keepdim=True)
    return TF.center_crop(TF.resize(pixels, size, antialias=True), size).clamp(0.0, 1.0)


def build_folder(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """Images and labels from the CSV, the CSV's splits; ``seed`` is only recorded."""
    message = missing_folder(params, Path(data_root))
    if message is not None:
        raise DataMissingError(message)
    directory = Path(data_root).absolute() / params["folder"]
    csv = directory / params["metadata"]
    table = read_metadata(csv)
    y = label_column(table, "y", csv)
    b = label_column(table, "b", csv) if "b" in table.columns else y.copy()
    images = torch.stack(
        [read_image(directory / name, params["image_size"], params["grayscale"]) for name in table["path"]]
    )
    splits = {
        split: {"x": images[torch.from_numpy(mask)], "y": torch.from_numpy(y[mask]), "b": torch.from_numpy(b[mask])}
        for split in ("train", "val", "test")
        if (mask := np.array(table["split"] == split)).any()
    }
    num_classes, num_bias = int(y.max()) + 1, int(b.max()) + 1
    dataset = assemble(
        params["folder"], splits["train"], splits["test"], num_classes, num_bias, None, None, params, seed
    )
    if "val" in splits:
        dataset["val"] = {**splits["val"], "g": splits["val"]["y"] * num_bias + splits["val"]["b"]}
    # Groups exist when the CSV's bias label is not the class label: report the worst group then.
    dataset["traits"] = {"worst_group": bool((y != b).any())}
    return dataset
