"""Dataset constructions: checked against properties recomputed independently from the inputs."""

from __future__ import annotations

import math

import pytest
import torch

from largelr.datasets import KINDS, build_dataset, load_dataset, missing_data, save_dataset
from largelr.datasets.bases import load_digits_base
from largelr.datasets.constructions import PALETTE
from largelr.datasets.kind import assign_bias, group_ids, unbiased_bias
from largelr.datasets.synthetic import draw_moons, draw_stars

SMALL = {
    "parity": {"core_bits": 6, "spurious_bits": 3, "noise_bits": 4, "n_train": 401, "n_test": 300},
    "moon_star": {"image_size": 24, "n_train": 201, "n_test": 100},
    "colored_digits": {},
    "double_digits": {},
}


def build(name: str, seed: int = 0, **overrides) -> dict:
    return build_dataset(name, {**SMALL[name], **overrides}, "unused", seed)


@pytest.fixture(scope="module")
def parity() -> dict:
    return build("parity", rho_train=0.1)


@pytest.fixture(scope="module")
def moon_star() -> dict:
    return build("moon_star", rho_train=0.2)


@pytest.fixture(scope="module")
def colored() -> dict:
    return build("colored_digits", rho_train=0.05)


@pytest.fixture(scope="module")
def double() -> dict:
    return build("double_digits", rho_train=0.05)


@pytest.fixture(scope="module")
def digits_base() -> tuple[torch.Tensor, ...]:
    return load_digits_base()


def test_registry_names() -> None:
    assert {"parity", "moon_star", "colored_digits", "double_digits"} <= set(KINDS)


def test_group_ids() -> None:
    y, b = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 2, 1, 0])
    assert group_ids(y, b, 3).tolist() == [0, 2, 4, 6]


@pytest.mark.parametrize(
    "n, rho, num_bias", [(10, 0.0, 2), (10, 0.15, 2), (101, 0.1, 2), (1000, 0.025, 10), (37, 1.0, 3), (999, 0.5, 5)]
)
def test_assign_bias_exact_conflicting_count(n: int, rho: float, num_bias: int) -> None:
    y = torch.arange(n) % num_bias
    b = assign_bias(y, rho, num_bias, torch.Generator().manual_seed(1))
    assert int((b != y).sum()) == round(rho * n)
    assert b.dtype == torch.int64 and b.min() >= 0 and b.max() < num_bias


def test_assign_bias_conflicting_labels_cover_other_values() -> None:
    y = torch.zeros(3000, dtype=torch.long)
    b = assign_bias(y, 0.5, 4, torch.Generator().manual_seed(0))
    counts = torch.bincount(b[b != y], minlength=4)
    assert counts[0] == 0 and (counts[1:] > 400).all()  # about 500 each, never y itself


def test_unbiased_bias_is_independent_of_label() -> None:
    generator = torch.Generator().manual_seed(0)
    b = unbiased_bias(20000, 4, generator)
    y = torch.randint(0, 4, (20000,), generator=generator)
    counts = torch.bincount(group_ids(y, b, 4), minlength=16).float()
    assert (counts - 20000 / 16).abs().max() < 200
    assert abs((b != y).float().mean().item() - 0.75) < 0.02


def parity_from_product(bits: torch.Tensor) -> torch.Tensor:
    """1 when the product of the +-1 bits is -1 (an odd number of -1 entries)."""
    return (bits.prod(dim=1) < 0).long()


def test_parity_labels_and_bias_follow_the_bits(parity: dict) -> None:
    """x = [6 core bits, 3 spurious bits, 4 noise bits]: y from the first block, b from the second."""
    for split in ("train", "test"):
        data = parity[split]
        assert data["x"].shape == (len(data["y"]), 13)
        assert set(data["x"].unique().tolist()) <= {-1.0, 1.0}
        assert torch.equal(data["y"], parity_from_product(data["x"][:, :6]))
        assert torch.equal(data["b"], parity_from_product(data["x"][:, 6:9]))
    assert int((parity["train"]["y"] != parity["train"]["b"]).sum()) == round(0.1 * 401)
    assert int((parity["test"]["y"] != parity["test"]["b"]).sum()) == 150
    assert parity["params"]["realized_rho_test"] == pytest.approx(0.5, rel=1e-12)  # 150 / 300 as a float64 mean


