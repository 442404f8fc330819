"""The sweep figures, one function per family: normalized multi-variable plots, the intervention
grid (Fig. 6), pruning curves (Figs 20/21), training dynamics (Fig. 13), compressibility notions
(Figs 17/25), class selectivity vs core use (Fig. 26) and max BC loss ratio vs accuracy (Fig. 12).
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

from largelr.figures.base import (
    COMPRESSIBILITY_VARIABLES,
    FIGURE_VARIABLES,
    INTERVENTION_VARIABLES,
    PRUNING_METHODS,
    finish_grid,
    left_out_text,
    normalized_lines,
    pair_title,
    placeholder_figure,
    save_figure,
    select_pair,
    usable_rows,
    use_style,
    value_labels,
)


def normalized_figure(pair_cells: pd.DataFrame, paths: Sequence[str | Path]) -> plt.Figure:
    """One (dataset, model) sweep, included cells only."""
    return normalized_plot(
        pair_cells,
        FIGURE_VARIABLES,
        "variable  [raw min, max of seed means]",
        "seed means (lines) and seeds (points)",
        paths,
    )


def normalized_plot(
    pair_cells: pd.DataFrame, variables: dict[str, str], legend: str, subtitle: str, paths: Sequence[str | Path]
) -> plt.Figure:
    """One axes of normalized variables against the knob for a pair's included cells, titled and saved."""
    use_style()
    fig, ax = plt.subplots(figsize=(8.2, 4.2))
    normalized_lines(ax, pair_cells[pair_cells["included"]], variables, legend)
    ax.set_title(pair_title(pair_cells, subtitle), fontsize=9)
    save_figure(fig, paths)
    return fig


def pair_figure(cells: pd.DataFrame, dataset: str, model: str, paths: Sequence[str | Path]) -> plt.Figure:
    pair = select_pair(cells, dataset, model, "cells")
    if pair["included"].any():
        return normalized_figure(pair, paths)
    return placeholder_figure(f"{dataset} × {model}: no cell included ({left_out_text(pair)})", paths)


def intervention_grid(cells: pd.DataFrame, dataset: str, model: str, paths: Sequence[str | Path]) -> plt.Figure:
    """Fig. 6: one panel per intervention (study), test acc., prunability and CSI against the
    knob (batch size as 1/b), each normalized within its panel; the lr panel comes first."""
    pair = select_pair(cells, dataset, model, "intervention cells")
    usable = pair[pair["included"]]
    panels = sorted(usable.groupby(["study", "knob"]).groups, key=lambda sk: (sk[1] != "lr", sk[0]))
    if not panels:
        return placeholder_figure(f"{dataset} × {model}: no intervention cell included", paths)
    use_style()
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    for ax, (study, knob) in zip(axes.flat, panels):
        panel = usable[(usable["study"] == study) & (usable["knob"] == knob)]
        normalized_lines(ax, panel, {v: FIGURE_VARIABLES[v] for v in INTERVENTION_VARIABLES}, "[raw min, max]")
        ax.legend(title="[raw min, max]", fontsize=6, title_fontsize=6, loc="best")
        ax.set_title(f"{study} ({knob}), {panel['seed'].nunique()} seeds", fontsize=8)
    left = int((~pair["included"]).sum())
    return finish_grid(
        fig,
        axes,
        len(panels),
        f"Interventions: {dataset} × {model} (seed means and seeds, each "
        f"variable normalized per panel; {left} cells left out)",
        paths,
    )


