"""Pruning masks: which weights each method zeroes, per kappa, applied in place without a model rebuild.

The paper's prunability: "f^(κ) corresponds to f with κ ∈ [0, 1] of its parameters pruned
(set to 0) ... (neurons in FC layers, nodes/kernels in our structured pruning approach)".
The units are the network's neurons and kernels (``model.prunable_units()``, see
:class:`largelr.models.Units`), never its raw inputs. Methods (``method=`` of ``pruned`` /
:func:`largelr.analyses.prune.retention_curves`):

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

Masks act on ``mask_targets(model)``: the prunable weights, then the biases of neuron units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from largelr.models import Units

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
            raise ValueError(
                f"a neuron reader of shape {tuple(reader.shape)} does not read the {weight.shape[0]} "
                "outputs of its layer"
            )
        pieces.append((reader, keep[None, :].expand_as(reader)))
    return pieces


def _combine(
    targets: Sequence[torch.Tensor], pieces: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> list[torch.Tensor]:
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
    return _combine(
        targets,
        [piece for layer in units for piece in _unit_pieces(layer, _keep_all_but_smallest(unit_scores(layer), kappa))],
    )


def unit_masks_for_kappas(
    units: Sequence[Units],
    targets: Sequence[torch.Tensor],
    kappas: Sequence[float],
) -> list[list[torch.Tensor]]:
    """``[unit_masks(units, targets, kappa) for kappa in kappas]``, ranking each layer only once."""
    ranks = [_ranks(unit_scores(layer)) for layer in units]
    return [
        _combine(
            targets,
            [
                piece
                for layer, rank in zip(units, ranks)
                for piece in _unit_pieces(layer, rank >= _count_to_drop(kappa, rank.numel()))
            ],
        )
        for kappa in kappas
    ]


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


def layer_masks(weights: Sequence[torch.Tensor], kappa: float, method: str) -> list[torch.Tensor]:
    """One bool keep-mask per weight for a weight method (see the module docstring)."""
    if method in GLOBAL_MASKS:
        return GLOBAL_MASKS[method](weights, kappa)
    if method in MASKS:
        return [MASKS[method](weight, kappa) for weight in weights]
    if method == "structured":
        raise ValueError("pruning method 'structured' acts on a model's units: use model_masks(model, kappa)")
    raise ValueError(f"pruning method {method!r} is not known; allowed: {['structured', *WEIGHT_METHODS]}")


def _unit_masks_to_weight(keep: torch.Tensor, weight: torch.Tensor, method: str) -> torch.Tensor:
    if method == "structured_columns":  # keep is [out, in] kernels of a conv, [in] columns of a linear layer
        return (keep[:, :, None, None] if weight.dim() == 4 else keep[None, :]).expand_as(weight)
    if method == "column":
        shape = [1] * weight.dim()
        shape[1] = -1
        return keep.view(shape).expand_as(weight)
    return keep


def weight_masks_for_kappas(
    weights: Sequence[torch.Tensor],
    kappas: Sequence[float],
    method: str,
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
            result.append(
                [part.view_as(w).to(w.device) for part, w in zip(keep.split([w.numel() for w in weights]), weights)]
            )
        return result
    scorers = {"structured_columns": structured_column_scores, "column": column_scores, "magnitude": torch.abs}
    if method not in scorers:
        layer_masks(weights, 0.0, method)  # raises the error naming the allowed methods
    layer_ranks = [_ranks(scorers[method](w)) for w in weights]
    return [
        [
            _unit_masks_to_weight(ranks >= _count_to_drop(kappa, ranks.numel()), w, method)
            for ranks, w in zip(layer_ranks, weights)
        ]
        for kappa in kappas
    ]


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


def zero_fraction(weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None = None) -> float:
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
        yield zero_fraction(targets[:n_weights])
    finally:
        with torch.no_grad():
            for tensor, original in zip(targets, originals):
                tensor.copy_(original)
