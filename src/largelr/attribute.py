"""Attributions: how much of a model's decision rests on the spurious region.

Integrated Gradients and DeepLift (as a check on IG) come from captum. Measures are computed on |attribution| maps
per sample and averaged: the share of attribution mass inside a region mask (the
spurious or the core region, where the dataset knows it; the background, from an oracle
or a DeepLabV3 segmenter, see :mod:`largelr.segment`) and the Shannon entropy of the
normalized map (low entropy = attribution concentrated on few input features).

Hi/lo maps: the test samples that most high-learning-rate models get right and most
low-learning-rate models get wrong (:func:`select_hilo`), with their IG maps averaged
over the seeds of each learning rate (:func:`hilo_maps`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from largelr.config import ANALYSIS_CHOICES
from largelr.data import sample_indices

# ``background`` analysis settings; "auto" means "oracle" where the kind has one, else "none".
BACKGROUND_CHOICES = ANALYSIS_CHOICES["background"]
SEGMENTER_CHOICES = BACKGROUND_CHOICES[3:]
# ``ig_baseline``: the all-zero input, or the mean of the attributed inputs (one image for all).
BASELINE_CHOICES = ANALYSIS_CHOICES["ig_baseline"]


def ig_baseline(x: torch.Tensor, choice: str) -> torch.Tensor | None:
    """The IG baseline for inputs x: None (all zero) or their mean, shaped like one sample."""
    if choice == "zero":
        return None
    if choice == "mean":
        return x.mean(dim=0, keepdim=True)
    raise ValueError(f"analysis ig_baseline = {choice!r} is not allowed; allowed: {list(BASELINE_CHOICES)}")


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    n_steps: int = 20,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    baseline: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG attributions w.r.t. ``target`` from ``baseline`` (default all-zero; one sample's shape or
    x's), with captum's completeness delta."""
    from captum.attr import IntegratedGradients  # captum is heavy; import where used

    model.eval()
    explainer = IntegratedGradients(model)
    attributions, delta = explainer.attribute(
        x,
        baselines=torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x),
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