def pruning_figure(
    curves: pd.DataFrame, cells: pd.DataFrame, dataset: str, model: str, paths: Sequence[str | Path]
) -> plt.Figure:
    """Figs 20/21: retention Acc(pruned by κ)/Acc against κ, one line per knob value (seed mean,
    thin bars: sd over seeds), one panel per pruning method; included cells only."""
    pair, pair_cells = usable_rows(curves, cells, dataset, model, "pruning curves")
    pair = pair.dropna(subset=["retention"])
    if pair.empty:
        return placeholder_figure(f"{dataset} × {model}: no pruning curve of an included cell", paths)
    knob, methods = pair["knob"].iloc[0], list(dict.fromkeys(pair["method"]))
    values, labels = sorted(pair["value"].unique()), value_labels(pair_cells)
    palette = sns.color_palette("viridis", n_colors=len(values))
    use_style()
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.8), squeeze=False, sharey=True)
    for ax, method in zip(axes.flat, methods):
        for colour, value in zip(palette, values):
            stats = pair[(pair["method"] == method) & (pair["value"] == value)].groupby("kappa")["retention"]
            mean, sd = stats.mean(), stats.std().fillna(0)
            ax.errorbar(
                mean.index,
                mean.to_numpy(),
                yerr=sd.to_numpy(),
                color=colour,
                marker="o",
                markersize=3,
                linewidth=1.2,
                elinewidth=0.7,
                capsize=2,
                label=labels.get(value, f"{value:g}"),
            )
        ax.set(
            title=f"{method}: {PRUNING_METHODS.get(method, method)}",
            xlabel="pruned fraction κ",
            ylabel="retention Acc(κ)/Acc(0)",
        )
        ax.legend(title=f"{knob} (test acc.)", fontsize=7, title_fontsize=7)
    fig.suptitle(pair_title(pair_cells, "pruning curves, seed mean ± sd"), fontsize=9)
    fig.tight_layout()
    save_figure(fig, paths)
    return fig


# Per-step series of the training-dynamics figure and their panel labels, in panel order.
DYNAMICS_PANELS = {
    "bc_loss_ratio": "BC loss ratio (share of batch CE)",
    "spurious_share": "spurious attribution share",
    "core_share": "core attribution share",
    "noise_share": "noise attribution share",
    "test_acc": "unbiased test accuracy",
}
SMOOTHING_FRACTION = 0.05  # rolling window: this fraction of a curve's recorded points (at least 3)


def smoothed(series: pd.Series) -> pd.Series:
    window = max(3, round(SMOOTHING_FRACTION * len(series)))
    return series.rolling(window, center=True, min_periods=1).mean()


def dynamics_figure(
    history: pd.DataFrame, cells: pd.DataFrame, dataset: str, model: str, paths: Sequence[str | Path]
) -> plt.Figure:
    """Figs 3 (right), 13, 24 (bottom): the BC loss ratio (smoothed by a rolling mean over steps, raw
    values faint behind) and, where recorded, the attribution shares and test accuracy over training,
    one line per knob value, mean over seeds; included cells only."""
    pair, pair_cells = usable_rows(history, cells, dataset, model, "training history")
    panels = [c for c in DYNAMICS_PANELS if c in pair and pair[c].notna().any()]
    if pair.empty or not panels:
        return placeholder_figure(f"{dataset} × {model}: no training history of an included cell", paths)
    knob, values = pair["knob"].iloc[0], sorted(pair["value"].unique())
    palette = sns.color_palette("viridis", n_colors=len(values))
    use_style()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.8), squeeze=False)
    for ax, column in zip(axes.flat, panels):
        for colour, value in zip(palette, values):
            curve = pair[pair["value"] == value].dropna(subset=[column]).groupby("step")[column].mean()
            if column == "bc_loss_ratio":
                ax.plot(curve.index, curve.to_numpy(), color=colour, linewidth=0.5, alpha=0.25)
                curve = smoothed(curve)
            ax.plot(curve.index, curve.to_numpy(), color=colour, linewidth=1.5, label=f"{value:g}")
        ax.set(ylabel=DYNAMICS_PANELS[column], xlabel="training step")
        ax.legend(title=knob, fontsize=7, title_fontsize=8)
    fig.suptitle(
        pair_title(pair_cells, "training dynamics, mean over seeds (BC ratio: rolling mean, raw faint)"), fontsize=9
    )
    fig.tight_layout()
    save_figure(fig, paths)
    return fig


def compressibility_figure(cells: pd.DataFrame, dataset: str, model: str, paths: Sequence[str | Path]) -> plt.Figure:
    """Figs 17, 25: every pruning curve's prunability and the activation statistics (compressibility,
    sparsity, PQ-index) against the knob, normalized per variable; included cells only."""
    pair = select_pair(cells, dataset, model, "cells")
    usable = pair[pair["included"]]
    readings = ("prunability_ratio", "prunability_chance", "prunability_reading")  # the chosen reading is shown
    methods = sorted(c for c in pair.columns if c.startswith("prunability_") and not c.startswith(readings))
    labels = {c: f"prunability ({c.removeprefix('prunability_')})" for c in methods} | COMPRESSIBILITY_VARIABLES
    if usable.empty:
        return placeholder_figure(f"{dataset} × {model}: no cell included ({left_out_text(pair)})", paths)
    return normalized_plot(
        pair,
        labels,
        "notion  [raw min, max of seed means]",
        "compressibility notions, seed means (lines) and seeds (points)",
        paths,
    )


