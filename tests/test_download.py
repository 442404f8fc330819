"""`largelr download` against a local HTTP server on 127.0.0.1 serving files the test makes (no network)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
from functools import partial

import numpy as np
import pytest
from test_fashion import idx_bytes

from largelr import download as dl
from largelr.data_files import MNIST_FILES, missing_cifar
from largelr.datasets.fashion import load_fashion_mnist


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder) of an HTTP server in a thread."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep stderr for the command's own lines
            pass

    handler = partial(Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def serve_idx_archives(served) -> tuple[tuple[str, str], ...]:
    """Gzipped idx files (12 train and 6 test images, pixel (0, 0) = index) and their md5s."""
    files = []
    for split, n in (("train", 12), ("test", 6)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        for name, magic, array in zip(MNIST_FILES[split], (2051, 2049), (images, np.arange(n) % 10)):
            data = gzip.compress(idx_bytes(array, magic))
            (served / f"{name}.gz").write_bytes(data)
            files.append((f"{name}.gz", md5(data)))
    return tuple(files)


def test_fashion_mnist_fetched_checked_and_laid_out(server, tmp_path, monkeypatch, capsys):
    url, served = server
    monkeypatch.setattr("largelr.data_files.FASHION_SYSTEM_FOLDERS", ())
    files = serve_idx_archives(served)
    # The first mirror is down: the second one serves.
    sources = {"fashion_mnist": dl.Archives("FashionMNIST/raw", ("http://127.0.0.1:1/", url), files, "counts")}
    assert dl.download(["fashion_mnist"], tmp_path / "data", tmp_path / "hub", sources=sources) == 0
    assert "fashion_mnist: fetched into" in capsys.readouterr().out
    x_train, y_train, x_test, _ = load_fashion_mnist(tmp_path / "data", verify_checksums=False)
    assert x_train[:, 0, 0, 0].tolist() == list(range(12)) and y_train.tolist() == [i % 10 for i in range(12)]
    assert len(x_test) == 6


def test_bad_md5_fails_and_leaves_no_file(server, tmp_path, capsys):
    url, served = server
    files = serve_idx_archives(served)
    wrong = ((files[0][0], "0" * 32), *files[1:])
    sources = {"mnist": dl.Archives("MNIST/raw", (url,), wrong, "counts")}
    assert dl.download(["mnist"], tmp_path / "data", tmp_path / "hub", sources=sources) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("mnist")]  # besides the progress bar
    assert line.startswith("mnist: FAILED") and "md5 differs from the release's 000" in line
    assert not (tmp_path / "data" / "MNIST" / "raw" / files[0][0]).exists()


def test_cifar_tarball_extracted_where_the_reader_looks(server, tmp_path):
    url, served = server
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = 3
            archive.addfile(info, io.BytesIO(b"abc"))
    (served / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())
    sources = {"cifar10": dl.Archives(".", (url,), (("cifar-10-python.tar.gz", md5(buffer.getvalue())),), "md5s")}
    assert missing_cifar("CIFAR-10", tmp_path / "data") is not None
    assert dl.download(["cifar10"], tmp_path / "data", tmp_path / "hub", sources=sources) == 0
    assert missing_cifar("CIFAR-10", (tmp_path / "data").resolve()) is None


def test_weights_into_hub_cache_with_sha256_prefix(server, tmp_path, capsys):
    url, served = server
    payload = b"weights" * 100
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    (served / f"net-{prefix}.pth").write_bytes(payload)
    (served / "bad-12345678.pth").write_bytes(payload)
    urls = {"swin_t": f"{url}net-{prefix}.pth", "deeplabv3_resnet50": f"{url}bad-12345678.pth"}
    assert dl.download(["swin_t", "deeplabv3_resnet50"], tmp_path, tmp_path / "hub", urls=urls) == 1
    assert (tmp_path / "hub" / "checkpoints" / f"net-{prefix}.pth").read_bytes() == payload
    assert not (tmp_path / "hub" / "checkpoints" / "bad-12345678.pth").exists()
    assert "deeplabv3_resnet50: FAILED" in capsys.readouterr().err


def test_offline_one_line_per_item_and_manual_sets(tmp_path, capsys):
    closed = "http://127.0.0.1:1/"  # nothing listens on port 1
    sources = {"mnist": dl.Archives("MNIST/raw", (closed,), (("a.gz", "0" * 32),), "counts")}
    urls = {"swin_t": f"{closed}swin_t-704ceda3.pth"}
    failed = dl.download(["mnist", "swin_t", "waterbirds"], tmp_path, tmp_path / "hub", sources=sources, urls=urls)
    out, err = capsys.readouterr()
    assert failed == 2
    assert err.splitlines()[0].startswith("mnist: FAILED: cannot fetch http://127.0.0.1:1/a.gz")
    assert err.splitlines()[1].startswith("swin_t: FAILED: cannot fetch") and len(err.splitlines()) == 2
    assert out.startswith("waterbirds: manual step. Source: https://github.com/kohpangwei/group_DRO")
    assert "metadata.csv" in out and "Waterbirds not found" in out


def test_unknown_name_lists_the_allowed():
    with pytest.raises(ValueError, match="allowed: .*fashion_mnist"):
        dl.download(["svhn"], None, None)
