"""Representation statistics of penultimate post-activation values ``z`` [N, d].

Every statistic is computed per row (sample) or per column (neuron) and averaged,
in float64 so that hand-checkable values come out exact. The analysis (:func:`run`) takes
``represent_samples`` seeded test inputs, as the paper's "1000 randomly sampled input from
the test set", and the model's ``activations(x)``: "we obtain the post-activation values for
the penultimate layer" (non-negative for every model, see :mod:`largelr.models`).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
from torch import nn

from largelr.evaluate import test_sample

NAME = "represent"
COLUMNS = {name: "float64" for name in ("compressibility", "sparsity", "pq_index", "csi", "bsi", "class_sep", "bias_sep")}

# Absorbs float noise such as 0.1 * 30 = 3.0000000000000004 before rounding to a count.
_COUNT_SLACK = 1e-9
# Mean cosine distances below this are float noise around identical directions.
_NO_DISTANCE = 1e-12


def _as_float64(z: torch.Tensor) -> torch.Tensor:
    return z.detach().to(torch.float64)


def _nonzero_rows(z: torch.Tensor) -> torch.Tensor:
    return z[(z != 0).any(dim=1)]


def _mean_or_nan(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else math.nan


def compressibility(z: torch.Tensor, q: float = 2.0, kappa: float = 0.1) -> float:
    """Mean over non-zero rows of 1 - ||z - best k-sparse z||_q / ||z||_q, k = ceil(kappa * d)."""
    rows = _nonzero_rows(_as_float64(z))
    keep = math.ceil(kappa * rows.shape[1] - _COUNT_SLACK)
    # The best k-sparse approximation keeps the k largest magnitudes; the error is the rest.
    magnitudes = rows.abs().sort(dim=1, descending=True).values
    residual = torch.linalg.vector_norm(magnitudes[:, keep:], ord=q, dim=1)
    total = torch.linalg.vector_norm(magnitudes, ord=q, dim=1)
    return _mean_or_nan(1 - residual / total)


def sparsity(z: torch.Tensor, tol: float = 0.0) -> float:
    """Mean over rows of the fraction of entries with |z| <= tol."""
    return float((_as_float64(z).abs() <= tol).to(torch.float64).mean())


def pq_index(z: torch.Tensor, p: float = 1.0, q: float = 2.0) -> float:
    """PQ-index (Diao et al. 2023) averaged over non-zero rows: 0 for constant, near 1 for sparse rows."""
    if not 0 < p < q:
        raise ValueError(f"pq_index needs 0 < p < q, got p={p}, q={q}")
    rows = _nonzero_rows(_as_float64(z))
    d = rows.shape[1]
    ratio = torch.linalg.vector_norm(rows, ord=p, dim=1) / torch.linalg.vector_norm(rows, ord=q, dim=1)
    return _mean_or_nan(1 - d ** (1 / q - 1 / p) * ratio)


def _class_indicator(labels: torch.Tensor, num_labels: int | None) -> torch.Tensor:
    """One-hot [N, K] over the classes that actually occur in ``labels``."""
    labels = labels.detach().long().cpu()
    one_hot = torch.nn.functional.one_hot(labels, num_labels if num_labels is not None else -1)
    return one_hot[:, one_hot.sum(dim=0) > 0].to(torch.float64)


def selectivity_per_neuron(
    z: torch.Tensor, labels: torch.Tensor, num_labels: int | None = None, eps: float = 1e-7, what: str = "label"
) -> torch.Tensor:
    """Class-selectivity index of each neuron (column of z), shape [d].

    CSI_j = rho_max * (pi_max - pi_-max) / (pi_max + pi_-max + eps), where pi_max is the
    largest class-conditional mean, pi_-max the mean of the other classes' means and
    rho_max the fraction of the top class's samples on which the neuron is active.
    ``what`` names the labels in errors ("class", "bias"). Fewer than two groups: ValueError.

    Bounds: for non-negative z (post-activation values) and eps > 0, CSI_j lies in [0, 1].
    Every class mean is >= 0, and pi_max is the largest of them, so the mean of the others
    satisfies 0 <= pi_-max <= pi_max. Hence 0 <= pi_max - pi_-max <= pi_max + pi_-max <
    pi_max + pi_-max + eps, so the ratio lies in [0, 1) (0 for a dead neuron, 0 / eps), and
    rho_max is a fraction in [0, 1]. Signed z breaks this: a negative denominator makes the
    ratio unbounded.
    """
    z = _as_float64(z).cpu()
    indicator = _class_indicator(labels, num_labels)
    num_classes = indicator.shape[1]
    if num_classes < 2:
        raise ValueError(
            f"selectivity needs samples of at least two {what} groups, but all {len(z)} samples are in "
            f"{what} group {labels.flatten()[:1].tolist()}; analyse a sample that covers several groups "
            "(an unbiased test set, or more represent_samples)"
        )
    counts = indicator.sum(dim=0, keepdim=True).T  # [K, 1]
    class_means = indicator.T @ z / counts
    active_rates = indicator.T @ (z > 0).to(torch.float64) / counts
    top_mean, top_class = class_means.max(dim=0)
    other_mean = (class_means.sum(dim=0) - top_mean) / (num_classes - 1)
    top_active_rate = active_rates.gather(0, top_class[None]).squeeze(0)
    return top_active_rate * (top_mean - other_mean) / (top_mean + other_mean + eps)


def selectivity_index(
    z: torch.Tensor, labels: torch.Tensor, num_labels: int | None = None, eps: float = 1e-7, what: str = "label"
) -> float:
    """Mean selectivity over neurons: CSI with class labels, BSI with bias labels."""
    return float(selectivity_per_neuron(z, labels, num_labels, eps, what).mean())


def class_separation(z: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> float:
    """R^2 = 1 - dbar_within / dbar_total with cosine distance (Kornblith et al. 2021).

    Pairs include m == n. Zero rows normalise to zero vectors, i.e. similarity 0 to
    everything. When all distances vanish (dbar_total == 0) there is nothing to
    separate and 0.0 is returned.
    """
    z = _as_float64(z).cpu()
    unit = z / torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(eps)
    indicator = _class_indicator(labels, None)
    # Mean pairwise similarity between classes j and k is the dot product of their mean
    # unit vectors, i.e. the class-averaged Gram matrix without forming the N x N Gram.
    class_mean_units = indicator.T @ unit / indicator.sum(dim=0)[:, None]
    mean_distance = 1 - class_mean_units @ class_mean_units.T
    within = mean_distance.diagonal().mean()
    total = mean_distance.mean()
    if total <= _NO_DISTANCE:
        return 0.0
    return float(1 - within / total)


def summarize(
    z: torch.Tensor, y: torch.Tensor, b: torch.Tensor, q: float = 2.0, kappa: float = 0.1, eps: float = 1e-7,
    pq: tuple[float, float] = (1.0, 2.0),
) -> dict[str, float]:
    """All representation statistics of features z with class labels y and bias labels b."""
    return {
        "compressibility": compressibility(z, q=q, kappa=kappa),
        "sparsity": sparsity(z),
        "pq_index": pq_index(z, *pq),
        "csi": selectivity_index(z, y, eps=eps, what="class"),
        "bsi": selectivity_index(z, b, eps=eps, what="bias"),
        "class_sep": class_separation(z, y),
        "bias_sep": class_separation(z, b),
    }


# --- the analysis: one cell's represent.parquet -----------------------------------------------


@torch.no_grad()
def penultimate_activations(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``model.activations`` (non-negative post-activation penultimate values) of x in eval mode,
    batched, on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model.activations(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def run(model: nn.Module, dataset: dict[str, Any], settings, device: torch.device) -> pd.DataFrame:
    x, y, b = test_sample(dataset, settings["represent_samples"], "cpu")
    z = penultimate_activations(model, x, settings["eval_batch_size"])
    metrics = summarize(z, y, b, q=settings["compress_q"], kappa=settings["compress_kappa"], eps=settings["csi_eps"],
                        pq=(settings["pq_p"], settings["pq_q"]))
    return pd.DataFrame([metrics])


def cell_columns(table: pd.DataFrame) -> dict[str, float]:
    return table.iloc[0].to_dict()
