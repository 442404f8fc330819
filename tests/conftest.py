"""Shared fixtures: tiny datasets in the pipeline's format, built in the test."""

from __future__ import annotations

import pytest
import torch


def make_dataset(n_train: int = 64, n_test: int = 32, dim: int = 6, seed: int = 0) -> dict:
    """Linearly separable 2-class data whose last feature is a spurious copy of the label."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int, conflicting: int) -> dict:
        y = torch.arange(n) % 2
        b = y.clone()
        b[:conflicting] = 1 - b[:conflicting]
        x = torch.randn(n, dim, generator=generator)
        x[:, 0] = (2 * y - 1).float() * 2.0
        x[:, -1] = (2 * b - 1).float()
        return {"x": x, "y": y, "b": b}

    mask = torch.zeros(dim, dtype=torch.bool)
    mask[-1] = True
    return {
        "name": "toy",
        "kind": "toy",
        "traits": {"worst_group": False, "oracle_background": False},
        "train": split(n_train, conflicting=4),
        "test": split(n_test, conflicting=n_test // 2),
        "num_classes": 2,
        "num_bias": 2,
        "input_shape": [dim],
        "spurious_mask": mask,
        "core_mask": ~mask,
        "params": {},
    }


@pytest.fixture
def toy_dataset() -> dict:
    return make_dataset()


def toy_spec(**train_overrides) -> dict:
    from largelr.config import TRAIN_DEFAULTS

    train = TRAIN_DEFAULTS | {"lr": 0.1, "batch_size": 16, "max_steps": 40, "eval_every": 10}
    train.update(train_overrides)
    return {
        "study": "t",
        "dataset": "toy",
        "model": "fcn",
        "knob": "lr",
        "value": train["lr"],
        "seed": 3,
        "train": train,
        "model_params": {"depth": 2, "width": 16},
    }


@pytest.fixture
def one_thread():
    """One torch thread, as `largelr train` runs by default (--threads 1); tiny ops lose time to thread syncs
    otherwise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet(_line: str) -> None:
    """A log function that drops every line."""
