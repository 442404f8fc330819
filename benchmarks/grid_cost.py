"""Cost model of the config's grid: device-hours per study, from short timings on one device.

For every study it reads the cells (``largelr.config.study_cells``) and each cell's settings
(``cell_spec``): model, model parameters, batch size, optimizer, step cap, evaluation interval.
Input shapes, class counts and training-set sizes follow from each dataset's kind and
parameters (computed here, no data is built). Every distinct (model, parameters, input
shape, classes, batch size, optimizer, ASAM on/off) is then timed once with the real engine
(``largelr.train.train_cell`` on random data of that shape): a warm-up run, then a timed run
whose training-only rate (``steps_per_s``, evaluations excluded) gives the step time and
whose one closing evaluation gives the forward time per sample.

A cell costs ``steps x step time`` plus its evaluations (every ``eval_every`` steps a forward
pass over the training set, and the validation / test sets where ``select_on_val`` /
``eval_test`` ask for them) plus its attribution probes (``attribution_every``: 64 inputs x 20
IG steps, costed as forward+backward at the step's per-sample rate). ``steps`` is the step
cap, or, for a study that has run, the measured ``steps`` of its ``results/{study}/cells.parquet``
(cells not yet run take the median of their (dataset, model), else the cap). The analyses
are not included (``benchmarks/analysis_cost.py``: a few percent of training).

On a CPU the large models are timed at a smaller batch (``--cpu-batch``) and for fewer steps
(``--seconds`` per timing), and the step time is scaled linearly to the cell's batch size:
those rows are marked ``extrapolated`` and give orders of magnitude, not a schedule. On a GPU
every timing runs at the cell's batch size.

    python benchmarks/grid_cost.py --device cuda            # the default target, every study
    python benchmarks/grid_cost.py --device cpu --studies smoke
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml

from largelr.config import TrainSettings, cell_spec, dataset_kind, dataset_params, study_cells
from largelr.datasets import KINDS
from largelr.io import resolve_device
from largelr.train import ATTRIBUTION_SAMPLES, train_cell

ROOT = Path(__file__).resolve().parents[1]
IG_STEPS = 20  # the attribution probe's IG steps (forward + backward per step and input)
# Training / validation / test sizes of the natural and base sets (their official splits).
MNIST, CIFAR, DIGITS = (60_000, 0, 10_000), (50_000, 0, 10_000), (1_258, 0, 539)
NATURAL_SIZES = {
    "celeba": (162_770, 19_867, 19_962),
    "waterbirds": (4_795, 1_199, 5_794),
    "imagenet": (1_281_167, 0, 50_000),
}


@dataclass(frozen=True)
class Shape:
    input_shape: tuple[int, ...]
    classes: int
    n_train: int
    n_val: int
    n_test: int


def dataset_shape(kind: str, params: dict) -> Shape:
    """Input shape, classes and split sizes of a dataset of ``kind`` with ``params`` (its defaults filled in)."""
    p = KINDS[kind].merged_params(params)
    if kind == "parity":
        return Shape((p["core_bits"] + p["spurious_bits"] + p["noise_bits"],), 2, p["n_train"], 0, p["n_test"])
    if kind == "moon_star":
        return Shape((1, p["image_size"], p["image_size"]), 2, p["n_train"], 0, p["n_test"])
    if kind in NATURAL_SIZES:
        classes = 1000 if kind == "imagenet" else 2
        return Shape((3, p["image_size"], p["image_size"]), classes, *NATURAL_SIZES[kind])
    base = {"mnist": MNIST, "digits": DIGITS}.get(p.get("base"), CIFAR)
    shapes = {
        "colored_digits": (3, 28, 28),
        "colored_mnist": (3, 28, 28),
        "double_digits": (1, 28, 56),
        "double_mnist": (1, 28, 56),
        "mnist_cifar": (3, 64, 32),
        "corrupted_cifar10": (3, 32, 32),
        "cifar10": (3, 32, 32),
        "cifar100": (3, 32, 32),
    }
    return Shape(shapes[kind], 100 if kind == "cifar100" else 10, *base)


@dataclass(frozen=True)
class TimingKey:
    """Everything that sets a step's cost."""

    model: str
    model_params: str  # JSON, sorted
    shape: tuple[int, ...]
    classes: int
    batch_size: int
    optimizer: str
    asam: bool

    def label(self) -> str:
        params = json.loads(self.model_params)
        extra = ",".join(f"{k}={v}" for k, v in params.items())
        return f"{self.model}({extra})@{'x'.join(map(str, self.shape))} bs={self.batch_size} {self.optimizer}" + (
            " asam" if self.asam else ""
        )


