"""Atomic file writes, sealed cell records, provenance and device choice shared by every step.

A job killed mid-write must never leave a file that looks finished, so every output
is written to a temporary name in the same directory and renamed into place.

A cell's record (``train.json``, written last) is its seal: it lists the size and SHA-256 of
the cell files written before it (``SEALED_FILES``). The steps that read a cell check the seal
first (:func:`check_cell`); a damaged or missing file is removed together with the record,
so that the next run of the workflow rebuilds exactly that cell, and the error names the file
and the command that rebuilds it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import largelr
from largelr.atomic import _UMASK, atomic_path, file_digest, remove_stale_temporaries, write_json  # noqa: F401
from largelr.layout import CELL_KEYS, PROVENANCE_KEYS, SEALED_FILES, TRAIN_FILES  # noqa: F401  (re-exported)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


# --- sealed cells ---------------------------------------------------------------------------


class DamagedCellError(FileNotFoundError):
    """A cell's file is missing or damaged; the message names it, what was removed so that the next
    run rebuilds the cell, and the command that does it."""


def seal(cell_dir: str | Path) -> dict[str, dict[str, Any]]:
    """File name -> size and SHA-256 of each sealed file (SEALED_FILES) present in ``cell_dir``."""
    paths = [Path(cell_dir) / TRAIN_FILES[name] for name in SEALED_FILES]
    return {path.name: file_digest(path) for path in paths if path.exists()}


def write_cell_record(record: dict[str, Any], cell_dir: str | Path) -> None:
    """Write the cell's record (train.json) with its seal: ``files``, the size and SHA-256 of the
    sealed files already written beside it, read back from disk."""
    write_json({**record, "files": seal(cell_dir)}, Path(cell_dir) / TRAIN_FILES["summary"])


def structure_damage(path: Path) -> str | None:
    """What is wrong with a file that has no seal, told by its structure: a Parquet file's footer,
    a torch file's zip directory and member checksums, a JSON document; None if it reads."""
    import pyarrow
    import pyarrow.parquet

    try:
        if path.suffix == ".parquet":
            pyarrow.parquet.ParquetFile(path).close()
        elif path.suffix == ".pt":
            with zipfile.ZipFile(path) as archive:
                if (bad := archive.testzip()) is not None:
                    return f"its member {bad} fails its checksum"
        elif path.suffix == ".json":
            json.loads(path.read_text())
    except (OSError, ValueError, zipfile.BadZipFile, pyarrow.ArrowException) as error:
        return f"unreadable ({type(error).__name__}: {error})"
    return None


def file_damage(path: Path, sealed: dict[str, Any] | None, level: str) -> str | None:
    """Why the cell file ``path`` cannot be used, or None.

    With a seal: its size, then (``level`` "full") its SHA-256; without one (cells written before
    seals existed, analysis tables): its structure, for level "full" or "structure" ("size" then
    checks only that it exists).
    """
    if not path.exists():
        return "missing"
    if sealed is None:
        return None if level == "size" else structure_damage(path)
    if (size := path.stat().st_size) != sealed["bytes"]:
        return f"{size} bytes, sealed in {TRAIN_FILES['summary']} with {sealed['bytes']}"
    if level == "full" and file_digest(path)["sha256"] != sealed["sha256"]:
        return f"its SHA-256 differs from the one sealed in {TRAIN_FILES['summary']}"
    return None


def check_cell(
    cell_dir: str | Path, full: Sequence[str] = (), sized: Sequence[str] = (), tables: Sequence[str] = ()
) -> dict[str, Any]:
    """The cell's record (train.json) once the files a step reads are intact.

    ``full``/``sized``: keys of TRAIN_FILES checked against the seal by size and SHA-256 / by size;
    ``tables``: other files of the cell (analysis tables), checked by structure. When something is
    damaged, DamagedCellError: a damaged record or sealed file is removed with the record (the
    next run retrains the cell), a damaged table alone (the next run rewrites it).
    """
    cell_dir = Path(cell_dir)
    record_path = cell_dir / TRAIN_FILES["summary"]
    record, damage = None, {}
    if (reason := structure_damage(record_path) if record_path.exists() else "missing") is None:
        record = json.loads(record_path.read_text())
    else:
        damage[record_path.name] = reason
    seals = (record or {}).get("files") or {}
    checks = [(TRAIN_FILES[name], "full") for name in full] + [(TRAIN_FILES[name], "size") for name in sized]
    for filename, level in checks + [(name, "structure") for name in tables]:
        if record is not None and (reason := file_damage(cell_dir / filename, seals.get(filename), level)):
            damage[filename] = reason
    if damage:
        raise DamagedCellError(heal(cell_dir, record, damage))
    return record


def heal(cell_dir: Path, record: dict[str, Any] | None, damage: dict[str, str]) -> str:
    """Remove the damaged files (with the record when a training output is among them) and say so."""
    trained = set(TRAIN_FILES.values())
    doomed = sorted(set(damage) | ({TRAIN_FILES["summary"]} if trained & set(damage) else set()))
    for filename in doomed:
        with contextlib.suppress(FileNotFoundError):
            os.remove(cell_dir / filename)
    study = record["cell"]["study"] if record else (cell_dir.parents[3].name if len(cell_dir.parents) > 3 else "")
    rebuilt = "retrains this cell" if TRAIN_FILES["summary"] in doomed else "rewrites these files"
    lines = [f"{cell_dir}: damaged cell"] + [f"  - {name}: {reason}" for name, reason in damage.items()]
    lines.append(f"  removed {', '.join(doomed)}; the next run {rebuilt}: snakemake --cores all {study or '<study>'}")
    return "\n".join(lines)


@functools.cache
def git_revision() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
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
