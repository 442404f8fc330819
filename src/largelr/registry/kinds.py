"""The dataset kinds: one record per kind, holding everything the workflow's parse needs, without torch.

A record gives a kind's parameters (defaults, allowed values, docs), its traits and sizes, and names
its builder and its missing-files check by import path (``"largelr.datasets.synthetic:build_parity"``).
Those are imported on their first call, so reading the records (config validation, Snakemake's parse)
imports neither torch nor the builder modules. The builders live in :mod:`largelr.datasets`.

Adding a kind: one record in ``RECORDS`` below plus its builder function (docs/extending.md), then a
``datasets:`` entry in config.yaml.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from largelr.checks import Setting, SettingError, check_section, defaults


def implementation(path: str) -> Callable[..., Any]:
    """The function ``"package.module:name"`` names, its module imported on first use (Python keeps it)."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"implementation path {path!r}: expected 'package.module:function'")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Kind:
    """One dataset kind: parameters, builder, the files it needs and its traits.

    ``build(params, data_root, seed)`` returns the dataset dict (the function at ``builder``);
    ``missing(params, data_root)`` says from file existence alone what is absent (the function at
    ``missing_check``; None: buildable, always so without a check). Traits travel inside the dataset
    file: ``worst_group`` (report worst-group accuracy, as the paper does for the natural sets) and
    ``oracle_background`` (the object is drawn on an exactly black canvas, so the black pixels are the
    background).
    """

    name: str
    doc: str
    params: dict[str, Setting]
    builder: str  # "module:function", called as function(params, data_root, seed) -> dataset dict
    missing_check: str | None = None  # "module:function", called as function(params, data_root) -> message or None
    worst_group: bool = False
    oracle_background: bool = False
    flat_inputs: bool = False  # vectors, not images: no background to attribute to
    # Parse-time checks of a study against the set's size: the parameters giving the train and test
    # sizes, and the number of classes (None: sizes not known before the build).
    size_keys: tuple[str, str] | None = None
    num_classes: int | None = None
    renamed: dict[str, str] = field(default_factory=dict)  # an old parameter name -> what to write instead

    @property
    def traits(self) -> dict[str, bool]:
        return {"worst_group": self.worst_group, "oracle_background": self.oracle_background}

    def build(self, params: dict[str, Any], data_root: Path, seed: int) -> dict[str, Any]:
        return implementation(self.builder)(params, data_root, seed)

    def missing(self, params: dict[str, Any], data_root: Path) -> str | None:
        if self.missing_check is None:
            return None
        return implementation(self.missing_check)(params, data_root)

    def check_params(self, params: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
        """(defaults overridden by the checked params, error messages naming ``where.key``)."""
        old = {key for key in params if key in self.renamed}
        checked, errors = check_section({k: v for k, v in params.items() if k not in old}, self.params, where)
        errors += [f"{where}.{key} = {params[key]!r}: {self.renamed[key]}" for key in sorted(old)]
        return {**defaults(self.params), **checked}, errors

    def merged_params(self, params: dict[str, Any]) -> dict[str, Any]:
        merged, errors = self.check_params(params, f"dataset {self.name}")
        if errors:
            raise SettingError("; ".join(errors))
        return merged


# --- parameters several kinds share -----------------------------------------------------


def rho(default: float, doc: str) -> Setting:
    return Setting(default, doc, minimum=0.0, maximum=1.0)


def count(default: int, doc: str) -> Setting:
    return Setting(default, doc, type=int, minimum=1)


# Input standardisation (x - mean) / std applied when a dataset file is loaded, per the dataset's
# ``standardize`` parameter: the constants of the authors' code (MNIST scalar, CIFAR per channel).
STANDARDIZATIONS: dict[str, dict[str, Any]] = {
    "none": {"mean": 0.0, "std": 1.0},
    "mnist": {"mean": 0.1307, "std": 0.3081},
    "cifar10": {"mean": [0.491, 0.482, 0.447], "std": [0.247, 0.243, 0.262]},
    "cifar100": {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]},
}


def standardize_param(default: str) -> dict[str, Setting]:
    return {
        "standardize": Setting(
            default,
            "inputs standardised on load, (x - mean) / std with the constants of: "
            "mnist (0.1307, 0.3081) | cifar10 | cifar100 (per channel) | none (raw [0, 1])",
            type=str,
            choices=tuple(STANDARDIZATIONS),
        )
    }


