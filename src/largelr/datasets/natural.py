"""Large natural datasets (CelebA, Waterbirds, ImageNet) as lazy indices of image files.

These sets are too large to hold as one tensor, so a builder returns the usual dataset dict
(see :mod:`largelr.datasets.kind`) whose splits hold relative image paths instead of ``x``:
``{"paths": list[str], "y": int64, "b": int64}``, plus top-level ``lazy=True``, ``root``
(absolute image root the paths are relative to), ``image_size`` and ``normalization``
(ImageNet mean/std); each split also holds the group id ``g = y * num_bias + b``. Only str
lists, tensors and python scalars are stored, so the dict round-trips through
``torch.save``/``torch.load(weights_only=True)``. :class:`LazyImageDataset` reads one split's
images on demand: decoded by torchvision.io (PIL for formats it does not read), resized and
cropped on tensors.

Expected layouts under ``data_root`` (torchvision's / the original releases'):

* CelebA: ``celeba/list_attr_celeba.txt``, ``celeba/list_eval_partition.txt``,
  ``celeba/img_align_celeba/<filename>``. The txt files are parsed here rather than by
  ``torchvision.datasets.CelebA``, which insists on the official md5s. y is
  ``target_attribute`` and b ``spurious_attribute``; the defaults follow the paper ("the
  spurious and core features are the hair color and gender, respectively"): y = ``Male``,
  b = ``Blond_Hair``. The common benchmark swaps them (y = Blond_Hair, b = Male).
* Waterbirds (group-DRO release): ``<folder>/metadata.csv`` with columns ``img_filename, y,
  split, place`` and images at ``<folder>/<img_filename>``; ``folder`` is a parameter.
* ImageNet: ``imagenet/{train,val}/<wnid>/<image>``, i.e. ``ImageFolder`` trees; ``val`` must
  already be sorted into class folders (as ``torchvision.datasets.ImageNet`` prepares it).

The splits are the official ones, so ``seed`` is only recorded in ``params``.

Checks: missing files or folders raise :class:`DataMissingError` (``missing_celeba`` etc. give
the same message from file existence alone, for workflow parse time); malformed files raise
``ValueError`` naming the file. Listed images are checked for existence only at
``IMAGES_CHECKED`` evenly spaced positions per split: stat-ing ~200k files on a network disk
takes minutes, and a partial copy almost always misses whole ranges, which the spread catches.
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

from largelr.checks import defaults
from largelr.datasets.bases import DataMissingError, missing_paths_message
from largelr.registry.kinds import CELEBA_PARAMS, IMAGENET_PARAMS, WATERBIRDS_PARAMS

IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# Known and accepted: see decode_rgb.
TORCHVISION_IO_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"
IMAGES_CHECKED = 5  # per split; see the module docstring
SPLIT_CODES = {0: "train", 1: "val", 2: "test"}  # CelebA partition and Waterbirds split codes

CELEBA_FOLDER = "celeba"
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_IMAGES = "img_align_celeba"
WATERBIRDS_METADATA = "metadata.csv"
WATERBIRDS_COLUMNS = ("img_filename", "y", "split", "place")
IMAGENET_FOLDER = "imagenet"


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


def no_download(dataset: str, params: dict[str, Any], message: str | None) -> str | None:
    """``message``, completed with why ``download: true`` cannot help, when it is set."""
    if not params.get("download"):
        return message
    refusal = (f"{dataset} cannot be downloaded by this pipeline (its release needs a manual download or "
               f"accepting terms of use); set `download: false` and place the files as described.")
    return f"{message} {refusal}" if message else None


def lazy_split(paths: list[str], y: np.ndarray, b: np.ndarray) -> LazySplit:
    return {"paths": list(paths), "y": torch.as_tensor(y, dtype=torch.int64), "b": torch.as_tensor(b, dtype=torch.int64)}


def splits_by_code(paths: list[str], y: np.ndarray, b: np.ndarray, codes: np.ndarray) -> dict[str, LazySplit]:
    """One lazy split per split code (0 train, 1 val, 2 test), keeping the listing order."""
    return {
        name: lazy_split([paths[i] for i in np.flatnonzero(codes == code)], y[codes == code], b[codes == code])
        for code, name in SPLIT_CODES.items()
    }


def assemble_lazy(name: str, splits: dict[str, LazySplit], num_classes: int, num_bias: int, root: Path,
                  params: dict[str, Any], seed: int) -> dict[str, Any]:
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


# --- CelebA -------------------------------------------------------------------------------


def read_celeba_attributes(path: Path) -> tuple[list[str], pd.DataFrame]:
    """Attribute names and a frame (filename column 0, then one ±1 column per attribute)."""
    with open(path) as handle:
        declared, names = handle.readline().strip(), handle.readline().split()
    if not declared.isdigit():
        raise ValueError(f"{path}: first line must be the image count, found {declared!r}")
    table = read_table(path, sep=r"\s+", skiprows=2, header=None, dtype={0: str})
    if table.shape[1] != len(names) + 1 or table.isna().any().any():
        raise ValueError(f"{path}: rows must hold a filename and {len(names)} values (one per attribute on line 2), "
                         f"found {table.shape[1]} columns or short rows")
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


def missing_celeba(params: dict[str, Any], data_root: str | Path) -> str | None:
    """None if CelebA's listings and image folder exist under data_root, else what to put where."""
    directory = Path(data_root).expanduser().resolve() / CELEBA_FOLDER
    return no_download("CelebA", params, missing_paths_message(
        "CelebA", directory, [CELEBA_ATTRIBUTES, CELEBA_PARTITION, f"{CELEBA_IMAGES}/"],
        f"Place the official CelebA files there ({CELEBA_ATTRIBUTES}, {CELEBA_PARTITION}, "
        f"and the aligned JPEGs in {CELEBA_IMAGES}/)."))


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


