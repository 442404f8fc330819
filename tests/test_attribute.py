import math

import pytest
import torch
from torch import nn

from largelr.analyses.attribute import (
    attribution_entropy,
    background_columns,
    deeplift,
    integrated_gradients,
    region_share,
    resolve_background,
    run,
    unnormalized,
)
from largelr.config import AnalysisSettings
from largelr.evaluate import sample_indices
from largelr.models import build_model

ANALYSIS_DEFAULTS = dict(AnalysisSettings())


def summarize(model, dataset, settings, device, segmenter=None) -> dict:
    """The attribute table's one row, as a dict."""
    return run(model, dataset, AnalysisSettings(settings), device, segmenter=segmenter).iloc[0].to_dict()


def test_region_share_by_hand():
    attributions = torch.tensor([[1.0, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([False, False, True, True])
    share = region_share(attributions, mask)
    assert share[0].item() == 0.5  # |2| / (1 + 1 + 2)
    assert math.isnan(share[1].item())


def test_background_share_of_an_all_background_mask_is_one():
    attributions = torch.randn(5, 3, 4, 4)
    assert torch.allclose(region_share(attributions, torch.ones(3, 4, 4, dtype=torch.bool)), torch.ones(5, dtype=torch.float64))


def test_entropy_of_uniform_and_one_hot_maps():
    d = 8
    uniform = torch.full((1, d), -3.0)
    one_hot = torch.zeros(1, d)
    one_hot[0, 5] = 2.0
    assert abs(attribution_entropy(uniform).item() - math.log(d)) < 1e-12
    assert attribution_entropy(one_hot).item() == 0.0


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
    assert list(result) == ["attribution_entropy", "ig_max_abs_delta", "spurious_share", "core_share",
                            "background_share", "background_iou"]
    # a vector dataset has no background: auto resolves to none, the columns are NaN
    assert math.isnan(result["background_share"]) and math.isnan(result["background_iou"])
    with pytest.raises(ValueError, match="needs image inputs"):
        summarize(model, toy_dataset, ANALYSIS_DEFAULTS | {"attribute_samples": 8, "background": "smp"},
                  torch.device("cpu"), segmenter=nn.Identity())


def test_summarize_adds_deeplift_shares_when_asked(toy_dataset):
    model = build_model("fcn", toy_dataset["input_shape"], 2, {"depth": 2, "width": 8})
    settings = ANALYSIS_DEFAULTS | {"attribute_samples": 8, "deeplift": True}
    result = summarize(model, toy_dataset, settings, torch.device("cpu"))
    # the toy masks split the input in two, so the shares of the two regions add up to one
    assert result["deeplift_spurious_share"] + result["deeplift_core_share"] == pytest.approx(1.0)
    without_masks = {k: v for k, v in toy_dataset.items() if not k.endswith("_mask")}
    result = summarize(model, without_masks, settings, torch.device("cpu"))
    assert math.isnan(result["deeplift_spurious_share"]) and math.isnan(result["deeplift_core_share"])


def test_background_resolution_follows_the_dataset_trait():
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
        "colored_digits", "colored_mnist", "double_digits", "double_mnist", "moon_star"}
    # a config name other than the kind (tiny_moon_star in config.yaml) keeps the kind's traits
    dataset = build_dataset("moon_star", {"image_size": 16, "n_train": 20, "n_test": 20}, "unused", 0,
                            name="tiny_moon_star")
    assert dataset["name"] == "tiny_moon_star" and dataset["kind"] == "moon_star"
    assert dataset["traits"]["oracle_background"]
    torch.manual_seed(0)
    model = build_model("cnn", dataset["input_shape"], 2, {"width": 0.05})
    result = summarize(model, dataset, ANALYSIS_DEFAULTS | {"attribute_samples": 4, "ig_steps": 4,
                                                            "ig_baseline": "mean"}, torch.device("cpu"))
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
    assert background_columns(on_strokes, images, True, "oracle", None, 32)["background_share"] == 0.0
    # a colour channel that is zero inside a stroke does not make the stroke background
    only_blue = torch.zeros_like(images)
    only_blue[0, 2, 1, 1] = 5.0
    only_blue[1, 2] = 1.0
    assert background_columns(only_blue, images, True, "oracle", None, 32)["background_share"] == pytest.approx(
        (0.0 + 15 / 16) / 2)


def test_no_background_source_gives_nan_columns():
    images = stroke_images()
    result = background_columns(torch.ones_like(images), images, False, "none", None, 32)
    assert math.isnan(result["background_share"]) and math.isnan(result["background_iou"])


def test_unnormalized_undoes_per_channel_and_scalar_normalization():
    x = torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1)
    norm = {"mean": [0.5, 0.4, 0.3], "std": [0.1, 0.2, 0.4]}
    assert unnormalized(x, {"normalization": norm}).flatten().tolist() == pytest.approx([0.6, 0.2, 0.5])
    assert torch.equal(unnormalized(x, {"normalization": {"mean": 0.0, "std": 1.0}}), x)
    assert torch.equal(unnormalized(x, {}), x)


def test_zero_baseline_gives_black_pixels_no_attribution_and_the_mean_baseline_does():
    from largelr.analyses.attribute import ig_baseline

    torch.manual_seed(0)
    model = build_model("cnn", [3, 4, 4], 2, {"width": 0.05})
    x = stroke_images()
    target = torch.tensor([0, 1])
    black = x.amax(1, keepdim=True).expand_as(x) == 0
    zero_maps, _ = integrated_gradients(model, x, target, n_steps=8)
    assert (zero_maps[black] == 0).all()
    baseline = ig_baseline(x, "mean")
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


def test_auto_background_needs_a_non_zero_baseline_for_the_oracle():
    assert resolve_background("auto", True, "zero") == "none"
    assert resolve_background("auto", True, "mean") == "oracle"
