"""Training throughput: this package's engine against a bare loop and a torchvision-style loop.

Three arms train the same model at the same batch size with the same optimizer (SGD, no
momentum) on the same random data, for each case ``model@shape``:

- **engine**: ``largelr.training.loop.train_cell`` with the default train settings (data on the
  device, batches indexed there, history and divergence detection, evaluations);
- **bare**: the smallest loop that trains the model: a seeded permutation split into
  batches, ``index_select`` on the device, ``F.cross_entropy``, ``zero_grad / backward /
  step`` of ``torch.optim.SGD`` -- nothing recorded;
- **bare PlainSGD**: the same loop with the engine's optimizer (``largelr.training.optim.PlainSGD``:
  torch's functional SGD kernel without the ``Optimizer`` class), so that engine / bare
  PlainSGD is the cost of the engine's bookkeeping alone;
- **dataloader**: the usual torchvision loop: ``DataLoader(shuffle=True)`` over a Dataset
  that, like torchvision's MNIST/CIFAR classes, turns one stored uint8 image at a time into
  a PIL image and applies ``ToTensor() + Normalize()`` (vector inputs: a TensorDataset).

Each arm is timed over its ``steps`` training steps from the first one, model and data set
up beforehand: the bare and dataloader loops by the benchmark, the engine by its own
training-only clock (``steps_per_s`` in its summary, evaluations left out), pointed at the
benchmark's clock for the run. ``--clock cpu`` (the default on a CPU) reads the process's CPU
time, which other processes on a shared machine disturb far less than wall time; on CUDA the
clock is wall time with the device synchronized. A first, untimed round warms up (CUDA
kernels, cuDNN autotuning); then the arms alternate within each of ``--rounds`` rounds and
the table shows the median rate per arm and the median of the per-round ratios.

    python benchmarks/train_throughput.py --device cpu --steps 300 --rounds 7 --cases fcn@20
    python benchmarks/train_throughput.py --device cuda --amp off bf16 --channels-last on off

A case is ``model@shape`` or ``model:key=value,...@shape`` with model parameters (e.g.
``cnn:width=0.125@3x16x16``); a shape is ``D`` (vector inputs, 2 classes: the parity set's
20 +-1 bits) or ``CxHxW`` (images, 10 classes).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

import largelr.training.state
from largelr.config import TRAIN_DEFAULTS
from largelr.io import resolve_device
from largelr.models import build_model
from largelr.train import BatchOrder, PlainSGD, train_cell

BATCH = 100
LR = 0.01
DEFAULT_CASES = ["fcn@20", "fcn@3x28x28", "cnn@3x28x28", "resnet18@3x28x28"]


class UInt8Images(Dataset):
    """HWC uint8 images served the way torchvision's dataset classes serve them:
    a PIL image per sample, then the usual ToTensor + Normalize transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        from torchvision import transforms

        self.images, self.labels = images, labels
        channels = images.shape[-1]
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.5,) * channels, (0.5,) * channels)]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(
            Image.fromarray(self.images[index].squeeze(-1) if self.images.shape[-1] == 1 else self.images[index])
        ), int(self.labels[index])


class Case:
    """One (model, input shape) with its random data: uint8 images or +-1 vectors, and labels."""

    def __init__(self, text: str, samples: int, seed: int = 0):
        model, _, shape = text.partition("@")
        self.model, _, params = model.partition(":")
        self.params = {
            key: float(value) if "." in value else int(value)
            for key, value in (item.split("=") for item in params.split(",") if item)
        }
        self.shape = [int(side) for side in shape.split("x")]
        self.classes = 2 if len(self.shape) == 1 else 10
        generator = np.random.default_rng(seed)
        self.labels = generator.integers(0, self.classes, size=samples)
        bias = np.where(generator.random(samples) < 0.9, self.labels, generator.integers(0, self.classes, samples))
        if len(self.shape) == 1:
            self.images = None
            self.x = torch.from_numpy(generator.choice([-1.0, 1.0], size=(samples, self.shape[0])).astype(np.float32))
        else:
            channels, height, width = self.shape
            self.images = generator.integers(0, 256, size=(samples, height, width, channels), dtype=np.uint8)
            self.x = torch.from_numpy(self.images).permute(0, 3, 1, 2).float().div(255).contiguous()
        self.y, self.b = torch.from_numpy(self.labels), torch.from_numpy(bias)

    def dataset(self) -> dict:
        test = slice(0, min(1000, len(self.y)))
        return {
            "name": "random",
            "train": {"x": self.x, "y": self.y, "b": self.b},
            "test": {"x": self.x[test], "y": self.y[test], "b": self.b[test]},
            "num_classes": self.classes,
            "num_bias": self.classes,
            "input_shape": self.shape,
            "spurious_mask": None,
        }


