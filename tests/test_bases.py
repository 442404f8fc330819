"""Base readers on small files fabricated in the real on-disk formats (no mocks).

The ``write_*`` helpers are also used by test_constructions.py.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from largelr.data_files import CIFAR10_MD5, CIFAR100_MD5
from largelr.datasets.bases import DataMissingError, load_cifar10, load_cifar100, load_mnist

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_NAMES = tuple(CIFAR10_MD5)


def balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Every class present (n >= num_classes), in random order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.uint8)


def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 28x28 digits in ``root/MNIST/raw``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, split, n in (("train", "train", n_train), ("t10k", "test", n_test)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"y_{split}"] = balanced_labels(n, 10, rng)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", arrays[f"x_{split}"])
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", arrays[f"y_{split}"])
    return arrays


def write_pickle(path: Path, batch: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(batch, handle)


def cifar_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Five train batches and a test batch in ``root/cifar-10-batches-py``, keys as bytes like the real files."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = cifar_rows(n_train, rng), balanced_labels(n_train, 10, rng).astype(np.int64)
    x_test, y_test = cifar_rows(n_test, rng), balanced_labels(n_test, 10, rng).astype(np.int64)
    for i, (rows, labels) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5)), start=1):
        write_pickle(
            folder / f"data_batch_{i}", {b"batch_label": b"training batch", b"data": rows, b"labels": labels.tolist()}
        )
    write_pickle(folder / "test_batch", {b"batch_label": b"testing batch", b"data": x_test, b"labels": y_test.tolist()})
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_cifar100(root: Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = cifar_rows(n, rng), rng.integers(0, 100, n)
        coarse = arrays[f"y_{split}"] // 5
        write_pickle(
            folder / split,
            {
                b"data": arrays[f"x_{split}"],
                b"fine_labels": arrays[f"y_{split}"].tolist(),
                b"coarse_labels": coarse.tolist(),
            },
        )
    return arrays


def red_plane(rows: np.ndarray) -> np.ndarray:
    """The first 1024 values of each row are the red channel, row-major 32x32."""
    return rows[:, :1024].reshape(-1, 32, 32)


def test_mnist_round_trip(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path)
    x_train, y_train, x_test, y_test = load_mnist(tmp_path, verify_checksums=False)
    assert x_train.dtype == torch.uint8 and x_train.shape == (60, 1, 28, 28) and x_test.shape == (20, 1, 28, 28)
    assert y_train.dtype == torch.int64
    assert np.array_equal(x_train[:, 0].numpy(), arrays["x_train"]) and np.array_equal(
        y_train.numpy(), arrays["y_train"]
    )
    assert np.array_equal(x_test[:, 0].numpy(), arrays["x_test"]) and np.array_equal(y_test.numpy(), arrays["y_test"])


@pytest.mark.parametrize("load, write", [(load_cifar10, write_cifar10), (load_cifar100, write_cifar100)])
def test_cifar_round_trip(tmp_path: Path, load, write) -> None:
    arrays = write(tmp_path)
    x_train, y_train, x_test, y_test = load(tmp_path, verify_checksums=False)
    assert x_train.dtype == torch.uint8 and x_train.shape == (50, 3, 32, 32) and x_test.shape == (20, 3, 32, 32)
    assert np.array_equal(x_train.flatten(1).numpy(), arrays["x_train"]) and np.array_equal(
        x_test.flatten(1).numpy(), arrays["x_test"]
    )
    assert np.array_equal(x_train[:, 0].numpy(), red_plane(arrays["x_train"]))
    assert np.array_equal(y_train.numpy(), arrays["y_train"]) and np.array_equal(y_test.numpy(), arrays["y_test"])
    assert y_train.dtype == torch.int64


def test_cifar_reads_str_keys_too(tmp_path: Path) -> None:
    # Pickles written by Python 3 with str keys (as some re-exports are) read the same.
    arrays = write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    write_pickle(folder / "test_batch", {"data": arrays["x_test"], "labels": arrays["y_test"].tolist()})
    assert np.array_equal(load_cifar10(tmp_path, verify_checksums=False)[3].numpy(), arrays["y_test"])


@pytest.mark.parametrize(
    "load, folder, names",
    [
        (load_mnist, "MNIST/raw", MNIST_NAMES),
        (load_cifar10, "cifar-10-batches-py", CIFAR10_NAMES),
        (load_cifar100, "cifar-100-python", ("train", "test")),
    ],
)
def test_missing_data_names_expected_files_and_how_to_get_them(
    tmp_path: Path, load, folder: str, names: tuple[str, ...]
) -> None:
    with pytest.raises(DataMissingError) as caught:
        load(tmp_path / "empty")
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert str((tmp_path / "empty" / folder).absolute()) in message
    assert all(name in message for name in names)
    assert "download: true" in message and "http" not in message


def test_relative_root_is_reported_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataMissingError, match=str(tmp_path / "data" / "MNIST" / "raw")):
        load_mnist("data")


def test_one_missing_file_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataMissingError, match=r"missing: data_batch_4\)"):
        load_cifar10(tmp_path, verify_checksums=False)


def test_truncated_pickle_names_the_file(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataMissingError, match=rf"{path}.*cannot be unpickled"):
        load_cifar10(tmp_path, verify_checksums=False)


@pytest.mark.parametrize(
    "batch, problem",
    [
        ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, r"uint8 \[N, 3072\]"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, r"float32 array"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, r"expected 4 integers"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, r"outside 0..9"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"fine_labels": [0] * 4}, r"no 'labels' entry"),
        ([1, 2, 3], r"holds a list"),
    ],
)
def test_malformed_cifar_batch_names_file_and_problem(tmp_path: Path, batch, problem: str) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_pickle(path, batch)
    with pytest.raises(DataMissingError, match=rf"{path} is corrupt.*{problem}"):
        load_cifar10(tmp_path, verify_checksums=False)


def test_truncated_mnist_file_names_the_file(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataMissingError, match=rf"{path} is corrupt.*header \[20, 28, 28\] implies 15696"):
        load_mnist(tmp_path, verify_checksums=False)


def test_mnist_wrong_magic_and_count_mismatch(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    write_idx_labels(raw / "train-images-idx3-ubyte", arrays["y_train"])  # a label file in the images' place
    with pytest.raises(DataMissingError, match=r"train-images-idx3-ubyte is corrupt.*magic number 2049, expected 2051"):
        load_mnist(tmp_path, verify_checksums=False)
    write_idx_images(raw / "train-images-idx3-ubyte", arrays["x_train"])
    write_idx_labels(raw / "train-labels-idx1-ubyte", arrays["y_train"][:-1])
    with pytest.raises(DataMissingError, match=r"train-labels-idx1-ubyte is corrupt.*59 labels for 60 images"):
        load_mnist(tmp_path, verify_checksums=False)


def test_mnist_labels_out_of_range(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path)
    labels = arrays["y_test"].copy()
    labels[0] = 12
    write_idx_labels(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataMissingError, match=r"t10k-labels-idx1-ubyte is corrupt.*outside 0..9"):
        load_mnist(tmp_path, verify_checksums=False)


@pytest.mark.parametrize(
    "load, write, first_file", [(load_cifar10, write_cifar10, "data_batch_1"), (load_cifar100, write_cifar100, "train")]
)
def test_checksum_verification(tmp_path: Path, load, write, first_file: str) -> None:
    write(tmp_path)
    with pytest.raises(
        DataMissingError, match=rf"{first_file} has md5 [0-9a-f]{{32}}, but the official.*verify_checksums: false"
    ):
        load(tmp_path)  # verification is on by default
    assert len(load(tmp_path, verify_checksums=False)[0]) == 50


def test_mnist_verification_requires_official_counts(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    with pytest.raises(
        DataMissingError, match=r"train-images-idx3-ubyte holds images of shape \[60, 28, 28\].*\[60000, 28, 28\]"
    ):
        load_mnist(tmp_path)
    assert len(load_mnist(tmp_path, verify_checksums=False)[0]) == 60


def test_md5_constants_match_torchvision() -> None:
    for cls, ours in ((torchvision.datasets.CIFAR10, CIFAR10_MD5), (torchvision.datasets.CIFAR100, CIFAR100_MD5)):
        assert ours == dict(cls.train_list + cls.test_list)


# --- download routing (no network: torchvision's download entry points are replaced) ------


class Recorder:
    """Stands in for a torchvision download entry point: records its calls, optionally writes files."""

    def __init__(self, write=None, error: Exception | None = None) -> None:
        self.calls: list[tuple] = []
        self.write, self.error = write, error

    def __call__(self, *args, **kwargs) -> None:
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        if self.write is not None:
            self.write(*args, **kwargs)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    """Every socket connection fails, and both download entry points are recorders that write nothing."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    recorders = {"mnist": Recorder(), "archive": Recorder()}
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", lambda dataset: recorders["mnist"](dataset))
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", recorders["archive"])
    return recorders


