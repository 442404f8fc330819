"""Constructions on real image bases, read from small files fabricated in the on-disk formats.

Each defining property is recomputed from the fabricated arrays, not from the construction.
"""

from __future__ import annotations

import colorsys
import importlib.metadata
import io
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_bases import write_cifar10, write_cifar100, write_mnist
from test_natural import write_celeba, write_imagenet, write_waterbirds

from largelr.checks import defaults
from largelr.datasets import KINDS, build_dataset, load_dataset, missing_data, save_dataset
from largelr.datasets.bases import DataMissingError, load_digits_base
from largelr.datasets.constructions import PALETTE, colored_from_base, double_from_base
from largelr.datasets.corruptions import CORRUPTION_NAMES, corrupt
from largelr.datasets.kind import group_ids, split_generator

DEFAULTS = {name: defaults(kind.params) for name, kind in KINDS.items()}

NEW = ("colored_mnist", "double_mnist", "mnist_cifar", "corrupted_cifar10")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def mnist(data_root: Path) -> dict[str, torch.Tensor]:
    """Fabricated MNIST in [0, 1] as the constructions should see it."""
    arrays = write_mnist(data_root, n_train=60, n_test=20)
    return {
        key: torch.from_numpy(value.astype(np.float32) / 255 if key[0] == "x" else value.astype(np.int64))
        for key, value in arrays.items()
    }


@pytest.fixture(scope="module")
def cifar(data_root: Path) -> dict[str, torch.Tensor]:
    arrays = write_cifar10(data_root, n_train=50, n_test=20)
    return {
        key: torch.from_numpy(value.reshape(-1, 3, 32, 32).astype(np.float32) / 255 if key[0] == "x" else value)
        for key, value in arrays.items()
    }


@pytest.fixture(scope="module")
def build(data_root: Path, mnist: dict, cifar: dict):
    def build_from_files(name: str, seed: int = 0, **params) -> dict:
        return build_dataset(name, {"verify_checksums": False, **params}, data_root, seed)

    return build_from_files


def test_registry_and_defaults() -> None:
    assert set(NEW) <= set(KINDS)
    assert {name: DEFAULTS[name]["rho_train"] for name in NEW} == {
        "colored_mnist": 0.025,
        "double_mnist": 0.025,
        "mnist_cifar": 0.1,
        "corrupted_cifar10": 0.1,
    }
    for name in NEW:
        assert DEFAULTS[name]["download"] is False and DEFAULTS[name]["verify_checksums"] is True
    assert DEFAULTS["corrupted_cifar10"]["cifar10c_level"] == 5  # LfF's "Severity4" = CIFAR-10-C level 5
    assert {name: DEFAULTS[name]["bias_assignment"] for name in NEW} == {
        "colored_mnist": "lff",
        "double_mnist": "random",
        "mnist_cifar": "random",
        "corrupted_cifar10": "lff",
    }
    assert DEFAULTS["colored_mnist"]["palette"] == "lff" and DEFAULTS["colored_mnist"]["color_noise_std"] == 0.005


def expected_conflicting(y: torch.Tensor, rho: float, assignment: str) -> int:
    """BC samples of a split: round(rho N) drawn, or per class k n_k minus its aligned block, which lies
    between the milestones round(n_k (k q)) and round(n_k (k q + 1 - rho)), q = rho / 9 (LfF's blocks)."""
    if assignment == "random":
        return round(rho * len(y))
    ratios = np.full(10, rho / 9)
    aligned = 0
    for k, n in enumerate(torch.bincount(y, minlength=10).tolist()):
        ratios_k = ratios.copy()
        ratios_k[k] = 1 - rho
        milestones = np.round(n * np.cumsum(ratios_k))
        aligned += int(milestones[k] - (milestones[k - 1] if k else 0))
    return len(y) - aligned


@pytest.mark.parametrize(
    "name, n_train", [("colored_mnist", 60), ("double_mnist", 60), ("mnist_cifar", 50), ("corrupted_cifar10", 50)]
)
@pytest.mark.parametrize("rho", [None, 0.2])
def test_exact_train_rho_and_recorded_params(build, name: str, n_train: int, rho: float | None) -> None:
    ds = build(name) if rho is None else build(name, rho_train=rho)
    rho = DEFAULTS[name]["rho_train"] if rho is None else rho
    train, test = ds["train"], ds["test"]
    conflicting = expected_conflicting(train["y"], rho, DEFAULTS[name]["bias_assignment"])
    assert int((train["y"] != train["b"]).sum()) == conflicting
    assert ds["params"]["realized_rho_train"] == pytest.approx(conflicting / n_train)
    assert ds["params"]["realized_rho_test"] == pytest.approx((test["y"] != test["b"]).double().mean().item())
    assert ds["params"]["realized_rho_test"] > 0.5  # unbiased test: about 0.9
    assert ds["params"]["verify_checksums"] is False and ds["params"]["download"] is False and ds["params"]["seed"] == 0
    assert ds["num_classes"] == ds["num_bias"] == 10 and ds["name"] == name
    assert ds["input_shape"] == list(train["x"].shape[1:]) and train["x"].dtype == torch.float32


def test_colored_mnist_colour_is_the_bias(build, mnist: dict) -> None:
    ds = build("colored_mnist", rho_train=0.2)
    for split in ("train", "test"):
        x, y, b, gray = ds[split]["x"], ds[split]["y"], ds[split]["b"], mnist[f"x_{split}"][:, None]
        assert x.shape == (len(gray), 3, 28, 28) and torch.equal(y, mnist[f"y_{split}"])
        assert (x * (gray == 0)).abs().max() < 1e-6  # background stays black (far below a grey level, 4e-3)
        strokes = (gray > 0.1).float()
        colour = (x / gray.clamp_min(1e-6) * strokes).sum(dim=(2, 3)) / strokes.sum(dim=(2, 3))
        assert torch.equal(torch.cdist(colour, PALETTE).argmin(dim=1), b)
        assert (colour - PALETTE[b]).abs().max() < 0.05