def sample_test_inputs(dataset: dict[str, Any], indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Test inputs (as fed to the model), labels and bias labels at ``indices``; lazy sets are read here."""
    test = dataset["test"]
    if dataset.get("lazy", False):
        from largelr.natural import LazyImageDataset

        images = LazyImageDataset(dataset, "test")
        x = torch.stack([images[int(i)][0] for i in indices]) if len(indices) else torch.zeros(0, *dataset["input_shape"])
    else:
        x = test["x"][indices]
    return x, test["y"][indices], test["b"][indices]


def unnormalized(x: torch.Tensor, dataset: dict[str, Any]) -> torch.Tensor:
    """Undo the dataset's input normalization (identity for the constructions): pixels in [0, 1]."""
    norm = dataset.get("normalization", {"mean": 0.0, "std": 1.0})
    mean, std = (torch.as_tensor(norm[key], dtype=x.dtype, device=x.device) for key in ("mean", "std"))
    # per-channel lists broadcast over [N, C, H, W]; scalars broadcast anyway
    return x * (std.view(1, -1, 1, 1) if std.dim() else std) + (mean.view(1, -1, 1, 1) if mean.dim() else mean)


def resolve_background(background: str, kind: str, baseline: str = "zero") -> str:
    """The background source for a dataset kind: "none", "oracle" or a segmenter; ValueError if impossible.

    "auto" is the oracle where the kind has one, but not with the zero baseline: oracle
    backgrounds are black, and IG from a black baseline gives black pixels exactly zero
    attribution, so the share would be 0 by construction rather than a measurement.
    """
    from largelr.segment import ORACLE_KINDS

    if background not in BACKGROUND_CHOICES:
        raise ValueError(f"analysis background = {background!r} is not allowed; allowed: {list(BACKGROUND_CHOICES)}")
    if background == "auto":
        return "oracle" if kind in ORACLE_KINDS and baseline != "zero" else "none"
    if background == "oracle" and kind not in ORACLE_KINDS:
        raise ValueError(
            f"analysis background = 'oracle', but dataset kind {kind!r} has no known background; kinds with one: "
            f"{list(ORACLE_KINDS)}. Use a segmenter ({list(SEGMENTER_CHOICES)}), auto or none for this study."
        )
    return background


def background_columns(
    attributions: torch.Tensor, images: torch.Tensor, kind: str, source: str, segmenter: nn.Module | None, input_size: int
) -> dict[str, float]:
    """background_share (mean |attribution| share on background pixels) and background_iou (segmenter vs oracle).

    ``images`` are unnormalized [N, C, H, W]. NaN where a column has no source: share for
    "none", IoU unless both a segmenter and an oracle exist.
    """
    from largelr.segment import ORACLE_KINDS, background_masks, mask_agreement, oracle_background_masks

    oracle = oracle_background_masks(images, kind) if kind in ORACLE_KINDS else None
    if source == "none":
        return {"background_share": math.nan, "background_iou": math.nan}
    if source == "oracle":
        masks, iou = oracle, math.nan
    else:
        if segmenter is None:
            raise ValueError(f"background = {source!r} needs a segmenter (largelr.segment.load_segmenter)")
        masks = background_masks(segmenter, images, input_size=input_size)
        iou = math.nan if oracle is None else mask_agreement(masks, oracle)
    share = region_share(attributions, masks[:, None].to(attributions.device)).nanmean().item()
    return {"background_share": share, "background_iou": iou}


def summarize(
    model: nn.Module,
    dataset: dict[str, Any],
    settings: dict[str, Any],
    device: torch.device,
    kind: str | None = None,
    segmenter: nn.Module | None = None,
) -> dict[str, float]:
    """Attribution measures of ``model`` on a seeded sample of the unbiased test set.

    ``kind`` is the dataset's construction (default: its name), which decides the oracle
    background; ``segmenter`` is required when settings["background"] names one.
    """
    kind = kind or dataset["name"]
    baseline_choice = settings.get("ig_baseline", "zero")
    source = resolve_background(settings.get("background", "none"), kind, baseline_choice)
    idx = sample_indices(len(dataset["test"]["y"]), settings["attribute_samples"], seed=0)
    x, y, _ = sample_test_inputs(dataset, idx)
    x, y = x.to(device), y.to(device)
    if settings["ig_target"] == "true":
        target = y
    else:
        with torch.no_grad():
            target = model(x).argmax(1)
    attributions, delta = integrated_gradients(model, x, target, settings["ig_steps"], settings["ig_method"],
                                               settings["ig_internal_batch_size"], ig_baseline(x, baseline_choice))
    result = {
        "attribution_entropy": attribution_entropy(attributions).nanmean().item(),
        "ig_max_abs_delta": delta.abs().max().item(),
    }
    result.update(_region_shares(attributions, dataset, prefix=""))
    if x.dim() == 4:
        result.update(background_columns(attributions, unnormalized(x, dataset), kind, source, segmenter,
                                         settings.get("segmenter_input_size", 512)))
    elif source != "none":
        raise ValueError(f"analysis background = {source!r} needs image inputs; dataset {dataset['name']!r} has shape "
                         f"{dataset['input_shape']}. Use background: none (or auto) for it.")
    else:
        result.update({"background_share": math.nan, "background_iou": math.nan})
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


def select_hilo(
    correct_low: torch.Tensor,
    correct_high: torch.Tensor,
    low_threshold: float = 0.25,
    high_threshold: float = 0.75,
    max_samples: int | None = None,
) -> torch.Tensor:
    """Test indices right in > high_threshold of high-lr models and < low_threshold of low-lr models.

    ``correct_low`` [seeds_low, N] and ``correct_high`` [seeds_high, N] say whether each model
    got each sample right. The selection is ordered by the gap (fraction right at high lr minus
    at low lr), largest first, ties by index, and cut to ``max_samples``.
    """
    if correct_low.dim() != 2 or correct_high.dim() != 2 or correct_low.shape[1] != correct_high.shape[1]:
        raise ValueError(f"expected [seeds, N] matrices over the same N samples, got shapes "
                         f"{tuple(correct_low.shape)} and {tuple(correct_high.shape)}")
    if len(correct_low) == 0 or len(correct_high) == 0:
        raise ValueError("hi/lo selection needs at least one model at each of the low and high learning rates")
    for name, value in (("hilo_low_threshold", low_threshold), ("hilo_high_threshold", high_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"analysis {name} = {value!r} must lie in [0, 1]")
    low_rate = correct_low.double().mean(0)
    high_rate = correct_high.double().mean(0)
    chosen = torch.nonzero((high_rate > high_threshold) & (low_rate < low_threshold)).flatten()
    # stable sort keeps index order among equal gaps
    order = torch.sort(low_rate[chosen] - high_rate[chosen], stable=True).indices
    return chosen[order][:max_samples]


def hilo_maps(
    models_low: list[nn.Module],
    models_high: list[nn.Module],
    dataset: dict[str, Any],
    settings: dict[str, Any],
    device: torch.device,
    lr_low: float,
    lr_high: float,
) -> dict[str, Any]:
    """The arrays of a hi/lo file: selected test images, labels, indices, seed-mean IG maps and correctness.

    Every model predicts the whole test set; IG (w.r.t. the true label, settings' ig_* keys)
    runs only on the selected samples. Arrays are numpy, as np.savez writes them.
    """
    import numpy as np

    from largelr.prune import predict_test_set

    y_test = dataset["test"]["y"]
    batch_size = settings.get("eval_batch_size", 1000)
    correct = {
        name: torch.stack([predict_test_set(model, dataset, device, batch_size) == y_test for model in models])
        for name, models in (("low", models_low), ("high", models_high))
    }
    indices = select_hilo(correct["low"], correct["high"], settings["hilo_low_threshold"],
                          settings["hilo_high_threshold"], settings["hilo_max_samples"])
    x, y, _ = sample_test_inputs(dataset, indices)
    arrays: dict[str, Any] = {"images": x.float().numpy(), "labels": y.long().numpy(), "indices": indices.long().numpy()}
    for name, models in (("low", models_low), ("high", models_high)):
        total = torch.zeros_like(x, dtype=torch.float64)
        if len(indices):
            for model in models:
                maps, _ = integrated_gradients(model, x.to(device), y.to(device), settings["ig_steps"],
                                               settings["ig_method"], settings["ig_internal_batch_size"],
                                               ig_baseline(x.to(device), settings.get("ig_baseline", "zero")))
                total += maps.double().cpu()
        arrays[f"maps_{name}"] = (total / len(models)).float().numpy()
        arrays[f"correct_{name}"] = correct[name][:, indices].float().mean(0).numpy()
    arrays["lr_low"] = np.float64(lr_low)
    arrays["lr_high"] = np.float64(lr_high)
    return arrays
