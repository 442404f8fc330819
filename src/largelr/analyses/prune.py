"""Pruning by masks applied in place to a model's weights, no model rebuild.

The paper's prunability: "f^(κ) corresponds to f with κ ∈ [0, 1] of its parameters pruned
(set to 0) ... (neurons in FC layers, nodes/kernels in our structured pruning approach)".
The units are the network's neurons and kernels (``model.prunable_units()``, see
:class:`largelr.models.Units`), never its raw inputs. Methods (``method=`` of ``pruned`` /
``retention_curves``):

- "structured" (the paper's, behind Table 1): per layer, the floor(κ · n) weakest units.
  A neuron is an output unit of a Linear layer, ranked by the L2 norm of its incoming
  weights (its row) and zeroed with all its weights: the row, its bias and its column in the
  layer that reads it, so it outputs 0 and nothing reads it. The head's inputs (the
  penultimate neurons) are the last hidden layer's units and count; the head's outputs (the
  logits) never do. A kernel is one (out, in) slice of a Conv2d weight (1x1, depthwise and
  downsampling convs included), ranked by its L2 norm. Zeroing kernels changes no shape, so
  the residual additions of the ResNets stay valid and no masks need coupling across layers.
  In conv nets the head reads conv channels, which are pruned through their kernels, so the
  head is left whole. Swin-T: see :class:`largelr.models.SwinT`.
- "structured_columns": the former unit: one input column of every Linear layer (the first
  layer's columns are raw input features: with 14 parity bits, κ = 0.1 removes a whole
  input bit) and one (out, in) kernel of every Conv2d, each ranked by its L2 norm.
- "column": whole input columns per layer by L2 norm: for Linear the same as
  "structured_columns"; for Conv2d a whole input channel, i.e. the slice weight[:, in]
  (the paper's column pruning, Figs 20/21).
- "magnitude": single weights, the smallest |w| of each layer.
- "magnitude_global": single weights, one threshold over all prunable weights together,
  so layers lose different fractions.

Every method ranks by a fixed score with index tie-breaking, so masks are deterministic
and nested in kappa (a larger kappa prunes a superset); each layer is ranked once for all
kappas (:func:`masks_for_kappas`).

Curves are measured on the whole unbiased test set; the metric whose retention is reported
is plain accuracy, or worst-group accuracy where the dataset's traits say so (the natural
sets, CelebA and Waterbirds).

Two readings of retention, both in every table (see :func:`chance_level`):

- ``retention`` = Acc(f^κ) / Acc(f), the paper's text ("retention of (unbiased) test accuracy");
- ``retention_chance`` = (Acc(f^κ) − c) / (Acc(f) − c), the chance-corrected retention, c the score
  of a model that has lost the task. A pruned model that predicts one class scores c, so the mean
  ratio cannot fall below (1 + 9c/Acc)/10 while the chance-corrected mean can reach ≈ 0.1: the
  paper's printed values (0.56 for parity at Acc 0.553, 0.267 for Corrupted CIFAR-10) fit only the
  second. The analysis setting ``prunability`` chooses which one is Table 1's ``prunability``.
``pruned_fraction`` is the fraction of ``model.prunable()`` weights that are zero in the pruned
model (already-zero weights included): the pruned-parameter ratio actually achieved. Biases
zeroed with their neuron are not counted. Pruning κ of the neurons of every FCN layer zeroes
rows and the matching columns of the next layer, so its pruned_fraction exceeds κ.
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
from largelr.models import Units
from largelr.registry.analyses import PRUNE, PRUNE_METHODS
from largelr.registry.analyses import PRUNE_READINGS as READINGS

NAME = PRUNE.name
DEFAULT_KAPPAS: tuple[float, ...] = tuple(PRUNE.default("kappas"))
METRICS = ("accuracy", "worst_group_acc")
# The table: one row per (method, kappa); declared with the record.
COLUMNS = PRUNE.columns
DEFAULT_READING = PRUNE.default("prunability")
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


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """Position of each score in the stable ascending order: the unit pruned at count c has rank < c."""
    flat = scores.flatten()
    ranks = torch.empty_like(flat, dtype=torch.long)
    ranks[torch.sort(flat, stable=True).indices] = torch.arange(flat.numel(), device=flat.device)
    return ranks.view_as(scores)


def _keep_everything(tensor: torch.Tensor) -> torch.Tensor:
    return torch.ones((), dtype=torch.bool, device=tensor.device).expand_as(tensor)


# --- "structured": the network's neurons and kernels -------------------------------------------


def unit_scores(units: Units) -> torch.Tensor:
    """L2 norm of each unit: [out] incoming rows of a Linear layer's neurons, [out, in] Conv2d kernels."""
    weight = units.weight.detach()
    if weight.dim() == 2:
        return torch.linalg.vector_norm(weight, dim=1)
    if weight.dim() == 4:
        return torch.linalg.vector_norm(weight.flatten(start_dim=2), dim=2)
    raise ValueError(f"expected a Linear [out, in] or Conv2d [out, in, kh, kw] weight, got shape {tuple(weight.shape)}")


