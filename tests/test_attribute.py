import math

import pytest
import torch
from torch import nn

from largelr.analyses.attribute import (
    COLUMNS,
    attribution_entropy,
    background_columns,
    background_notice,
    deeplift,
    integrated_gradients,
    region_share,
    resolve_background,
    run,
    unnormalized,
)
from largelr.analyses.segment import torchvision_weights_path
from largelr.config import AnalysisSettings
from largelr.evaluate import sample_indices
from largelr.models import build_model

ANALYSIS_DEFAULTS = dict(AnalysisSettings())
MOBILENET = "deeplabv3_mobilenet_v3_large"


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub cache with no weights in it (TORCH_HOME moves the hub directory)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub"


def cache(name: str) -> None:
    """Put a stand-in weights file where the torch hub cache keeps segmenter ``name``'s weights."""
    path = torchvision_weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stand-in")


def summarize(model, dataset, settings, device, segmenter=None) -> dict:
    """The attribute table's one row, as a dict."""
    return run(model, dataset, AnalysisSettings(settings), device, segmenter=segmenter).iloc[0].to_dict()


def test_region_share_by_hand():
    attributions = torch.tensor([[1.0, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([False, False, True, True])
    share = region_share(attributions, mask)
    assert share[0].item() == pytest.approx(0.5, rel=1e-12)  # |2| / (1 + 1 + 2), float64 sums
    assert math.isnan(share[1].item())


def test_background_share_of_an_all_background_mask_is_one():
    attributions = torch.randn(5, 3, 4, 4)
    assert torch.allclose(
        region_share(attributions, torch.ones(3, 4, 4, dtype=torch.bool)), torch.ones(5, dtype=torch.float64)
    )


def test_entropy_of_uniform_and_one_hot_maps():
    d = 8
    uniform = torch.full((1, d), -3.0)
    one_hot = torch.zeros(1, d)
    one_hot[0, 5] = 2.0
    assert abs(attribution_entropy(uniform).item() - math.log(d)) < 1e-12
    assert abs(attribution_entropy(one_hot).item()) < 1e-12


def test_ig_of_a_linear_model_is_weight_times_input():
    model = nn.Linear(4, 2, bias=False)
    x = torch.randn(3, 4)
    target = torch.tensor([0, 1, 1])
    attributions, _ = integrated_gradients(model, x, target, n_steps=5)
    expected = model.weight.detach()[target] * x
    assert torch.allclose(attributions, expected, atol=1e-6)


def test_ig_completeness_on_a_relu_network():
    torch.manual_seed(0)
    model = build_model("fcn", [10], 3, {"depth": 2, "width": 16})
    x = torch.randn(6, 10)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    attributions, delta = integrated_gradients(model, x, target, n_steps=64)
    with torch.no_grad():
        gap = model(x)[range(6), target] - model(torch.zeros_like(x))[range(6), target]
    total = attributions.flatten(1).sum(1)
    assert torch.allclose(total - gap, -delta, atol=1e-5) or torch.allclose(total - gap, delta, atol=1e-5)
    assert (total - gap).abs().max() < 0.05 * gap.abs().max() + 1e-4


def test_sample_indices_are_fixed_and_distinct():
    a, b = sample_indices(100, 30, seed=0), sample_indices(100, 30, seed=0)
    assert torch.equal(a, b) and len(set(a.tolist())) == 30
    assert len(sample_indices(10, 30, seed=0)) == 10


def test_deeplift_of_a_linear_model_is_weight_times_input():
    model = nn.Linear(4, 2, bias=False)
    x = torch.randn(3, 4)
    target = torch.tensor([0, 1, 1])
    expected = model.weight.detach()[target] * x
    assert torch.allclose(deeplift(model, x, target), expected, atol=1e-6)


def test_deeplift_sums_to_the_output_difference_on_relu_networks():
    torch.manual_seed(0)
    for name, shape, params in (("fcn", [10], {"depth": 3, "width": 16}), ("cnn", [1, 8, 8], {"width": 0.05})):
        model = build_model(name, shape, 3, params)
        x = torch.randn(6, *shape)
        target = torch.tensor([0, 1, 2, 0, 1, 2])
        with torch.no_grad():
            gap = model(x)[range(6), target] - model(torch.zeros_like(x))[range(6), target]
        total = deeplift(model, x, target).flatten(1).sum(1)
        assert torch.allclose(total, gap, atol=1e-5, rtol=1e-4), name


def test_summarize_without_the_deeplift_key_keeps_its_outputs(toy_dataset):
    model = build_model("fcn", toy_dataset["input_shape"], 2, {"depth": 2, "width": 8})
    result = summarize(model, toy_dataset, ANALYSIS_DEFAULTS | {"attribute_samples": 8}, torch.device("cpu"))
    assert (
        list(result)
        == list(COLUMNS)
        == [
            "attribution_entropy",
            "ig_max_abs_delta",
            "spurious_share",
            "core_share",
            "noise_share",
            "background_share",
            "background_iou",
            "deeplift_spurious_share",
            "deeplift_core_share",
            "deeplift_noise_share",
            "spurious_share_raw",
            "spurious_share_normalized",
            "core_share_raw",
            "core_share_normalized",
            "noise_share_raw",
            "noise_share_normalized",
        ]
    )
    assert result["spurious_share"] == result["spurious_share_normalized"]  # exact: the default reading, copied
    assert math.isnan(result["noise_share"])  # the toy set has no noise mask
    assert all(math.isnan(result[f"deeplift_{region}_share"]) for region in ("spurious", "core", "noise"))
    # a vector dataset has no background: auto resolves to none, the columns are NaN
    assert math.isnan(result["background_share"]) and math.isnan(result["background_iou"])
    with pytest.raises(ValueError, match="needs image inputs"):
        summarize(
            model,
            toy_dataset,
            ANALYSIS_DEFAULTS | {"attribute_samples": 8, "background": "smp"},
            torch.device("cpu"),
            segmenter=nn.Identity(),
        )


def test_summarize_adds_deeplift_shares_when_asked(toy_dataset):
    model = build_model("fcn", toy_dataset["input_shape"], 2, {"depth": 2, "width": 8})
    settings = ANALYSIS_DEFAULTS | {"attribute_samples": 8, "deeplift": True}
    result = summarize(model, toy_dataset, settings, torch.device("cpu"))
    # the toy masks split the input in two, so the shares of the two regions add up to one
    assert result["deeplift_spurious_share"] + result["deeplift_core_share"] == pytest.approx(1.0)
    assert math.isnan(result["deeplift_noise_share"])
    result = summarize(model, hand_masked_dataset(toy_dataset), settings, torch.device("cpu"))
    shares = [result[f"deeplift_{region}_share"] for region in ("spurious", "core", "noise")]
    assert sum(shares) == pytest.approx(1.0) and all(0 <= share <= 1 for share in shares)
    without_masks = {k: v for k, v in toy_dataset.items() if not k.endswith("_mask")}
    result = summarize(model, without_masks, settings, torch.device("cpu"))
    assert math.isnan(result["deeplift_spurious_share"]) and math.isnan(result["deeplift_core_share"])


def test_background_resolution_follows_the_dataset_trait(empty_hub):
    assert resolve_background("auto", True, "mean") == "oracle"
    assert resolve_background("auto", False, "mean") == "none"
    assert resolve_background("oracle", True, "zero") == "oracle"  # asked for explicitly
    assert resolve_background("deeplabv3_resnet50", False) == "deeplabv3_resnet50"
    with pytest.raises(ValueError, match="no known background"):
        resolve_background("oracle", False)
    with pytest.raises(ValueError, match="allowed"):
        resolve_background("grabcut", False)


def test_black_canvas_kinds_carry_the_oracle_trait_under_any_config_name():
    from largelr.datasets import KINDS, build_dataset

    assert {name for name, kind in KINDS.items() if kind.oracle_background} == {
        "colored_digits",
        "colored_mnist",
        "double_digits",
        "double_mnist",
        "moon_star",
        "colored_fashion_mnist",
        "double_fashion_mnist",
    }
    # a config name other than the kind (tiny_moon_star in config.yaml) keeps the kind's traits
    dataset = build_dataset(
        "moon_star", {"image_size": 16, "n_train": 20, "n_test": 20}, "unused", 0, name="tiny_moon_star"
    )
    assert dataset["name"] == "tiny_moon_star" and dataset["kind"] == "moon_star"
    assert dataset["traits"]["oracle_background"]
    torch.manual_seed(0)
    model = build_model("cnn", dataset["input_shape"], 2, {"width": 0.05})
    result = summarize(
        model,
        dataset,
        ANALYSIS_DEFAULTS | {"attribute_samples": 4, "ig_steps": 4, "ig_baseline": "mean"},
        torch.device("cpu"),
    )
    assert 0.0 < result["background_share"] < 1.0  # auto = the oracle: measured, not NaN


def stroke_images() -> torch.Tensor:
    """Two 3x4x4 images on black: a red stroke at row 1 (cols 1, 2) and a faint grey pixel at (3, 3)."""
    images = torch.zeros(2, 3, 4, 4)
    images[0, 0, 1, 1:3] = 1.0
    images[1, :, 3, 3] = 0.2
    return images


def test_oracle_background_share_by_hand():
    images = stroke_images()
    uniform = torch.ones_like(images)
    result = background_columns(uniform, images, True, "oracle", None, input_size=32)
    # uniform attribution: share = background pixels / all pixels = (14/16 + 15/16) / 2
    assert result["background_share"] == pytest.approx((14 / 16 + 15 / 16) / 2)
    assert math.isnan(result["background_iou"])
    on_strokes = images.clone()  # attribution exactly on the strokes: nothing on the background
    assert background_columns(on_strokes, images, True, "oracle", None, 32)["background_share"] == pytest.approx(
        0.0, abs=1e-12
    )
    # a colour channel that is zero inside a stroke does not make the stroke background
    only_blue = torch.zeros_like(images)
    only_blue[0, 2, 1, 1] = 5.0
    only_blue[1, 2] = 1.0
    assert background_columns(only_blue, images, True, "oracle", None, 32)["background_share"] == pytest.approx(
        (0.0 + 15 / 16) / 2
    )


def test_no_background_source_gives_nan_columns():
    images = stroke_images()
    result = background_columns(torch.ones_like(images), images, False, "none", None, 32)
    assert math.isnan(result["background_share"]) and math.isnan(result["background_iou"])


def test_unnormalized_undoes_per_channel_and_scalar_normalization():
    x = torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1)
    norm = {"mean": [0.5, 0.4, 0.3], "std": [0.1, 0.2, 0.4]}
    assert unnormalized(x, {"normalization": norm}).flatten().tolist() == pytest.approx([0.6, 0.2, 0.5])
    # x * 1 + 0 in float32: a real slip (a wrong mean or std) moves a value by 0.1 or more
    torch.testing.assert_close(unnormalized(x, {"normalization": {"mean": 0.0, "std": 1.0}}), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(unnormalized(x, {}), x, atol=1e-6, rtol=0)


def test_zero_baseline_gives_black_pixels_no_attribution_and_the_mean_baseline_does():
    from largelr.analyses.attribute import ig_baseline

    torch.manual_seed(0)
    model = build_model("cnn", [3, 4, 4], 2, {"width": 0.05})
    x = stroke_images()
    target = torch.tensor([0, 1])
    black = x.amax(1, keepdim=True).expand_as(x) == 0
    zero_maps, _ = integrated_gradients(model, x, target, n_steps=8)
    # zero by construction (x - baseline = 0 there); this tiny CNN's real attributions are about 1e-6
    assert zero_maps[black].abs().max() < 1e-12
    baseline = ig_baseline(x, "mean")
    # exact: ig_baseline is this very reduction, x.mean over dim 0 (keepdim only adds the axis)
    assert baseline.shape == (1, 3, 4, 4) and torch.equal(baseline[0], x.mean(0))
    mean_maps, delta = integrated_gradients(model, x, target, n_steps=64, baseline=baseline)
    assert (mean_maps[black] != 0).any()
    # completeness from the mean baseline: the maps sum to f(x) - f(baseline)
    with torch.no_grad():
        gap = model(x)[range(2), target] - model(baseline.expand_as(x))[range(2), target]
    assert torch.allclose(mean_maps.flatten(1).sum(1), gap, atol=1e-4 + delta.abs().max().item())
    assert ig_baseline(x, "zero") is None
    with pytest.raises(ValueError, match="ig_baseline"):
        ig_baseline(x, "blur")


def test_auto_background_needs_a_non_zero_baseline_for_the_oracle(empty_hub):
    assert resolve_background("auto", True, "zero") == "none"
    assert resolve_background("auto", True, "mean") == "oracle"


def test_auto_background_uses_the_auto_segmenter_where_its_weights_are_cached(empty_hub, tmp_path):
    assert resolve_background("auto", False, "mean") == "none"  # nothing cached yet
    cache(MOBILENET)
    assert str(torchvision_weights_path(MOBILENET)).startswith(str(empty_hub))
    assert resolve_background("auto", False, "mean") == MOBILENET  # natural images
    assert resolve_background("auto", True, "zero") == MOBILENET  # black canvas, zero baseline: no oracle
    assert resolve_background("auto", True, "mean") == "oracle"  # the oracle comes first
    assert resolve_background("auto", False, "mean", image=False) == "none"  # flat inputs have no background
    assert resolve_background("auto", False, "mean", auto_segmenter="none") == "none"
    assert resolve_background("auto", False, "mean", auto_segmenter="deeplabv3_resnet50") == "none"  # not cached
    checkpoint = tmp_path / "smp.pt"
    assert resolve_background("auto", False, "mean", auto_segmenter="smp", checkpoint=str(checkpoint)) == "none"
    checkpoint.write_bytes(b"stand-in")
    assert resolve_background("auto", False, "mean", auto_segmenter="smp", checkpoint=str(checkpoint)) == "smp"
    with pytest.raises(ValueError, match="auto_segmenter"):
        resolve_background("auto", False, auto_segmenter="oracle")


def hand_masked_dataset(toy_dataset: dict) -> dict:
    """The toy set with hand-made regions: core = feature 0, noise = features 1-4, spurious = feature 5."""
    core = torch.tensor([True, False, False, False, False, False])
    spurious = torch.tensor([False, False, False, False, False, True])
    return toy_dataset | {"core_mask": core, "spurious_mask": spurious, "noise_mask": ~(core | spurious)}


def test_region_shares_of_a_linear_model_by_hand(toy_dataset):
    dataset = hand_masked_dataset(toy_dataset)
    torch.manual_seed(0)
    model = nn.Linear(6, 2, bias=False)
    settings = ANALYSIS_DEFAULTS | {"attribute_samples": 10, "deeplift": True}
    result = summarize(model, dataset, settings, torch.device("cpu"))
    # IG and DeepLift of a linear model from the zero baseline are both w[target] * x, exactly
    x, y, _ = (dataset["test"][key][sample_indices(len(dataset["test"]["y"]), 10, seed=0)] for key in ("x", "y", "b"))
    magnitude = (model.weight.detach()[y] * x).abs().double()
    total = magnitude.sum(1)
    expected = {
        "core": magnitude[:, 0] / total,
        "noise": magnitude[:, 1:5].sum(1) / total,
        "spurious": magnitude[:, 5] / total,
    }
    for region, share in expected.items():
        assert result[f"{region}_share"] == pytest.approx(share.mean().item(), rel=1e-5)
        assert result[f"deeplift_{region}_share"] == pytest.approx(share.mean().item(), rel=1e-5)
    assert result["core_share"] + result["noise_share"] + result["spurious_share"] == pytest.approx(1.0)


def test_auto_loads_the_cached_segmenter_itself_and_measures_the_background(empty_hub, monkeypatch):
    from largelr.analyses import segment

    class AllBackground(nn.Module):
        """A stand-in segmenter: class 0 (background) wins everywhere."""

        def __init__(self):
            super().__init__()
            self.logits = nn.Parameter(torch.tensor([1.0, 0.0]))

        def forward(self, x):
            return self.logits.view(1, -1, 1, 1).expand(len(x), -1, *x.shape[-2:])

    loaded = []
    monkeypatch.setattr(
        segment, "load_segmenter", lambda name, checkpoint, device: loaded.append(name) or AllBackground()
    )
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(8) % 2
    split = {"x": torch.rand(8, 3, 6, 6, generator=generator), "y": y, "b": 1 - y}
    dataset = {
        "name": "natural",
        "traits": {"worst_group": False, "oracle_background": False},
        "test": split,
        "input_shape": [3, 6, 6],
        "normalization": {"mean": 0.0, "std": 1.0},
    }
    torch.manual_seed(0)
    model = build_model("cnn", [3, 6, 6], 2, {"width": 0.05})
    settings = ANALYSIS_DEFAULTS | {"attribute_samples": 4, "ig_steps": 4, "segmenter_input_size": 8}
    assert math.isnan(summarize(model, dataset, settings, torch.device("cpu"))["background_share"])  # not cached
    assert loaded == []
    cache(MOBILENET)
    result = summarize(model, dataset, settings, torch.device("cpu"))
    assert loaded == [MOBILENET]
    assert result["background_share"] == pytest.approx(1.0)  # every pixel is background
    assert math.isnan(result["background_iou"])  # no oracle to compare with


def study(background: str = "auto", datasets: dict | None = None, **settings) -> dict:
    analysis = ANALYSIS_DEFAULTS | {"background": background} | settings
    return {
        "analysis": analysis,
        "datasets": datasets
        if datasets is not None
        else {
            "cifar10": {"oracle_background": False},
            "parity": {"oracle_background": False, "image": False},
            "colored_mnist": {"oracle_background": True},
        },
    }


def test_background_notice_names_the_outputs_without_a_background_and_the_file(empty_hub):
    studies = {"cifar": study(), "colored": study(ig_baseline="mean"), "off": study("none")}
    notice = background_notice(studies)
    path = torchvision_weights_path(MOBILENET)
    # zero baseline: cifar10 and colored_mnist would use the segmenter; parity is flat; with the mean
    # baseline colored_mnist has its oracle; background: none asks for nothing
    assert "study cifar (cifar10, colored_mnist)" in notice and "study colored (cifar10)" in notice
    assert "parity" not in notice and "study off" not in notice
    assert str(path) in notice and "deeplabv3_mobilenet_v3_large-fc3c493d.pth" in notice
    assert "COCO_WITH_VOC_LABELS_V1" in notice and "--forcerun analyze" in notice
    assert notice.count("\n") == 1  # one line for the missing file, one on rerunning
    cache(MOBILENET)
    assert background_notice(studies) is None
    assert background_notice({"flat": study(datasets={"parity": {"image": False}})}) is None


def test_background_notice_for_explicit_segmenters_and_smp(empty_hub, tmp_path):
    notice = background_notice({"natural": study("deeplabv3_resnet50")})
    assert "study natural will stop" in notice and str(torchvision_weights_path("deeplabv3_resnet50")) in notice
    missing = str(tmp_path / "seg.pt")
    notice = background_notice({"custom": study(auto_segmenter="smp", segmenter_checkpoint=missing)})
    assert "study custom (cifar10, colored_mnist)" in notice and missing in notice
    (tmp_path / "seg.pt").write_bytes(b"stand-in")
    assert background_notice({"custom": study(auto_segmenter="smp", segmenter_checkpoint=missing)}) is None
    assert background_notice({"any": study(auto_segmenter="none")}) is None


def test_deeplift_is_complete_on_resnet18():
    torch.manual_seed(0)
    model = build_model("resnet18", [3, 8, 8], 3, {})
    model.train()(torch.randn(8, 3, 8, 8))  # BatchNorm statistics away from their init
    x = torch.randn(4, 3, 8, 8)
    target = torch.tensor([0, 1, 2, 0])
    attributions = deeplift(model, x, target)
    with torch.no_grad():
        gap = model(x)[range(4), target] - model(torch.zeros_like(x))[range(4), target]
    assert attributions.shape == x.shape
    assert torch.allclose(attributions.flatten(1).sum(1), gap, atol=1e-4, rtol=1e-3)
    assert not model.training


def test_normalized_share_on_a_hand_made_map():
    from largelr.analyses.attribute import normalized_map, region_share

    # one sample, 2 channels of 2x2 pixels; summed over channels the pixels are [[6, -3], [1, 0]]
    attributions = torch.tensor([[[[4.0, -1.0], [0.5, 0.0]], [[2.0, -2.0], [0.5, 0.0]]]])
    # |.| sorted: 0, 1, 3, 6 (total 10); cumulative 0, 1, 4, 10: the first to reach 9.8 is 10, at value 6,
    # so the threshold is 6 and the map is [[1, 0.5], [1/6, 0]]
    expected = torch.tensor([[[1.0, 0.5], [1 / 6, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(normalized_map(attributions), expected)
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[1, 0, 1] = True  # one channel of the top-right pixel marks the pixel
    total = 1 + 0.5 + 1 / 6
    assert region_share(attributions, mask, "normalized").item() == pytest.approx(0.5 / total)
    # raw: |attribution| per element, the masked element alone: 2 / (4 + 1 + 0.5 + 2 + 2 + 0.5)
    assert region_share(attributions, mask, "raw").item() == pytest.approx(2 / 10)


def test_normalized_map_clips_the_outliers_above_the_threshold():
    from largelr.analyses.attribute import normalized_map

    # flat input: 1 x 98 and one value 300; total 398, 98% = 390.04: reached only by the last (300),
    # so the threshold is 300 and nothing clips
    flat = torch.cat([torch.ones(1, 98), torch.tensor([[300.0]])], dim=1)
    torch.testing.assert_close(normalized_map(flat)[0, -1], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(normalized_map(flat)[0, 0], torch.tensor(1 / 300, dtype=torch.float64))
    # 1 x 99 and one 1.5: total 100.5, 98% = 98.49 is reached at the 99th one (cumulative 99): threshold 1,
    # so the 1.5 clips to 1
    clipped = normalized_map(torch.cat([torch.ones(1, 99), torch.tensor([[1.5]])], dim=1))
    assert clipped.max().item() == 1.0 and clipped.min().item() == 1.0  # exact: 1 / 1 and the clip
    assert torch.equal(normalized_map(torch.zeros(2, 3)), torch.zeros(2, 3, dtype=torch.float64))
