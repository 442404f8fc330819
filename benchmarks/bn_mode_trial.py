#!/usr/bin/env python3
"""BatchNorm eval vs batch mode in the representation analysis, on a briefly trained ResNet-18.

    python benchmarks/bn_mode_trial.py results/data/tiny_moon_star.pt [--lrs 0.02 0.2] [--steps 200]

Trains one ResNet-18 per learning rate (seed 0, batch 50, until 100% training accuracy or
--steps) on a dataset file, then runs the represent analysis with ``represent_bn: eval`` and
``represent_bn: batch`` on the same model and prints CSI, class separation and compressibility
of each: the size of docs/where-the-paper-is-silent.md's item 3 on a CPU budget.
"""

from __future__ import annotations

import argparse
import time

import torch

from largelr.analyses.represent import run
from largelr.config import TRAIN_DEFAULTS, AnalysisSettings
from largelr.datasets import load_dataset
from largelr.train import train_cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a dataset file (results/data/{dataset}.pt)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.02, 0.2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--samples", type=int, default=200, help="represent_samples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, cpu = load_dataset(args.data), torch.device("cpu")
    for lr in args.lrs:
        spec = {
            "study": "trial",
            "dataset": data["name"],
            "model": "resnet18",
            "knob": "lr",
            "value": lr,
            "seed": 0,
            "train": TRAIN_DEFAULTS | {"lr": lr, "batch_size": 50, "max_steps": args.steps, "eval_every": 50},
            "model_params": {},
        }
        started = time.perf_counter()
        model, _, summary = train_cell(spec, data, cpu, log=lambda line: None)
        for bn in ("eval", "batch"):
            row = run(model, data, AnalysisSettings({"represent_samples": args.samples, "represent_bn": bn}), cpu).iloc[
                0
            ]
            print(
                f"lr {lr:g}  steps {summary['steps']}  test acc {summary.get('test_acc', float('nan')):.3f}  "
                f"bn {bn:<5}  csi {row.csi:.3f}  class_sep {row.class_sep:.3f}  "
                f"compressibility {row.compressibility:.3f}",
                flush=True,
            )
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
