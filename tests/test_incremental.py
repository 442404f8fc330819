"""Incremental and kill-safe reruns of the real workflow, in a temporary copy.

One smoke run is killed (`kill -9` of the whole process group) mid-training and rerun
to completion; the other tests schedule dry runs against the finished copy, then damage it:
each cell file is deleted, then truncated, in a cell of its own, and the following runs must
name the damaged cells, rebuild exactly those, write the same model.pt bytes and never lose a
study table. (`test_workflow.py` covers the plain second run and the dry-run job counts.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import ROOT, copy_workflow, snakemake

from largelr.config import study_cells

pytestmark = pytest.mark.slow


def job_counts(run: subprocess.CompletedProcess) -> dict[str, int]:
    """Jobs per rule from `snakemake --dry-run --quiet rules`."""
    counts = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def dry_run(workdir: Path, *args: str) -> dict[str, int]:
    run = snakemake(workdir, "smoke", *args, "--dry-run", "--quiet", "rules")
    assert run.returncode == 0, run.stderr[-3000:]
    return job_counts(run)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def smoke_grid(workdir: Path) -> tuple[dict, int]:
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    smoke = config["studies"]["smoke"]
    return config, sum(len(b["datasets"]) * len(b["models"]) for b in smoke["grid"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("incremental"))


@pytest.fixture(scope="module")
def killed_and_rerun(workdir):
    """Kill -9 a smoke run once some cells are analysed, snapshot them, rerun to the end."""
    config, _ = smoke_grid(workdir)
    cells = study_cells(config, "smoke")
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", "smoke"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    finished: list = []
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            finished = [c for c in cells if (workdir / "results" / c.path / "attribute.parquet").exists()]
            if len(finished) >= 2:
                break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the whole workflow: Snakemake and every job
    _, errors = process.communicate()
    assert process.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{errors[-3000:]}"
    assert 2 <= len(finished) < len(cells), "the run was not caught mid-way; nothing to test"
    # Analysed cells finished training well before the kill.
    snapshot = {}
    for cell in finished:
        base = workdir / "results" / cell.path
        snapshot[cell.path] = {
            "model.pt": digest(base / "model.pt"),
            "history.parquet": digest(base / "history.parquet"),
            "log": (workdir / f"results/logs/train/{cell.path}.log").stat().st_mtime_ns,
            "benchmark": (workdir / f"results/benchmarks/train/{cell.path}.tsv").stat().st_mtime_ns,
        }
    untrained = [c for c in cells if not (workdir / "results" / c.path / "train.json").exists()]
    after_kill = dry_run(workdir)
    # A killed Snakemake leaves its lock behind; releasing it is the documented first step.
    assert snakemake(workdir, "smoke", "--unlock").returncode == 0
    rerun = snakemake(workdir, "smoke")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    return {
        "cells": cells,
        "finished": finished,
        "snapshot": snapshot,
        "untrained": untrained,
        "after_kill": after_kill,
    }


def test_killed_run_leaves_nothing_that_looks_complete(killed_and_rerun):
    # Every cell without train.json (killed or never started) is trained again; a killed
    # job's partial outputs are not taken as finished.
    counts = killed_and_rerun["after_kill"]
    assert counts.get("train", 0) >= len(killed_and_rerun["untrained"]) > 0
    assert counts["train"] <= len(killed_and_rerun["cells"]) - len(killed_and_rerun["finished"])


def test_rerun_after_kill_completes_without_retraining_finished_cells(killed_and_rerun, workdir):
    for cell in killed_and_rerun["cells"]:
        base = workdir / "results" / cell.path
        assert {
            "model.pt",
            "history.parquet",
            "train.json",
            "prune.parquet",
            "represent.parquet",
            "attribute.parquet",
        } <= {p.name for p in base.iterdir()}
        assert not (base / "checkpoint.pt").exists()
    for path, before in killed_and_rerun["snapshot"].items():
        base = workdir / "results" / path
        assert digest(base / "model.pt") == before["model.pt"]
        assert digest(base / "history.parquet") == before["history.parquet"]
        assert (workdir / f"results/logs/train/{path}.log").stat().st_mtime_ns == before["log"]
        assert (workdir / f"results/benchmarks/train/{path}.tsv").stat().st_mtime_ns == before["benchmark"]
    assert (workdir / "results/smoke/cells.parquet").exists()
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(snakemake(workdir, "smoke", "--dry-run"))


@pytest.mark.parametrize("grow", ["values", "seeds"])
def test_adding_a_value_or_seed_schedules_only_new_cells_and_aggregates(killed_and_rerun, workdir, tmp_path, grow):
    config, n_pairs = smoke_grid(workdir)
    smoke = config["studies"]["smoke"]
    smoke[grow].append(0.2 if grow == "values" else 7)
    overlay = tmp_path / "grown.yaml"
    overlay.write_text(yaml.safe_dump(config))
    counts = dry_run(workdir, "--configfile", str(overlay))
    new_cells = n_pairs * (len(smoke["seeds"]) if grow == "values" else len(smoke["values"]))
    assert counts["train"] == counts["analyze"] == new_cells
    assert counts["aggregate"] == 1 and not {"data", "card"} & set(counts)


def test_editing_a_docstring_in_src_reruns_nothing(killed_and_rerun, workdir):
    # The copy gets the package's sources; rules call the installed `largelr` and must
    # not depend on source files, so an edit (newer mtime) reruns nothing.
    shutil.copytree(ROOT / "src", workdir / "src", dirs_exist_ok=True)
    source = workdir / "src/largelr/train.py"
    text = source.read_text()
    assert '"""' in text
    source.write_text(text.replace('"""', '"""Edited. ', 1))
    run = snakemake(workdir, "smoke", "--dry-run")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Nothing to be done" in run.stdout + run.stderr


