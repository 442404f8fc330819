"""The figures' common style and helpers: one seaborn style, normalization per variable, the
knob axis, titles that name the study and its seed count, atomic saving (format from the suffix).

Normalized plots scale each variable by the min and max of its seed means within the
sweep, so trends of quantities with different units share one [0, 1] axis; the legend
keeps the raw min and max behind each curve. Each figure is written to every path given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from largelr.io import atomic_path

FIGURE_VARIABLES = {
    "test_acc": "unbiased test acc.",
    "test_worst_group_acc": "worst-group test acc.",
    "prunability": "prunability",
    "compressibility": "act. compressibility",
    "csi": "class selectivity (CSI)",
    "class_sep": "class separation R²",
    "spurious_share": "spurious attribution share",
    "core_share": "core attribution share",
    "noise_share": "noise attribution share",
    "attribution_entropy": "attribution entropy",
    "background_share": "background attribution share",
    "max_bc_loss_ratio": "max BC loss ratio",
}


# Figs 17 and 25: the compressibility notions side by side (every pruning curve's mean retention
# is added per method, as "prunability_<method>" columns).
COMPRESSIBILITY_VARIABLES = {
    "compressibility": "act. compressibility (q=2, κ=0.1)",
    "sparsity": "act. sparsity",
    "pq_index": "act. PQ-index",
}


# What each pruning method removes, for panel titles.
PRUNING_METHODS = {
    "structured": "neurons / kernels (the paper's)",
    "structured_columns": "input columns + kernels",
    "column": "whole input columns / channels",
    "magnitude": "weights, per layer",
    "magnitude_global": "weights, global threshold",
}


# The intervention grid compares the Table 2 variables.
INTERVENTION_VARIABLES = ("test_acc", "prunability", "csi")
STYLE = {"style": "whitegrid", "context": "paper"}
DPI = 130


def use_style() -> None:
    sns.set_theme(**STYLE)


def save_figure(fig: plt.Figure, paths: Sequence[str | Path]) -> None:
    """Write ``fig`` atomically to each path, in the format its suffix names."""
    for path in paths:
        suffix = Path(path).suffix.lstrip(".").lower()
        if suffix not in ("png", "pdf", "svg"):
            raise ValueError(f"figure path {path}: suffix .{suffix} is not allowed; use .png, .pdf or .svg")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def normalize_per_variable(long: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[float, float]]]:
    """Scale each variable by the min and max of its per-value seed means (constant -> 0.5)."""
    means = long.groupby(["variable", "value"])["raw"].mean()
    bounds: dict[str, tuple[float, float]] = {}
    scaled = []
    for variable, rows in long.groupby("variable", sort=False):
        low, high = float(means[variable].min()), float(means[variable].max())
        bounds[variable] = (low, high)
        span = high - low
        scaled.append((rows["raw"] - low) / span if span > 0 else rows["raw"] * 0 + 0.5)
    long = long.assign(normalized=pd.concat(scaled).reindex(long.index) if scaled else [])
    return long, bounds


def to_long(pair_cells: pd.DataFrame, variables: Sequence[str] = tuple(FIGURE_VARIABLES)) -> pd.DataFrame:
    present = [c for c in variables if c in pair_cells and pair_cells[c].notna().any()]
    long = pair_cells.melt(id_vars=["value", "seed"], value_vars=present, var_name="variable", value_name="raw")
    return long.dropna(subset=["raw"]).reset_index(drop=True)


def knob_x(cells: pd.DataFrame) -> tuple[pd.Series, str]:
    """The x values of a sweep and their label: the knob's values, or 1/b for batch size (as the paper)."""
    knob = cells["knob"].iloc[0]
    if knob == "batch_size":
        return 1 / cells["value"], "1 / batch size"
    return cells["value"], {"lr": "learning rate η"}.get(knob, knob)


def knob_axis(ax: plt.Axes, values: Sequence[float], label: str) -> None:
    values = sorted(set(values))
    if min(values) > 0:
        ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:.3g}" for v in values], rotation=45 if len(values) > 5 else 0)
    ax.minorticks_off()
    ax.set_xlabel(label)


