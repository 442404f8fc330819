"""Corruptions that transform the image's own pixels: brightness, contrast, saturate, elastic, JPEG,
pixelate (CIFAR-10-C's parameters per severity 1..5; see :mod:`largelr.datasets.corruptions`)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from largelr.datasets.corruptions.pixels import (
    from_uint8_arrays,
    gaussian_filter,
    hsv_to_rgb,
    rgb_to_hsv,
    scaled,
    to_uint8_arrays,
    uniform,
)

BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # HSV value shift
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
# (alpha, sigma, affine) in px at 32x32: IMSIZE * (0, 0, 0.08), (0.05, 0.2, 0.07), ... with IMSIZE 32
ELASTIC = ((0.0, 0.0, 2.56), (1.6, 6.4, 2.24), (2.56, 1.92, 1.92), (3.2, 1.28, 1.6), (3.2, 0.96, 0.96))
JPEG_QUALITY = (80, 65, 58, 50, 40)
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
SATURATE = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))  # saturation * scale + shift


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
    fields = (
        gaussian_filter(
            uniform(generator, (count, 2, height, width), -1, 1).numpy(), sigma, mode="reflect", truncate=3.0
        )
        * alpha
    )
    pixels = images.float().permute(0, 2, 3, 1).numpy()
    warped = [
        elastic_one(image, jitter, field.astype(np.float32)) for image, jitter, field in zip(pixels, jitters, fields)
    ]
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
    resized = [
        np.asarray(
            Image.fromarray(array).resize(small, Image.Resampling.BOX).resize((width, height), Image.Resampling.BOX)
        )
        for array in to_uint8_arrays(images)
    ]
    return from_uint8_arrays(resized)
