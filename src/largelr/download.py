"""``largelr download NAME...``: data and weights in one command.

* Fetched (torchvision's sources and md5s): ``mnist`` and ``fashion_mnist`` (four .gz archives each,
  unpacked into ``<data_root>/MNIST/raw`` and ``<data_root>/FashionMNIST/raw``), ``cifar10`` and
  ``cifar100`` (one .tar.gz each, extracted into ``<data_root>``). Every archive's md5 is checked
  before it is unpacked; mirrors are tried in turn.
* Weights: ``swin_t`` (ImageNet-1k) and the DeepLabV3 segmenters (COCO_WITH_VOC_LABELS_V1) into the
  torch hub cache (``$TORCH_HOME/hub/checkpoints``), their sha256 prefix (in the file name) checked.
* Manual (a licence or a registration): ``celeba``, ``waterbirds``, ``imagenet``: the official
  source, the layout the readers expect, and the check they run, with its verdict today.

Each name gets one line of outcome; an unreachable source gives one line naming it and the reason,
fast (``TIMEOUT_S``), and the command exits non-zero when any name failed.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 15.0  # per connection attempt: offline fails in seconds, not minutes


@dataclass(frozen=True)
class Archives:
    """Archives of one dataset: (file name, md5) each, tried at every mirror, unpacked into ``folder``."""

    folder: str
    mirrors: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    check: str  # the reader's check, in words


def torchvision_sources() -> dict[str, Archives]:
    from torchvision import datasets  # imported on use: slow import

    def idx(cls, folder: str) -> Archives:
        return Archives(
            folder,
            tuple(cls.mirrors),
            tuple(cls.resources),
            "four idx files, 60000 train and 10000 test 28x28 images, labels 0..9",
        )

    def cifar(cls, what: str) -> Archives:
        base, name = cls.url.rsplit("/", 1)
        return Archives(".", (base + "/",), ((name, cls.tgz_md5),), f"md5 of every extracted {what} file")

    return {
        "mnist": idx(datasets.MNIST, "MNIST/raw"),
        "fashion_mnist": idx(datasets.FashionMNIST, "FashionMNIST/raw"),
        "cifar10": cifar(datasets.CIFAR10, "CIFAR-10"),
        "cifar100": cifar(datasets.CIFAR100, "CIFAR-100"),
    }


MANUAL = {
    "celeba": (
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped images, annotations; terms of use)",
        "celeba/list_attr_celeba.txt, celeba/list_eval_partition.txt, celeba/img_align_celeba/<images>",
    ),
    "waterbirds": (
        "https://github.com/kohpangwei/group_DRO (waterbird_complete95_forest2water2.tar.gz, "
        "CUB-200 and Places licences)",
        "waterbird_complete95_forest2water2/metadata.csv and the image folders it lists",
    ),
    "imagenet": (
        "https://image-net.org/download.php (ILSVRC-2012, registration)",
        "imagenet/train/<wnid>/<image>, imagenet/val/<wnid>/<image> (val sorted into class folders)",
    ),
}


def weight_urls() -> dict[str, str]:
    from torchvision.models import Swin_T_Weights

    from largelr.analyses.segment import TORCHVISION_WEIGHT_URLS

    return {"swin_t": Swin_T_Weights.IMAGENET1K_V1.url, **TORCHVISION_WEIGHT_URLS}


class DownloadError(RuntimeError):
    """One item could not be fetched; the message is its one line."""


def fetch_archive(name: str, url: str, directory: Path, md5: str) -> Path:
    """The archive, downloaded into directory and md5-checked (torchvision's check), else DownloadError."""
    from torchvision.datasets.utils import check_integrity, download_url

    target = directory / name
    try:
        download_url(url, str(directory), filename=name, md5=md5)
    except (OSError, RuntimeError) as error:  # URLError and timeouts are OSErrors; a bad md5 a RuntimeError
        if target.is_file() and not check_integrity(str(target), md5):
            target.unlink()
            raise DownloadError(f"{url}: its md5 differs from the release's {md5}; the file was removed") from error
        reason = getattr(error, "reason", error)
        raise DownloadError(f"cannot fetch {url} ({type(error).__name__}: {reason})") from error
    return target


def fetch_dataset(sources: Archives, data_root: Path) -> str:
    """Every archive from the first mirror that answers, checked and unpacked; the outcome line."""
    from torchvision.datasets.utils import extract_archive

    directory = (data_root / sources.folder).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for name, md5 in sources.files:
        failures = []
        for mirror in sources.mirrors:
            try:
                archive = fetch_archive(name, mirror + name, directory, md5)
                break
            except DownloadError as error:
                failures.append(str(error))
        else:
            raise DownloadError("; ".join(failures))
        extract_archive(str(archive), str(directory))
    return f"fetched into {directory} (md5 checked; the reader checks: {sources.check})"


def fetch_weights(url: str, hub_dir: Path) -> str:
    """A weights file into hub_dir/checkpoints, its sha256 prefix checked (torch hub's rule)."""
    import torch.hub

    target = hub_dir / "checkpoints" / url.rsplit("/", 1)[1]
    if target.is_file():
        return f"present at {target}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            url, str(target), hash_prefix=torch.hub.HASH_REGEX.search(target.name).group(1), progress=False
        )
    except (OSError, RuntimeError) as error:
        target.unlink(missing_ok=True)
        raise DownloadError(
            f"cannot fetch {url} ({type(error).__name__}: {getattr(error, 'reason', error)})"
        ) from error
    return f"fetched into {target} (sha256 prefix checked)"


def manual_lines(name: str, data_root: Path) -> str:
    from largelr.datasets import missing_data

    source, layout = MANUAL[name]
    verdict = missing_data(name, {}, data_root)
    check = "present (the data job then checks the listings and some images)" if verdict is None else verdict
    return f"manual step. Source: {source}. Layout under {data_root}: {layout}. Check: {check}"


DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
WEIGHTS = ("swin_t", "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50")
NAMES = (*DATASETS, *MANUAL, *WEIGHTS)


def download(
    names: list[str],
    data_root: Path,
    hub_dir: Path,
    sources: dict[str, Archives] | None = None,
    urls: dict[str, str] | None = None,
) -> int:
    """One line per name on stdout (failures on stderr); the number of names that failed."""
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise ValueError(f"unknown name(s) {unknown}; allowed: {list(NAMES)}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT_S)
    failed = 0
    try:
        for name in names:
            try:
                if name in MANUAL:
                    line = manual_lines(name, data_root)
                elif name in DATASETS:
                    line = fetch_dataset((sources or torchvision_sources())[name], data_root)
                else:
                    line = fetch_weights((urls or weight_urls())[name], hub_dir)
                print(f"{name}: {line}", flush=True)
            except DownloadError as error:
                failed += 1
                print(f"{name}: FAILED: {error}", file=sys.stderr, flush=True)
    finally:
        socket.setdefaulttimeout(previous)
    return failed
