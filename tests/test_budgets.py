"""Step caps checked against training-set sizes at parse time (largelr.budgets)."""

import copy

import pytest

from largelr.budgets import epochs, train_size
from largelr.config import ConfigError, validate_config


def study(max_steps: int, batch_size: int = 100, **analysis) -> dict:
    config = {
        "datasets": {"parity": {"n_train": 1000}},
        "studies": {
            "s": {
                "knob": "lr",
                "seeds": [0],
                "values": [0.1],
                "train": {"max_steps": max_steps, "batch_size": batch_size},
                "grid": [{"datasets": ["parity"], "models": ["fcn"]}],
            }
        },
    }
    if analysis:
        config["studies"]["s"]["analysis"] = analysis
    return config


def test_epochs_and_training_set_sizes_by_hand():
    assert epochs(20000, 16, 162770) == pytest.approx(1.966, abs=1e-3)  # Swin-T on CelebA: about 2 epochs
    assert epochs(200000, 100, 1281167) == pytest.approx(15.61, abs=1e-2)  # ResNet18 on ImageNet
    assert train_size("parity", {"n_train": 1000}) == 1000
    assert train_size("colored_mnist", {"base": "mnist"}) == 60000
    assert train_size("corrupted_cifar10", {}) == 50000 and train_size("celeba", {}) == 162770


def test_a_cap_under_min_epochs_is_flagged_and_a_feasible_one_passes():
    validate_config(study(max_steps=30))  # 30 x 100 / 1000 = 3 epochs: the default min_epochs, feasible
    with pytest.raises(
        ConfigError,
        match=r"\(parity, fcn\) max_steps 29 x batch_size 100 is 2.90 epochs of its 1000 "
        r"training samples, under min_epochs 3.*max_steps >= 30",
    ):
        validate_config(study(max_steps=29))


def test_min_epochs_is_a_key_and_a_fixed_budget_study_is_not_checked():
    with pytest.raises(ConfigError, match="under min_epochs 20"):
        validate_config(study(max_steps=100, min_epochs=20))
    validate_config(study(max_steps=10, require_converged=False))  # fixed budget: complete when spent
    schedule = study(max_steps=10)
    schedule["studies"]["s"]["train"]["target_train_acc"] = 1.5  # runs to its cap: no fit criterion
    validate_config(schedule)
    schedule["studies"]["s"]["train"]["target_train_acc"] = 0.0  # met at the first evaluation
    validate_config(schedule)


def test_a_batch_size_sweep_is_checked_per_value():
    config = study(max_steps=100)
    config["studies"]["s"].update(knob="batch_size", values=[10, 100])  # 100 x 10 / 1000 = 1 epoch, 100 x 100: 10
    with pytest.raises(ConfigError, match="batch_size 10 is 1.00 epochs") as error:
        validate_config(copy.deepcopy(config))
    assert "batch_size 100 is" not in str(error.value)


def test_the_paper_config_passes_and_celeba_under_require_converged_is_flagged():
    from pathlib import Path

    from largelr.config import read_config_file

    config = read_config_file(Path(__file__).parents[1] / "config.yaml")
    validate_config(config)  # every study's caps are feasible or on the documented fixed-budget protocol
    config["studies"]["lr_celeba"]["analysis"]["require_converged"] = True
    with pytest.raises(
        ConfigError, match=r"lr_celeba.*\(celeba, swin_t\) max_steps 20000 x batch_size 16 is 1.97 epochs"
    ):
        validate_config(config)
