"""Study tables, one record each (torch-free; read at Snakemake's parse time).

Each study's aggregate job writes every table of this list as
``results/tables/<study>_<stem>.parquet`` with its Markdown beside (and LaTeX where ``latex``);
the aggregate rule's outputs, the ``largelr aggregate --out-<name>`` options and the study's
targets are derived from these records. Adding a table: one record here and its writer, a
function ``write(cells, path, note)`` (``note``: which cells were left out), imported by path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StudyTable:
    name: str
    stem: str  # results/tables/<study>_<stem>.parquet
    write: str  # "module:function" taking (cells, path, note)
    what: str = ""  # for `largelr aggregate --help`
    latex: bool = False  # also written as LaTeX (.tex) in the paper's layout

    def path(self, study: str, suffix: str = "parquet") -> str:
        return f"results/tables/{study}_{self.stem}.{suffix}"

    def suffixes(self) -> tuple[str, ...]:
        return ("parquet", "md", "tex") if self.latex else ("parquet", "md")

    def writer(self) -> Callable[..., object]:
        module, name = self.write.split(":")
        return getattr(importlib.import_module(module), name)


def _table(*args: object, **kwargs: object) -> tuple[str, StudyTable]:
    table = StudyTable(*args, **kwargs)  # type: ignore[arg-type]
    return table.name, table


# In the order the aggregate job writes them.
STUDY_TABLES: dict[str, StudyTable] = dict(
    [
        _table("table1", "table1", "largelr.aggregate.study_tables:write_minmax", "min/max table", latex=True),
        _table("stats", "stats", "largelr.aggregate.study_tables:write_stats", "mean, sd, 95% CI over seeds"),
        _table("mechanism", "mechanism", "largelr.aggregate.study_tables:write_mechanism", "Pearson r table"),
        _table(
            "trends", "trends", "largelr.aggregate.study_tables:write_trends", "trend of every variable over the knob"
        ),
    ]
)
# The study's other aggregate outputs (results/{study}/<name>.parquet): the figures' inputs.
STUDY_FILES = {"cells": "cells.parquet", "curves": "prune_curves.parquet", "dynamics": "dynamics.parquet"}


def aggregate_outputs(study: str = "{study}") -> dict[str, str]:
    """The aggregate job's named outputs: its study files, then each table and its renderings."""
    outputs = {name: f"results/{study}/{filename}" for name, filename in STUDY_FILES.items()}
    for table in STUDY_TABLES.values():
        for suffix in table.suffixes():
            outputs[table.name if suffix == "parquet" else f"{table.name}_{suffix}"] = table.path(study, suffix)
    return outputs


def aggregate_arguments() -> str:
    """The ``--out-<name> {output.<name>}`` options of the aggregate rule's shell command."""
    return " ".join(f"--out-{name} {{output.{name}}}" for name in [*STUDY_FILES, *STUDY_TABLES])
