"""Atomic file writes and file digests, without torch (Snakemake's parse uses them).

A killed writer leaves no file that looks finished: every output is written to a temporary name
beside it and renamed onto it on success. :mod:`largelr.io` re-exports these.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only.

    The temporary file has the final file's name, inside a fresh hidden folder beside it:
    writers that record their file's name (torch.save names the zip's root folder after it)
    then write the same bytes on every run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
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


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary folders an interrupted write of ``path`` left (a killed job): only one job
    writes a given output at a time, so any such folder is stale when the next write starts."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def file_digest(path: str | Path) -> dict[str, Any]:
    """Size in bytes and SHA-256 of a file."""
    with open(path, "rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"bytes": os.path.getsize(path), "sha256": sha256}
