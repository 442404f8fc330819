"""Why one `analyze` job per cell: time three single-step jobs against one job doing all three.

Builds a tiny trained cell in a temporary directory (smoke-sized data), then times,
in one run and interleaved, `largelr analyze --steps prune`, `--steps represent` and
`--steps attribute` as three processes against one `largelr analyze` process, and
prints the ratio. Run: `python benchmarks/analysis_jobs.py [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from largelr.config import analysis_settings, cell_spec, dataset_kind, dataset_params

ROOT = Path(__file__).resolve().parents[1]
LARGELR = [sys.executable, "-m", "largelr.cli"]


def run(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(LARGELR + args, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dataset", default="tiny_double_digits")
    parser.add_argument("--model", default="cnn")
    args = parser.parse_args()

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        data, cell = Path(tmp) / "data.pt", Path(tmp) / "cell"
        run(
            [
                "data",
                "--name",
                args.dataset,
                "--kind",
                dataset_kind(config, args.dataset),
                "--params",
                json.dumps(dataset_params(config, args.dataset)),
                "--out",
                str(data),
            ]
        )
        spec = cell_spec(config, "smoke", args.dataset, args.model, "lr", "0.05", 0)
        run(["train", "--spec", json.dumps(spec), "--data", str(data), "--out-dir", str(cell), "--device", "cpu"])
        common = [
            "analyze",
            "--cell-dir",
            str(cell),
            "--data",
            str(data),
            "--device",
            "cpu",
            "--settings",
            json.dumps(analysis_settings(config, "smoke")),
        ]
        separate, merged = [], []
        for _ in range(args.repeats):
            separate.append(sum(run(common + ["--steps", step]) for step in ("prune", "represent", "attribute")))
            merged.append(run(common))
    s, m = statistics.median(separate), statistics.median(merged)
    print(f"three jobs {s:.2f} s  one job {m:.2f} s  (median of {args.repeats})  ratio={s / m:.2f}x")


if __name__ == "__main__":
    main()
