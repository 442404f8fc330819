"""Every GPU of a workstation: each GPU job holds one device slot for its lifetime.

Snakemake counts ``gpu`` resources but assigns no device, so without help every concurrent job
would use GPU 0. ``largelr gpu-slot -- COMMAND...`` takes a free slot, sets
``CUDA_VISIBLE_DEVICES`` to that slot's device and replaces itself with COMMAND (``exec``), so the
slot is held exactly as long as the job runs. A slot is an exclusive ``fcntl`` lock on a file
``<lock_dir>/gpu<device>-slot<k>.lock``: the kernel releases it when the process ends, however it
ends (a killed job frees its slot; nothing to clean up).

``per_device`` slots per device let several small cells share a GPU (a workstation profile then
sets ``--resources gpu=<devices x per_device>``). The devices are those visible to the job:
``CUDA_VISIBLE_DEVICES`` when set (Slurm sets it to the job's allocation), else every GPU
``nvidia-smi -L`` lists.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
from pathlib import Path

POLL_S = 0.2  # wait between tries when every slot is held (Snakemake's gpu count makes this rare)


def visible_devices(environ: dict[str, str] | None = None) -> list[str]:
    """Device ids this process may use: CUDA_VISIBLE_DEVICES, else nvidia-smi's list, else none."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device.strip() for device in listed.split(",") if device.strip() and device.strip() != "-1"]
    try:
        lines = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(index) for index, line in enumerate(line for line in lines if line.startswith("GPU "))]


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"largelr-gpu-slots-{os.getuid()}"


def try_slot(path: Path) -> int | None:
    """An open descriptor holding the exclusive lock on path, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def acquire_slot(
    devices: list[str], per_device: int = 1, lock_dir: Path | None = None, timeout_s: float | None = None
) -> tuple[str, int]:
    """(device, descriptor holding its slot): the first free slot, filling each device's first
    slot before any device's second; waits while all are held (ValueError without devices,
    TimeoutError after timeout_s)."""
    if not devices:
        raise ValueError("no GPU is visible (CUDA_VISIBLE_DEVICES empty and nvidia-smi lists none)")
    if per_device < 1:
        raise ValueError(f"per_device={per_device}: allowed an integer >= 1")
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    slots = [(device, k) for k in range(per_device) for device in devices]
    started = time.monotonic()
    while True:
        for device, k in slots:
            fd = try_slot(lock_dir / f"gpu{device}-slot{k}.lock")
            if fd is not None:
                return device, fd
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"every one of {len(slots)} GPU slots stayed held for {timeout_s} s")
        time.sleep(POLL_S)


def exec_on_slot(command: list[str], per_device: int = 1, lock_dir: Path | None = None) -> None:
    """Run command (replacing this process) pinned to a free GPU slot, which it holds until it exits."""
    if not command:
        raise ValueError("no command given: largelr gpu-slot [--per-gpu K] -- COMMAND ...")
    device, fd = acquire_slot(visible_devices(), per_device, lock_dir)
    os.set_inheritable(fd, True)  # the lock travels through exec and lives as long as the command
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    os.environ["LARGELR_GPU_SLOT_FD"] = str(fd)
    os.execvp(command[0], command)