def test_deleting_one_cells_outputs_reruns_only_that_cell(killed_and_rerun, workdir):
    cell = killed_and_rerun["cells"][-1]
    shutil.rmtree(workdir / "results" / cell.path)
    # Snakemake does not regenerate a missing intermediate file while what was built
    # from it is up to date, so the deleted cell is named as a target beside the study.
    counts = dry_run(workdir, f"results/{cell.path}/attribute.parquet")
    # The cell's training and analysis, then what reads it: the study's aggregate and
    # the figures drawn from it.
    assert counts["train"] == counts["analyze"] == counts["aggregate"] == 1
    assert not {"data", "card"} & set(counts)


# --- damaged cells heal, and a failed aggregation keeps the tables ----------------------------

CELL_FILES_ORDER = [
    "model.pt",
    "history.parquet",
    "predictions.parquet",
    "train.json",
    "prune.parquet",
    "represent.parquet",
    "attribute.parquet",
]
TRAIN_OUTPUTS = {"model.pt", "history.parquet", "predictions.parquet", "train.json"}
STUDY_TABLES = [
    "smoke/cells.parquet",
    "smoke/prune_curves.parquet",
    "smoke/dynamics.parquet",
    *[f"tables/smoke_{t}.{e}" for t in ("table1", "stats", "mechanism") for e in ("parquet", "md")],
]


def log_times(workdir: Path, cells: list) -> dict[tuple[str, str], int]:
    """mtime of every cell's train and analyze log: a job that ran rewrote its log."""
    return {
        (rule, cell.path): (workdir / f"results/logs/{rule}/{cell.path}.log").stat().st_mtime_ns
        for cell in cells
        for rule in ("train", "analyze")
    }


def rebuilt(before: dict, workdir: Path, cells: list) -> dict[str, set[str]]:
    after = log_times(workdir, cells)
    return {
        rule: {path for (r, path), mtime in after.items() if r == rule and mtime != before[(r, path)]}
        for rule in ("train", "analyze")
    }


def cell_digests(workdir: Path, cells: list) -> dict[str, str]:
    return {
        c.path: digest(workdir / "results" / c.path / "model.pt")
        for c in cells
        if (workdir / "results" / c.path / "model.pt").exists()
    }


def table_bytes(workdir: Path) -> dict[str, bytes]:
    return {name: (workdir / "results" / name).read_bytes() for name in STUDY_TABLES}


