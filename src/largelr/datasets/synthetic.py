"""Synthetic sets: parity bits and moon-vs-star images, drawn procedurally.

* ``parity``: y is the parity of ``core_bits`` random +-1 bits; b is the parity of
  ``spurious_bits`` further bits, drawn so that b = y except on a ``rho`` fraction; then
  ``noise_bits`` uniform +-1 bits independent of y and b (the paper's Fig. 3 plots
  attributions "for core, spurious, and noise pixels"). x = [core, spurious, noise], and the
  masks ``core_mask``, ``spurious_mask``, ``noise_mask`` mark the three blocks.
* ``moon_star``: a moon (y=0) or a star (y=1) on a black canvas; b is the diagonal quadrant
  pair that holds the object (Geirhos et al.'s shortcut-learning toy task), so in training each
  class sits mostly in its own two quadrants and at test time position is independent of class.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from largelr.datasets.kind import SplitTensors, assemble, assign_bias, split_generator

STAR_INNER_RATIO = 0.4
MOON_CUT_OFFSET = 0.5  # centre of the cut-out disk, in units of the moon radius
MOON_CUT_RADIUS = 0.8  # radius of the cut-out disk, in units of the moon radius


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


def parity_split(core_bits: int, spurious_bits: int, n: int, rho: float, generator: torch.Generator) -> SplitTensors:
    core = random_signs((n, core_bits), generator)
    y = sign_parity(core)
    b = assign_bias(y, rho, 2, generator)
    spurious = signs_with_parity(b, spurious_bits, generator)
    return {"x": torch.cat([core, spurious], dim=1), "y": y, "b": b}


def with_noise_bits(split: SplitTensors, noise_bits: int, generator: torch.Generator) -> SplitTensors:
    """``noise_bits`` uniform +-1 columns appended to x, drawn from their own stream (independent of y, b)."""
    noise = random_signs((len(split["y"]), noise_bits), generator)
    return {**split, "x": torch.cat([split["x"], noise], dim=1)}


def parity_masks(core_bits: int, spurious_bits: int, noise_bits: int) -> dict[str, torch.Tensor | None]:
    """Bool masks over x = [core, spurious, noise]; no noise mask when there are no noise bits."""
    block = torch.repeat_interleave(torch.arange(3), torch.tensor([core_bits, spurious_bits, noise_bits]))
    return {"core_mask": block == 0, "spurious_mask": block == 1, "noise_mask": block == 2 if noise_bits else None}


def build_parity(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """Label = parity of the core bits; bias = parity of the spurious bits; then independent noise bits."""
    core_bits, spurious_bits, noise_bits = params["core_bits"], params["spurious_bits"], params["noise_bits"]
    splits = {}
    for split in ("train", "test"):
        bits = parity_split(
            core_bits, spurious_bits, params[f"n_{split}"], params[f"rho_{split}"], split_generator(seed, split)
        )
        splits[split] = with_noise_bits(bits, noise_bits, split_generator(seed, f"{split}-noise"))
    masks = parity_masks(core_bits, spurious_bits, noise_bits)
    return assemble(
        "parity",
        splits["train"],
        splits["test"],
        2,
        2,
        masks["spurious_mask"],
        masks["core_mask"],
        params,
        seed,
        noise_mask=masks["noise_mask"],
    )


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


def moon_star_split(size: int, n: int, rho: float, generator: torch.Generator) -> SplitTensors:
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
