#!/usr/bin/env python3
"""How long Snakemake's parse takes, against a baseline revision.

Times, each ``--repeats`` times (the median is reported; the two trees' runs alternate), in the
current tree and in a baseline revision checked out with ``git worktree add`` into a temporary
folder:

- ``python -c "import torch"`` (what a parse that imports torch pays at least),
- ``snakemake --version`` (Snakemake's own start: its CLI and plugins, no workflow),
- ``snakemake -n demo`` (a dry run of the demo study: parse, validation, a small DAG),
- ``snakemake -n --config check_data=false`` (a dry run of the whole config's default target).

Each tree runs with its own ``src`` first on PYTHONPATH and with bytecode caching on (as the
Makefile runs jobs; PYTHONDONTWRITEBYTECODE would make every run recompile torch and Snakemake);
one unmeasured run of each command per tree first fills those caches. Prints a Markdown table with
the baseline / current ratio (> 1: the current tree is faster) and each time over ``import torch``
in the current tree.

    python benchmarks/parse_time.py --baseline main
    python benchmarks/parse_time.py --baseline HEAD~3 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "snakemake --version": ["snakemake", "--version"],
    "snakemake -n demo": ["snakemake", "-n", "demo", "--quiet", "all"],
    "snakemake -n (full config)": ["snakemake", "-n", "--config", "check_data=false", "--quiet", "all"],
}


def timed(command: list[str], tree: Path) -> float:
    """Wall seconds of one run of ``command`` in ``tree``; a failed run is an error."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    result = subprocess.run(command, check=False, cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {tree}:\n{result.stderr[-2000:]}")
    return seconds


def medians(trees: dict[str, Path], repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds per tree and command; the trees' runs alternate, so that a change in the
    machine's load during the measurement falls on both alike."""
    runs: dict[str, dict[str, list[float]]] = {tree: {name: [] for name in COMMANDS} for tree in trees}
    for command in COMMANDS.values():  # warm-up: bytecode caches, Snakemake's source cache
        for path in trees.values():
            timed(command, path)
    for _ in range(repeats):
        for name, command in COMMANDS.items():
            for tree, path in trees.items():
                runs[tree][name].append(timed(command, path))
    for tree in trees:
        for name in COMMANDS:
            print(f"{tree}: {name}: {', '.join(f'{s:.1f}' for s in runs[tree][name])} s", file=sys.stderr)
    return {tree: {name: statistics.median(times) for name, times in runs[tree].items()} for tree in trees}


def table(current: dict[str, float], baseline: dict[str, float], baseline_name: str, repeats: int) -> str:
    lines = [
        f"| command (median of {repeats}) | {baseline_name} (s) | current (s) | baseline / current "
        "| current / `import torch` |",
        "|---|---:|---:|---:|---:|",
    ]
    torch = current["import torch"]
    for name in COMMANDS:
        lines.append(
            f"| `{name}` | {baseline[name]:.2f} | {current[name]:.2f} | {baseline[name] / current[name]:.2f} "
            f"| {current[name] / torch:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the revision to compare with (a commit, branch or tag)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command per tree (at least 3)")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats: at least 3")
    with tempfile.TemporaryDirectory(prefix="parse_time.") as scratch:
        baseline = Path(scratch) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(baseline), args.baseline], check=True
        )
        try:
            times = medians({"baseline": baseline, "current": ROOT}, args.repeats)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=True)
    print(table(times["current"], times["baseline"], f"baseline {args.baseline}", args.repeats))


if __name__ == "__main__":
    main()
