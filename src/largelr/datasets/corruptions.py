"""The ten corruptions of Corrupted CIFAR-10 (LfF "type 0"), as CIFAR-10-C makes them.

Hendrycks & Dietterich (2019) published CIFAR-10-C with one parameter set per severity 1..5 for
32x32 images; the tables below are those values (PAPER.md lists them) and each corruption
follows the reference algorithm:

* snow: a Gaussian snow layer, centre-zoomed (bilinear), thresholded, motion-blurred along an
  angle uniform in [-135, -45] degrees, added twice (as is and rotated by 180 degrees) to the image
  whitened towards 1.5 gray + 0.5;
* frost: one of the first five of the six frost photographs shipped in the ``imagecorruptions``
  package (``imagecorruptions/frost/``), resized x0.2 (OpenCV bilinear), a random crop of the
  image's size, blended as ``image_weight * x + frost_weight * crop``;
* fog: a diamond-square plasma fractal of size 32 (wibble 100, divided by the "wibble decay" at
  each level), added with the strength and rescaled by ``max / (max + strength)``;
* brightness / saturate: HSV value + shift / saturation x scale + shift, clipped to [0, 1];
* contrast: deviations from each channel's spatial mean scaled by the factor;
* spatter: a blurred Gaussian liquid layer, thresholded; water mode (severities 1-3) adds pale
  turquoise with the strength of an embossed, equalized distance-to-Canny-edges map (OpenCV),
  mud mode (4-5) blends brown in where the blurred mask reaches 0.8;
* elastic: a random affine map of three points jittered by ``affine`` px (OpenCV, reflect-101
  border), then a displacement field of uniform noise in [-1, 1] Gaussian-smoothed by ``sigma``
  (reflect, truncate 3) and scaled by ``alpha``, sampled bilinearly (scipy, reflect);
* JPEG: PIL's encoder at the quality, decoded again;
* pixelate: PIL's box filter down to ``int(size * factor)`` and box filter up again.

Every corruption maps float images ``[N, 3, H, W]`` in [0, 1] to images of the same shape and
dtype in [0, 1]; all randomness comes from the given ``torch.Generator``, so a corruption is
deterministic given the generator's state. The dataset then stores the result on the 8-bit grid
as CIFAR-10-C does (:func:`saved_as_uint8`). OpenCV, scipy and PIL do the filtering where the
reference uses them; they are imported on first use (slow imports).

Deviations from the reference code that remain:

* Random numbers come from the torch generator, not numpy's global state: the same
  distributions, other draws.
* snow: the reference blurs with ImageMagick's motion blur (through Wand); this is that blur
  written out (taps ``i = 0 .. 2 radius`` of weight ``exp(-i^2 / 2 sigma^2)``, normalized, each
  reading the pixel ``ceil(i sin(angle) - 0.5)`` rows and ``ceil(i cos(angle) - 0.5)`` columns
  away, edge pixels repeated) on the layer rounded to 8 bits, its output rounded to 8 bits again
  as the PNG round trip does. ImageMagick itself is not used.
* spatter (water): the liquid layer is clipped to [0, 1] before its 8-bit cast (the reference
  casts without clipping, so the rare values above 1 would wrap around), and a layer without
  liquid adds nothing (the reference divides by its zero maximum).
* frost: the photographs are located with ``importlib.util.find_spec`` and read from the
  installed package's folder; the package is not imported, since its ``__init__`` imports
  ``pkg_resources`` (absent from current setuptools) and uses numpy APIs removed in numpy 2, and
  none of its functions are used (their constants are the ImageNet-C ones).
* Images of another size than 32x32 (the reference has CIFAR's only): the pixel-valued
  parameters (snow blur radius and sigma, elastic alpha, sigma and affine jitter) are scaled by
  ``min(H, W) / 32``, fog uses the next power of two at least ``max(H, W)`` and crops, frost
  crops ``H x W`` from the photographs.
* HSV conversion is written in torch (the reference uses scikit-image's); the formulas are the
  same, up to float rounding.
* The 8-bit storage truncates like the reference's ``np.uint8``, with an allowance of 1e-4 of a
  gray level so that float rounding (254.99999 for 255) does not drop a level.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]

REFERENCE_SIZE = 32  # image side the pixel-valued parameters are given for (CIFAR-10-C)
# (loc, scale, zoom, threshold, blur radius, blur sigma, image weight)
SNOW = ((0.1, 0.2, 1.0, 0.6, 8, 3, 0.95), (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))
SNOW_ANGLES = (-135.0, -45.0)  # degrees, uniform
SNOW_WHITENING = (1.5, 0.5)  # the whitened scene is max(x, 1.5 gray + 0.5)
FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # (image weight, frost weight)
FROST_PHOTOS = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
FROST_PHOTOS_USED = 5  # the reference draws among the first five
FROST_SCALE = 0.2
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # (strength, wibble decay)
PLASMA_WIBBLE = 100.0
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # HSV value shift
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
# (loc, scale, sigma, threshold, intensity, mud?)
SPATTER = ((0.62, 0.1, 0.7, 0.7, 0.5, False), (0.65, 0.1, 0.8, 0.7, 0.5, False), (0.65, 0.3, 1.0, 0.69, 0.5, False),
           (0.65, 0.1, 0.7, 0.69, 0.6, True), (0.65, 0.1, 0.5, 0.68, 0.6, True))
WATER_COLOUR = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise
MUD_COLOUR = (63 / 255, 42 / 255, 20 / 255)
MUD_FLOOR = 0.8  # blurred mud mask values below it are dropped
CANNY_THRESHOLDS = (50, 150)
DISTANCE_CAP = 20.0
EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))
# (alpha, sigma, affine) in px at 32x32: IMSIZE * (0, 0, 0.08), (0.05, 0.2, 0.07), ... with IMSIZE 32
ELASTIC = ((0.0, 0.0, 2.56), (1.6, 6.4, 2.24), (2.56, 1.92, 1.92), (3.2, 1.28, 1.6), (3.2, 0.96, 0.96))
JPEG_QUALITY = (80, 65, 58, 50, 40)
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
SATURATE = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))  # saturation * scale + shift
LUMA = (0.299, 0.587, 0.114)  # OpenCV's RGB2GRAY weights
GRAY_LEVEL_ALLOWANCE = 1e-4


# --- helpers ----------------------------------------------------------------------------


def scaled(pixels: float, images: torch.Tensor) -> float:
    """A length given at REFERENCE_SIZE, scaled to the images' size."""
    return pixels * min(images.shape[-2:]) / REFERENCE_SIZE


def uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def eight_bit(values: torch.Tensor) -> torch.Tensor:
    """Rounded to the 1/255 grid, as writing and reading an 8-bit image does."""
    return torch.round(values * 255) / 255


def saved_as_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] on the 1/255 grid as CIFAR-10-C saves them: ``np.uint8(255 x)`` truncates
    (see the module docstring for the allowance)."""
    levels = torch.floor(images.double() * 255 + GRAY_LEVEL_ALLOWANCE).clamp(0, 255)
    return levels.to(images.dtype) / 255


def to_uint8_arrays(images: torch.Tensor) -> np.ndarray:
    """[N, H, W, 3] uint8 arrays for PIL and OpenCV."""
    return (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def from_uint8_arrays(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    red, green, blue = images.unbind(1)
    value, _ = images.max(dim=1)
    chroma = value - images.min(dim=1).values
    safe_chroma = torch.where(chroma > 0, chroma, 1.0)
    hue = torch.where(
        value == red,
        ((green - blue) / safe_chroma) % 6,
        torch.where(value == green, (blue - red) / safe_chroma + 2, (red - green) / safe_chroma + 4),
    )
    hue = torch.where(chroma > 0, hue / 6, 0.0)
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, 1.0), 0.0)
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = images.unbind(1)
    # Closed form: channel n is V - V*S*clamp(min(k, 4 - k), 0, 1) with k = (n + 6H) mod 6.
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6 * hue) % 6
        channels.append(value - value * saturation * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(channels, dim=1)


def gaussian_filter(values: np.ndarray, sigma: float, mode: str, truncate: float) -> np.ndarray:
    """scipy's Gaussian filter over the last two axes of a stack (scikit-image's ``gaussian``, which
    the reference calls, is this filter)."""
    from scipy.ndimage import gaussian_filter as scipy_gaussian

    sigmas = (0.0,) * (values.ndim - 2) + (sigma, sigma)
    return scipy_gaussian(values, sigma=sigmas, mode=mode, truncate=truncate)


# --- snow -----------------------------------------------------------------------------------


def clipped_zoom(layers: np.ndarray, zoom: float) -> np.ndarray:
    """[N, H, W] layers with their centre magnified by ``zoom`` >= 1, same size: the central
    ``ceil(H / zoom)`` rows and columns, zoomed bilinearly (scipy), trimmed back to H x W."""
    from scipy.ndimage import zoom as scipy_zoom

    height, width = layers.shape[1:]
    crop_h, crop_w = math.ceil(height / zoom), math.ceil(width / zoom)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    zoomed = scipy_zoom(layers[:, top:top + crop_h, left:left + crop_w], (1, zoom, zoom), order=1)
    trim_top, trim_left = (zoomed.shape[1] - height) // 2, (zoomed.shape[2] - width) // 2
    return zoomed[:, trim_top:trim_top + height, trim_left:trim_left + width]


def motion_blur(layers: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur of [N, H, W] layers, one angle (radians) per layer: tap i of
    ``2 radius + 1`` has weight exp(-i^2 / 2 sigma^2) (normalized) and reads the pixel i steps along
    the angle, offsets rounded half down, edge pixels repeated."""
    count, height, width = layers.shape
    taps = torch.arange(2 * radius + 1, dtype=torch.float64)
    weights = torch.exp(-taps**2 / (2 * sigma**2))
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
        raise ModuleNotFoundError("the frost corruption reads the frost photographs of the imagecorruptions "
                                  "package: pip install imagecorruptions")
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
        crops.append(photo[top:top + height, left:left + width])
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
        maps[:, 0::step, half::step] = wibbled_mean(centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2))
        maps[:, half::step, 0::step] = wibbled_mean(centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1))
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