def timing_key(spec: dict, shape: Shape) -> TimingKey:
    train = spec["train"]
    return TimingKey(
        spec["model"],
        json.dumps(spec["model_params"], sort_keys=True),
        shape.input_shape,
        shape.classes,
        int(train["batch_size"]),
        train["optimizer"],
        bool(train["asam_rho"]),
    )


def random_dataset(shape: Shape, n_train: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, shape.classes, (n_train,), generator=generator)
    x = torch.rand(n_train, *shape.input_shape, generator=generator)
    return {
        "name": "random",
        "train": {"x": x, "y": y, "b": y},
        "test": {"x": x[:2], "y": y[:2], "b": y[:2]},
        "num_classes": shape.classes,
        "num_bias": shape.classes,
        "input_shape": list(shape.input_shape),
        "spurious_mask": None,
    }


def engine_run(key: TimingKey, batch: int, steps: int, n_train: int, device: torch.device, spec: dict) -> dict:
    """One train_cell run of ``steps`` steps at ``batch``: its summary (training-only rate, evaluation time)."""
    train = spec["train"] | {
        "batch_size": batch,
        "max_steps": steps,
        "eval_every": steps,
        "target_train_acc": 1.1,
        "stop_train_ce": 0.0,
        "select_on_val": False,
        "eval_test": False,
        "attribution_every": 0,
        "collapse_patience": 0,
        "lr": min(spec["train"]["lr"], 1e-3),
    }
    params = json.loads(key.model_params) | ({"pretrained": False} if key.model == "swin_t" else {})
    run_spec = {**spec, "train": train, "model_params": params}
    dataset = random_dataset(Shape(key.shape, key.classes, n_train, 0, 2), n_train)
    _, _, summary = train_cell(run_spec, dataset, device, log=lambda line: None)
    return summary


@dataclass
class Timing:
    seconds: float  # per step at ``batch``
    forward_s_per_sample: float
    batch: int  # the batch size actually timed
    steps: int

    def step_s(self, batch: int) -> float:
        """Seconds per step at ``batch``: as timed, or scaled linearly from the smaller batch that was timed."""
        return self.seconds * batch / self.batch if batch != self.batch else self.seconds

    def note(self, batch: int) -> str:
        return f"{self.steps} steps at bs {self.batch}" + (
            f", extrapolated x{batch / self.batch:g}" if batch != self.batch else ""
        )


def time_key(key: TimingKey, spec: dict, device: torch.device, args: argparse.Namespace) -> Timing:
    """Step and per-sample forward time of ``key``: a probe run, then (if it fits ``--seconds``) a timed run.

    On CUDA the probe is a warm-up (cuDNN autotuning, allocator) and the timed run always follows,
    at the cell's batch size. On a CPU a costly model is timed by the probe alone, at ``--cpu-batch``.
    """
    cpu = device.type == "cpu"
    batch = min(key.batch_size, args.cpu_batch) if cpu else key.batch_size
    probe = engine_run(key, batch, 3, 2 * batch, device, spec)
    probe_s = 1 / probe["steps_per_s"]
    if cpu and batch < key.batch_size and probe_s * 50 < args.seconds:  # small: try the cell's batch size
        full = engine_run(key, key.batch_size, 3, 2 * key.batch_size, device, spec)
        if 20 / full["steps_per_s"] < args.seconds:
            batch, probe, probe_s = key.batch_size, full, 1 / full["steps_per_s"]
    steps = min(args.steps, int(args.seconds / probe_s))
    if cpu and steps <= 6:
        return Timing(probe_s, probe["eval_s"] / (2 * batch), batch, 3)
    n_eval = 2 * batch if cpu else max(2 * batch, min(2000, int(args.seconds / 2 / (probe_s / batch))))
    summary = engine_run(key, batch, steps, n_eval, device, spec)
    return Timing(1 / summary["steps_per_s"], summary["eval_s"] / n_eval, batch, steps)


