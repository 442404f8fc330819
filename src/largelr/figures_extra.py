"""Figures across studies and from saved maps: the (lr x focal gamma) landscape (Fig. 9) and
IG beside DeepLift on the hi/lo samples (Fig. 14). Same style and file handling as
:mod:`largelr.figures`; each family is one function with its own caption in workflow/report/.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from largelr.figures.base import placeholder_figure, save_figure, select_pair, use_style
from largelr.figures.maps import attribution_heat, displayable
from largelr.landscape import SPURIOUS_MEASURES

# The landscape's panels besides spurious feature use: column -> label. Training loss is the
# cross-entropy of the full training set at the end of training (train.json's train_ce): the
# focal objective's own value shrinks with gamma by construction, so CE is what compares across gamma.
LANDSCAPE_PANELS = {"train_ce": "training loss (CE, full train set)", "test_acc": "unbiased test acc."}


def spurious_measure(cells: pd.DataFrame, choice: str) -> tuple[pd.DataFrame, str]:
    """The cells with the column the ``choice`` of spurious feature use names, and that column.

    auto: spurious_share where any cell has it (the dataset marks its spurious region), else bsi.
    bias_gap is computed here: test_acc_ba - test_acc_bc.
    """
    if choice == "auto":
        has_share = "spurious_share" in cells and cells["spurious_share"].notna().any()
        choice = "spurious_share" if has_share else "bsi"
    if choice == "bias_gap":
        return cells.assign(bias_gap=cells["test_acc_ba"] - cells["test_acc_bc"]), "bias_gap"
    if choice not in SPURIOUS_MEASURES:
        raise ValueError(f"landscape spurious = {choice!r} is not allowed; allowed: auto, {list(SPURIOUS_MEASURES)}")
    if choice not in cells:
        raise ValueError(f"landscape spurious = {choice!r}: the cells table has no {choice} column")
    return cells, choice


def landscape_grid(cells: pd.DataFrame, rows: Mapping[str, float], column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(seed means, included-seed counts) of ``column`` over included cells: index = each study's
    axis value (``rows``: study -> value), columns = the knob's values, both ascending; NaN where
    no included cell has a value."""
    usable = cells[cells["included"] & cells["study"].isin(list(rows))].dropna(subset=[column])
    usable = usable.assign(row=usable["study"].map(rows))
    index = sorted(set(rows.values()))
    columns = sorted(cells.loc[cells["study"].isin(list(rows)), "value"].unique())
    grouped = usable.groupby(["row", "value"])[column]
    means = grouped.mean().unstack().reindex(index=index, columns=columns)
    counts = grouped.count().unstack().reindex(index=index, columns=columns).fillna(0).astype(int)
    return means, counts


def _heatmap(ax: plt.Axes, means: pd.DataFrame, counts: pd.DataFrame, title: str, knob: str, axis: str) -> None:
    """One landscape panel: seed means as colours (missing: grey), each cell printed with its seed count."""
    values = means.to_numpy(dtype=float)
    shown = np.ma.masked_invalid(values)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    image = ax.imshow(shown, cmap=cmap, origin="lower", aspect="auto")
    middle = (np.nanmin(values) + np.nanmax(values)) / 2 if np.isfinite(values).any() else 0.0
    for (i, j), value in np.ndenumerate(values):
        text = "left out" if np.isnan(value) else f"{value:.3g}\nn={counts.iat[i, j]}"
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=6,
            color="black" if np.isnan(value) or value > middle else "white",
        )  # legible on viridis
    ax.set_xticks(range(len(means.columns)), [f"{v:g}" for v in means.columns])
    ax.set_yticks(range(len(means.index)), [f"{v:g}" for v in means.index])
    ax.set(xlabel=knob, ylabel=axis, title=title)
    ax.grid(False)
    plt.colorbar(image, ax=ax, fraction=0.046, pad=0.03)


def landscape_figure(
    cells: pd.DataFrame,
    rows: Mapping[str, float],
    dataset: str,
    model: str,
    spurious: str,
    paths: Sequence[str | Path],
    name: str = "",
    axis: str = "lr",
) -> plt.Figure:
    """Fig. 9: training loss, unbiased test accuracy and spurious feature use over (axis x knob), one
    heatmap each; each square is the mean over the included seeds of the study at that axis value
    and that knob value."""
    pair = select_pair(cells, dataset, model, "landscape cells")
    pair = pair[pair["study"].isin(list(rows))]
    if pair.empty or not pair["included"].any():
        return placeholder_figure(f"landscape {name}: {dataset} × {model}: no cell included", paths)
    pair, column = spurious_measure(pair, spurious)
    panels = {**LANDSCAPE_PANELS, column: f"spurious feature use: {SPURIOUS_MEASURES[column]}"}
    use_style()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.9), squeeze=False)
    knob = pair["knob"].iloc[0]
    for ax, (variable, label) in zip(axes.flat, panels.items()):
        means, counts = landscape_grid(pair, rows, variable)
        _heatmap(ax, means, counts, label, knob, axis)
    seeds, left = pair["seed"].nunique(), int((~pair["included"]).sum())
    fig.suptitle(
        f"landscape {name}: {dataset} × {model}, {axis} × {knob}; mean over included seeds "
        f"({seeds} seeds; {left} of {len(pair)} cells left out)",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, paths)
    return fig


