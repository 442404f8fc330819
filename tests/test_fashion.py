"""Fashion-MNIST as a gray base: fabricated idx files (plain and gzip) everywhere, the real files of
Debian's dataset-fashion-mnist where it is installed (make fashion-mnist)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from largelr import data_files
from largelr.data_files import MNIST_FILES
from largelr.datasets import DataMissingError, build_dataset, fashion, missing_data

REAL = data_files.FASHION_SYSTEM_FOLDERS[0]
HAS_REAL = all((REAL / f"{name}.gz").is_file() for split in MNIST_FILES.values() for name in split)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return np.array([magic, *array.shape], dtype=">u4").tobytes() + array.astype(np.uint8).tobytes()


def write_fake(folder: Path, n_train: int = 40, n_test: int = 20, compress: bool = False) -> dict[str, np.ndarray]:
    """Four idx files whose pixel (0, 0) is the sample's index mod 256 and whose labels cycle 0..9."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) % 256
        labels = np.arange(n) % 10
        for (name, magic), array in zip(zip(MNIST_FILES[split], (2051, 2049)), (images, labels)):
            data = idx_bytes(array, magic)
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        arrays[split] = images
    return arrays


@pytest.fixture
def no_system_copy(monkeypatch):
    monkeypatch.setattr(data_files, "FASHION_SYSTEM_FOLDERS", ())


@pytest.mark.parametrize("compress", [False, True])
def test_fabricated_files_read_in_order(tmp_path, no_system_copy, compress):
    write_fake(tmp_path / "FashionMNIST" / "raw", compress=compress)
    x_train, y_train, x_test, y_test = fashion.load_fashion_mnist(tmp_path, verify_checksums=False)
    assert x_train.shape == (40, 1, 28, 28) and x_test.shape == (20, 1, 28, 28)
    assert x_train[:, 0, 0, 0].tolist() == list(range(40))
    assert y_test.tolist() == [i % 10 for i in range(20)]


def test_official_counts_checked(tmp_path, no_system_copy):
    write_fake(tmp_path / "FashionMNIST" / "raw")
    with pytest.raises(DataMissingError, match=r"official release's are \[60000, 28, 28\]"):
        fashion.load_fashion_mnist(tmp_path)


def test_truncated_file_is_named(tmp_path, no_system_copy):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_fake(raw)
    path = raw / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataMissingError, match="t10k-labels-idx1-ubyte.*17 data bytes.*implies 20"):
        fashion.load_fashion_mnist(tmp_path, verify_checksums=False)


def test_missing_names_both_places_and_the_remedies(tmp_path, monkeypatch):
    monkeypatch.setattr(data_files, "FASHION_SYSTEM_FOLDERS", (tmp_path / "system",))
    message = missing_data("colored_fashion_mnist", {}, tmp_path)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and str(tmp_path / "system") in message
    assert "largelr download fashion_mnist" in message and "dataset-fashion-mnist" in message
    write_fake(tmp_path / "system", compress=True)  # the package's folder is the fallback
    assert missing_data("colored_fashion_mnist", {}, tmp_path) is None


def test_subsample_sizes_rho_and_draw(tmp_path, no_system_copy):
    write_fake(tmp_path / "FashionMNIST" / "raw", n_train=200, n_test=100)
    params = {"n_train": 80, "n_test": 30, "rho_train": 0.1, "verify_checksums": False}
    dataset = build_dataset("double_fashion_mnist", params, tmp_path, seed=3)
    assert len(dataset["train"]["y"]) == 80 and len(dataset["test"]["y"]) == 30
    assert int((dataset["train"]["y"] != dataset["train"]["b"]).sum()) == 8  # round(0.1 * 80)
    # The left half is the core image scaled by core_brightness 0.5: pixel (0, 0) = index / 255 / 2
    # identifies the drawn samples, which are distinct, in base order, and keep their labels.
    index = torch.round(dataset["train"]["x"][:, 0, 0, 0] * 2 * 255).long()
    assert index.tolist() == sorted(set(index.tolist()))
    assert torch.equal(dataset["train"]["y"], index % 10)
    again = build_dataset("double_fashion_mnist", params, tmp_path, seed=3)
    assert torch.equal(again["train"]["x"], dataset["train"]["x"])
    with pytest.raises(ValueError, match="n_train=500: the base has only 200"):
        build_dataset("colored_fashion_mnist", {**params, "n_train": 500}, tmp_path, seed=0)


@pytest.mark.skipif(
    not HAS_REAL, reason=f"Debian's dataset-fashion-mnist is not installed ({REAL}); make fashion-mnist"
)
def test_real_files_end_to_end(tmp_path):
    x_train, y_train, x_test, y_test = fashion.load_fashion_mnist(tmp_path)  # nothing under tmp_path: the package
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    # Fashion-MNIST is balanced: 6000 train and 1000 test images per class.
    assert torch.bincount(y_train).tolist() == [6000] * 10 and torch.bincount(y_test).tolist() == [1000] * 10
    colored = build_dataset(
        "colored_fashion_mnist", {"n_train": 1000, "n_test": 500, "palette": "primaries"}, tmp_path, seed=0
    )
    assert colored["input_shape"] == [3, 28, 28]
    # LfF's per-class blocks: each class's conflicting count is 0.025 x its size, up to rounding
    y, b = colored["train"]["y"], colored["train"]["b"]
    for k in range(10):
        n_k, conflicting = int((y == k).sum()), int(((y == k) & (b != k)).sum())
        assert abs(conflicting - 0.025 * n_k) <= 1, (k, n_k, conflicting)
    # Strokes are coloured by palette[b]: a red-biased (b = 0) image has no green or blue.
    red = colored["train"]["x"][colored["train"]["b"] == 0]
    assert red[:, 1:].max() < 0.05 and red[:, 0].max() > 0.5
