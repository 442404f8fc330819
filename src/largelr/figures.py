"""The paper's figures, one seaborn style: normalized multi-variable plots, the
intervention grid (Fig. 6), pruning curves (Figs 20/21), max BC loss ratio vs accuracy
(Fig. 12), training dynamics (Fig. 13) and low/high learning-rate attribution maps (Fig. 8).

Normalized plots scale each variable by the min and max of its seed means within the
sweep, so trends of quantities with different units share one [0, 1] axis; the legend
keeps the raw min and max behind each curve. Every figure names its study and seed count.
Each figure is written to every path given (format from the suffix: .png, .pdf).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
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
COMPRESSIBILITY_VARIABLES = {"compressibility": "act. compressibility (q=2, κ=0.1)", "sparsity": "act. sparsity",
                             "pq_index": "act. PQ-index"}
# What each pruning method removes, for panel titles.
PRUNING_METHODS = {"structured": "neurons / kernels (the paper's)", "structured_columns": "input columns + kernels",
                   "column": "whole input columns / channels", "magnitude": "weights, per layer",
                   "magnitude_global": "weights, global threshold"}
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
        ax.plot(means.index, means.to_numpy(), marker=marker, color=colour, linewidth=1.6, markersize=5,
                label=f"{labels[variable]}  [{low:.3g}, {high:.3g}]")
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


def normalized_figure(pair_cells: pd.DataFrame, paths: Sequence[str | Path]) -> plt.Figure:
    """One (dataset, model) sweep, included cells only."""
    return normalized_plot(pair_cells, FIGURE_VARIABLES, "variable  [raw min, max of seed means]",
                           "seed means (lines) and seeds (points)", paths)


def normalized_plot(pair_cells: pd.DataFrame, variables: dict[str, str], legend: str, subtitle: str,
                    paths: Sequence[str | Path]) -> plt.Figure:
    """One axes of normalized variables against the knob for a pair's included cells, titled and saved."""
    use_style()
    fig, ax = plt.subplots(figsize=(8.2, 4.2))
    normalized_lines(ax, pair_cells[pair_cells["included"]], variables, legend)
    ax.set_title(pair_title(pair_cells, subtitle), fontsize=9)
    save_figure(fig, paths)
    return fig


def select_pair(frame: pd.DataFrame, dataset: str, model: str, what: str) -> pd.DataFrame:
    pair = frame[(frame["dataset"] == dataset) & (frame["model"] == model)]
    if pair.empty:
        raise ValueError(f"no {what} for dataset {dataset!r} x model {model!r}; present: "
                         f"{sorted(set(zip(frame['dataset'], frame['model'])))}")
    return pair


def pair_figure(cells: pd.DataFrame, dataset: str, model: str, paths: Sequence[str | Path]) -> plt.Figure:
    pair = select_pair(cells, dataset, model, "cells")
    if pair["included"].any():
        return normalized_figure(pair, paths)
    return placeholder_figure(f"{dataset} × {model}: no cell included ({left_out_text(pair)})", paths)


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
    return finish_grid(fig, axes, len(panels), f"Interventions: {dataset} × {model} (seed means and seeds, each "
                       f"variable normalized per panel; {left} cells left out)", paths)


