"""Hi/lo learning-rate attribution maps (Figs 8, 29-34).

The test samples that most high-learning-rate models get right and most low-learning-rate
models get wrong (:func:`select_hilo`: right for > 0.75 of the high-rate seeds and < 0.25 of
the low-rate seeds, as in the paper), with their IG maps averaged over the seeds of each
learning rate (:func:`hilo_maps`), and DeepLift's beside them where the study asks for DeepLift.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from largelr.analyses.attribute import deeplift, ig_baseline, integrated_gradients
from largelr.evaluate import Split, predict_split


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
        raise ValueError(
            f"expected [seeds, N] matrices over the same N samples, got shapes "
            f"{tuple(correct_low.shape)} and {tuple(correct_high.shape)}"
        )
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
    settings,
    device: torch.device,
    lr_low: float,
    lr_high: float,
) -> dict[str, Any]:
    """The arrays of a hi/lo file: selected test images, labels, indices, seed-mean IG maps and correctness.

    Every model predicts the whole test set; IG (w.r.t. the true label, settings' ig_* keys)
    runs only on the selected samples. Arrays are numpy, as np.savez writes them.
    """
    test = Split(dataset, "test", device)
    correct = {
        name: torch.stack(
            [(predict_split(model, test, settings["eval_batch_size"]) == test.y).cpu() for model in models]
        )
        for name, models in (("low", models_low), ("high", models_high))
    }
    indices = select_hilo(
        correct["low"],
        correct["high"],
        settings["hilo_low_threshold"],
        settings["hilo_high_threshold"],
        settings["hilo_max_samples"],
    )
    x, y, _ = (t.cpu() for t in test.samples(indices))
    arrays: dict[str, Any] = {
        "images": x.float().numpy(),
        "labels": y.long().numpy(),
        "indices": indices.long().numpy(),
    }
    for name, models in (("low", models_low), ("high", models_high)):
        arrays.update(seed_mean_maps(models, x, y, settings, device, name))
        arrays[f"correct_{name}"] = correct[name][:, indices].float().mean(0).numpy()
    arrays["lr_low"] = np.float64(lr_low)
    arrays["lr_high"] = np.float64(lr_high)
    return arrays


def seed_mean_maps(
    models: list[nn.Module], x: torch.Tensor, y: torch.Tensor, settings, device: torch.device, name: str
) -> dict[str, np.ndarray]:
    """maps_{name}: the seed-mean IG maps of ``x`` w.r.t. ``y``; with settings["deeplift"] also
    maps_{name}_deeplift, DeepLift from the same baseline (Fig. 14 sets the two side by side)."""
    methods = ("ig", "deeplift") if settings["deeplift"] else ("ig",)
    totals = {method: torch.zeros_like(x, dtype=torch.float64) for method in methods}
    if len(x):
        x, y = x.to(device), y.to(device)
        baseline = ig_baseline(x, settings["ig_baseline"])
        for model in models:
            maps, _ = integrated_gradients(
                model, x, y, settings["ig_steps"], settings["ig_method"], settings["ig_internal_batch_size"], baseline
            )
            totals["ig"] += maps.double().cpu()
            if "deeplift" in totals:
                totals["deeplift"] += deeplift(model, x, y, baseline).double().cpu()
    suffix = {"ig": "", "deeplift": "_deeplift"}
    return {f"maps_{name}{suffix[method]}": (total / len(models)).float().numpy() for method, total in totals.items()}


def write_hilo(
    models_low: list[str],
    models_high: list[str],
    data_path: str,
    settings,
    device: torch.device,
    lr_low: float,
    lr_high: float,
    out: str,
) -> None:
    """Load the models and the dataset, compute the hi/lo arrays and write them as one .npz."""
    from largelr.datasets import load_dataset
    from largelr.io import atomic_path
    from largelr.models import load_checkpoint

    dataset = load_dataset(data_path)
    models = {
        name: [load_checkpoint(path, device) for path in paths]
        for name, paths in (("low", models_low), ("high", models_high))
    }
    arrays = hilo_maps(models["low"], models["high"], dataset, settings, device, lr_low, lr_high)
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    print(
        f"hilo: {len(arrays['indices'])} samples right in > {settings['hilo_high_threshold']:.0%} of "
        f"{len(models_high)} models at lr={lr_high} and < {settings['hilo_low_threshold']:.0%} of "
        f"{len(models_low)} at lr={lr_low} -> {out}"
    )