def test_parity_masks_partition_features(parity: dict) -> None:
    spurious, core, noise = parity["spurious_mask"], parity["core_mask"], parity["noise_mask"]
    assert parity["input_shape"] == [13]
    assert core.tolist() == [True] * 6 + [False] * 7
    assert spurious.tolist() == [False] * 6 + [True] * 3 + [False] * 4
    assert noise.tolist() == [False] * 9 + [True] * 4
    assert core.dtype == spurious.dtype == noise.dtype == torch.bool


def test_parity_without_noise_bits_has_no_noise_mask_and_the_same_other_bits(parity: dict) -> None:
    """Noise bits come from their own stream: dropping them leaves the core and spurious bits as they were."""
    plain = build("parity", rho_train=0.1, noise_bits=0)
    assert plain["input_shape"] == [9] and plain["noise_mask"] is None
    assert torch.equal(plain["core_mask"], ~plain["spurious_mask"])
    for split in ("train", "test"):  # exact: +-1 bits from the same streams
        assert torch.equal(plain[split]["x"], parity[split]["x"][:, :9])
        assert torch.equal(plain[split]["b"], parity[split]["b"])


def test_parity_noise_bits_are_uniform_and_independent_of_y_and_b() -> None:
    """Within each (y, b) group every noise bit is +1 about half the time (4000 samples: std about 0.016
    per group of 1000, and 0.05 for the BC groups of about 100 in training)."""
    ds = build("parity", n_train=4000, n_test=4000, rho_train=0.1)
    for split in ("train", "test"):
        x, y, b = ds[split]["x"], ds[split]["y"], ds[split]["b"]
        noise = x[:, 9:]
        assert set(noise.unique().tolist()) == {-1.0, 1.0}
        for group_y in (0, 1):
            for group_b in (0, 1):
                members = (y == group_y) & (b == group_b)
                share = (noise[members] > 0).float().mean(dim=0)
                assert (share - 0.5).abs().max() < 0.2 if members.sum() < 500 else (share - 0.5).abs().max() < 0.07
        # nor do they copy each other or the other bits
        correlations = torch.corrcoef(x.T).fill_diagonal_(0.0)[9:]
        assert correlations.abs().max() < 0.1


def test_config_parity_entry_has_the_three_regions_the_trial_chose() -> None:
    """config.yaml's `parity` (lr_synthetic, demo): 7 core, 3 spurious, 6 noise bits, as the kind's defaults
    (benchmarks/parity_trial.py); a small draw of it has x = [7 core | 3 spurious | 6 noise]."""
    from pathlib import Path

    import yaml

    from largelr.config import dataset_params

    config = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())
    entry = dataset_params(config, "parity")
    defaults = {key: setting.default for key, setting in KINDS["parity"].params.items()}
    assert {key: entry[key] for key in ("core_bits", "spurious_bits", "noise_bits")} == {
        "core_bits": 7,
        "spurious_bits": 3,
        "noise_bits": 6,
    }
    assert {key: defaults[key] for key in ("core_bits", "spurious_bits", "noise_bits")} == {
        "core_bits": 7,
        "spurious_bits": 3,
        "noise_bits": 6,
    }
    ds = build_dataset("parity", {**entry, "n_train": 50, "n_test": 50}, "unused", 0)
    assert ds["input_shape"] == [16]
    assert [int(ds[f"{region}_mask"].sum()) for region in ("core", "spurious", "noise")] == [7, 3, 6]
    assert torch.equal(ds["train"]["y"], parity_from_product(ds["train"]["x"][:, :7]))


def test_parity_spurious_bits_are_not_constant(parity: dict) -> None:
    # Each parity class has 4 spurious patterns of 3 bits; all should occur.
    spurious = parity["train"]["x"][:, 6:9]
    assert len(torch.unique(spurious, dim=0)) == 8


def test_moon_star_images_are_binary_and_nonempty(moon_star: dict) -> None:
    for split, n in (("train", 201), ("test", 100)):
        x = moon_star[split]["x"]
        assert x.shape == (n, 1, 24, 24) and x.dtype == torch.float32
        assert set(x.unique().tolist()) == {0.0, 1.0}
        assert (x.sum(dim=(1, 2, 3)) >= 5).all()
    assert moon_star["spurious_mask"] is None and moon_star["core_mask"] is None
    assert int((moon_star["train"]["y"] != moon_star["train"]["b"]).sum()) == round(0.2 * 201)
    assert int((moon_star["test"]["y"] != moon_star["test"]["b"]).sum()) == 50


