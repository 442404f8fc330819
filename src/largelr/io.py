"""Atomic file writes, provenance and device choice shared by every step.

A job killed mid-write must never leave a file that looks finished, so every output
is written to a temporary name in the same directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import largelr

_UMASK = os.umask(0)
os.umask(_UMASK)
CELL_KEYS = ["study", "dataset", "model", "knob", "value", "seed"]
PROVENANCE_KEYS = ("largelr_version", "git_revision", "torch_version", "device")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only.

    The temporary file has the final file's name, inside a fresh hidden folder beside it:
    writers that record their file's name (torch.save names the zip's root folder after it)
    then write the same bytes on every run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp = folder / path.name
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # give outputs the usual mode
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


@functools.cache
def git_revision() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: torch.device | str) -> dict[str, str]:
    values = (largelr.__version__, git_revision(), torch.__version__, str(device))
    return dict(zip(PROVENANCE_KEYS, values))


def with_cell_keys(frame: pd.DataFrame, cell: dict[str, Any], device: torch.device | str) -> pd.DataFrame:
    """Prepend the cell's keys and append provenance columns, with stable dtypes."""
    frame = frame.copy()
    keys = {k: cell[k] for k in CELL_KEYS}
    for position, (key, value) in enumerate(keys.items()):
        frame.insert(position, key, value)
    frame = frame.astype({"value": "float64", "seed": "int64"})
    for key, value in provenance(device).items():
        frame[key] = value
    return frame


def resolve_device(choice: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cpu``/``cuda``/``cuda:N`` are taken as given."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {choice}: CUDA is not available here; use --device cpu or auto")
    return device
