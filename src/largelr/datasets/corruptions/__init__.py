"""The ten corruptions of Corrupted CIFAR-10 (LfF "type 0"), as CIFAR-10-C makes them.

Hendrycks & Dietterich (2019) published CIFAR-10-C with one parameter set per severity 1..5 for
32x32 images; the tables of :mod:`.layers` and :mod:`.transforms` are those values (PAPER.md
lists them) and each corruption follows the reference algorithm:

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
as CIFAR-10-C does (:func:`saved_as_uint8`, from :mod:`.pixels` with the other helpers). OpenCV,
scipy and PIL do the filtering where the reference uses them; they are imported on first use (slow
imports).

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

from typing import Callable

import torch

from largelr.datasets.corruptions.layers import fog, frost, snow, spatter
from largelr.datasets.corruptions.pixels import saved_as_uint8
from largelr.datasets.corruptions.transforms import brightness, contrast, elastic, jpeg, pixelate, saturate

__all__ = ["CORRUPTIONS", "CORRUPTION_NAMES", "Corruption", "corrupt", "saved_as_uint8"]

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]

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