def _unit_pieces(units: Units, keep: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tensor, keep-mask view) for every tensor a layer's units touch, from the per-unit ``keep``."""
    weight = units.weight
    if weight.dim() == 4:  # keep is [out, in]: whole kernels
        return [(weight, keep[:, :, None, None].expand_as(weight))]
    pieces = [(weight, keep[:, None].expand_as(weight))]  # neuron j: row j ...
    if units.bias is not None:
        pieces.append((units.bias, keep))  # ... its bias ...
    for reader in units.outgoing:  # ... and column j of every layer that reads it
        if reader.dim() != 2 or reader.shape[1] != weight.shape[0]:
            raise ValueError(f"a neuron reader of shape {tuple(reader.shape)} does not read the {weight.shape[0]} "
                             "outputs of its layer")
        pieces.append((reader, keep[None, :].expand_as(reader)))
    return pieces


def _combine(targets: Sequence[torch.Tensor], pieces: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """One keep-mask per target: the AND of every piece on it (a weight holds its own neurons' rows and
    the previous layer's neurons' columns), everything kept where no unit touches it."""
    position = {id(t): i for i, t in enumerate(targets)}
    masks: list[torch.Tensor | None] = [None] * len(targets)
    for tensor, keep in pieces:
        if id(tensor) not in position:
            raise ValueError("a pruning unit touches a tensor that is neither in model.prunable() nor a unit's bias")
        i = position[id(tensor)]
        masks[i] = keep if masks[i] is None else masks[i] & keep
    return [_keep_everything(t) if m is None else m for t, m in zip(targets, masks)]


def unit_masks(units: Sequence[Units], targets: Sequence[torch.Tensor], kappa: float) -> list[torch.Tensor]:
    """Keep-masks of ``targets`` removing the floor(kappa * n) weakest units of every layer."""
    return _combine(targets, [piece for layer in units
                              for piece in _unit_pieces(layer, _keep_all_but_smallest(unit_scores(layer), kappa))])


def unit_masks_for_kappas(units: Sequence[Units], targets: Sequence[torch.Tensor], kappas: Sequence[float],
                          ) -> list[list[torch.Tensor]]:
    """``[unit_masks(units, targets, kappa) for kappa in kappas]``, ranking each layer only once."""
    ranks = [_ranks(unit_scores(layer)) for layer in units]
    return [_combine(targets, [piece for layer, rank in zip(units, ranks)
                               for piece in _unit_pieces(layer, rank >= _count_to_drop(kappa, rank.numel()))])
            for kappa in kappas]


def mask_targets(model: nn.Module) -> tuple[list[torch.Tensor], int]:
    """(the tensors masks act on, how many of them are prunable weights): ``model.prunable()``, then
    the biases of neuron units, zeroed with their neuron but not counted by pruned_fraction."""
    weights = list(model.prunable())
    known = {id(w) for w in weights}
    biases = []
    for units in model.prunable_units():
        if units.bias is not None and id(units.bias) not in known:
            biases.append(units.bias)
            known.add(id(units.bias))
    return weights + biases, len(weights)


# --- the other methods: input columns, input channels, single weights ---------------------------


def structured_column_scores(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each "structured_columns" unit: input columns [in] for Linear, (out, in) kernels for Conv2d."""
    weight = weight.detach()
    if weight.dim() == 2:
        return torch.linalg.vector_norm(weight, dim=0)
    if weight.dim() == 4:
        return torch.linalg.vector_norm(weight.flatten(start_dim=2), dim=2)
    raise ValueError(f"expected a Linear [out, in] or Conv2d [out, in, kh, kw] weight, got shape {tuple(weight.shape)}")


def structured_column_mask(weight: torch.Tensor, kappa: float) -> torch.Tensor:
    """Bool mask like weight that removes the floor(kappa * n_units) weakest "structured_columns" units."""
    keep_units = _keep_all_but_smallest(structured_column_scores(weight), kappa)
    return _unit_masks_to_weight(keep_units, weight, "structured_columns").clone()


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
    return _unit_masks_to_weight(_keep_all_but_smallest(column_scores(weight), kappa), weight, "column").clone()


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
    "structured_columns": structured_column_mask,
    "column": column_mask,
    "magnitude": magnitude_mask,
}
GLOBAL_MASKS: dict[str, Callable[[Sequence[torch.Tensor], float], list[torch.Tensor]]] = {
    "magnitude_global": global_magnitude_masks,
}
WEIGHT_METHODS: tuple[str, ...] = (*MASKS, *GLOBAL_MASKS)  # defined on the prunable weights alone
METHODS: tuple[str, ...] = ("structured", *WEIGHT_METHODS)


def layer_masks(weights: Sequence[torch.Tensor], kappa: float, method: str) -> list[torch.Tensor]:
    """One bool keep-mask per weight for a weight method (see the module docstring)."""
    if method in GLOBAL_MASKS:
        return GLOBAL_MASKS[method](weights, kappa)
    if method in MASKS:
        return [MASKS[method](weight, kappa) for weight in weights]
    if method == "structured":
        raise ValueError("pruning method 'structured' acts on a model's units: use model_masks(model, kappa)")
    raise ValueError(f"pruning method {method!r} is not known; allowed: {list(METHODS)}")


def _unit_masks_to_weight(keep: torch.Tensor, weight: torch.Tensor, method: str) -> torch.Tensor:
    if method == "structured_columns":  # keep is [out, in] kernels of a conv, [in] columns of a linear layer
        return (keep[:, :, None, None] if weight.dim() == 4 else keep[None, :]).expand_as(weight)
    if method == "column":
        shape = [1] * weight.dim()
        shape[1] = -1
        return keep.view(shape).expand_as(weight)
    return keep


def weight_masks_for_kappas(weights: Sequence[torch.Tensor], kappas: Sequence[float], method: str,
                            ) -> list[list[torch.Tensor]]:
    """``[layer_masks(weights, kappa, method) for kappa in kappas]``, ranking each layer only once.

    Masks are expanded views (no copy) for structured_columns and column pruning.
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
    scorers = {"structured_columns": structured_column_scores, "column": column_scores, "magnitude": torch.abs}
    if method not in scorers:
        layer_masks(weights, 0.0, method)  # raises the error naming the allowed methods
    layer_ranks = [_ranks(scorers[method](w)) for w in weights]
    return [[_unit_masks_to_weight(ranks >= _count_to_drop(kappa, ranks.numel()), w, method)
             for ranks, w in zip(layer_ranks, weights)] for kappa in kappas]


def model_masks(model: nn.Module, kappa: float, method: str = "structured") -> list[torch.Tensor]:
    """Keep-masks of ``mask_targets(model)`` for one kappa, each layer ranked on its own."""
    targets, n_weights = mask_targets(model)
    if method == "structured":
        return unit_masks(model.prunable_units(), targets, kappa)
    return layer_masks(targets[:n_weights], kappa, method) + [_keep_everything(t) for t in targets[n_weights:]]


def masks_for_kappas(model: nn.Module, kappas: Sequence[float], method: str) -> list[list[torch.Tensor]]:
    """``[model_masks(model, kappa, method) for kappa in kappas]``, ranking each layer only once."""
    targets, n_weights = mask_targets(model)
    if method == "structured":
        return unit_masks_for_kappas(model.prunable_units(), targets, kappas)
    kept_biases = [_keep_everything(t) for t in targets[n_weights:]]
    return [masks + kept_biases for masks in weight_masks_for_kappas(targets[:n_weights], kappas, method)]


def _zero_fraction(weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None = None) -> float:
    """Fraction of the entries of ``weights`` that are zero, or would be once ``masks`` are applied."""
    if masks is None:
        zeros = sum(int((w == 0).sum()) for w in weights)
    else:
        zeros = sum(int(((w == 0) | ~m).sum()) for w, m in zip(weights, masks))
    return zeros / sum(w.numel() for w in weights)


@contextmanager
def pruned(model: nn.Module, kappa: float, method: str = "structured") -> Iterator[float]:
    """Temporarily zero the masked weights (and pruned neurons' biases); yields the fraction of the
    prunable weights that is zero. The original values are restored exactly on exit, also when
    the body raises."""
    targets, n_weights = mask_targets(model)
    masks = model_masks(model, kappa, method)
    originals = [t.detach().clone() for t in targets]
    try:
        with torch.no_grad():
            for tensor, mask in zip(targets, masks):
                tensor.mul_(mask)
        yield _zero_fraction(targets[:n_weights])
    finally:
        with torch.no_grad():
            for tensor, original in zip(targets, originals):
                tensor.copy_(original)


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


def chance_level(metric: str, num_classes: int) -> float:
    """The score c of a model that has lost the task, for the chance-corrected retention.

    accuracy: 1 / K, what a constant (or uniformly random) prediction scores on a class-balanced
    unbiased test set. worst_group_acc: 0, what a constant prediction scores on the groups of every
    other class (a collapsed model predicts about one class), so for worst-group metrics the two
    readings coincide.
    """
    if metric == "worst_group_acc":
        return 0.0
    if metric == "accuracy":
        return 1.0 / num_classes
    raise ValueError(f"pruning metric {metric!r} is not known; allowed: {list(METRICS)}")


def chance_retention(value: float, base: float, chance: float) -> float:
    """(value − chance) / (base − chance); NaN when the unpruned model is not above chance."""
    return (value - chance) / (base - chance) if base > chance else math.nan


def _metric_values(pred: torch.Tensor, y: torch.Tensor, b: torch.Tensor | None) -> dict[str, float]:
    accuracy_value = (pred == y).double().mean().item()
    worst = math.nan if b is None else group_accuracies(pred, y, b)["worst_group_acc"]
    return {"accuracy": accuracy_value, "worst_group_acc": worst}


def _same_masks(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _distinct_variants(model: nn.Module, kappas: Sequence[float], methods: Sequence[str],
                       ) -> tuple[list[list[torch.Tensor] | None], dict[tuple[str, float], int], list[float]]:
    """The pruned variants to evaluate, each once: (masks per variant, over ``mask_targets(model)``;
    variant of each (method, kappa); zero fraction per variant). Variant 0 is the unpruned model."""
    float_kappas = [float(k) for k in kappas]
    targets, n_weights = mask_targets(model)
    all_masks = {method: dict(zip(float_kappas, masks_for_kappas(model, float_kappas, method))) for method in methods}
    variants: list[list[torch.Tensor] | None] = [None]
    fractions = [_zero_fraction(targets[:n_weights])]
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
                fractions.append(_zero_fraction(targets[:n_weights], masks[:n_weights]))
                twin = len(variants) - 1
                variants_at.setdefault(kappa, []).append(twin)
            variant_of[(method, kappa)] = twin
    return variants, variant_of, fractions


def _predict_variants(model: nn.Module, batches: Iterable[Batch], variants: list[list[torch.Tensor] | None],
                      ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """Predictions of every variant over every batch (each batch read once), labels and bias labels."""
    targets, _ = mask_targets(model)
    originals = [t.detach().clone() for t in targets]
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
                for tensor, original, mask in zip(targets, originals, masks or [None] * len(targets)):
                    tensor.copy_(original if mask is None else original * mask)
                predictions[index].append(model(x).argmax(1).cpu())
    finally:
        for tensor, original in zip(targets, originals):
            tensor.copy_(original)
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
    chance: float = 0.0,
) -> pd.DataFrame:
    """Pruning curves of several methods in one pass over the data (columns CURVE_COLUMNS).

    Each batch is read once and fed to every pruned variant; variants whose masks coincide
    (kappa 0 of every method, column and structured_columns on linear layers) are evaluated once.
    ``retention`` = metric of the pruned model / metric of the unpruned one; ``retention_chance`` =
    (metric − ``chance``) / (unpruned metric − ``chance``), ``chance`` from :func:`chance_level`.
    Masks of all variants are held at once: at most one bool per prunable weight per variant.
    """
    if metric not in METRICS:
        raise ValueError(f"pruning metric {metric!r} is not known; allowed: {list(METRICS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"pruning methods {unknown} are not known; allowed: {list(METHODS)}")
    variants, variant_of, fractions = _distinct_variants(model, kappas, methods)
    predictions, y_all, b_all = _predict_variants(model, batches, variants)
    values = [_metric_values(pred, y_all, b_all) for pred in predictions]
    base = values[0][metric]
    rows = []
    for method in methods:
        for kappa in (float(k) for k in kappas):
            index = variant_of[(method, kappa)]
            row = {"method": method, "kappa": kappa, **values[index], "pruned_fraction": fractions[index],
                   "metric": metric, "test_inputs": len(y_all), "chance": chance}
            row["retention"] = row[metric] / base if base > 0 else math.nan
            row["retention_chance"] = chance_retention(row[metric], base, chance)
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


def prunability(curve_df: pd.DataFrame, reading: str = "ratio") -> float:
    """Mean retention over the curve's kappas: reading "ratio" (the text's Acc_κ/Acc) or "chance"
    ((Acc_κ − c)/(Acc − c))."""
    if reading not in READINGS:
        raise ValueError(f"prunability reading {reading!r} is not known; allowed: {list(READINGS)}")
    return float(curve_df[READINGS[reading]].mean())


# --- the analysis: one cell's prune.parquet --------------------------------------------------


def run(model: nn.Module, dataset: dict[str, Any], settings, device: torch.device) -> pd.DataFrame:
    """Every pruning curve of the settings' ``prune_methods``; the paper's structured curve on the
    whole test set, the extra curves on a fixed seeded subset of ``prune_extra_samples`` inputs."""
    kappas = [float(k) for k in settings["kappas"]]
    metric = pruning_metric(dataset)
    chance = chance_level(metric, int(dataset["num_classes"]))
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
        curves.append(retention_curves(model, split.batches(settings["eval_batch_size"]), kappas, group, metric, chance))
    table = pd.concat(curves, ignore_index=True)
    return table.set_index("method").loc[methods].reset_index()  # in the settings' order


def diverged(settings) -> pd.DataFrame:
    """The table of a diverged cell: every (method, kappa) row, NaN results."""
    rows = [{"method": method, "kappa": float(k), "test_inputs": 0}
            for method in settings["prune_methods"] for k in settings["kappas"]]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).astype(
        {column: dtype for column, dtype in COLUMNS.items() if dtype != "object"})


def cell_columns(table: pd.DataFrame, reading: str = DEFAULT_READING) -> dict[str, float]:
    """What a cell's row in cells.parquet takes from this table: per method, both readings
    ``prunability_ratio_<method>`` and ``prunability_chance_<method>`` (means over kappa), and
    ``prunability_<method>`` in ``reading``; the paper's curve ("structured": neurons and kernels)
    also as ``prunability_ratio``, ``prunability_chance`` and ``prunability`` (in ``reading``)."""
    row: dict[str, float] = {}
    for method, curve in table.groupby("method"):
        for name, column in READINGS.items():
            row[f"prunability_{name}_{method}"] = float(curve[column].mean()) if column in curve else math.nan
    for name in READINGS:
        row[f"prunability_{name}"] = row.get(f"prunability_{name}_structured", math.nan)
    return row | chosen_reading(row, reading)


def chosen_reading(row: dict[str, Any] | pd.DataFrame, reading: str) -> dict[str, Any]:
    """``prunability`` and ``prunability_<method>`` taken from the ``reading`` columns of a cell's row
    (or of a cells table): the analysis setting ``prunability`` picks Table 1's reading."""
    if reading not in READINGS:
        raise ValueError(f"prunability reading {reading!r} is not known; allowed: {list(READINGS)}")
    prefix = f"prunability_{reading}"
    chosen = {f"prunability{column[len(prefix):]}": row[column] for column in list(row.keys())
              if column == prefix or column.startswith(prefix + "_")}
    return chosen | {"prunability_reading": reading}