@pytest.mark.parametrize("load", [load_mnist, load_cifar10, load_cifar100])
def test_without_download_nothing_is_fetched_and_the_error_is_clear(tmp_path: Path, no_network: dict, load) -> None:
    with pytest.raises(DataMissingError, match="download: true"):
        load(tmp_path, download=False)
    assert no_network["mnist"].calls == [] and no_network["archive"].calls == []


def test_mnist_download_goes_through_torchvision_and_is_announced(
    tmp_path: Path, no_network: dict, monkeypatch, capsys
) -> None:
    written, roots = {}, []

    def fabricate(dataset) -> None:  # replaces the method torchvision.datasets.MNIST.download(self)
        roots.append(dataset.root)
        written.update(write_mnist(Path(dataset.root)))

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fabricate)
    x_train, y_train, _, y_test = load_mnist(tmp_path, download=True, verify_checksums=False)
    assert roots == [str(tmp_path.absolute())]
    assert np.array_equal(x_train[:, 0].numpy(), written["x_train"]) and np.array_equal(
        y_test.numpy(), written["y_test"]
    )
    assert f"downloading MNIST into {tmp_path.absolute() / 'MNIST' / 'raw'}" in capsys.readouterr().err
    # Files present: a second load with download=true fetches nothing.
    load_mnist(tmp_path, download=True, verify_checksums=False)
    assert len(roots) == 1


