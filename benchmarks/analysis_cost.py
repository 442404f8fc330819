"""Cost of a cell's analyses as a fraction of its training time (ResNet18, 28x28x3 inputs).

Training: the real training loop (``largelr.train.train_cell``, default train settings but
for the step counts) on random colored-digits-shaped data, run for ``w`` and ``w + k``
steps; the difference over ``k`` is the time per step (set-up, warm-up and the final
evaluation cancel). The cell's training time is that per-step time x ``--train-steps``, the
number of steps a real cell runs (read it from a cell's train.json ``steps``), plus the
full-training-set evaluations a real run makes every ``--eval-every`` steps (timed as
forward passes over ``--train-set-size`` inputs). Both are extrapolations, not a measured
run; the fraction is printed with and without the evaluations.

Analyses: the real ``prune``, ``represent`` and ``attribute`` tables with the default
analysis settings (``AnalysisSettings`` defaults, overridable with ``--settings``) on the same device.
On a CPU the full sizes take long, so ``--measure-test-size`` / ``--measure-attribute-samples``
may run them on fewer samples; their times are then scaled linearly to the full sizes (which
also scales the fixed mask-ranking cost of pruning: an overestimate). Everything extrapolated
is marked in the output.

Run: ``python benchmarks/analysis_cost.py --device cuda`` (full sizes), or on a CPU e.g.
``python benchmarks/analysis_cost.py --device cpu --measure-test-size 500 --measure-attribute-samples 20``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from largelr.analyses import attribute, prune, represent
from largelr.config import TRAIN_DEFAULTS, AnalysisSettings
from largelr.io import resolve_device
from largelr.train import train_cell


def random_dataset(n_train: int, n_test: int, seed: int = 0) -> dict:
    """Colored-digits-shaped random data: 3x28x28 in [0, 1], 10 classes, 10 bias groups."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> dict:
        return {
            "x": torch.rand(n, 3, 28, 28, generator=generator),
            "y": torch.randint(0, 10, (n,), generator=generator),
            "b": torch.randint(0, 10, (n,), generator=generator),
        }

    return {
        "name": "random_digits",
        "kind": "random_digits",
        "traits": {"worst_group": False, "oracle_background": False},
        "train": split(n_train),
        "test": split(n_test),
        "num_classes": 10,
        "num_bias": 10,
        "input_shape": [3, 28, 28],
        "spurious_mask": None,
        "core_mask": None,
        "params": {},
        "normalization": {"mean": 0.0, "std": 1.0},
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_seconds(
    dataset: dict, device: torch.device, steps: int, train_overrides: dict
) -> tuple[float, torch.nn.Module]:
    spec = {
        "study": "bench",
        "dataset": "random_digits",
        "model": "resnet18",
        "knob": "lr",
        "value": 0.01,
        "seed": 0,
        "model_params": {},
        "train": {
            **TRAIN_DEFAULTS,
            "lr": 0.01,
            "max_steps": steps,
            "eval_every": steps,
            "target_train_acc": 2.0,
            **train_overrides,
        },
    }
    synchronize(device)
    started = time.perf_counter()
    model, _, _ = train_cell(spec, dataset, device, log=lambda line: None)
    synchronize(device)
    return time.perf_counter() - started, model


def timed(function, *args) -> float:
    device = args[3]
    synchronize(device)
    started = time.perf_counter()
    function(*args)
    synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--train-steps",
        type=int,
        default=5000,
        help="steps a real cell trains (see a train.json); the training time is extrapolated to it",
    )
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--timed-steps", type=int, default=5)
    parser.add_argument(
        "--train-size",
        type=int,
        default=1000,
        help="training set held on the device (small: the final evaluation over it cancels out anyway)",
    )
    parser.add_argument("--train-set-size", type=int, default=60000, help="a real cell's training set (evaluations)")
    parser.add_argument("--eval-every", type=int, default=200, help="a real cell's steps between evaluations")
    parser.add_argument("--test-size", type=int, default=10000, help="the unbiased test set size of a real cell")
    parser.add_argument(
        "--measure-test-size", type=int, default=0, help="prune on this many (0 = --test-size), scale up"
    )
    parser.add_argument("--measure-attribute-samples", type=int, default=0, help="IG on this many (0 = the setting)")
    parser.add_argument("--settings", type=json.loads, default={}, help="analysis settings JSON over the defaults")
    parser.add_argument("--train", type=json.loads, default={}, help="train settings JSON over the defaults")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = AnalysisSettings(args.settings)
    print(f"device {device}, {args.threads} CPU threads; ResNet18 on random 3x28x28 data, 10 classes")

    measure_test = args.measure_test_size or args.test_size
    dataset = random_dataset(args.train_size, measure_test)
    short, _ = train_seconds(dataset, device, args.warmup_steps, args.train)
    long, model = train_seconds(dataset, device, args.warmup_steps + args.timed_steps, args.train)
    per_step = (long - short) / args.timed_steps
    train_total = per_step * args.train_steps
    print(
        f"training: {per_step * 1000:.1f} ms/step (difference of {args.warmup_steps}- and "
        f"{args.warmup_steps + args.timed_steps}-step runs, batch {args.train.get('batch_size', TRAIN_DEFAULTS['batch_size'])}); "
        f"cell = {args.train_steps} steps -> {train_total:.1f} s (EXTRAPOLATED; steps only)"
    )

    model.eval()
    eval_inputs = dataset["test"]["x"][: settings["eval_batch_size"]].to(device)
    with torch.no_grad():
        model(eval_inputs)  # warm-up
        synchronize(device)
        started = time.perf_counter()
        model(eval_inputs)
        synchronize(device)
    per_input = (time.perf_counter() - started) / len(eval_inputs)
    evaluations = per_input * args.train_set_size * (args.train_steps // args.eval_every)
    print(
        f"evaluations: {args.train_steps // args.eval_every} x {args.train_set_size} inputs at "
        f"{per_input * 1e3:.2f} ms/input -> {evaluations:.1f} s (EXTRAPOLATED)"
    )
    rows = []
    methods = settings["prune_methods"]
    extras = [m for m in methods if m != "structured"]
    extra_full = min(settings["prune_extra_samples"] or args.test_size, args.test_size)
    extra_measured = min(extra_full, measure_test)
    for name, group, full, measured in (
        ("prune", ["structured"], args.test_size, measure_test),
        ("prune extra", extras, extra_full, extra_measured),
    ):
        if group and group[0] in methods:
            seconds = timed(prune.run, model, dataset, settings.replace(prune_methods=group), device)
            rows.append(
                (
                    name,
                    seconds,
                    full / measured,
                    f"{'+'.join(group)} x {len(settings['kappas'])} kappas on {full} test inputs",
                )
            )
    represent_s = timed(represent.run, model, dataset, settings, device)
    represent_scale = settings["represent_samples"] / min(settings["represent_samples"], measure_test)
    rows.append(
        ("represent", represent_s, represent_scale, f"{min(settings['represent_samples'], measure_test)} inputs")
    )
    attribute_samples = args.measure_attribute_samples or settings["attribute_samples"]
    attribute_s = timed(attribute.run, model, dataset, settings.replace(attribute_samples=attribute_samples), device)
    rows.append(
        (
            "attribute",
            attribute_s,
            settings["attribute_samples"] / attribute_samples,
            f"IG {settings['ig_method']} x {settings['ig_steps']} steps on {attribute_samples} inputs",
        )
    )

    total = 0.0
    for name, seconds, scale, what in rows:
        full = seconds * scale
        total += full
        note = f" (measured {seconds:.2f} s, x{scale:g} EXTRAPOLATED)" if scale != 1 else ""
        print(f"{name:>10}: {full:8.2f} s  {what}{note}")
    print(
        f"analyses total: {total:.2f} s = {100 * total / (train_total + evaluations):.1f}% of the cell's training "
        f"time with its evaluations ({100 * total / train_total:.1f}% of the training steps alone)"
    )


if __name__ == "__main__":
    main()
