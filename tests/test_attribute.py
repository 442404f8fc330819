import math

import torch
from torch import nn

from largelr.attribute import attribution_entropy, integrated_gradients, region_share, sample_indices
from largelr.models import build_model


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