FILE_PARAMS = {
    "download": Setting(False, "let torchvision download missing base files (MNIST, CIFAR)", type=bool),
    "verify_checksums": Setting(True, "check base files against the official release", type=bool),
}

BIAS_ASSIGNMENTS = ("lff", "random")


def bias_assignment(default: str) -> Setting:
    return Setting(
        default,
        "lff (LfF's release: deterministic per-class blocks, exact proportions, test split "
        "uniform over the bias values) | random (exactly round(rho N) conflicting samples drawn at random, "
        "test bias drawn uniformly)",
        type=str,
        choices=BIAS_ASSIGNMENTS,
    )


# --- the constructions (largelr.datasets.constructions) ----------------------------------

# Gray-digit bases the colored, double and dominoes constructions accept.
GRAY_BASES = ("digits", "mnist", "fashion_mnist")
# The stroke palettes of the colored sets, by name (their colours: largelr.datasets.constructions.PALETTES).
PALETTE_NAMES = ("lff", "primaries")
# LfF names its Corrupted CIFAR-10 sets "Severity s" and calls the CIFAR-10-C corruption at s + 1.
LFF_SEVERITY_OFFSET = 1
LFF_SEVERITY4_LEVEL = 4 + LFF_SEVERITY_OFFSET
# A parameter renamed so that two numbering schemes cannot be confused: old name -> what to write now.
RENAMED_CORRUPTION_PARAMS = {
    "severity": "renamed to cifar10c_level (CIFAR-10-C's numbering, 1..5): LfF's \"Severity4\" sets, the paper's, "
    "are cifar10c_level: 5 (the default); the old severity: 4 meant cifar10c_level: 4",
}


def gray_base(key: str, default: str) -> dict[str, Setting]:
    return {
        key: Setting(
            default, "gray base: digits (bundled, offline), mnist or fashion_mnist", type=str, choices=GRAY_BASES
        )
    }


SUBSAMPLE = {
    "n_train": Setting(None, "training samples drawn from the base (None: all)", type=int, minimum=1, nullable=True),
    "n_test": Setting(None, "test samples drawn from the base (None: all)", type=int, minimum=1, nullable=True),
}
# The authors standardise MNIST with its constants; the bundled 8x8 digits (an offline stand-in) stay raw.
# Fashion-MNIST is not among the authors' sets: raw, as the lr_fashion grid was chosen on raw inputs.
BASE_STANDARDIZATION = {"mnist": "mnist", "digits": "none", "fashion_mnist": "none"}
COLORED = {
    "rho_train": rho(0.025, "fraction of bias-conflicting training samples"),
    "color_noise_std": Setting(
        0.005,
        "std of the Gaussian noise added to each sample's colour, clamped to [0, 1] "
        "(LfF's sets: 0.005, its severity 4)",
        minimum=0.0,
    ),
    "palette": Setting(
        "lff",
        "the ten stroke colours: lff (LfF's release) | primaries (saturated primaries and white)",
        type=str,
        choices=PALETTE_NAMES,
    ),
    "bias_assignment": bias_assignment("lff"),
}
DOUBLE = {
    "rho_train": rho(0.025, "fraction of bias-conflicting training samples"),
    "bias_assignment": bias_assignment("random"),
    "core_brightness": Setting(0.5, "brightness factor of the left (core) digit", minimum=0.0),
    "spurious_brightness": Setting(1.0, "brightness factor of the right (spurious) digit", minimum=0.0),
}

# --- the natural sets (largelr.datasets.natural) and your own folder (largelr.datasets.folder) ----

