"""Cells -> tables: one row per cell, the usable LR range, and the paper's Table 1.

Seeds are averaged before any min/max across knob values, as in the paper.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from largelr.io import CELL_KEYS

PAIR_KEYS = ["study", "dataset", "model", "knob"]
# Paper Table 1 columns -> our cell columns.
TABLE1_VARIABLES = {
    "test_acc": "test_acc",
    "prunability": "prunability",
    "activation_compressibility": "compressibility",
    "csi": "csi",
    "class_separation": "class_sep",
}
ACCURACY_DROP = 0.25  # a value whose test accuracy falls >25% below the best ends the LR range


def max_bc_loss_ratio(history: pd.DataFrame) -> float:
    """The mechanism statistic: the largest per-step BC loss ratio seen in training."""
    ratios = history["bc_loss_ratio"].replace([np.inf, -np.inf], np.nan)
    return float(ratios.max()) if ratios.notna().any() else float("nan")


def read_cell(train_json: str | Path) -> dict:
    """Gather one cell's outputs (train.json and its sibling Parquet files) into one flat row."""
    cell_dir = Path(train_json).parent
    record = json.loads(Path(train_json).read_text())
    row = {key: record["cell"][key] for key in CELL_KEYS}
    row.update({k: v for k, v in record["summary"].items() if not isinstance(v, dict)})
    row.update(record["provenance"])
    row["max_bc_loss_ratio"] = max_bc_loss_ratio(pd.read_parquet(cell_dir / "history.parquet"))
    prune = pd.read_parquet(cell_dir / "prune.parquet")
    for method, curve in prune.groupby("method"):
        row[f"prunability_{method}"] = float(curve["retention"].mean())
    # The paper's prunability is the structured one (FCN nodes, CNN kernels).
    row["prunability"] = row.get("prunability_structured", float("nan"))
    for name in ("represent", "attribute"):
        frame = pd.read_parquet(cell_dir / f"{name}.parquet")
        row.update(frame.drop(columns=[c for c in frame.columns if c in row]).iloc[0].to_dict())
    return row


def mark_usable_range(cells: pd.DataFrame) -> pd.DataFrame:
    """Flag cells inside the usable range of their (study, dataset, model) sweep.

    For the ``lr`` knob the range ends at the first value above the best one (highest
    seed-mean test accuracy) where any seed diverged or the seed-mean accuracy is more
    than 25% below the best; that value and all larger ones are out. For other knobs
    only diverged cells are out. Cells out of range stay in the data, flagged.
    """
    cells = cells.copy()
    cells["in_range"] = ~cells["diverged"].astype(bool)
    for _, pair in cells.groupby(PAIR_KEYS):
        if pair["knob"].iloc[0] != "lr":
            continue
        per_value = pair.groupby("value").agg(acc=("test_acc", "mean"), diverged=("diverged", "any")).sort_index()
        healthy = per_value[~per_value["diverged"]]
        if healthy.empty:
            cells.loc[pair.index, "in_range"] = False
            continue
        best_value, best_acc = healthy["acc"].idxmax(), healthy["acc"].max()
        failing = per_value[(per_value.index > best_value) & (per_value["diverged"] | (per_value["acc"] < (1 - ACCURACY_DROP) * best_acc))]
        if not failing.empty:
            cells.loc[pair.index[pair["value"] >= failing.index.min()], "in_range"] = False
    return cells


def build_cells(train_jsons: list[str | Path]) -> pd.DataFrame:
    cells = pd.DataFrame([read_cell(path) for path in train_jsons])
    cells = cells.sort_values(CELL_KEYS).reset_index(drop=True)
    cells = cells.astype({"value": "float64", "seed": "int64", "diverged": "bool"})
    return mark_usable_range(cells)


def seed_means(cells: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Mean over seeds per knob value, usable-range cells only."""
    usable = cells[cells["in_range"]]
    return usable.groupby(PAIR_KEYS + ["value"], as_index=False)[columns].mean()


def table1(cells: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 1, tidy: per (dataset, model) and variable, min and max across knob values."""
    columns = list(TABLE1_VARIABLES.values())
    means = seed_means(cells, columns)
    rows = []
    for keys, pair in means.groupby(PAIR_KEYS):
        n_seeds = int(cells[cells["in_range"]].set_index(PAIR_KEYS).loc[keys, "seed"].nunique())
        base = dict(zip(PAIR_KEYS, keys)) | {"n_values": len(pair), "n_seeds": n_seeds}
        rows.append(base | {"variable": keys[3], "min": pair["value"].min(), "max": pair["value"].max()})
        for variable, column in TABLE1_VARIABLES.items():
            rows.append(base | {"variable": variable, "min": pair[column].min(), "max": pair[column].max()})
    frame = pd.DataFrame(rows, columns=PAIR_KEYS + ["variable", "min", "max", "n_values", "n_seeds"])
    return frame.astype({"min": "float64", "max": "float64", "n_values": "int64", "n_seeds": "int64"})
