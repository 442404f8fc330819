"""Hi/lo learning-rate selection and the attribution-map file it writes."""

import json

import numpy as np
import pytest
import torch

from largelr.analyses.attribute import integrated_gradients
from largelr.analyses.hilo import select_hilo
from largelr.cli import main
from largelr.datasets import load_dataset, save_dataset
from largelr.models import build_model, load_checkpoint, save_checkpoint


def test_selection_by_hand():
    # 3 low-lr and 4 high-lr models over 5 samples (1 = right)
    correct_low = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    correct_high = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 0, 1, 1], [1, 1, 1, 0, 1]], dtype=torch.bool)
    # fraction right, low: 0, 1/3, 1/3, 1/3, 0; high: 1, 1, 3/4, 3/4, 3/4
    # sample 0: 1 > 0.75 and 0 < 0.25 -> in; sample 1: low 1/3 -> out; 2, 3, 4: high 3/4 is not > 3/4 -> out
    assert select_hilo(correct_low, correct_high).tolist() == [0]
    # looser thresholds admit 1 (gap 2/3), 4 (gap 3/4), 2 and 3 (gap 5/12); ordered by gap, ties by index
    assert select_hilo(correct_low, correct_high, low_threshold=0.5, high_threshold=0.5).tolist() == [0, 4, 1, 2, 3]
    assert select_hilo(correct_low, correct_high, 0.5, 0.5, max_samples=2).tolist() == [0, 4]


def test_selection_rejects_bad_shapes_and_thresholds():
    with pytest.raises(ValueError, match="same N"):
        select_hilo(torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="hilo_high_threshold"):
        select_hilo(torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool), high_threshold=75)


def constant_class_fcn(predict_one: bool):
    """FCN that predicts class 1 on every non-negative, non-zero input (positive weights), or
    class 0 everywhere (zero weights: tied logits resolve to the first class)."""
    model = build_model("fcn", [3, 4, 4], 2, {"depth": 1, "width": 5})
    with torch.no_grad():
        for weight in model.prunable():
            weight.zero_()
        if predict_one:
            model.body[1].weight.fill_(0.1)
            model.head.weight[1].fill_(1.0)
    return model


def test_hilo_cli_writes_the_documented_npz(tmp_path):
    generator = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1, 1, 0, 1, 1, 0, 1])
    test = {"x": torch.rand(8, 3, 4, 4, generator=generator), "y": y, "b": 1 - y}
    dataset = {
        "name": "tiny",
        "train": test,
        "test": test,
        "num_classes": 2,
        "num_bias": 2,
        "input_shape": [3, 4, 4],
        "spurious_mask": None,
        "core_mask": None,
        "params": {},
        "normalization": {"mean": 0.0, "std": 1.0},
    }
    save_dataset(dataset, tmp_path / "tiny.pt")
    spec = {"name": "fcn", "input_shape": [3, 4, 4], "num_classes": 2, "params": {"depth": 1, "width": 5}}
    # low lr: 3 models predicting 0 (right on y == 0 only); high lr: 4 of 5 predict 1 (right on y == 1 in 80%)
    paths = {"low": [], "high": []}
    for name, ones in (("low", [False] * 3), ("high", [True] * 4 + [False])):
        for seed, predict_one in enumerate(ones):
            path = tmp_path / name / f"seed={seed}" / "model.pt"
            save_checkpoint(constant_class_fcn(predict_one), spec, path)
            paths[name].append(str(path))
    out = tmp_path / "hilo" / "tiny-fcn.npz"
    settings = {"hilo_max_samples": 3, "ig_steps": 8}
    main(
        [
            "hilo",
            "--data",
            str(tmp_path / "tiny.pt"),
            "--device",
            "cpu",
            "--models-low",
            *paths["low"],
            "--models-high",
            *paths["high"],
            "--lr-low",
            "0.001",
            "--lr-high",
            "0.5",
            "--settings",
            json.dumps(settings),
            "--out",
            str(out),
        ]
    )
    with np.load(out) as saved:
        arrays = dict(saved)
    assert set(arrays) == {
        "images",
        "labels",
        "indices",
        "maps_low",
        "maps_high",
        "correct_low",
        "correct_high",
        "lr_low",
        "lr_high",
    }
    # y == 1 at 1, 2, 4, 5, 7: all selected with equal gaps, so the first three by index
    assert arrays["indices"].tolist() == [1, 2, 4] and arrays["indices"].dtype == np.int64
    assert arrays["labels"].tolist() == [1, 1, 1] and arrays["labels"].dtype == np.int64
    assert arrays["images"].shape == (3, 3, 4, 4) and arrays["images"].dtype == np.float32
    stored = load_dataset(tmp_path / "tiny.pt")["test"]["x"]  # inputs as the models see them (stored compactly)
    np.testing.assert_array_equal(arrays["images"], stored[[1, 2, 4]].numpy())
    assert (
        arrays["correct_low"].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-7)
        and arrays["correct_low"].dtype == np.float32
    )
    assert arrays["correct_high"].tolist() == pytest.approx([0.8, 0.8, 0.8])
    assert arrays["lr_low"].shape == () and arrays["lr_low"].dtype == np.float64 and float(arrays["lr_high"]) == 0.5
    # zero-weight models have zero attributions; the high-lr mean is 4/5 of one positive model's map
    np.testing.assert_allclose(arrays["maps_low"], np.zeros((3, 3, 4, 4), dtype=np.float32), rtol=0, atol=1e-7)
    x, target = stored[[1, 2, 4]], y[[1, 2, 4]]
    one_map, _ = integrated_gradients(load_checkpoint(paths["high"][0]), x, target, n_steps=8)
    assert arrays["maps_high"].dtype == np.float32
    np.testing.assert_allclose(arrays["maps_high"], 0.8 * one_map.numpy(), rtol=1e-5, atol=1e-7)


