"""Which data files each dataset kind reads, where, and a check from their existence alone.

The dataset records in :mod:`largelr.registry.kinds` name these checks (``missing_check``); the
workflow calls them for every dataset when Snakemake parses, so this module imports neither torch
nor the readers in :mod:`largelr.datasets` (which use the same layouts and messages when they
load). Each check returns None when the files are there, else what is missing, where, and how to
get it. Contents and checksums are verified by the readers, before training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# --- layouts ---------------------------------------------------------------------------------

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Official md5 of every file of the extracted CIFAR releases (same values torchvision checks).
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR100_MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
}
CIFAR_LAYOUTS: dict[str, dict[str, Any]] = {
    "CIFAR-10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
        "num_classes": 10,
        "md5": CIFAR10_MD5,
        "torchvision_class": "CIFAR10",
    },
    "CIFAR-100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
        "num_classes": 100,
        "md5": CIFAR100_MD5,
        "torchvision_class": "CIFAR100",
    },
}

FASHION_MNIST = "Fashion-MNIST"
FASHION_TORCHVISION_FOLDER = Path("FashionMNIST") / "raw"
# Where the Debian/Ubuntu package dataset-fashion-mnist installs the four .gz files.
FASHION_SYSTEM_FOLDERS = (Path("/usr/share/datasets/fashion-mnist"),)
IDX_FILE_NAMES = [name for split in ("train", "test") for name in MNIST_FILES[split]]

CELEBA_FOLDER = "celeba"
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_IMAGES = "img_align_celeba"

WATERBIRDS_METADATA = "metadata.csv"

IMAGENET_FOLDER = "imagenet"
IMAGENET_ADVICE = (
    "Place the ILSVRC-2012 train and val images there, one folder per class (wnid) in each, "
    "as torchvision.datasets.ImageNet prepares them."
)

# --- messages --------------------------------------------------------------------------------

DOWNLOAD_NAMES = {"MNIST": "mnist", "CIFAR-10": "cifar10", "CIFAR-100": "cifar100"}  # `largelr download` names


def how_to_obtain(dataset: str, directory: Path) -> str:
    command = f" (`largelr download {DOWNLOAD_NAMES[dataset]}` fetches them)" if dataset in DOWNLOAD_NAMES else ""
    return (
        f"To obtain them, set `download: true` for this dataset in config.yaml, or copy the files of "
        f"torchvision's {dataset} release (extracted) into {directory}{command}."
    )


def missing_paths_message(dataset: str, directory: Path, names: list[str], advice: str) -> str | None:
    """None if every name (a trailing "/" marks a folder) exists in directory, else what is missing and how to fix it."""

    def present(name: str) -> bool:
        path = directory / name.rstrip("/")
        return path.is_dir() if name.endswith("/") else path.is_file()

    missing = [name for name in names if not present(name)]
    if not missing:
        return None
    return f"{dataset} not found: expected {', '.join(names)} in {directory} (missing: {', '.join(missing)}). {advice}"


def no_download(dataset: str, params: dict[str, Any], message: str | None) -> str | None:
    """``message``, completed with why ``download: true`` cannot help, when it is set."""
    if not params.get("download"):
        return message
    refusal = (
        f"{dataset} cannot be downloaded by this pipeline (its release needs a manual download or "
        f"accepting terms of use); set `download: false` and place the files as described."
    )
    return f"{message} {refusal}" if message else None


# --- base image sets -------------------------------------------------------------------------


def missing_mnist(root: Path) -> str | None:
    """None if the four MNIST idx files exist under root, else the clear message."""
    raw = root / "MNIST" / "raw"
    return missing_paths_message("MNIST", raw, IDX_FILE_NAMES, how_to_obtain("MNIST", raw))


def missing_cifar(dataset: str, root: Path) -> str | None:
    """None if every file of CIFAR ``dataset`` exists under root, else the clear message."""
    layout = CIFAR_LAYOUTS[dataset]
    directory = root / layout["folder"]
    return missing_paths_message(
        dataset, directory, layout["train"] + layout["test"], how_to_obtain(dataset, directory)
    )


def idx_file(folder: Path, name: str) -> Path | None:
    """The plain file ``name`` in folder, else its ``.gz``, else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def fashion_candidate_folders(root: Path) -> list[Path]:
    return [root / FASHION_TORCHVISION_FOLDER, *FASHION_SYSTEM_FOLDERS]


