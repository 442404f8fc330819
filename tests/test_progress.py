"""Progress of a training run (largelr.progress) and the status of a study (largelr status)."""

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import toy_spec

from largelr.cli import build_parser
from largelr.config import read_config_file
from largelr.progress import clock, eta_seconds, last_progress, parse_clock
from largelr.status import status_report, study_status
from largelr.train import train_cell

ROOT = Path(__file__).resolve().parents[1]


def test_eta_is_the_remaining_steps_at_the_pace_so_far():
    # 250 of 1000 steps in 50 s: 0.2 s a step, 750 steps left -> 150 s
    assert eta_seconds(250, 1000, 0, 50.0) == pytest.approx(150.0)
    # resumed at step 600, now at 700 after 20 s: 0.2 s a step over the 100 steps run, 300 left -> 60 s
    assert eta_seconds(700, 1000, 600, 20.0) == pytest.approx(60.0)
    assert eta_seconds(1000, 1000, 0, 80.0) == 0.0
    assert math.isnan(eta_seconds(600, 1000, 600, 5.0))  # no step run yet in this process: no pace


def test_clock_text_and_its_inverse():
    assert clock(0) == "0:00:00" and clock(59.6) == "0:01:00" and clock(3725) == "1:02:05"
    assert clock(90000) == "25:00:00" and clock(math.nan) == "?"
    assert parse_clock("1:02:05") == 3725 and math.isnan(parse_clock("?"))


def test_every_evaluation_line_carries_step_cap_elapsed_and_eta(toy_dataset):
    lines = []
    train_cell(
        toy_spec(target_train_acc=1.1, max_steps=40, eval_every=10), toy_dataset, torch.device("cpu"), log=lines.append
    )
    steps = [line for line in lines if line.startswith("step")]
    assert len(steps) == 4
    for number, line in zip((10, 20, 30, 40), steps):
        assert line.startswith(f"step {number:>6}/40 ({number * 100 // 40}%)")
        progress = last_progress(line)
        assert progress["step"] == number and progress["cap"] == 40
        assert progress["elapsed_s"] >= 0 and progress["eta_s"] >= 0
    assert last_progress(steps[-1])["eta_s"] == 0


# --- largelr status on a fabricated results tree of the smoke study ---------------------------
# smoke: 4 pairs x lr {0.05, 0.5} x seeds {0, 1} = 16 cells, step cap 60.


def fabricate(root: Path, now: float) -> None:
    def cell(dataset, model, lr, seed):
        return f"smoke/{dataset}/{model}/lr={lr}/seed={seed}"

    def done(path, wall_s, steps, diverged=False):
        folder = root / "results" / path
        folder.mkdir(parents=True)
        summary = {
            "wall_s": wall_s,
            "steps": steps,
            "diverged": diverged,
            "stopped_by": "diverged" if diverged else "max_steps",
        }
        (folder / "train.json").write_text(json.dumps({"summary": summary}))

    def log(path, text, age_s=0.0):
        file = root / "results/logs/train" / f"{path}.log"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        os.utime(file, (now - age_s, now - age_s))

    # tiny_parity x fcn: 3 done, at 0.1, 0.2 and 0.3 s a step over 60, 40 and 50 steps; 1 missing
    done(cell("tiny_parity", "fcn", 0.05, 0), 6.0, 60)
    done(cell("tiny_parity", "fcn", 0.05, 1), 8.0, 40)
    done(cell("tiny_parity", "fcn", 0.5, 0), 15.0, 50, diverged=True)
    # tiny_colored_digits x fcn: 1 done (0.5 s a step, 60 steps), 1 running (eta 0:00:12), 1 failed, 1 stale
    done(cell("tiny_colored_digits", "fcn", 0.05, 0), 30.0, 60)
    log(
        cell("tiny_colored_digits", "fcn", 0.05, 1),
        "training ...\nstep     20/60 (33%)  loss 0.5  train acc 0.6  2.0 steps/s  200 img/s  elapsed 0:00:06  "
        "eta 0:00:12\n",
        age_s=5,
    )
    log(
        cell("tiny_colored_digits", "fcn", 0.5, 0),
        "training ...\nTraceback (most recent call last):\nRuntimeError: out of memory\n",
        age_s=10,
    )
    log(cell("tiny_colored_digits", "fcn", 0.5, 1), "training ...\n", age_s=7200)
    # tiny_moon_star x cnn and tiny_double_digits x cnn: nothing yet (8 missing)