def test_hilo_with_deeplift_stores_deeplift_maps_beside_ig(tmp_path):
    """On these models every ReLU is active between the zero baseline and x (positive inputs and
    weights), so the network is linear there: DeepLift equals IG equals x * gradient, and its
    attributions sum to f(x)[1] - f(0)[1] (completeness), both checked without captum."""
    y = torch.tensor([0, 1, 1, 0, 1])
    test = {"x": torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1)) + 0.1, "y": y, "b": 1 - y}
    dataset = {
        "name": "tiny",
        "train": test,
        "test": test,
        "num_classes": 2,
        "num_bias": 2,
        "input_shape": [3, 4, 4],
        "spurious_mask": None,
        "core_mask": None,
        "params": {},
        "normalization": {"mean": 0.0, "std": 1.0},
    }
    save_dataset(dataset, tmp_path / "tiny.pt")
    spec = {"name": "fcn", "input_shape": [3, 4, 4], "num_classes": 2, "params": {"depth": 1, "width": 5}}
    paths = {"low": [], "high": []}
    for name, ones in (("low", [False, False]), ("high", [True, True])):
        for seed, predict_one in enumerate(ones):
            path = tmp_path / name / f"seed={seed}" / "model.pt"
            save_checkpoint(constant_class_fcn(predict_one), spec, path)
            paths[name].append(str(path))
    out = tmp_path / "tiny-fcn.npz"
    settings = {"hilo_max_samples": 3, "ig_steps": 8, "deeplift": True}
    main(
        [
            "hilo",
            "--data",
            str(tmp_path / "tiny.pt"),
            "--device",
            "cpu",
            "--models-low",
            *paths["low"],
            "--models-high",
            *paths["high"],
            "--lr-low",
            "0.01",
            "--lr-high",
            "0.5",
            "--settings",
            json.dumps(settings),
            "--out",
            str(out),
        ]
    )
    with np.load(out) as saved:
        arrays = dict(saved)
    assert {"maps_low_deeplift", "maps_high_deeplift"} <= set(arrays)
    assert arrays["indices"].tolist() == [1, 2, 4]
    x = load_dataset(tmp_path / "tiny.pt")["test"]["x"][[1, 2, 4]].double()
    model = load_checkpoint(paths["high"][0]).double()
    x.requires_grad_(True)
    logit = model(x)[:, 1]
    (gradient,) = torch.autograd.grad(logit.sum(), x)
    by_hand = (x * gradient).detach().numpy()
    np.testing.assert_allclose(arrays["maps_high_deeplift"], by_hand, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(arrays["maps_high"], by_hand, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        gain = (logit - model(torch.zeros_like(x))[:, 1]).numpy()
    np.testing.assert_allclose(arrays["maps_high_deeplift"].reshape(3, -1).sum(1), gain, rtol=1e-4)
    np.testing.assert_allclose(arrays["maps_low_deeplift"], 0.0, atol=1e-7)
