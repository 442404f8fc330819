"""Helpers shared by the corruptions: sizes relative to CIFAR's, random draws, the 8-bit grid,
uint8 arrays for PIL and OpenCV, HSV, Gaussian filtering (see :mod:`largelr.datasets.corruptions`)."""

from __future__ import annotations

import numpy as np
import torch

REFERENCE_SIZE = 32  # image side the pixel-valued parameters are given for (CIFAR-10-C)
GRAY_LEVEL_ALLOWANCE = 1e-4


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