def draw_landscape_figure(
    cells_files: Sequence[str],
    rows: Sequence[str],
    dataset: str,
    model: str,
    spurious: str,
    name: str,
    axis: str,
    paths: Sequence[str],
) -> None:
    """The CLI's entry: ``rows`` as 'study=value' texts."""
    cells = pd.concat([pd.read_parquet(path) for path in cells_files], ignore_index=True)
    mapping = {}
    for text in rows:
        study, _, value = text.partition("=")
        mapping[study] = float(value)
    landscape_figure(cells, mapping, dataset, model, spurious, paths, name=name, axis=axis)
    print(f"wrote {' '.join(map(str, paths))}")


# --- Fig. 14: IG beside DeepLift on the hi/lo samples -----------------------------------------

METHOD_COLUMNS = (
    ("low", "", "IG"),
    ("low", "_deeplift", "DeepLift"),
    ("high", "", "IG"),
    ("high", "_deeplift", "DeepLift"),
)


def load_maps(npz_path: str | Path, required: set[str]) -> dict[str, np.ndarray]:
    with np.load(npz_path) as data:
        arrays = {k: data[k] for k in data.files}
    if missing := required - set(arrays):
        raise ValueError(f"{npz_path}: arrays {sorted(missing)} are missing; expected {sorted(required)}")
    return arrays


def row_height(image: np.ndarray, panel_width: float) -> float:
    """Inches a row of maps of ``image`` needs at ``panel_width``: the image's aspect plus a title line."""
    shape = displayable(image).shape
    return panel_width * min(shape[0] / shape[1], 1.5) + 0.35


def bare(axes: np.ndarray) -> None:
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)


def hilo_methods_figure(
    npz_path: str | Path,
    study: str,
    dataset: str,
    model: str,
    n_seeds: int,
    paths: Sequence[str | Path],
    max_samples: int = 6,
) -> plt.Figure:
    """Fig. 14: the hi/lo samples (right for most high-lr seeds, wrong for most low-lr seeds) with the
    seed-mean |IG| and |DeepLift| maps at each learning rate side by side (channels summed, each
    map scaled by its own max, printed above it)."""
    arrays = load_maps(
        npz_path,
        {
            "images",
            "labels",
            "indices",
            "maps_low",
            "maps_high",
            "maps_low_deeplift",
            "maps_high_deeplift",
            "lr_low",
            "lr_high",
        },
    )
    n = min(max_samples, len(arrays["labels"]))
    lrs = {"low": float(arrays["lr_low"]), "high": float(arrays["lr_high"])}
    title = (
        f"{study}: {dataset} × {model}, IG vs DeepLift, lr {lrs['low']:g} vs {lrs['high']:g}, {n_seeds} seeds per lr"
    )
    if n == 0:
        return placeholder_figure(
            f"{title}: no test sample is right for >75% of high-lr and <25% of low-lr models", paths
        )
    use_style()
    fig, axes = plt.subplots(
        n, 5, figsize=(10.5, row_height(arrays["images"][0], 2.1) * n + 0.4), squeeze=False, layout="constrained"
    )
    for row in range(n):
        image = arrays["images"][row]
        flat = image.ndim == 1
        axes[row, 0].imshow(displayable(image), cmap="gray", aspect="auto" if flat else None)
        axes[row, 0].set_title(f"test #{int(arrays['indices'][row])}, label {int(arrays['labels'][row])}", fontsize=7)
        for column, (group, suffix, method) in enumerate(METHOD_COLUMNS, start=1):
            heat = attribution_heat(arrays[f"maps_{group}{suffix}"][row])
            peak = float(heat.max())
            axes[row, column].imshow(
                heat / peak if peak > 0 else heat, cmap="inferno", vmin=0, vmax=1, aspect="auto" if flat else None
            )
            axes[row, column].set_title(f"{method}, lr {lrs[group]:g} (max {peak:.2g})", fontsize=7)
    bare(axes)
    fig.suptitle(title, fontsize=8)
    save_figure(fig, paths)
    return fig


# --- Figs 13 (left) and 28: maps and one neuron over training -----------------------------------

TRAINING_ARRAYS = {
    "images",
    "labels",
    "indices",
    "knob",
    "seed",
    *(f"{key}_{group}" for group in ("low", "high") for key in ("steps", "maps", "csi", "bsi", "value")),
}


