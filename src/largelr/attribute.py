"""Attributions: how much of a model's decision rests on the spurious region.

Integrated Gradients and DeepLift (as a check on IG) come from captum. Measures are computed on |attribution| maps
per sample and averaged: the share of attribution mass inside a region mask (the
spurious or the core region, where the dataset knows it) and the Shannon entropy of
the normalized map (low entropy = attribution concentrated on few input features).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from largelr.data import sample_indices


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    n_steps: int = 20,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG attributions w.r.t. ``target`` from an all-zero baseline, with captum's completeness delta."""
    from captum.attr import IntegratedGradients  # captum is heavy; import where used

    model.eval()
    explainer = IntegratedGradients(model)
    attributions, delta = explainer.attribute(
        x,
        baselines=torch.zeros_like(x),
        target=target,
        n_steps=n_steps,
        method=method,
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
    return attributions.detach(), delta.detach()


def deeplift(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DeepLift (rescale rule) attributions w.r.t. ``target`` from an all-zero baseline.

    They sum to f(x)[target] - f(0)[target] up to float error. captum hooks every
    nn.ReLU module, so each ReLU must be its own module, used once (true for FCN and VGGLike).
    """
    from captum.attr import DeepLift  # captum is heavy; import where used

    model.eval()
    attributions = DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=target)
    return attributions.detach()


def region_share(attributions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample: |attribution| mass inside ``mask`` over the total mass (nan where the total is 0).

    ``mask`` broadcasts against ``attributions``: one sample's shape for a mask shared by all
    samples, or e.g. [N, 1, H, W] for per-sample masks such as segmenter backgrounds.
    """
    magnitude = attributions.abs().double()
    inside = (magnitude * mask.to(magnitude.device)).flatten(1).sum(1)
    total = magnitude.flatten(1).sum(1)
    return torch.where(total > 0, inside / total, torch.full_like(total, math.nan))


def attribution_entropy(attributions: torch.Tensor) -> torch.Tensor:
    """Per sample: Shannon entropy (nats) of |attribution| normalized to a distribution."""
    magnitude = attributions.abs().flatten(1).double()
    total = magnitude.sum(1, keepdim=True)
    p = magnitude / total.clamp_min(torch.finfo(torch.float64).tiny)
    entropy = -torch.special.xlogy(p, p).sum(1)
    return torch.where(total.squeeze(1) > 0, entropy, torch.full_like(entropy, math.nan))


def summarize(model: nn.Module, dataset: dict[str, Any], settings: dict[str, Any], device: torch.device) -> dict[str, float]:
    """Attribution measures of ``model`` on a seeded sample of the unbiased test set."""
    test = dataset["test"]
    idx = sample_indices(len(test["y"]), settings["attribute_samples"], seed=0)
    x, y = test["x"][idx].to(device), test["y"][idx].to(device)
    if settings["ig_target"] == "true":
        target = y
    else:
        with torch.no_grad():
            target = model(x).argmax(1)
    attributions, delta = integrated_gradients(
        model, x, target, settings["ig_steps"], settings["ig_method"], settings["ig_internal_batch_size"]
    )
    result = {
        "attribution_entropy": attribution_entropy(attributions).nanmean().item(),
        "ig_max_abs_delta": delta.abs().max().item(),
    }
    result.update(_region_shares(attributions, dataset, prefix=""))
    if settings.get("deeplift", False):
        result.update(_region_shares(deeplift(model, x, target), dataset, prefix="deeplift_"))
    return result


def _region_shares(attributions: torch.Tensor, dataset: dict[str, Any], prefix: str) -> dict[str, float]:
    """Mean spurious / core share of ``attributions``; nan for a region the dataset has no mask for."""
    shares = {}
    for region in ("spurious", "core"):
        mask = dataset.get(f"{region}_mask")
        share = math.nan if mask is None else region_share(attributions, mask).nanmean().item()
        shares[f"{prefix}{region}_share"] = share
    return shares
