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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pandas as pd
import torch
from torch import nn

from largelr.train import predict

DEFAULT_KAPPAS: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(10))

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


def retention_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    kappas: Sequence[float] = DEFAULT_KAPPAS,
    method: str = "structured",
    batch_size: int = 1000,
) -> pd.DataFrame:
    """Accuracy, retention (accuracy / unpruned accuracy) and achieved zero fraction per kappa."""
    base_accuracy = accuracy(model, x, y, batch_size)
    rows = []
    for kappa in kappas:
        with pruned(model, kappa, method) as pruned_fraction:
            acc = accuracy(model, x, y, batch_size)
        rows.append({
            "kappa": float(kappa),
            "accuracy": acc,
            "retention": acc / base_accuracy if base_accuracy > 0 else math.nan,
            "pruned_fraction": pruned_fraction,
        })
    return pd.DataFrame(rows, columns=["kappa", "accuracy", "retention", "pruned_fraction"])


def prunability(curve_df: pd.DataFrame) -> float:
    """Mean retention over the curve's kappas (the paper's prunability)."""
    return float(curve_df["retention"].mean())