def test_moon_star_object_sits_in_the_quadrant_pair_of_its_bias(moon_star: dict) -> None:
    # b = 0: top-left or bottom-right; b = 1: top-right or bottom-left.
    half = 12
    for split in ("train", "test"):
        x, b = moon_star[split]["x"][:, 0], moon_star[split]["b"]
        rows, cols = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
        area = x.sum(dim=(1, 2))
        centroid_row = (x * rows).sum(dim=(1, 2)) / area
        centroid_col = (x * cols).sum(dim=(1, 2)) / area
        assert torch.equal(((centroid_row >= half) ^ (centroid_col >= half)).long(), b)
        quadrant_pair = (rows >= half) ^ (cols >= half)
        outside = torch.where(b[:, None, None] == 0, quadrant_pair, ~quadrant_pair)
        assert not (x.bool() & outside).any()


def test_star_has_fivefold_symmetry_and_moon_does_not() -> None:
    centre, radius = torch.tensor([[32.0, 32.0]], dtype=torch.float64), torch.tensor([25.0], dtype=torch.float64)
    angle = torch.tensor([0.3], dtype=torch.float64)
    turned = angle + 2 * math.pi / 5
    star, star_turned = draw_stars(64, centre, radius, angle), draw_stars(64, centre, radius, turned)
    moon, moon_turned = draw_moons(64, centre, radius, angle), draw_moons(64, centre, radius, turned)
    assert (star != star_turned).sum() <= 0.02 * star.sum()
    assert (moon != moon_turned).sum() >= 0.5 * moon.sum()
    # A star covers its centre; a crescent has its centre cut away.
    assert star[0, 32, 32] and not moon[0, 32, 32]


def test_moons_and_stars_differ_in_the_dataset(moon_star: dict) -> None:
    x, y = moon_star["train"]["x"], moon_star["train"]["y"]
    assert 0 < int(y.sum()) < len(y)
    moons, stars = {tuple(v.flatten().tolist()) for v in x[y == 0]}, {tuple(v.flatten().tolist()) for v in x[y == 1]}
    assert not moons & stars


