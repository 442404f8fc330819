"""Training throughput: this package's engine against a plain torchvision-style loop.

Both arms train the same model (FCN, VGG11-like CNN, ResNet-18) on the same random
colored-MNIST-shaped data (28x28x3, 10 classes) with SGD at batch size 100 for a fixed
number of steps. The engine arm runs ``largelr.train.train_cell`` (data on the device,
batches indexed there, per-step history) and reads its training-only rate (evaluation
time excluded); the baseline arm is the usual torchvision loop: a Dataset that, like
torchvision's MNIST/CIFAR classes, turns one stored uint8 image at a time into a PIL
image and applies ``transforms.Compose([ToTensor(), Normalize(...)])``,
``DataLoader(shuffle=True, batch_size=100)``, ``zero_grad / backward / step``. The arms alternate for ``--rounds`` rounds and the best
round of each is reported, which damps noise from other processes on the machine.

    python benchmarks/train_throughput.py --device cpu --steps 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from largelr.config import TRAIN_DEFAULTS
from largelr.io import resolve_device
from largelr.models import build_model
from largelr.train import BatchOrder, train_cell

SHAPE = (3, 28, 28)
CLASSES = 10
BATCH = 100


class UInt8Images(Dataset):
    """HWC uint8 images served the way torchvision's dataset classes serve them:
    a PIL image per sample, then the usual ToTensor + Normalize transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        from torchvision import transforms

        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index], mode="RGB")), int(self.labels[index])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline_rate(model_name: str, images: np.ndarray, labels: np.ndarray, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = build_model(model_name, list(SHAPE), CLASSES, {}).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(UInt8Images(images, labels), batch_size=BATCH, shuffle=True, pin_memory=device.type == "cuda")
    done = 0
    synchronize(device)
    started = time.perf_counter()
    while done < steps:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    synchronize(device)
    return steps * BATCH / (time.perf_counter() - started)


def loader_rate(images: np.ndarray, labels: np.ndarray, steps: int) -> float:
    """Batches per second of the baseline's input pipeline alone (no model)."""
    loader = DataLoader(UInt8Images(images, labels), batch_size=BATCH, shuffle=True)
    started, done = time.perf_counter(), 0
    while done < steps:
        for _ in loader:
            done += 1
            if done == steps:
                break
    return steps * BATCH / (time.perf_counter() - started)


def indexing_rate(x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device) -> float:
    """Batches per second of the engine's input path alone: a permutation indexed on the device."""
    order = BatchOrder(len(y), BATCH, seed=0)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        idx = order.next().to(device)
        x.index_select(0, idx), y.index_select(0, idx)
    synchronize(device)
    return steps * BATCH / (time.perf_counter() - started)


def engine_rate(model_name: str, dataset: dict, steps: int, device: torch.device) -> float:
    train = TRAIN_DEFAULTS | {"lr": 0.01, "batch_size": BATCH, "max_steps": steps, "eval_every": steps,
                              "target_train_acc": 1.1}
    spec = {"study": "benchmark", "dataset": "random", "model": model_name, "knob": "lr", "value": 0.01, "seed": 0,
            "train": train, "model_params": {}}
    _, _, summary = train_cell(spec, dataset, device, log=lambda line: None)
    return summary["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--steps", type=int, default=100, help="training steps per arm and round")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each arm is reported")
    parser.add_argument("--models", nargs="+", default=["fcn", "cnn", "resnet18"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, as `largelr train --threads` (default 1; 0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=(args.samples, SHAPE[1], SHAPE[2], SHAPE[0]), dtype=np.uint8)
    labels = generator.integers(0, CLASSES, size=args.samples)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous()
    y = torch.from_numpy(labels)
    dataset = {"name": "random", "train": {"x": x, "y": y, "b": y}, "test": {"x": x[:1000], "y": y[:1000], "b": y[:1000]},
               "num_classes": CLASSES, "num_bias": CLASSES, "input_shape": list(SHAPE), "spurious_mask": None}
    print(f"device={device} steps={args.steps} batch={BATCH} samples={args.samples} threads={torch.get_num_threads()}")
    print(f"data only: dataloader={loader_rate(images, labels, args.steps):.0f} img/s "
          f"indexing={indexing_rate(x.to(device), y.to(device), args.steps, device):.0f} img/s")
    for name in args.models:
        engine, baseline = [], []
        for _ in range(args.rounds):
            engine.append(engine_rate(name, dataset, args.steps, device))
            baseline.append(baseline_rate(name, images, labels, args.steps, device))
        print(f"{name} engine={max(engine):.0f} baseline={max(baseline):.0f} speedup={max(engine) / max(baseline):.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
