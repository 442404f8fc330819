"""``largelr status STUDY``: which cells of a study are done, running, failed or missing, and
how much training time is left.

A cell's state comes from its files alone (no Snakemake needed, safe while a run goes on):

- **done**: its ``train.json`` exists (written last; a diverged cell is done: divergence is a result);
- **running**: no ``train.json``, and its training log (``results/logs/train/<cell>.log``) was
  written within the last ``active_s`` seconds and shows no error;
- **failed**: no ``train.json``, and its log shows a Python error or has not been written for
  ``active_s`` seconds (a killed or preempted job; ``resumable`` when a ``checkpoint.pt`` is left);
- **missing**: neither ``train.json`` nor a log.

The time left follows the cost model of ``benchmarks/grid_cost.py`` with the study's own
timings: a cell costs its expected steps (the median steps of its pair's done cells, else the
step cap) times its pair's seconds per step (median ``wall_s / steps`` of the pair's done cells,
evaluations included). A running cell costs the ETA of its log's last progress line. Cells of a
pair with no done cell yet are counted as not estimated (``benchmarks/grid_cost.py`` times them).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from largelr.config import CELL_DIR, CELL_ID, TRAIN_FILES, Cell, cell_spec, read_config_file, study_cells
from largelr.progress import clock, last_progress

TRAIN_LOG = "results/logs/train/" + CELL_ID + ".log"
STATES = ("done", "running", "failed", "missing")
ACTIVE_S = 1800.0  # a log silent for longer than this belongs to a job that is no longer running
ERROR_MARKS = ("Traceback (most recent call last)", "Error: ", "Killed", "Preempted")


@dataclass
class CellStatus:
    cell: Cell
    state: str
    detail: str = ""
    summary: dict[str, Any] | None = None  # train.json's summary, when done
    eta_s: float = math.nan  # running: from the log's last progress line


def merged_config(paths: list[str | Path]) -> dict[str, Any]:
    """The config files read in order, later keys replacing earlier ones in nested mappings
    (as Snakemake merges ``--configfile`` overlays onto config.yaml)."""

    def merge(base: dict, extra: dict) -> dict:
        out = dict(base)
        for key, value in extra.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    config: dict[str, Any] = {}
    for path in paths:
        config = merge(config, read_config_file(path))
    return config


def cell_status(cell: Cell, root: Path, now: float, active_s: float = ACTIVE_S) -> CellStatus:
    """The state of one cell from its directory and training log under ``root``."""
    cell_dir = root / CELL_DIR.format(**cell.__dict__)
    record = cell_dir / TRAIN_FILES["summary"]
    if record.exists():
        try:
            summary = json.loads(record.read_text())["summary"]
        except (ValueError, KeyError):
            return CellStatus(cell, "failed", f"{record} is damaged (the next run retrains it)")
        return CellStatus(
            cell, "done", "diverged" if summary.get("diverged") else summary.get("stopped_by", ""), summary
        )
    log = root / TRAIN_LOG.format(**cell.__dict__)
    if not log.exists():
        return CellStatus(cell, "missing")
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    progress = last_progress(text)
    where = f"step {progress['step']}/{progress['cap']}" if progress else "before its first evaluation"
    resumable = ", resumable from checkpoint.pt" if (cell_dir / "checkpoint.pt").exists() else ""
    error = next((line.strip() for line in reversed(lines) if any(mark in line for mark in ERROR_MARKS)), None)
    if error:
        return CellStatus(cell, "failed", f"{where}: {error[:120]}{resumable}")
    silent_s = now - log.stat().st_mtime
    if silent_s > active_s:
        return CellStatus(cell, "failed", f"{where}, log silent for {clock(silent_s)}{resumable}")
    eta = progress["eta_s"] if progress else math.nan
    return CellStatus(cell, "running", f"{where}, eta {clock(eta)}", eta_s=eta)


def pair_pace(statuses: list[CellStatus]) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (dataset, model) with done cells: (median seconds per step, median steps) of those cells."""
    done: dict[tuple[str, str], list[dict]] = {}
    for status in statuses:
        if status.state == "done" and status.summary.get("steps"):
            done.setdefault((status.cell.dataset, status.cell.model), []).append(status.summary)
    return {
        pair: (
            statistics.median(s["wall_s"] / s["steps"] for s in summaries),
            statistics.median(s["steps"] for s in summaries),
        )
        for pair, summaries in done.items()
    }


