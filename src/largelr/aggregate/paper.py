"""The paper's tables from cells: Table 1 (min, max over the usable range), Table 2, seed statistics,
the mechanism correlation, the comparison with the paper's reference rows, and their rendering.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

from largelr.aggregate.cells import PAIR_KEYS
from largelr.analyses.prune import DEFAULT_READING, READINGS

# Paper Table 1 columns -> our cell columns.
TABLE1_VARIABLES = {
    "test_acc": "test_acc",
    "prunability": "prunability",  # in the reading the analysis setting `prunability` chooses
    "prunability_ratio": "prunability_ratio",  # both readings, side by side
    "prunability_chance": "prunability_chance",
    "activation_compressibility": "compressibility",
    "csi": "csi",
    "class_separation": "class_sep",
    "worst_group_acc": "test_worst_group_acc",  # what the paper reports for CelebA / Waterbirds
}


# Table 2 compares interventions on these variables (the knob's own range is a row too).
TABLE2_VARIABLES = {"test_acc": "test_acc", "prunability": "prunability", "csi": "csi"}


# Columns of cells.parquet that are settings or bookkeeping, not per-seed results.
NOT_METRICS = {
    "value",
    "seed",
    "in_range",
    "included",
    "converged",
    "near_chance",
    "diverged",
    "diverged_step",
    "resumed_from_step",
    "num_classes",
}


CONFIDENCE = 0.95


# Fewer seeds give no t-interval, only the sd: with 2 seeds t(0.975, 1) = 12.7 makes the interval
# wider than the range of any accuracy, and says nothing the two values do not.
CI_MIN_SEEDS = 3


# The paper's Table 1 (min, max across the usable LR range), as listed in PAPER.md.
# Test accuracy is a fraction here (the paper prints percent); for CelebA the paper
# reports worst-group accuracy, hence the `worst_group_acc` variable on that row.
PAPER_TABLE1: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("colored_mnist", "fcn"): {
        "lr": (0.001, 0.5),
        "test_acc": (0.727, 0.761),
        "prunability": (0.935, 0.968),
        "activation_compressibility": (0.285, 0.389),
        "csi": (0.243, 0.381),
        "class_separation": (0.291, 0.387),
    },
    ("colored_mnist", "cnn"): {
        "lr": (0.01, 0.35),
        "test_acc": (0.882, 0.915),
        "prunability": (0.532, 0.931),
        "activation_compressibility": (0.372, 0.643),
        "csi": (0.302, 0.576),
        "class_separation": (0.376, 0.692),
    },
    ("colored_mnist", "resnet18"): {
        "lr": (0.001, 0.25),
        "test_acc": (0.683, 0.915),
        "prunability": (0.252, 0.771),
        "activation_compressibility": (0.381, 0.527),
        "csi": (0.380, 0.630),
        "class_separation": (0.212, 0.635),
    },
    ("colored_mnist", "resnet50"): {
        "lr": (0.001, 0.1),
        "test_acc": (0.557, 0.864),
        "prunability": (0.284, 0.489),
        "activation_compressibility": (0.334, 0.524),
        "csi": (0.198, 0.458),
        "class_separation": (0.070, 0.509),
    },
    ("mnist_cifar", "cnn"): {
        "lr": (0.001, 0.2),
        "test_acc": (0.245, 0.417),
        "prunability": (0.326, 0.902),
        "activation_compressibility": (0.173, 0.513),
        "csi": (0.079, 0.225),
        "class_separation": (0.049, 0.149),
    },
    ("mnist_cifar", "resnet18"): {
        "lr": (0.001, 0.25),
        "test_acc": (0.262, 0.475),
        "prunability": (0.311, 0.737),
        "activation_compressibility": (0.294, 0.343),
        "csi": (0.225, 0.371),
        "class_separation": (0.115, 0.255),
    },
    ("corrupted_cifar10", "cnn"): {
        "lr": (0.001, 0.1),
        "test_acc": (0.436, 0.485),
        "prunability": (0.390, 0.861),
        "activation_compressibility": (0.189, 0.341),
        "csi": (0.144, 0.387),
        "class_separation": (0.140, 0.329),
    },
    ("corrupted_cifar10", "resnet18"): {
        "lr": (0.001, 0.5),
        "test_acc": (0.352, 0.478),
        "prunability": (0.267, 0.803),
        "activation_compressibility": (0.382, 0.634),
        "csi": (0.266, 0.393),
        "class_separation": (0.115, 0.205),
    },
    ("celeba", "swin_t"): {
        "lr": (1e-7, 1e-4),
        "worst_group_acc": (0.409, 0.482),
        "prunability": (0.344, 0.609),
        "activation_compressibility": (0.265, 0.584),
        "csi": (0.122, 0.305),
        "class_separation": (0.060, 0.164),
    },
}


def seed_means(cells: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean over seeds per knob value, included cells only."""
    usable = cells[cells["included"]]
    return usable.groupby(PAIR_KEYS + ["value"], as_index=False)[columns].mean()


