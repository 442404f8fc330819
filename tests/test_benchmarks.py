"""The benchmark scripts (cost model, GPU check) and the lean step's bookkeeping they rely on.

The scripts run here at CI size on the CPU: ``grid_cost.py`` on the smoke study and
``gpu_check.sh --device cpu`` end to end (the smoke study's first cell, throughput, cost
model, cells at once vs in sequence). The training engine's per-step statistics that are
kept without a history row (loss for divergence, BC loss ratio for its maximum) are checked
against runs that record every step.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import quiet, toy_spec

from largelr.train import train_cell

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import grid_cost  # noqa: E402
import train_throughput  # noqa: E402

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


# --- the engine's per-step statistics between history rows ----------------------------------


def test_max_bc_loss_ratio_covers_every_step_whatever_history_every(toy_dataset):
    _, every, every_summary = train_cell(toy_spec(target_train_acc=1.1, history_every=1), toy_dataset, CPU, log=quiet)
    _, thin, thin_summary = train_cell(toy_spec(target_train_acc=1.1, history_every=7), toy_dataset, CPU, log=quiet)
    # every step recorded: the maximum and its step, read off the full history
    best = every["bc_loss_ratio"].idxmax()
    assert every_summary["max_bc_loss_ratio"] == pytest.approx(every["bc_loss_ratio"][best], abs=1e-6)
    assert every_summary["max_bc_loss_ratio_step"] == every["step"][best]
    # every 7th step recorded: the maximum still comes from every step (batched pass), not from the rows
    assert thin_summary["max_bc_loss_ratio"] == pytest.approx(every_summary["max_bc_loss_ratio"], abs=1e-6)
    assert thin_summary["max_bc_loss_ratio_step"] == every_summary["max_bc_loss_ratio_step"]
    assert len(thin) < len(every)


def test_divergence_is_found_at_its_step_between_history_rows(toy_dataset):
    _, _, every = train_cell(toy_spec(lr=1e12, max_steps=50, history_every=1), toy_dataset, CPU, log=quiet)
    _, thin, sparse = train_cell(toy_spec(lr=1e12, max_steps=50, history_every=9), toy_dataset, CPU, log=quiet)
    assert sparse["diverged"] and sparse["diverged_reason"] == "nonfinite"
    assert sparse["diverged_step"] == every["diverged_step"]
    assert set(thin["step"]) <= set(range(9, 51, 9)) | set(range(10, 51, 10))


def test_a_short_last_batch_gets_its_own_row_in_the_batched_pass():
    from conftest import make_dataset

    dataset = make_dataset(n_train=70)  # batches of 16: 4 full, then 6
    _, every, summary = train_cell(toy_spec(target_train_acc=1.1, history_every=1), dataset, CPU, log=quiet)
    _, _, thin = train_cell(toy_spec(target_train_acc=1.1, history_every=40), dataset, CPU, log=quiet)
    assert thin["max_bc_loss_ratio"] == pytest.approx(summary["max_bc_loss_ratio"], abs=1e-6)
    assert thin["max_bc_loss_ratio_step"] == summary["max_bc_loss_ratio_step"]


# --- grid_cost: shapes, steps and seconds by hand --------------------------------------------


@pytest.mark.parametrize(
    "kind,params",
    [
        ("parity", {"n_train": 40, "n_test": 30}),
        ("moon_star", {"image_size": 16, "n_train": 20, "n_test": 10}),
        ("colored_digits", {}),
        ("double_digits", {}),
    ],
)
def test_dataset_shapes_match_the_built_datasets(kind, params):
    from largelr.datasets import build_dataset

    built = build_dataset(kind, params, ROOT / "no-data-root", seed=0)
    shape = grid_cost.dataset_shape(kind, params)
    assert list(shape.input_shape) == built["input_shape"] and shape.classes == built["num_classes"]
    assert (shape.n_train, shape.n_test) == (len(built["train"]["y"]), len(built["test"]["y"]))


def test_expected_steps_take_the_measured_cell_then_its_pair_then_the_cap():
    from largelr.config import Cell

    measured = pd.DataFrame(
        {
            "dataset": ["d", "d", "d"],
            "model": ["fcn"] * 3,
            "value": [0.1, 0.1, 0.2],
            "seed": [0, 1, 0],
            "steps": [300, 500, 900],
        }
    )
    spec = {"train": {"max_steps": 3000}}
    assert grid_cost.expected_steps(Cell("s", "d", "fcn", "lr", "0.1", 1), spec, measured) == (500, "measured")
    assert grid_cost.expected_steps(Cell("s", "d", "fcn", "lr", "0.4", 0), spec, measured) == (500, "pair median")
    assert grid_cost.expected_steps(Cell("s", "e", "fcn", "lr", "0.1", 0), spec, measured) == (3000, "cap")
    assert grid_cost.expected_steps(Cell("s", "d", "fcn", "lr", "0.1", 0), spec, None) == (3000, "cap")


def test_cell_seconds_by_hand():
    from largelr.config import TrainSettings

    train = dict(TrainSettings({"batch_size": 50, "eval_every": 100, "attribution_every": 200, "eval_test": True}))
    shape = grid_cost.Shape((20,), 2, n_train=1000, n_val=0, n_test=400)
    timing = grid_cost.Timing(seconds=0.01, forward_s_per_sample=1e-5, batch=25, steps=10)  # timed at half the batch
    # 250 steps: 0.02 s each (scaled to batch 50); 3 evaluations (100, 200, 250) of train + test = 1400 samples;
    # 1 attribution probe: 64 inputs x 20 IG steps at 0.02 / 50 s per sample; the closing test pass: 400 samples
    expected = 250 * 0.02 + 3 * 1400 * 1e-5 + 64 * 20 * 0.02 / 50 + 400 * 1e-5
    assert grid_cost.cell_seconds({"train": train}, shape, 250, timing) == pytest.approx(expected)
    assert timing.step_s(25) == 0.01 and "extrapolated x2" in timing.note(50)


def test_throughput_ratio_is_the_median_of_per_round_ratios():
    rates = {"engine": [90.0, 100.0, 50.0], "bare": [100.0, 100.0, 100.0]}
    assert train_throughput.ratio(rates, "engine", "bare") == "0.900"
    assert train_throughput.ratio(rates, "engine", "dataloader") == "n/a"


# --- the scripts end to end at CI size ------------------------------------------------------


def run_script(*command: str, timeout: int) -> subprocess.CompletedProcess:
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": sys.executable,
    }
    return subprocess.run(list(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_grid_cost_prints_the_smoke_study(tmp_path):
    run = run_script(
        sys.executable,
        "benchmarks/grid_cost.py",
        "--device",
        "cpu",
        "--studies",
        "smoke",
        "--results",
        str(tmp_path),
        "--seconds",
        "0.5",
        "--steps",
        "20",
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in run.stdout.splitlines()
        if line.startswith("| ") and "---" not in line
    }
    cells, cap, expected, source, hours, _ = rows["smoke"]
    assert (cells, cap, expected, source) == ("16", "960", "960", "cap")  # 16 cells x 60 steps, none run
    assert 0 < float(hours) < 1 and rows["**total (smoke)**"][4] == hours
    assert run.stderr.count(" ms/step") == 4  # fcn and cnn on two input shapes each


@pytest.mark.slow
def test_gpu_check_runs_at_ci_size_on_the_cpu(tmp_path):
    run = run_script("bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--out", str(tmp_path), timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "smoke study" in table and ": ok, wall s" in table
    checks = [line for line in table.splitlines() if line.startswith("| throughput fcn@20, ")]
    assert (
        len(checks) == 6
    )  # amp off and bf16, each against the bare loop (torch.optim.SGD, PlainSGD) and the DataLoader loop
    assert all(math.isfinite(float(line.split("|")[-2])) for line in checks)
    assert "| grid cost, total (smoke): device-hours |" in table
    assert "| 2 cells: wall s at once" in table and "| 2 cells: training steps/s per cell" in table