@pytest.mark.parametrize(
    "load, write, release",
    [
        (load_cifar10, write_cifar10, torchvision.datasets.CIFAR10),
        (load_cifar100, write_cifar100, torchvision.datasets.CIFAR100),
    ],
)
def test_cifar_download_fetches_the_official_archive(
    tmp_path: Path, no_network: dict, monkeypatch, load, write, release
) -> None:
    written = {}
    recorder = Recorder(write=lambda url, root, **kwargs: written.update(write(Path(root))))
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", recorder)
    x_train, _, _, y_test = load(tmp_path, download=True, verify_checksums=False)
    assert recorder.calls == [
        ((release.url, str(tmp_path.absolute())), {"filename": release.filename, "md5": release.tgz_md5})
    ]
    assert np.array_equal(x_train.flatten(1).numpy(), written["x_train"]) and np.array_equal(
        y_test.numpy(), written["y_test"]
    )


def test_a_failed_download_says_what_to_do_instead(tmp_path: Path, no_network: dict, monkeypatch) -> None:
    from urllib.error import URLError

    monkeypatch.setattr(
        torchvision.datasets.utils, "download_and_extract_archive", Recorder(error=URLError("no route to host"))
    )
    with pytest.raises(
        DataMissingError, match=r"downloading CIFAR-10 into .*cifar-10-batches-py failed \(URLError.*Copy the files"
    ):
        load_cifar10(tmp_path, download=True)
