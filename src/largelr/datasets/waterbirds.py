"""Waterbirds (the group-DRO release) as a lazy index of its images (see :mod:`largelr.datasets.lazy`).

Expected layout under ``data_root``: ``<folder>/metadata.csv`` with columns ``img_filename, y,
split, place`` and images at ``<folder>/<img_filename>``; ``folder`` is a parameter. The splits
are the release's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from largelr.checks import defaults
from largelr.data_files import WATERBIRDS_METADATA, missing_waterbirds
from largelr.datasets.lazy import (
    SPLIT_CODES,
    assemble_lazy,
    check_codes,
    check_some_images,
    check_unique,
    raise_if_missing,
    read_table,
    splits_by_code,
)
from largelr.registry.kinds import WATERBIRDS_PARAMS

WATERBIRDS_COLUMNS = ("img_filename", "y", "split", "place")


def build_waterbirds(params: dict[str, Any], data_root: str | Path, seed: int) -> dict[str, Any]:
    """y = bird type (0 land, 1 water), b = place (0 land, 1 water), splits from metadata.csv."""
    params = {**defaults(WATERBIRDS_PARAMS), **params}
    directory = Path(data_root).expanduser().resolve() / params["folder"]
    raise_if_missing(missing_waterbirds(params, data_root))
    path = directory / WATERBIRDS_METADATA
    table = read_table(path, dtype={"img_filename": str})
    missing = [column for column in WATERBIRDS_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; required: {', '.join(WATERBIRDS_COLUMNS)}")
    check_unique(table["img_filename"], path)
    y = check_codes(table["y"], {0, 1}, "y", path)
    b = check_codes(table["place"], {0, 1}, "place", path)
    codes = check_codes(table["split"], set(SPLIT_CODES), "split", path)
    splits = splits_by_code(table["img_filename"].tolist(), y, b, codes)
    for split in splits.values():
        check_some_images(directory, split["paths"], path)
    return assemble_lazy("waterbirds", splits, 2, 2, directory, params, seed)
