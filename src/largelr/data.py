"""Datasets with a core feature (label ``y``) and a spurious feature (bias label ``b``).

A sample is bias-aligned (BA) when ``y == b`` and bias-conflicting (BC) otherwise; ``rho`` is
the fraction of BC samples. Training sets have small ``rho``; test sets are unbiased or
balanced. A dataset is a plain dict of tensors and python scalars so that ``torch.load`` with
``weights_only=True`` can read it back:

``name``, ``train``/``test`` (and ``val`` where the source has one), each ``{"x", "y", "b",
"g"}`` with ``g = y * num_bias + b`` the (y, b) group id; ``num_classes``, ``num_bias``,
``input_shape``, ``spurious_mask`` and ``core_mask`` (bool tensors of ``input_shape`` marking
where each feature lives in the input, or None), ``normalization``, ``params`` (construction
parameters used, with ``seed`` and the realized ``rho`` of each split). Lazily read natural sets
(:mod:`largelr.natural`) hold image paths instead of ``x``. On disk, ``x`` is stored compactly
(uint8, int8 or float16; see ``encode_inputs``); :func:`load_dataset` returns float32.

Constructions on real image sets (``colored_mnist``, ``double_mnist``, ``mnist_cifar``,
``corrupted_cifar10``) and the plain ``cifar10``/``cifar100`` read their bases with
:mod:`largelr.bases` from ``data_root``; their ``download`` parameter lets torchvision fetch
missing files and ``verify_checksums`` checks the files against the official release. A
construction takes any compatible base: ``base`` (``digits`` or ``mnist``) for the colored and
double constructions, ``digit_base`` for the digit half of ``mnist_cifar``; ``colored_digits``
is ``colored_mnist`` with ``base: digits``. :func:`missing_data` tells, from file existence
alone, whether a dataset can be built.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from largelr.bases import Base, load_cifar10, load_cifar100, load_mnist, missing_cifar, missing_mnist
from largelr.corruptions import CORRUPTION_NAMES, corrupt
from largelr.io import atomic_torch_save
from largelr.natural import NATURAL_DATASETS, NATURAL_DEFAULTS, NATURAL_MISSING

Split = dict[str, torch.Tensor]

# Clearly distinct RGB colours in [0, 1]; palette[b] colours the strokes of bias group b.
PALETTE = torch.tensor(
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

DIGITS_SIZE = 28
DIGITS_TEST_FRACTION = 0.3
# Fixed so that every seed of every digits-based set shares one base train/test split.
DIGITS_SPLIT_SEED = 12345

STAR_INNER_RATIO = 0.4
MOON_CUT_OFFSET = 0.5  # centre of the cut-out disk, in units of the moon radius
MOON_CUT_RADIUS = 0.8  # radius of the cut-out disk, in units of the moon radius

# How files under data_root are fetched and checked (see largelr.bases); ignored for the digits base.
FILE_OPTIONS = {"download": False, "verify_checksums": True}
COLORED = {"rho_train": 0.025, "color_noise_std": 0.005}
DOUBLE = {"rho_train": 0.025, "core_brightness": 0.5, "spurious_brightness": 1.0}

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "parity": {"core_bits": 12, "spurious_bits": 4, "n_train": 10000, "n_test": 10000, "rho_train": 0.1, "rho_test": 0.5},
    "moon_star": {"image_size": 32, "n_train": 4000, "n_test": 2000, "rho_train": 0.1, "rho_test": 0.5},
    # A construction takes any compatible base: `base` (gray digits) and `digit_base` choose it.
    "colored_digits": {**COLORED, "base": "digits", **FILE_OPTIONS},
    "double_digits": {**DOUBLE, "base": "digits", **FILE_OPTIONS},
    "colored_mnist": {**COLORED, "base": "mnist", **FILE_OPTIONS},
    "double_mnist": {**DOUBLE, "base": "mnist", **FILE_OPTIONS},
    "mnist_cifar": {"rho_train": 0.1, "digit_base": "mnist", **FILE_OPTIONS},
    "corrupted_cifar10": {"rho_train": 0.1, "severity": 4, **FILE_OPTIONS},
    # Plain class-labelled sets: no spurious feature, so b = y (rho 0, one group per class).
    "cifar10": {**FILE_OPTIONS},
    "cifar100": {**FILE_OPTIONS},
    **NATURAL_DEFAULTS,  # celeba, waterbirds, imagenet: read lazily (largelr.natural)
}

# Gray-digit bases the colored, double and dominoes constructions accept.
GRAY_BASES = ("digits", "mnist")
PARAM_CHOICES: dict[str, tuple[str, ...]] = {"base": GRAY_BASES, "digit_base": GRAY_BASES}

# Smallest allowed value of each numeric parameter (rho values are also capped at 1).
PARAM_MINIMA: dict[str, float] = {
    "core_bits": 1, "spurious_bits": 1, "n_train": 1, "n_test": 1, "image_size": 8,
    "rho_train": 0.0, "rho_test": 0.0, "color_noise_std": 0.0, "core_brightness": 0.0, "spurious_brightness": 0.0,
    "severity": 1,
}
# Largest allowed value where there is one besides rho's 1.
PARAM_MAXIMA: dict[str, float] = {"severity": 5}


# --- bias labels -------------------------------------------------------------------------


def group_ids(y: torch.Tensor, b: torch.Tensor, num_bias: int) -> torch.Tensor:
    """One id per (class, bias) group: ``y * num_bias + b`` (stored per sample as ``g``)."""
    return y * num_bias + b


def assign_bias(y: torch.Tensor, rho: float, num_bias: int, generator: torch.Generator) -> torch.Tensor:
    """Bias labels with exactly ``round(rho * N)`` bias-conflicting samples.

    Rule: ``n_bc = round(rho * N)`` samples, chosen uniformly at random (``torch.randperm``
    with ``generator``), get a bias label drawn uniformly among the ``num_bias - 1`` values
    different from their ``y``; all other samples get ``b = y``. Requires ``0 <= y < num_bias``
    and ``num_bias >= 2``.
    """
    n_conflicting = round(rho * len(y))
    conflicting = torch.randperm(len(y), generator=generator)[:n_conflicting]
    # A nonzero shift modulo num_bias hits each value != y exactly once.
    shift = torch.randint(1, num_bias, (n_conflicting,), generator=generator)
    b = y.clone()
    b[conflicting] = (y[conflicting] + shift) % num_bias
    return b


def unbiased_bias(n: int, num_bias: int, generator: torch.Generator) -> torch.Tensor:
    """Bias labels uniform over all values, independent of y (rho about (num_bias-1)/num_bias)."""
    return torch.randint(0, num_bias, (n,), generator=generator)


def realized_rho(split: Split) -> float:
    return (split["y"] != split["b"]).double().mean().item()


# --- parity ------------------------------------------------------------------------------


def random_signs(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Uniform random entries in {-1, +1}."""
    return 1.0 - 2.0 * torch.randint(0, 2, shape, generator=generator).float()


