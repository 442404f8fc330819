"""Datasets with a core feature (label ``y``) and a spurious feature (bias label ``b``).

The kinds of dataset are records in :mod:`largelr.registry.kinds` (torch-free, read when the workflow
is parsed), re-exported here as ``KINDS``; each names its builder here by import path:
:mod:`.synthetic` (parity, moon-star), :mod:`.constructions` (Colored / Double MNIST, MNIST-CIFAR,
Corrupted CIFAR-10, plain CIFAR), :mod:`.natural` (CelebA, Waterbirds, ImageNet), :mod:`.folder`
(your own images with a CSV). A record holds the parameters with their defaults and allowed values,
the builder, the files it needs and the traits (worst-group reporting, oracle background) that
:func:`build_dataset` writes into the dataset file. Adding a kind: a record in
:mod:`largelr.registry.kinds` and its builder (docs/extending.md), then a `datasets:` entry in config.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from largelr.checks import SettingError
from largelr.datasets.bases import DataMissingError
from largelr.datasets.storage import SPLIT_NAMES, DamagedDatasetError, load_dataset, save_dataset
from largelr.registry.kinds import (  # noqa: F401  (re-exported)
    KINDS,
    STANDARDIZATIONS,
    Kind,
    get_kind,
    missing_data,
)

__all__ = [
    "KINDS",
    "SPLIT_NAMES",
    "DamagedDatasetError",
    "DataMissingError",
    "Kind",
    "build_dataset",
    "get_kind",
    "load_dataset",
    "missing_data",
    "save_dataset",
    "traits",
]


def build_dataset(
    kind: str, params: dict[str, Any], data_root: str | Path, seed: int, name: str | None = None
) -> dict[str, Any]:
    """Build a dataset of ``kind`` from its defaults overridden by ``params``, deterministically in
    ``seed``; the result carries its config ``name`` (default: the kind), ``kind`` and ``traits``."""
    record = get_kind(kind)
    try:
        merged = record.merged_params(params)
    except SettingError as error:
        raise ValueError(str(error)) from None
    dataset = record.build(merged, Path(data_root), seed)
    # A builder may set traits its data decides (the folder kind: groups from its CSV).
    dataset.update(name=name or kind, kind=kind, traits={**record.traits, **dataset.get("traits", {})})
    if "standardize" in merged:  # applied by load_dataset; the file keeps the raw inputs
        dataset["normalization"] = dict(STANDARDIZATIONS[merged["standardize"]])
    return dataset


def traits(dataset: dict[str, Any]) -> dict[str, bool]:
    """The traits a dataset file carries (see :class:`Kind`); a clear error for files written before them."""
    if "traits" not in dataset:
        raise ValueError(
            f"dataset {dataset.get('name')!r} carries no traits (worst_group, oracle_background): its file was "
            "written by an older largelr. Rebuild it: snakemake --forcerun data <target>."
        )
    return dataset["traits"]
