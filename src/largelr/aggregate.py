"""Cells -> tables: one row per cell, the usable LR range, the paper's Tables 1 and 2,
seed statistics, trends, the mechanism correlation and the comparison with the paper.

A cell enters tables and figures only when it is ``included``: it did not diverge, it
converged (was stopped by its fit criterion, not by the step cap) and its value lies in
the usable range of its sweep. The others stay in cells.parquet with ``left_out`` saying
why, and every table's Markdown counts them. Seeds are averaged before any min/max across
knob values, as in the paper. Cells whose test accuracy is within ``NEAR_CHANCE_MARGIN`` (the
``chance_margin`` setting) of chance are flagged ``near_chance``: their pruning retention is
trivially close to 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

from largelr.analyses import ANALYSES, cell_columns
from largelr.analyses.prune import DEFAULT_READING, READINGS, chosen_reading
from largelr.config import ANALYSIS_FILES, TRAIN_FILES
from largelr.io import CELL_KEYS, PROVENANCE_KEYS, atomic_path, write_parquet
from largelr.registry.analyses import AGGREGATE, BC_RATIO_READINGS, USABLE_RANGE_READINGS

PAIR_KEYS = ["study", "dataset", "model", "knob"]
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
# "we utilize LRs up to the point of divergence or drastic performance loss (>25% in test
# accuracy) among any one of the seeds": one seed below 75% of the best seed-mean ends the range.
ACCURACY_DROP = AGGREGATE.default("usable_range_drop")
NEAR_CHANCE_MARGIN = AGGREGATE.default("chance_margin")  # "a few points" above chance (1 / classes)
LEFT_OUT = {"diverged": "diverged", "not_converged": "not converged (stopped at the step cap)",
            "past_range": "past the usable range"}


def max_bc_loss_ratio(history: pd.DataFrame) -> float:
    """The mechanism statistic: the largest per-step BC loss ratio seen in training."""
    ratios = history["bc_loss_ratio"].replace([np.inf, -np.inf], np.nan)
    return float(ratios.max()) if ratios.notna().any() else float("nan")


def cell_max_bc_loss_ratio(summary: dict, cell_dir: Path) -> float:
    """The cell's max BC loss ratio over every training step (train.json); for a cell trained before the
    engine kept it, over the steps its history recorded."""
    if "max_bc_loss_ratio" in summary:
        return float(summary["max_bc_loss_ratio"])
    return max_bc_loss_ratio(pd.read_parquet(cell_dir / TRAIN_FILES["history"]))


# Columns every cell table carries besides its results: the cell's keys and provenance.
BOOKKEEPING = {*CELL_KEYS, *PROVENANCE_KEYS}


def checked_record(cell_dir: Path) -> dict:
    """The cell's train.json once the files aggregation reads are intact: history and predictions
    against their seal (size and SHA-256), model.pt by size, the analysis tables by structure.

    A damaged cell raises largelr.io.DamagedCellError, its damaged files removed so that the next
    run rebuilds it. Damage is rare and often shared (a disk, an interrupted copy), so then every
    cell under the study's folder is checked too and one error names them all.
    """
    from largelr.io import DamagedCellError, check_cell

    files = {"full": ("history", "predictions"), "sized": ("model",), "tables": tuple(ANALYSIS_FILES.values())}
    try:
        return check_cell(cell_dir, **files)
    except DamagedCellError as first:
        found = [str(first)]
        study_dir = cell_dir.parents[3] if cell_dir.name.startswith("seed=") and len(cell_dir.parents) > 3 else None
        for other in sorted(study_dir.glob(f"*/*/*=*/seed=*/{TRAIN_FILES['summary']}") if study_dir else ()):
            if other.parent != cell_dir:
                try:
                    check_cell(other.parent, **files)
                except DamagedCellError as error:
                    found.append(str(error))
        raise DamagedCellError("\n".join(found)) from None


def read_cell(train_json: str | Path) -> dict:
    """Gather one cell's outputs (train.json and its sibling Parquet files) into one flat row, once
    they are checked (checked_record)."""
    cell_dir = Path(train_json).parent
    record = checked_record(cell_dir)
    row = {key: record["cell"][key] for key in CELL_KEYS}
    row.update({k: v for k, v in record["summary"].items() if not isinstance(v, dict)})
    row.update(record["provenance"])
    row["num_classes"] = record["summary"]["model_spec"]["num_classes"]
    row["max_bc_loss_ratio_minibatch"] = cell_max_bc_loss_ratio(record["summary"], cell_dir)
    row["max_bc_loss_ratio_fixed"] = float(record["summary"].get("max_bc_loss_ratio_fixed", np.nan))
    for name in ANALYSES:
        table = pd.read_parquet(cell_dir / ANALYSIS_FILES[name])
        results = table.drop(columns=[c for c in table.columns if c in BOOKKEEPING])
        row.update({k: v for k, v in cell_columns(name, results).items() if k not in row})
    return row


def accuracy_floor(best_acc: float, drop: float, reading: str = "relative") -> float:
    """The test accuracy below which a seed has lost "more than drop": (1 - drop) x best
    (relative) or best - drop (points)."""
    if reading not in USABLE_RANGE_READINGS:
        raise ValueError(f"usable_range_reading = {reading!r} is not allowed; allowed: {list(USABLE_RANGE_READINGS)}")
    return (1 - drop) * best_acc if reading == "relative" else best_acc - drop


def mark_usable_range(cells: pd.DataFrame, drop: float = ACCURACY_DROP, reading: str = "relative") -> pd.DataFrame:
    """Flag cells inside the usable range of their (study, dataset, model) sweep (``in_range``).

    For the ``lr`` knob the best value is the one with the highest seed-mean test accuracy
    among values no seed of which diverged; the range ends at the first value above it where
    any one seed diverged or lost more than ``drop`` of the best accuracy (test accuracy below
    :func:`accuracy_floor`: (1 - drop) x best, or best - drop with ``reading="points"``); that
    value and all larger ones are out. For other knobs only diverged cells are out. Cells out of
    range stay in the data, flagged.
    """
    cells = cells.copy()
    cells["in_range"] = ~cells["diverged"].astype(bool)
    for _, pair in cells.groupby(PAIR_KEYS):
        if pair["knob"].iloc[0] != "lr":
            continue
        per_value = pair.groupby("value").agg(acc=("test_acc", "mean"), worst_seed=("test_acc", "min"),
                                              diverged=("diverged", "any")).sort_index()
        healthy = per_value[~per_value["diverged"]]
        if healthy.empty:
            cells.loc[pair.index, "in_range"] = False
            continue
        best_value, best_acc = healthy["acc"].idxmax(), healthy["acc"].max()
        floor = accuracy_floor(best_acc, drop, reading)
        lost = per_value["diverged"] | (per_value["worst_seed"].fillna(-np.inf) < floor)
        failing = per_value[(per_value.index > best_value) & lost]
        if not failing.empty:
            cells.loc[pair.index[pair["value"] >= failing.index.min()], "in_range"] = False
    return cells


def mark_included(cells: pd.DataFrame, require_converged: bool = True, drop: float = ACCURACY_DROP,
                  chance_margin: float = NEAR_CHANCE_MARGIN, reading: str = "relative") -> pd.DataFrame:
    """``included`` (enters tables and figures), ``left_out`` (why not, "" if included) and
    ``near_chance`` (test accuracy within ``chance_margin`` of 1 / classes, where classes are known).
    With ``require_converged`` off, cells that stopped at the step cap are included."""
    cells = mark_usable_range(cells, drop, reading)
    converged = cells["converged"].fillna(False).astype(bool) if "converged" in cells and require_converged \
        else pd.Series(True, index=cells.index)
    reasons = np.select([cells["diverged"].astype(bool).to_numpy(), ~converged.to_numpy(), ~cells["in_range"].to_numpy()],
                        [LEFT_OUT["diverged"], LEFT_OUT["not_converged"], LEFT_OUT["past_range"]], default="")
    cells["left_out"] = reasons
    cells["included"] = cells["left_out"] == ""
    if "num_classes" in cells:
        cells["near_chance"] = cells["test_acc"] <= 1 / cells["num_classes"] + chance_margin
    return cells


def build_cells(train_jsons: list[str | Path], settings: dict | None = None) -> pd.DataFrame:
    """cells.parquet: one row per cell, marked by the study's aggregation settings (require_converged,
    usable_range_drop, chance_margin)."""
    cells = pd.DataFrame([read_cell(path) for path in train_jsons])
    cells = cells.sort_values(CELL_KEYS).reset_index(drop=True)
    cells = cells.astype({"value": "float64", "seed": "int64", "diverged": "bool"})
    settings = {**{key: AGGREGATE.default(key) for key in AGGREGATE.settings}, **(settings or {})}
    if "prunability_ratio" in cells:  # the analysis setting `prunability` picks Table 1's reading
        for column, values in chosen_reading(cells, settings.get("prunability", DEFAULT_READING)).items():
            cells[column] = values
    cells = with_chosen_bc_ratio(cells, settings["bc_ratio"])
    drop = settings["usable_range_drop"]
    cells = mark_included(cells, settings["require_converged"], drop, settings["chance_margin"],
                          settings["usable_range_reading"])
    # the other reading of the usable range, side by side (tables use in_range / included)
    other = "points" if settings["usable_range_reading"] == "relative" else "relative"
    cells[f"in_range_{other}"] = mark_usable_range(cells, drop, other)["in_range"]
    return cells


def with_chosen_bc_ratio(cells: pd.DataFrame, reading: str) -> pd.DataFrame:
    """``max_bc_loss_ratio`` (the mechanism table's and figure's) = the chosen reading's column
    (``max_bc_loss_ratio_minibatch`` or ``max_bc_loss_ratio_fixed``), both kept beside it."""
    if reading not in BC_RATIO_READINGS:
        raise ValueError(f"bc_ratio = {reading!r} is not allowed; allowed: {list(BC_RATIO_READINGS)}")
    return cells.assign(max_bc_loss_ratio=cells[f"max_bc_loss_ratio_{reading}"])


def cell_counts(cells: pd.DataFrame) -> dict[str, int]:
    """How many cells are converged and included, included though not converged (``require_converged:
    false``), and left out as diverged, not converged or past the usable range; each cell counted once."""
    converged = cells["converged"].fillna(False).astype(bool) if "converged" in cells else pd.Series(True, cells.index)
    included = cells["included"].astype(bool)
    return {"converged": int((included & converged).sum()), "unconverged_kept": int((included & ~converged).sum()),
            **{key: int((cells["left_out"] == reason).sum()) for key, reason in LEFT_OUT.items()}}


def counts_text(counts: dict[str, int]) -> str:
    """The non-zero counts of :func:`cell_counts` as words."""
    words = {"converged": "converged and included", "unconverged_kept": "included though not converged "
             "(require_converged: false)", "diverged": "left out: diverged", "not_converged": "left out: not "
             "converged (stopped at the step cap)", "past_range": "left out: past the usable range"}
    return ", ".join(f"{counts[key]} {text}" for key, text in words.items() if counts[key])


def left_out_note(cells: pd.DataFrame) -> str:
    """The cells' fate, counted apart: converged and included, included though not converged, diverged,
    not converged and left out, past the usable range; then one Markdown line per (dataset, model) with
    cells left out, kept unconverged or near chance. "All ... converged" only when every cell did."""
    counts = cell_counts(cells)
    if counts["converged"] == len(cells) and not ("near_chance" in cells and cells["near_chance"].any()):
        return f"All {len(cells)} cells included (none diverged, all converged, all in the usable range)."
    lines = []
    for (dataset, model), pair in cells.groupby(["dataset", "model"], sort=True):
        left = [f"{count} {reason}" for reason, count in pair["left_out"].value_counts().sort_index().items() if reason]
        parts = [f"left out: {', '.join(left)}"] if left else []
        if unconverged := cell_counts(pair)["unconverged_kept"]:
            parts.append(f"{unconverged} included though not converged")
        if "near_chance" in pair and (near := int((pair["near_chance"] & pair["included"]).sum())):
            parts.append(f"{near} included near chance (retention trivially ≈ 1)")
        if parts:
            lines.append(f"- {dataset} × {model}: {len(pair)} cells; {'; '.join(parts)}")
    return (f"{len(cells)} cells: {counts_text(counts)}. Per pair (cells left out stay in cells.parquet with "
            "`left_out`):\n" + "\n".join(lines))


def seed_means(cells: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean over seeds per knob value, included cells only."""
    usable = cells[cells["included"]]
    return usable.groupby(PAIR_KEYS + ["value"], as_index=False)[columns].mean()