def training_maps_figure(
    npz_path: str | Path, study: str, dataset: str, model: str, paths: Sequence[str | Path], max_samples: int = 2
) -> plt.Figure:
    """Fig. 13 (left): |IG| maps of fixed test samples at the observed steps of the low- and the
    high-value run (one row each per sample; channels summed, each map scaled by its own max)."""
    arrays = load_maps(npz_path, TRAINING_ARRAYS)
    knob, n = str(arrays["knob"]), min(max_samples, len(arrays["labels"]))
    columns = 1 + max(len(arrays["steps_low"]), len(arrays["steps_high"]))
    use_style()
    height = row_height(arrays["images"][0], 1.9)
    fig, axes = plt.subplots(
        2 * n, columns, figsize=(1.9 * columns, height * 2 * n + 0.4), squeeze=False, layout="constrained"
    )
    for sample in range(n):
        image = arrays["images"][sample]
        flat = image.ndim == 1
        for offset, group in enumerate(("low", "high")):
            row = 2 * sample + offset
            axes[row, 0].imshow(displayable(image), cmap="gray", aspect="auto" if flat else None)
            axes[row, 0].set_title(
                f"#{int(arrays['indices'][sample])}, label {int(arrays['labels'][sample])}; "
                f"{knob} {float(arrays[f'value_{group}']):g}",
                fontsize=6,
            )
            steps = arrays[f"steps_{group}"]
            for column, step in enumerate(steps, start=1):
                heat = attribution_heat(arrays[f"maps_{group}"][column - 1, sample])
                peak = float(heat.max())
                axes[row, column].imshow(
                    heat / peak if peak > 0 else heat, cmap="inferno", vmin=0, vmax=1, aspect="auto" if flat else None
                )
                end = " (end)" if column == len(steps) else ""
                axes[row, column].set_title(f"step {int(step)}{end}, max {peak:.2g}", fontsize=6)
            for ax in axes[row, 1 + len(steps) :]:
                ax.axis("off")
    bare(axes)
    fig.suptitle(
        f"{study}: {dataset} × {model}, |IG| over training, {knob} {float(arrays['value_low']):g} vs "
        f"{float(arrays['value_high']):g} (seed {int(arrays['seed'])}, replayed)",
        fontsize=8,
    )
    save_figure(fig, paths)
    return fig


def chosen_neuron(bsi: np.ndarray) -> int | None:
    """The penultimate neuron with the largest bias selectivity at the last observed step (first on
    ties); None when no neuron has one (a diverged run's NaN weights)."""
    return None if np.isnan(bsi[-1]).all() else int(np.nanargmax(bsi[-1]))


def neuron_figure(
    npz_path: str | Path, study: str, dataset: str, model: str, paths: Sequence[str | Path]
) -> plt.Figure:
    """Fig. 28 (single neuron): the spurious feature use (bias selectivity, BSI) of one penultimate
    neuron over training, at the low and the high value: in each run the neuron with the largest
    BSI at the end (its class selectivity dashed; the mean BSI over all neurons dotted)."""
    arrays = load_maps(npz_path, TRAINING_ARRAYS)
    knob = str(arrays["knob"])
    use_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for group, colour in (("low", "tab:blue"), ("high", "tab:red")):
        steps, bsi, csi = arrays[f"steps_{group}"], arrays[f"bsi_{group}"], arrays[f"csi_{group}"]
        neuron = chosen_neuron(bsi)
        if neuron is None:
            ax.plot([], [], color=colour, label=f"{knob} {float(arrays[f'value_{group}']):g}: no finite BSI at the end")
            continue
        label = f"{knob} {float(arrays[f'value_{group}']):g}, neuron {neuron}"
        ax.plot(steps, bsi[:, neuron], color=colour, marker="o", label=f"{label}: BSI")
        ax.plot(steps, csi[:, neuron], color=colour, marker="s", linestyle="--", label=f"{label}: CSI")
        ax.plot(
            steps,
            np.nanmean(bsi, axis=1),
            color=colour,
            linestyle=":",
            label=f"{knob} {float(arrays[f'value_{group}']):g}: mean BSI of {bsi.shape[1]} neurons",
        )
    ax.set(xlabel="training step", ylabel="selectivity", ylim=(-0.02, 1.02))
    steps = sorted({int(s) for group in ("low", "high") for s in arrays[f"steps_{group}"]})
    positive = [s for s in steps if s > 0]
    ax.set_xscale("symlog", linthresh=positive[0] if positive else 1)  # linear up to the first observed step
    ax.set_xticks(steps, [str(s) for s in steps], rotation=45 if len(steps) > 6 else 0)
    ax.minorticks_off()
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(
        f"{study}: {dataset} × {model}, one penultimate neuron's spurious feature use over training\n"
        f"(the neuron with the largest final BSI in each run; seed {int(arrays['seed'])}, replayed)",
        fontsize=8,
    )
    save_figure(fig, paths)
    return fig
