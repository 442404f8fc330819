"""Dataset files: compact on disk, float32 in memory.

Inputs are stored in the smallest dtype that keeps them as the construction made them, and
:func:`load_dataset` returns float32 again. Per split, ``x`` holds the stored tensor and
``x_divisor`` (a float) the scale: in memory ``x = stored.float() / x_divisor``.

* uint8, divisor 255: pixels on the 1/255 grid (MNIST, CIFAR and their stackings, moon-star,
  the 8-bit corrupted CIFAR-10), decoded bit for bit as the construction computed them (it also
  divides by 255);
* int8, divisor 1: small integers (parity's +-1 bits), exact;
* float16, divisor 1: other pixels in [0, 1] (colour noise, brightness factors, bilinear
  upsampling), absolute error <= 2**-12, 1/16 of a gray level;
* float32: anything else, as is.

A dataset file is sealed like a cell: ``<file>.seal`` beside it holds its size and SHA-256.
:func:`load_dataset` checks the seal before reading; a damaged file is named with the command
that rebuilds it, and its seal is marked damaged so that the workflow's next run rebuilds it
(:func:`dataset_damage` at parse time) without retraining the cells that read it.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from largelr.datasets.kind import group_ids, is_identity, standardized
from largelr.io import atomic_torch_save, file_digest, write_json
from largelr.seals import built_as, dataset_damage, read_seal, repair_dataset, seal_path  # noqa: F401

GRAY_LEVELS = 255.0
GRID_CHUNK = 1024  # samples per step of the grid check


def encode_inputs(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(stored tensor, divisor) for float inputs; see the table above."""
    if x.dtype != torch.float32 or x.numel() == 0:
        return x, 1.0
    low, high = x.min().item(), x.max().item()
    if 0.0 <= low and high <= 1.0:
        levels = gray_levels(x)
        return (levels, GRAY_LEVELS) if levels is not None else (x.to(torch.float16), 1.0)
    if -128.0 <= low and high <= 127.0:
        integers = x.to(torch.int8)
        if torch.equal(integers.float(), x):
            return integers, 1.0
    return x, 1.0


def gray_levels(x: torch.Tensor) -> torch.Tensor | None:
    """round(x * 255) as uint8 if dividing it by 255 gives x back bit for bit, else None.

    Works in chunks of samples: no full-size float temporaries, and off-grid data (most of it)
    stops at the first chunk.
    """
    levels = torch.empty(x.shape, dtype=torch.uint8)
    for start in range(0, len(x), GRID_CHUNK):
        chunk = x[start : start + GRID_CHUNK]
        rounded = torch.round(chunk * GRAY_LEVELS)
        if not torch.equal(rounded / GRAY_LEVELS, chunk):
            return None
        levels[start : start + GRID_CHUNK] = rounded.to(torch.uint8)
    return levels


def decode_inputs(stored: torch.Tensor, divisor: float) -> torch.Tensor:
    decoded = stored.float()  # a no-op for float32
    return decoded if divisor == 1.0 else decoded.div_(divisor)  # in place: one full-size tensor, not two


SPLIT_NAMES = ("train", "val", "test")


def save_dataset(dataset: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temporary file, then rename), inputs in their compact dtype, with group ids."""
    stored = dict(dataset)
    for split in SPLIT_NAMES:
        if split not in dataset:
            continue
        part = dict(dataset[split])
        if "g" not in part:
            part["g"] = group_ids(part["y"], part["b"], dataset["num_bias"])
        if "x" in part:
            part["x"], part["x_divisor"] = encode_inputs(part["x"])
        stored[split] = part
    atomic_torch_save(stored, path)
    # The seal also keeps the construction parameters: the workflow compares them with the config to
    # tell a rebuild of the same dataset (no cell retrains) from a changed one, even while it is damaged.
    write_json({**file_digest(path), "params": dataset.get("params")}, seal_path(path))


class DamagedDatasetError(FileNotFoundError):
    """A dataset file is missing or damaged; the message names it and the command that rebuilds it."""


def damaged(path: Path, reason: str) -> DamagedDatasetError:
    """Mark the seal damaged, if the file has one (the workflow's next run rebuilds the file), and say what
    to do."""
    try:
        if seal_path(path).exists():
            write_json({"damaged": reason, "params": (read_seal(path) or {}).get("params")}, seal_path(path))
    except OSError:
        pass  # a read-only results/: the message still says what to do
    return DamagedDatasetError(
        f"{path}: damaged dataset file ({reason}). Rerun the same snakemake command: its data job rebuilds "
        "the file, and no finished cell retrains"
    )


def load_dataset(path: str | Path) -> dict[str, Any]:
    """The dataset dict with float32 inputs, as built (see the storage table above), once its seal
    holds (DamagedDatasetError naming the file otherwise), then standardised with the dataset's
    ``normalization`` (its ``standardize`` parameter; files hold the raw inputs).
    ``standardized_on_load`` says whether that changed anything."""
    path = Path(path)
    if not path.exists():
        raise DamagedDatasetError(
            f"{path}: no such dataset file; build it with the workflow "
            "(snakemake --cores all <study>) or `largelr data`"
        )
    if reason := dataset_damage(path):
        raise damaged(path, reason)
    try:
        dataset = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, EOFError, OSError, zipfile.BadZipFile, KeyError, pickle.UnpicklingError) as error:
        raise damaged(path, f"unreadable: {type(error).__name__}: {str(error).splitlines()[0][:120]}") from None
    if not isinstance(dataset, dict):
        raise damaged(path, f"holds a {type(dataset).__name__}, not a dataset")
    normalization = dataset.get("normalization")
    dataset["standardized_on_load"] = normalization is not None and not is_identity(normalization)
    for split in SPLIT_NAMES:
        part = dataset.get(split)
        if part is not None and "x" in part:
            part["x"] = decode_inputs(part["x"], part.pop("x_divisor", 1.0))
            if dataset["standardized_on_load"]:
                part["x"] = standardized(part["x"], normalization)
    return dataset