def sign_parity(bits: torch.Tensor) -> torch.Tensor:
    """Number of -1 entries per row, modulo 2."""
    return (bits < 0).sum(dim=1) % 2


def signs_with_parity(parity: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Rows uniform among {-1,+1}^length vectors whose sign parity equals ``parity``."""
    free = random_signs((len(parity), length - 1), generator)
    # The last bit is -1 exactly when the free bits' parity still has to flip.
    last = torch.where(sign_parity(free) == parity, 1.0, -1.0)
    return torch.cat([free, last[:, None]], dim=1)


def parity_split(core_bits: int, spurious_bits: int, n: int, rho: float, generator: torch.Generator) -> Split:
    core = random_signs((n, core_bits), generator)
    y = sign_parity(core)
    b = assign_bias(y, rho, 2, generator)
    spurious = signs_with_parity(b, spurious_bits, generator)
    return {"x": torch.cat([core, spurious], dim=1), "y": y, "b": b}


def build_parity(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """Label = parity of the core bits; bias = parity of the spurious bits."""
    core_bits, spurious_bits = params["core_bits"], params["spurious_bits"]
    train = parity_split(core_bits, spurious_bits, params["n_train"], params["rho_train"], split_generator(seed, "train"))
    test = parity_split(core_bits, spurious_bits, params["n_test"], params["rho_test"], split_generator(seed, "test"))
    spurious_mask = torch.arange(core_bits + spurious_bits) >= core_bits
    return assemble("parity", train, test, 2, 2, spurious_mask, ~spurious_mask, params, seed)


# --- moon vs star ------------------------------------------------------------------------


def pixel_centres(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column coordinates of pixel centres, each of shape [1, size, size]."""
    coords = torch.arange(size, dtype=torch.float64) + 0.5
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    return rows[None], cols[None]


def inside_disks(rows: torch.Tensor, cols: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """[N, S, S] mask of pixels inside disk n (centres [N, 2] as (row, col), radii [N])."""
    distance_sq = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    return distance_sq <= radii[:, None, None] ** 2


def draw_moons(size: int, centres: torch.Tensor, radii: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Crescents: a disk minus a smaller disk shifted towards ``angles``; [N, S, S] bool."""
    rows, cols = pixel_centres(size)
    direction = torch.stack([-torch.sin(angles), torch.cos(angles)], dim=1)
    cut_centres = centres + MOON_CUT_OFFSET * radii[:, None] * direction
    disk = inside_disks(rows, cols, centres, radii)
    return disk & ~inside_disks(rows, cols, cut_centres, MOON_CUT_RADIUS * radii)


def star_vertices(centres: torch.Tensor, radii: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """[N, 10, 2] vertices (row, col) of 5-pointed stars, alternating outer and inner points."""
    steps = torch.arange(10, dtype=torch.float64)
    vertex_angles = angles[:, None] + steps * math.pi / 5
    vertex_radii = radii[:, None] * torch.where(steps % 2 == 0, 1.0, STAR_INNER_RATIO)
    rows = centres[:, 0, None] - vertex_radii * torch.sin(vertex_angles)
    cols = centres[:, 1, None] + vertex_radii * torch.cos(vertex_angles)
    return torch.stack([rows, cols], dim=2)


def inside_polygons(size: int, vertices: torch.Tensor) -> torch.Tensor:
    """[N, S, S] even-odd point-in-polygon test of pixel centres (ray cast towards +col)."""
    rows, cols = pixel_centres(size)
    inside = torch.zeros(len(vertices), size, size, dtype=torch.bool)
    for start, end in zip(vertices.unbind(1), vertices.roll(-1, dims=1).unbind(1)):
        r1, c1, r2, c2 = (v[:, None, None] for v in (start[:, 0], start[:, 1], end[:, 0], end[:, 1]))
        spans_row = (r1 > rows) != (r2 > rows)
        # Horizontal edges never span a row; the guard only avoids dividing by zero.
        slope = (c2 - c1) / torch.where(r2 == r1, 1.0, r2 - r1)
        inside ^= spans_row & (cols < c1 + (rows - r1) * slope)
    return inside


def draw_stars(size: int, centres: torch.Tensor, radii: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    return inside_polygons(size, star_vertices(centres, radii, angles))


def object_placements(b: torch.Tensor, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres [N, 2] and radii [N] that keep each object inside one quadrant of its bias pair.

    Bias 0 uses the top-left/bottom-right quadrants, bias 1 top-right/bottom-left, i.e.
    ``b = row_half XOR col_half``.
    """
    n, quadrant = len(b), size / 2
    row_half = torch.randint(0, 2, (n,), generator=generator)
    col_half = row_half ^ b
    radii = quadrant * (0.3 + 0.15 * torch.rand(n, generator=generator, dtype=torch.float64))
    slack = (quadrant / 2 - radii)[:, None]
    jitter = slack * (2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1)
    centres = quadrant * (torch.stack([row_half, col_half], dim=1).double() + 0.5) + jitter
    return centres, radii


def moon_star_split(size: int, n: int, rho: float, generator: torch.Generator) -> Split:
    y = (torch.arange(n) % 2)[torch.randperm(n, generator=generator)]  # balanced classes
    b = assign_bias(y, rho, 2, generator)
    centres, radii = object_placements(b, size, generator)
    angles = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    is_star = (y == 1)[:, None, None]
    images = torch.where(is_star, draw_stars(size, centres, radii, angles), draw_moons(size, centres, radii, angles))
    return {"x": images.float()[:, None], "y": y, "b": b}


def build_moon_star(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """Moon (y=0) or star (y=1); the bias is which diagonal quadrant pair holds the object."""
    size = params["image_size"]
    train = moon_star_split(size, params["n_train"], params["rho_train"], split_generator(seed, "train"))
    test = moon_star_split(size, params["n_test"], params["rho_test"], split_generator(seed, "test"))
    return assemble("moon_star", train, test, 2, 2, None, None, params, seed)


# --- digits base and its constructions ----------------------------------------------------


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


def ten_class_bias(y_train: torch.Tensor, y_test: torch.Tensor, rho_train: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Biased train labels (exact-count rule) and unbiased test labels over 10 classes."""
    b_train = assign_bias(y_train, rho_train, 10, split_generator(seed, "train"))
    b_test = unbiased_bias(len(y_test), 10, split_generator(seed, "test"))
    return b_train, b_test


def colorize(gray_images: torch.Tensor, b: torch.Tensor, palette: torch.Tensor, noise_std: float, generator: torch.Generator) -> torch.Tensor:
    """Colour the strokes of [N, 1, H, W] gray images by ``palette[b]`` plus per-sample noise.

    Background (gray 0) stays black; output is [N, 3, H, W] (Colored MNIST of Nam et al. 2020).
    """
    noise = noise_std * torch.randn(len(b), palette.shape[1], generator=generator)
    colours = (palette[b] + noise).clamp(0.0, 1.0)
    return gray_images * colours[:, :, None, None]


def colored_from_base(name: str, base: Base, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Gray digits [N, 1, H, W] in [0, 1] whose stroke colour is the bias."""
    x_train, y_train, x_test, y_test = base
    b_train, b_test = ten_class_bias(y_train, y_test, params["rho_train"], seed)
    # Colour noise has its own streams so that it does not shift the bias draws.
    noise = params["color_noise_std"]
    train = {"x": colorize(x_train, b_train, PALETTE, noise, split_generator(seed, "train-colour")), "y": y_train, "b": b_train}
    test = {"x": colorize(x_test, b_test, PALETTE, noise, split_generator(seed, "test-colour")), "y": y_test, "b": b_test}
    return assemble(name, train, test, 10, 10, None, None, params, seed)


def load_gray_base(base: str, data_root: str | Path, params: dict[str, Any]) -> Base:
    """Gray digits in [0, 1] ([N, 1, 28, 28]) from base ``digits`` (offline) or ``mnist`` (data_root)."""
    if base == "digits":
        return load_digits_base()
    if base == "mnist":
        return load_mnist_unit(data_root, params)
    raise ValueError(f"dataset parameter base={base!r}: allowed {list(GRAY_BASES)}")


def build_colored_digits(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    return colored_from_base("colored_digits", load_gray_base(params["base"], data_root, params), params, seed)


def build_colored_mnist(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    return colored_from_base("colored_mnist", load_gray_base(params["base"], data_root, params), params, seed)


def pick_images_with_labels(images: torch.Tensor, labels: torch.Tensor, wanted: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each entry of ``wanted``, a uniformly random image from ``images`` with that label."""
    picks = torch.empty(len(wanted), dtype=torch.long)
    for label in torch.unique(wanted):
        candidates = torch.nonzero(labels == label).flatten()
        if len(candidates) == 0:
            raise ValueError(f"no image with label {label.item()} to pick from")
        slots = torch.nonzero(wanted == label).flatten()
        picks[slots] = candidates[torch.randint(0, len(candidates), (len(slots),), generator=generator)]
    return images[picks]


def place_side_by_side(left: torch.Tensor, right: torch.Tensor, core_brightness: float, spurious_brightness: float) -> torch.Tensor:
    """Concatenate [N, C, H, W] images along width, each half scaled by its brightness."""
    return torch.cat([core_brightness * left, spurious_brightness * right], dim=-1)


def double_digits_split(images: torch.Tensor, y: torch.Tensor, b: torch.Tensor, params: dict[str, Any], generator: torch.Generator) -> Split:
    right = pick_images_with_labels(images, y, b, generator)
    x = place_side_by_side(images, right, params["core_brightness"], params["spurious_brightness"])
    return {"x": x, "y": y, "b": b}


def double_from_base(name: str, base: Base, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Own digit (label) on the left, a digit of class b (bias) on the right."""
    x_train, y_train, x_test, y_test = base
    b_train, b_test = ten_class_bias(y_train, y_test, params["rho_train"], seed)
    train = double_digits_split(x_train, y_train, b_train, params, split_generator(seed, "train-pick"))
    test = double_digits_split(x_test, y_test, b_test, params, split_generator(seed, "test-pick"))
    channels, height, width = x_train.shape[1:]
    spurious_mask = torch.zeros(channels, height, 2 * width, dtype=torch.bool)
    spurious_mask[..., width:] = True
    return assemble(name, train, test, 10, 10, spurious_mask, ~spurious_mask, params, seed)


def build_double_digits(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    return double_from_base("double_digits", load_gray_base(params["base"], data_root, params), params, seed)


def build_double_mnist(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    return double_from_base("double_mnist", load_gray_base(params["base"], data_root, params), params, seed)


# --- real image bases: MNIST, CIFAR-10 -----------------------------------------------------


def unit_range(base: Base) -> Base:
    """uint8 images as float32 in [0, 1]; labels unchanged."""
    x_train, y_train, x_test, y_test = base
    return x_train.float() / 255, y_train, x_test.float() / 255, y_test


def load_mnist_unit(data_root: str | Path, params: dict[str, Any]) -> Base:
    return unit_range(load_mnist(data_root, params["download"], params["verify_checksums"]))


def load_cifar10_unit(data_root: str | Path, params: dict[str, Any]) -> Base:
    return unit_range(load_cifar10(data_root, params["download"], params["verify_checksums"]))


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


def dominoes_split(digits: torch.Tensor, digit_labels: torch.Tensor, images: torch.Tensor, y: torch.Tensor, b: torch.Tensor,
                   generator: torch.Generator) -> Split:
    tops = pick_images_with_labels(digits, digit_labels, b, generator)
    return {"x": stack_above(tops, images), "y": y, "b": b}


def mnist_cifar_from_bases(mnist: Base, cifar: Base, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """CIFAR-10 object (label) below an MNIST digit of class b (bias), drawn from the same split."""
    digits_train, digit_labels_train, digits_test, digit_labels_test = mnist
    x_train, y_train, x_test, y_test = cifar
    b_train, b_test = ten_class_bias(y_train, y_test, params["rho_train"], seed)
    train = dominoes_split(digits_train, digit_labels_train, x_train, y_train, b_train, split_generator(seed, "train-pick"))
    test = dominoes_split(digits_test, digit_labels_test, x_test, y_test, b_test, split_generator(seed, "test-pick"))
    spurious_mask = top_bottom_mask(*x_train.shape[1:])
    return assemble("mnist_cifar", train, test, 10, 10, spurious_mask, ~spurious_mask, params, seed)


def build_mnist_cifar(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    digits = load_gray_base(params["digit_base"], data_root, params)
    return mnist_cifar_from_bases(digits, load_cifar10_unit(data_root, params), params, seed)


def corrupt_by_bias(images: torch.Tensor, b: torch.Tensor, severity: int, seed: int, split: str) -> torch.Tensor:
    """Images with b = k get corruption CORRUPTION_NAMES[k], from generator (seed, split-corrupt, k)."""
    corrupted = images.clone()
    for kind, name in enumerate(CORRUPTION_NAMES):
        members = torch.nonzero(b == kind).flatten()
        corrupted[members] = corrupt(images[members], name, severity, split_generator(seed, f"{split}-corrupt", kind))
    return corrupted


def corrupted_cifar10_from_base(cifar: Base, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """CIFAR-10 object (label) under corruption type b (bias), LfF's Corrupted CIFAR-10."""
    x_train, y_train, x_test, y_test = cifar
    b_train, b_test = ten_class_bias(y_train, y_test, params["rho_train"], seed)
    severity = params["severity"]
    train = {"x": corrupt_by_bias(x_train, b_train, severity, seed, "train"), "y": y_train, "b": b_train}
    test = {"x": corrupt_by_bias(x_test, b_test, severity, seed, "test"), "y": y_test, "b": b_test}
    return assemble("corrupted_cifar10", train, test, 10, len(CORRUPTION_NAMES), None, None, params, seed)


def build_corrupted_cifar10(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    return corrupted_cifar10_from_base(load_cifar10_unit(data_root, params), params, seed)


# --- plain class-labelled sets: CIFAR-10, CIFAR-100 ------------------------------------------


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


# --- registry, assembly, files ------------------------------------------------------------

DATASETS: dict[str, Callable[[dict[str, Any], str | Path, int], dict[str, Any]]] = {
    "parity": build_parity,
    "moon_star": build_moon_star,
    "colored_digits": build_colored_digits,
    "double_digits": build_double_digits,
    "colored_mnist": build_colored_mnist,
    "double_mnist": build_double_mnist,
    "mnist_cifar": build_mnist_cifar,
    "corrupted_cifar10": build_corrupted_cifar10,
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
    **NATURAL_DATASETS,
}

# Append only: a stream's position seeds it, so reordering would change every dataset.
SPLIT_STREAMS = ("train", "test", "train-colour", "test-colour", "train-pick", "test-pick", "train-corrupt", "test-corrupt")


def split_generator(seed: int, stream: str, *indices: int) -> torch.Generator:
    """Independent generator per (seed, stream, indices), so train and test draws never overlap."""
    state = np.random.SeedSequence([seed, SPLIT_STREAMS.index(stream), *indices]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def with_group_ids(split: Split, num_bias: int) -> Split:
    return {**split, "g": group_ids(split["y"], split["b"], num_bias)}


def assemble(name: str, train: Split, test: Split, num_classes: int, num_bias: int, spurious_mask: torch.Tensor | None,
             core_mask: torch.Tensor | None, params: dict[str, Any], seed: int) -> dict[str, Any]:
    recorded = {**params, "seed": seed, "realized_rho_train": realized_rho(train), "realized_rho_test": realized_rho(test)}
    return {
        "name": name,
        "train": with_group_ids(train, num_bias),
        "test": with_group_ids(test, num_bias),
        "num_classes": num_classes,
        "num_bias": num_bias,
        "input_shape": list(train["x"].shape[1:]),
        "spurious_mask": spurious_mask,
        "core_mask": core_mask,
        "params": recorded,
        # Inputs are used as stored (pixels in [0, 1], parity bits in {-1, 1}): identity normalization.
        "normalization": {"mean": 0.0, "std": 1.0},
    }


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(key: str, value: Any, default: Any) -> Any:
    """The value in the default's type; raises ValueError for a wrong type or out-of-range value."""
    expected = type(default).__name__
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"dataset parameter {key}={value!r}: expected a string")
        if key in PARAM_CHOICES and value not in PARAM_CHOICES[key]:
            raise ValueError(f"dataset parameter {key}={value!r}: allowed {list(PARAM_CHOICES[key])}")
        return value
    if isinstance(default, bool):  # before the numeric cases: bool is an int subclass
        if not isinstance(value, bool):
            raise ValueError(f"dataset parameter {key}={value!r}: expected true or false")
        return value
    if isinstance(default, float) and is_number(value):
        value = float(value)
    elif not (isinstance(default, int) and is_number(value) and float(value).is_integer()):
        raise ValueError(f"dataset parameter {key}={value!r}: expected {expected}")
    value = type(default)(value)
    upper = 1.0 if key.startswith("rho") else PARAM_MAXIMA.get(key, math.inf)
    if not PARAM_MINIMA[key] <= value <= upper:
        raise ValueError(f"dataset parameter {key}={value!r}: allowed range [{PARAM_MINIMA[key]}, {upper}]")
    return value


def merge_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults of dataset ``name`` overridden by ``params``; unknown keys raise ValueError."""
    defaults = DATASET_DEFAULTS[name]
    for key in params:
        if key not in defaults:
            raise ValueError(f"unknown parameter {key!r} for dataset {name!r}; allowed keys: {sorted(defaults)}")
    return {key: check_value(key, params.get(key, default), default) for key, default in defaults.items()}


def build_dataset(name: str, params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """Build dataset ``name`` from its defaults overridden by ``params``, deterministically in ``seed``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {sorted(DATASETS)}")
    return DATASETS[name](merge_params(name, params), data_root, seed)


def sample_indices(n_total: int, n_samples: int, seed: int) -> torch.Tensor:
    """A fixed seeded subset of indices, so every cell of a dataset is analysed on the same inputs."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=generator)[: min(n_samples, n_total)].sort().values


# --- storage: compact on disk, float32 in memory ------------------------------------------
#
# Inputs are stored in the smallest dtype that keeps them as the construction made them, and
# load_dataset returns float32 again. Per split, ``x`` holds the stored tensor and ``x_divisor``
# (a float) the scale: in memory ``x = stored.float() / x_divisor``.
#   uint8, divisor 255: pixels on the 1/255 grid (MNIST, CIFAR and their stackings, moon-star),
#       decoded bit for bit as the construction computed them (it also divides by 255);
#   int8, divisor 1: small integers (parity's +-1 bits), exact;
#   float16, divisor 1: other pixels in [0, 1] (colour noise, brightness factors, corruptions,
#       bilinear upsampling), absolute error <= 2**-12, 1/16 of a gray level;
#   float32: anything else, as is.

GRAY_LEVELS = 255.0
GRID_CHUNK = 1024  # samples per step of the grid check


def encode_inputs(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(stored tensor, divisor) for float inputs; see the table above."""
    if x.dtype != torch.float32 or x.numel() == 0:
        return x, 1.0
    low, high = x.min().item(), x.max().item()
    if 0.0 <= low and high <= 1.0:
        levels = gray_levels(x)
        return (levels, GRAY_LEVELS) if levels is not None else (x.to(torch.float16), 1.0)
    if -128.0 <= low and high <= 127.0:
        integers = x.to(torch.int8)
        if torch.equal(integers.float(), x):
            return integers, 1.0
    return x, 1.0


def gray_levels(x: torch.Tensor) -> torch.Tensor | None:
    """round(x * 255) as uint8 if dividing it by 255 gives x back bit for bit, else None.

    Works in chunks of samples: no full-size float temporaries, and off-grid data (most of it)
    stops at the first chunk.
    """
    levels = torch.empty(x.shape, dtype=torch.uint8)
    for start in range(0, len(x), GRID_CHUNK):
        chunk = x[start:start + GRID_CHUNK]
        rounded = torch.round(chunk * GRAY_LEVELS)
        if not torch.equal(rounded / GRAY_LEVELS, chunk):
            return None
        levels[start:start + GRID_CHUNK] = rounded.to(torch.uint8)
    return levels


def decode_inputs(stored: torch.Tensor, divisor: float) -> torch.Tensor:
    decoded = stored.float()  # a no-op for float32
    return decoded if divisor == 1.0 else decoded.div_(divisor)  # in place: one full-size tensor, not two


SPLIT_NAMES = ("train", "val", "test")


def save_dataset(dataset: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temporary file, then rename), inputs in their compact dtype, with group ids."""
    stored = dict(dataset)
    for split in SPLIT_NAMES:
        if split not in dataset:
            continue
        part = dict(dataset[split])
        if "g" not in part:
            part["g"] = group_ids(part["y"], part["b"], dataset["num_bias"])
        if "x" in part:
            part["x"], part["x_divisor"] = encode_inputs(part["x"])
        stored[split] = part
    atomic_torch_save(stored, path)


def load_dataset(path: str | Path) -> dict[str, Any]:
    """The dataset dict with float32 inputs, as built (see the storage table above)."""
    dataset = torch.load(path, map_location="cpu", weights_only=True)
    for split in SPLIT_NAMES:
        part = dataset.get(split)
        if part is not None and "x" in part:
            part["x"] = decode_inputs(part["x"], part.pop("x_divisor", 1.0))
    return dataset


# --- data availability --------------------------------------------------------------------


# Bases read from data_root besides the `base` / `digit_base` parameter, per kind.
FIXED_BASES: dict[str, tuple[str, ...]] = {
    "mnist_cifar": ("cifar10",), "corrupted_cifar10": ("cifar10",), "cifar10": ("cifar10",), "cifar100": ("cifar100",),
}


def missing_base(base: str, root: Path) -> str | None:
    if base == "digits":  # bundled with scikit-learn
        return None
    if base == "mnist":
        return missing_mnist(root)
    return missing_cifar({"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[base], root)


def missing_data(kind: str, params: dict[str, Any], data_root: str) -> str | None:
    """None when dataset ``kind`` can be built from ``data_root``, else a message saying which files
    are expected under which path and how to obtain them.

    Checks that files exist, nothing more (it runs for every dataset whenever the workflow is
    parsed); the data job itself checks structure and checksums. Synthetic sets and sets on the
    digits base always return None, and so does a base with ``download: true`` (the data job
    fetches it).
    """
    if kind not in DATASET_DEFAULTS:
        raise ValueError(f"unknown dataset kind {kind!r}; allowed: {sorted(DATASET_DEFAULTS)}")
    merged = merge_params(kind, params)  # a bad key or value fails here, naming it
    if kind in NATURAL_MISSING:
        return NATURAL_MISSING[kind](merged, data_root)
    if merged.get("download"):
        return None
    bases = [merged[key] for key in ("base", "digit_base") if key in merged] + list(FIXED_BASES.get(kind, ()))
    messages = [message for base in bases if (message := missing_base(base, Path(data_root).absolute())) is not None]
    return " ".join(messages) or None