def test_digits_base_split_is_stratified_and_fixed(digits_base: tuple[torch.Tensor, ...]) -> None:
    x_train, y_train, x_test, y_test = digits_base
    assert x_train.shape[1:] == (1, 28, 28) and len(x_train) + len(x_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    for label in range(10):
        total = int((y_train == label).sum() + (y_test == label).sum())
        assert int((y_test == label).sum()) == round(0.3 * total)
    again = load_digits_base()
    assert all(torch.equal(a, b) for a, b in zip(digits_base, again))


def test_colored_digits_colour_is_the_bias(colored: dict, digits_base: tuple[torch.Tensor, ...]) -> None:
    grays = {"train": digits_base[0], "test": digits_base[2]}
    for split in ("train", "test"):
        x, b, gray = colored[split]["x"], colored[split]["b"], grays[split]
        assert x.shape == (len(gray), 3, 28, 28)
        assert (x * (gray == 0)).abs().max() < 1e-6  # background stays black (far below a grey level, 4e-3)
        strokes = (gray > 0.1).float()
        colour = (x / gray.clamp_min(1e-6) * strokes).sum(dim=(2, 3)) / strokes.sum(dim=(2, 3))
        nearest = torch.cdist(colour, PALETTE).argmin(dim=1)
        assert torch.equal(nearest, b)
        assert (colour - PALETTE[b]).abs().max() < 0.05


def test_colored_digits_bias_rates(colored: dict) -> None:
    train, test = colored["train"], colored["test"]
    assert int((train["y"] != train["b"]).sum()) == round(0.05 * len(train["y"]))
    assert colored["params"]["realized_rho_test"] == pytest.approx(0.9, abs=0.05)
    counts = torch.bincount(group_ids(test["y"], test["b"], 10), minlength=100)
    assert counts.max() <= 20  # about 5.4 per (class, bias) group when b is independent of y
    assert colored["num_classes"] == colored["num_bias"] == 10


def test_double_digits_halves(double: dict, digits_base: tuple[torch.Tensor, ...]) -> None:
    bases = {"train": digits_base[:2], "test": digits_base[2:]}
    mask = double["spurious_mask"]
    assert list(mask.shape) == [1, 28, 56] and torch.equal(double["core_mask"], ~mask)
    assert mask[..., 28:].all() and not mask[..., :28].any()
    for split in ("train", "test"):
        x, y, b = double[split]["x"], double[split]["y"], double[split]["b"]
        images, labels = bases[split]
        assert x.shape == (len(images), 1, 28, 56) and torch.equal(y, labels)
        core_only = x * ~mask
        assert torch.allclose(core_only[..., :28], 0.5 * images) and core_only[..., 28:].abs().max() < 1e-6
        right = x[..., 28:].flatten(1)
        distance = torch.cdist(right, images.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")  # brightness 1.0
        nearest = distance.argmin(dim=1)
        assert distance.min(dim=1).values.max() < 1e-4
        assert torch.equal(labels[nearest], b)


def test_double_digits_brightness_scales_each_half() -> None:
    ds = build("double_digits", core_brightness=0.25, spurious_brightness=0.75)
    x = ds["train"]["x"]
    assert x[..., :28].max() <= 0.25 + 1e-6
    assert x[..., 28:].max() <= 0.75 + 1e-6 and x[..., 28:].max() > 0.5


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_data_and_different_seed_different_data(name: str) -> None:
    first, again, other = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    for split in ("train", "test"):
        for key in ("x", "y", "b"):
            assert torch.equal(first[split][key], again[split][key])
    assert not torch.equal(first["train"]["x"], other["train"]["x"])
    assert not torch.equal(first["train"]["x"], first["test"]["x"][: len(first["train"]["x"])])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_params_record_construction(name: str) -> None:
    ds = build(name, seed=5)
    assert ds["params"]["seed"] == 5
    assert {"realized_rho_train", "realized_rho_test", "rho_train"} <= set(ds["params"])
    assert ds["input_shape"] == list(ds["train"]["x"].shape[1:])
    assert ds["train"]["y"].dtype == ds["train"]["b"].dtype == torch.int64


def test_unknown_dataset_name_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"'mnist_typo'.*colored_digits.*double_digits.*moon_star.*parity"):
        build_dataset("mnist_typo", {}, "unused", 0)


def test_unknown_param_key_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"'rho'.*allowed keys.*rho_test.*rho_train"):
        build_dataset("parity", {"rho": 0.1}, "unused", 0)


@pytest.mark.parametrize(
    "params", [{"n_train": "100"}, {"n_train": 1.5}, {"rho_train": True}, {"rho_train": 1.5}, {"image_size": 2}]
)
def test_bad_param_values_are_rejected(params: dict) -> None:
    key = next(iter(params))
    with pytest.raises(ValueError, match=key):
        build_dataset("moon_star" if key == "image_size" else "parity", params, "unused", 0)