def measured_steps(study: str, results: Path) -> pd.DataFrame | None:
    path = results / study / "cells.parquet"
    if not path.exists():
        return None
    cells = pd.read_parquet(path, columns=["dataset", "model", "value", "seed", "steps"])
    return cells.astype({"value": float, "seed": int})


def expected_steps(cell, spec: dict, measured: pd.DataFrame | None) -> tuple[int, str]:
    """(steps, source) of one cell: measured when it ran, else its pair's median, else the cap."""
    cap = int(spec["train"]["max_steps"])
    if measured is None:
        return cap, "cap"
    pair = measured[(measured["dataset"] == cell.dataset) & (measured["model"] == cell.model)]
    same = pair[(pair["value"] == float(cell.value)) & (pair["seed"] == cell.seed)]
    if len(same):
        return int(same["steps"].iloc[0]), "measured"
    if len(pair):
        return int(statistics.median(pair["steps"])), "pair median"
    return cap, "cap"


def cell_seconds(spec: dict, shape: Shape, steps: int, timing: Timing) -> float:
    train = spec["train"]
    evaluations = steps // int(train["eval_every"]) + (steps % int(train["eval_every"]) > 0)
    evaluated = shape.n_train + (shape.n_test if train["eval_test"] else 0)
    if train["select_on_val"]:
        evaluated += shape.n_val or round(train["val_fraction"] * shape.n_train)
    probes = steps // train["attribution_every"] if train["attribution_every"] else 0
    step_s = timing.step_s(int(train["batch_size"]))
    per_sample_step = step_s / int(train["batch_size"])
    return (
        steps * step_s
        + evaluations * evaluated * timing.forward_s_per_sample
        + probes * ATTRIBUTION_SAMPLES * IG_STEPS * per_sample_step
        + shape.n_test * timing.forward_s_per_sample
    )


def plan(config: dict, studies: list[str], results: Path) -> list[dict]:
    """One row per cell: study, timing key, shape, spec, expected steps and their source."""
    rows = []
    for study in studies:
        measured = measured_steps(study, results)
        for cell in study_cells(config, study):
            spec = cell_spec(config, study, cell.dataset, cell.model, cell.knob, cell.value, cell.seed)
            spec["train"] = dict(TrainSettings(spec["train"]))  # the defaults filled in
            shape = dataset_shape(dataset_kind(config, cell.dataset), dataset_params(config, cell.dataset))
            steps, source = expected_steps(cell, spec, measured)
            rows.append(
                {
                    "study": study,
                    "cell": cell,
                    "spec": spec,
                    "shape": shape,
                    "key": timing_key(spec, shape),
                    "steps": steps,
                    "cap": int(spec["train"]["max_steps"]),
                    "source": source,
                }
            )
    return rows


def reusable(key: TimingKey, timings: dict[TimingKey, Timing | None], device: torch.device) -> Timing | None:
    """On a CPU, a timing of the same model and shape taken at a smaller batch than both keys' batch sizes:
    it is what timing ``key`` would measure too, before the same linear scaling."""
    if device.type != "cpu":
        return None
    for other, timing in timings.items():
        if (
            timing is not None
            and timing.batch < other.batch_size
            and timing.batch <= key.batch_size
            and (other.model, other.model_params, other.shape, other.classes, other.optimizer, other.asam)
            == (key.model, key.model_params, key.shape, key.classes, key.optimizer, key.asam)
        ):
            return timing
    return None


