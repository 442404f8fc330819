"""Dataset cards: a JSON summary of a dataset dict and a PNG of samples per (y, b) group.

The PNG shows the training split, one row per (y, b) group. Images ([C, H, W], 1 or 3
channels) are drawn as pictures; vectors ([D], e.g. parity's ±1 bits) as heatmap strips, one
line per sample, with the spurious columns outlined (solid black) and the noise columns outlined
(dashed gray); the remaining columns are the core ones where the dataset has a core mask. Lazy natural datasets are read through
:class:`largelr.datasets.lazy.LazyImageDataset` and un-normalized for display. Both files are
written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from largelr.datasets.lazy import LazyImageDataset, group_counts
from largelr.io import atomic_path, write_json

SPLITS = ("train", "val", "test")
SHOWN_SPLIT = "train"
MAX_GROUPS_SHOWN = 20
CELL_INCHES = 1.1
DPI = 100

Group = tuple[int, int]


# --- JSON summary -------------------------------------------------------------------------


def split_summary(split: dict[str, Any], num_bias: int) -> dict[str, Any]:
    y, b = split["y"], split["b"]
    if "g" in split and not torch.equal(split["g"], y * num_bias + b):
        raise ValueError(
            f"stored group ids g disagree with y * num_bias + b (num_bias={num_bias}); rebuild the dataset"
        )
    return {
        "size": len(y),
        # JSON has no NaN: an empty split has no rho.
        "rho": (y != b).double().mean().item() if len(y) else None,
        "group_counts": group_counts(y, b, num_bias),
    }


def card_summary(dataset: dict[str, Any]) -> dict[str, Any]:
    """Name, parameters, shapes, and per split: size, realized rho (fraction y != b), group counts."""
    return {
        "name": dataset["name"],
        "params": dataset["params"],
        "input_shape": list(dataset["input_shape"]),
        "num_classes": dataset["num_classes"],
        "num_bias": dataset["num_bias"],
        "lazy": bool(dataset.get("lazy", False)),
        # inputs standardised on load with these constants (the kind's ``standardize`` parameter)
        "normalization": dataset.get("normalization"),
        "has_spurious_mask": dataset.get("spurious_mask") is not None,
        "has_core_mask": dataset.get("core_mask") is not None,
        "has_noise_mask": dataset.get("noise_mask") is not None,
        # Group counts are keyed by (y, b); a group's id is y * num_bias + b, as stored per sample in `g`.
        "splits": {name: split_summary(dataset[name], dataset["num_bias"]) for name in SPLITS if name in dataset},
        # RGB colour of each bias value where the bias is a colour (Colored MNIST), else absent
        **({"bias_palette": dataset["bias_palette"]} if dataset.get("bias_palette") is not None else {}),
    }


# --- choosing samples ---------------------------------------------------------------------


def random_subset(items: list[Group], count: int, generator: torch.Generator) -> list[Group]:
    """``count`` items chosen uniformly, in their original order."""
    chosen = torch.randperm(len(items), generator=generator)[:count].sort().values
    return [items[i] for i in chosen.tolist()]


def groups_to_show(
    y: torch.Tensor, b: torch.Tensor, num_bias: int, generator: torch.Generator
) -> tuple[list[Group], str]:
    """Non-empty groups to draw (at most MAX_GROUPS_SHOWN) and a note saying which were picked.

    When there are too many, half the rows go to bias-conflicting groups (if there are any)
    so that both the shortcut and its exceptions are visible; the rest to aligned groups.
    """
    ids = torch.unique(y * num_bias + b).tolist()
    present = [(i // num_bias, i % num_bias) for i in ids]
    if len(present) <= MAX_GROUPS_SHOWN:
        return present, f"all {len(present)} groups"
    aligned = [group for group in present if group[0] == group[1]]
    conflicting = [group for group in present if group[0] != group[1]]
    n_aligned = min(len(aligned), MAX_GROUPS_SHOWN - min(len(conflicting), MAX_GROUPS_SHOWN // 2))
    n_conflicting = MAX_GROUPS_SHOWN - n_aligned
    shown = sorted(random_subset(aligned, n_aligned, generator) + random_subset(conflicting, n_conflicting, generator))
    note = (
        f"{n_aligned} of {len(aligned)} BA (y=b) and {n_conflicting} of {len(conflicting)} BC groups, chosen at random"
    )
    return shown, note


def sample_indices(
    y: torch.Tensor, b: torch.Tensor, group: Group, count: int, generator: torch.Generator
) -> torch.Tensor:
    """Up to ``count`` random members of ``group``, in dataset order."""
    members = torch.nonzero((y == group[0]) & (b == group[1])).flatten()
    return members[torch.randperm(len(members), generator=generator)[:count].sort().values]


# --- images -------------------------------------------------------------------------------


def rescale_for_display(images: torch.Tensor) -> torch.Tensor:
    """Images already in [0, 1] unchanged (keeps brightness cues); others min-max scaled jointly."""
    low, high = images.min(), images.max()
    if low >= 0 and high <= 1:
        return images
    return (images - low) / (high - low).clamp_min(1e-12)


def lazy_images(dataset: dict[str, Any], split: str, indices: torch.Tensor) -> torch.Tensor:
    """Images read from disk, with the dataset's normalization undone, in [0, 1]."""
    reader = LazyImageDataset(dataset, split)
    images = torch.stack([reader[i][0] for i in indices.tolist()])
    mean = torch.tensor(dataset["normalization"]["mean"])[None, :, None, None]
    std = torch.tensor(dataset["normalization"]["std"])[None, :, None, None]
    return (images * std + mean).clamp(0, 1)