IMAGE_SIZE = Setting(224, "side of the square the images are resized and centre-cropped to", type=int, minimum=8)
# `download` exists so that `download: true` gets a clear answer (there is no download for these).
NO_DOWNLOAD = Setting(False, "not available for this set: it needs a manual download", type=bool)
# The paper: "the spurious and core features are the hair color and gender, respectively". The
# common benchmark's roles (target Blond_Hair, spurious Male) are a config entry away.
CELEBA_PARAMS = {
    "target_attribute": Setting("Male", "CelebA attribute that is the label y (core; the paper: gender)", type=str),
    "spurious_attribute": Setting(
        "Blond_Hair", "CelebA attribute that is the bias label b (spurious; the paper: hair colour)", type=str
    ),
    "image_size": IMAGE_SIZE,
    "download": NO_DOWNLOAD,
}
WATERBIRDS_PARAMS = {
    "folder": Setting("waterbird_complete95_forest2water2", "folder under data_root holding metadata.csv", type=str),
    "image_size": IMAGE_SIZE,
    "download": NO_DOWNLOAD,
}
IMAGENET_PARAMS = {"image_size": IMAGE_SIZE, "download": NO_DOWNLOAD}
FOLDER_PARAMS = {
    "folder": Setting("", "folder under data_root holding the images and the CSV", type=str, pattern=r".+"),
    "metadata": Setting("metadata.csv", "CSV in the folder with columns path, y, split (and b for groups)", type=str),
    "image_size": Setting(32, "side of the square the images are resized and centre-cropped to", type=int, minimum=4),
    "grayscale": Setting(False, "read the images as one gray channel instead of RGB", type=bool),
}

# --- the records ---------------------------------------------------------------------------

SYNTHETIC = "largelr.datasets.synthetic"
CONSTRUCTIONS = "largelr.datasets.constructions"
FOLDER = "largelr.datasets.folder"
DATA_FILES = "largelr.data_files"  # the torch-free missing-files checks


def colored(name: str, base: str) -> Kind:
    return Kind(
        name,
        "digit strokes coloured by the bias (palette[b] + noise)",
        {
            **COLORED,
            **gray_base("base", base),
            **SUBSAMPLE,
            **FILE_PARAMS,
            **standardize_param(BASE_STANDARDIZATION[base]),
        },
        f"{CONSTRUCTIONS}:build_colored",
        f"{DATA_FILES}:missing_bases",
        oracle_background=True,
    )


def double(name: str, base: str) -> Kind:
    return Kind(
        name,
        "core digit left (dim), a digit of class b right (bright)",
        {
            **DOUBLE,
            **gray_base("base", base),
            **SUBSAMPLE,
            **FILE_PARAMS,
            **standardize_param(BASE_STANDARDIZATION[base]),
        },
        f"{CONSTRUCTIONS}:build_double",
        f"{DATA_FILES}:missing_bases",
        oracle_background=True,
    )


