"""Corruptions that draw a random layer and blend it into the image: snow, frost, fog, spatter
(CIFAR-10-C's parameters per severity 1..5; see :mod:`largelr.datasets.corruptions`)."""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch

from largelr.datasets.corruptions.pixels import eight_bit, from_uint8_arrays, gaussian_filter, scaled, uniform

# (loc, scale, zoom, threshold, blur radius, blur sigma, image weight)
SNOW = (
    (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
SNOW_ANGLES = (-135.0, -45.0)  # degrees, uniform
SNOW_WHITENING = (1.5, 0.5)  # the whitened scene is max(x, 1.5 gray + 0.5)
FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # (image weight, frost weight)
FROST_PHOTOS = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
FROST_PHOTOS_USED = 5  # the reference draws among the first five
FROST_SCALE = 0.2
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # (strength, wibble decay)
PLASMA_WIBBLE = 100.0
# (loc, scale, sigma, threshold, intensity, mud?)
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, False),
    (0.65, 0.1, 0.8, 0.7, 0.5, False),
    (0.65, 0.3, 1.0, 0.69, 0.5, False),
    (0.65, 0.1, 0.7, 0.69, 0.6, True),
    (0.65, 0.1, 0.5, 0.68, 0.6, True),
)
WATER_COLOUR = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise
MUD_COLOUR = (63 / 255, 42 / 255, 20 / 255)
MUD_FLOOR = 0.8  # blurred mud mask values below it are dropped
CANNY_THRESHOLDS = (50, 150)
DISTANCE_CAP = 20.0
EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))
LUMA = (0.299, 0.587, 0.114)  # OpenCV's RGB2GRAY weights


# --- snow -----------------------------------------------------------------------------------


def clipped_zoom(layers: np.ndarray, zoom: float) -> np.ndarray:
    """[N, H, W] layers with their centre magnified by ``zoom`` >= 1, same size: the central
    ``ceil(H / zoom)`` rows and columns, zoomed bilinearly (scipy), trimmed back to H x W."""
    from scipy.ndimage import zoom as scipy_zoom

    height, width = layers.shape[1:]
    crop_h, crop_w = math.ceil(height / zoom), math.ceil(width / zoom)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    zoomed = scipy_zoom(layers[:, top : top + crop_h, left : left + crop_w], (1, zoom, zoom), order=1)
    trim_top, trim_left = (zoomed.shape[1] - height) // 2, (zoomed.shape[2] - width) // 2
    return zoomed[:, trim_top : trim_top + height, trim_left : trim_left + width]


