"""GPU slots on CPU with fake device lists: concurrent holders never share a slot; a killed holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from largelr import gpu_slots

HOLD = """
import sys, time
from pathlib import Path
from largelr.gpu_slots import acquire_slot
device, fd = acquire_slot(sys.argv[1].split(","), int(sys.argv[2]), Path(sys.argv[3]))
print(device, flush=True)
time.sleep(float(sys.argv[4]))
"""


def holder(devices: str, per_device: int, lock_dir, hold_s: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, devices, str(per_device), str(lock_dir), str(hold_s)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_concurrent_processes_get_distinct_devices(tmp_path):
    holders = [holder("0,1,2", 1, tmp_path, 30) for _ in range(3)]
    try:
        devices = sorted(h.stdout.readline().strip() for h in holders)
        assert devices == ["0", "1", "2"]
        # A fourth waits: every slot is held.
        with pytest.raises(TimeoutError):
            gpu_slots.acquire_slot(["0", "1", "2"], 1, tmp_path, timeout_s=0.5)
    finally:
        for h in holders:
            h.kill()
            h.wait()


def test_killed_process_frees_its_slot(tmp_path):
    first = holder("7", 1, tmp_path, 60)
    assert first.stdout.readline().strip() == "7"
    with pytest.raises(TimeoutError):
        gpu_slots.acquire_slot(["7"], 1, tmp_path, timeout_s=0.3)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    device, fd = gpu_slots.acquire_slot(["7"], 1, tmp_path, timeout_s=5)
    assert device == "7"
    os.close(fd)


def test_several_slots_per_device_fill_devices_in_turn(tmp_path):
    held = [gpu_slots.acquire_slot(["a", "b"], 2, tmp_path, timeout_s=1) for _ in range(4)]
    assert [device for device, _ in held] == ["a", "b", "a", "b"]
    with pytest.raises(TimeoutError):
        gpu_slots.acquire_slot(["a", "b"], 2, tmp_path, timeout_s=0.3)
    os.close(held[1][1])  # b's first slot freed: the next job gets b
    assert gpu_slots.acquire_slot(["a", "b"], 2, tmp_path, timeout_s=1)[0] == "b"


def test_visible_devices_from_the_environment():
    assert gpu_slots.visible_devices({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
    assert gpu_slots.visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    with pytest.raises(ValueError, match="no GPU is visible"):
        gpu_slots.acquire_slot([], 1)


def test_cli_pins_the_command_and_holds_the_slot_while_it_runs(tmp_path):
    """Two concurrent `largelr gpu-slot` jobs on fake devices 3 and 4 see different CUDA_VISIBLE_DEVICES."""
    show = "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep(20)"
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "3,4"}
    jobs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "largelr.cli",
                "gpu-slot",
                "--lock-dir",
                str(tmp_path),
                "--",
                sys.executable,
                "-c",
                show,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        seen = sorted(job.stdout.readline().strip() for job in jobs)
        assert seen == ["3", "4"]
        with pytest.raises(TimeoutError):  # both held by the running commands
            gpu_slots.acquire_slot(["3", "4"], 1, tmp_path, timeout_s=0.3)
    finally:
        for job in jobs:
            job.kill()
            job.wait()
    time.sleep(0.1)
    assert gpu_slots.acquire_slot(["3", "4"], 1, tmp_path, timeout_s=2)[0] == "3"


def test_rules_pin_gpu_jobs_to_slots_and_ask_one_gpu_each(tmp_path):
    from test_workflow import copy_workflow, snakemake

    work = copy_workflow(tmp_path / "work")
    run = snakemake(work, "smoke", "-n", "-p", "--config", "device=cuda", "gpu_slots_per_device=2")
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    assert text.count("largelr gpu-slot --per-gpu 2 -- largelr train") == 16  # every cell of smoke
    assert text.count("largelr gpu-slot --per-gpu 2 -- largelr analyze") == 16
    assert "gpu=1" in text
    run = snakemake(work, "smoke", "-n", "-p", "--config", "device=cpu")
    assert "gpu-slot" not in run.stdout + run.stderr