# --- Waterbirds ---------------------------------------------------------------------------


def missing_waterbirds(params: dict[str, Any], data_root: str | Path) -> str | None:
    """None if the Waterbirds metadata.csv exists under data_root/folder, else what to put where."""
    directory = Path(data_root).expanduser().resolve() / params["folder"]
    return no_download("Waterbirds", params, missing_paths_message(
        "Waterbirds", directory, [WATERBIRDS_METADATA],
        f"Place the group-DRO Waterbirds release there ({WATERBIRDS_METADATA} and the image "
        f"folders it lists), or set the dataset's `folder` parameter to the folder that holds it."))


def build_waterbirds(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """y = bird type (0 land, 1 water), b = place (0 land, 1 water), splits from metadata.csv."""
    params = {**defaults(WATERBIRDS_PARAMS), **params}
    directory = Path(data_root).expanduser().resolve() / params["folder"]
    raise_if_missing(missing_waterbirds(params, data_root))
    path = directory / WATERBIRDS_METADATA
    table = read_table(path, dtype={"img_filename": str})
    missing = [column for column in WATERBIRDS_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; required: {', '.join(WATERBIRDS_COLUMNS)}")
    check_unique(table["img_filename"], path)
    y = check_codes(table["y"], {0, 1}, "y", path)
    b = check_codes(table["place"], {0, 1}, "place", path)
    codes = check_codes(table["split"], set(SPLIT_CODES), "split", path)
    splits = splits_by_code(table["img_filename"].tolist(), y, b, codes)
    for split in splits.values():
        check_some_images(directory, split["paths"], path)
    return assemble_lazy("waterbirds", splits, 2, 2, directory, params, seed)


# --- ImageNet -----------------------------------------------------------------------------


IMAGENET_ADVICE = ("Place the ILSVRC-2012 train and val images there, one folder per class (wnid) in each, "
                   "as torchvision.datasets.ImageNet prepares them.")


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


def missing_imagenet(params: dict[str, Any], data_root: str | Path) -> str | None:
    """None if imagenet/train/ and imagenet/val/ exist under data_root, else what to put where."""
    return no_download("ImageNet", params, missing_paths_message(
        "ImageNet", Path(data_root).expanduser().resolve() / IMAGENET_FOLDER, ["train/", "val/"], IMAGENET_ADVICE))


def build_imagenet(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """Classes = sorted train class folders; the official val set serves as the test split."""
    params = {**defaults(IMAGENET_PARAMS), **params}
    root = Path(data_root).expanduser().resolve() / IMAGENET_FOLDER
    raise_if_missing(missing_imagenet(params, data_root))
    classes, class_to_idx = class_folders(root / "train")
    val_classes, _ = class_folders(root / "val")
    if val_classes != classes:
        raise ValueError(f"{root / 'val'}: class folders differ from {root / 'train'} "
                         f"({len(val_classes)} vs {len(classes)} classes)")
    splits = {"train": image_folder_split(root, "train", class_to_idx), "test": image_folder_split(root, "val", class_to_idx)}
    return assemble_lazy("imagenet", splits, len(classes), len(classes), root, params, seed)


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