class Timer:
    """Seconds of wall time (device synchronized) or of this process's CPU time."""

    def __init__(self, clock: str, device: torch.device):
        self.cpu, self.device = clock == "cpu", device

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.process_time() if self.cpu else time.perf_counter()


def engine_rate(case: Case, steps: int, device: torch.device, variant: dict, history_every: int) -> float:
    """Steps per second of one engine run: its own training-only rate (``steps_per_s``), read off the
    chosen clock (the engine's clock is pointed at it for the run)."""
    settings = {key: variant[key] for key in ("amp", "channels_last", "compile")} | {"history_every": history_every}
    train = TRAIN_DEFAULTS | {"lr": LR, "batch_size": BATCH, "max_steps": steps, "target_train_acc": 1.1} | settings
    spec = {
        "study": "benchmark",
        "dataset": "random",
        "model": case.model,
        "knob": "lr",
        "value": LR,
        "seed": 0,
        "train": train,
        "model_params": case.params,
    }
    engine_clock = largelr.training.state.time  # RunClock's
    largelr.training.state.time = SimpleNamespace(perf_counter=variant["timer"])
    try:
        _, _, summary = train_cell(spec, case.dataset(), device, log=lambda line: None)
    finally:
        largelr.training.state.time = engine_clock
    return summary["steps_per_s"]


def prepared_model(case: Case, device: torch.device, variant: dict) -> tuple[torch.nn.Module, Callable, Callable]:
    """(model, its forward as compiled, the input preparation) as the engine would set them up."""
    torch.manual_seed(0)
    model = build_model(case.model, case.shape, case.classes, case.params).to(device).train()
    channels_last = variant["channels_last"] and case.model != "fcn" and len(case.shape) == 3  # as the engine
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if variant["compile"]:
        forward = torch.compile(model, **({} if variant["compile"] is True else {"mode": variant["compile"]}))
    prepare = (lambda x: x.contiguous(memory_format=torch.channels_last)) if channels_last else (lambda x: x)
    return model, forward, prepare


def loop_rate(
    batches: Callable, case: Case, steps: int, device: torch.device, variant: dict, plain_sgd: bool = False
) -> float:
    """Steps per second over ``steps`` steps of a plain training loop fed by ``batches``, from the first;
    with ``torch.optim.SGD``, or with the engine's ``PlainSGD`` when ``plain_sgd``."""
    model, forward, prepare = prepared_model(case, device, variant)
    params = list(model.parameters())
    optimizer = PlainSGD(params, lr=LR, momentum=0.0, weight_decay=0.0) if plain_sgd else torch.optim.SGD(params, lr=LR)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if variant["amp"] == "bf16"
        else contextlib.nullcontext
    )
    stream, timer = batches(), variant["timer"]
    started = timer()
    for _ in range(steps):
        x, y = next(stream)
        with autocast():
            logits = forward(prepare(x))
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (timer() - started)


def bare_batches(case: Case, device: torch.device) -> Callable:
    x, y = case.x.to(device), case.y.to(device)

    def batches():
        order = BatchOrder(len(y), BATCH, seed=0)
        while True:
            idx = order.next().to(device)
            yield x.index_select(0, idx), y.index_select(0, idx)

    return batches


def dataloader_batches(case: Case, device: torch.device) -> Callable:
    data = TensorDataset(case.x, case.y) if case.images is None else UInt8Images(case.images, case.labels)
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, pin_memory=device.type == "cuda")

    def batches():
        while True:
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    return batches


def measure(case: Case, variant: dict, args: argparse.Namespace, device: torch.device) -> dict[str, list[float]]:
    """Rates of every arm, one per round, the arms alternating within each round: one engine arm
    per ``--history-every`` value, the bare loop, the dataloader loop."""
    steps = args.steps if case.model == "fcn" else args.conv_steps
    arms = {f"engine h={k}": (lambda k=k: engine_rate(case, steps, device, variant, k)) for k in args.history_every}
    if variant["compile"] not in (False, True):  # a mode the engine's `compile` setting does not offer
        arms = {}
    arms["bare"] = lambda: loop_rate(bare_batches(case, device), case, steps, device, variant)
    arms["bare PlainSGD"] = lambda: loop_rate(bare_batches(case, device), case, steps, device, variant, plain_sgd=True)
    if not args.no_dataloader:
        arms["dataloader"] = lambda: loop_rate(dataloader_batches(case, device), case, steps, device, variant)
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    for round_ in range(args.rounds + 1):
        order = list(arms) if round_ % 2 else list(arms)[::-1]  # A B C, C B A, ...: drifts cancel in pairs
        for arm in order:
            measured = arms[arm]()
            if round_:  # round 0 warms up
                rates[arm].append(measured)
    return rates


