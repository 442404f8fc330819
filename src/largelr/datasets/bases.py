"""Base image sets: readers of torchvision's on-disk formats under a data root, and the
bundled scikit-learn digits.

Each reader returns ``(x_train, y_train, x_test, y_test)``: uint8 images ``[N, C, H, W]``
and int64 labels. Files are checked for structure (header, keys, shapes, dtypes, label range)
before use; anything missing or malformed raises :class:`DataMissingError` naming the file,
what is wrong and how to obtain the right one. Nothing is downloaded unless ``download`` is
true and files are missing, in which case torchvision's own download (which verifies the
archives' md5) is used and announced on stderr; a failed download is a DataMissingError too.
``largelr.data_files`` holds the layouts and the existence-only checks run at workflow parse time.

Layouts:

* MNIST: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed idx
  files, big-endian; read by ``torchvision.datasets.MNIST``).
* CIFAR-10: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}``; CIFAR-100:
  ``<root>/cifar-100-python/{train,test}`` (python pickles of ``{b"data": uint8 [N, 3072]
  row-major RGB 32x32, b"labels" | b"fine_labels": list of int}``).

``verify_checksums``: for CIFAR, each file's md5 must match the official release (as listed by
torchvision). torchvision lists MNIST md5s only for the compressed archives, not for the raw
files it reads, so for MNIST the check is instead that the files hold the official sample
counts (60000 train, 10000 test) of 28x28 images.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from largelr.data_files import CIFAR_LAYOUTS, MNIST_FILES, how_to_obtain, missing_cifar, missing_mnist


def torchvision_datasets():
    """torchvision.datasets, imported on use: it costs about a second per process."""
    import torchvision.datasets

    return torchvision.datasets


Base = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

MNIST_IMAGES_MAGIC = 2051  # idx: unsigned bytes, 3 dimensions
MNIST_LABELS_MAGIC = 2049  # idx: unsigned bytes, 1 dimension
MNIST_OFFICIAL_COUNTS = {"train": 60000, "test": 10000}
MNIST_SIZE = 28

CIFAR_SIZE = 32
CIFAR_PIXELS = 3 * CIFAR_SIZE * CIFAR_SIZE


class DataMissingError(FileNotFoundError):
    """A base dataset is absent, laid out wrongly or corrupt; the message says how to fix it."""


def announce_download(dataset: str, directory: Path) -> None:
    """Downloads are never silent: say what is fetched and where it goes."""
    print(f"downloading {dataset} into {directory} (the dataset sets `download: true`)", file=sys.stderr, flush=True)


@contextlib.contextmanager
def download_errors_explained(dataset: str, directory: Path) -> Iterator[None]:
    """Turn a failed download (no network, bad archive) into DataMissingError with the manual route."""
    try:
        yield
    except (OSError, RuntimeError) as error:  # URLError is an OSError; torchvision raises RuntimeError on bad md5
        raise DataMissingError(
            f"downloading {dataset} into {directory} failed ({type(error).__name__}: {error}). Copy the files of "
            f"torchvision's {dataset} release (extracted) into {directory} instead, then rerun."
        ) from error


def corrupt_file(dataset: str, path: Path, problem: str) -> DataMissingError:
    return DataMissingError(
        f"{dataset} file {path} is corrupt or not in the expected format: {problem}. "
        f"Replace it. {how_to_obtain(dataset, path.parent)}"
    )


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(dataset: str, path: Path, expected: str) -> None:
    actual = md5_of(path)
    if actual != expected:
        raise DataMissingError(
            f"{dataset} file {path} has md5 {actual}, but the official release's is {expected}: the file is "
            f"corrupt or not the official one. Replace it ({how_to_obtain(dataset, path.parent)}), or set "
            f"`verify_checksums: false` for this dataset in config.yaml to use it anyway."
        )


# --- MNIST ---------------------------------------------------------------------------------


def idx_shape(dataset: str, path: Path, magic: int, ndim: int) -> tuple[int, ...]:
    """Dimensions from an idx header, checked against the file's magic number and size."""
    with open(path, "rb") as handle:
        header = handle.read(4 * (ndim + 1))
    if len(header) < 4 * (ndim + 1):
        raise corrupt_file(dataset, path, f"only {len(header)} bytes, shorter than the idx header")
    found_magic, *shape = np.frombuffer(header, dtype=">u4").tolist()
    if found_magic != magic:
        raise corrupt_file(dataset, path, f"idx magic number {found_magic}, expected {magic}")
    expected_size = len(header) + int(np.prod(shape))
    if path.stat().st_size != expected_size:
        raise corrupt_file(
            dataset, path, f"{path.stat().st_size} bytes, but its header {shape} implies {expected_size}"
        )
    return tuple(shape)


