"""Analyses of one trained cell, one module each, one table each.

Every analysis has a record in :mod:`largelr.registry.analyses` (its settings and its table's
columns and dtypes, torch-free) naming its module here, which declares ``NAME``, ``COLUMNS`` (the
record's) and ``run(model, dataset, settings, device, **resources) -> DataFrame``; optionally ``setup(settings,
device) -> resources`` (loaded before any data, so a missing file fails at once),
``diverged(settings)`` (the table of a diverged cell; default: one NaN row of ``COLUMNS``) and
``cell_columns(table)`` (what the cell's row of cells.parquet takes from the table);
``USES_CELL_SEED = True`` makes ``run`` receive the cell's ``seed`` (to draw its inputs with it).

Adding a metric to an analysis: compute it in that module's ``run`` and list its column in the
record. Adding an analysis: a module with those names and a record in ``largelr.registry.analyses.ANALYSES``.
The other modules here: ``prune_masks`` (the pruning methods' masks, used by ``prune``),
``segment`` (background masks) and ``hilo`` (hi/lo attribution maps).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import torch

from largelr.registry import analyses as records

# name -> module, from the records (their implementation paths), in the records' order.
ANALYSES: dict[str, ModuleType] = {name: record.load() for name, record in records.ANALYSES.items()}


def diverged_table(module: ModuleType, settings) -> pd.DataFrame:
    """A diverged cell has no meaningful analyses: the same columns, NaN values."""
    if hasattr(module, "diverged"):
        return module.diverged(settings)
    return pd.DataFrame([dict.fromkeys(module.COLUMNS, math.nan)]).astype(module.COLUMNS)


def cell_columns(name: str, table: pd.DataFrame) -> dict[str, Any]:
    """The cells.parquet columns that analysis ``name`` contributes, from its table (keys dropped)."""
    module = ANALYSES[name]
    if hasattr(module, "cell_columns"):
        return module.cell_columns(table)
    return table.iloc[0].to_dict()


def analyze_cell(
    summary_path: str | Path,
    model_path: str | Path,
    data_path: str | Path,
    settings,
    device: torch.device,
    steps: Sequence[str],
    write: Callable[[str, pd.DataFrame], None],
    log: Callable[[str], None] = print,
) -> None:
    """Run the analyses ``steps`` on one trained cell and hand each table to ``write(name, table)``.

    A diverged cell (per its train.json at ``summary_path``) gets NaN tables without loading its
    model. The record and the model are checked first (largelr.io.check_cell: the model against the
    size and SHA-256 sealed in train.json); a damaged cell raises largelr.io.DamagedCellError, its
    damaged files removed so that the next run retrains it. Resources (a segmenter) are set up
    before the dataset and model are read.
    """
    from largelr.datasets import load_dataset
    from largelr.io import TRAIN_FILES, check_cell
    from largelr.models import load_checkpoint

    cell_dir, model_path = Path(summary_path).parent, Path(model_path)
    record = check_cell(cell_dir)
    modules = {name: ANALYSES[name] for name in steps}
    if record["summary"]["diverged"]:
        for name, module in modules.items():
            write(name, diverged_table(module, settings))
        return
    if model_path.parent == cell_dir and model_path.name == TRAIN_FILES["model"]:
        check_cell(cell_dir, full=("model",))
    resources = {
        name: module.setup(settings, device) if hasattr(module, "setup") else {} for name, module in modules.items()
    }
    model = load_checkpoint(model_path, device)
    if any(isinstance(module, torch.nn.Conv2d) for module in model.modules()):
        model = model.to(memory_format=torch.channels_last)  # as in training: oneDNN's layout, faster on CPU and GPU
    dataset = load_dataset(data_path)
    for name, module in modules.items():
        started = time.perf_counter()
        cell_seed = {"seed": record["cell"]["seed"]} if getattr(module, "USES_CELL_SEED", False) else {}
        table = module.run(model, dataset, settings, device, **resources[name], **cell_seed)
        write(name, table)
        log(f"{name} ({time.perf_counter() - started:.2f} s):\n{table.to_string(index=False)}")