# --- colour ---------------------------------------------------------------------------------


def brightness(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    hsv = rgb_to_hsv(images.double())
    hsv[:, 2] = (hsv[:, 2] + BRIGHTNESS[severity - 1]).clamp(0, 1)
    return hsv_to_rgb(hsv)


def contrast(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    x = images.double()
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * CONTRAST[severity - 1] + means


def saturate(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    scale, shift = SATURATE[severity - 1]
    hsv = rgb_to_hsv(images.double())
    hsv[:, 1] = (hsv[:, 1] * scale + shift).clamp(0, 1)
    return hsv_to_rgb(hsv)


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


# --- elastic --------------------------------------------------------------------------------


def elastic_one(image: np.ndarray, jitter: np.ndarray, field: np.ndarray) -> np.ndarray:
    """[H, W, C] float32 image: the affine map moving three points around the centre by ``jitter``
    [3, 2] (OpenCV, reflect-101 border), then displaced by ``field`` [2, H, W] = (dx, dy), bilinear."""
    import cv2  # imported on use: slow import
    from scipy.ndimage import map_coordinates

    height, width = image.shape[:2]
    centre, half = np.float32([height, width]) // 2, min(height, width) // 3
    points = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    matrix = cv2.getAffineTransform(points, (points + jitter).astype(np.float32))
    warped = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coordinates = np.stack([rows + field[1], cols + field[0]])
    channels = [map_coordinates(warped[..., c], coordinates, order=1, mode="reflect") for c in range(image.shape[2])]
    return np.stack(channels, axis=-1)


def elastic(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    alpha, sigma, affine = (scaled(value, images) for value in ELASTIC[severity - 1])
    count, _, height, width = images.shape
    jitters = uniform(generator, (count, 3, 2), -affine, affine).numpy()
    fields = gaussian_filter(uniform(generator, (count, 2, height, width), -1, 1).numpy(), sigma, mode="reflect",
                             truncate=3.0) * alpha
    pixels = images.float().permute(0, 2, 3, 1).numpy()
    warped = [elastic_one(image, jitter, field.astype(np.float32)) for image, jitter, field in zip(pixels, jitters, fields)]
    return torch.from_numpy(np.stack(warped)).permute(0, 3, 1, 2).double()


# --- digital --------------------------------------------------------------------------------


def jpeg(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    decoded = []
    for array in to_uint8_arrays(images):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY[severity - 1])
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return from_uint8_arrays(decoded)


def pixelate(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    height, width = images.shape[-2:]
    factor = PIXELATE[severity - 1]
    small = (int(width * factor), int(height * factor))
    resized = [np.asarray(Image.fromarray(array).resize(small, Image.Resampling.BOX).resize((width, height),
                                                                                          Image.Resampling.BOX))
               for array in to_uint8_arrays(images)]
    return from_uint8_arrays(resized)


# Order fixes the bias label: corrupted_cifar10 applies CORRUPTIONS[k] to samples with b = k.
CORRUPTIONS: dict[str, Corruption] = {
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "spatter": spatter,
    "elastic": elastic,
    "jpeg": jpeg,
    "pixelate": pixelate,
    "saturate": saturate,
}
CORRUPTION_NAMES = tuple(CORRUPTIONS)


def corrupt(images: torch.Tensor, name: str, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Apply corruption ``name`` to float images [N, 3, H, W] in [0, 1]; same shape/dtype, in [0, 1]."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; allowed: {list(CORRUPTION_NAMES)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"corruption severity {severity} outside 1..5")
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"expected float images [N, 3, H, W], got {images.dtype} {list(images.shape)}")
    if len(images) == 0:
        return images.clone()
    return CORRUPTIONS[name](images, severity, generator).clamp(0, 1).to(images.dtype)
