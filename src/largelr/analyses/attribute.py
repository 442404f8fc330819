"""Attributions: how much of a model's decision rests on the spurious region.

Integrated Gradients and DeepLift (as a check on IG) come from captum. Measures are computed on |attribution| maps
per sample and averaged: the share of attribution mass inside a region mask (on the visualisation-normalised
map by default, as the authors' code measures it, or on raw |attribution|: ``attribution_share``; the
region shares record both) (the
spurious, core and noise regions, where the dataset knows them; the background, from an
oracle or a DeepLabV3 segmenter, see :mod:`largelr.analyses.segment`) and the Shannon entropy
of the normalized map (low entropy = attribution concentrated on few input features).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
from torch import nn

from largelr.analyses.segment import (
    SEGMENTERS,
    background_masks,
    mask_agreement,
    oracle_background_masks,
    segmenter_available,
)
from largelr.evaluate import test_sample
from largelr.registry.analyses import (  # noqa: F401  (the choices, re-exported)
    ATTRIBUTE,
    AUTO_SEGMENTER_CHOICES,
    BACKGROUND_CHOICES,
    BASELINE_CHOICES,
    REGIONS,
    SHARE_CHOICES,
)
from largelr.weights import _auto_wants, background_notice  # noqa: F401  (background_notice re-exported)

NAME = ATTRIBUTE.name
# Every column is always present (NaN where a region has no mask, without deeplift, without a background):
# one ``{region}_share`` per region of REGIONS; see the record.
COLUMNS = ATTRIBUTE.columns
# The normalised map divides by the value at which the sorted map's cumulative sum reaches this
# percentage of its total (captum's visualisation default: 2% outliers) and clips at 1.
CUMULATIVE_MASS_PERCENT = 98.0
# The choices of ``background`` ("auto": see :func:`resolve_background`), ``auto_segmenter``, ``ig_baseline``
# and ``attribution_share`` are declared with the record (imported above).
DEFAULT_AUTO_SEGMENTER = ATTRIBUTE.default("auto_segmenter")


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


def deeplift(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, baseline: torch.Tensor | None = None
) -> torch.Tensor:
    """DeepLift (rescale rule) attributions w.r.t. ``target`` from ``baseline`` (default all-zero).

    They sum to f(x)[target] - f(baseline)[target] up to float error. captum hooks every
    nn.ReLU module, so each ReLU must be its own module, used once: true for the FCN and the
    CNN, and for the ResNets through :class:`largelr.models.SeparateReLUBlock`.
    """
    from captum.attr import DeepLift  # captum is heavy; import where used

    model.eval()
    baselines = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    attributions = DeepLift(model).attribute(x, baselines=baselines, target=target)
    return attributions.detach()


def normalized_map(attributions: torch.Tensor, percent: float = CUMULATIVE_MASS_PERCENT) -> torch.Tensor:
    """Per sample, the visualisation-normalised map: images [N, C, H, W] summed over channels
    (-> [N, H, W]), then |.|, divided by the sample's threshold (the smallest value v of the map
    such that the values <= v, summed in ascending order, hold ``percent``% of the total), clipped
    to 1. Flat inputs [N, D] skip the channel sum. An all-zero map stays zero (no threshold)."""
    combined = attributions.double()
    combined = combined.sum(dim=1) if combined.dim() == 4 else combined
    magnitude = combined.abs()
    flat = magnitude.flatten(1)
    ordered = flat.sort(dim=1).values
    cumulative = ordered.cumsum(dim=1)
    first = (cumulative >= cumulative[:, -1:] * percent / 100).to(torch.int64).argmax(dim=1, keepdim=True)
    threshold = ordered.gather(1, first).view(-1, *[1] * (magnitude.dim() - 1))
    return torch.where(
        threshold > 0,
        (magnitude / threshold.clamp_min(torch.finfo(torch.float64).tiny)).clamp(max=1.0),
        torch.zeros_like(magnitude),
    )


def region_share(attributions: torch.Tensor, mask: torch.Tensor, reading: str = "raw") -> torch.Tensor:
    """Per sample: attribution mass inside ``mask`` over the total mass (nan where the total is 0).

    ``reading="raw"``: mass of |attribution| per input element; ``"normalized"``: mass of
    :func:`normalized_map`, per pixel, where a pixel is inside when any of its channels is.
    ``mask`` broadcasts against ``attributions``: one sample's shape for a mask shared by all
    samples, or e.g. [N, 1, H, W] for per-sample masks such as segmenter backgrounds.
    """
    if reading not in SHARE_CHOICES:
        raise ValueError(f"attribution_share = {reading!r} is not allowed; allowed: {list(SHARE_CHOICES)}")
    if reading == "normalized":
        magnitude = normalized_map(attributions)
        if attributions.dim() == 4:  # [C, H, W] or [N, 1|C, H, W] -> per pixel
            mask = mask.bool().any(dim=-3)
    else:
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


def resolve_background(
    background: str,
    has_oracle: bool,
    baseline: str = "zero",
    image: bool = True,
    auto_segmenter: str = DEFAULT_AUTO_SEGMENTER,
    checkpoint: str = "",
) -> str:
    """The background source for a dataset: "none", "oracle" or a segmenter; ValueError if impossible.

    "auto" is the oracle where the dataset has one (trait ``oracle_background``), but not with
    the zero baseline: oracle backgrounds are black, and IG from a black baseline gives black
    pixels exactly zero attribution, so the share would be 0 by construction rather than a
    measurement. Elsewhere (and for flat inputs never) it is ``auto_segmenter`` when its weights
    file is here (torch hub cache, or ``checkpoint`` for smp), else "none";
    :func:`background_notice` says so at parse time.
    """
    if background not in BACKGROUND_CHOICES:
        raise ValueError(f"analysis background = {background!r} is not allowed; allowed: {list(BACKGROUND_CHOICES)}")
    if auto_segmenter not in AUTO_SEGMENTER_CHOICES:
        raise ValueError(
            f"analysis auto_segmenter = {auto_segmenter!r} is not allowed; allowed: {list(AUTO_SEGMENTER_CHOICES)}"
        )
    if background == "auto":
        wanted = _auto_wants(has_oracle, baseline, image, auto_segmenter)
        if wanted in SEGMENTERS and not segmenter_available(wanted, checkpoint):
            return "none"
        return wanted
    if background == "oracle" and not has_oracle:
        raise ValueError(
            "analysis background = 'oracle', but this dataset has no known background (only constructions drawn "
            f"on a black canvas do). Use a segmenter ({list(SEGMENTERS)}), auto or none for this study."
        )
    return background


def background_columns(
    attributions: torch.Tensor,
    images: torch.Tensor,
    has_oracle: bool,
    source: str,
    segmenter: nn.Module | None,
    input_size: int,
    reading: str = "raw",
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
    share = region_share(attributions, masks[:, None].to(attributions.device), reading).nanmean().item()
    return {"background_share": share, "background_iou": iou}


def setup(settings, device: torch.device) -> dict[str, Any]:
    """The segmenter the settings name, loaded before any data or model (a missing file is the
    user's fix, reported at once); nothing for none / oracle / auto (auto loads its segmenter in
    :func:`run` where the dataset needs it and its file is here)."""
    if settings["background"] not in SEGMENTERS:
        return {"segmenter": None}
    from largelr.analyses.segment import load_segmenter

    return {"segmenter": load_segmenter(settings["background"], settings["segmenter_checkpoint"], device)}


def _targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, choice: str) -> torch.Tensor:
    """The attributed class: the label ("true") or the model's prediction ("predicted")."""
    if choice == "true":
        return y
    with torch.no_grad():
        return model(x).argmax(1)