def test_status_counts_and_time_left_on_a_fabricated_smoke_tree(tmp_path):
    now = time.time()
    fabricate(tmp_path, now)
    config = read_config_file(ROOT / "config.yaml")
    states = {s.cell.path: s.state for s in study_status(config, "smoke", tmp_path, now=now)}
    assert len(states) == 16
    counts = {state: list(states.values()).count(state) for state in ("done", "running", "failed", "missing")}
    assert counts == {"done": 4, "running": 1, "failed": 2, "missing": 9}
    report = status_report(config, "smoke", tmp_path, now=now, jobs=2)
    assert report.splitlines()[0] == (
        "Study smoke: 16 cells: 4 done, 1 running, 2 failed, 9 missing (1 of the done diverged)"
    )
    # left: parity 1 cell x median 50 steps x median 0.2 s = 10 s; colored digits: running 12 s (its ETA),
    # failed and stale 2 x 60 steps x 0.5 s = 60 s; 72 + 10 = 82 s = 0:01:22; the 8 cnn cells have no pace
    assert (
        "training left: about 0:01:22 one cell at a time, about 0:00:41 at 2 jobs at once (4 of 12 cells "
        "estimated from their pair's done cells or their log's ETA; 8 not estimated"
    ) in report
    assert "| tiny_colored_digits | fcn | 1 | 1 | 2 | 0 |" in report
    assert "| tiny_moon_star | cnn | 0 | 0 | 0 | 4 |" in report
    assert "RuntimeError: out of memory" in report and "log silent for 2:00:00" in report
    assert "smoke/tiny_colored_digits/fcn/lr=0.05/seed=1  step 20/60, eta 0:00:12" in report


def test_status_command_runs_in_a_workflow_folder(tmp_path, capsys):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    fabricate(tmp_path, time.time())
    args = build_parser().parse_args(
        ["status", "smoke", "--config", str(tmp_path / "config.yaml"), "--root", str(tmp_path)]
    )
    args.func(args)
    assert "4 done, 1 running, 2 failed, 9 missing" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no study 'nope'"):
        args = build_parser().parse_args(["status", "nope", "--config", str(tmp_path / "config.yaml")])
        args.func(args)


def test_every_flag_has_help_and_the_user_commands_come_first(capsys):
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "step").choices
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, f"largelr {name} {action.option_strings or action.dest} has no help text"
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    assert text.index("commands for you:") < text.index("  status ") < text.index("steps the workflow's rules run")
    assert text.index("steps the workflow's rules run") < text.index("  train ")


def test_make_test_says_what_it_will_do_to_the_machine_first():
    import shutil as which
    import subprocess

    if which.which("make") is None:
        pytest.skip("no make")
    notice = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "test-notice"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        env=os.environ | {"CI": "1"},
    )
    assert notice.returncode == 0, notice.stderr
    text = notice.stdout
    assert text.startswith("make test will:") and "virtual environment" in text and "full test suite" in text
    assert ("start a single-node Slurm" in text) == (os.geteuid() == 0 and which.which("apt-get") is not None)
    assert "Starting in 10 s" not in text  # under CI it does not wait
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "test"], capture_output=True, text=True, timeout=60)
    assert dry.stdout.index("make test will:") < dry.stdout.index("pytest")  # the notice comes first
