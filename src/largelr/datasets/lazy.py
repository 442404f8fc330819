"""Lazy datasets: splits that hold relative image paths instead of tensors, and reading their images.

The natural sets (:mod:`largelr.datasets.natural`) are too large to hold as one tensor, so a
builder returns the usual dataset dict (see :mod:`largelr.datasets.kind`) whose splits hold
relative image paths instead of ``x``: ``{"paths": list[str], "y": int64, "b": int64}``, plus
top-level ``lazy=True``, ``root`` (absolute image root the paths are relative to), ``image_size``
and ``normalization`` (ImageNet mean/std); each split also holds the group id
``g = y * num_bias + b``. Only str lists, tensors and python scalars are stored, so the dict
round-trips through ``torch.save``/``torch.load(weights_only=True)``. :class:`LazyImageDataset`
reads one split's images on demand: decoded by torchvision.io (PIL for formats it does not read),
resized and cropped on tensors.

Shared checks of the readers: malformed listings raise ``ValueError`` naming the file; listed
images are checked for existence only at ``IMAGES_CHECKED`` evenly spaced positions per split:
stat-ing ~200k files on a network disk takes minutes, and a partial copy almost always misses
whole ranges, which the spread catches.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from largelr.datasets.bases import DataMissingError
from largelr.registry.kinds import IMAGE_SIZE, NO_DOWNLOAD  # noqa: F401  (the readers' shared settings)

IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# Known and accepted: see decode_rgb.
TORCHVISION_IO_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"
IMAGES_CHECKED = 5  # per split; see the module docstring
SPLIT_CODES = {0: "train", 1: "val", 2: "test"}  # CelebA partition and Waterbirds split codes


LazySplit = dict[str, Any]


# --- shared helpers -----------------------------------------------------------------------


def read_table(path: Path, **options: Any) -> pd.DataFrame:
    """pandas.read_csv, with parse failures (ragged rows, empty file) reported as ValueError naming the file."""
    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path}: not a well-formed table: {error}") from error


def check_some_images(root: Path, paths: list[str], listing: Path) -> None:
    """ValueError if any of IMAGES_CHECKED evenly spaced listed images is absent under root."""
    if not paths:
        return
    positions = np.unique(np.linspace(0, len(paths) - 1, IMAGES_CHECKED).round().astype(int))
    for position in positions:
        if not (root / paths[position]).is_file():
            raise ValueError(
                f"{listing} lists {paths[position]!r}, but {root / paths[position]} does not exist "
                f"(checked {len(positions)} of {len(paths)} listed images); the image folder is incomplete"
            )


def check_codes(values: pd.Series, allowed: set[int], what: str, path: Path) -> np.ndarray:
    """The values as int64, or ValueError naming the file if any is not in ``allowed``."""
    numeric = pd.to_numeric(values, errors="coerce")
    bad = ~numeric.isin(list(allowed))
    if bad.any():
        raise ValueError(f"{path}: {what} must be one of {sorted(allowed)}, found {values[bad].iloc[0]!r}")
    return numeric.to_numpy(dtype=np.int64)


def check_unique(names: pd.Series, path: Path) -> None:
    duplicated = names[names.duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: image {duplicated.iloc[0]!r} is listed more than once")


def raise_if_missing(message: str | None) -> None:
    if message is not None:
        raise DataMissingError(message)


def lazy_split(paths: list[str], y: np.ndarray, b: np.ndarray) -> LazySplit:
    return {
        "paths": list(paths),
        "y": torch.as_tensor(y, dtype=torch.int64),
        "b": torch.as_tensor(b, dtype=torch.int64),
    }


def splits_by_code(paths: list[str], y: np.ndarray, b: np.ndarray, codes: np.ndarray) -> dict[str, LazySplit]:
    """One lazy split per split code (0 train, 1 val, 2 test), keeping the listing order."""
    return {
        name: lazy_split([paths[i] for i in np.flatnonzero(codes == code)], y[codes == code], b[codes == code])
        for code, name in SPLIT_CODES.items()
    }


def assemble_lazy(
    name: str,
    splits: dict[str, LazySplit],
    num_classes: int,
    num_bias: int,
    root: Path,
    params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """The dataset dict of :mod:`largelr.datasets.kind`, with lazy splits and the fields to read them."""
    size = params["image_size"]
    rhos = {f"realized_rho_{split}": (part["y"] != part["b"]).double().mean().item() for split, part in splits.items()}
    # Group id per sample, y * num_bias + b, as for the in-memory sets.
    splits = {split: {**part, "g": part["y"] * num_bias + part["b"]} for split, part in splits.items()}
    return {
        "name": name,
        **splits,
        "num_classes": num_classes,
        "num_bias": num_bias,
        "input_shape": [3, size, size],
        "spurious_mask": None,  # the spurious feature is not at a fixed place in natural images
        "core_mask": None,
        "noise_mask": None,
        "params": {**params, "seed": seed, **rhos},
        "lazy": True,
        "root": str(root),
        "image_size": size,
        "normalization": {key: list(values) for key, values in IMAGENET_NORMALIZATION.items()},
    }


def group_counts(y: torch.Tensor, b: torch.Tensor, num_bias: int) -> dict[str, int]:
    """Sample count of every non-empty (y, b) group, keyed "y=..,b=..", in (y, b) order.

    Empty groups are left out so that class-labelled sets (b = y, e.g. 1000 ImageNet classes)
    do not list num_classes * num_bias zeros.
    """
    ids, counts = torch.unique(y * num_bias + b, return_counts=True)
    return {f"y={i // num_bias},b={i % num_bias}": int(n) for i, n in zip(ids.tolist(), counts.tolist())}


# --- reading images -----------------------------------------------------------------------


def decode_rgb_pil(path: Path) -> torch.Tensor:
    """uint8 [3, H, W] RGB via PIL, which reads every format (BMP, TIFF, CMYK JPEG, palette PNG ...)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


