"""Attributions: how much of a model's decision rests on the spurious region.

Integrated Gradients and DeepLift (as a check on IG) come from captum. Measures are computed on |attribution| maps
per sample and averaged: the share of attribution mass inside a region mask (the
spurious or the core region, where the dataset knows it; the background, from an oracle
or a DeepLabV3 segmenter, see :mod:`largelr.analyses.segment`) and the Shannon entropy of the
normalized map (low entropy = attribution concentrated on few input features).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
from torch import nn

from largelr.analyses.segment import SEGMENTERS, background_masks, mask_agreement, oracle_background_masks
from largelr.evaluate import test_sample

NAME = "attribute"
# Always present; DeepLift adds deeplift_spurious_share and deeplift_core_share when asked for.
COLUMNS = {name: "float64" for name in ("attribution_entropy", "ig_max_abs_delta", "spurious_share", "core_share",
                                        "background_share", "background_iou")}
# ``background`` analysis settings; "auto" means "oracle" where the dataset has one, else "none".
BACKGROUND_CHOICES = ("auto", "none", "oracle", *SEGMENTERS)
# ``ig_baseline``: the all-zero input, or the mean of the attributed inputs (one image for all).
BASELINE_CHOICES = ("zero", "mean")


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


def unnormalized(x: torch.Tensor, dataset: dict[str, Any]) -> torch.Tensor:
    """Undo the dataset's input normalization (identity for the constructions): pixels in [0, 1]."""
    norm = dataset.get("normalization", {"mean": 0.0, "std": 1.0})
    mean, std = (torch.as_tensor(norm[key], dtype=x.dtype, device=x.device) for key in ("mean", "std"))
    # per-channel lists broadcast over [N, C, H, W]; scalars broadcast anyway
    return x * (std.view(1, -1, 1, 1) if std.dim() else std) + (mean.view(1, -1, 1, 1) if mean.dim() else mean)


def resolve_background(background: str, has_oracle: bool, baseline: str = "zero") -> str:
    """The background source for a dataset: "none", "oracle" or a segmenter; ValueError if impossible.

    "auto" is the oracle where the dataset has one (trait ``oracle_background``), but not with
    the zero baseline: oracle backgrounds are black, and IG from a black baseline gives black
    pixels exactly zero attribution, so the share would be 0 by construction rather than a
    measurement.
    """
    if background not in BACKGROUND_CHOICES:
        raise ValueError(f"analysis background = {background!r} is not allowed; allowed: {list(BACKGROUND_CHOICES)}")
    if background == "auto":
        return "oracle" if has_oracle and baseline != "zero" else "none"
    if background == "oracle" and not has_oracle:
        raise ValueError(
            "analysis background = 'oracle', but this dataset has no known background (only constructions drawn "
            f"on a black canvas do). Use a segmenter ({list(SEGMENTERS)}), auto or none for this study.")
    return background


def background_columns(
    attributions: torch.Tensor, images: torch.Tensor, has_oracle: bool, source: str, segmenter: nn.Module | None,
    input_size: int,
) -> dict[str, float]:
    """background_share (mean |attribution| share on background pixels) and background_iou (segmenter vs oracle).

    ``images`` are unnormalized [N, C, H, W]. NaN where a column has no source: share for
    "none", IoU unless both a segmenter and an oracle exist.
    """
    oracle = oracle_background_masks(images) if has_oracle else None
    if source == "none":
        return {"background_share": math.nan, "background_iou": math.nan}
    if source == "oracle":
        masks, iou = oracle, math.nan
    else:
        if segmenter is None:
            raise ValueError(f"background = {source!r} needs a segmenter (largelr.analyses.segment.load_segmenter)")
        masks = background_masks(segmenter, images, input_size=input_size)
        iou = math.nan if oracle is None else mask_agreement(masks, oracle)
    share = region_share(attributions, masks[:, None].to(attributions.device)).nanmean().item()
    return {"background_share": share, "background_iou": iou}


def setup(settings, device: torch.device) -> dict[str, Any]:
    """The segmenter the settings name, loaded before any data or model (a missing file is the
    user's fix, reported at once); nothing for none / oracle / auto."""
    if settings["background"] not in SEGMENTERS:
        return {"segmenter": None}
    from largelr.analyses.segment import load_segmenter

    return {"segmenter": load_segmenter(settings["background"], settings["segmenter_checkpoint"], device)}


def run(model: nn.Module, dataset: dict[str, Any], settings, device: torch.device,
        segmenter: nn.Module | None = None) -> pd.DataFrame:
    """Attribution measures of ``model`` on the seeded sample of ``attribute_samples`` test inputs.

    ``segmenter`` is required when settings["background"] names one (see :func:`setup`).
    """
    from largelr.datasets import traits

    has_oracle = traits(dataset)["oracle_background"]
    source = resolve_background(settings["background"], has_oracle, settings["ig_baseline"])
    x, y, _ = test_sample(dataset, settings["attribute_samples"], device)
    if settings["ig_target"] == "true":
        target = y
    else:
        with torch.no_grad():
            target = model(x).argmax(1)
    attributions, delta = integrated_gradients(model, x, target, settings["ig_steps"], settings["ig_method"],
                                               settings["ig_internal_batch_size"], ig_baseline(x, settings["ig_baseline"]))
    result = {
        "attribution_entropy": attribution_entropy(attributions).nanmean().item(),
        "ig_max_abs_delta": delta.abs().max().item(),
    }
    result.update(_region_shares(attributions, dataset, prefix=""))
    if x.dim() == 4:
        result.update(background_columns(attributions, unnormalized(x, dataset), has_oracle, source, segmenter,
                                         settings["segmenter_input_size"]))
    elif source != "none":
        raise ValueError(f"analysis background = {source!r} needs image inputs; dataset {dataset['name']!r} has shape "
                         f"{dataset['input_shape']}. Use background: none (or auto) for it.")
    else:
        result.update({"background_share": math.nan, "background_iou": math.nan})
    if settings["deeplift"]:
        result.update(_region_shares(deeplift(model, x, target), dataset, prefix="deeplift_"))
    return pd.DataFrame([result])


def cell_columns(table: pd.DataFrame) -> dict[str, float]:
    return table.iloc[0].to_dict()


def _region_shares(attributions: torch.Tensor, dataset: dict[str, Any], prefix: str) -> dict[str, float]:
    """Mean spurious / core share of ``attributions``; nan for a region the dataset has no mask for."""
    shares = {}
    for region in ("spurious", "core"):
        mask = dataset.get(f"{region}_mask")
        share = math.nan if mask is None else region_share(attributions, mask).nanmean().item()
        shares[f"{prefix}{region}_share"] = share
    return shares