def fashion_folder(root: Path) -> Path | None:
    """The first candidate folder holding all four Fashion-MNIST idx files (plain or .gz), else None."""
    for folder in fashion_candidate_folders(root):
        if all(idx_file(folder, name) is not None for name in IDX_FILE_NAMES):
            return folder
    return None


def missing_fashion_mnist(root: Path) -> str | None:
    """None if the four files are found, else where they were looked for and how to get them."""
    if fashion_folder(root) is not None:
        return None
    folders = " or ".join(str(folder) for folder in fashion_candidate_folders(root))
    advice = (
        f"To obtain them: `largelr download fashion_mnist` (or `download: true` for this dataset in config.yaml) "
        f"fetches torchvision's copy into {root / FASHION_TORCHVISION_FOLDER}; offline, `make fashion-mnist` (root) "
        f"or `apt-get install dataset-fashion-mnist` installs the Debian package into {FASHION_SYSTEM_FOLDERS[0]}."
    )
    return f"{FASHION_MNIST} not found: expected {', '.join(IDX_FILE_NAMES)} (each plain or .gz) in {folders}. {advice}"


def missing_base(base: str, root: Path) -> str | None:
    """None if the files of base (a gray base, ``cifar10`` or ``cifar100``) exist under root, else
    what is expected where."""
    if base == "digits":  # bundled with scikit-learn
        return None
    if base == "mnist":
        return missing_mnist(root)
    if base == "fashion_mnist":
        return missing_fashion_mnist(root)
    return missing_cifar({"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[base], root)


def needs_bases(*fixed: str):
    """A check for the bases a construction reads: its ``base``/``digit_base`` parameter (if any)
    and ``fixed`` ones; a base with ``download: true`` counts as present."""

    def missing(params: dict[str, Any], data_root: Path) -> str | None:
        if params.get("download"):
            return None
        bases = [params[key] for key in ("base", "digit_base") if key in params] + list(fixed)
        messages = [m for base in bases if (m := missing_base(base, Path(data_root).absolute())) is not None]
        return " ".join(messages) or None

    return missing


missing_bases = needs_bases()
missing_bases_and_cifar10 = needs_bases("cifar10")
missing_bases_and_cifar100 = needs_bases("cifar100")

# --- natural sets and your own folder --------------------------------------------------------


def missing_celeba(params: dict[str, Any], data_root: str | Path) -> str | None:
    """None if CelebA's listings and image folder exist under data_root, else what to put where."""
    directory = Path(data_root).expanduser().resolve() / CELEBA_FOLDER
    found = missing_paths_message(
        "CelebA",
        directory,
        [CELEBA_ATTRIBUTES, CELEBA_PARTITION, f"{CELEBA_IMAGES}/"],
        f"Place the official CelebA files there ({CELEBA_ATTRIBUTES}, {CELEBA_PARTITION}, "
        f"and the aligned JPEGs in {CELEBA_IMAGES}/).",
    )
    return no_download("CelebA", params, found)


def missing_waterbirds(params: dict[str, Any], data_root: str | Path) -> str | None:
    """None if the Waterbirds metadata.csv exists under data_root/folder, else what to put where."""
    directory = Path(data_root).expanduser().resolve() / params["folder"]
    found = missing_paths_message(
        "Waterbirds",
        directory,
        [WATERBIRDS_METADATA],
        f"Place the group-DRO Waterbirds release there ({WATERBIRDS_METADATA} and the image "
        f"folders it lists), or set the dataset's `folder` parameter to the folder that holds it.",
    )
    return no_download("Waterbirds", params, found)


def missing_imagenet(params: dict[str, Any], data_root: str | Path) -> str | None:
    """None if imagenet/train/ and imagenet/val/ exist under data_root, else what to put where."""
    directory = Path(data_root).expanduser().resolve() / IMAGENET_FOLDER
    return no_download(
        "ImageNet", params, missing_paths_message("ImageNet", directory, ["train/", "val/"], IMAGENET_ADVICE)
    )


def missing_folder(params: dict[str, Any], data_root: Path) -> str | None:
    """None if your own folder dataset's metadata CSV exists, else what to put where."""
    directory = Path(data_root).absolute() / params["folder"]
    return missing_paths_message(
        "folder dataset",
        directory,
        [params["metadata"]],
        f"Put the images there with a CSV {params['metadata']!r} of columns path, y, b, split (docs/data.md).",
    )