def decode_rgb(path: Path) -> torch.Tensor:
    """uint8 [3, H, W] RGB: torchvision.io's decoders on the file bytes (JPEG, PNG, GIF, WebP), PIL otherwise.

    With resizing on tensors it reads 1.06-1.16x as many JPEGs per second as PIL decoding and
    resizing (``python benchmarks/data_build.py`` measures both); both decode JPEG with libjpeg,
    and grayscale files become RGB by replicating the gray channel in either. torchvision 0.29 deprecates
    its image decoders in favour of TorchCodec; if a later torchvision drops them, PIL takes over.
    """
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file  # imported on use: slow import
    except ImportError:
        return decode_rgb_pil(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TORCHVISION_IO_DEPRECATION, category=DeprecationWarning)
            return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except RuntimeError:  # a format or colour space torchvision.io does not decode
        return decode_rgb_pil(path)


def resize_and_normalize(pixels: torch.Tensor, image_size: int, normalization: dict[str, list[float]]) -> torch.Tensor:
    """uint8 [3, H, W] -> shorter side image_size (bilinear, antialiased like PIL), centre crop, normalized float32."""
    import torchvision.transforms.functional as TF  # imported on use: slow import

    cropped = TF.center_crop(TF.resize(pixels, image_size, antialias=True), image_size)
    return TF.normalize(cropped.float() / 255, normalization["mean"], normalization["std"])


def load_image(path: Path, image_size: int, normalization: dict[str, list[float]]) -> torch.Tensor:
    """RGB image, shorter side resized to image_size (bilinear), centre-cropped, normalized: [3, S, S]."""
    return resize_and_normalize(decode_rgb(path), image_size, normalization)


class LazyImageDataset(Dataset):
    """One split of a lazy dataset dict; items are (x [3, S, S] normalized, y, b)."""

    def __init__(self, dataset: dict[str, Any], split: str) -> None:
        self.root = Path(dataset["root"])
        self.paths: list[str] = dataset[split]["paths"]
        self.y: torch.Tensor = dataset[split]["y"]
        self.b: torch.Tensor = dataset[split]["b"]
        self.image_size: int = dataset["image_size"]
        self.normalization: dict[str, list[float]] = dataset["normalization"]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = load_image(self.root / self.paths[index], self.image_size, self.normalization)
        return x, self.y[index], self.b[index]
