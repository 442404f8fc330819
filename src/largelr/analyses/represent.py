"""Representation statistics of penultimate post-activation values ``z`` [N, d].

Every statistic is computed per row (sample) or per column (neuron) and averaged,
in float64 so that hand-checkable values come out exact. The analysis (:func:`run`) takes
``represent_samples`` seeded test inputs, as the paper's "1000 randomly sampled input from
the test set", and the representation "post-activation values for the penultimate layer".
Where the paper is silent the analysis settings choose (docs/where-the-paper-is-silent.md):
which layer (``represent_layer``: the head's input by default, ``model.features``, as the
authors' code hooks it; or ``model.activations``), |z| first (``represent_abs``), BatchNorm
mode (``represent_bn``), the neurons CSI/BSI average over (``csi_neurons``) and the seed of
the inputs (``represent_sample_seed``).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
from torch import nn

from largelr.evaluate import test_sample
from largelr.registry.analyses import REPRESENT
from largelr.registry.analyses import REPRESENT_BN_CHOICES as BN_CHOICES
from largelr.registry.analyses import REPRESENT_LAYER_CHOICES as LAYER_CHOICES
from largelr.registry.analyses import REPRESENT_NEURON_CHOICES as NEURON_CHOICES
from largelr.registry.analyses import REPRESENT_SAMPLE_SEED_CHOICES as SAMPLE_SEED_CHOICES

NAME = REPRESENT.name
USES_CELL_SEED = True  # run() gets the cell's seed (represent_sample_seed: cell)
# csi / bsi are the reading ``csi_neurons`` chooses; both readings and the active fraction sit beside them
# (the choices of csi_neurons, represent_layer, represent_bn and represent_sample_seed: see the record).
COLUMNS = REPRESENT.columns

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


def active_neurons(z: torch.Tensor) -> torch.Tensor:
    """Bool [d]: the neurons (columns) with a non-zero value on at least one sample."""
    return (_as_float64(z) != 0).any(dim=0).cpu()


def selectivity_index(
    z: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int | None = None,
    eps: float = 1e-7,
    what: str = "label",
    neurons: str = "all",
) -> float:
    """Mean selectivity over neurons: CSI with class labels, BSI with bias labels.

    ``neurons="all"`` averages over every neuron (a dead one counts 0); ``"active"`` over the
    neurons of :func:`active_neurons` (NaN when none is active). A dead neuron's selectivity is
    0, so the active mean is the all-neuron mean divided by the active fraction.
    """
    if neurons not in NEURON_CHOICES:
        raise ValueError(f"csi_neurons = {neurons!r} is not allowed; allowed: {list(NEURON_CHOICES)}")
    per_neuron = selectivity_per_neuron(z, labels, num_labels, eps, what)
    if neurons == "active":
        per_neuron = per_neuron[active_neurons(z)]
    return _mean_or_nan(per_neuron)


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
    z: torch.Tensor,
    y: torch.Tensor,
    b: torch.Tensor,
    q: float = 2.0,
    kappa: float = 0.1,
    eps: float = 1e-7,
    neurons: str = "active",
    pq: tuple[float, float] = (1.0, 2.0),
) -> dict[str, float]:
    """All representation statistics of features z with class labels y and bias labels b.

    ``csi``/``bsi`` are averaged over the ``neurons`` reading; ``csi_active``, ``csi_all`` (and
    the same for BSI) and ``active_fraction`` record both readings side by side.
    """
    selectivity = {}
    for name, labels, what in (("csi", y, "class"), ("bsi", b, "bias")):
        for reading in NEURON_CHOICES:
            selectivity[f"{name}_{reading}"] = selectivity_index(z, labels, eps=eps, what=what, neurons=reading)
        selectivity[name] = selectivity[f"{name}_{neurons}"]
    return {
        "compressibility": compressibility(z, q=q, kappa=kappa),
        "sparsity": sparsity(z),
        "pq_index": pq_index(z, *pq),
        "class_sep": class_separation(z, y),
        "bias_sep": class_separation(z, b),
        **selectivity,
        "active_fraction": float(active_neurons(z).double().mean()),
    }


# --- the analysis: one cell's represent.parquet -----------------------------------------------


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive batches of ``size``; a last batch of one joins the one before it
    (BatchNorm in batch mode cannot normalise a single input)."""
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


@torch.no_grad()
def penultimate_activations(
    model: nn.Module, x: torch.Tensor, batch_size: int, layer: str = "last_activation", bn: str = "eval"
) -> torch.Tensor:
    """The representation of x, batched, on the CPU: ``model.features`` (the head's input) for
    ``layer="head_input"``, ``model.activations`` (non-negative post-activation penultimate values)
    for ``"last_activation"``. ``bn="eval"``: the model in eval mode; ``"batch"``: every BatchNorm
    normalises with the statistics of its batch of ``batch_size`` inputs (the rest stays in eval
    mode), and the running statistics are restored afterwards."""
    if layer not in LAYER_CHOICES:
        raise ValueError(f"represent_layer = {layer!r} is not allowed; allowed: {list(LAYER_CHOICES)}")
    if bn not in BN_CHOICES:
        raise ValueError(f"represent_bn = {bn!r} is not allowed; allowed: {list(BN_CHOICES)}")
    device = next(model.parameters()).device
    represent = model.features if layer == "head_input" else model.activations
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if bn == "batch" else []
    saved = [{name: buffer.clone() for name, buffer in m.named_buffers()} for m in norms]
    try:
        for m in norms:
            m.train()
        return torch.cat([represent(x[start:stop].to(device)).cpu() for start, stop in _batches(len(x), batch_size)])
    finally:
        for m, buffers in zip(norms, saved):
            m.eval()
            for name, value in buffers.items():
                getattr(m, name).copy_(value)


def representation(model: nn.Module, x: torch.Tensor, settings) -> torch.Tensor:
    """The values every statistic reads, per the settings: layer, BatchNorm mode, |z| (``represent_abs``)."""
    batch = settings["represent_bn_batch"] if settings["represent_bn"] == "batch" else settings["eval_batch_size"]
    z = penultimate_activations(model, x, batch, settings["represent_layer"], settings["represent_bn"])
    return z.abs() if settings["represent_abs"] else z


def run(model: nn.Module, dataset: dict[str, Any], settings, device: torch.device, seed: int = 0) -> pd.DataFrame:
    """One row of ``COLUMNS`` from ``represent_samples`` test inputs, drawn with the cell's ``seed``
    (``represent_sample_seed: cell``) or with seed 0 for every cell (``fixed``)."""
    if settings["represent_sample_seed"] not in SAMPLE_SEED_CHOICES:
        raise ValueError(
            f"represent_sample_seed = {settings['represent_sample_seed']!r} is not allowed; "
            f"allowed: {list(SAMPLE_SEED_CHOICES)}"
        )
    sample_seed = seed if settings["represent_sample_seed"] == "cell" else 0
    x, y, b = test_sample(dataset, settings["represent_samples"], "cpu", seed=sample_seed)
    z = representation(model, x, settings)
    metrics = summarize(
        z,
        y,
        b,
        q=settings["compress_q"],
        kappa=settings["compress_kappa"],
        eps=settings["csi_eps"],
        neurons=settings["csi_neurons"],
        pq=(settings["pq_p"], settings["pq_q"]),
    )
    return pd.DataFrame([metrics], columns=list(COLUMNS)).astype(COLUMNS)


def cell_columns(table: pd.DataFrame) -> dict[str, float]:
    return table.iloc[0].to_dict()
