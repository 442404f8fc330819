"""Dataset build, save and load times, file sizes, and JPEG decoding rates.

Fabricates full-sized MNIST (60000/10000) and CIFAR-10 (50000/10000) in their on-disk formats
in a temporary data root, then for every materialized kind prints: build time (read + construct),
save time, load time (``load_dataset``, back to float32), the dtype the inputs are stored in,
the file size, and the size the same inputs would take as float32. The lazy sets' decoding is
measured on fabricated JPEGs: images/s all in PIL (the former reader), PIL decoding with tensor
resizing, and torchvision.io decoding with tensor resizing (the reader used), each including
the resize to ``--image-size``, centre crop and normalization.

    python benchmarks/data_build.py                 # everything, full sizes (about 2 minutes on 2 cores)
    python benchmarks/data_build.py --kinds colored_mnist --jpegs 0
    python benchmarks/data_build.py --scale 0.1     # a tenth of the samples, for a quick look
    python benchmarks/data_build.py --compare-float32 --jpegs 0   # also the former float32 files' times
"""

from __future__ import annotations

import argparse
import pickle
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from largelr.datasets import build_dataset, load_dataset, save_dataset
from largelr.datasets.lazy import IMAGENET_NORMALIZATION, decode_rgb, decode_rgb_pil, resize_and_normalize

KINDS = (
    "parity",
    "moon_star",
    "colored_digits",
    "double_digits",
    "colored_mnist",
    "double_mnist",
    "mnist_cifar",
    "corrupted_cifar10",
    "cifar10",
)
# Fabricated files are not the official release: skip the checksum / official-count checks.
FILE_PARAMS = {"verify_checksums": False}


def write_mnist(root: Path, n_train: int, n_test: int, rng: np.random.Generator) -> None:
    """Sparse random strokes (about 20% of pixels lit, like MNIST) as idx files in root/MNIST/raw."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        lit = rng.random((n, 28, 28)) < 0.2
        images = np.where(lit, rng.integers(1, 256, (n, 28, 28)), 0).astype(np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


def write_cifar10(root: Path, n_train: int, n_test: int, rng: np.random.Generator) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = -(-n_train // 5)
    sizes = {f"data_batch_{i + 1}": min(per_batch, n_train - i * per_batch) for i in range(5)} | {"test_batch": n_test}
    for name, n in sizes.items():
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(n)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)


def float32_bytes(dataset: dict) -> int:
    return sum(4 * dataset[split]["x"].numel() for split in ("train", "val", "test") if split in dataset)


def float32_save_load(dataset: dict, path: Path) -> tuple[float, float]:
    """Save and load times of the dataset as it was stored before compact storage (float32, torch.save)."""
    start = time.perf_counter()
    torch.save(dataset, path)
    saved = time.perf_counter()
    torch.load(path, weights_only=True)
    loaded = time.perf_counter()
    path.unlink()
    return saved - start, loaded - saved


def measure_kind(kind: str, data_root: Path, out_dir: Path, scale: float, compare: bool) -> None:
    params = dict(FILE_PARAMS) if kind not in ("parity", "moon_star") else {}
    if kind in ("parity", "moon_star") and scale != 1:
        params = {"n_train": max(10, int(10000 * scale)), "n_test": max(10, int(2000 * scale))}
    path = out_dir / f"{kind}.pt"
    start = time.perf_counter()
    dataset = build_dataset(kind, params, data_root, seed=0)
    built = time.perf_counter()
    save_dataset(dataset, path)
    saved = time.perf_counter()
    loaded = load_dataset(path)
    done = time.perf_counter()
    stored = torch.load(path, weights_only=True)["train"]["x"].dtype
    assert loaded["train"]["x"].dtype == torch.float32
    n = len(dataset["train"]["y"]) + len(dataset["test"]["y"])
    size = path.stat().st_size
    path.unlink()
    before = "  float32 save {:5.2f} load {:5.2f}".format(*float32_save_load(dataset, path)) if compare else ""
    print(
        f"{kind:18s} {n:6d} {built - start:8.2f} {saved - built:7.2f} {done - saved:7.2f} "
        f"{str(stored).removeprefix('torch.'):>8s} {size / 2**20:9.1f} {float32_bytes(dataset) / 2**20:9.1f}{before}"
    )


def write_jpegs(directory: Path, count: int, size: tuple[int, int], rng: np.random.Generator) -> list[Path]:
    """Photo-like JPEGs (smooth colour fields, quality 90) of (width, height)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        path = directory / f"{i:05d}.jpg"
        Image.fromarray(coarse).resize(size, Image.BILINEAR).save(path, quality=90)
        paths.append(path)
    return paths