def check_mnist_split(raw: Path, split: str, verify_checksums: bool) -> None:
    images_name, labels_name = MNIST_FILES[split]
    images_shape = idx_shape("MNIST", raw / images_name, MNIST_IMAGES_MAGIC, 3)
    (n_labels,) = idx_shape("MNIST", raw / labels_name, MNIST_LABELS_MAGIC, 1)
    if images_shape[0] != n_labels:
        raise corrupt_file(
            "MNIST", raw / labels_name, f"{n_labels} labels for {images_shape[0]} images in {images_name}"
        )
    official = (MNIST_OFFICIAL_COUNTS[split], MNIST_SIZE, MNIST_SIZE)
    if verify_checksums and images_shape != official:
        raise DataMissingError(
            f"MNIST file {raw / images_name} holds images of shape {list(images_shape)}, but the official release's "
            f"are {list(official)}. Replace it ({how_to_obtain('MNIST', raw)}), or set `verify_checksums: false` "
            f"for this dataset in config.yaml to use it anyway."
        )


def load_mnist_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = torchvision_datasets().MNIST(root=str(root), train=split == "train", download=False)
    labels = dataset.targets.long()
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) <= 9:
        raise corrupt_file("MNIST", root / "MNIST" / "raw" / MNIST_FILES[split][1], "labels outside 0..9")
    return dataset.data[:, None], labels


def load_mnist(data_root: str | Path, download: bool = False, verify_checksums: bool = True) -> Base:
    """MNIST train/test as uint8 ``[N, 1, 28, 28]`` images and int64 labels."""
    root = Path(data_root).absolute()
    raw = root / "MNIST" / "raw"
    if download and missing_mnist(root) is not None:
        announce_download("MNIST", raw)
        with download_errors_explained("MNIST", raw):
            torchvision_datasets().MNIST(root=str(root), train=True, download=True)
    message = missing_mnist(root)
    if message is not None:
        raise DataMissingError(message)
    for split in ("train", "test"):
        check_mnist_split(raw, split, verify_checksums)
    return (*load_mnist_split(root, "train"), *load_mnist_split(root, "test"))


# --- CIFAR ---------------------------------------------------------------------------------


def unpickle_batch(dataset: str, path: Path) -> dict[str, Any]:
    """The batch dict with str keys (the official files were pickled by Python 2)."""
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")
    except Exception as error:  # any failure to unpickle means the file is damaged
        raise corrupt_file(dataset, path, f"cannot be unpickled ({type(error).__name__}: {error})") from error
    if not isinstance(batch, dict):
        raise corrupt_file(dataset, path, f"holds a {type(batch).__name__}, expected a dict")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}


