#!/usr/bin/env python3
"""Compare the result tables of two results/ trees: equal values, up to float noise.

    python tools/compare_results.py REFERENCE_RESULTS NEW_RESULTS [--study smoke]

Every Parquet table of the study (cells.parquet, prune_curves, dynamics and the study's
tables under results/tables/) is compared after dropping the columns that describe the run
rather than its results: provenance (git revision, versions, device) and timings (``*_s``,
``steps_per_s``, ``images_per_s``). Exits non-zero listing every table that differs. Used to
check that a behaviour-preserving change (a refactor) leaves the smoke study's numbers as
they were.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

RUN_COLUMNS = {"device", "git_revision", "largelr_version", "torch_version", "steps_per_s", "images_per_s"}
ROW_KEYS = ("study", "dataset", "model", "knob", "value", "seed", "method", "kappa", "step", "variable", "metric")


def describes_the_run(name: str) -> bool:
    return name in RUN_COLUMNS or name.endswith("_s")


def comparable(path: Path) -> pd.DataFrame:
    table = pd.read_parquet(path)
    table = table[[c for c in table.columns if not describes_the_run(c)]]
    if "metric" in table.columns:  # the long statistics table holds run columns as rows
        table = table[~table["metric"].map(describes_the_run)]
    keys = [c for c in ROW_KEYS if c in table.columns]
    return table.sort_values(keys).reset_index(drop=True) if keys else table


def study_tables(results: Path, study: str) -> dict[str, Path]:
    paths = sorted((results / study).glob("*.parquet")) + sorted((results / "tables").glob(f"{study}_*.parquet"))
    return {str(path.relative_to(results)): path for path in paths}


def compare(reference: Path, new: Path, study: str, rtol: float = 1e-9) -> list[str]:
    """Problems found (empty: the same results)."""
    ours, theirs = study_tables(new, study), study_tables(reference, study)
    problems = [f"{name}: only in {reference}" for name in sorted(set(theirs) - set(ours))]
    problems += [f"{name}: only in {new}" for name in sorted(set(ours) - set(theirs))]
    for name in sorted(set(ours) & set(theirs)):
        before, after = comparable(theirs[name]), comparable(ours[name])
        try:
            pd.testing.assert_frame_equal(
                after[before.columns.intersection(after.columns, sort=False)],
                before[before.columns.intersection(after.columns, sort=False)],
                check_exact=False,
                rtol=rtol,
                check_dtype=False,
            )
        except AssertionError as error:
            problems.append(f"{name}: {error}")
        added, dropped = set(after.columns) - set(before.columns), set(before.columns) - set(after.columns)
        if added or dropped:
            problems.append(f"{name}: columns added {sorted(added)}, dropped {sorted(dropped)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="results/ folder of the reference run")
    parser.add_argument("new", type=Path, help="results/ folder of the run to check")
    parser.add_argument("--study", default="smoke")
    args = parser.parse_args()
    problems = compare(args.reference, args.new, args.study)
    for problem in problems:
        print(problem)
    print(
        f"{len(study_tables(args.new, args.study))} tables compared: "
        f"{'identical values' if not problems else f'{len(problems)} differences'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
