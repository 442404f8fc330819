"""One job draws a study's figures: the tasks of every family named (largelr.registry.figures),
run in forked processes; and the cross-study intervention grid (Fig. 6)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from largelr.registry.figures import FIGURE_FAMILIES, FigureFamily

Task = tuple[Callable[..., object], tuple]


def figure_paths(out_dir: str | Path, family: str, formats: Sequence[str], **names: str) -> list[Path]:
    stem = FIGURE_FAMILIES[family].file_stem(**names)
    return [Path(out_dir) / f"{stem}.{suffix}" for suffix in formats]


def pair_seeds(table: pd.DataFrame, dataset: str, model: str) -> int:
    return table[(table["dataset"] == dataset) & (table["model"] == model)]["seed"].nunique()


def family_tasks(
    family: FigureFamily,
    out_dir: str | Path,
    frames: Mapping[str, pd.DataFrame],
    npz: Mapping[str, Sequence[str]],
    formats: Sequence[str],
) -> list[Task]:
    """(function, arguments) of every figure of one family (the calling convention of
    largelr.registry.figures): one per npz file, one per pair, or one for the study."""
    function, table = family.function(), frames["cells"]
    if family.npz:
        tasks = []
        for path in npz.get(family.npz, ()):
            dataset, model = Path(path).stem.split("-", 1)
            seeds = (pair_seeds(table, dataset, model),) if family.seeds else ()
            paths = figure_paths(out_dir, family.name, formats, dataset=dataset, model=model)
            tasks.append((function, (path, table["study"].iloc[0], dataset, model, *seeds, paths)))
        return tasks
    inputs = tuple(frames[name] for name in family.inputs)
    if not family.per_pair:
        return [(function, (*inputs, figure_paths(out_dir, family.name, formats)))]
    pairs = list(dict.fromkeys(zip(table["dataset"], table["model"])))
    return [
        (function, (*inputs, dataset, model, figure_paths(out_dir, family.name, formats, dataset=dataset, model=model)))
        for dataset, model in pairs
    ]


def study_figure_tasks(
    families: Sequence[str],
    out_dir: str | Path,
    frames: dict[str, pd.DataFrame],
    npz: Mapping[str, Sequence[str]],
    formats: Sequence[str],
) -> list[Task]:
    """(function, arguments) of every figure of the named families: one per pair, or one per study."""
    return [task for name in families for task in family_tasks(FIGURE_FAMILIES[name], out_dir, frames, npz, formats)]


_TASKS: list[Task] = []  # handed to forked workers by index


def _run_task(index: int) -> None:
    function, arguments = _TASKS[index]
    function(*arguments)


def run_tasks(tasks: list[Task], workers: int) -> None:
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


def draw_study_figures(
    families: Sequence[str],
    out_dir: str | Path,
    cells: str,
    curves: str | None = None,
    dynamics: str | None = None,
    mechanism: str | None = None,
    hilo: Sequence[str] = (),
    formats: Sequence[str] = ("png", "pdf"),
    workers: int = 1,
    training_maps: Sequence[str] = (),
) -> None:
    """Every figure of the named families for one study, from its aggregate files; in ``workers`` processes."""
    frames = {"cells": pd.read_parquet(cells)}
    for name, path in (("curves", curves), ("dynamics", dynamics), ("mechanism", mechanism)):
        if any(name in FIGURE_FAMILIES[family].inputs for family in families):
            if path is None:
                raise SystemExit(f"largelr figures: --{name} is required for {list(families)}")
            frames[name] = pd.read_parquet(path)
    tasks = study_figure_tasks(families, out_dir, frames, {"hilo": hilo, "training_maps": training_maps}, formats)
    run_tasks(tasks, workers)
    print(f"drew {len(tasks)} figures of {', '.join(families)} -> {out_dir}")


def draw_intervention_figure(cells_files: Sequence[str], dataset: str, model: str, paths: Sequence[str]) -> None:
    from largelr.figures.sweeps import intervention_grid

    cells = pd.concat([pd.read_parquet(path) for path in cells_files], ignore_index=True)
    intervention_grid(cells, dataset, model, paths)
    print(f"wrote {' '.join(map(str, paths))}")