def csi_core_figure(cells: pd.DataFrame, paths: Sequence[str | Path]) -> plt.Figure:
    """Fig. 26: class selectivity (CSI) against the share of attribution on core features, one point
    per included cell, one panel per (dataset, model) whose dataset marks its core features."""
    usable = cells[cells["included"]]
    if "core_share" in usable:
        usable = usable.dropna(subset=["core_share", "csi"])
    if "core_share" not in usable or usable.empty:
        return placeholder_figure("no included cell of a dataset with core features marked (core_share)", paths)
    pairs = list(dict.fromkeys(zip(usable["dataset"], usable["model"])))
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    use_style()
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    for ax, (dataset, model) in zip(axes.flat, pairs):
        pair = usable[(usable["dataset"] == dataset) & (usable["model"] == model)]
        knob = pair["knob"].iloc[0]
        sns.scatterplot(
            data=pair.assign(**{knob: pair["value"].map("{:g}".format)}),
            x="core_share",
            y="csi",
            hue=knob,
            palette="viridis",
            ax=ax,
        )
        r = np.corrcoef(pair["core_share"], pair["csi"])[0, 1] if len(pair) > 2 else np.nan
        ax.set(
            title=f"{dataset} × {model}: r = {r:.2f} (n = {len(pair)})",
            xlabel="core attribution share",
            ylabel="class selectivity (CSI)",
        )
        ax.legend(title=knob, fontsize=6, title_fontsize=7)
    return finish_grid(
        fig,
        axes,
        len(pairs),
        f"{usable['study'].iloc[0]}: CSI vs core attribution share, "
        f"{usable['seed'].nunique()} seeds, one point per included cell "
        f"({int((~cells['included']).sum())} cells left out)",
        paths,
    )


def mechanism_figure(cells: pd.DataFrame, mechanism: pd.DataFrame, paths: Sequence[str | Path]) -> plt.Figure:
    """Fig. 12: max BC loss ratio against test accuracy, one point per included cell, one panel
    per (dataset, model), with the least-squares line and Pearson r of the mechanism table."""
    usable = cells[cells["included"]].dropna(subset=["max_bc_loss_ratio", "test_acc"])
    if usable.empty:
        return placeholder_figure("no included cell with a BC loss ratio", paths)
    study = usable["study"].iloc[0]
    pairs = list(dict.fromkeys(zip(usable["dataset"], usable["model"])))
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    use_style()
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    stats = mechanism.set_index(["dataset", "model"])
    for ax, (dataset, model) in zip(axes.flat, pairs):
        pair = usable[(usable["dataset"] == dataset) & (usable["model"] == model)]
        knob = pair["knob"].iloc[0]
        sns.scatterplot(
            data=pair.assign(**{knob: pair["value"].map("{:g}".format)}),
            x="max_bc_loss_ratio",
            y="test_acc",
            hue=knob,
            palette="viridis",
            ax=ax,
        )
        row = stats.loc[(dataset, model)]
        row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
        if np.isfinite(row["slope"]):
            xs = np.linspace(pair["max_bc_loss_ratio"].min(), pair["max_bc_loss_ratio"].max(), 2)
            ax.plot(xs, row["intercept"] + row["slope"] * xs, color="black", linewidth=1)
        ax.set(
            title=f"{dataset} × {model}: r = {row['pearson_r']:.2f} (n = {int(row['n_cells'])})",
            xlabel="max BC loss ratio in training",
            ylabel="unbiased test acc.",
        )
        ax.legend(title=knob, fontsize=6, title_fontsize=7)
    left = int((~cells["included"]).sum())
    return finish_grid(
        fig,
        axes,
        len(pairs),
        f"{study}: max BC loss ratio vs test accuracy, "
        f"{usable['seed'].nunique()} seeds, one point per included cell ({left} cells left out)",
        paths,
    )
