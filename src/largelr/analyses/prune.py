"""Pruning by masks applied in place to ``model.prunable()`` weights, no model rebuild.

Methods (``method=`` of ``pruned`` / ``retention_curve``):

- "structured": whole units per layer by L2 norm: a Linear input column (a node of the
  previous layer) or one (out, in) Conv2d kernel.
- "column": whole input columns per layer by L2 norm: for Linear the same as
  "structured"; for Conv2d a whole input channel, i.e. the slice weight[:, in].
- "magnitude": single weights, the smallest |w| of each layer.
- "magnitude_global": single weights, one threshold over all prunable weights together,
  so layers lose different fractions.

Every method ranks by a fixed score with index tie-breaking, so masks are deterministic
and nested in kappa (a larger kappa prunes a superset).

The same rule holds for every architecture, because ``prunable()`` lists every Conv2d and
Linear weight (ResNets, WRN and Swin-T included) and each weight is masked on its own:
"structured" drops (out, in) kernels of a conv (a 1x1 or depthwise kernel is a unit too) and
input columns of a linear layer (Swin's attention and MLP projections included). Zeroing
kernels or columns changes no tensor shape, so residual additions stay valid and no masks
need coupling across layers, unlike physically removing channels.

Curves are measured on the whole unbiased test set; the metric whose retention is reported
is plain accuracy, or worst-group accuracy where the dataset's traits say so (the natural
sets, CelebA and Waterbirds).
``pruned_fraction`` is the fraction of prunable weights that are zero in the pruned model
(already-zero weights included): the pruned-parameter ratio actually achieved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import torch
from torch import nn

from largelr.evaluate import Split, group_accuracies, predict, sample_indices

NAME = "prune"
DEFAULT_KAPPAS: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(10))
METRICS = ("accuracy", "worst_group_acc")
# The table: one row per (method, kappa).
COLUMNS = {"method": "object", "kappa": "float64", "accuracy": "float64", "worst_group_acc": "float64",
           "retention": "float64", "pruned_fraction": "float64", "metric": "object", "test_inputs": "int64"}
CURVE_COLUMNS = list(COLUMNS)

# Absorbs float noise such as 0.29 * 100 = 28.999999999999996 before flooring to a count.
_COUNT_SLACK = 1e-9


def _count_to_drop(kappa: float, n: int) -> int:
    if not 0.0 <= kappa <= 1.0:
        raise ValueError(f"kappa must lie in [0, 1], got {kappa}")
    return math.floor(kappa * n + _COUNT_SLACK)


def _keep_all_but_smallest(scores: torch.Tensor, kappa: float) -> torch.Tensor:
    """Bool mask shaped like scores, False at the floor(kappa * numel) smallest scores."""
    flat = scores.flatten()
    # A stable sort breaks ties by index, so the ranking (and hence nesting) is deterministic.
    order = torch.sort(flat, stable=True).indices
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[order[: _count_to_drop(kappa, flat.numel())]] = False
    return keep.view_as(scores)


def structured_scores(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each unit: input columns [in] for Linear, (out, in) kernels for Conv2d."""
    weight = weight.detach()
    if weight.dim() == 2:
        return torch.linalg.vector_norm(weight, dim=0)
    if weight.dim() == 4:
        return torch.linalg.vector_norm(weight.flatten(start_dim=2), dim=2)
    raise ValueError(f"expected a Linear [out, in] or Conv2d [out, in, kh, kw] weight, got shape {tuple(weight.shape)}")


def structured_mask(weight: torch.Tensor, kappa: float) -> torch.Tensor:
    """Bool mask like weight that removes the floor(kappa * n_units) weakest units of this layer."""
    keep_units = _keep_all_but_smallest(structured_scores(weight), kappa)
    if weight.dim() == 2:
        keep_units = keep_units[None, :]
    else:
        keep_units = keep_units[:, :, None, None]
    return keep_units.expand_as(weight).clone()


