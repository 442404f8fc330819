"""The paper's normalized multi-variable figure: every variable against the knob.

Each variable is min-max normalized over its seed means within the (dataset, model)
sweep, so trends of quantities with different units share one [0, 1] axis; the legend
keeps the raw min and max behind each normalized curve. Seeds appear as mean +- sd.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from largelr.aggregate import PAIR_KEYS
from largelr.io import atomic_path

FIGURE_VARIABLES = {
    "test_acc": "unbiased test acc.",
    "prunability": "prunability",
    "compressibility": "act. compressibility",
    "csi": "class selectivity (CSI)",
    "class_sep": "class separation R²",
    "spurious_share": "spurious attribution share",
    "max_bc_loss_ratio": "max BC loss ratio",
}


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
    long = long.assign(normalized=pd.concat(scaled).reindex(long.index))
    return long, bounds


def to_long(pair_cells: pd.DataFrame) -> pd.DataFrame:
    present = [c for c in FIGURE_VARIABLES if c in pair_cells and pair_cells[c].notna().any()]
    long = pair_cells.melt(id_vars=["value", "seed"], value_vars=present, var_name="variable", value_name="raw")
    return long.dropna(subset=["raw"]).reset_index(drop=True)


def normalized_figure(pair_cells: pd.DataFrame, path: str | Path) -> None:
    """One (dataset, model) sweep, usable-range cells only, written as PNG atomically."""
    usable = pair_cells[pair_cells["in_range"]]
    study, dataset, model, knob = (usable[k].iloc[0] for k in PAIR_KEYS)
    long, bounds = normalize_per_variable(to_long(usable))
    long["variable"] = [
        f"{FIGURE_VARIABLES[v]}  [{bounds[v][0]:.3g}, {bounds[v][1]:.3g}]" for v in long["variable"]
    ]
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    sns.lineplot(data=long, x="value", y="normalized", hue="variable", style="variable",
                 markers=True, dashes=False, errorbar="sd", err_kws={"alpha": 0.12}, ax=ax)
    if usable["value"].min() > 0:
        ax.set_xscale("log")
    values = sorted(usable["value"].unique())
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
    n_seeds = usable["seed"].nunique()
    excluded = len(pair_cells) - len(usable)
    note = f", {excluded} cells past the usable range left out" if excluded else ""
    ax.set(xlabel=knob, ylabel="normalized value (per variable)", ylim=(-0.1, 1.1),
           title=f"{study}: {dataset} × {model}, {n_seeds} seeds (mean ± sd){note}")
    ax.legend(title="variable  [raw min, max]", fontsize=7, title_fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)


def pair_figure(cells: pd.DataFrame, dataset: str, model: str, path: str | Path) -> None:
    pair = cells[(cells["dataset"] == dataset) & (cells["model"] == model)]
    if pair.empty:
        raise ValueError(f"no cells for dataset {dataset!r} x model {model!r}; present: "
                         f"{sorted(set(zip(cells['dataset'], cells['model'])))}")
    if pair["in_range"].any():
        normalized_figure(pair, path)
    else:
        placeholder_figure(pair, path)


def placeholder_figure(pair_cells: pd.DataFrame, path: str | Path) -> None:
    """Every cell diverged: say so in the figure rather than leave a missing file."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{pair_cells['dataset'].iloc[0]} × {pair_cells['model'].iloc[0]}: "
            "no cell in the usable range (all diverged)", ha="center", va="center", wrap=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