@pytest.fixture(scope="module")
def deleted_files_rebuilt(killed_and_rerun, workdir):
    """Delete each cell file in turn (one file in each of seven cells), dry-run, then run."""
    cells = killed_and_rerun["cells"]
    models = cell_digests(workdir, cells)
    for cell, name in zip(cells, CELL_FILES_ORDER):
        (workdir / "results" / cell.path / name).unlink()
    # Cells to rebuild, read from the disk (an earlier test may have deleted a whole cell too).
    missing = {c.path: {n for n in CELL_FILES_ORDER if not (workdir / "results" / c.path / n).exists()} for c in cells}
    expected = {
        "train": {p for p, gone in missing.items() if gone & TRAIN_OUTPUTS},
        "analyze": {p for p, gone in missing.items() if gone},
    }
    counts = dry_run(workdir)
    before = log_times(workdir, cells)
    run = snakemake(workdir, "smoke")
    assert run.returncode == 0, run.stderr[-4000:]
    return {"cells": cells, "expected": expected, "counts": counts, "before": before, "models": models}


def test_deleting_each_cell_file_schedules_and_rebuilds_exactly_that_cell(deleted_files_rebuilt, workdir):
    state = deleted_files_rebuilt
    expected, counts = state["expected"], state["counts"]
    assert len(expected["train"]) >= 4 and len(expected["analyze"]) >= 7
    assert counts["train"] == len(expected["train"]) and counts["analyze"] == len(expected["analyze"])
    assert counts["aggregate"] == 1 and counts["figures_smoke"] == 1 and not {"data", "card"} & set(counts)
    assert rebuilt(state["before"], workdir, state["cells"]) == expected
    # A retrained cell writes the same model.pt, byte for byte, as its first run.
    retrained = {path: sha for path, sha in cell_digests(workdir, state["cells"]).items() if path in expected["train"]}
    assert retrained and all(sha == state["models"][path] for path, sha in retrained.items() if path in state["models"])
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(snakemake(workdir, "smoke", "--dry-run"))


def test_truncated_cell_files_are_named_removed_and_rebuilt_and_no_table_is_lost(deleted_files_rebuilt, workdir):
    cells = deleted_files_rebuilt["cells"][7:13]
    damaged = dict(
        zip(
            (c.path for c in cells),
            [
                "model.pt",
                "history.parquet",
                "predictions.parquet",
                "prune.parquet",
                "represent.parquet",
                "attribute.parquet",
            ],
        )
    )
    models, tables = cell_digests(workdir, cells), table_bytes(workdir)
    before = log_times(workdir, deleted_files_rebuilt["cells"])
    for path, name in damaged.items():
        target = workdir / "results" / path / name
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    model_cell = cells[0].path
    # Run 1: the analysis of the cell with the truncated model.pt notices it (its input is newer).
    first = snakemake(workdir, "smoke", "--keep-going")
    assert first.returncode != 0
    output = first.stdout + first.stderr
    assert f"results/{model_cell}: damaged cell" in output and "model.pt: " in output
    assert "snakemake --cores all smoke" in output and "failed finding central directory" not in output
    assert not (workdir / "results" / model_cell / "train.json").exists()
    assert table_bytes(workdir) == tables
    # Run 2: that cell is retrained; the aggregation checks every cell, names the other five at once,
    # removes them, fails, and the previous study tables are restored.
    second = snakemake(workdir, "smoke", "--keep-going")
    assert second.returncode != 0
    output = second.stdout + second.stderr
    for path in list(damaged)[1:]:
        assert f"results/{path}: damaged cell" in output, path
    assert table_bytes(workdir) == tables
    # Run 3: the rest is rebuilt; exactly the damaged cells were retrained or re-analysed.
    third = snakemake(workdir, "smoke")
    assert third.returncode == 0, third.stderr[-4000:]
    ran = rebuilt(before, workdir, deleted_files_rebuilt["cells"])
    assert ran["train"] == {p for p, name in damaged.items() if name in TRAIN_OUTPUTS}
    assert ran["analyze"] == set(damaged)
    assert cell_digests(workdir, cells) == models  # retrained: the same model.pt, byte for byte
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(snakemake(workdir, "smoke", "--dry-run"))


def test_a_truncated_train_json_is_removed_and_its_cell_retrained(deleted_files_rebuilt, workdir):
    cell = deleted_files_rebuilt["cells"][13]
    record = workdir / "results" / cell.path / "train.json"
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    first = snakemake(workdir, "smoke", "--keep-going")
    assert first.returncode != 0
    assert f"results/{cell.path}: damaged cell" in first.stdout + first.stderr
    assert not record.exists()
    second = snakemake(workdir, "smoke")
    assert second.returncode == 0, second.stderr[-4000:]
    assert json.loads(record.read_text())["cell"]["seed"] == cell.seed