def usable_rows(frame: pd.DataFrame, cells: pd.DataFrame, dataset: str, model: str,
                what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pair's rows of ``frame`` from included cells, and the pair's cells."""
    pair_cells = select_pair(cells, dataset, model, "cells")
    keys = ["value", "seed"]
    rows = select_pair(frame, dataset, model, what).merge(pair_cells.loc[pair_cells["included"], keys], on=keys)
    return rows, pair_cells


def value_labels(pair_cells: pd.DataFrame) -> dict[float, str]:
    """Legend text per knob value: the value and the seed-mean test accuracy that retention is relative to."""
    means = pair_cells[pair_cells["included"]].groupby("value")["test_acc"].mean()
    return {value: f"{value:g} (acc {acc:.2f})" for value, acc in means.items()}


def pruning_figure(curves: pd.DataFrame, cells: pd.DataFrame, dataset: str, model: str,
                   paths: Sequence[str | Path]) -> plt.Figure:
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
            ax.errorbar(mean.index, mean.to_numpy(), yerr=sd.to_numpy(), color=colour, marker="o", markersize=3,
                        linewidth=1.2, elinewidth=0.7, capsize=2, label=labels.get(value, f"{value:g}"))
        ax.set(title=f"{method}: {PRUNING_METHODS.get(method, method)}", xlabel="pruned fraction κ",
               ylabel="retention Acc(κ)/Acc(0)")
        ax.legend(title=f"{knob} (test acc.)", fontsize=7, title_fontsize=7)
    fig.suptitle(pair_title(pair_cells, "pruning curves, seed mean ± sd"), fontsize=9)
    fig.tight_layout()
    save_figure(fig, paths)
    return fig


# Per-step series of the training-dynamics figure and their panel labels, in panel order.
DYNAMICS_PANELS = {"bc_loss_ratio": "BC loss ratio (share of batch CE)", "spurious_share": "spurious attribution share",
                   "core_share": "core attribution share", "noise_share": "noise attribution share",
                   "test_acc": "unbiased test accuracy"}
SMOOTHING_FRACTION = 0.05  # rolling window: this fraction of a curve's recorded points (at least 3)


def smoothed(series: pd.Series) -> pd.Series:
    window = max(3, round(SMOOTHING_FRACTION * len(series)))
    return series.rolling(window, center=True, min_periods=1).mean()


def dynamics_figure(history: pd.DataFrame, cells: pd.DataFrame, dataset: str, model: str,
                    paths: Sequence[str | Path]) -> plt.Figure:
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
    fig.suptitle(pair_title(pair_cells, "training dynamics, mean over seeds (BC ratio: rolling mean, raw faint)"),
                 fontsize=9)
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
    return normalized_plot(pair, labels, "notion  [raw min, max of seed means]",
                           "compressibility notions, seed means (lines) and seeds (points)", paths)


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
        sns.scatterplot(data=pair.assign(**{knob: pair["value"].map("{:g}".format)}), x="core_share", y="csi",
                        hue=knob, palette="viridis", ax=ax)
        r = np.corrcoef(pair["core_share"], pair["csi"])[0, 1] if len(pair) > 2 else np.nan
        ax.set(title=f"{dataset} × {model}: r = {r:.2f} (n = {len(pair)})", xlabel="core attribution share",
               ylabel="class selectivity (CSI)")
        ax.legend(title=knob, fontsize=6, title_fontsize=7)
    return finish_grid(fig, axes, len(pairs), f"{usable['study'].iloc[0]}: CSI vs core attribution share, "
                       f"{usable['seed'].nunique()} seeds, one point per included cell "
                       f"({int((~cells['included']).sum())} cells left out)", paths)


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
        sns.scatterplot(data=pair.assign(**{knob: pair["value"].map("{:g}".format)}), x="max_bc_loss_ratio",
                        y="test_acc", hue=knob, palette="viridis", ax=ax)
        row = stats.loc[(dataset, model)]
        row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
        if np.isfinite(row["slope"]):
            xs = np.linspace(pair["max_bc_loss_ratio"].min(), pair["max_bc_loss_ratio"].max(), 2)
            ax.plot(xs, row["intercept"] + row["slope"] * xs, color="black", linewidth=1)
        ax.set(title=f"{dataset} × {model}: r = {row['pearson_r']:.2f} (n = {int(row['n_cells'])})",
               xlabel="max BC loss ratio in training", ylabel="unbiased test acc.")
        ax.legend(title=knob, fontsize=6, title_fontsize=7)
    left = int((~cells["included"]).sum())
    return finish_grid(fig, axes, len(pairs), f"{study}: max BC loss ratio vs test accuracy, "
                       f"{usable['seed'].nunique()} seeds, one point per included cell ({left} cells left out)", paths)


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


def hilo_figure(npz_path: str | Path, study: str, dataset: str, model: str, n_seeds: int,
                paths: Sequence[str | Path], max_samples: int = 8) -> plt.Figure:
    """Fig. 8: test images that high-lr models get right and low-lr models get wrong, with the
    mean |IG| attribution map of each group of seeds (channels summed, each map scaled by
    its own max, printed in the panel)."""
    with np.load(npz_path) as data:
        arrays = {k: data[k] for k in data.files}
    required = {"images", "labels", "indices", "maps_low", "maps_high", "correct_low", "correct_high",
                "lr_low", "lr_high"}
    if missing := required - set(arrays):
        raise ValueError(f"{npz_path}: arrays {sorted(missing)} are missing; expected {sorted(required)}")
    n = min(max_samples, len(arrays["labels"]))
    lr_low, lr_high = float(arrays["lr_low"]), float(arrays["lr_high"])
    title = f"{study}: {dataset} × {model}, lr {lr_low:g} vs {lr_high:g}, {n_seeds} seeds per lr"
    if n == 0:
        return placeholder_figure(f"{title}: no test sample is right for >75% of high-lr and <25% of low-lr models",
                                  paths)
    use_style()
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n + 0.3), squeeze=False, layout="constrained")
    for row in range(n):
        image, label, index = arrays["images"][row], int(arrays["labels"][row]), int(arrays["indices"][row])
        axes[row, 0].imshow(displayable(image), cmap="gray", aspect="auto" if image.ndim == 1 else None)
        axes[row, 0].set_title(f"test #{index}, label {label}", fontsize=7)
        for column, group in ((1, "low"), (2, "high")):
            heat = attribution_heat(arrays[f"maps_{group}"][row])
            peak = float(heat.max())
            axes[row, column].imshow(heat / peak if peak > 0 else heat, cmap="inferno", vmin=0, vmax=1,
                                     aspect="auto" if image.ndim == 1 else None)
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


# --- one job draws a study's figures ---------------------------------------------------------

# Each family: (needs, drawn per (dataset, model) pair?). File stems: largelr.config.FIGURE_FILES.
FAMILIES: dict[str, tuple[tuple[str, ...], bool]] = {
    "normalized": (("cells",), True),
    "compressibility": (("cells",), True),
    "pruning": (("cells", "curves"), True),
    "dynamics": (("cells", "dynamics"), True),
    "mechanism": (("cells", "mechanism"), False),
    "csi_core": (("cells",), False),
    "hilo": (("hilo",), True),
}


def figure_paths(out_dir: str | Path, family: str, formats: Sequence[str], **names: str) -> list[Path]:
    from largelr.config import FIGURE_FILES

    stem = FIGURE_FILES[family].format(**names)
    return [Path(out_dir) / f"{stem}.{suffix}" for suffix in formats]


# The per-pair families: (drawing function, the aggregate frame it reads before the cells, if any).
PAIR_FIGURES = {"normalized": (pair_figure, None), "compressibility": (compressibility_figure, None),
                "pruning": (pruning_figure, "curves"), "dynamics": (dynamics_figure, "dynamics")}


def study_figure_tasks(families: Sequence[str], out_dir: str | Path, frames: dict[str, pd.DataFrame],
                       hilo: Sequence[str], formats: Sequence[str]) -> list[tuple[Callable[..., None], tuple]]:
    """(function, arguments) of every figure of the named families: one per pair, or one per study."""
    table = frames["cells"]
    pairs = list(dict.fromkeys(zip(table["dataset"], table["model"])))
    tasks: list[tuple[Callable[..., None], tuple]] = []
    for family in families:
        if family == "mechanism":
            tasks.append((mechanism_figure, (table, frames["mechanism"], figure_paths(out_dir, family, formats))))
        elif family == "csi_core":
            tasks.append((csi_core_figure, (table, figure_paths(out_dir, family, formats))))
        elif family == "hilo":
            for npz in hilo:
                dataset, model = Path(npz).stem.split("-", 1)
                seeds = table[(table["dataset"] == dataset) & (table["model"] == model)]["seed"].nunique()
                paths = figure_paths(out_dir, family, formats, dataset=dataset, model=model)
                tasks.append((hilo_figure, (npz, table["study"].iloc[0], dataset, model, seeds, paths)))
        else:
            function, frame = PAIR_FIGURES[family]
            for dataset, model in pairs:
                paths = figure_paths(out_dir, family, formats, dataset=dataset, model=model)
                tasks.append((function, ((frames[frame],) if frame else ()) + (table, dataset, model, paths)))
    return tasks


_TASKS: list[tuple[Callable[..., None], tuple]] = []  # handed to forked workers by index


def _run_task(index: int) -> None:
    function, arguments = _TASKS[index]
    function(*arguments)


def run_tasks(tasks: list[tuple[Callable[..., None], tuple]], workers: int) -> None:
    """Draw in ``workers`` forked processes (saving a figure is single-threaded and takes most of the time)."""
    if workers <= 1 or len(tasks) <= 1:
        for function, arguments in tasks:
            function(*arguments)
        return
    global _TASKS
    _TASKS = tasks
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
            pool.map(_run_task, range(len(tasks)), chunksize=1)
    finally:
        _TASKS = []


def draw_study_figures(families: Sequence[str], out_dir: str | Path, cells: str, curves: str | None = None,
                       dynamics: str | None = None, mechanism: str | None = None, hilo: Sequence[str] = (),
                       formats: Sequence[str] = ("png", "pdf"), workers: int = 1) -> None:
    """Every figure of the named families for one study, from its aggregate files; in ``workers`` processes."""
    frames = {"cells": pd.read_parquet(cells)}
    for name, path in (("curves", curves), ("dynamics", dynamics), ("mechanism", mechanism)):
        if any(name in FAMILIES[family][0] for family in families):
            if path is None:
                raise SystemExit(f"largelr figures: --{name} is required for {list(families)}")
            frames[name] = pd.read_parquet(path)
    tasks = study_figure_tasks(families, out_dir, frames, hilo, formats)
    run_tasks(tasks, workers)
    print(f"drew {len(tasks)} figures of {', '.join(families)} -> {out_dir}")


def draw_intervention_figure(cells_files: Sequence[str], dataset: str, model: str, paths: Sequence[str]) -> None:
    cells = pd.concat([pd.read_parquet(path) for path in cells_files], ignore_index=True)
    intervention_grid(cells, dataset, model, paths)
    print(f"wrote {' '.join(map(str, paths))}")
