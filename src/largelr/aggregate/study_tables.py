"""The study tables' writers (records: largelr.registry.tables). Each takes the study's cells, the
table's Parquet path and the note on the cells left out, and writes the table with its Markdown
beside (and LaTeX where the record says so)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from largelr.aggregate.notes import TREND_RULE, trend_summary, trend_table
from largelr.aggregate.paper import CI_MIN_SEEDS, mechanism_table, paper_shape, seed_statistics, table1
from largelr.aggregate.write import write_table


def study_name(cells: pd.DataFrame) -> str:
    return cells["study"].iloc[0]


def write_minmax(cells: pd.DataFrame, path: str | Path, note: str) -> None:
    """Min and max of each variable over the included cells, in the paper's Table 1 shape."""
    minmax = table1(cells)
    write_table(
        minmax,
        path,
        f"{study_name(cells)}: min and max over the included cells (Table 1 shape)",
        paper_shape(minmax),
        note,
        latex=True,
    )


def write_stats(cells: pd.DataFrame, path: str | Path, note: str) -> None:
    """Mean, sd and t-interval over seeds of every metric, per knob value."""
    write_table(
        seed_statistics(cells),
        path,
        f"{study_name(cells)}: mean, sd and 95% t-interval over seeds (the "
        f"interval from {CI_MIN_SEEDS} seeds on, the sd alone below; every cell; "
        "`included` marks the values whose cells all enter the tables)",
        note=note,
    )


def write_mechanism(cells: pd.DataFrame, path: str | Path, note: str) -> None:
    """Pearson r of max BC loss ratio against test accuracy, per pair."""
    write_table(
        mechanism_table(cells), path, f"{study_name(cells)}: Pearson r, max BC loss ratio vs test accuracy", note=note
    )


def write_trends(cells: pd.DataFrame, path: str | Path, note: str) -> None:
    """The trend of each variable over the knob (Spearman rho of seed means), with its arrows."""
    trends = trend_table(cells)
    write_table(
        trends,
        path,
        f"{study_name(cells)}: trend of each variable over {cells['knob'].iloc[0]} "
        f"(Spearman rho of seed means; {TREND_RULE})",
        trend_summary(trends),
        note,
    )