def normalized_lines(ax: plt.Axes, cells: pd.DataFrame, labels: dict[str, str], legend_title: str) -> None:
    """Every variable of ``labels`` (column -> legend name) against the knob, normalized per variable:
    a line through the seed means and each seed as a faint point; legend entries carry the raw
    [min, max] of the seed means."""
    x, label = knob_x(cells)
    long, bounds = normalize_per_variable(to_long(cells.assign(value=x), list(labels)))
    palette = sns.color_palette("tab10" if len(bounds) <= 10 else "tab20", n_colors=max(len(bounds), 1))  # no repeats
    markers = "osD^vP*Xh<>"
    for index, (variable, rows) in enumerate(long.groupby("variable", sort=False)):
        colour, marker = palette[index % len(palette)], markers[index % len(markers)]
        means = rows.groupby("value")["normalized"].mean()
        low, high = bounds[variable]
        ax.plot(
            means.index,
            means.to_numpy(),
            marker=marker,
            color=colour,
            linewidth=1.6,
            markersize=5,
            label=f"{labels[variable]}  [{low:.3g}, {high:.3g}]",
        )
        ax.scatter(rows["value"], rows["normalized"], color=colour, marker=marker, s=10, alpha=0.35, linewidths=0)
    knob_axis(ax, list(x), label)
    ax.set(ylabel="normalized value (per variable)", ylim=(-0.1, 1.1))
    ax.legend(title=legend_title, fontsize=8, title_fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))


def left_out_text(pair_cells: pd.DataFrame) -> str:
    """'2 past the usable range, 1 not converged left out' (empty when every cell is included)."""
    if "left_out" not in pair_cells:
        return ""
    counts = pair_cells.loc[~pair_cells["included"], "left_out"].value_counts().sort_index()
    parts = [f"{count} {reason}" for reason, count in counts.items()]
    return f"left out: {', '.join(parts)}" if parts else "no cell left out"


def pair_title(pair_cells: pd.DataFrame, what: str = "") -> str:
    """Study, pair, seeds and cells: the first line of every per-pair figure's title."""
    usable = pair_cells[pair_cells["included"]]
    study, dataset, model = (pair_cells[k].iloc[0] for k in ("study", "dataset", "model"))
    head = f"{study}: {dataset} × {model}{' — ' + what if what else ''}"
    detail = f"{usable['seed'].nunique()} seeds, {len(usable)} of {len(pair_cells)} cells"
    near = int((usable["near_chance"]).sum()) if "near_chance" in usable else 0
    extra = [left_out_text(pair_cells)] + ([f"{near} included near chance"] if near else [])
    return f"{head}\n{detail}; " + "; ".join(e for e in extra if e)


def select_pair(frame: pd.DataFrame, dataset: str, model: str, what: str) -> pd.DataFrame:
    pair = frame[(frame["dataset"] == dataset) & (frame["model"] == model)]
    if pair.empty:
        raise ValueError(
            f"no {what} for dataset {dataset!r} x model {model!r}; present: "
            f"{sorted(set(zip(frame['dataset'], frame['model'])))}"
        )
    return pair


def placeholder_figure(message: str, paths: Sequence[str | Path]) -> plt.Figure:
    """Nothing to draw: say so in the figure rather than leave a missing file."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    save_figure(fig, paths)
    return fig


def finish_grid(fig: plt.Figure, axes: np.ndarray, used: int, title: str, paths: Sequence[str | Path]) -> plt.Figure:
    """Blank the unused panels of a grid, title it, lay it out and save it."""
    for ax in axes.flat[used:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, paths)
    return fig


def usable_rows(
    frame: pd.DataFrame, cells: pd.DataFrame, dataset: str, model: str, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pair's rows of ``frame`` from included cells, and the pair's cells."""
    pair_cells = select_pair(cells, dataset, model, "cells")
    keys = ["value", "seed"]
    rows = select_pair(frame, dataset, model, what).merge(pair_cells.loc[pair_cells["included"], keys], on=keys)
    return rows, pair_cells


def value_labels(pair_cells: pd.DataFrame) -> dict[float, str]:
    """Legend text per knob value: the value and the seed-mean test accuracy that retention is relative to."""
    means = pair_cells[pair_cells["included"]].groupby("value")["test_acc"].mean()
    return {value: f"{value:g} (acc {acc:.2f})" for value, acc in means.items()}
