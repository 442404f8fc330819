"""Constructions on image bases, and the plain class-labelled sets.

* ``colored_mnist`` / ``colored_digits``: digit strokes coloured by ``palette[b]`` plus noise
  (Nam et al. 2020, "Learning from Failure": its ten colours, noise std 0.005, clamped).
* ``double_mnist`` / ``double_digits``: the core digit on the left (dim), a digit of class b
  on the right (bright, spurious).
* ``mnist_cifar``: an MNIST digit of class b stacked above a CIFAR-10 image of class y
  (Shah et al. 2020's dominoes, 10 classes).
* ``corrupted_cifar10``: CIFAR-10 under corruption type b (LfF's Corrupted CIFAR-10, "type 0"), with
  the CIFAR-10-C parameters of :mod:`largelr.datasets.corruptions` at ``cifar10c_level`` (default 5:
  LfF's "Severity4" sets call the CIFAR-10-C functions with severity + 1).

Bias labels of Colored MNIST and Corrupted CIFAR-10 follow LfF's release by default
(``bias_assignment: lff``: deterministic per-class blocks, test split uniform over the ten bias
values); Double MNIST and MNIST-CIFAR, which do not follow LfF, draw them (``random``).
* ``cifar10`` / ``cifar100``: as released, b = y.

Each takes any compatible base: ``base`` (``digits`` or ``mnist``) for the colored and double
constructions, ``digit_base`` for the digit half of ``mnist_cifar``; ``colored_digits`` is
``colored_mnist`` with ``base: digits``, ``colored_fashion_mnist`` with ``base: fashion_mnist``
(:mod:`largelr.datasets.fashion`). ``n_train``/``n_test`` subsample the colored and double
constructions' base splits (before the bias is drawn). Bases are read by :mod:`largelr.datasets.bases`
and :mod:`largelr.datasets.fashion`, picked by name in :mod:`largelr.datasets.bases_by_name`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from largelr.datasets.bases import Base, load_cifar10_unit, load_cifar100, unit_range
from largelr.datasets.bases_by_name import load_gray
from largelr.datasets.corruptions import CORRUPTION_NAMES, corrupt, saved_as_uint8
from largelr.datasets.kind import (
    SplitTensors,
    assemble,
    assign_bias,
    lff_bias,
    split_generator,
    unbiased_bias,
)
from largelr.registry.kinds import BIAS_ASSIGNMENTS, LFF_SEVERITY_OFFSET

# LfF's ten colours (its release's data/resource/colors.th), RGB in [0, 1]; palette[b] colours the
# strokes of bias group b. Nam et al. 2020's Colored MNIST, which the paper cites for its set.
LFF_PALETTE = torch.tensor(
    [
        [0.983682, 0.312519, 0.168575],
        [0.990530, 0.915605, 0.351512],
        [0.672964, 0.461070, 0.579808],
        [0.783252, 0.831556, 0.601329],
        [0.088016, 0.777963, 0.981808],
        [0.321393, 0.961055, 0.446450],
        [0.024616, 0.235650, 0.758666],
        [0.555247, 0.101580, 0.761763],
        [0.207723, 0.392949, 0.018702],
        [0.833658, 0.202409, 0.266943],
    ]
)
# Saturated primaries plus white: clearly distinct colours, not LfF's (kept as a choice).
PRIMARIES_PALETTE = torch.tensor(
    [
        [1.0, 0.0, 0.0],  # red
        [0.0, 1.0, 0.0],  # green
        [0.0, 0.0, 1.0],  # blue
        [1.0, 1.0, 0.0],  # yellow
        [1.0, 0.0, 1.0],  # magenta
        [0.0, 1.0, 1.0],  # cyan
        [1.0, 0.5, 0.0],  # orange
        [0.5, 0.0, 1.0],  # violet
        [1.0, 1.0, 1.0],  # white
        [0.0, 0.5, 0.5],  # teal
    ]
)
PALETTES = {"lff": LFF_PALETTE, "primaries": PRIMARIES_PALETTE}
PALETTE = LFF_PALETTE  # the default
# LfF's colour noise std per its severities 1..5; its released sets use severity 4 (0.005).
LFF_COLOR_NOISE_STD = (0.05, 0.02, 0.01, 0.005, 0.002)


def ten_class_bias(
    y_train: torch.Tensor, y_test: torch.Tensor, rho_train: float, seed: int, assignment: str = "random"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Biased train labels and unbiased test labels over 10 classes: ``lff`` assigns both deterministically
    (aligned ratio 1 - rho_train in train, 0.1 in test: :func:`lff_bias`), ``random`` draws exactly
    round(rho N) conflicting train samples and uniform test labels."""
    if assignment == "lff":
        return lff_bias(y_train, 1.0 - rho_train, 10), lff_bias(y_test, 0.1, 10)
    if assignment != "random":
        raise ValueError(f"bias assignment {assignment!r} is not known; allowed: {list(BIAS_ASSIGNMENTS)}")
    b_train = assign_bias(y_train, rho_train, 10, split_generator(seed, "train"))
    b_test = unbiased_bias(len(y_test), 10, split_generator(seed, "test"))
    return b_train, b_test