def table1(cells: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 1, tidy: per (dataset, model) and variable, min and max across knob values."""
    return minmax_table(cells, TABLE1_VARIABLES)


# --- seed statistics, paper tables, comparison with the paper ------------------------------

CONFIDENCE = 0.95
# Fewer seeds give no t-interval, only the sd: with 2 seeds t(0.975, 1) = 12.7 makes the interval
# wider than the range of any accuracy, and says nothing the two values do not.
CI_MIN_SEEDS = 3
# Table 2 compares interventions on these variables (the knob's own range is a row too).
TABLE2_VARIABLES = {"test_acc": "test_acc", "prunability": "prunability", "csi": "csi"}
# Columns of cells.parquet that are settings or bookkeeping, not per-seed results.
NOT_METRICS = {"value", "seed", "in_range", "included", "converged", "near_chance", "diverged", "diverged_step",
               "resumed_from_step", "num_classes"}
# Most points of one cell's history kept for the training-dynamics figure.
DYNAMICS_POINTS = 400

# The paper's Table 1 (min, max across the usable LR range), as listed in PAPER.md.
# Test accuracy is a fraction here (the paper prints percent); for CelebA the paper
# reports worst-group accuracy, hence the `worst_group_acc` variable on that row.
PAPER_TABLE1: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("colored_mnist", "fcn"): {"lr": (0.001, 0.5), "test_acc": (0.727, 0.761), "prunability": (0.935, 0.968),
                               "activation_compressibility": (0.285, 0.389), "csi": (0.243, 0.381),
                               "class_separation": (0.291, 0.387)},
    ("colored_mnist", "cnn"): {"lr": (0.01, 0.35), "test_acc": (0.882, 0.915), "prunability": (0.532, 0.931),
                               "activation_compressibility": (0.372, 0.643), "csi": (0.302, 0.576),
                               "class_separation": (0.376, 0.692)},
    ("colored_mnist", "resnet18"): {"lr": (0.001, 0.25), "test_acc": (0.683, 0.915), "prunability": (0.252, 0.771),
                                    "activation_compressibility": (0.381, 0.527), "csi": (0.380, 0.630),
                                    "class_separation": (0.212, 0.635)},
    ("colored_mnist", "resnet50"): {"lr": (0.001, 0.1), "test_acc": (0.557, 0.864), "prunability": (0.284, 0.489),
                                    "activation_compressibility": (0.334, 0.524), "csi": (0.198, 0.458),
                                    "class_separation": (0.070, 0.509)},
    ("mnist_cifar", "cnn"): {"lr": (0.001, 0.2), "test_acc": (0.245, 0.417), "prunability": (0.326, 0.902),
                             "activation_compressibility": (0.173, 0.513), "csi": (0.079, 0.225),
                             "class_separation": (0.049, 0.149)},
    ("mnist_cifar", "resnet18"): {"lr": (0.001, 0.25), "test_acc": (0.262, 0.475), "prunability": (0.311, 0.737),
                                  "activation_compressibility": (0.294, 0.343), "csi": (0.225, 0.371),
                                  "class_separation": (0.115, 0.255)},
    ("corrupted_cifar10", "cnn"): {"lr": (0.001, 0.1), "test_acc": (0.436, 0.485), "prunability": (0.390, 0.861),
                                   "activation_compressibility": (0.189, 0.341), "csi": (0.144, 0.387),
                                   "class_separation": (0.140, 0.329)},
    ("corrupted_cifar10", "resnet18"): {"lr": (0.001, 0.5), "test_acc": (0.352, 0.478),
                                        "prunability": (0.267, 0.803), "activation_compressibility": (0.382, 0.634),
                                        "csi": (0.266, 0.393), "class_separation": (0.115, 0.205)},
    ("celeba", "swin_t"): {"lr": (1e-7, 1e-4), "worst_group_acc": (0.409, 0.482), "prunability": (0.344, 0.609),
                           "activation_compressibility": (0.265, 0.584), "csi": (0.122, 0.305),
                           "class_separation": (0.060, 0.164)},
}


def metric_columns(cells: pd.DataFrame) -> list[str]:
    """Numeric per-cell results (accuracies, analyses, steps, ...), in column order."""
    return [c for c in cells.columns if c not in NOT_METRICS and c not in PAIR_KEYS
            and pd.api.types.is_numeric_dtype(cells[c]) and not pd.api.types.is_bool_dtype(cells[c])]


def seed_statistics(cells: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Long table: mean, sd and a t-interval over seeds per (study, dataset, model, knob, value, metric).

    Every knob value is listed; ``in_range`` says whether all its cells are in the usable
    range and ``included`` whether all of them enter the tables (converged, not diverged, in
    range). NaN results (diverged cells) are left out of n; below CI_MIN_SEEDS (3) there is no
    interval, only the sd (NaN for n = 1).
    """
    long = cells.melt(id_vars=PAIR_KEYS + ["value", "seed", "in_range", "included"],
                      value_vars=metric_columns(cells), var_name="metric", value_name="result")
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
                    rows.append(_compared_row(ours, dataset, model, name, paper_min, paper_max)
                                | {"reading": shown if name.startswith("prunability") else ""})
    return pd.DataFrame(rows)


def compare_shape(compare: pd.DataFrame) -> pd.DataFrame:
    """The comparison in the paper's layout: per (dataset, model, variable) the paper's 'min – max',
    ours, and the differences 'diff min, diff max'."""
    def span(low, high, joint=" – "):
        return [f"{format_cell(lo)}{joint}{format_cell(hi)}" if np.isfinite(lo) else "" for lo, hi in zip(low, high)]

    return pd.DataFrame({"dataset": compare["dataset"], "model": compare["model"], "variable": compare["variable"],
                         "paper": span(compare["paper_min"], compare["paper_max"]),
                         "ours": span(compare["ours_min"], compare["ours_max"]),
                         "diff": span(compare["diff_min"], compare["diff_max"], ", ")})


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
        lines.append(f"The paper's {paper_dataset} {variable} range fits `{best}` best (|diff_min| + |diff_max|: "
                     f"{listed}).")
    return "\n".join(lines)


def _compared_row(ours: pd.DataFrame, dataset: str, model: str, variable: str, paper_min: float,
                  paper_max: float) -> dict:
    key = (dataset, model, variable)
    found = ours.loc[[key]].iloc[0] if key in ours.index else None
    our_min = float(found["min"]) if found is not None else np.nan
    our_max = float(found["max"]) if found is not None else np.nan
    return {"dataset": dataset, "model": model, "variable": variable,
            "study": found["study"] if found is not None else None,
            "paper_min": paper_min, "paper_max": paper_max, "ours_min": our_min, "ours_max": our_max,
            "diff_min": our_min - paper_min, "diff_max": our_max - paper_max}


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
        rows.append(dict(zip(PAIR_KEYS, keys)) | {"n_cells": len(frame), "pearson_r": float(r), "p_value": float(p),
                                                   "slope": float(slope), "intercept": float(intercept)})
    columns = PAIR_KEYS + ["n_cells", "pearson_r", "p_value", "slope", "intercept"]
    return pd.DataFrame(rows, columns=columns).astype({"n_cells": "int64"})


# --- trends over the knob ------------------------------------------------------------------

# The Table 1 variables and the direction the paper reports as the learning rate grows.
TREND_VARIABLES = {"test_acc": "↑", "test_worst_group_acc": "↑", "prunability": "↑", "compressibility": "↑",
                   "csi": "↑", "class_sep": "↑"}
# When a trend earns an arrow (↑/↓; "~" otherwise, "?" when no rho can be computed). The rho of the
# seed means is computed over at least TREND_MIN_VALUES knob values; it must reach TREND_RHO in size,
# and hold on TREND_VALUES values or more, or else in every seed's own rho (at least two seeds, all of
# the same sign). With three values a single rank swap gives rho = 0.5: no arrow.
TREND_MIN_VALUES = 3
TREND_RHO = 0.8
TREND_VALUES = 4
TREND_RULE = (f"↑/↓ when |rho| >= {TREND_RHO} on >= {TREND_VALUES} values, or on {TREND_MIN_VALUES} values with "
              "every seed's own rho of that sign; ~ otherwise; k/n seeds: seeds whose own rho has the sign of the means'")


def spearman(series: pd.Series) -> float:
    """Spearman rho of ``series`` (indexed by knob value) against its index; NaN on too few values or a constant."""
    series = series.dropna()
    if len(series) < TREND_MIN_VALUES or series.nunique() < 2:
        return np.nan
    return float(scipy.stats.spearmanr(series.index, series.to_numpy())[0])


def trend_arrow(rho: float, n_values: int, seed_rhos: list[float]) -> str:
    """The arrow the rho of the seed means earns under the rule above (TREND_RULE)."""
    if not np.isfinite(rho):
        return "?"
    agreeing = len(seed_rhos) >= 2 and all(np.sign(r) == np.sign(rho) for r in seed_rhos)
    # rho of ranks is a ratio of whole numbers: 0.8 may come out an ulp below it
    if abs(rho) < TREND_RHO - 1e-9 or not (n_values >= TREND_VALUES or agreeing):
        return "~"
    return "↑" if rho > 0 else "↓"


def trend_row(usable: pd.DataFrame, means: pd.DataFrame, variable: str) -> dict:
    """One variable's trend over the knob: rho of the seed means, every seed's own rho, the arrow."""
    series = means[variable].dropna()
    rho = spearman(series)
    # every seed with enough values has its own rho (NaN when constant over the knob: it does not agree)
    seed_rhos = [spearman(seed.set_index("value")[variable]) for _, seed in usable.groupby("seed")
                 if seed[variable].count() >= TREND_MIN_VALUES]
    agree = sum(np.sign(r) == np.sign(rho) for r in seed_rhos) if np.isfinite(rho) else 0
    return {"variable": variable, "n_values": len(series), "spearman_rho": rho,
            "trend": trend_arrow(rho, len(series), seed_rhos), "seeds": len(seed_rhos),
            "seeds_agreeing": int(agree), "min": series.min(), "max": series.max()}


def trend_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (study, dataset, model, knob) and variable: Spearman rho of the seed means against the
    knob value over the included cells, how many seeds' own rho share its sign, the arrow they earn
    (TREND_RULE), min and max of the seed means, the paper's direction (lr sweeps) and how many
    cells were left out."""
    rows = []
    for keys, pair in cells.groupby(PAIR_KEYS, sort=True):
        usable = pair[pair["included"]]
        present = [v for v in TREND_VARIABLES if v in usable and usable[v].notna().any()]
        means = usable.groupby("value")[present].mean()
        for variable in present:
            rows.append(dict(zip(PAIR_KEYS, keys)) | trend_row(usable, means, variable) | {
                "paper": TREND_VARIABLES[variable] if keys[3] == "lr" else "",
                "cells": len(pair), "left_out": int((~pair["included"]).sum())})
    columns = PAIR_KEYS + ["variable", "n_values", "spearman_rho", "trend", "seeds", "seeds_agreeing", "paper",
                           "min", "max", "cells", "left_out"]
    return pd.DataFrame(rows, columns=columns).astype({"n_values": "int64", "seeds": "int64",
                                                       "seeds_agreeing": "int64", "cells": "int64",
                                                       "left_out": "int64"})


def trend_text(arrow: str, rho: float, seeds: int, agreeing: int) -> str:
    """'↑ +0.94 (3/3 seeds ↑)': the arrow, the rho of the seed means, the seeds whose own rho agrees."""
    if not np.isfinite(rho):
        return arrow
    agreement = f" ({agreeing}/{seeds} seeds {'↑' if rho > 0 else '↓'})" if seeds and rho != 0 else ""
    return f"{arrow} {rho:+.2f}{agreement}"


def trend_summary(trends: pd.DataFrame) -> pd.DataFrame:
    """One row per pair, one column per variable: 'arrow rho (k/n seeds)', for a one-screen view."""
    text = trends.assign(shown=[trend_text(*row) for row in
                                zip(trends["trend"], trends["spearman_rho"], trends["seeds"], trends["seeds_agreeing"])])
    wide = text.pivot_table(index=PAIR_KEYS + ["cells", "left_out"], columns="variable", values="shown",
                            aggfunc="first", sort=False)
    order = [v for v in TREND_VARIABLES if v in wide.columns]
    wide = wide.reindex(columns=order).reset_index()
    wide.columns.name = None
    return wide


def summary_text(cells: pd.DataFrame) -> str:
    """One screen per study: every pair's trend of each variable over the knob (arrow and Spearman
    rho of the seed means; the paper's direction for lr sweeps), and the cells left out and why."""
    trends = trend_table(cells)
    shown = trend_summary(trends).drop(columns=["study"])
    paper = {v: d for v, d in TREND_VARIABLES.items() if v in shown.columns}
    lines = [f"Study {cells['study'].iloc[0]}: trend of each variable over {cells['knob'].iloc[0]} "
             f"(Spearman rho of seed means over included cells; {TREND_RULE})"]
    if (cells["knob"] == "lr").all():
        lines.append("the paper: " + ", ".join(f"{v} {d}" for v, d in paper.items()))
    lines += ["", shown.to_string(index=False), "", left_out_note(cells)]
    return "\n".join(lines)


def summary_html(cells: pd.DataFrame) -> str:
    """The study's summary for the HTML report (a fragment; largelr.report_pages styles it): the trend
    of every variable as a table with coloured arrows, the rule, the cells left out, then its
    Table-1-shaped min/max table."""
    import html

    from largelr.report_pages import trend_cells_html

    study, knob = html.escape(str(cells["study"].iloc[0])), html.escape(str(cells["knob"].iloc[0]))
    trends = trend_summary(trend_table(cells)).drop(columns=["study"])
    shown = [v for v in TREND_VARIABLES if v in trends.columns]
    paper = ", ".join(f"{v} {TREND_VARIABLES[v]}" for v in shown)
    trend_table_html = trend_cells_html(trends.to_html(index=False, na_rep="", border=0),
                                        [text for v in shown for text in trends[v].dropna()])
    table = paper_shape(table1(cells)).to_html(index=False, na_rep="", float_format="{:.4g}".format, border=0)
    return (f"<h2>Study {study}</h2>\n<p>Trend of each variable over {knob}: Spearman rho of the seed means over "
            f"the included cells. {html.escape(TREND_RULE)}.</p>\n"
            + (f"<p>The paper, as the learning rate grows: {html.escape(paper)}.</p>\n" if (cells["knob"] == "lr").all()
               else "") + f"{trend_table_html}\n<p class=\"note\">{html.escape(left_out_note(cells))}</p>\n"
            f"<h3>Min and max over the included cells (Table 1 shape)</h3>\n{table}\n")


def prune_curves(train_jsons: list[str | Path]) -> pd.DataFrame:
    """Every cell's pruning curves (prune.parquet rows, cell keys included) in one table."""
    return pd.concat([pd.read_parquet(Path(path).parent / ANALYSIS_FILES["prune"]) for path in train_jsons],
                     ignore_index=True)


def dynamics(train_jsons: list[str | Path], points: int = DYNAMICS_POINTS) -> pd.DataFrame:
    """Every cell's history thinned to at most ``points`` evenly spaced steps (last step kept)."""
    frames = []
    for path in train_jsons:
        history = pd.read_parquet(Path(path).parent / TRAIN_FILES["history"])
        if len(history) > points:
            keep = np.unique(np.linspace(0, len(history) - 1, points).round().astype(int))
            history = history.iloc[keep]
        frames.append(history)
    return pd.concat(frames, ignore_index=True)


# --- Markdown renderings ------------------------------------------------------------------


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
    wide = text.pivot_table(index=PAIR_KEYS + ["n_seeds"], columns="variable", values="range", aggfunc="first",
                            sort=False)
    wide = wide.reindex(columns=[v for v in order if v in wide.columns]).reset_index()
    wide.columns.name = None
    return wide


def write_table(frame: pd.DataFrame, path: str | Path, title: str, rendering: pd.DataFrame | None = None,
                note: str = "", latex: bool = False, latex_rendering: pd.DataFrame | None = None) -> None:
    """Write ``frame`` as Parquet and its Markdown rendering beside it (same name, .md), with ``note``
    (e.g. which cells were left out) below the table; with ``latex`` the same rendering as a LaTeX
    tabular too (.tex, largelr.latex), of ``latex_rendering`` when given."""
    from largelr.latex import latex_table

    write_parquet(frame, path)
    shown = frame if rendering is None else rendering
    with atomic_path(Path(path).with_suffix(".md")) as tmp:
        tmp.write_text(markdown(shown, title) + (f"\n{note}\n" if note else ""))
    if latex:
        with atomic_path(Path(path).with_suffix(".tex")) as tmp:
            tmp.write_text(latex_table(shown if latex_rendering is None else latex_rendering, title, note, format_cell))


# --- the aggregation jobs -----------------------------------------------------------------


def aggregate_study(train_jsons: list[str], out_cells: str, out_table1: str, out_stats: str, out_mechanism: str,
                    out_curves: str, out_dynamics: str, out_trends: str | None = None, settings: dict | None = None) -> None:
    """One study's cells -> cells.parquet, its Table 1 / statistics / mechanism / trend tables and
    figure inputs. Every table's Markdown says which cells were left out and why."""
    cells = build_cells(train_jsons, settings)
    write_parquet(cells, out_cells)
    study, note = cells["study"].iloc[0], left_out_note(cells)
    minmax = table1(cells)
    write_table(minmax, out_table1, f"{study}: min and max over the included cells (Table 1 shape)",
                paper_shape(minmax), note, latex=True)
    write_table(seed_statistics(cells), out_stats, f"{study}: mean, sd and 95% t-interval over seeds (the interval from "
                f"{CI_MIN_SEEDS} seeds on, the sd alone below; every cell; "
                "`included` marks the values whose cells all enter the tables)", note=note)
    correlations = mechanism_table(cells)
    write_table(correlations, out_mechanism, f"{study}: Pearson r, max BC loss ratio vs test accuracy", note=note)
    trends = trend_table(cells)
    if out_trends:
        write_table(trends, out_trends, f"{study}: trend of each variable over {cells['knob'].iloc[0]} "
                    f"(Spearman rho of seed means; {TREND_RULE})", trend_summary(trends), note)
    write_parquet(prune_curves(train_jsons), out_curves)
    write_parquet(dynamics(train_jsons), out_dynamics)
    print(f"{len(cells)} cells ({int((~cells['included']).sum())} left out) -> {out_cells}")
    print(note)
    print(trend_summary(trends).to_string(index=False))


def write_table1(cells_files: list[str], out: str, out_compare: str) -> None:
    """Table 1 over the Table 1 studies, and the comparison with the paper's reference rows."""
    cells = pd.concat([pd.read_parquet(path) for path in cells_files], ignore_index=True)
    table, note = table1(cells), left_out_note(cells)
    write_table(table, out, "Table 1: min and max over the included learning rates", paper_shape(table), note,
                latex=True)
    readings = cells["prunability_reading"].dropna().unique() if "prunability_reading" in cells else []
    if len(readings) > 1:
        raise ValueError(f"the Table 1 studies use different prunability readings {sorted(readings)}; allowed: one "
                         "reading for every Table 1 study (analysis setting `prunability`)")
    compare = compare_with_paper(table, readings[0] if len(readings) else DEFAULT_READING)
    compare = with_other_csi_reading(compare, cells)
    fit = reading_fit_note(compare)
    write_table(compare, out_compare, "Our Table 1 beside the paper's (diff = ours - paper; other_min/max: CSI "
                "under the other csi_neurons reading)", note=note + (f"\n\n{fit}" if fit else ""), latex=True,
                latex_rendering=compare_shape(compare))
    print(compare.to_string(index=False))


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


def write_table2(intervention_files: list[str], lr_files: list[str], out: str) -> None:
    """Table 2: the intervention studies, with the lr rows of the Table 1 studies of the same pairs."""
    interventions = pd.concat([pd.read_parquet(path) for path in intervention_files], ignore_index=True)
    cells = pd.concat([interventions, *[pd.read_parquet(path) for path in lr_files]], ignore_index=True)
    table = table2(cells, sorted(interventions["study"].unique()))
    write_table(table, out, "Table 2: interventions, min and max over each knob's range (batch size as 1/b)",
                paper_shape(table, knob_label="knob values"), left_out_note(interventions), latex=True)
    print(table.to_string(index=False))