def test_save_load_round_trip(tmp_path, double: dict) -> None:
    path = tmp_path / "nested" / "double.pt"
    save_dataset(double, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["double.pt", "double.pt.seal"]  # no temporary left
    loaded = load_dataset(path)
    assert torch.load(path, weights_only=True)["params"] == double["params"]
    # Upsampled digits are off the 1/255 grid: stored as float16, back as float32 within 2**-12.
    assert torch.load(path, weights_only=True)["train"]["x"].dtype == torch.float16
    assert loaded["train"]["x"].dtype == torch.float32
    assert (loaded["train"]["x"] - double["train"]["x"]).abs().max() <= 2**-12
    for split in ("train", "test"):
        for key in ("y", "b", "g"):
            assert torch.equal(loaded[split][key], double[split][key])
    assert torch.equal(loaded["spurious_mask"], double["spurious_mask"])
    assert loaded["input_shape"] == [1, 28, 56] and loaded["name"] == "double_digits"


def test_save_does_not_change_the_dataset_in_memory(tmp_path, double: dict) -> None:
    x = double["train"]["x"].clone()
    save_dataset(double, tmp_path / "double.pt")
    assert double["train"]["x"].dtype == torch.float32 and torch.equal(double["train"]["x"], x)
    assert "x_divisor" not in double["train"]


@pytest.mark.parametrize(
    "values, stored_dtype, exact",
    [
        (torch.arange(256, dtype=torch.float32) / 255, torch.uint8, True),  # every gray level, computed as the bases do
        (torch.tensor([0.0, 1.0]), torch.uint8, True),  # binary images
        (torch.tensor([-1.0, 1.0, 3.0]), torch.int8, True),  # parity bits and other small integers
        (torch.tensor([0.0, 0.3, 1 / 3, 0.9999]), torch.float16, False),  # pixels off the grid
        (torch.tensor([-0.5, 0.25]), torch.float32, True),  # neither pixels nor integers: kept as is
        (torch.tensor([0.0, 300.0]), torch.float32, True),  # integers beyond int8
    ],
)
def test_inputs_are_stored_compactly_and_loaded_as_float32(tmp_path, values, stored_dtype, exact) -> None:
    dataset = {
        "name": "t",
        "num_bias": 2,
        "train": {
            "x": values[:, None],
            "y": torch.zeros(len(values), dtype=torch.long),
            "b": torch.zeros(len(values), dtype=torch.long),
        },
    }
    save_dataset(dataset, tmp_path / "t.pt")
    assert torch.load(tmp_path / "t.pt", weights_only=True)["train"]["x"].dtype == stored_dtype
    loaded = load_dataset(tmp_path / "t.pt")["train"]["x"]
    assert loaded.dtype == torch.float32
    if exact:
        assert torch.equal(loaded, values[:, None])
    else:  # float16 has an 11-bit significand: error <= 2**-12 on [0, 1]
        assert 0 < (loaded - values[:, None]).abs().max() <= 2**-12


def test_stored_sizes_shrink(tmp_path, parity: dict, moon_star: dict) -> None:
    """int8 parity bits and uint8 moon-star pixels: a quarter of float32, plus a fixed overhead."""
    for dataset in (parity, moon_star):
        save_dataset(dataset, tmp_path / "d.pt")
        float32_bytes = sum(4 * dataset[split]["x"].numel() for split in ("train", "test"))
        assert (tmp_path / "d.pt").stat().st_size < float32_bytes / 4 + 50_000


@pytest.mark.parametrize("name", list(SMALL))
def test_every_split_stores_group_ids(name: str) -> None:
    dataset = build(name)
    for split in ("train", "test"):
        y, b, g = (dataset[split][key] for key in ("y", "b", "g"))
        expected = torch.tensor([yi * dataset["num_bias"] + bi for yi, bi in zip(y.tolist(), b.tolist())])
        assert torch.equal(g, expected)


def test_group_ids_are_added_when_saving_a_dataset_without_them(tmp_path) -> None:
    y, b = torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 0, 0])
    save_dataset({"name": "t", "num_bias": 2, "train": {"x": torch.zeros(4, 1), "y": y, "b": b}}, tmp_path / "t.pt")
    assert load_dataset(tmp_path / "t.pt")["train"]["g"].tolist() == [1, 3, 2, 0]


@pytest.mark.parametrize("kind", ["parity", "moon_star", "colored_digits", "double_digits"])
def test_offline_kinds_are_never_missing(tmp_path, kind: str) -> None:
    assert missing_data(kind, {}, str(tmp_path / "nothing here")) is None


def test_missing_data_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset kind 'mnist'.*colored_mnist"):
        missing_data("mnist", {}, "data")


def test_digits_constructions_take_the_mnist_base_by_parameter(tmp_path) -> None:
    """`base` picks the gray base; the MNIST base needs files, so its absence is reported with the path."""
    with pytest.raises(FileNotFoundError, match=rf"MNIST not found: .*{tmp_path}"):
        build_dataset("colored_digits", {"base": "mnist"}, tmp_path, 0)
    assert "MNIST" in missing_data("colored_digits", {"base": "mnist"}, str(tmp_path))
    with pytest.raises(ValueError, match=r"base = 'cifar10': allowed: one of \['digits', 'mnist', 'fashion_mnist'\]"):
        build_dataset("double_digits", {"base": "cifar10"}, tmp_path, 0)


def test_every_in_memory_dataset_records_its_normalization():
    for name, params in [
        ("parity", {"n_train": 20, "n_test": 20}),
        ("moon_star", {"n_train": 8, "n_test": 8}),
        ("double_digits", {}),
    ]:
        assert build_dataset(name, params, "data", 0)["normalization"] == {"mean": 0.0, "std": 1.0}
