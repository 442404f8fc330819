"""The prune analysis: one cell's pruning curves (prune.parquet) and its prunability readings.

Each curve evaluates the model pruned at every κ of the settings' ``kappas``, one curve per
method of ``prune_methods``; the methods and their masks are in :mod:`largelr.analyses.prune_masks`
(the paper's, behind Table 1, is "structured": neurons and kernels).

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
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from largelr.analyses.prune_masks import mask_targets, masks_for_kappas, zero_fraction
from largelr.evaluate import Split, group_accuracies, predict, sample_indices

# The analysis settings' choices live with its record (largelr.registry.analyses).
from largelr.registry.analyses import PRUNE, PRUNE_METHODS
from largelr.registry.analyses import PRUNE_READINGS as READINGS

NAME = PRUNE.name
METHODS: tuple[str, ...] = tuple(PRUNE_METHODS)
DEFAULT_KAPPAS: tuple[float, ...] = tuple(PRUNE.default("kappas"))
DEFAULT_READING = PRUNE.default("prunability")
METRICS = ("accuracy", "worst_group_acc")
# The table: one row per (method, kappa); declared with the record.
COLUMNS = PRUNE.columns
CURVE_COLUMNS = list(COLUMNS)


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
    return [
        (x[i : i + batch_size], y[i : i + batch_size], None if b is None else b[i : i + batch_size])
        for i in range(0, len(x), batch_size)
    ]


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


def _distinct_variants(
    model: nn.Module,
    kappas: Sequence[float],
    methods: Sequence[str],
) -> tuple[list[list[torch.Tensor] | None], dict[tuple[str, float], int], list[float]]:
    """The pruned variants to evaluate, each once: (masks per variant, over ``mask_targets(model)``;
    variant of each (method, kappa); zero fraction per variant). Variant 0 is the unpruned model."""
    float_kappas = [float(k) for k in kappas]
    targets, n_weights = mask_targets(model)
    all_masks = {method: dict(zip(float_kappas, masks_for_kappas(model, float_kappas, method))) for method in methods}
    variants: list[list[torch.Tensor] | None] = [None]
    fractions = [zero_fraction(targets[:n_weights])]
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
                fractions.append(zero_fraction(targets[:n_weights], masks[:n_weights]))
                twin = len(variants) - 1
                variants_at.setdefault(kappa, []).append(twin)
            variant_of[(method, kappa)] = twin
    return variants, variant_of, fractions


def _predict_variants(
    model: nn.Module,
    batches: Iterable[Batch],
    variants: list[list[torch.Tensor] | None],
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
            row = {
                "method": method,
                "kappa": kappa,
                **values[index],
                "pruned_fraction": fractions[index],
                "metric": metric,
                "test_inputs": len(y_all),
                "chance": chance,
            }
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


def prunability(curve_df: pd.DataFrame, reading: str = DEFAULT_READING) -> float:
    """Mean retention over the curve's kappas: reading "ratio" (the text's Acc_κ/Acc) or "chance"
    ((Acc_κ − c)/(Acc − c)); by default the analysis setting's default, ``DEFAULT_READING``."""
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
        curves.append(
            retention_curves(model, split.batches(settings["eval_batch_size"]), kappas, group, metric, chance)
        )
    table = pd.concat(curves, ignore_index=True)
    return table.set_index("method").loc[methods].reset_index()  # in the settings' order


def diverged(settings) -> pd.DataFrame:
    """The table of a diverged cell: every (method, kappa) row, NaN results."""
    rows = [
        {"method": method, "kappa": float(k), "test_inputs": 0}
        for method in settings["prune_methods"]
        for k in settings["kappas"]
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).astype(
        {column: dtype for column, dtype in COLUMNS.items() if dtype != "object"}
    )


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
    chosen = {
        f"prunability{column[len(prefix) :]}": row[column]
        for column in list(row.keys())
        if column == prefix or column.startswith(prefix + "_")
    }
    return chosen | {"prunability_reading": reading}
