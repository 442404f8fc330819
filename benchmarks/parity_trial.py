"""Parity trial: which (core, spurious, noise) bit counts make the lr_synthetic study informative.

The paper does not give the parity set's bit counts. Too many core bits and an FCN memorizes
the training set at every learning rate (unbiased test accuracy ~0.5 everywhere); too few and
every learning rate learns the parity (test accuracy ~1 everywhere); either way the learning-rate
trend the study looks for cannot show. This script trains the ``lr_synthetic`` parity cell --
FCN of 3 hidden layers x 200, SGD without momentum, batch 100, constant learning rate,
rho_train 0.1, 10 000 train / 10 000 unbiased test samples, until 100% training accuracy with
a 30 000-step cap -- for a few candidate counts, learning rates and seeds, and prints one row per
cell (test accuracy, steps, whether it reached 100% training accuracy) and a summary per
(counts, learning rate).

    python benchmarks/parity_trial.py                  # the trial: 3 counts x 5 rates x 2 seeds
    python benchmarks/parity_trial.py --counts 7,3,6 --lrs 0.02                    # follow-ups
    python benchmarks/parity_trial.py --counts 7,3,6 --lrs 0.01 --max-steps 60000
    python benchmarks/parity_trial.py --jobs 8         # cells in parallel where there are cores

Each cell is one ``largelr.train.train_cell`` call on ``build_dataset("parity", ...)``, with
the dataset drawn from seed 0 (as the study does: the dataset seed is shared by every cell)
and the cell's seed driving initialization and batch order; only the per-step history is
thinned (``history_every``), which does not change the training. docs/datasets.md
gives the table and the counts chosen from it. A cell takes 5 s to 5 min on one CPU
thread (the rate-0.01 cells run to the cap); the trial about 35 min on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import torch

from largelr.config import TRAIN_DEFAULTS
from largelr.datasets import build_dataset
from largelr.train import train_cell

CANDIDATES = ("8,3,10", "7,3,6", "8,3,6")
# The ends of the study's range first: the smallest rate decides whether cells fit within the
# cap, the largest whether the trend shows.
LEARNING_RATES = (0.01, 0.75, 0.1, 0.3, 0.05)
TRAIN = {"optimizer": "sgd", "batch_size": 100, "max_steps": 30000, "eval_every": 200, "history_every": 100}
MODEL = {"depth": 3, "width": 200}


def parse_counts(text: str) -> tuple[int, int, int]:
    core, spurious, noise = (int(part) for part in text.split(","))
    return core, spurious, noise


def cell_spec(lr: float, seed: int, max_steps: int) -> dict:
    train = TRAIN_DEFAULTS | TRAIN | {"lr": lr, "max_steps": max_steps}
    return {
        "study": "parity_trial",
        "dataset": "parity",
        "model": "fcn",
        "knob": "lr",
        "value": lr,
        "seed": seed,
        "train": train,
        "model_params": MODEL,
    }


def run_cell(dataset: dict, lr: float, seed: int, max_steps: int) -> dict:
    _, _, summary = train_cell(cell_spec(lr, seed, max_steps), dataset, torch.device("cpu"), log=lambda message: None)
    return {
        "test_acc": summary.get("test_acc", float("nan")),
        "train_acc": summary.get("train_acc", float("nan")),
        "steps": summary["steps"],
        "converged": summary["converged"],
        "stopped_by": summary["stopped_by"],
    }


def summarize(rows: list[dict]) -> None:
    print("\nsummary: counts (core,spurious,noise) | lr | test acc per seed | steps per seed | all converged")
    keys = sorted({(row["counts"], row["lr"]) for row in rows})
    for counts, lr in keys:
        cells = [row for row in rows if (row["counts"], row["lr"]) == (counts, lr)]
        accs = " ".join(f"{row['test_acc']:.3f}" for row in cells)
        steps = " ".join(str(row["steps"]) for row in cells)
        print(f"{counts:>9} | {lr:<5} | {accs} | {steps} | {all(row['converged'] for row in cells)}")


def trial_cell(job: tuple[str, float, int, int, int]) -> dict:
    """One cell of the trial, on the parity set of the given counts drawn from seed 0."""
    text, lr, seed, max_steps, threads = job
    torch.set_num_threads(threads)
    core, spurious, noise = parse_counts(text)
    dataset = build_dataset(
        "parity",
        {
            "core_bits": core,
            "spurious_bits": spurious,
            "noise_bits": noise,
            "n_train": 10000,
            "n_test": 10000,
            "rho_train": 0.1,
        },
        "unused",
        0,
    )
    started = time.perf_counter()
    row = {"counts": text, "lr": lr, "seed": seed, **run_cell(dataset, lr, seed, max_steps)}
    return {**row, "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", nargs="+", default=list(CANDIDATES), help="core,spurious,noise triples")
    parser.add_argument("--lrs", default=",".join(map(str, LEARNING_RATES)), help="comma-separated learning rates")
    parser.add_argument("--seeds", default="0,1", help="comma-separated cell seeds")
    parser.add_argument("--max-steps", type=int, default=TRAIN["max_steps"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per cell (1 is fastest for this net)")
    parser.add_argument("--jobs", type=int, default=1, help="cells trained at once, in separate processes")
    args = parser.parse_args()
    lrs, seeds = [float(v) for v in args.lrs.split(",")], [int(v) for v in args.seeds.split(",")]
    jobs = [(text, lr, seed, args.max_steps, args.threads) for lr in lrs for text in args.counts for seed in seeds]
    print("counts (core,spurious,noise) | lr | seed | test acc | train acc | steps | converged | stopped by | wall s")
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for row in pool.imap(trial_cell, jobs):
            rows.append(row)
            print(
                f"{row['counts']:>9} | {row['lr']:<5} | {row['seed']} | {row['test_acc']:.3f} | {row['train_acc']:.4f} | "
                f"{row['steps']:>5} | {row['converged']!s:>5} | {row['stopped_by']} | {row['wall_s']:.0f}",
                flush=True,
            )
    summarize(rows)


if __name__ == "__main__":
    main()
