"""A dataset file's seal (``<file>.seal``: its size, SHA-256 and parameters as written) and the
parse-time checks that read it, without torch (Snakemake's parse uses them); the dataset files
themselves are written and read by :mod:`largelr.datasets.storage`, which re-exports these."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from largelr.atomic import file_digest, write_json


def seal_path(path: str | Path) -> Path:
    """The seal beside a dataset file: its size and SHA-256 as written."""
    return Path(f"{path}.seal")


def read_seal(path: str | Path) -> dict[str, Any] | None:
    try:
        seal = json.loads(seal_path(path).read_text())
    except (OSError, ValueError):
        return None
    return seal if isinstance(seal, dict) else None


def dataset_damage(path: str | Path, full: bool = True) -> str | None:
    """Why the dataset file cannot be read, or None: missing, marked damaged by a loader, another size
    than its seal, (``full``) another SHA-256; without a seal, an unreadable zip directory."""
    path = Path(path)
    if not path.exists():
        return "missing"
    seal = read_seal(path)
    if seal is not None and "damaged" in seal:
        return seal["damaged"]
    if seal is not None and (size := path.stat().st_size) != seal.get("bytes"):
        return f"{size} bytes, sealed with {seal.get('bytes')}"
    try:
        with zipfile.ZipFile(path) as archive:  # the zip directory: cheap, and garbage has none
            bad = archive.testzip() if full and seal is None else None
    except (OSError, zipfile.BadZipFile) as error:
        return f"not a torch file ({error})"
    if bad:
        return f"its member {bad} fails its checksum"
    if full and seal is not None and file_digest(path)["sha256"] != seal.get("sha256"):
        return "its SHA-256 differs from its seal's"
    return None


def repair_dataset(path: str | Path, card_json: str | Path) -> str | None:
    """When the workflow is parsed: have the data job rebuild a damaged or deleted dataset file while the
    cells that read it stay finished (their input is ``ancient`` and must exist). A damaged file stays in
    place until the job replaces it, a deleted one gets an empty placeholder; the card (an output of the
    same job) is removed, so the job reruns. A notice, or None when the file is intact or never built."""
    path, card = Path(path), Path(card_json)
    if not card.exists() or (reason := dataset_damage(path, full=False)) is None:
        return None
    if reason == "missing":
        path.touch()
    write_json({"damaged": reason, "params": (read_seal(path) or {}).get("params")}, seal_path(path))
    card.unlink()
    return f"{path}: {reason}; its data job rebuilds it in this run, and no finished cell retrains"


def built_as(path: str | Path, card_json: str | Path, params: dict[str, Any], seed: int) -> bool:
    """Whether the dataset file ``path`` was built from ``params`` (a kind's merged parameters) and
    ``seed``: its seal records both (damaged or not), else its card (files written before seals)."""
    recorded = (read_seal(path) or {}).get("params")
    if recorded is None:
        try:
            recorded = json.loads(Path(card_json).read_text()).get("params")
        except (OSError, ValueError, AttributeError):
            return False
    if not isinstance(recorded, dict):
        return False
    return recorded.get("seed") == seed and all(recorded.get(key) == value for key, value in params.items())