def ratio(rates: dict[str, list[float]], a: str, b: str) -> str:
    if a not in rates or b not in rates:
        return "n/a"
    return f"{statistics.median(x / y for x, y in zip(rates[a], rates[b])):.3f}"


def rows(text: str, variant: dict, rates: dict[str, list[float]]) -> list[str]:
    """Table rows of one case and variant: one per engine arm (or one for the loops alone)."""
    median = {arm: f"{statistics.median(values):.1f}" for arm, values in rates.items()}
    engines = [arm for arm in rates if arm.startswith("engine")] or ["engine"]
    return [
        f"| {text} | {variant['label']} {arm.removeprefix('engine').strip()} | {median.get(arm, 'n/a')} | "
        f"{median['bare']} | {median.get('dataloader', 'n/a')} | {ratio(rates, arm, 'bare')} | "
        f"{ratio(rates, arm, 'dataloader')} | {median['bare PlainSGD']} | {ratio(rates, arm, 'bare PlainSGD')} |"
        for arm in engines
    ]


def variants(args: argparse.Namespace, case: Case, device: torch.device) -> list[dict]:
    """The (amp, channels_last, compile) settings to measure for ``case``."""
    image = len(case.shape) == 3
    timer = Timer(args.clock or ("cpu" if device.type == "cpu" else "wall"), device)
    chosen = []
    for amp in args.amp:
        for layout in args.channels_last if image and case.model != "fcn" else ["off"]:
            for mode in args.compile:
                compile_ = {"off": False, "default": True}.get(mode, mode)
                chosen.append(
                    {
                        "amp": amp,
                        "channels_last": layout == "on",
                        "compile": compile_,
                        "timer": timer,
                        "label": f"amp={amp} cl={layout} compile={mode}",
                    }
                )
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="model@shape, e.g. fcn@20 cnn@3x28x28")
    parser.add_argument("--steps", type=int, default=300, help="timed steps of the FCN cases per arm and round")
    parser.add_argument("--conv-steps", type=int, default=10, help="timed steps of the other models")
    parser.add_argument("--samples", type=int, default=5000, help="training samples of the random data (FCN)")
    parser.add_argument(
        "--conv-samples",
        type=int,
        default=1000,
        help="training samples of the other models (the engine evaluates them all at its end)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    parser.add_argument("--clock", choices=["cpu", "wall"], help="default: cpu on a CPU device, wall on CUDA")
    parser.add_argument("--amp", nargs="+", default=["off"], choices=["off", "bf16"])
    parser.add_argument(
        "--channels-last",
        nargs="+",
        default=["on"],
        choices=["on", "off"],
        help="conv models only (the engine applies it on every device)",
    )
    parser.add_argument(
        "--compile",
        nargs="+",
        default=["off"],
        help="off | default | reduce-overhead | max-autotune (the engine: off and default only)",
    )
    parser.add_argument(
        "--history-every",
        nargs="+",
        type=int,
        default=[1, 10],
        help="one engine arm per value of the history_every setting",
    )
    parser.add_argument("--no-dataloader", action="store_true", help="leave the dataloader arm out")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads, as `largelr train --threads` (default 1; 0 = torch's default)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"device={device} batch={BATCH} samples={args.samples} rounds={args.rounds} threads={torch.get_num_threads()}"
        f" clock={args.clock or ('cpu' if device.type == 'cpu' else 'wall')}"
    )
    print(
        "| case | settings | engine steps/s | bare steps/s | dataloader steps/s | engine/bare | engine/dataloader "
        "| bare PlainSGD steps/s | engine/bare PlainSGD |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for text in args.cases:
        case = Case(text, args.samples if text.startswith("fcn") else min(args.samples, args.conv_samples))
        for variant in variants(args, case, device):
            rates = measure(case, variant, args, device)
            print("\n".join(rows(text, variant, rates)), flush=True)


if __name__ == "__main__":
    main()