def time_all(rows: list[dict], device: torch.device, args: argparse.Namespace) -> dict[TimingKey, Timing | None]:
    timings: dict[TimingKey, Timing | None] = {}
    for row in rows:
        key = row["key"]
        if key in timings:
            continue
        started = time.perf_counter()
        timing = reusable(key, timings, device)
        try:
            timing = timing or time_key(key, row["spec"], device, args)
        except ImportError as error:  # e.g. psgd_kron without heavyball
            print(f"  {key.label()}: not timed ({error})", file=sys.stderr)
            timing = None
        timings[key] = timing
        if timing is not None:
            print(
                f"  {key.label()}: {timing.step_s(key.batch_size) * 1e3:.2f} ms/step, "
                f"{timing.forward_s_per_sample * 1e6:.1f} us/sample forward ({timing.note(key.batch_size)}; "
                f"{time.perf_counter() - started:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    return timings


def study_table(rows: list[dict], timings: dict[TimingKey, Timing | None]) -> pd.DataFrame:
    records = []
    for study in dict.fromkeys(row["study"] for row in rows):
        mine = [row for row in rows if row["study"] == study]
        timed = [row for row in mine if timings[row["key"]] is not None]
        seconds = sum(cell_seconds(r["spec"], r["shape"], r["steps"], timings[r["key"]]) for r in timed)
        sources = sorted({r["source"] for r in mine})
        extrapolated = any(timings[r["key"]].batch != int(r["spec"]["train"]["batch_size"]) for r in timed)
        records.append(
            {
                "study": study,
                "cells": len(mine),
                "steps_cap": sum(r["cap"] for r in mine),
                "steps_expected": sum(r["steps"] for r in mine),
                "steps_from": "+".join(sources),
                "device_hours": seconds / 3600 if len(timed) == len(mine) else math.nan,
                "untimed_cells": len(mine) - len(timed),
                "extrapolated": extrapolated,
            }
        )
    return pd.DataFrame(records)


def markdown(table: pd.DataFrame, total_label: str) -> str:
    lines = [
        "| study | cells | steps (cap) | steps (expected) | from | device-hours | extrapolated |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        hours = "n/a" if math.isnan(r.device_hours) else f"{r.device_hours:.3g}"
        untimed = f" ({r.untimed_cells} cells untimed)" if r.untimed_cells else ""
        lines.append(
            f"| {r.study} | {r.cells} | {r.steps_cap:,} | {r.steps_expected:,} | {r.steps_from} | "
            f"{hours}{untimed} | {'yes' if r.extrapolated else 'no'} |"
        )
    total = table["device_hours"].sum(min_count=1)
    lines.append(
        f"| **{total_label}** | {table['cells'].sum()} | {table['steps_cap'].sum():,} | "
        f"{table['steps_expected'].sum():,} | | {total:.3g} | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--studies", nargs="+", help="default: the config's default target (default_studies)")
    parser.add_argument("--results", default=str(ROOT / "results"), help="where results/{study}/cells.parquet lie")
    parser.add_argument("--steps", type=int, default=200, help="most timed steps per (model, shape, batch)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="time budget of each timed run (default 20 on CUDA, 3 on a CPU)"
    )
    parser.add_argument("--cpu-batch", type=int, default=4, help="on a CPU: largest batch timed for costly models")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (as `largelr train`)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.seconds = args.seconds or (20.0 if device.type == "cuda" else 3.0)
    config = yaml.safe_load(Path(args.config).read_text())
    default_target = list(config.get("default_studies") or config["studies"])
    studies = args.studies or default_target
    rows = plan(config, studies, Path(args.results))
    keys = len({row["key"] for row in rows})
    print(
        f"device={device} studies={len(studies)} cells={len(rows)} timings={keys} (seconds per timing "
        f"{args.seconds:g}, at most {args.steps} steps)",
        file=sys.stderr,
    )
    timings = time_all(rows, device, args)
    table = study_table(rows, timings)
    label = "total (default target)" if studies == default_target else f"total ({', '.join(studies)})"
    print(
        f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(markdown(table, label))


if __name__ == "__main__":
    main()