def column_scores(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each input column: [in] for Linear, whole input channels weight[:, in] for Conv2d."""
    weight = weight.detach()
    if weight.dim() == 2:
        return torch.linalg.vector_norm(weight, dim=0)
    if weight.dim() == 4:
        return torch.linalg.vector_norm(weight, dim=(0, 2, 3))
    raise ValueError(f"expected a Linear [out, in] or Conv2d [out, in, kh, kw] weight, got shape {tuple(weight.shape)}")


def column_mask(weight: torch.Tensor, kappa: float) -> torch.Tensor:
    """Bool mask like weight that removes the floor(kappa * n_in) weakest input columns of this layer."""
    keep_columns = _keep_all_but_smallest(column_scores(weight), kappa)
    # broadcast the [in] decision over every other axis of the weight
    shape = [1] * weight.dim()
    shape[1] = -1
    return keep_columns.view(shape).expand_as(weight).clone()


def magnitude_mask(weight: torch.Tensor, kappa: float) -> torch.Tensor:
    """Bool mask like weight that removes the floor(kappa * numel) smallest |w| of this layer."""
    return _keep_all_but_smallest(weight.detach().abs(), kappa)


def global_magnitude_masks(weights: Sequence[torch.Tensor], kappa: float) -> list[torch.Tensor]:
    """Masks that remove the floor(kappa * total) smallest |w| over all weights together.

    Ties are broken by position in the concatenation (layer order, then index).
    """
    flat_magnitudes = torch.cat([w.detach().abs().flatten().cpu() for w in weights])
    keep = _keep_all_but_smallest(flat_magnitudes, kappa)
    sizes = [w.numel() for w in weights]
    return [part.view_as(w).to(w.device) for part, w in zip(keep.split(sizes), weights)]


MASKS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "structured": structured_mask,
    "column": column_mask,
    "magnitude": magnitude_mask,
}
GLOBAL_MASKS: dict[str, Callable[[Sequence[torch.Tensor], float], list[torch.Tensor]]] = {
    "magnitude_global": global_magnitude_masks,
}
METHODS: tuple[str, ...] = (*MASKS, *GLOBAL_MASKS)


def layer_masks(weights: Sequence[torch.Tensor], kappa: float, method: str) -> list[torch.Tensor]:
    """One bool keep-mask per weight for ``method`` (see the module docstring)."""
    if method in GLOBAL_MASKS:
        return GLOBAL_MASKS[method](weights, kappa)
    if method in MASKS:
        return [MASKS[method](weight, kappa) for weight in weights]
    raise ValueError(f"pruning method {method!r} is not known; allowed: {list(METHODS)}")


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """Position of each score in the stable ascending order: the unit pruned at count c has rank < c."""
    flat = scores.flatten()
    ranks = torch.empty_like(flat, dtype=torch.long)
    ranks[torch.sort(flat, stable=True).indices] = torch.arange(flat.numel(), device=flat.device)
    return ranks.view_as(scores)


def _unit_masks_to_weight(keep: torch.Tensor, weight: torch.Tensor, method: str) -> torch.Tensor:
    if method == "structured":  # keep is [out, in] kernels of a conv, [in] columns of a linear layer
        return (keep[:, :, None, None] if weight.dim() == 4 else keep[None, :]).expand_as(weight)
    if method == "column":
        shape = [1] * weight.dim()
        shape[1] = -1
        return keep.view(shape).expand_as(weight)
    return keep


def masks_for_kappas(weights: Sequence[torch.Tensor], kappas: Sequence[float], method: str) -> list[list[torch.Tensor]]:
    """``[layer_masks(weights, kappa, method) for kappa in kappas]``, ranking each layer only once.

    Masks are expanded views (no copy) for structured and column pruning.
    """
    weights = [w.detach() for w in weights]
    if method == "magnitude_global":
        ranks = _ranks(torch.cat([w.abs().flatten().cpu() for w in weights]))
        total = ranks.numel()
        result = []
        for kappa in kappas:
            keep = ranks >= _count_to_drop(kappa, total)
            result.append([part.view_as(w).to(w.device) for part, w in zip(keep.split([w.numel() for w in weights]), weights)])
        return result
    scorers = {"structured": structured_scores, "column": column_scores, "magnitude": torch.abs}
    if method not in scorers:
        raise ValueError(f"pruning method {method!r} is not known; allowed: {list(METHODS)}")
    layer_ranks = [_ranks(scorers[method](w)) for w in weights]
    return [[_unit_masks_to_weight(ranks >= _count_to_drop(kappa, ranks.numel()), w, method)
             for ranks, w in zip(layer_ranks, weights)] for kappa in kappas]


def _zero_fraction(weights: Sequence[torch.Tensor]) -> float:
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


@contextmanager
def pruned(model: nn.Module, kappa: float, method: str = "structured") -> Iterator[float]:
    """Temporarily zero the masked prunable weights; yields the fraction of them that is zero.

    The original weights are restored exactly on exit, also when the body raises.
    """
    weights = model.prunable()
    masks = layer_masks(weights, kappa, method)
    originals = [w.detach().clone() for w in weights]
    try:
        with torch.no_grad():
            for weight, mask in zip(weights, masks):
                weight.mul_(mask)
        yield _zero_fraction(weights)
    finally:
        with torch.no_grad():
            for weight, original in zip(weights, originals):
                weight.copy_(original)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in eval mode, batched on the model's device; restores the training flag."""
    device = next(model.parameters()).device
    correct = predict(model, x.to(device), batch_size).cpu() == y.cpu()
    return int(correct.sum()) / len(x)


def pruning_metric(dataset: dict[str, Any]) -> str:
    """worst_group_acc where the dataset's traits ask for it (the natural sets), else accuracy."""
    from largelr.datasets import traits

    return "worst_group_acc" if traits(dataset)["worst_group"] else "accuracy"


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def tensor_batches(x: torch.Tensor, y: torch.Tensor, b: torch.Tensor | None, batch_size: int) -> list[Batch]:
    return [(x[i : i + batch_size], y[i : i + batch_size], None if b is None else b[i : i + batch_size])
            for i in range(0, len(x), batch_size)]


def _metric_values(pred: torch.Tensor, y: torch.Tensor, b: torch.Tensor | None) -> dict[str, float]:
    accuracy_value = (pred == y).double().mean().item()
    worst = math.nan if b is None else group_accuracies(pred, y, b)["worst_group_acc"]
    return {"accuracy": accuracy_value, "worst_group_acc": worst}


def _same_masks(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _distinct_variants(originals: list[torch.Tensor], kappas: Sequence[float], methods: Sequence[str],
                       ) -> tuple[list[list[torch.Tensor] | None], dict[tuple[str, float], int], list[float]]:
    """The pruned variants to evaluate, each once: (masks per variant, variant of each (method, kappa),
    zero fraction per variant). Variant 0 is the unpruned model (no masks)."""
    float_kappas = [float(k) for k in kappas]
    all_masks = {method: dict(zip(float_kappas, masks_for_kappas(originals, float_kappas, method))) for method in methods}
    variants: list[list[torch.Tensor] | None] = [None]
    fractions = [_zero_fraction(originals)]
    variants_at: dict[float, list[int]] = {}  # only same-kappa variants can coincide (up to rare rounding)
    variant_of: dict[tuple[str, float], int] = {}
    for method in methods:
        for kappa in float_kappas:
            masks = all_masks[method][kappa]
            if all(bool(m.all()) for m in masks):
                variant_of[(method, kappa)] = 0
                continue
            twin = next((i for i in variants_at.get(kappa, []) if _same_masks(masks, variants[i])), None)
            if twin is None:
                variants.append(masks)
                fractions.append(_zero_fraction([w * m for w, m in zip(originals, masks)]))
                twin = len(variants) - 1
                variants_at.setdefault(kappa, []).append(twin)
            variant_of[(method, kappa)] = twin
    return variants, variant_of, fractions


def _predict_variants(model: nn.Module, batches: Iterable[Batch], variants: list[list[torch.Tensor] | None],
                      ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """Predictions of every variant over every batch (each batch read once), labels and bias labels."""
    weights = model.prunable()
    originals = [w.detach().clone() for w in weights]
    predictions: list[list[torch.Tensor]] = [[] for _ in variants]
    ys, bs = [], []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for x, y, b in batches:
            x = x.to(device)
            ys.append(y.cpu())
            bs.append(None if b is None else b.cpu())
            for index, masks in enumerate(variants):
                for weight, original, mask in zip(weights, originals, masks or [None] * len(weights)):
                    weight.copy_(original if mask is None else original * mask)
                predictions[index].append(model(x).argmax(1).cpu())
    finally:
        for weight, original in zip(weights, originals):
            weight.copy_(original)
        model.train(was_training)
    b_all = None if any(b is None for b in bs) else torch.cat(bs)
    return [torch.cat(pred) for pred in predictions], torch.cat(ys), b_all


@torch.no_grad()
def retention_curves(
    model: nn.Module,
    batches: Iterable[Batch],
    kappas: Sequence[float] = DEFAULT_KAPPAS,
    methods: Sequence[str] = ("structured",),
    metric: str = "accuracy",
) -> pd.DataFrame:
    """Pruning curves of several methods in one pass over the data (columns CURVE_COLUMNS).

    Each batch is read once and fed to every pruned variant; variants whose masks coincide
    (kappa 0 of every method, column and structured on linear layers) are evaluated once.
    ``retention`` = metric of the pruned model / metric of the unpruned one.
    Masks of all variants are held at once: one bool per prunable weight per variant.
    """
    if metric not in METRICS:
        raise ValueError(f"pruning metric {metric!r} is not known; allowed: {list(METRICS)}")
    originals = [w.detach().clone() for w in model.prunable()]
    variants, variant_of, fractions = _distinct_variants(originals, kappas, methods)
    predictions, y_all, b_all = _predict_variants(model, batches, variants)
    values = [_metric_values(pred, y_all, b_all) for pred in predictions]
    base = values[0][metric]
    rows = []
    for method in methods:
        for kappa in (float(k) for k in kappas):
            index = variant_of[(method, kappa)]
            row = {"method": method, "kappa": kappa, **values[index], "pruned_fraction": fractions[index],
                   "metric": metric, "test_inputs": len(y_all)}
            row["retention"] = row[metric] / base if base > 0 else math.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def retention_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    kappas: Sequence[float] = DEFAULT_KAPPAS,
    method: str = "structured",
    batch_size: int = 1000,
) -> pd.DataFrame:
    """Accuracy, retention (accuracy / unpruned accuracy) and achieved zero fraction per kappa."""
    device = next(model.parameters()).device
    curve = retention_curves(model, tensor_batches(x.to(device), y, None, batch_size), kappas, [method])
    return curve[["kappa", "accuracy", "retention", "pruned_fraction"]]


def prunability(curve_df: pd.DataFrame) -> float:
    """Mean retention over the curve's kappas (the paper's prunability)."""
    return float(curve_df["retention"].mean())


# --- the analysis: one cell's prune.parquet --------------------------------------------------


def run(model: nn.Module, dataset: dict[str, Any], settings, device: torch.device) -> pd.DataFrame:
    """Every pruning curve of the settings' ``prune_methods``; the paper's structured curve on the
    whole test set, the extra curves on a fixed seeded subset of ``prune_extra_samples`` inputs."""
    kappas = [float(k) for k in settings["kappas"]]
    metric = pruning_metric(dataset)
    methods = list(settings["prune_methods"])
    n_test = len(dataset["test"]["y"])
    extra_samples = settings["prune_extra_samples"] or n_test
    groups = [["structured"] if "structured" in methods else [], [m for m in methods if m != "structured"]]
    curves = []
    for group, samples in zip(groups, (n_test, extra_samples)):
        if not group:
            continue
        indices = None if samples >= n_test else sample_indices(n_test, samples, seed=0)
        split = Split(dataset, "test", device, indices)
        curves.append(retention_curves(model, split.batches(settings["eval_batch_size"]), kappas, group, metric))
    table = pd.concat(curves, ignore_index=True)
    return table.set_index("method").loc[methods].reset_index()  # in the settings' order


def diverged(settings) -> pd.DataFrame:
    """The table of a diverged cell: every (method, kappa) row, NaN results."""
    rows = [{"method": method, "kappa": float(k), "test_inputs": 0}
            for method in settings["prune_methods"] for k in settings["kappas"]]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).astype(
        {column: dtype for column, dtype in COLUMNS.items() if dtype != "object"})


def cell_columns(table: pd.DataFrame) -> dict[str, float]:
    """What a cell's row in cells.parquet takes from this table: prunability per method (mean
    retention over kappa) and ``prunability``, the paper's (structured) one."""
    row = {f"prunability_{method}": float(curve["retention"].mean()) for method, curve in table.groupby("method")}
    row["prunability"] = row.get("prunability_structured", math.nan)
    return row
