"""Attribution maps and neuron selectivity over training, at a low and a high learning rate
(Fig. 13 left: maps over training; Fig. 28: one neuron's spurious feature use over training).

A trained cell keeps only its final weights, so the earlier states are replayed: the cell's
first seed is trained again from its own spec (same seed, same batches) and observed at the
requested steps (``training_map_steps``); the final state is the cell's model.pt itself. At each
step: the IG maps of a few fixed test samples (``training_map_samples``, w.r.t. their labels,
the study's ig_* settings) and the class and bias selectivity (CSI, BSI) of every penultimate
neuron on the representation sample (``represent_samples``). On a CPU the replay is the cell's
run step for step (training is deterministic there); GPU kernels may make it drift slightly.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import nn

from largelr.analyses.attribute import ig_baseline, integrated_gradients
from largelr.analyses.represent import penultimate_activations, selectivity_per_neuron
from largelr.evaluate import Split, sample_indices, test_sample


def snapshot_steps(requested: list[int], final_step: int) -> list[int]:
    """The requested steps before the run's final step (ascending, once each), then the final step."""
    return sorted({int(step) for step in requested if 0 <= step < final_step}) + [int(final_step)]


class Snapshots:
    """Observer of a replayed run (largelr.train.Observer): records the maps and selectivities at
    each requested step and stops the run after the last one."""

    def __init__(
        self,
        steps: list[int],
        probe: tuple[torch.Tensor, torch.Tensor],
        represent: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        settings,
        num_bias: int,
    ):
        self.pending, self.settings, self.num_bias = sorted(steps), settings, num_bias
        self.probe, self.represent = probe, represent
        self.records: dict[int, dict[str, np.ndarray]] = {}

    def __call__(self, step: int, model: nn.Module) -> bool:
        if self.pending and step == self.pending[0]:
            self.records[step] = self.measure(model)
            self.pending.pop(0)
        return not self.pending

    def measure(self, model: nn.Module) -> dict[str, np.ndarray]:
        """IG maps of the probe samples and per-neuron CSI and BSI, in eval mode; the mode is restored."""
        was_training, settings = model.training, self.settings
        device = next(model.parameters()).device
        try:
            x, y = (t.to(device) for t in self.probe)
            maps, _ = integrated_gradients(
                model,
                x,
                y,
                settings["ig_steps"],
                settings["ig_method"],
                settings["ig_internal_batch_size"],
                ig_baseline(x, settings["ig_baseline"]),
            )
            rep_x, rep_y, rep_b = self.represent
            z = penultimate_activations(model, rep_x, settings["eval_batch_size"])
        finally:
            model.train(was_training)
        eps = settings["csi_eps"]
        return {
            "maps": maps.float().cpu().numpy(),
            "csi": selectivity_per_neuron(z, rep_y.cpu(), None, eps, "class").float().numpy(),
            "bsi": selectivity_per_neuron(z, rep_b.cpu(), self.num_bias, eps, "bias").float().numpy(),
        }


def replay_snapshots(
    spec: dict[str, Any],
    dataset: dict[str, Any],
    final_model: nn.Module,
    final_step: int,
    snapshots: Snapshots,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """steps, maps [T, S, ...], csi and bsi [T, neurons] of one cell: its replay up to the last requested
    step before ``final_step``, then its final model."""
    from largelr.train import train_cell

    if snapshots.pending[:-1]:
        snapshots.pending = snapshots.pending[:-1]  # the final state is the cell's model, not the replay's
        train_cell(spec, dataset, device, log=lambda line: None, observer=snapshots)
    snapshots.records[final_step] = snapshots.measure(final_model)
    steps = sorted(snapshots.records)
    stacked = {key: np.stack([snapshots.records[s][key] for s in steps]) for key in ("maps", "csi", "bsi")}
    return {"steps": np.asarray(steps, dtype=np.int64), **stacked}


def training_maps(
    specs: dict[str, dict[str, Any]],
    models: dict[str, nn.Module],
    final_steps: dict[str, int],
    dataset: dict[str, Any],
    settings,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """The arrays of a training-maps file for the "low" and "high" cells of ``specs``."""
    n = settings["training_map_samples"]
    x, y, _ = test_sample(dataset, n, "cpu")
    represent = test_sample(dataset, settings["represent_samples"], "cpu")
    indices = sample_indices(len(Split(dataset, "test", "cpu")), n, 0)  # test_sample's draw
    arrays: dict[str, np.ndarray] = {
        "images": x.float().numpy(),
        "labels": y.long().numpy(),
        "indices": indices.long().numpy(),
        "knob": np.str_(specs["low"]["knob"]),
    }
    for group in ("low", "high"):
        steps = snapshot_steps(settings["training_map_steps"], final_steps[group])
        snapshots = Snapshots(steps, (x, y), represent, settings, dataset["num_bias"])
        run = replay_snapshots(specs[group], dataset, models[group], final_steps[group], snapshots, device)
        arrays.update({f"{key}_{group}": value for key, value in run.items()})
        arrays[f"value_{group}"] = np.float64(specs[group]["value"])
    arrays["seed"] = np.int64(specs["low"]["seed"])
    return arrays


def write_training_maps(
    data_path: str,
    specs: dict[str, dict[str, Any]],
    model_paths: dict[str, str],
    summary_paths: dict[str, str],
    settings,
    device: torch.device,
    out: str,
) -> None:
    """Load the dataset and the two cells' final models and steps, replay, and write one .npz."""
    from largelr.datasets import load_dataset
    from largelr.io import atomic_path
    from largelr.models import load_checkpoint

    dataset = load_dataset(data_path)
    models = {group: load_checkpoint(path, device) for group, path in model_paths.items()}
    final_steps = {
        group: int(json.loads(open(path).read())["summary"]["steps"]) for group, path in summary_paths.items()
    }
    arrays = training_maps(specs, models, final_steps, dataset, settings, device)
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    print(
        f"training maps: steps {arrays['steps_low'].tolist()} (low) and {arrays['steps_high'].tolist()} (high) -> {out}"
    )
