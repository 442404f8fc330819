"""Fashion-MNIST (Xiao et al. 2017): 28x28 gray images of ten clothing classes in MNIST's idx format.

A gray base of the colored and double constructions (``base: fashion_mnist``), read from the
first folder that holds all four idx files, each plain or gzip-compressed (``<name>`` or
``<name>.gz``):

1. ``<data_root>/FashionMNIST/raw/`` (torchvision's layout; ``download: true`` or
   ``largelr download fashion_mnist`` fill it);
2. ``/usr/share/datasets/fashion-mnist/`` (the Debian and Ubuntu package
   ``dataset-fashion-mnist``, installed by ``make fashion-mnist`` where apt-get runs as root).

``verify_checksums``: the Debian package recompresses the archives, so their md5 differs from the
upstream archives' that torchvision lists; as for MNIST, the check is instead that the files hold
the official sample counts (60000 train, 10000 test) of 28x28 images with labels 0..9.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from largelr.data_files import (
    FASHION_MNIST,
    FASHION_TORCHVISION_FOLDER,
    MNIST_FILES,
    fashion_folder,
    idx_file,
    missing_fashion_mnist,
)
from largelr.datasets.bases import (
    MNIST_IMAGES_MAGIC,
    MNIST_LABELS_MAGIC,
    MNIST_OFFICIAL_COUNTS,
    MNIST_SIZE,
    Base,
    DataMissingError,
    announce_download,
    download_errors_explained,
    torchvision_datasets,
)


def corrupt(path: Path, problem: str) -> DataMissingError:
    return DataMissingError(f"{FASHION_MNIST} file {path} is corrupt or not in the idx format: {problem}. Replace it.")


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """The uint8 array of an idx file (plain or gzip), its header checked against magic and length."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise corrupt(path, f"cannot be decompressed ({error})") from error
    header_size = 4 * (ndim + 1)
    if len(data) < header_size:
        raise corrupt(path, f"only {len(data)} bytes, shorter than the idx header")
    found_magic, *shape = np.frombuffer(data[:header_size], dtype=">u4").tolist()
    if found_magic != magic:
        raise corrupt(path, f"idx magic number {found_magic}, expected {magic}")
    if len(data) != header_size + int(np.prod(shape)):
        raise corrupt(
            path, f"{len(data) - header_size} data bytes, but its header {shape} implies {int(np.prod(shape))}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def read_split(folder: Path, split: str, verify_checksums: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, 1, 28, 28] and int64 labels of one split, structure checked."""
    images_name, labels_name = MNIST_FILES[split]
    images_path, labels_path = idx_file(folder, images_name), idx_file(folder, labels_name)
    images = read_idx(images_path, MNIST_IMAGES_MAGIC, 3)
    labels = read_idx(labels_path, MNIST_LABELS_MAGIC, 1).astype(np.int64)
    if len(images) != len(labels):
        raise corrupt(labels_path, f"{len(labels)} labels for {len(images)} images in {images_path.name}")
    if len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
        raise corrupt(labels_path, "labels outside 0..9")
    official = (MNIST_OFFICIAL_COUNTS[split], MNIST_SIZE, MNIST_SIZE)
    if verify_checksums and images.shape != official:
        raise DataMissingError(
            f"{FASHION_MNIST} file {images_path} holds images of shape {list(images.shape)}, but the official release's "
            f"are {list(official)}. Replace it, or set `verify_checksums: false` for this dataset in config.yaml."
        )
    return torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels)


def load_fashion_mnist(data_root: str | Path, download: bool = False, verify_checksums: bool = True) -> Base:
    """Fashion-MNIST train/test as uint8 ``[N, 1, 28, 28]`` images and int64 labels."""
    root = Path(data_root).absolute()
    if download and fashion_folder(root) is None:
        announce_download(FASHION_MNIST, root / FASHION_TORCHVISION_FOLDER)
        with download_errors_explained(FASHION_MNIST, root / FASHION_TORCHVISION_FOLDER):
            torchvision_datasets().FashionMNIST(root=str(root), train=True, download=True)
    folder = fashion_folder(root)
    if folder is None:
        raise DataMissingError(missing_fashion_mnist(root))
    return (*read_split(folder, "train", verify_checksums), *read_split(folder, "test", verify_checksums))
