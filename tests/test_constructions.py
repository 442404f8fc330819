"""Constructions on real image bases, read from small files fabricated in the on-disk formats.

Each defining property is recomputed from the fabricated arrays, not from the construction.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from largelr.datasets.bases import DataMissingError
from largelr.datasets.corruptions import CORRUPTION_NAMES, corrupt
from largelr.checks import defaults
from largelr.datasets import KINDS, build_dataset, load_dataset, missing_data, save_dataset
from largelr.datasets.bases import load_digits_base
from largelr.datasets.constructions import PALETTE, colored_from_base, double_from_base
from largelr.datasets.kind import group_ids, split_generator

DEFAULTS = {name: defaults(kind.params) for name, kind in KINDS.items()}
from test_bases import write_cifar10, write_cifar100, write_mnist
from test_natural import write_celeba, write_imagenet, write_waterbirds

NEW = ("colored_mnist", "double_mnist", "mnist_cifar", "corrupted_cifar10")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def mnist(data_root: Path) -> dict[str, torch.Tensor]:
    """Fabricated MNIST in [0, 1] as the constructions should see it."""
    arrays = write_mnist(data_root, n_train=60, n_test=20)
    return {key: torch.from_numpy(value.astype(np.float32) / 255 if key[0] == "x" else value.astype(np.int64)) for key, value in arrays.items()}


@pytest.fixture(scope="module")
def cifar(data_root: Path) -> dict[str, torch.Tensor]:
    arrays = write_cifar10(data_root, n_train=50, n_test=20)
    return {key: torch.from_numpy(value.reshape(-1, 3, 32, 32).astype(np.float32) / 255 if key[0] == "x" else value) for key, value in arrays.items()}


@pytest.fixture(scope="module")
def build(data_root: Path, mnist: dict, cifar: dict):
    def build_from_files(name: str, seed: int = 0, **params) -> dict:
        return build_dataset(name, {"verify_checksums": False, **params}, data_root, seed)

    return build_from_files


def test_registry_and_defaults() -> None:
    assert set(NEW) <= set(KINDS)
    assert {name: DEFAULTS[name]["rho_train"] for name in NEW} == {
        "colored_mnist": 0.025, "double_mnist": 0.025, "mnist_cifar": 0.1, "corrupted_cifar10": 0.1,
    }
    for name in NEW:
        assert DEFAULTS[name]["download"] is False and DEFAULTS[name]["verify_checksums"] is True
    assert DEFAULTS["corrupted_cifar10"]["severity"] == 4


@pytest.mark.parametrize("name, n_train", [("colored_mnist", 60), ("double_mnist", 60), ("mnist_cifar", 50), ("corrupted_cifar10", 50)])
@pytest.mark.parametrize("rho", [None, 0.2])
def test_exact_train_rho_and_recorded_params(build, name: str, n_train: int, rho: float | None) -> None:
    ds = build(name) if rho is None else build(name, rho_train=rho)
    rho = DEFAULTS[name]["rho_train"] if rho is None else rho
    train, test = ds["train"], ds["test"]
    assert int((train["y"] != train["b"]).sum()) == round(rho * n_train)
    assert ds["params"]["realized_rho_train"] == pytest.approx(round(rho * n_train) / n_train)
    assert ds["params"]["realized_rho_test"] == pytest.approx((test["y"] != test["b"]).double().mean().item())
    assert ds["params"]["realized_rho_test"] > 0.5  # unbiased test: about 0.9
    assert ds["params"]["verify_checksums"] is False and ds["params"]["download"] is False and ds["params"]["seed"] == 0
    assert ds["num_classes"] == ds["num_bias"] == 10 and ds["name"] == name
    assert ds["input_shape"] == list(train["x"].shape[1:]) and train["x"].dtype == torch.float32


def test_colored_mnist_colour_is_the_bias(build, mnist: dict) -> None:
    ds = build("colored_mnist", rho_train=0.2)
    for split in ("train", "test"):
        x, y, b, gray = ds[split]["x"], ds[split]["y"], ds[split]["b"], mnist[f"x_{split}"][:, None]
        assert x.shape == (len(gray), 3, 28, 28) and torch.equal(y, mnist[f"y_{split}"])
        assert (x * (gray == 0)).abs().max() == 0  # background stays black
        strokes = (gray > 0.1).float()
        colour = (x / gray.clamp_min(1e-6) * strokes).sum(dim=(2, 3)) / strokes.sum(dim=(2, 3))
        assert torch.equal(torch.cdist(colour, PALETTE).argmin(dim=1), b)
        assert (colour - PALETTE[b]).abs().max() < 0.05


def nearest_images(queries: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and exact distance to the nearest image for each query."""
    distance = torch.cdist(queries.flatten(1), images.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    return distance.argmin(dim=1), distance.min(dim=1).values


def test_double_mnist_halves(build, mnist: dict) -> None:
    ds = build("double_mnist", rho_train=0.2, core_brightness=0.4, spurious_brightness=0.9)
    mask = ds["spurious_mask"]
    assert list(mask.shape) == [1, 28, 56] and mask[..., 28:].all() and not mask[..., :28].any()
    assert torch.equal(ds["core_mask"], ~mask)
    for split in ("train", "test"):
        x, y, b = ds[split]["x"], ds[split]["y"], ds[split]["b"]
        images, labels = mnist[f"x_{split}"][:, None], mnist[f"y_{split}"]
        assert x.shape == (len(images), 1, 28, 56) and torch.equal(y, labels)
        assert torch.allclose(x[..., :28], 0.4 * images)
        nearest, distance = nearest_images(x[..., 28:] / 0.9, images)  # from the same split
        assert distance.max() < 1e-4 and torch.equal(labels[nearest], b)


def test_mnist_cifar_halves(build, mnist: dict, cifar: dict) -> None:
    ds = build("mnist_cifar", rho_train=0.2)
    spurious, core = ds["spurious_mask"], ds["core_mask"]
    assert list(spurious.shape) == [3, 64, 32] and spurious[:, :32].all() and not spurious[:, 32:].any()
    assert torch.equal(core, ~spurious)
    for split in ("train", "test"):
        x, y, b = ds[split]["x"], ds[split]["y"], ds[split]["b"]
        assert x.shape == (len(cifar[f"x_{split}"]), 3, 64, 32)
        assert torch.equal(y, cifar[f"y_{split}"]) and torch.equal(x[:, :, 32:], cifar[f"x_{split}"])
        # Zeroing the spurious half leaves nothing of the digit and the object untouched.
        masked = x * core
        assert masked[:, :, :32].abs().max() == 0 and torch.equal(masked[:, :, 32:], cifar[f"x_{split}"])
        top = x[:, :, :32]
        assert torch.equal(top[:, 0], top[:, 1]) and torch.equal(top[:, 0], top[:, 2])  # gray in 3 channels
        assert top[:, :, :2].abs().max() == 0 and top[:, :, 30:].abs().max() == 0 and top[..., :2].abs().max() == 0
        nearest, distance = nearest_images(top[:, :1, 2:30, 2:30], mnist[f"x_{split}"][:, None])
        assert distance.max() < 1e-6 and torch.equal(mnist[f"y_{split}"][nearest], b)


@pytest.fixture(scope="module")
def corrupted(build) -> dict:
    return build("corrupted_cifar10", rho_train=0.2, seed=2)


def test_corrupted_cifar10_applies_corruption_b(corrupted: dict, cifar: dict) -> None:
    assert corrupted["spurious_mask"] is None and corrupted["core_mask"] is None
    for split in ("train", "test"):
        x, y, b, clean = corrupted[split]["x"], corrupted[split]["y"], corrupted[split]["b"], cifar[f"x_{split}"]
        assert x.shape == clean.shape and torch.equal(y, cifar[f"y_{split}"])
        assert 0 <= x.min() and x.max() <= 1
        for kind, name in enumerate(CORRUPTION_NAMES):
            members = b == kind
            expected = corrupt(clean[members], name, 4, split_generator(2, f"{split}-corrupt", kind))
            assert torch.equal(x[members], expected), (split, name)


def test_corrupted_cifar10_types_by_their_own_signature(corrupted: dict, cifar: dict) -> None:
    """Properties of four generator-free corruptions at severity 4, checked without the module."""
    x, b, clean = corrupted["train"]["x"], corrupted["train"]["b"], cifar["x_train"]
    kinds = {name: b == CORRUPTION_NAMES.index(name) for name in ("brightness", "contrast", "jpeg", "pixelate")}
    assert all(members.any() for members in kinds.values())
    # brightness: the HSV value (largest channel) rises by 0.2, capped at 1.
    members = kinds["brightness"]
    assert torch.allclose(x[members].amax(dim=1), (clean[members].amax(dim=1) + 0.2).clamp(max=1), atol=1e-5)
    # contrast: deviations from each channel's mean shrink by 0.3.
    members = kinds["contrast"]
    mean = clean[members].mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(x[members] - mean, 0.3 * (clean[members] - mean), atol=1e-5)
    # jpeg: decoded 8-bit pixels.
    values = x[kinds["jpeg"]] * 255
    assert torch.allclose(values, values.round(), atol=1e-3)
    # pixelate: 24 blocks blown up to 32, so 8 rows (and columns) repeat their neighbour.
    pixelated = x[kinds["pixelate"]]
    assert ((pixelated[:, :, 1:] == pixelated[:, :, :-1]).all(dim=(1, 3)).sum(dim=1) == 8).all()
    assert ((pixelated[..., 1:] == pixelated[..., :-1]).all(dim=(1, 2)).sum(dim=1) == 8).all()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_each_corruption_changes_image_keeps_format_and_is_deterministic(images: torch.Tensor, name: str) -> None:
    out = corrupt(images, name, 3, torch.Generator().manual_seed(7))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert 0 <= out.min() and out.max() <= 1
    assert (out - images).abs().mean() > 0.01
    assert torch.equal(out, corrupt(images, name, 3, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, corrupt(images, name, 5, torch.Generator().manual_seed(7)))  # severity matters


@pytest.mark.parametrize("name", ["snow", "frost", "fog", "spatter", "elastic"])
def test_random_corruptions_depend_on_the_generator(images: torch.Tensor, name: str) -> None:
    assert not torch.equal(corrupt(images, name, 3, torch.Generator().manual_seed(1)), corrupt(images, name, 3, torch.Generator().manual_seed(2)))


def test_corruption_types_differ_from_each_other(images: torch.Tensor) -> None:
    outputs = [corrupt(images, name, 4, torch.Generator().manual_seed(0)) for name in CORRUPTION_NAMES]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert (outputs[i] - outputs[j]).abs().mean() > 0.01, (CORRUPTION_NAMES[i], CORRUPTION_NAMES[j])


def test_corrupt_rejects_bad_arguments(images: torch.Tensor) -> None:
    generator = torch.Generator()
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        corrupt(images, "rain", 3, generator)
    with pytest.raises(ValueError, match="severity 6"):
        corrupt(images, "fog", 6, generator)
    with pytest.raises(ValueError, match=r"float images \[N, 3, H, W\]"):
        corrupt(images[:, :1], "fog", 3, generator)
    assert corrupt(images[:0], "snow", 3, generator).shape == (0, 3, 32, 32)


@pytest.mark.parametrize("name", NEW)
def test_same_seed_same_data_and_different_seed_different_data(build, name: str) -> None:
    first, again, other = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    for split in ("train", "test"):
        for key in ("x", "y", "b"):
            assert torch.equal(first[split][key], again[split][key])
        assert not torch.equal(first[split]["x"], other[split]["x"])
        assert not torch.equal(first[split]["b"], other[split]["b"])


def random_base(n_train: int, n_test: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,), generator=generator)
    return (*split(n_train), *split(n_test))


def test_test_bias_is_independent_of_label() -> None:
    ds = colored_from_base("colored_mnist", random_base(100, 20000), DEFAULTS["colored_mnist"], 0)
    test = ds["test"]
    counts = torch.bincount(group_ids(test["y"], test["b"], 10), minlength=100).float()
    assert (counts - 200).abs().max() < 80  # 200 per (class, bias) group, std about 14


@pytest.mark.parametrize("construct, name", [(colored_from_base, "colored_mnist"), (double_from_base, "double_mnist")])
def test_mnist_sized_set_materializes_fast(tmp_path: Path, construct, name: str) -> None:
    """Construction, compact save and load of 60000 + 10000 MNIST-sized images, on 2 threads, within 30 s."""
    base = random_base(60000, 10000)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        start = time.perf_counter()
        ds = construct(name, base, DEFAULTS[name], 0)
        save_dataset(ds, tmp_path / "set.pt")
        loaded = load_dataset(tmp_path / "set.pt")
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert len(loaded["train"]["x"]) == 60000 and int((loaded["train"]["y"] != loaded["train"]["b"]).sum()) == 1500
    assert elapsed <= 30, f"{name}: {elapsed:.1f} s"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"severity": 6}, r"severity = 6.*\[1, 5\]"),
        ({"severity": 0}, r"severity = 0"),
        ({"severity": 2.5}, r"severity = 2.5.*whole number"),
        ({"download": "yes"}, r"download = 'yes'.*true or false"),
        ({"verify_checksums": 1}, r"verify_checksums = 1.*true or false"),
    ],
)
def test_bad_params_are_rejected(data_root: Path, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_dataset("corrupted_cifar10", params, data_root, 0)


@pytest.mark.parametrize("name, folder", [("colored_mnist", "MNIST"), ("double_mnist", "MNIST"), ("mnist_cifar", "MNIST"), ("corrupted_cifar10", "cifar-10-batches-py")])
def test_missing_base_raises_data_missing(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(DataMissingError, match=rf"{tmp_path}.*{folder}.*download: true"):
        build_dataset(name, {}, tmp_path, 0)


@pytest.mark.parametrize("name", NEW)
def test_checksums_are_verified_by_default(build, data_root: Path, name: str) -> None:
    # `build` is only requested so that the fabricated files exist.
    with pytest.raises(DataMissingError, match="official"):
        build_dataset(name, {}, data_root, 0)


# --- any compatible base, plain class-labelled kinds ---------------------------------------


def test_a_construction_takes_any_compatible_base(build) -> None:
    """colored_mnist on the digits base is exactly colored_digits; dominoes take digits on top too."""
    on_digits = build("colored_mnist", base="digits")
    reference = build_dataset("colored_digits", {}, "unused", 0)
    for split in ("train", "test"):
        for key in ("x", "y", "b", "g"):
            assert torch.equal(on_digits[split][key], reference[split][key])
    digits = load_digits_base()
    ds = build("mnist_cifar", digit_base="digits")
    for split, images, labels in (("train", digits[0], digits[1]), ("test", digits[2], digits[3])):
        nearest, distance = nearest_images(ds[split]["x"][:, :1, 2:30, 2:30], images)
        assert distance.max() < 1e-6 and torch.equal(labels[nearest], ds[split]["b"])


@pytest.mark.parametrize("name, write, num_classes", [("cifar10", write_cifar10, 10), ("cifar100", write_cifar100, 100)])
def test_plain_cifar_kinds_have_no_spurious_feature(tmp_path: Path, name: str, write, num_classes: int) -> None:
    arrays = write(tmp_path)
    ds = build_dataset(name, {"verify_checksums": False}, tmp_path, 0)
    assert ds["num_classes"] == ds["num_bias"] == num_classes and ds["spurious_mask"] is None
    for split in ("train", "test"):
        x, y, b = ds[split]["x"], ds[split]["y"], ds[split]["b"]
        assert torch.equal(x.flatten(1), torch.from_numpy(arrays[f"x_{split}"]).float() / 255)
        assert torch.equal(y, torch.from_numpy(arrays[f"y_{split}"]).long()) and torch.equal(b, y)
        assert torch.equal(ds[split]["g"], y * (num_classes + 1))  # g = y * num_bias + b with b = y
    assert ds["params"]["realized_rho_train"] == ds["params"]["realized_rho_test"] == 0.0


@pytest.mark.parametrize("name", ["mnist_cifar", "cifar10", "colored_mnist", "corrupted_cifar10"])
def test_stored_dataset_loads_as_built(build, tmp_path: Path, name: str) -> None:
    """Pixels on the 1/255 grid come back bit for bit; colour noise and corruptions within 2**-12."""
    ds = build(name)
    save_dataset(ds, tmp_path / f"{name}.pt")
    loaded = load_dataset(tmp_path / f"{name}.pt")
    on_grid = name in ("mnist_cifar", "cifar10")
    assert torch.load(tmp_path / f"{name}.pt", weights_only=True)["train"]["x"].dtype == (torch.uint8 if on_grid else torch.float16)
    for split in ("train", "test"):
        x = loaded[split]["x"]
        assert x.dtype == torch.float32
        assert torch.equal(x, ds[split]["x"]) if on_grid else (x - ds[split]["x"]).abs().max() <= 2**-12
        for key in ("y", "b", "g"):
            assert torch.equal(loaded[split][key], ds[split][key])


# --- download routing from the dataset parameters, data availability -----------------------


def test_download_parameter_reaches_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    fetched = []

    def fabricate(dataset) -> None:  # replaces torchvision.datasets.MNIST.download(self)
        fetched.append(dataset.root)
        write_mnist(Path(dataset.root))

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fabricate)
    with pytest.raises(DataMissingError):
        build_dataset("double_mnist", {"verify_checksums": False}, tmp_path, 0)
    assert fetched == []
    ds = build_dataset("double_mnist", {"download": True, "verify_checksums": False}, tmp_path, 0)
    assert fetched == [str(tmp_path.absolute())] and len(ds["train"]["y"]) == 60


def write_natural(kind: str, root: Path) -> None:
    {"celeba": write_celeba, "waterbirds": write_waterbirds, "imagenet": write_imagenet}[kind](root)


FILE_KINDS = [
    # kind, params, writers, names the message must hold, folder relative to the data root
    ("colored_mnist", {}, [write_mnist], ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"], "MNIST/raw"),
    ("double_mnist", {}, [write_mnist], ["train-labels-idx1-ubyte"], "MNIST/raw"),
    ("mnist_cifar", {}, [write_mnist, write_cifar10], ["train-images-idx3-ubyte", "data_batch_5"], "cifar-10-batches-py"),
    ("corrupted_cifar10", {}, [write_cifar10], ["data_batch_1", "test_batch"], "cifar-10-batches-py"),
    ("cifar10", {}, [write_cifar10], ["data_batch_1", "test_batch"], "cifar-10-batches-py"),
    ("cifar100", {}, [write_cifar100], ["train", "test"], "cifar-100-python"),
    ("celeba", {}, [lambda root: write_natural("celeba", root)], ["list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba/"], "celeba"),
    ("waterbirds", {"folder": "wb"}, [lambda root: write_waterbirds(root, folder="wb")], ["metadata.csv"], "wb"),
    ("imagenet", {}, [lambda root: write_natural("imagenet", root)], ["train/", "val/"], "imagenet"),
]


@pytest.mark.parametrize("kind, params, writers, names, folder", FILE_KINDS, ids=[row[0] for row in FILE_KINDS])
def test_missing_data_names_files_and_path_until_they_exist(tmp_path: Path, kind, params, writers, names, folder) -> None:
    message = missing_data(kind, params, str(tmp_path))
    assert message is not None and str((tmp_path / folder).absolute()) in message
    assert all(name in message for name in names)
    for write in writers:
        write(tmp_path)
    assert missing_data(kind, params, str(tmp_path)) is None


def test_missing_data_names_only_the_absent_base_and_trusts_download(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    message = missing_data("mnist_cifar", {}, str(tmp_path))
    assert "CIFAR-10 not found" in message and "MNIST" not in message
    assert missing_data("mnist_cifar", {"download": True}, str(tmp_path)) is None
    assert missing_data("colored_mnist", {"base": "digits"}, str(tmp_path / "empty")) is None


# --- the data command ---------------------------------------------------------------------


def truncate(path: Path, content: bytes) -> None:
    path.write_bytes(content)


@pytest.mark.parametrize("kind, damage, message", [
    ("colored_mnist", lambda root: None, r"MNIST not found: expected .*train-images-idx3-ubyte.*download: true"),
    ("colored_mnist", lambda root: (write_mnist(root), truncate(root / "MNIST/raw/t10k-labels-idx1-ubyte", b"\0\0\x08")),
     r"t10k-labels-idx1-ubyte is corrupt"),
    ("corrupted_cifar10", lambda root: (write_cifar10(root), truncate(root / "cifar-10-batches-py/data_batch_3", b"not a pickle")),
     r"data_batch_3 is corrupt"),
], ids=["missing", "truncated-idx", "not-a-pickle"])
def test_data_command_fails_clearly_and_leaves_no_output(tmp_path: Path, kind: str, damage, message: str) -> None:
    from largelr.cli import main

    damage(tmp_path / "root")
    out = tmp_path / "results" / "data" / "set.pt"
    with pytest.raises(SystemExit) as caught:
        main(["data", "--name", "set", "--kind", kind, "--params", '{"verify_checksums": false}',
              "--data-root", str(tmp_path / "root"), "--out", str(out)])
    assert re.search(message, str(caught.value.code))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_data_command_reports_a_malformed_listing_without_a_traceback(tmp_path: Path) -> None:
    from largelr.cli import main

    write_waterbirds(tmp_path, drop_column="place")
    with pytest.raises(SystemExit, match=r"largelr data: dataset 'wb' \(waterbirds\): .*metadata.csv: missing column\(s\) place"):
        main(["data", "--name", "wb", "--kind", "waterbirds", "--data-root", str(tmp_path), "--out", str(tmp_path / "wb.pt")])
    assert not (tmp_path / "wb.pt").exists()
