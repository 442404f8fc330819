"""Maps and neuron selectivity over training (Figs 13, 28): the replay observes the cell's own run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import toy_spec

from largelr import evaluate
from largelr.analyses.attribute import integrated_gradients
from largelr.analyses.represent import penultimate_activations, selectivity_per_neuron
from largelr.config import AnalysisSettings
from largelr.over_training import Snapshots, snapshot_steps, training_maps
from largelr.train import train_cell


def test_snapshot_steps_keep_the_requested_steps_before_the_end_then_the_end():
    assert snapshot_steps([300, 0, 100, 100, 5000], 1200) == [0, 100, 300, 1200]
    assert snapshot_steps([0, 40], 40) == [0, 40]  # the final step comes from the cell's model, once


def test_an_observer_stops_the_run_at_the_step_it_asks_for(toy_dataset, one_thread):
    seen = []
    _, _, summary = train_cell(
        toy_spec(target_train_acc=1.01),
        toy_dataset,
        torch.device("cpu"),
        observer=lambda step, model: seen.append(step) or step >= 7,
    )
    assert seen == list(range(8)) and summary["steps"] == 7


def test_replayed_states_are_the_cells_states_at_those_steps(toy_dataset, one_thread):
    """The step-25 record of a 40-step cell equals the final state of the same cell cut at 25 steps
    (a separate run), and the end record is the cell's own model."""
    settings = AnalysisSettings(
        {"training_map_steps": [0, 25, 100], "training_map_samples": 3, "represent_samples": 32, "ig_steps": 8}
    )
    device = torch.device("cpu")
    specs = {"low": toy_spec(lr=0.05, target_train_acc=1.01), "high": toy_spec(lr=0.5, target_train_acc=1.01)}
    models = {group: train_cell(spec, toy_dataset, device)[0] for group, spec in specs.items()}
    arrays = training_maps(specs, models, {"low": 40, "high": 40}, toy_dataset, settings, device)
    assert arrays["steps_low"].tolist() == [0, 25, 40] and arrays["steps_high"].tolist() == [0, 25, 40]
    assert arrays["maps_low"].shape == (3, 3, 6) and arrays["bsi_high"].shape == (3, 16)
    x, y, b = evaluate.test_sample(toy_dataset, 32, "cpu")  # the representation sample
    probe_x, probe_y, _ = evaluate.test_sample(toy_dataset, 3, "cpu")  # the samples whose maps are kept
    assert arrays["images"] == pytest.approx(probe_x.numpy())
    for group in ("low", "high"):
        cut = train_cell({**specs[group], "train": specs[group]["train"] | {"max_steps": 25}}, toy_dataset, device)[0]
        for position, model in ((1, cut), (2, models[group])):
            expected, _ = integrated_gradients(model, probe_x, probe_y, n_steps=8)
            np.testing.assert_allclose(arrays[f"maps_{group}"][position], expected.numpy(), rtol=1e-5, atol=1e-7)
            z = penultimate_activations(model, x, 1000)
            bsi = selectivity_per_neuron(z, b, 2, 1e-7, "bias").numpy()
            np.testing.assert_allclose(arrays[f"bsi_{group}"][position], bsi, rtol=1e-5, atol=1e-7)
    assert not np.allclose(arrays["maps_high"][0], arrays["maps_high"][2])  # training changed the maps
    assert arrays["value_high"] == pytest.approx(0.5) and str(arrays["knob"]) == "lr"


def test_snapshots_restore_the_training_mode(toy_dataset):
    model = train_cell(toy_spec(max_steps=2), toy_dataset, torch.device("cpu"))[0].train()
    x, y, b = evaluate.test_sample(toy_dataset, 8, "cpu")
    snapshots = Snapshots([0], (x[:2], y[:2]), (x, y, b), AnalysisSettings({"ig_steps": 4}), 2)
    assert snapshots(0, model) is True and model.training and list(snapshots.records) == [0]


@pytest.mark.parametrize(
    "key, value",
    [
        ("training_map_steps", [0, -5]),
        ("training_map_steps", []),
        ("training_map_samples", 0),
        ("training_maps", "yes"),
    ],
)
def test_bad_training_map_settings_fail_at_parse_time_naming_the_key(key, value):
    from largelr.config import ConfigError, read_config_file, validate_config

    config = read_config_file("config.yaml")
    config["studies"]["lr_colored_mnist"]["analysis"][key] = value
    with pytest.raises(ConfigError, match=f"studies.lr_colored_mnist.analysis.{key}"):
        validate_config(config)