def display_images(dataset: dict[str, Any], split: str, indices: torch.Tensor) -> torch.Tensor:
    if dataset.get("lazy"):
        return lazy_images(dataset, split, indices)
    images = dataset[split]["x"][indices].float()
    if dataset.get("standardized_on_load"):  # undo load_dataset's standardisation: the stored pixels
        from largelr.analyses.attribute import unnormalized

        images = unnormalized(images, dataset).clamp(0, 1)
    return rescale_for_display(images)


def show_image(axes: plt.Axes, image: torch.Tensor) -> None:
    if image.shape[0] == 1:
        axes.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        axes.imshow(image.permute(1, 2, 0).numpy())


def hide_frame(axes: plt.Axes) -> None:
    """No ticks or spines, but keep the y label (axis("off") would hide it)."""
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)


def label_row(axes: plt.Axes, label: str) -> None:
    """Horizontal label left of a row: vertical text would overlap in the short rows of wide images."""
    axes.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")


def group_label(group: Group, count: int) -> str:
    kind = "BA" if group[0] == group[1] else "BC"
    return f"y={group[0]}, b={group[1]}\n{kind}, n={count}"


def cell_inches(height: int, width: int) -> tuple[float, float]:
    """(width, height) of one grid cell, keeping the image's aspect so rows are not padded."""
    longest = max(height, width)
    return CELL_INCHES * width / longest, CELL_INCHES * height / longest


def image_grid(dataset: dict[str, Any], groups: list[Group], picks: list[torch.Tensor]) -> Figure:
    images = display_images(dataset, SHOWN_SPLIT, torch.cat(picks)).split([len(p) for p in picks])
    counts = group_counts(dataset[SHOWN_SPLIT]["y"], dataset[SHOWN_SPLIT]["b"], dataset["num_bias"])
    columns = max(len(p) for p in picks)
    cell_width, cell_height = cell_inches(*dataset["input_shape"][1:])
    figure, axes = plt.subplots(
        len(groups),
        columns,
        squeeze=False,
        layout="constrained",
        figsize=(cell_width * columns + 1.5, cell_height * len(groups) + 0.5),
    )
    for row, (group, row_images) in enumerate(zip(groups, images)):
        for column, axes_cell in enumerate(axes[row]):
            if column < len(row_images):
                show_image(axes_cell, row_images[column])
            hide_frame(axes_cell)
        label_row(axes[row, 0], group_label(group, counts[f"y={group[0]},b={group[1]}"]))
        if dataset.get("bias_palette") is not None:  # the bias value's palette colour behind its label
            axes[row, 0].yaxis.label.set_bbox({"facecolor": dataset["bias_palette"][group[1]], "edgecolor": "none"})
    return figure