RECORDS = (
    Kind(
        name="parity",
        doc="y = parity of the core bits, b = parity of the spurious bits, plus independent noise bits (+-1 inputs)",
        params={
            # Defaults from benchmarks/parity_trial.py: with the lr_synthetic FCN, 7/3/6 gives test accuracy
            # rising with the learning rate (about 0.6 at 0.02 to 0.99 at 0.75); 8/3/10 is memorized at
            # every rate, and 8 core bits without noise are learned at every rate.
            "core_bits": count(7, "number of core bits (their parity is the label)"),
            "spurious_bits": count(3, "number of spurious bits (their parity is the bias label)"),
            "noise_bits": Setting(6, "number of noise bits (uniform +-1, independent of y and b)", type=int, minimum=0),
            "n_train": count(10000, "training samples"),
            "n_test": count(10000, "test samples"),
            "rho_train": rho(0.1, "fraction of bias-conflicting training samples"),
            "rho_test": rho(0.5, "fraction of bias-conflicting test samples (0.5: unbiased)"),
        },
        builder=f"{SYNTHETIC}:build_parity",
        flat_inputs=True,
        size_keys=("n_train", "n_test"),
        num_classes=2,
    ),
    Kind(
        name="moon_star",
        doc="moon vs star; b = the diagonal quadrant pair holding the object",
        params={
            "image_size": Setting(32, "side of the square image in pixels", type=int, minimum=8),
            "n_train": count(4000, "training samples"),
            "n_test": count(2000, "test samples"),
            "rho_train": rho(0.1, "fraction of bias-conflicting training samples"),
            "rho_test": rho(0.5, "fraction of bias-conflicting test samples (0.5: unbiased)"),
        },
        builder=f"{SYNTHETIC}:build_moon_star",
        oracle_background=True,
        size_keys=("n_train", "n_test"),
        num_classes=2,
    ),
    colored("colored_digits", "digits"),
    double("double_digits", "digits"),
    colored("colored_mnist", "mnist"),
    double("double_mnist", "mnist"),
    colored("colored_fashion_mnist", "fashion_mnist"),
    double("double_fashion_mnist", "fashion_mnist"),
    Kind(
        "mnist_cifar",
        "MNIST digit of class b stacked above a CIFAR-10 image of class y",
        {
            "rho_train": rho(0.1, "fraction of bias-conflicting training samples"),
            **gray_base("digit_base", "mnist"),
            "bias_assignment": bias_assignment("random"),
            **FILE_PARAMS,
            **standardize_param("none"),
        },
        f"{CONSTRUCTIONS}:build_mnist_cifar",
        f"{DATA_FILES}:missing_bases_and_cifar10",
    ),
    Kind(
        "corrupted_cifar10",
        "CIFAR-10 under corruption type b (LfF type 0)",
        {
            "rho_train": rho(0.1, "fraction of bias-conflicting training samples"),
            "cifar10c_level": Setting(
                LFF_SEVERITY4_LEVEL,
                "corruption level in CIFAR-10-C's numbering (1..5); LfF's "
                '"Severity4" sets call CIFAR-10-C\'s functions with severity + 1, i.e. level 5',
                type=int,
                minimum=1,
                maximum=5,
            ),
            "bias_assignment": bias_assignment("lff"),
            **FILE_PARAMS,
            **standardize_param("cifar10"),
        },
        f"{CONSTRUCTIONS}:build_corrupted_cifar10",
        f"{DATA_FILES}:missing_bases_and_cifar10",
        renamed=RENAMED_CORRUPTION_PARAMS,
    ),
    Kind(
        "cifar10",
        "CIFAR-10 as released; b = y",
        {**FILE_PARAMS, **standardize_param("cifar10")},
        f"{CONSTRUCTIONS}:build_cifar10",
        f"{DATA_FILES}:missing_bases_and_cifar10",
    ),
    Kind(
        "cifar100",
        "CIFAR-100 as released; b = y",
        {**FILE_PARAMS, **standardize_param("cifar100")},
        f"{CONSTRUCTIONS}:build_cifar100",
        f"{DATA_FILES}:missing_bases_and_cifar100",
    ),
    Kind(
        "celeba",
        "CelebA faces: y = target_attribute (Male), b = spurious_attribute (Blond_Hair), official splits (lazy)",
        CELEBA_PARAMS,
        "largelr.datasets.celeba:build_celeba",
        f"{DATA_FILES}:missing_celeba",
        worst_group=True,
    ),
    Kind(
        "waterbirds",
        "Waterbirds: y = bird type, b = place, metadata.csv splits (lazy)",
        WATERBIRDS_PARAMS,
        "largelr.datasets.waterbirds:build_waterbirds",
        f"{DATA_FILES}:missing_waterbirds",
        worst_group=True,
    ),
    Kind(
        "imagenet",
        "ImageNet ImageFolder trees, b = y (lazy)",
        IMAGENET_PARAMS,
        "largelr.datasets.imagenet:build_imagenet",
        f"{DATA_FILES}:missing_imagenet",
    ),
    Kind(
        "folder",
        "your own images: <data_root>/<folder>/ with a CSV of path, y, b, split (in memory)",
        FOLDER_PARAMS,
        f"{FOLDER}:build_folder",
        f"{DATA_FILES}:missing_folder",
    ),
)

KINDS: dict[str, Kind] = {kind.name: kind for kind in RECORDS}


def get_kind(name: str) -> Kind:
    """The record of dataset kind ``name``; a clear error naming the known kinds otherwise."""
    if name not in KINDS:
        raise ValueError(f"unknown dataset kind {name!r}; allowed: {sorted(KINDS)}")
    return KINDS[name]


def missing_data(kind: str, params: dict[str, Any], data_root: str | Path) -> str | None:
    """None when a dataset of ``kind`` can be built from ``data_root``, else a message saying which
    files are expected under which path and how to obtain them.

    Checks that files exist, nothing more (it runs for every requested dataset whenever the
    workflow is parsed); the data job itself checks structure and checksums.
    """
    record = get_kind(kind)
    return record.missing(record.merged_params(params), Path(data_root))
