"""Low/high learning-rate attribution maps (Fig. 8), from the study's hilo npz files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from largelr.figures.base import placeholder_figure, save_figure, use_style


def displayable(image: np.ndarray) -> np.ndarray:
    """Model input -> an image in [0, 1] (min-max per input): [C, H, W] -> [H, W, 3] or [H, W];
    a flat feature vector (parity) -> one row of pixels."""
    span = image.max() - image.min()
    scaled = (image - image.min()) / span if span > 0 else image * 0
    if scaled.ndim == 1:
        return scaled[None, :]
    if scaled.ndim == 3:
        return scaled[0] if scaled.shape[0] == 1 else np.moveaxis(scaled[:3], 0, -1)
    return scaled


def attribution_heat(attribution: np.ndarray) -> np.ndarray:
    """|attribution| summed over channels ([C, H, W] -> [H, W]); flat vectors become one row."""
    heat = np.abs(attribution)
    return heat.sum(0) if heat.ndim == 3 else np.atleast_2d(heat)


def hilo_figure(
    npz_path: str | Path,
    study: str,
    dataset: str,
    model: str,
    n_seeds: int,
    paths: Sequence[str | Path],
    max_samples: int = 8,
) -> plt.Figure:
    """Fig. 8: test images that high-lr models get right and low-lr models get wrong, with the
    mean |IG| attribution map of each group of seeds (channels summed, each map scaled by
    its own max, printed in the panel)."""
    with np.load(npz_path) as data:
        arrays = {k: data[k] for k in data.files}
    required = {
        "images",
        "labels",
        "indices",
        "maps_low",
        "maps_high",
        "correct_low",
        "correct_high",
        "lr_low",
        "lr_high",
    }
    if missing := required - set(arrays):
        raise ValueError(f"{npz_path}: arrays {sorted(missing)} are missing; expected {sorted(required)}")
    n = min(max_samples, len(arrays["labels"]))
    lr_low, lr_high = float(arrays["lr_low"]), float(arrays["lr_high"])
    title = f"{study}: {dataset} × {model}, lr {lr_low:g} vs {lr_high:g}, {n_seeds} seeds per lr"
    if n == 0:
        return placeholder_figure(
            f"{title}: no test sample is right for >75% of high-lr and <25% of low-lr models", paths
        )
    use_style()
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n + 0.3), squeeze=False, layout="constrained")
    for row in range(n):
        image, label, index = arrays["images"][row], int(arrays["labels"][row]), int(arrays["indices"][row])
        axes[row, 0].imshow(displayable(image), cmap="gray", aspect="auto" if image.ndim == 1 else None)
        axes[row, 0].set_title(f"test #{index}, label {label}", fontsize=7)
        for column, group in ((1, "low"), (2, "high")):
            heat = attribution_heat(arrays[f"maps_{group}"][row])
            peak = float(heat.max())
            axes[row, column].imshow(
                heat / peak if peak > 0 else heat,
                cmap="inferno",
                vmin=0,
                vmax=1,
                aspect="auto" if image.ndim == 1 else None,
            )
            lr = lr_low if group == "low" else lr_high
            right = float(arrays[f"correct_{group}"][row])
            axes[row, column].set_title(f"lr {lr:g}: {right:.0%} right, max |IG| {peak:.2g}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.suptitle(title, fontsize=8)
    save_figure(fig, paths)
    return fig