def read_cifar_batch(dataset: str, path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 3, 32, 32] uint8 and labels [N] of one pickled batch, structure checked."""
    batch = unpickle_batch(dataset, path)
    for key in ("data", label_key):
        if key not in batch:
            raise corrupt_file(dataset, path, f"no {key!r} entry (has {sorted(map(str, batch))})")
    data, labels = batch["data"], np.asarray(batch[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        described = (
            f"{data.dtype} array of shape {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        )
        raise corrupt_file(dataset, path, f"'data' is a {described}, expected uint8 [N, {CIFAR_PIXELS}]")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise corrupt_file(
            dataset,
            path,
            f"{label_key!r} has shape {list(labels.shape)} ({labels.dtype}), expected {len(data)} integers",
        )
    if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
        raise corrupt_file(dataset, path, f"{label_key!r} outside 0..{num_classes - 1}")
    # Rows are the red, green and blue 32x32 planes in turn.
    return data.reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE), labels.astype(np.int64)


def read_cifar_files(
    dataset: str, directory: Path, names: list[str], layout: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    batches = [
        read_cifar_batch(dataset, directory / name, layout["label_key"], layout["num_classes"]) for name in names
    ]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return torch.from_numpy(images), torch.from_numpy(labels)


def download_cifar(dataset: str, root: Path) -> None:
    """torchvision's download of the official archive (md5-checked) into root, extracted there.

    The archive is fetched with torchvision.datasets.utils.download_and_extract_archive rather than
    the CIFAR classes, which re-check every extracted file's md5 and so cannot be tested offline.
    """
    from torchvision.datasets import utils  # imported on use: slow import

    release = getattr(torchvision_datasets(), CIFAR_LAYOUTS[dataset]["torchvision_class"])
    announce_download(dataset, root / CIFAR_LAYOUTS[dataset]["folder"])
    with download_errors_explained(dataset, root / CIFAR_LAYOUTS[dataset]["folder"]):
        utils.download_and_extract_archive(release.url, str(root), filename=release.filename, md5=release.tgz_md5)


def load_cifar(dataset: str, data_root: str | Path, download: bool = False, verify_checksums: bool = True) -> Base:
    """CIFAR-10 or CIFAR-100 (``dataset`` a key of CIFAR_LAYOUTS) as uint8 ``[N, 3, 32, 32]``."""
    layout = CIFAR_LAYOUTS[dataset]
    root = Path(data_root).absolute()
    directory = root / layout["folder"]
    if download and missing_cifar(dataset, root) is not None:
        download_cifar(dataset, root)
    message = missing_cifar(dataset, root)
    if message is not None:
        raise DataMissingError(message)
    if verify_checksums:
        for name in layout["train"] + layout["test"]:
            check_md5(dataset, directory / name, layout["md5"][name])
    return (
        *read_cifar_files(dataset, directory, layout["train"], layout),
        *read_cifar_files(dataset, directory, layout["test"], layout),
    )


def load_cifar10(data_root: str | Path, download: bool = False, verify_checksums: bool = True) -> Base:
    return load_cifar("CIFAR-10", data_root, download, verify_checksums)


def load_cifar100(data_root: str | Path, download: bool = False, verify_checksums: bool = True) -> Base:
    return load_cifar("CIFAR-100", data_root, download, verify_checksums)


# --- scikit-learn's digits: a gray-digit base that needs no files ----------------------------

DIGITS_SIZE = 28
DIGITS_TEST_FRACTION = 0.3
# Fixed so that every seed of every digits-based set shares one base train/test split.
DIGITS_SPLIT_SEED = 12345


def stratified_test_indices(y: torch.Tensor, test_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of a test split holding round(test_fraction * n_c) samples of each class c."""
    chosen = []
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[: round(test_fraction * len(members))]])
    return torch.cat(chosen).sort().values


def load_digits_base() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits in [0, 1], upsampled to 28x28, split the same way for every seed.

    Returns (x_train [N, 1, 28, 28], y_train, x_test, y_test).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(small, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    y = torch.from_numpy(digits.target.astype(np.int64))
    is_test = torch.zeros(len(y), dtype=torch.bool)
    is_test[stratified_test_indices(y, DIGITS_TEST_FRACTION, torch.Generator().manual_seed(DIGITS_SPLIT_SEED))] = True
    return x[~is_test], y[~is_test], x[is_test], y[is_test]


def unit_range(base: Base) -> Base:
    """uint8 images as float32 in [0, 1]; labels unchanged."""
    x_train, y_train, x_test, y_test = base
    return x_train.float() / 255, y_train, x_test.float() / 255, y_test


def load_mnist_unit(data_root: str | Path, params: dict[str, Any]) -> Base:
    return unit_range(load_mnist(data_root, params["download"], params["verify_checksums"]))


def load_cifar10_unit(data_root: str | Path, params: dict[str, Any]) -> Base:
    return unit_range(load_cifar10(data_root, params["download"], params["verify_checksums"]))