def nearest_images(queries: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and exact distance to the nearest image for each query."""
    distance = torch.cdist(queries.flatten(1), images.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    return distance.argmin(dim=1), distance.min(dim=1).values


def test_double_mnist_halves(build, mnist: dict) -> None:
    ds = build("double_mnist", rho_train=0.2, core_brightness=0.4, spurious_brightness=0.9)
    mask = ds["spurious_mask"]
    assert list(mask.shape) == [1, 28, 56] and mask[..., 28:].all() and not mask[..., :28].any()
    assert torch.equal(ds["core_mask"], ~mask)
    for split in ("train", "test"):
        x, y, b = ds[split]["x"], ds[split]["y"], ds[split]["b"]
        images, labels = mnist[f"x_{split}"][:, None], mnist[f"y_{split}"]
        assert x.shape == (len(images), 1, 28, 56) and torch.equal(y, labels)
        assert torch.allclose(x[..., :28], 0.4 * images)
        nearest, distance = nearest_images(x[..., 28:] / 0.9, images)  # from the same split
        assert distance.max() < 1e-4 and torch.equal(labels[nearest], b)


def test_mnist_cifar_halves(build, mnist: dict, cifar: dict) -> None:
    ds = build("mnist_cifar", rho_train=0.2)
    spurious, core = ds["spurious_mask"], ds["core_mask"]
    assert list(spurious.shape) == [3, 64, 32] and spurious[:, :32].all() and not spurious[:, 32:].any()
    assert torch.equal(core, ~spurious)
    for split in ("train", "test"):
        x, y, b = ds[split]["x"], ds[split]["y"], ds[split]["b"]
        assert x.shape == (len(cifar[f"x_{split}"]), 3, 64, 32)
        assert torch.equal(y, cifar[f"y_{split}"])
        # the construction's torch /255 against the fixture's numpy /255: a changed pixel moves by a level, 4e-3
        torch.testing.assert_close(x[:, :, 32:], cifar[f"x_{split}"], atol=1e-6, rtol=0)
        # Zeroing the spurious half leaves nothing of the digit and the object untouched.
        masked = x * core
        assert masked[:, :, :32].abs().max() < 1e-6
        torch.testing.assert_close(masked[:, :, 32:], cifar[f"x_{split}"], atol=1e-6, rtol=0)
        top = x[:, :, :32]
        # exact: the channels are copies of one gray digit and the margins its zero padding (no arithmetic)
        assert torch.equal(top[:, 0], top[:, 1]) and torch.equal(top[:, 0], top[:, 2])  # gray in 3 channels
        assert top[:, :, :2].abs().max() == 0 and top[:, :, 30:].abs().max() == 0 and top[..., :2].abs().max() == 0
        nearest, distance = nearest_images(top[:, :1, 2:30, 2:30], mnist[f"x_{split}"][:, None])
        assert distance.max() < 1e-6 and torch.equal(mnist[f"y_{split}"][nearest], b)


@pytest.fixture(scope="module")
def corrupted(build) -> dict:
    return build("corrupted_cifar10", rho_train=0.2, seed=2)


def test_corrupted_cifar10_applies_corruption_b(corrupted: dict, cifar: dict) -> None:
    """Type b = k is CORRUPTION_NAMES[k] from its own generator, saved on the 8-bit grid by truncation."""
    assert corrupted["spurious_mask"] is None and corrupted["core_mask"] is None
    for split in ("train", "test"):
        x, y, b, clean = corrupted[split]["x"], corrupted[split]["y"], corrupted[split]["b"], cifar[f"x_{split}"]
        assert x.shape == clean.shape and torch.equal(y, cifar[f"y_{split}"])
        assert 0 <= x.min() and x.max() <= 1
        levels = x * 255
        torch.testing.assert_close(levels.round() / 255, x, atol=1e-6, rtol=0)  # on the 1/255 grid (a level: 4e-3)
        for kind, name in enumerate(CORRUPTION_NAMES):
            members = b == kind
            if not members.any():
                continue
            unsaved = corrupt(clean[members], name, 5, split_generator(2, f"{split}-corrupt", kind))  # level 5
            below = unsaved - x[members]  # np.uint8 truncates: at most one level below, never above
            assert below.min() >= -1e-4 / 255 and below.max() < 1 / 255 + 1e-6, (split, name)


def test_corrupted_cifar10_types_by_their_own_signature(corrupted: dict, cifar: dict) -> None:
    """Properties of four generator-free corruptions at CIFAR-10-C level 5 (the default), checked without the module."""
    x, b, clean = corrupted["train"]["x"], corrupted["train"]["b"], cifar["x_train"]
    kinds = {name: b == CORRUPTION_NAMES.index(name) for name in ("brightness", "contrast", "jpeg", "pixelate")}
    assert all(members.any() for members in kinds.values())
    level = 1 / 255 + 1e-5  # the stored images are truncated to 8 bits
    # brightness: the HSV value (largest channel) rises by 0.3, capped at 1.
    members = kinds["brightness"]
    difference = (clean[members].amax(dim=1) + 0.3).clamp(max=1) - x[members].amax(dim=1)
    assert difference.min() >= -1e-5 and difference.max() <= level
    # contrast: deviations from each channel's mean shrink by 0.15.
    members = kinds["contrast"]
    mean = clean[members].mean(dim=(2, 3), keepdim=True)
    difference = (0.15 * (clean[members] - mean) + mean) - x[members]
    assert difference.min() >= -1e-5 and difference.max() <= level
    # jpeg and pixelate: decoded 8-bit images, stored as they are (the stored levels / 255 in float32 against
    # the decoder's float64 / 255 cast to float32: the same 8-bit levels within 1e-6, a level being 4e-3).
    for name in ("jpeg", "pixelate"):
        torch.testing.assert_close(
            x[kinds[name]], corrupt(clean[kinds[name]], name, 5, torch.Generator()), atol=1e-6, rtol=0
        )


# --- each corruption against the reference's definition (PAPER.md's CIFAR-10-C table) ------


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def seeded(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hsv_pixels(images: torch.Tensor, count: int = 300) -> np.ndarray:
    """[count, 3] HSV of evenly spread pixels, by the standard library's colorsys."""
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    picks = np.linspace(0, len(pixels) - 1, count).astype(int)
    return np.array([colorsys.rgb_to_hsv(*pixels[i]) for i in picks])


@pytest.mark.parametrize("severity, shift", list(enumerate([0.05, 0.1, 0.15, 0.2, 0.3], start=1)))
def test_brightness_raises_the_hsv_value_by_the_shift(images: torch.Tensor, severity: int, shift: float) -> None:
    before, after = hsv_pixels(images), hsv_pixels(corrupt(images, "brightness", severity, seeded()))
    np.testing.assert_allclose(after[:, 2], np.minimum(before[:, 2] + shift, 1), atol=1e-6)
    unclipped = before[:, 2] + shift < 1
    np.testing.assert_allclose(after[unclipped, 1], before[unclipped, 1], atol=1e-5)  # saturation kept
    hue_gap = np.abs(after[unclipped, 0] - before[unclipped, 0])
    assert np.minimum(hue_gap, 1 - hue_gap).max() < 1e-5  # hue kept (on the circle)


@pytest.mark.parametrize("severity, scale, shift", [(1, 0.3, 0), (2, 0.1, 0), (3, 1.5, 0), (4, 2, 0.1), (5, 2.5, 0.2)])
def test_saturate_scales_and_shifts_the_hsv_saturation(
    images: torch.Tensor, severity: int, scale: float, shift: float
) -> None:
    before, after = hsv_pixels(images), hsv_pixels(corrupt(images, "saturate", severity, seeded()))
    np.testing.assert_allclose(after[:, 1], np.clip(before[:, 1] * scale + shift, 0, 1), atol=1e-5)
    np.testing.assert_allclose(after[:, 2], before[:, 2], atol=1e-6)  # value kept


@pytest.mark.parametrize("severity, factor", list(enumerate([0.75, 0.5, 0.4, 0.3, 0.15], start=1)))
def test_contrast_scales_deviations_from_each_channel_mean(images: torch.Tensor, severity: int, factor: float) -> None:
    out = corrupt(images, "contrast", severity, seeded())
    mean = images.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(out - mean, factor * (images - mean), atol=1e-6, rtol=0)


@pytest.mark.parametrize("severity, quality", list(enumerate([80, 65, 58, 50, 40], start=1)))
def test_jpeg_equals_pil_encode_and_decode(images: torch.Tensor, severity: int, quality: int) -> None:
    out = corrupt(images, "jpeg", severity, seeded())
    for image, result in zip(images, out):
        array = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        expected = np.asarray(Image.open(buffer).convert("RGB")).astype(np.float32) / 255
        # float64 / 255 cast to float32 against numpy's float32 / 255: the same 8-bit levels (one level: 4e-3)
        np.testing.assert_allclose(result.permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-6)


def box_weights(size_in: int, size_out: int) -> np.ndarray:
    """[out, in] weights of PIL's box filter: input pixels whose centre lies within half an output
    pixel (in input units, at least half an input pixel) of the output pixel's centre, averaged."""
    scale = size_in / size_out
    support = 0.5 * max(scale, 1.0)
    centres_out = (np.arange(size_out) + 0.5) * scale
    offsets = (np.arange(size_in) + 0.5)[None] - centres_out[:, None]
    weights = ((-support <= offsets) & (offsets < support)).astype(np.float64)
    return weights / weights.sum(axis=1, keepdims=True)


def box_resize(levels: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] gray levels resized to size x size as PIL does it: rows first, then columns,
    each pass rounded to 8 bits."""
    across = np.floor(np.einsum("oi,hic->hoc", box_weights(levels.shape[1], size), levels) + 0.5)
    return np.floor(np.einsum("oi,iwc->owc", box_weights(levels.shape[0], size), across) + 0.5)


@pytest.mark.parametrize("severity, factor", list(enumerate([0.95, 0.9, 0.85, 0.75, 0.65], start=1)))
def test_pixelate_is_a_box_filter_down_and_up(images: torch.Tensor, severity: int, factor: float) -> None:
    out = corrupt(images, "pixelate", severity, seeded())
    small = int(32 * factor)  # the reference truncates: 30, 28, 27, 24, 20
    mismatched = 0
    for image, result in zip(images, out):
        levels = (image.permute(1, 2, 0) * 255).round().double().numpy()
        expected = box_resize(box_resize(levels, small), 32)
        difference = np.abs(result.permute(1, 2, 0).double().numpy() * 255 - expected)
        assert difference.max() <= 1 + 1e-6  # fixed-point weights may round a half level the other way
        mismatched += int((difference > 0.5).sum())
    assert mismatched <= 0.01 * out.numel()


def frost_photo_folder() -> Path:
    distribution = importlib.metadata.distribution("imagecorruptions")
    return Path(distribution.locate_file("imagecorruptions/frost"))


def locate_crop(crop: np.ndarray, photos: list[np.ndarray]) -> tuple[int, int, int] | None:
    """(photo, top, left) of an exact copy of the [32, 32, 3] uint8 crop in one of the photos."""
    for index, photo in enumerate(photos):
        rows, cols = np.nonzero((photo[:-31, :-31] == crop[0, 0]).all(axis=2))
        for top, left in zip(rows, cols):
            if np.array_equal(photo[top : top + 32, left : left + 32], crop):
                return index, int(top), int(left)
    return None


@pytest.mark.parametrize("severity, image_weight, frost_weight", [(1, 1, 0.2), (3, 0.9, 0.4), (5, 0.75, 0.45)])
def test_frost_blends_a_crop_of_one_of_the_first_five_photographs(
    images: torch.Tensor, severity: int, image_weight: float, frost_weight: float
) -> None:
    """On black images frost leaves frost_weight * crop; the crop is found in a photograph shipped by
    imagecorruptions (frost1..5, resized x0.2), and on real images the output is the weighted sum."""
    import cv2

    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"]
    photos = [
        cv2.resize(cv2.imread(str(frost_photo_folder() / name)), (0, 0), fx=0.2, fy=0.2)[..., ::-1] for name in names
    ]
    layer = corrupt(torch.zeros_like(images), "frost", severity, seeded(3)).double()
    crops = (layer * 255 / frost_weight).permute(0, 2, 3, 1).numpy()
    assert np.abs(crops - crops.round()).max() < 1e-3
    found = [locate_crop(crop.round().astype(np.uint8), photos) for crop in crops]
    assert None not in found and len(set(found)) == len(found)  # a fresh random crop per image
    out = corrupt(images, "frost", severity, seeded(3)).double()
    torch.testing.assert_close(out, (image_weight * images.double() + layer).clamp(0, 1), atol=1e-6, rtol=0)


def test_frost_photographs_come_from_the_installed_package() -> None:
    """The first five of the six photographs, each 0.2 x its size on disk (sizes read by PIL)."""
    from largelr.datasets.corruptions.layers import frost_photos

    files = sorted(frost_photo_folder().iterdir())
    assert [path.name for path in files] == [f"frost{i}.{'png' if i <= 3 else 'jpg'}" for i in range(1, 7)]
    photos = frost_photos()
    assert len(photos) == 5
    for path, photo in zip(files, photos):
        with Image.open(path) as image:
            assert photo.shape == (round(0.2 * image.height), round(0.2 * image.width), 3) and photo.dtype == np.uint8


@pytest.mark.parametrize("severity, strength", list(enumerate([0.2, 0.5, 0.75, 1.0, 1.5], start=1)))
def test_fog_adds_one_gray_plasma_layer_and_rescales(severity: int, strength: float) -> None:
    """out = (x + strength * L) * m / (m + strength), m the image's maximum, L one [0, 1] map for all channels."""
    dark = 0.2 * torch.rand(4, 3, 32, 32, generator=seeded(1))  # nothing clips
    out = corrupt(dark, "fog", severity, seeded()).double()
    peak = dark.double().amax(dim=(1, 2, 3), keepdim=True)
    layer = (out * (peak + strength) / peak - dark.double()) / strength
    torch.testing.assert_close(layer[:, 0], layer[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(layer[:, 0], layer[:, 2], atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.amin(dim=(1, 2, 3)), torch.zeros(4, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.amax(dim=(1, 2, 3)), torch.ones(4, dtype=torch.float64), atol=1e-5, rtol=0)


def test_plasma_fractal_is_smoother_for_a_larger_wibble_decay() -> None:
    from largelr.datasets.corruptions.layers import plasma_fractal

    def roughness(decay: float) -> float:
        maps = plasma_fractal(64, 32, decay, seeded())
        assert maps.shape == (64, 32, 32) and maps.min().abs() < 1e-12 and (maps.max() - 1).abs() < 1e-12  # float64
        return (maps.diff(dim=1).abs().mean() + maps.diff(dim=2).abs().mean()).item()

    assert roughness(3.0) < roughness(2.0) < roughness(1.75)


def test_motion_blur_draws_a_gaussian_streak_along_the_angle() -> None:
    """A single lit pixel, angle -90 degrees (upwards): pixel (r, c) reads (r - i, c) with weight
    exp(-i^2 / 2 sigma^2), so the streak runs from the pixel downwards for 2 * radius + 1 rows."""
    from largelr.datasets.corruptions.layers import motion_blur

    layer = torch.zeros(1, 32, 32, dtype=torch.float64)
    layer[0, 5, 10] = 1.0
    blurred = motion_blur(layer, 3, 2.0, torch.tensor([-math.pi / 2], dtype=torch.float64))
    weights = [math.exp(-i * i / 8) for i in range(7)]
    expected = torch.zeros_like(layer)
    expected[0, 5:12, 10] = torch.tensor(weights, dtype=torch.float64) / sum(weights)
    torch.testing.assert_close(blurred, expected, atol=1e-12, rtol=0)


def test_clipped_zoom_is_bilinear_zoom_of_the_centre() -> None:
    """The reference's clipped zoom: the central ceil(32 / z) square, zoomed (corner-aligned bilinear), trimmed."""
    from largelr.datasets.corruptions.layers import clipped_zoom

    layers = torch.rand(3, 32, 32, generator=seeded(), dtype=torch.float64)
    for zoom, crop, top, zoomed_size, trim in [(1.75, 19, 6, 33, 0), (2.25, 15, 8, 34, 1), (1.25, 26, 3, 32, 0)]:
        centre = layers[:, None, top : top + crop, top : top + crop]
        zoomed = F.interpolate(centre, size=(zoomed_size, zoomed_size), mode="bilinear", align_corners=True)[:, 0]
        torch.testing.assert_close(
            torch.from_numpy(clipped_zoom(layers.numpy(), zoom)),
            zoomed[:, trim : trim + 32, trim : trim + 32],
            atol=1e-12,
            rtol=0,
        )
    np.testing.assert_allclose(
        clipped_zoom(layers.numpy(), 1.0), layers.numpy(), rtol=0, atol=1e-12
    )  # scipy's zoom by 1


@pytest.mark.parametrize("severity, image_weight", list(enumerate([0.95, 0.9, 0.9, 0.85, 0.8], start=1)))
def test_snow_adds_a_layer_symmetric_under_half_turns_to_the_whitened_image(severity: int, image_weight: float) -> None:
    """out = w x + (1 - w) max(x, 1.5 gray + 0.5) + S + rot180(S): the added part is the same in
    every channel, non-negative, on the 2/255 grid and unchanged by a half turn (where nothing clips)."""
    dark = 0.1 * torch.rand(6, 3, 32, 32, generator=seeded(1), dtype=torch.float64)
    gray = 0.299 * dark[:, 0:1] + 0.587 * dark[:, 1:2] + 0.114 * dark[:, 2:3]
    whitened = image_weight * dark + (1 - image_weight) * torch.maximum(dark, 1.5 * gray + 0.5)
    out = corrupt(dark.float(), "snow", severity, seeded()).double()
    added = out - whitened
    unclipped = (out < 1).all(dim=1) & (out < 1).all(dim=1).flip(-2, -1)
    for channel in (1, 2):
        assert (added[:, 0] - added[:, channel])[unclipped].abs().max() < 1e-6
    added = added[:, 0]
    assert added[unclipped].min() > -1e-6 and added.max() > 0.1  # some snow, never darker
    assert (added[unclipped] * 255 - (added[unclipped] * 255).round()).abs().max() < 1e-3  # 8-bit layers
    assert (added - added.flip(-2, -1))[unclipped].abs().max() < 1e-6


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_spatter_water_adds_pale_turquoise(images: torch.Tensor, severity: int) -> None:
    """Water mode adds intensity * strength * (175, 238, 238) / 255, strength in [0, 1]."""
    colour = torch.tensor([175, 238, 238], dtype=torch.float64).view(1, 3, 1, 1) / 255
    dark = 0.2 * images.double()
    added = corrupt(dark.float(), "spatter", severity, seeded()).double() - dark
    strength = added / colour
    assert (strength[:, 0] - strength[:, 1]).abs().max() < 1e-5 and (strength[:, 0] - strength[:, 2]).abs().max() < 1e-5
    assert strength.min() > -1e-5 and strength.max() <= 0.5 + 1e-5 and strength.max() > 0.05


@pytest.mark.parametrize("severity", [4, 5])
def test_spatter_mud_blends_brown_in_where_the_mask_reaches_0_8(images: torch.Tensor, severity: int) -> None:
    """Mud mode: out = x (1 - m) + (63, 42, 20) / 255 m with m in {0} or [0.8, 1], the same in every channel."""
    colour = torch.tensor([63, 42, 20], dtype=torch.float64).view(1, 3, 1, 1) / 255
    x = 0.5 + 0.5 * images.double()  # every channel well away from the mud colour
    mask = (x - corrupt(x.float(), "spatter", severity, seeded()).double()) / (x - colour)
    assert (mask[:, 0] - mask[:, 1]).abs().max() < 1e-5 and (mask[:, 0] - mask[:, 2]).abs().max() < 1e-5
    mask = mask[:, 0]
    assert ((mask.abs() < 1e-5) | ((mask > 0.8 - 1e-5) & (mask < 1 + 1e-5))).all()
    assert (mask > 0.5).any()


def linear_ramps(count: int = 4) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    return torch.stack([0.1 + 0.02 * rows + 0.005 * cols, 0.3 + 0.01 * rows, 0.2 + 0.02 * cols]).expand(
        count, 3, 32, 32
    )


def plane_residuals(images: torch.Tensor) -> torch.Tensor:
    """Least-squares residuals of a plane a + b row + c col fitted to each channel's central 16 x 16 pixels."""
    rows, cols = torch.meshgrid(torch.arange(8.0, 24.0), torch.arange(8.0, 24.0), indexing="ij")
    design = torch.stack([torch.ones(256), rows.flatten(), cols.flatten()], dim=1).double()
    values = images[..., 8:24, 8:24].flatten(2).double()
    fitted = design @ torch.linalg.lstsq(design, values.reshape(-1, 256).T).solution
    return values.reshape(-1, 256) - fitted.T


def test_elastic_severity_1_is_an_affine_warp_and_later_severities_are_not() -> None:
    """Severity 1 has alpha 0: a random affine map only, so linear ramps stay linear (OpenCV samples at
    1/32 px); severity 4 (alpha 3.2 px, sigma 1.28 px) bends them."""
    ramps = linear_ramps()
    affine = corrupt(ramps, "elastic", 1, seeded())
    assert not torch.equal(affine, ramps)
    assert plane_residuals(affine).abs().max() < 1.5e-3
    assert plane_residuals(corrupt(ramps, "elastic", 4, seeded())).std() > 3e-3


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_elastic_only_moves_pixels(images: torch.Tensor, severity: int) -> None:
    """Bilinear sampling with reflected borders: each channel stays within its range, a constant stays constant."""
    out = corrupt(images, "elastic", severity, seeded())
    assert (out.amin(dim=(2, 3)) >= images.amin(dim=(2, 3)) - 1e-6).all()
    assert (out.amax(dim=(2, 3)) <= images.amax(dim=(2, 3)) + 1e-6).all()
    flat = torch.full((2, 3, 32, 32), 0.4)
    torch.testing.assert_close(corrupt(flat, "elastic", severity, seeded()), flat, atol=1e-6, rtol=0)


def test_saved_as_uint8_truncates_like_numpy() -> None:
    from largelr.datasets.corruptions import saved_as_uint8

    values = torch.tensor([0.0, 0.5 / 255, 1.999 / 255, 100 / 255, 254.99999 / 255, 1.0])
    expected = np.uint8(values.double().numpy() * 255).astype(np.float32) / 255
    expected[4] = 255 / 255  # within the 1e-4-level allowance: float rounding, not a lower level
    # torch's and numpy's (or Python's float64) division by 255: the same levels within 1e-6, a level being 4e-3
    np.testing.assert_allclose(saved_as_uint8(values).numpy(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        saved_as_uint8(torch.tensor([0.9999 / 255 * 254])), torch.tensor([253 / 255]), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_each_corruption_changes_image_keeps_format_and_is_deterministic(images: torch.Tensor, name: str) -> None:
    out = corrupt(images, name, 3, torch.Generator().manual_seed(7))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert 0 <= out.min() and out.max() <= 1
    assert (out - images).abs().mean() > 0.01
    assert torch.equal(out, corrupt(images, name, 3, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, corrupt(images, name, 5, torch.Generator().manual_seed(7)))  # severity matters


@pytest.mark.parametrize("name", ["snow", "frost", "fog", "spatter", "elastic"])
def test_random_corruptions_depend_on_the_generator(images: torch.Tensor, name: str) -> None:
    assert not torch.equal(
        corrupt(images, name, 3, torch.Generator().manual_seed(1)),
        corrupt(images, name, 3, torch.Generator().manual_seed(2)),
    )


def test_corruption_types_differ_from_each_other(images: torch.Tensor) -> None:
    outputs = [corrupt(images, name, 4, torch.Generator().manual_seed(0)) for name in CORRUPTION_NAMES]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert (outputs[i] - outputs[j]).abs().mean() > 0.01, (CORRUPTION_NAMES[i], CORRUPTION_NAMES[j])


def test_corrupt_rejects_bad_arguments(images: torch.Tensor) -> None:
    generator = torch.Generator()
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        corrupt(images, "rain", 3, generator)
    with pytest.raises(ValueError, match="severity 6"):
        corrupt(images, "fog", 6, generator)
    with pytest.raises(ValueError, match=r"float images \[N, 3, H, W\]"):
        corrupt(images[:, :1], "fog", 3, generator)
    assert corrupt(images[:0], "snow", 3, generator).shape == (0, 3, 32, 32)


@pytest.mark.parametrize("name", NEW)
def test_same_seed_same_data_and_different_seed_different_data(build, name: str) -> None:
    first, again, other = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    for split in ("train", "test"):
        for key in ("x", "y", "b"):
            assert torch.equal(first[split][key], again[split][key])
        assert not torch.equal(first[split]["x"], other[split]["x"])
        # LfF's assignment is no draw: the same bias labels under every seed
        same_bias = DEFAULTS[name]["bias_assignment"] == "lff"
        assert torch.equal(first[split]["b"], other[split]["b"]) == same_bias


def random_base(n_train: int, n_test: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,), generator=generator)

    return (*split(n_train), *split(n_test))


def test_test_bias_is_independent_of_label() -> None:
    ds = colored_from_base("colored_mnist", random_base(100, 20000), DEFAULTS["colored_mnist"], 0)
    test = ds["test"]
    counts = torch.bincount(group_ids(test["y"], test["b"], 10), minlength=100).float()
    assert (counts - 200).abs().max() < 80  # 200 per (class, bias) group, std about 14


@pytest.mark.parametrize("construct, name", [(colored_from_base, "colored_mnist"), (double_from_base, "double_mnist")])
def test_mnist_sized_set_materializes_fast(tmp_path: Path, construct, name: str) -> None:
    """Construction, compact save and load of 60000 + 10000 MNIST-sized images, on 2 threads, within 30 s."""
    base = random_base(60000, 10000)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        start = time.perf_counter()
        ds = construct(name, base, DEFAULTS[name], 0)
        save_dataset(ds, tmp_path / "set.pt")
        loaded = load_dataset(tmp_path / "set.pt")
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    conflicting = expected_conflicting(base[1], DEFAULTS[name]["rho_train"], DEFAULTS[name]["bias_assignment"])
    assert (
        len(loaded["train"]["x"]) == 60000 and int((loaded["train"]["y"] != loaded["train"]["b"]).sum()) == conflicting
    )
    assert elapsed <= 30, f"{name}: {elapsed:.1f} s"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"cifar10c_level": 6}, r"cifar10c_level = 6.*\[1, 5\]"),
        ({"cifar10c_level": 0}, r"cifar10c_level = 0"),
        ({"cifar10c_level": 2.5}, r"cifar10c_level = 2.5.*whole number"),
        ({"severity": 4}, r"severity = 4: renamed to cifar10c_level.*Severity4.*cifar10c_level: 5"),
        ({"bias_assignment": "drawn"}, r"bias_assignment = 'drawn'.*lff.*random"),
        ({"download": "yes"}, r"download = 'yes'.*true or false"),
        ({"verify_checksums": 1}, r"verify_checksums = 1.*true or false"),
    ],
)
def test_bad_params_are_rejected(data_root: Path, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_dataset("corrupted_cifar10", params, data_root, 0)


@pytest.mark.parametrize(
    "name, folder",
    [
        ("colored_mnist", "MNIST"),
        ("double_mnist", "MNIST"),
        ("mnist_cifar", "MNIST"),
        ("corrupted_cifar10", "cifar-10-batches-py"),
    ],
)
def test_missing_base_raises_data_missing(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(DataMissingError, match=rf"{tmp_path}.*{folder}.*download: true"):
        build_dataset(name, {}, tmp_path, 0)


@pytest.mark.parametrize("name", NEW)
def test_checksums_are_verified_by_default(build, data_root: Path, name: str) -> None:
    # `build` is only requested so that the fabricated files exist.
    with pytest.raises(DataMissingError, match="official"):
        build_dataset(name, {}, data_root, 0)


# --- any compatible base, plain class-labelled kinds ---------------------------------------


def test_a_construction_takes_any_compatible_base(build) -> None:
    """colored_mnist on the digits base is exactly colored_digits; dominoes take digits on top too."""
    on_digits = build("colored_mnist", base="digits")
    reference = build_dataset("colored_digits", {}, "unused", 0)
    for split in ("train", "test"):  # exact: the same code on the same base and seed
        for key in ("x", "y", "b", "g"):
            assert torch.equal(on_digits[split][key], reference[split][key])
    digits = load_digits_base()
    ds = build("mnist_cifar", digit_base="digits")
    for split, images, labels in (("train", digits[0], digits[1]), ("test", digits[2], digits[3])):
        nearest, distance = nearest_images(ds[split]["x"][:, :1, 2:30, 2:30], images)
        assert distance.max() < 1e-6 and torch.equal(labels[nearest], ds[split]["b"])


@pytest.mark.parametrize(
    "name, write, num_classes", [("cifar10", write_cifar10, 10), ("cifar100", write_cifar100, 100)]
)
def test_plain_cifar_kinds_have_no_spurious_feature(tmp_path: Path, name: str, write, num_classes: int) -> None:
    arrays = write(tmp_path)
    ds = build_dataset(name, {"verify_checksums": False}, tmp_path, 0)
    assert ds["num_classes"] == ds["num_bias"] == num_classes and ds["spurious_mask"] is None
    for split in ("train", "test"):
        x, y, b = ds[split]["x"], ds[split]["y"], ds[split]["b"]
        # exact: the very torch division the base loader does, on the same 8-bit values
        assert torch.equal(x.flatten(1), torch.from_numpy(arrays[f"x_{split}"]).float() / 255)
        assert torch.equal(y, torch.from_numpy(arrays[f"y_{split}"]).long()) and torch.equal(b, y)
        assert torch.equal(ds[split]["g"], y * (num_classes + 1))  # g = y * num_bias + b with b = y
    assert (ds["params"]["realized_rho_train"], ds["params"]["realized_rho_test"]) == pytest.approx(
        (0.0, 0.0), abs=1e-12
    )


@pytest.mark.parametrize("name", ["mnist_cifar", "cifar10", "colored_mnist", "corrupted_cifar10"])
def test_stored_dataset_loads_as_built(build, tmp_path: Path, name: str) -> None:
    """Pixels on the 1/255 grid (bases, stackings, 8-bit corruptions) come back bit for bit; colour noise within 2**-12."""
    from largelr.datasets.kind import standardized

    ds = build(name)
    save_dataset(ds, tmp_path / f"{name}.pt")
    loaded = load_dataset(tmp_path / f"{name}.pt")
    on_grid = name in ("mnist_cifar", "cifar10", "corrupted_cifar10")  # corruptions are saved on 8 bits
    assert torch.load(tmp_path / f"{name}.pt", weights_only=True)["train"]["x"].dtype == (
        torch.uint8 if on_grid else torch.float16
    )
    for split in ("train", "test"):
        x = loaded[split]["x"]
        assert x.dtype == torch.float32
        # on the grid, bit for bit: loading divides the stored levels by 255 as building did (same torch op),
        # then standardises with the dataset's constants (the same op on both sides)
        expected = standardized(ds[split]["x"], ds["normalization"])
        std = min(torch.as_tensor(ds["normalization"]["std"]).flatten().tolist())
        # float16 rounds values below 1 to within 2**-12; standardising adds float32 rounding
        assert torch.equal(x, expected) if on_grid else (x - expected).abs().max() <= (2**-12 + 1e-6) / std
        for key in ("y", "b", "g"):
            assert torch.equal(loaded[split][key], ds[split][key])


# --- download routing from the dataset parameters, data availability -----------------------


def test_download_parameter_reaches_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    fetched = []

    def fabricate(dataset) -> None:  # replaces torchvision.datasets.MNIST.download(self)
        fetched.append(dataset.root)
        write_mnist(Path(dataset.root))

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fabricate)
    with pytest.raises(DataMissingError):
        build_dataset("double_mnist", {"verify_checksums": False}, tmp_path, 0)
    assert fetched == []
    ds = build_dataset("double_mnist", {"download": True, "verify_checksums": False}, tmp_path, 0)
    assert fetched == [str(tmp_path.absolute())] and len(ds["train"]["y"]) == 60


def write_natural(kind: str, root: Path) -> None:
    {"celeba": write_celeba, "waterbirds": write_waterbirds, "imagenet": write_imagenet}[kind](root)


FILE_KINDS = [
    # kind, params, writers, names the message must hold, folder relative to the data root
    ("colored_mnist", {}, [write_mnist], ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], "MNIST/raw"),
    ("double_mnist", {}, [write_mnist], ["train-labels-idx1-ubyte"], "MNIST/raw"),
    (
        "mnist_cifar",
        {},
        [write_mnist, write_cifar10],
        ["train-images-idx3-ubyte", "data_batch_5"],
        "cifar-10-batches-py",
    ),
    ("corrupted_cifar10", {}, [write_cifar10], ["data_batch_1", "test_batch"], "cifar-10-batches-py"),
    ("cifar10", {}, [write_cifar10], ["data_batch_1", "test_batch"], "cifar-10-batches-py"),
    ("cifar100", {}, [write_cifar100], ["train", "test"], "cifar-100-python"),
    (
        "celeba",
        {},
        [lambda root: write_natural("celeba", root)],
        ["list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba/"],
        "celeba",
    ),
    ("waterbirds", {"folder": "wb"}, [lambda root: write_waterbirds(root, folder="wb")], ["metadata.csv"], "wb"),
    ("imagenet", {}, [lambda root: write_natural("imagenet", root)], ["train/", "val/"], "imagenet"),
]


@pytest.mark.parametrize("kind, params, writers, names, folder", FILE_KINDS, ids=[row[0] for row in FILE_KINDS])
def test_missing_data_names_files_and_path_until_they_exist(
    tmp_path: Path, kind, params, writers, names, folder
) -> None:
    message = missing_data(kind, params, str(tmp_path))
    assert message is not None and str((tmp_path / folder).absolute()) in message
    assert all(name in message for name in names)
    for write in writers:
        write(tmp_path)
    assert missing_data(kind, params, str(tmp_path)) is None


def test_missing_data_names_only_the_absent_base_and_trusts_download(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    message = missing_data("mnist_cifar", {}, str(tmp_path))
    assert "CIFAR-10 not found" in message and "MNIST" not in message
    assert missing_data("mnist_cifar", {"download": True}, str(tmp_path)) is None
    assert missing_data("colored_mnist", {"base": "digits"}, str(tmp_path / "empty")) is None


# --- the data command ---------------------------------------------------------------------


def truncate(path: Path, content: bytes) -> None:
    path.write_bytes(content)


@pytest.mark.parametrize(
    "kind, damage, message",
    [
        ("colored_mnist", lambda root: None, r"MNIST not found: expected .*train-images-idx3-ubyte.*download: true"),
        (
            "colored_mnist",
            lambda root: (write_mnist(root), truncate(root / "MNIST/raw/t10k-labels-idx1-ubyte", b"\0\0\x08")),
            r"t10k-labels-idx1-ubyte is corrupt",
        ),
        (
            "corrupted_cifar10",
            lambda root: (write_cifar10(root), truncate(root / "cifar-10-batches-py/data_batch_3", b"not a pickle")),
            r"data_batch_3 is corrupt",
        ),
    ],
    ids=["missing", "truncated-idx", "not-a-pickle"],
)
def test_data_command_fails_clearly_and_leaves_no_output(tmp_path: Path, kind: str, damage, message: str) -> None:
    from largelr.cli import main

    damage(tmp_path / "root")
    out = tmp_path / "results" / "data" / "set.pt"
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "data",
                "--name",
                "set",
                "--kind",
                kind,
                "--params",
                '{"verify_checksums": false}',
                "--data-root",
                str(tmp_path / "root"),
                "--out",
                str(out),
            ]
        )
    assert re.search(message, str(caught.value.code))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_data_command_reports_a_malformed_listing_without_a_traceback(tmp_path: Path) -> None:
    from largelr.cli import main

    write_waterbirds(tmp_path, drop_column="place")
    with pytest.raises(
        SystemExit, match=r"largelr data: dataset 'wb' \(waterbirds\): .*metadata.csv: missing column\(s\) place"
    ):
        main(
            [
                "data",
                "--name",
                "wb",
                "--kind",
                "waterbirds",
                "--data-root",
                str(tmp_path),
                "--out",
                str(tmp_path / "wb.pt"),
            ]
        )
    assert not (tmp_path / "wb.pt").exists()


@pytest.mark.parametrize(
    "name, constants",
    [
        ("colored_mnist", "mnist"),
        ("double_mnist", "mnist"),
        ("cifar10", "cifar10"),
        ("corrupted_cifar10", "cifar10"),
        ("mnist_cifar", "none"),
    ],
)
def test_the_loader_standardises_with_the_authors_constants(build, tmp_path: Path, name: str, constants: str) -> None:
    ds = build(name)
    expected = {
        "mnist": {"mean": 0.1307, "std": 0.3081},
        "none": {"mean": 0.0, "std": 1.0},
        "cifar10": {"mean": [0.491, 0.482, 0.447], "std": [0.247, 0.243, 0.262]},
    }[constants]
    assert ds["normalization"] == expected and ds["params"]["standardize"] == constants
    # a pixel of value mean maps to 0, a pixel of mean + std to 1, channel by channel (by hand)
    means, stds = (torch.as_tensor(expected[key]).flatten() for key in ("mean", "std"))
    ds["test"]["x"][0] = means.view(-1, 1, 1) if means.numel() > 1 else means
    ds["test"]["x"][1] = (means + stds).view(-1, 1, 1) if means.numel() > 1 else means + stds
    save_dataset(ds, tmp_path / "set.pt")
    loaded = load_dataset(tmp_path / "set.pt")
    assert loaded["standardized_on_load"] == (constants != "none")
    assert loaded["test"]["x"][0].abs().max().item() == pytest.approx(0.0, abs=1e-3)  # stored on 8 bits: 1/255 / std
    assert loaded["test"]["x"][1].sub(1).abs().max().item() == pytest.approx(0.0, abs=2e-2)
    raw = ds["train"]["x"][:4]
    torch.testing.assert_close(
        loaded["train"]["x"][:4] * stds.view(-1, 1, 1) + means.view(-1, 1, 1), raw, atol=2**-11, rtol=0
    )


# --- LfF's protocol: bias labels by per-class blocks, its palette, its severity numbering ------


def test_lff_bias_cuts_each_class_into_blocks_at_rounded_milestones() -> None:
    from largelr.datasets.kind import lff_bias

    # classes interleaved: class 1 at 0, 4, 8, 12, 16; class 2 at 2, 6, 10, 14; class 0 the other ten
    y = torch.tensor([1, 0, 2, 0, 1, 0, 2, 0, 1, 0, 2, 0, 1, 0, 2, 0, 1, 0, 0])
    b = lff_bias(y, 0.6, 3)
    # class 0, n 10: ratios (0.6, 0.2, 0.2), milestones 10 x (0.6, 0.8, 1) = 6, 8, 10
    assert b[y == 0].tolist() == [0] * 6 + [1] * 2 + [2] * 2
    # class 1, n 5: ratios (0.2, 0.6, 0.2), milestones 5 x (0.2, 0.8, 1) = 1, 4, 5
    assert b[y == 1].tolist() == [0, 1, 1, 1, 2]
    # class 2, n 4: ratios (0.2, 0.2, 0.6), milestones round(0.8, 1.6, 4) = 1, 2, 4
    assert b[y == 2].tolist() == [0, 1, 2, 2]
    # numpy rounds halves to even: n 5, ratios (0.5, 0.5), milestones round(2.5, 5) = 2, 5
    assert lff_bias(torch.zeros(5, dtype=torch.long), 0.5, 2).tolist() == [0, 0, 1, 1, 1]


def test_lff_test_split_is_uniform_over_the_ten_bias_values_in_every_class() -> None:
    from largelr.datasets.kind import lff_bias

    y = torch.arange(10).repeat(20)  # 20 samples per class
    counts = torch.bincount(group_ids(y, lff_bias(y, 0.1, 10), 10), minlength=100)
    assert counts.tolist() == [2] * 100  # aligned ratio 0.1 = every bias value 2 times in every class


def test_lff_palette_is_its_released_colours() -> None:
    from largelr.datasets.constructions import LFF_PALETTE, PALETTES, PRIMARIES_PALETTE

    assert LFF_PALETTE.shape == (10, 3) and PALETTE is LFF_PALETTE and PALETTES["primaries"] is PRIMARIES_PALETTE
    torch.testing.assert_close(LFF_PALETTE[0], torch.tensor([0.983682, 0.312519, 0.168575]), atol=1e-7, rtol=0)
    torch.testing.assert_close(LFF_PALETTE[4], torch.tensor([0.088016, 0.777963, 0.981808]), atol=1e-7, rtol=0)
    torch.testing.assert_close(LFF_PALETTE[9], torch.tensor([0.833658, 0.202409, 0.266943]), atol=1e-7, rtol=0)


def test_colored_mnist_takes_the_chosen_palette_and_shows_it_on_its_card(build, mnist: dict) -> None:
    from largelr.datasets.cards import card_summary
    from largelr.datasets.constructions import PRIMARIES_PALETTE

    ds = build("colored_mnist", palette="primaries", color_noise_std=0.0)
    gray = mnist["x_train"][:, None]
    strokes = (gray > 0.1).float()
    colour = (ds["train"]["x"] / gray.clamp_min(1e-6) * strokes).sum(dim=(2, 3)) / strokes.sum(dim=(2, 3))
    torch.testing.assert_close(colour, PRIMARIES_PALETTE[ds["train"]["b"]], atol=1e-5, rtol=0)
    assert card_summary(build("colored_mnist"))["bias_palette"][0] == pytest.approx([0.983682, 0.312519, 0.168575])
    assert "bias_palette" not in card_summary(build("double_mnist"))


def test_lff_severity_s_is_cifar10c_level_s_plus_one() -> None:
    from largelr.datasets.constructions import cifar10c_level

    assert [cifar10c_level(s) for s in range(5)] == [1, 2, 3, 4, 5]
    assert DEFAULTS["corrupted_cifar10"]["cifar10c_level"] == cifar10c_level(4)  # "Severity4", the released sets
    with pytest.raises(ValueError, match="Severity0..Severity4"):
        cifar10c_level(5)