def colorize(
    gray_images: torch.Tensor, b: torch.Tensor, palette: torch.Tensor, noise_std: float, generator: torch.Generator
) -> torch.Tensor:
    """Colour the strokes of [N, 1, H, W] gray images by ``palette[b]`` plus per-sample noise.

    Background (gray 0) stays black; output is [N, 3, H, W] (Colored MNIST of Nam et al. 2020).
    """
    noise = noise_std * torch.randn(len(b), palette.shape[1], generator=generator)
    colours = (palette[b] + noise).clamp(0.0, 1.0)
    return gray_images * colours[:, :, None, None]


def subsample_split(
    x: torch.Tensor, y: torch.Tensor, n: int | None, generator: torch.Generator, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples drawn uniformly without replacement, in their base order (all of them for None)."""
    if n is None:
        return x, y
    if n > len(y):
        raise ValueError(f"dataset parameter {where}={n}: the base has only {len(y)} samples in that split")
    chosen = torch.randperm(len(y), generator=generator)[:n].sort().values
    return x[chosen], y[chosen]


def subsampled(base: Base, params: dict[str, Any], seed: int) -> Base:
    """The base with ``n_train``/``n_test`` samples per split (before the bias is assigned, so rho is exact)."""
    x_train, y_train, x_test, y_test = base
    x_train, y_train = subsample_split(
        x_train, y_train, params.get("n_train"), split_generator(seed, "train-subsample"), "n_train"
    )
    x_test, y_test = subsample_split(
        x_test, y_test, params.get("n_test"), split_generator(seed, "test-subsample"), "n_test"
    )
    return x_train, y_train, x_test, y_test


def colored_from_base(name: str, base: Base, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Gray digits [N, 1, H, W] in [0, 1] whose stroke colour is the bias."""
    x_train, y_train, x_test, y_test = subsampled(base, params, seed)
    b_train, b_test = ten_class_bias(y_train, y_test, params["rho_train"], seed, params["bias_assignment"])
    # Colour noise has its own streams so that it does not shift the bias draws.
    noise, palette = params["color_noise_std"], PALETTES[params["palette"]]
    train = {
        "x": colorize(x_train, b_train, palette, noise, split_generator(seed, "train-colour")),
        "y": y_train,
        "b": b_train,
    }
    test = {
        "x": colorize(x_test, b_test, palette, noise, split_generator(seed, "test-colour")),
        "y": y_test,
        "b": b_test,
    }
    dataset = assemble(name, train, test, 10, 10, None, None, params, seed)
    dataset["bias_palette"] = palette.tolist()  # shown on the dataset card
    return dataset


def pick_images_with_labels(
    images: torch.Tensor, labels: torch.Tensor, wanted: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """For each entry of ``wanted``, a uniformly random image from ``images`` with that label."""
    picks = torch.empty(len(wanted), dtype=torch.long)
    for label in torch.unique(wanted):
        candidates = torch.nonzero(labels == label).flatten()
        if len(candidates) == 0:
            raise ValueError(f"no image with label {label.item()} to pick from")
        slots = torch.nonzero(wanted == label).flatten()
        picks[slots] = candidates[torch.randint(0, len(candidates), (len(slots),), generator=generator)]
    return images[picks]


def place_side_by_side(
    left: torch.Tensor, right: torch.Tensor, core_brightness: float, spurious_brightness: float
) -> torch.Tensor:
    """Concatenate [N, C, H, W] images along width, each half scaled by its brightness."""
    return torch.cat([core_brightness * left, spurious_brightness * right], dim=-1)


def double_digits_split(
    images: torch.Tensor, y: torch.Tensor, b: torch.Tensor, params: dict[str, Any], generator: torch.Generator
) -> SplitTensors:
    right = pick_images_with_labels(images, y, b, generator)
    x = place_side_by_side(images, right, params["core_brightness"], params["spurious_brightness"])
    return {"x": x, "y": y, "b": b}


def double_from_base(name: str, base: Base, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Own digit (label) on the left, a digit of class b (bias) on the right."""
    x_train, y_train, x_test, y_test = subsampled(base, params, seed)
    b_train, b_test = ten_class_bias(y_train, y_test, params["rho_train"], seed, params["bias_assignment"])
    train = double_digits_split(x_train, y_train, b_train, params, split_generator(seed, "train-pick"))
    test = double_digits_split(x_test, y_test, b_test, params, split_generator(seed, "test-pick"))
    channels, height, width = x_train.shape[1:]
    spurious_mask = torch.zeros(channels, height, 2 * width, dtype=torch.bool)
    spurious_mask[..., width:] = True
    return assemble(name, train, test, 10, 10, spurious_mask, ~spurious_mask, params, seed)


def top_bottom_mask(channels: int, half_height: int, width: int) -> torch.Tensor:
    """Bool mask of shape [C, 2 * half_height, W], True on the top half."""
    mask = torch.zeros(channels, 2 * half_height, width, dtype=torch.bool)
    mask[:, :half_height] = True
    return mask


def stack_above(digits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Gray digits [N, 1, h, w], zero-padded to the images' size and copied to their channels,
    stacked above images [N, C, H, W]: [N, C, 2H, W] (Shah et al.'s dominoes)."""
    height, width = images.shape[-2:]
    pad_h, pad_w = height - digits.shape[-2], width - digits.shape[-1]
    padded = F.pad(digits, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return torch.cat([padded.expand(-1, images.shape[1], -1, -1), images], dim=-2)


def dominoes_split(
    digits: torch.Tensor,
    digit_labels: torch.Tensor,
    images: torch.Tensor,
    y: torch.Tensor,
    b: torch.Tensor,
    generator: torch.Generator,
) -> SplitTensors:
    tops = pick_images_with_labels(digits, digit_labels, b, generator)
    return {"x": stack_above(tops, images), "y": y, "b": b}


def mnist_cifar_from_bases(mnist: Base, cifar: Base, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """CIFAR-10 object (label) below an MNIST digit of class b (bias), drawn from the same split."""
    digits_train, digit_labels_train, digits_test, digit_labels_test = mnist
    x_train, y_train, x_test, y_test = cifar
    b_train, b_test = ten_class_bias(y_train, y_test, params["rho_train"], seed, params["bias_assignment"])
    train = dominoes_split(
        digits_train, digit_labels_train, x_train, y_train, b_train, split_generator(seed, "train-pick")
    )
    test = dominoes_split(digits_test, digit_labels_test, x_test, y_test, b_test, split_generator(seed, "test-pick"))
    spurious_mask = top_bottom_mask(*x_train.shape[1:])
    return assemble("mnist_cifar", train, test, 10, 10, spurious_mask, ~spurious_mask, params, seed)


def build_mnist_cifar(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    digits = load_gray(params["digit_base"], data_root, params)
    return mnist_cifar_from_bases(digits, load_cifar10_unit(data_root, params), params, seed)


def corrupt_by_bias(images: torch.Tensor, b: torch.Tensor, level: int, seed: int, split: str) -> torch.Tensor:
    """Images with b = k get corruption CORRUPTION_NAMES[k], from generator (seed, split-corrupt, k), saved
    on the 8-bit grid as CIFAR-10-C saves its images."""
    corrupted = images.clone()
    for kind, name in enumerate(CORRUPTION_NAMES):
        members = torch.nonzero(b == kind).flatten()
        generator = split_generator(seed, f"{split}-corrupt", kind)
        corrupted[members] = saved_as_uint8(corrupt(images[members], name, level, generator))  # CIFAR-10-C level
    return corrupted


def corrupted_cifar10_from_base(cifar: Base, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """CIFAR-10 object (label) under corruption type b (bias), LfF's Corrupted CIFAR-10."""
    x_train, y_train, x_test, y_test = cifar
    b_train, b_test = ten_class_bias(y_train, y_test, params["rho_train"], seed, params["bias_assignment"])
    level = params["cifar10c_level"]
    train = {"x": corrupt_by_bias(x_train, b_train, level, seed, "train"), "y": y_train, "b": b_train}
    test = {"x": corrupt_by_bias(x_test, b_test, level, seed, "test"), "y": y_test, "b": b_test}
    return assemble("corrupted_cifar10", train, test, 10, len(CORRUPTION_NAMES), None, None, params, seed)


def build_corrupted_cifar10(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    return corrupted_cifar10_from_base(load_cifar10_unit(data_root, params), params, seed)


def cifar10c_level(lff_severity: int) -> int:
    """The CIFAR-10-C level of LfF's "Severity s" Corrupted CIFAR-10 (s in 0..4): s + 1."""
    if not 0 <= lff_severity <= 4:
        raise ValueError(f"LfF severity {lff_severity} outside 0..4 (its sets are named Severity0..Severity4)")
    return lff_severity + LFF_SEVERITY_OFFSET


def plain_from_base(name: str, base: Base, num_classes: int, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Images and class labels as released; no known spurious feature, so b = y (rho 0).

    b = y keeps every reader's (y, b) bookkeeping valid (one group per class; BA accuracy is
    plain accuracy). Only attribution-based spurious measures apply. The official splits are
    used, so ``seed`` is only recorded.
    """
    x_train, y_train, x_test, y_test = base
    train, test = {"x": x_train, "y": y_train, "b": y_train.clone()}, {"x": x_test, "y": y_test, "b": y_test.clone()}
    return assemble(name, train, test, num_classes, num_classes, None, None, params, seed)


def build_cifar10(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    return plain_from_base("cifar10", load_cifar10_unit(data_root, params), 10, params, seed)


def build_cifar100(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    base = unit_range(load_cifar100(data_root, params["download"], params["verify_checksums"]))
    return plain_from_base("cifar100", base, 100, params, seed)


# --- the builders the records in largelr.registry.kinds name (their file checks: data_files) ---


def build_colored(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """A colored set of its gray ``base``, named after it (colored_digits, colored_mnist, ...)."""
    base = params["base"]
    return colored_from_base(f"colored_{base}", load_gray(base, data_root, params), params, seed)


def build_double(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """A double set of its gray ``base``, named after it (double_digits, double_mnist, ...)."""
    base = params["base"]
    return double_from_base(f"double_{base}", load_gray(base, data_root, params), params, seed)