def motion_blur(layers: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur of [N, H, W] layers, one angle (radians) per layer: tap i of
    ``2 radius + 1`` has weight exp(-i^2 / 2 sigma^2) (normalized) and reads the pixel i steps along
    the angle, offsets rounded half down, edge pixels repeated."""
    count, height, width = layers.shape
    taps = torch.arange(2 * radius + 1, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    row_steps = torch.ceil(taps[None] * torch.sin(angles)[:, None] - 0.5).long()
    col_steps = torch.ceil(taps[None] * torch.cos(angles)[:, None] - 0.5).long()
    samples = torch.arange(count)[:, None, None]
    blurred = torch.zeros_like(layers)
    for tap, weight in enumerate(weights.tolist()):
        rows = (torch.arange(height)[None] + row_steps[:, tap, None]).clamp(0, height - 1)
        cols = (torch.arange(width)[None] + col_steps[:, tap, None]).clamp(0, width - 1)
        blurred += weight * layers[samples, rows[:, :, None], cols[:, None, :]]
    return blurred


def snow(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    loc, scale, zoom, threshold, radius, sigma, image_weight = SNOW[severity - 1]
    count, _, height, width = images.shape
    layer = loc + scale * torch.randn(count, height, width, generator=generator, dtype=torch.float64)
    layer = torch.from_numpy(clipped_zoom(layer.numpy(), zoom))
    layer = eight_bit(torch.where(layer < threshold, 0.0, layer).clamp(0, 1))  # handed over as an 8-bit PNG
    angles = torch.deg2rad(uniform(generator, (count,), *SNOW_ANGLES))
    blur_radius = max(1, round(scaled(radius, images)))
    layer = eight_bit(motion_blur(layer, blur_radius, scaled(sigma, images), angles))[:, None]
    x = images.double()
    gray = (x * torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    gain, lift = SNOW_WHITENING
    whitened = image_weight * x + (1 - image_weight) * torch.maximum(x, gain * gray + lift)
    return whitened + layer + layer.flip(-2, -1)


# --- frost ----------------------------------------------------------------------------------


def frost_folder() -> Path:
    """The folder of frost photographs in the installed ``imagecorruptions`` package (not imported)."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the frost corruption reads the frost photographs of the imagecorruptions "
            "package: pip install imagecorruptions"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "frost"


@functools.cache
def frost_photos() -> tuple[np.ndarray, ...]:
    """The first five frost photographs, resized x0.2 by OpenCV's bilinear resize as in the reference,
    as RGB uint8 arrays [h, w, 3]."""
    import cv2  # imported on use: slow import

    photos = []
    for name in FROST_PHOTOS[:FROST_PHOTOS_USED]:
        path = frost_folder() / name
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise FileNotFoundError(f"frost photograph {path} is missing or unreadable; reinstall imagecorruptions")
        photos.append(np.ascontiguousarray(cv2.resize(bgr, (0, 0), fx=FROST_SCALE, fy=FROST_SCALE)[..., ::-1]))
    return tuple(photos)


def frost(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    image_weight, frost_weight = FROST[severity - 1]
    count, _, height, width = images.shape
    photos = frost_photos()
    choices = torch.randint(0, len(photos), (count,), generator=generator).tolist()
    corners = torch.rand(count, 2, generator=generator, dtype=torch.float64).tolist()
    crops = []
    for choice, (u, v) in zip(choices, corners):
        photo = photos[choice]
        if photo.shape[0] <= height or photo.shape[1] <= width:
            raise ValueError(f"frost: images of {height}x{width} are larger than the frost photographs")
        # The reference's randint(0, h - H): a top row in [0, h - H - 1].
        top, left = int(u * (photo.shape[0] - height)), int(v * (photo.shape[1] - width))
        crops.append(photo[top : top + height, left : left + width])
    return image_weight * images.double() + frost_weight * from_uint8_arrays(crops)


# --- fog ------------------------------------------------------------------------------------


def plasma_fractal(count: int, size: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """[count, size, size] diamond-square height maps (size a power of two), each scaled to [0, 1].

    From a zero corner the map is refined level by level on a torus: square centres and then
    diamond centres get the mean of their four neighbours plus ``wibble * U(-wibble, wibble)``;
    ``wibble`` starts at 100 and is divided by ``decay`` after each level.
    """
    maps = torch.zeros(count, size, size, dtype=torch.float64)
    step, wibble = size, PLASMA_WIBBLE

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * uniform(generator, tuple(total.shape), -wibble, wibble)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        maps[:, half::step, half::step] = wibbled_mean(squares + squares.roll(-1, dims=2))
        centres, corners = maps[:, half::step, half::step], maps[:, 0::step, 0::step]
        maps[:, 0::step, half::step] = wibbled_mean(
            centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        )
        maps[:, half::step, 0::step] = wibbled_mean(
            centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        )
        step, wibble = half, wibble / decay
    low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low)


def fog(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    strength, decay = FOG[severity - 1]
    count, _, height, width = images.shape
    size = 1 << (max(height, width) - 1).bit_length()  # the next power of two (32 for CIFAR)
    layer = plasma_fractal(count, size, decay, generator)[:, None, :height, :width]
    x = images.double()
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * layer) * peak / (peak + strength)


# --- spatter --------------------------------------------------------------------------------


def water_strength(liquid: np.ndarray) -> np.ndarray:
    """[H, W] strength in [0, 1] of water spatter: the 8-bit liquid layer times an embossed,
    equalized map of the (capped) distance to its Canny edges, scaled to a maximum of 1 (OpenCV)."""
    import cv2  # imported on use: slow import

    layer = np.clip(liquid * 255, 0, 255).astype(np.uint8)
    distance = cv2.distanceTransform(255 - cv2.Canny(layer, *CANNY_THRESHOLDS), cv2.DIST_L2, 5)
    _, distance = cv2.threshold(distance, DISTANCE_CAP, DISTANCE_CAP, cv2.THRESH_TRUNC)
    distance = cv2.equalizeHist(cv2.blur(distance, (3, 3)).astype(np.uint8))
    distance = cv2.filter2D(distance, cv2.CV_8U, np.array(EMBOSS, dtype=np.float32))
    strength = layer.astype(np.float32) * cv2.blur(distance, (3, 3)).astype(np.float32)
    peak = strength.max()
    return strength / peak if peak > 0 else strength


def spatter(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    loc, scale, sigma, threshold, intensity, is_mud = SPATTER[severity - 1]
    count, _, height, width = images.shape
    liquid = loc + scale * torch.randn(count, height, width, generator=generator, dtype=torch.float64)
    liquid = gaussian_filter(liquid.numpy(), sigma, mode="nearest", truncate=4.0)
    liquid[liquid < threshold] = 0
    x = images.double()
    if is_mud:
        mask = gaussian_filter((liquid > threshold).astype(np.float64), intensity, mode="nearest", truncate=4.0)
        mask = torch.from_numpy(np.where(mask < MUD_FLOOR, 0.0, mask))[:, None]
        return x * (1 - mask) + torch.tensor(MUD_COLOUR, dtype=x.dtype).view(1, 3, 1, 1) * mask
    strength = torch.from_numpy(np.stack([water_strength(layer) for layer in liquid])).double()[:, None]
    return x + intensity * strength * torch.tensor(WATER_COLOUR, dtype=x.dtype).view(1, 3, 1, 1)
