"""Cells: read and check each cell's train.json and analysis tables, one row per cell, and mark which
cells enter the tables (converged, in the usable range); the figure inputs (pruning curves, dynamics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from largelr.analyses import ANALYSES, cell_columns
from largelr.analyses.prune import DEFAULT_READING, chosen_reading
from largelr.config import ANALYSIS_FILES, TRAIN_FILES
from largelr.io import CELL_KEYS, PROVENANCE_KEYS
from largelr.registry.analyses import AGGREGATE, BC_RATIO_READINGS, USABLE_RANGE_READINGS

PAIR_KEYS = ["study", "dataset", "model", "knob"]


# "we utilize LRs up to the point of divergence or drastic performance loss (>25% in test
# accuracy) among any one of the seeds": one seed below 75% of the best seed-mean ends the range.
ACCURACY_DROP = AGGREGATE.default("usable_range_drop")

NEAR_CHANCE_MARGIN = AGGREGATE.default("chance_margin")  # "a few points" above chance (1 / classes)

LEFT_OUT = {
    "diverged": "diverged",
    "not_converged": "not converged (stopped at the step cap)",
    "past_range": "past the usable range",
}


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
        per_value = (
            pair.groupby("value")
            .agg(acc=("test_acc", "mean"), worst_seed=("test_acc", "min"), diverged=("diverged", "any"))
            .sort_index()
        )
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


def mark_included(
    cells: pd.DataFrame,
    require_converged: bool = True,
    drop: float = ACCURACY_DROP,
    chance_margin: float = NEAR_CHANCE_MARGIN,
    reading: str = "relative",
) -> pd.DataFrame:
    """``included`` (enters tables and figures), ``left_out`` (why not, "" if included) and
    ``near_chance`` (test accuracy within ``chance_margin`` of 1 / classes, where classes are known).
    With ``require_converged`` off, cells that stopped at the step cap are included."""
    cells = mark_usable_range(cells, drop, reading)
    converged = (
        cells["converged"].fillna(False).astype(bool)
        if "converged" in cells and require_converged
        else pd.Series(True, index=cells.index)
    )
    reasons = np.select(
        [cells["diverged"].astype(bool).to_numpy(), ~converged.to_numpy(), ~cells["in_range"].to_numpy()],
        [LEFT_OUT["diverged"], LEFT_OUT["not_converged"], LEFT_OUT["past_range"]],
        default="",
    )
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
    cells = mark_included(
        cells, settings["require_converged"], drop, settings["chance_margin"], settings["usable_range_reading"]
    )
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


# Most points of one cell's history kept for the training-dynamics figure.
DYNAMICS_POINTS = 400


def prune_curves(train_jsons: list[str | Path]) -> pd.DataFrame:
    """Every cell's pruning curves (prune.parquet rows, cell keys included) in one table."""
    return pd.concat(
        [pd.read_parquet(Path(path).parent / ANALYSIS_FILES["prune"]) for path in train_jsons], ignore_index=True
    )


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
