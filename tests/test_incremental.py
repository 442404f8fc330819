"""Incremental and kill-safe reruns of the real workflow, in a temporary copy.

One smoke run is killed (`kill -9` of the whole process group) mid-training and rerun
to completion; the other tests schedule dry runs against the finished copy.
(`test_workflow.py` covers the plain second run and the dry-run job counts.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from largelr.config import study_cells
from test_workflow import ROOT, copy_workflow, snakemake

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
    process = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "smoke"], cwd=workdir, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
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
    return {"cells": cells, "finished": finished, "snapshot": snapshot, "untrained": untrained,
            "after_kill": after_kill}


def test_killed_run_leaves_nothing_that_looks_complete(killed_and_rerun):
    # Every cell without train.json (killed or never started) is trained again; a killed
    # job's partial outputs are not taken as finished.
    counts = killed_and_rerun["after_kill"]
    assert counts.get("train", 0) >= len(killed_and_rerun["untrained"]) > 0
    assert counts["train"] <= len(killed_and_rerun["cells"]) - len(killed_and_rerun["finished"])


def test_rerun_after_kill_completes_without_retraining_finished_cells(killed_and_rerun, workdir):
    for cell in killed_and_rerun["cells"]:
        base = workdir / "results" / cell.path
        assert {"model.pt", "history.parquet", "train.json", "prune.parquet", "represent.parquet",
                "attribute.parquet"} <= {p.name for p in base.iterdir()}
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
def test_adding_a_value_or_seed_schedules_only_new_cells_and_aggregates(killed_and_rerun, workdir, tmp_path,
                                                                       grow):
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