def remaining_seconds(statuses: list[CellStatus], caps: dict[Cell, int]) -> tuple[float, int, int]:
    """(seconds of training left, cells estimated, cells not estimated) over the cells not done."""
    pace = pair_pace(statuses)
    total, estimated, unknown = 0.0, 0, 0
    for status in statuses:
        if status.state == "done":
            continue
        pair = (status.cell.dataset, status.cell.model)
        if status.state == "running" and math.isfinite(status.eta_s):
            seconds = status.eta_s
        elif pair in pace:
            step_s, steps = pace[pair]
            seconds = min(steps, caps[status.cell]) * step_s
        else:
            unknown += 1
            continue
        total, estimated = total + seconds, estimated + 1
    return total, estimated, unknown


def study_status(
    config: dict[str, Any], study: str, root: Path, now: float | None = None, active_s: float = ACTIVE_S
) -> list[CellStatus]:
    if study not in config.get("studies", {}):
        raise SystemExit(
            f"largelr status: no study {study!r} in the config; studies: {', '.join(config.get('studies', {}))}"
        )
    now = time.time() if now is None else now
    return [cell_status(cell, root, now, active_s) for cell in study_cells(config, study)]


def step_caps(config: dict[str, Any], cells: list[Cell]) -> dict[Cell, int]:
    from largelr.config import TrainSettings

    return {
        cell: TrainSettings(
            cell_spec(config, cell.study, cell.dataset, cell.model, cell.knob, cell.value, cell.seed)["train"]
        ).max_steps
        for cell in cells
    }


def status_report(
    config: dict[str, Any],
    study: str,
    root: Path,
    jobs: int = 1,
    now: float | None = None,
    active_s: float = ACTIVE_S,
    show_done: bool = False,
) -> str:
    """The listing printed by ``largelr status``: counts, time left, a table per pair, the cells not done."""
    statuses = study_status(config, study, root, now, active_s)
    counts = Counter(status.state for status in statuses)
    diverged = sum(status.detail == "diverged" for status in statuses)
    seconds, estimated, unknown = remaining_seconds(statuses, step_caps(config, [s.cell for s in statuses]))
    lines = [
        f"Study {study}: {len(statuses)} cells: "
        + ", ".join(f"{counts[state]} {state}" for state in STATES)
        + (f" ({diverged} of the done diverged)" if diverged else "")
    ]
    left = len(statuses) - counts["done"]
    if left:
        at_once = f", about {clock(seconds / jobs)} at {jobs} jobs at once" if jobs > 1 else ""
        lines.append(
            f"training left: about {clock(seconds)} one cell at a time{at_once} ({estimated} of {left} cells"
            f" estimated from their pair's done cells or their log's ETA"
            + (f"; {unknown} not estimated: no done cell of their pair yet" if unknown else "")
            + ")"
        )
    lines += ["", "| dataset | model | " + " | ".join(STATES) + " |", "|---|---|" + "---|" * len(STATES)]
    pairs: dict[tuple[str, str], Counter] = {}
    for status in statuses:
        pairs.setdefault((status.cell.dataset, status.cell.model), Counter())[status.state] += 1
    for (dataset, model), pair_counts in pairs.items():
        lines.append(f"| {dataset} | {model} | " + " | ".join(str(pair_counts[s]) for s in STATES) + " |")
    for state in ("running", "failed") + (("done",) if show_done else ()):
        chosen = [status for status in statuses if status.state == state]
        if chosen:
            lines += ["", f"{state}:"] + [f"  {s.cell.path}  {s.detail}".rstrip() for s in chosen]
    if counts["failed"] or counts["running"]:
        lines += ["", "logs: " + TRAIN_LOG.replace("{", "<").replace("}", ">") + "  (follow one: tail -f <log>)"]
    return "\n".join(lines)