def table1(cells: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 1, tidy: per (dataset, model) and variable, min and max across knob values."""
    return minmax_table(cells, TABLE1_VARIABLES)


def metric_columns(cells: pd.DataFrame) -> list[str]:
    """Numeric per-cell results (accuracies, analyses, steps, ...), in column order."""
    return [
        c
        for c in cells.columns
        if c not in NOT_METRICS
        and c not in PAIR_KEYS
        and pd.api.types.is_numeric_dtype(cells[c])
        and not pd.api.types.is_bool_dtype(cells[c])
    ]


def seed_statistics(cells: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Long table: mean, sd and a t-interval over seeds per (study, dataset, model, knob, value, metric).

    Every knob value is listed; ``in_range`` says whether all its cells are in the usable
    range and ``included`` whether all of them enter the tables (converged, not diverged, in
    range). NaN results (diverged cells) are left out of n; below CI_MIN_SEEDS (3) there is no
    interval, only the sd (NaN for n = 1).
    """
    long = cells.melt(
        id_vars=PAIR_KEYS + ["value", "seed", "in_range", "included"],
        value_vars=metric_columns(cells),
        var_name="metric",
        value_name="result",
    )
    keys = PAIR_KEYS + ["value", "metric"]
    grouped = long.groupby(keys, sort=True)
    stats = grouped["result"].agg(n="count", mean="mean", std="std").reset_index()
    stats["in_range"] = grouped["in_range"].all().to_numpy()
    stats["included"] = grouped["included"].all().to_numpy()
    half = scipy.stats.t.ppf(0.5 + confidence / 2, stats["n"] - 1) * stats["std"] / np.sqrt(stats["n"])
    half = half.where(stats["n"] >= CI_MIN_SEEDS)
    stats["ci_low"], stats["ci_high"] = stats["mean"] - half, stats["mean"] + half
    return stats.astype({"n": "int64", "value": "float64"})


def minmax_table(cells: pd.DataFrame, variables: dict[str, str]) -> pd.DataFrame:
    """Per (study, dataset, model, knob): min and max of seed means across usable knob values."""
    columns = [c for c in dict.fromkeys(variables.values()) if c in cells]
    means = seed_means(cells, columns)
    usable = cells[cells["included"]]
    rows = []
    for keys, pair in means.groupby(PAIR_KEYS):
        n_seeds = int(usable.set_index(PAIR_KEYS).loc[[keys], "seed"].nunique())
        base = dict(zip(PAIR_KEYS, keys)) | {"n_values": len(pair), "n_seeds": n_seeds}
        rows.append(base | {"variable": keys[3], "min": pair["value"].min(), "max": pair["value"].max()})
        for variable, column in variables.items():
            lowest, highest = (pair[column].min(), pair[column].max()) if column in pair else (np.nan, np.nan)
            rows.append(base | {"variable": variable, "min": lowest, "max": highest})
    frame = pd.DataFrame(rows, columns=PAIR_KEYS + ["variable", "min", "max", "n_values", "n_seeds"])
    return frame.astype({"min": "float64", "max": "float64", "n_values": "int64", "n_seeds": "int64"})


def table2(cells: pd.DataFrame, intervention_studies: list[str]) -> pd.DataFrame:
    """Paper Table 2: per (dataset, model) of the intervention studies and per knob, min/max of
    test accuracy, prunability and CSI; the lr rows come from any other study sweeping lr
    over the same (dataset, model)."""
    pairs = set(zip(*(cells.loc[cells["study"].isin(intervention_studies), k] for k in ("dataset", "model"))))
    in_pairs = np.array([(d, m) in pairs for d, m in zip(cells["dataset"], cells["model"])], dtype=bool)
    chosen = cells[in_pairs & (cells["study"].isin(intervention_studies) | (cells["knob"] == "lr")).to_numpy()]
    table = minmax_table(chosen, TABLE2_VARIABLES)
    # The paper prints the batch-size knob as 1/b (0.01 for b = 100 up to 0.333 for b = 3).
    batch = table["variable"] == "batch_size"
    table.loc[batch, ["min", "max"]] = 1 / table.loc[batch, ["max", "min"]].to_numpy()
    table.loc[batch, "variable"] = "1/batch_size"
    return table


def compare_with_paper(table: pd.DataFrame, reading: str = DEFAULT_READING) -> pd.DataFrame:
    """Our Table 1 min/max beside the paper's (PAPER_TABLE1), with ours - paper; one row per
    reference entry, ours NaN where that (dataset, model) was not run. The paper's prunability is
    compared with ours in the chosen ``reading`` (variable ``prunability``), and then listed again
    in the other reading (variable ``prunability_<other>``); column ``reading`` names it."""
    ours = table.set_index(["dataset", "model", "variable"])
    rows = []
    for (paper_dataset, model), reference in PAPER_TABLE1.items():
        for dataset in (paper_dataset, *PAPER_READINGS.get(paper_dataset, ())):
            for variable, (paper_min, paper_max) in reference.items():
                names = [(variable, reading)]
                if variable == "prunability":
                    names += [(f"prunability_{other}", other) for other in READINGS if other != reading]
                for name, shown in names:
                    rows.append(
                        _compared_row(ours, dataset, model, name, paper_min, paper_max)
                        | {"reading": shown if name.startswith("prunability") else ""}
                    )
    return pd.DataFrame(rows)


def compare_shape(compare: pd.DataFrame) -> pd.DataFrame:
    """The comparison in the paper's layout: per (dataset, model, variable) the paper's 'min – max',
    ours, and the differences 'diff min, diff max'."""

    def span(low, high, joint=" – "):
        return [f"{format_cell(lo)}{joint}{format_cell(hi)}" if np.isfinite(lo) else "" for lo, hi in zip(low, high)]

    return pd.DataFrame(
        {
            "dataset": compare["dataset"],
            "model": compare["model"],
            "variable": compare["variable"],
            "paper": span(compare["paper_min"], compare["paper_max"]),
            "ours": span(compare["ours_min"], compare["ours_max"]),
            "diff": span(compare["diff_min"], compare["diff_max"], ", "),
        }
    )


# Datasets compared with another one's paper row: the paper's CelebA sentence (core gender, spurious hair
# colour) is `celeba`; its worst-group accuracies are those ERM reaches on the common benchmark (target
# Blond_Hair, spurious Male), run as `celeba_blond`. Both stand against the paper's CelebA row.
PAPER_READINGS = {"celeba": ("celeba_blond",)}


def reading_fit_note(compare: pd.DataFrame, variable: str = "worst_group_acc") -> str:
    """Which dataset of each PAPER_READINGS group the paper's ``variable`` range fits best (smallest
    |diff_min| + |diff_max|); empty when fewer than two of them were run."""
    lines = []
    for paper_dataset, others in PAPER_READINGS.items():
        rows = compare[compare["dataset"].isin((paper_dataset, *others)) & (compare["variable"] == variable)]
        distance = (rows["diff_min"].abs() + rows["diff_max"].abs()).set_axis(rows["dataset"]).dropna()
        if len(distance) < 2:
            continue
        best = distance.idxmin()
        listed = ", ".join(f"{name} {value:.3f}" for name, value in distance.items())
        lines.append(
            f"The paper's {paper_dataset} {variable} range fits `{best}` best (|diff_min| + |diff_max|: {listed})."
        )
    return "\n".join(lines)


def _compared_row(
    ours: pd.DataFrame, dataset: str, model: str, variable: str, paper_min: float, paper_max: float
) -> dict:
    key = (dataset, model, variable)
    found = ours.loc[[key]].iloc[0] if key in ours.index else None
    our_min = float(found["min"]) if found is not None else np.nan
    our_max = float(found["max"]) if found is not None else np.nan
    return {
        "dataset": dataset,
        "model": model,
        "variable": variable,
        "study": found["study"] if found is not None else None,
        "paper_min": paper_min,
        "paper_max": paper_max,
        "ours_min": our_min,
        "ours_max": our_max,
        "diff_min": our_min - paper_min,
        "diff_max": our_max - paper_max,
    }


def mechanism_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Pearson r between max BC loss ratio and test accuracy across usable cells, per
    (study, dataset, model, knob) and pooled per study (dataset = model = 'all')."""
    usable = cells[cells["included"]].dropna(subset=["max_bc_loss_ratio", "test_acc"])
    groups = [(keys, frame) for keys, frame in usable.groupby(PAIR_KEYS)]
    groups += [((study, "all", "all", "all"), frame) for study, frame in usable.groupby("study")]
    rows = []
    for keys, frame in groups:
        x, y = frame["max_bc_loss_ratio"].to_numpy(), frame["test_acc"].to_numpy()
        enough = len(frame) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0
        r, p = scipy.stats.pearsonr(x, y) if enough else (np.nan, np.nan)
        slope, intercept = np.polyfit(x, y, 1) if enough else (np.nan, np.nan)
        rows.append(
            dict(zip(PAIR_KEYS, keys))
            | {
                "n_cells": len(frame),
                "pearson_r": float(r),
                "p_value": float(p),
                "slope": float(slope),
                "intercept": float(intercept),
            }
        )
    columns = PAIR_KEYS + ["n_cells", "pearson_r", "p_value", "slope", "intercept"]
    return pd.DataFrame(rows, columns=columns).astype({"n_cells": "int64"})


def other_csi_column(cells: pd.DataFrame) -> str | None:
    """The cells' CSI column of the reading csi_neurons did not choose (csi_all or csi_active), None if absent."""
    if not {"csi", "csi_active", "csi_all"} <= set(cells):
        return None
    chosen_active = np.allclose(cells["csi"], cells["csi_active"], equal_nan=True)
    return "csi_all" if chosen_active else "csi_active"


def with_other_csi_reading(compare: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The comparison with ``other_reading``, ``other_min``, ``other_max``: on the CSI rows, Table 1's
    min and max under the other csi_neurons reading (NaN elsewhere)."""
    compare = compare.assign(other_reading="", other_min=np.nan, other_max=np.nan)
    other = other_csi_column(cells)
    if other is None:
        return compare
    table = table1(cells.assign(csi=cells[other])).set_index(["dataset", "model", "variable"])
    for index, row in compare[compare["variable"] == "csi"].iterrows():
        key = (row["dataset"], row["model"], "csi")
        if key in table.index:
            found = table.loc[[key]].iloc[0]
            compare.loc[index, ["other_reading", "other_min", "other_max"]] = [other, found["min"], found["max"]]
    return compare


def format_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown(frame: pd.DataFrame, title: str = "") -> str:
    """A GitHub Markdown table of ``frame`` (floats to 4 significant digits, NaN blank)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return (f"# {title}\n\n" if title else "") + "\n".join([header, rule, *body]) + "\n"


def paper_shape(table: pd.DataFrame, knob_label: str | None = None) -> pd.DataFrame:
    """A min/max table (tidy) as the paper prints it: one row per (study, dataset, model, knob),
    one 'min – max' column per variable; with ``knob_label`` every knob's own range shares
    that one column (Table 2, where each row sweeps a different knob)."""
    if knob_label is not None:
        is_knob = (table["variable"] == table["knob"]) | (table["variable"] == "1/" + table["knob"])
        table = table.assign(variable=table["variable"].where(~is_knob, knob_label))
    text = table.assign(range=[f"{format_cell(lo)} – {format_cell(hi)}" for lo, hi in zip(table["min"], table["max"])])
    order = list(dict.fromkeys(text["variable"]))
    wide = text.pivot_table(
        index=PAIR_KEYS + ["n_seeds"], columns="variable", values="range", aggfunc="first", sort=False
    )
    wide = wide.reindex(columns=[v for v in order if v in wide.columns]).reset_index()
    wide.columns.name = None
    return wide