# --- vectors ------------------------------------------------------------------------------


def column_runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive True entries of a 1-d mask."""
    runs: list[tuple[int, int]] = []
    for column in torch.nonzero(mask).flatten().tolist():
        if runs and runs[-1][0] + runs[-1][1] == column:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((column, 1))
    return runs


# How each masked region's columns are outlined: (mask key, label, edge colour, line style).
OUTLINES = (
    ("spurious_mask", "spurious columns outlined", "black", "solid"),
    ("noise_mask", "noise columns dashed", "gray", "dashed"),
)


def outline_regions(axes: plt.Axes, dataset: dict[str, Any], rows: int) -> list[str]:
    """Outline the runs of columns of each masked region (OUTLINES); the labels of those drawn."""
    labels = []
    for key, label, colour, style in OUTLINES:
        mask = dataset.get(key)
        if mask is None or not mask.any():
            continue
        for start, length in column_runs(mask):
            axes.add_patch(
                Rectangle((start - 0.5, -0.5), length, rows, fill=False, edgecolor=colour, linestyle=style, linewidth=2)
            )
        labels.append(label)
    return labels


def vector_strips(dataset: dict[str, Any], groups: list[Group], picks: list[torch.Tensor]) -> Figure:
    """One heatmap per group: a row per sample, a column per input feature, regions outlined."""
    x = dataset[SHOWN_SPLIT]["x"].float()
    counts = group_counts(dataset[SHOWN_SPLIT]["y"], dataset[SHOWN_SPLIT]["b"], dataset["num_bias"])
    limit = x.abs().max().clamp_min(1e-12).item()
    figure, axes = plt.subplots(
        len(groups),
        1,
        squeeze=False,
        sharex=True,
        layout="constrained",
        figsize=(max(4.0, 0.25 * x.shape[1] + 2), 0.9 * len(groups) + 1.2),
    )
    labels: list[str] = []
    for axes_row, group, indices in zip(axes[:, 0], groups, picks):
        axes_row.imshow(
            x[indices].numpy(), cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest"
        )
        labels = outline_regions(axes_row, dataset, len(indices))
        axes_row.set_yticks([])
        label_row(axes_row, group_label(group, counts[f"y={group[0]},b={group[1]}"]))
    outlined = "".join(f"; {label}" for label in labels)
    axes[-1, 0].set_xlabel(f"input feature (blue negative, red positive{outlined})")
    return figure


# --- card ---------------------------------------------------------------------------------


def sample_figure(dataset: dict[str, Any], samples_per_group: int, seed: int) -> Figure:
    """Samples of the training split per (y, b) group, drawn with a generator seeded by ``seed``."""
    split = dataset[SHOWN_SPLIT]
    generator = torch.Generator().manual_seed(seed)
    groups, note = groups_to_show(split["y"], split["b"], dataset["num_bias"], generator)
    picks = [sample_indices(split["y"], split["b"], group, samples_per_group, generator) for group in groups]
    shape = list(dataset["input_shape"])
    if len(shape) == 1:
        figure = vector_strips(dataset, groups, picks)
    elif len(shape) == 3 and shape[0] in (1, 3):
        figure = image_grid(dataset, groups, picks)
    else:
        raise ValueError(
            f"dataset {dataset['name']!r}: cannot draw inputs of shape {shape}; expected [D] or [1|3, H, W]"
        )
    figure.suptitle(
        f"{dataset['name']}: {SHOWN_SPLIT} split, up to {samples_per_group} samples per (y, b) group; {note}",
        fontsize=9,
    )
    return figure


def write_card(
    dataset: dict[str, Any], json_path: str | Path, png_path: str | Path, samples_per_group: int = 8, seed: int = 0
) -> None:
    """Write the dataset's JSON summary and sample PNG, each atomically."""
    write_json(card_summary(dataset), json_path)
    figure = sample_figure(dataset, samples_per_group, seed)
    try:
        with atomic_path(png_path) as temporary:
            figure.savefig(temporary, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(figure)
