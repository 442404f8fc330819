"""The aggregation jobs: one study's cells -> cells.parquet, its tables (largelr.registry.tables) and
figure inputs; Tables 1 and 2 across studies. Every table is Parquet with its Markdown beside.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from largelr.aggregate.cells import build_cells, dynamics, prune_curves
from largelr.aggregate.notes import left_out_note, trend_summary, trend_table
from largelr.aggregate.paper import (
    compare_shape,
    compare_with_paper,
    format_cell,
    markdown,
    paper_shape,
    reading_fit_note,
    table1,
    table2,
    with_other_csi_reading,
)
from largelr.analyses.prune import DEFAULT_READING
from largelr.io import atomic_path, write_parquet


def write_table(
    frame: pd.DataFrame,
    path: str | Path,
    title: str,
    rendering: pd.DataFrame | None = None,
    note: str = "",
    latex: bool = False,
    latex_rendering: pd.DataFrame | None = None,
) -> None:
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


def aggregate_study(
    train_jsons: list[str],
    out_cells: str,
    out_curves: str,
    out_dynamics: str,
    tables: Mapping[str, str | Path],
    settings: dict | None = None,
) -> None:
    """One study's cells -> cells.parquet, the study tables named in ``tables`` (table name -> Parquet
    path; largelr.registry.tables, in its order) and the figure inputs. Every table's Markdown says
    which cells were left out and why."""
    from largelr.registry.tables import STUDY_TABLES

    unknown = sorted(set(tables) - set(STUDY_TABLES))
    if unknown:
        raise ValueError(f"study tables {unknown} are not known; allowed: {list(STUDY_TABLES)}")
    cells = build_cells(train_jsons, settings)
    write_parquet(cells, out_cells)
    note = left_out_note(cells)
    for name, table in STUDY_TABLES.items():
        if name in tables:
            table.writer()(cells, tables[name], note)
    write_parquet(prune_curves(train_jsons), out_curves)
    write_parquet(dynamics(train_jsons), out_dynamics)
    print(f"{len(cells)} cells ({int((~cells['included']).sum())} left out) -> {out_cells}")
    print(note)
    print(trend_summary(trend_table(cells)).to_string(index=False))


def write_table1(cells_files: list[str], out: str, out_compare: str) -> None:
    """Table 1 over the Table 1 studies, and the comparison with the paper's reference rows."""
    cells = pd.concat([pd.read_parquet(path) for path in cells_files], ignore_index=True)
    table, note = table1(cells), left_out_note(cells)
    write_table(
        table, out, "Table 1: min and max over the included learning rates", paper_shape(table), note, latex=True
    )
    readings = cells["prunability_reading"].dropna().unique() if "prunability_reading" in cells else []
    if len(readings) > 1:
        raise ValueError(
            f"the Table 1 studies use different prunability readings {sorted(readings)}; allowed: one "
            "reading for every Table 1 study (analysis setting `prunability`)"
        )
    compare = compare_with_paper(table, readings[0] if len(readings) else DEFAULT_READING)
    compare = with_other_csi_reading(compare, cells)
    fit = reading_fit_note(compare)
    write_table(
        compare,
        out_compare,
        "Our Table 1 beside the paper's (diff = ours - paper; other_min/max: CSI under the other csi_neurons reading)",
        note=note + (f"\n\n{fit}" if fit else ""),
        latex=True,
        latex_rendering=compare_shape(compare),
    )
    print(compare.to_string(index=False))


def write_table2(intervention_files: list[str], lr_files: list[str], out: str) -> None:
    """Table 2: the intervention studies, with the lr rows of the Table 1 studies of the same pairs."""
    interventions = pd.concat([pd.read_parquet(path) for path in intervention_files], ignore_index=True)
    cells = pd.concat([interventions, *[pd.read_parquet(path) for path in lr_files]], ignore_index=True)
    table = table2(cells, sorted(interventions["study"].unique()))
    write_table(
        table,
        out,
        "Table 2: interventions, min and max over each knob's range (batch size as 1/b)",
        paper_shape(table, knob_label="knob values"),
        left_out_note(interventions),
        latex=True,
    )
    print(table.to_string(index=False))
