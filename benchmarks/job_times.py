#!/usr/bin/env python3
"""Where a run's time went: each rule's jobs, summed from Snakemake's benchmark files.

Every rule writes ``results/benchmarks/{rule}/...tsv`` (wall seconds ``s``, peak memory
``max_rss`` in MB). This sums them per rule, for one study or for everything, and adds the
training loops' own time from the cells' ``train.json`` (``wall_s``, of which ``eval_s``
evaluating).

    python benchmarks/job_times.py                      # every rule under results/benchmarks
    python benchmarks/job_times.py --study demo         # the demo's jobs only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def job_times(results: Path, study: str | None = None) -> pd.DataFrame:
    """One row per rule: jobs, summed and largest wall seconds, largest peak memory (MB)."""
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        relative = path.relative_to(results / "benchmarks")
        if study and study not in relative.parts[1:-1] and path.stem != study:
            continue
        table = pd.read_csv(path, sep="\t")
        rows.append(
            {
                "rule": relative.parts[0],
                "s": float(table["s"].iloc[-1]),
                "max_rss": pd.to_numeric(table["max_rss"], errors="coerce").iloc[-1],
            }
        )
    if not rows:
        return pd.DataFrame(columns=["rule", "jobs", "total_s", "longest_s", "max_rss_mb"])
    jobs = pd.DataFrame(rows)
    return (
        jobs.groupby("rule")
        .agg(jobs=("s", "size"), total_s=("s", "sum"), longest_s=("s", "max"), max_rss_mb=("max_rss", "max"))
        .reset_index()
        .sort_values("total_s", ascending=False, ignore_index=True)
    )


def training_loops(results: Path, study: str | None = None) -> dict[str, float]:
    """Cells' train.json: how many, and their training loops' seconds (wall and evaluating)."""
    pattern = f"{study}/**/train.json" if study else "**/seed=*/train.json"
    summaries = [json.loads(path.read_text()) for path in results.glob(pattern)]
    return {
        "cells": len(summaries),
        "wall_s": sum(s.get("wall_s", 0.0) for s in summaries),
        "eval_s": sum(s.get("eval_s", 0.0) for s in summaries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="the results folder")
    parser.add_argument("--study", help="only this study's jobs")
    args = parser.parse_args()
    results = Path(args.results)
    print(job_times(results, args.study).to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    loops = training_loops(results, args.study)
    print(
        f"\ntraining loops of {loops['cells']} cells: {loops['wall_s']:.1f} s "
        f"(of which evaluating {loops['eval_s']:.1f} s)"
    )


if __name__ == "__main__":
    main()