def run(
    model: nn.Module, dataset: dict[str, Any], settings, device: torch.device, segmenter: nn.Module | None = None
) -> pd.DataFrame:
    """Attribution measures of ``model`` on the seeded sample of ``attribute_samples`` test inputs
    (one row of ``COLUMNS``). ``segmenter`` is required when settings["background"] names one
    (see :func:`setup`); with "auto" the resolved segmenter is loaded here when not given."""
    x, y, _ = test_sample(dataset, settings["attribute_samples"], device)
    target = _targets(model, x, y, settings["ig_target"])
    baseline = ig_baseline(x, settings["ig_baseline"])
    attributions, delta = integrated_gradients(
        model, x, target, settings["ig_steps"], settings["ig_method"], settings["ig_internal_batch_size"], baseline
    )
    result = dict.fromkeys(COLUMNS, math.nan)
    result["attribution_entropy"] = attribution_entropy(attributions).nanmean().item()
    result["ig_max_abs_delta"] = delta.abs().max().item()
    chosen = settings["attribution_share"]
    for reading in SHARE_CHOICES:
        result.update(_region_shares(attributions, dataset, prefix="", suffix=f"_{reading}", reading=reading))
    result.update({f"{region}_share": result[f"{region}_share_{chosen}"] for region in REGIONS})
    result.update(_background(attributions, x, dataset, settings, device, segmenter))
    if settings["deeplift"]:
        result.update(_region_shares(deeplift(model, x, target, baseline), dataset, prefix="deeplift_", reading=chosen))
    return pd.DataFrame([result], columns=list(COLUMNS)).astype(COLUMNS)


def _background(
    attributions: torch.Tensor,
    x: torch.Tensor,
    dataset: dict[str, Any],
    settings,
    device: torch.device,
    segmenter: nn.Module | None,
) -> dict[str, float]:
    """background_share and background_iou from the source the settings resolve to on this dataset."""
    from largelr.datasets import traits

    has_oracle = traits(dataset)["oracle_background"]
    image = x.dim() == 4
    source = resolve_background(
        settings["background"],
        has_oracle,
        settings["ig_baseline"],
        image,
        settings["auto_segmenter"],
        settings["segmenter_checkpoint"],
    )
    if not image:
        if source != "none":
            raise ValueError(
                f"analysis background = {source!r} needs image inputs; dataset {dataset['name']!r} has "
                f"shape {dataset['input_shape']}. Use background: none (or auto) for it."
            )
        return {"background_share": math.nan, "background_iou": math.nan}
    if source in SEGMENTERS and segmenter is None and settings["background"] == "auto":
        from largelr.analyses.segment import load_segmenter

        segmenter = load_segmenter(source, settings["segmenter_checkpoint"], device)
    return background_columns(
        attributions,
        unnormalized(x, dataset),
        has_oracle,
        source,
        segmenter,
        settings["segmenter_input_size"],
        settings["attribution_share"],
    )


def cell_columns(table: pd.DataFrame) -> dict[str, float]:
    return table.iloc[0].to_dict()


def _region_shares(
    attributions: torch.Tensor, dataset: dict[str, Any], prefix: str, suffix: str = "", reading: str = "raw"
) -> dict[str, float]:
    """Mean share of ``attributions`` on every region of REGIONS; nan for a region the dataset has no mask for."""
    shares = {}
    for region in REGIONS:
        mask = dataset.get(f"{region}_mask")
        share = math.nan if mask is None else region_share(attributions, mask, reading).nanmean().item()
        shares[f"{prefix}{region}_share{suffix}"] = share
    return shares