def pil_pipeline(path: Path, image_size: int) -> torch.Tensor:
    """Everything in PIL (decode, bilinear resize, crop), then to a normalized tensor."""
    import torchvision.transforms.functional as TF

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    cropped = TF.center_crop(TF.resize(rgb, image_size), image_size)
    return TF.normalize(
        TF.pil_to_tensor(cropped).float() / 255, IMAGENET_NORMALIZATION["mean"], IMAGENET_NORMALIZATION["std"]
    )


def tensor_pipeline(decode):
    """Decode with ``decode``, then resize, crop and normalize on tensors (largelr.datasets.lazy.load_image)."""
    return lambda path, image_size: resize_and_normalize(decode(path), image_size, IMAGENET_NORMALIZATION)


def decoding_rates(pipelines: dict, paths: list[Path], image_size: int, rounds: int = 5) -> dict[str, float]:
    """Best images/s of each pipeline over interleaved rounds (the machine may be shared: best is least disturbed)."""
    for pipeline in pipelines.values():
        pipeline(paths[0], image_size)  # warm up imports
    best = dict.fromkeys(pipelines, 0.0)
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            start = time.perf_counter()
            for path in paths:
                pipeline(path, image_size)
            best[name] = max(best[name], len(paths) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the official sample counts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jpegs", type=int, default=100, help="fabricated JPEGs per size (0: skip decoding)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--compare-float32", action="store_true", help="also time saving/loading as plain float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="largelr-bench-") as temporary:
        data_root, out_dir = Path(temporary) / "data", Path(temporary) / "out"
        out_dir.mkdir(parents=True)
        write_mnist(data_root, int(60000 * args.scale), int(10000 * args.scale), rng)
        write_cifar10(data_root, int(50000 * args.scale), int(10000 * args.scale), rng)
        print(f"torch threads: {args.threads}; times in s, sizes in MiB")
        print(
            f"{'kind':18s} {'N':>6s} {'build':>8s} {'save':>7s} {'load':>7s} {'stored':>8s} {'file':>9s} {'float32':>9s}"
        )
        for kind in args.kinds:
            measure_kind(kind, data_root, out_dir, args.scale, args.compare_float32)
        if args.jpegs:
            torch.set_num_threads(1)  # as in a DataLoader worker
            print(f"decoding + resize to {args.image_size} + crop + normalize, 1 process, images/s:")
            for label, size in (
                ("CelebA-sized 178x218", (178, 218)),
                ("Waterbirds/ImageNet-sized 500x375", (500, 375)),
            ):
                paths = write_jpegs(Path(temporary) / f"jpeg{size[0]}", args.jpegs, size, rng)
                pipelines = {
                    "PIL": pil_pipeline,
                    "PIL decode + tensor resize": tensor_pipeline(decode_rgb_pil),
                    "torchvision.io (used)": tensor_pipeline(decode_rgb),
                }
                rates = decoding_rates(pipelines, paths, args.image_size)
                print(
                    f"  {label}: "
                    + ", ".join(f"{name} {rate:.0f}" for name, rate in rates.items())
                    + f"; torchvision.io / PIL = {rates['torchvision.io (used)'] / rates['PIL']:.2f}"
                )


if __name__ == "__main__":
    main()
