import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import toy_spec
from largelr.models import build_model
from largelr.train import Preempted, focal_loss, group_accuracies, train_cell

CPU = torch.device("cpu")


def quiet(_line: str) -> None:
    pass


def test_same_cell_twice_gives_identical_history_and_weights(toy_dataset):
    spec = toy_spec(target_train_acc=1.1)  # never reached: run the full 40 steps
    model_a, history_a, _ = train_cell(spec, toy_dataset, CPU, log=quiet)
    model_b, history_b, _ = train_cell(spec, toy_dataset, CPU, log=quiet)
    assert len(history_a) == 40
    assert history_a.equals(history_b)
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(a, b), name


def test_different_seeds_differ(toy_dataset):
    spec = toy_spec(target_train_acc=1.1)
    _, history_a, _ = train_cell(spec, toy_dataset, CPU, log=quiet)
    _, history_b, _ = train_cell(spec | {"seed": 4}, toy_dataset, CPU, log=quiet)
    assert not history_a["loss"].equals(history_b["loss"])


def test_absurd_learning_rate_is_recorded_as_divergence(toy_dataset):
    _, history, summary = train_cell(toy_spec(lr=1e12, max_steps=50), toy_dataset, CPU, log=quiet)
    assert summary["diverged"] and summary["stopped_by"] == "diverged"
    assert 1 <= summary["diverged_step"] <= 50
    assert not math.isfinite(history["loss"].iloc[summary["diverged_step"] - 1])
    assert math.isfinite(history["loss"].iloc[0]) or summary["diverged_step"] == 1


def test_stops_once_training_set_is_fit(toy_dataset):
    _, _, summary = train_cell(toy_spec(lr=0.5, max_steps=2000), toy_dataset, CPU, log=quiet)
    assert summary["stopped_by"] == "target_train_acc"
    assert summary["train_acc"] == 1.0
    assert summary["steps"] < 2000 and summary["steps"] % 10 == 0


def test_first_step_statistics_match_an_independent_computation(toy_dataset):
    # One full batch: the logged loss and BC loss ratio are those of the initial model.
    n = len(toy_dataset["train"]["y"])
    spec = toy_spec(batch_size=n, max_steps=1, eval_every=1)
    _, history, _ = train_cell(spec, toy_dataset, CPU, log=quiet)
    torch.manual_seed(spec["seed"])
    reference = build_model("fcn", [6], 2, spec["model_params"])
    train = toy_dataset["train"]
    losses = F.cross_entropy(reference(train["x"]), train["y"], reduction="none").detach()
    conflicting = train["y"] != train["b"]
    assert history["loss"].iloc[0] == torch.tensor(losses.mean().item()).float().item()
    assert abs(history["bc_loss_ratio"].iloc[0] - (losses[conflicting].sum() / losses.sum()).item()) < 1e-6
    logits = reference(train["x"]).detach()
    assert abs(history["logit_norm"].iloc[0] - logits.norm(dim=1).mean().item()) < 1e-5
    assert abs(history["accuracy"].iloc[0] - (logits.argmax(1) == train["y"]).float().mean().item()) < 1e-7


def test_group_accuracies_by_hand():
    y = torch.tensor([0, 0, 1, 1, 1, 0])
    b = torch.tensor([0, 1, 1, 0, 1, 0])
    pred = torch.tensor([0, 1, 1, 1, 0, 0])
    # aligned samples: 0, 2, 4, 5 -> correct 0, 2, 5 = 3/4; conflicting: 1, 3 -> correct 3 = 1/2
    # groups (y,b): (0,0): {0,5} 2/2; (0,1): {1} 0/1; (1,1): {2,4} 1/2; (1,0): {3} 1/1
    acc = group_accuracies(pred, y, b)
    assert acc == {"acc": 4 / 6, "acc_ba": 3 / 4, "acc_bc": 1 / 2, "worst_group_acc": 0.0}


def fixed_run(toy_dataset, **overrides):
    spec = toy_spec(target_train_acc=1.1, **overrides)
    return train_cell(spec, toy_dataset, CPU, log=quiet)


def weight_l1(model) -> float:
    return sum(p.abs().sum().item() for p in model.parameters())


def test_focal_loss_by_hand_and_gamma_zero_equals_cross_entropy(toy_dataset):
    ce = torch.tensor([0.0, math.log(2.0), 2.0])
    # p_t = exp(-ce) = 1, 1/2, e^-2 -> (1 - p_t)^2 * ce
    expected = torch.tensor([0.0, 0.25 * math.log(2.0), (1 - math.exp(-2.0)) ** 2 * 2.0])
    assert torch.allclose(focal_loss(ce, 2.0), expected)
    model_ce, history_ce, _ = fixed_run(toy_dataset)
    model_focal, history_focal, _ = fixed_run(toy_dataset, loss="focal", focal_gamma=0.0)
    assert history_ce.equals(history_focal)
    _, history_g5, _ = fixed_run(toy_dataset, loss="focal", focal_gamma=5.0)
    assert not history_ce["param_norm"].equals(history_g5["param_norm"])


def test_l1_penalty_shrinks_weights(toy_dataset):
    plain, _, _ = fixed_run(toy_dataset)
    penalized, _, _ = fixed_run(toy_dataset, l1=0.01)
    assert weight_l1(penalized) < 0.9 * weight_l1(plain)


def test_l2_weight_decay_shrinks_the_parameter_norm(toy_dataset):
    _, plain, _ = fixed_run(toy_dataset)
    _, decayed, _ = fixed_run(toy_dataset, weight_decay=0.5)
    assert decayed["param_norm"].iloc[-1] < plain["param_norm"].iloc[-1]


def test_step_annealing_and_cosine_schedules_log_the_rate_used(toy_dataset):
    _, step_history, _ = fixed_run(toy_dataset, lr_schedule="step", lr_step_at=25, lr_step_factor=0.1)
    assert step_history["lr"].iloc[:25].eq(0.1).all() and step_history["lr"].iloc[25:].sub(0.01).abs().lt(1e-12).all()
    _, cosine, _ = fixed_run(toy_dataset, lr_schedule="cosine")
    assert cosine["lr"].iloc[0] == 0.1 and abs(cosine["lr"].iloc[20] - 0.05) < 1e-12  # half way: cos(pi/2)
    # annealing changes training only after the step it starts at
    _, constant, _ = fixed_run(toy_dataset)
    assert constant["loss"].iloc[:26].equals(step_history["loss"].iloc[:26])
    assert not constant["loss"].iloc[26:].equals(step_history["loss"].iloc[26:])


def test_adam_and_adamw_train_and_differ_from_sgd(toy_dataset):
    _, sgd, _ = fixed_run(toy_dataset, lr=0.01)
    _, adam, _ = fixed_run(toy_dataset, lr=0.01, optimizer="adam")
    _, adamw, _ = fixed_run(toy_dataset, lr=0.01, optimizer="adamw", weight_decay=0.1)
    assert adam["loss"].iloc[-1] < adam["loss"].iloc[0]
    assert not sgd["loss"].equals(adam["loss"]) and not adam["loss"].equals(adamw["loss"])


def test_momentum_changes_the_trajectory(toy_dataset):
    _, plain, _ = fixed_run(toy_dataset)
    _, heavy, _ = fixed_run(toy_dataset, momentum=0.9)
    assert plain["loss"].iloc[0] == heavy["loss"].iloc[0]  # first step: no velocity yet
    assert not plain["loss"].equals(heavy["loss"])


def test_sigterm_checkpoints_and_the_rerun_ends_like_an_uninterrupted_run(toy_dataset, tmp_path):
    spec = toy_spec(target_train_acc=1.1, max_steps=60, momentum=0.9, lr_schedule="step", lr_step_at=30)
    reference_model, reference_history, _ = train_cell(spec, toy_dataset, CPU, log=quiet)

    def preempt_at_step_20(line: str) -> None:
        if line.startswith("step     20"):
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, as Slurm sends it

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted):
        train_cell(spec, toy_dataset, CPU, log=preempt_at_step_20, checkpoint=checkpoint, checkpoint_every=15)
    assert torch.load(checkpoint, weights_only=True)["step"] == 20
    lines = []
    model, history, summary = train_cell(spec, toy_dataset, CPU, log=lines.append, checkpoint=checkpoint)
    assert lines[0].startswith("resuming from step 20") and summary["resumed_from_step"] == 20
    assert history.equals(reference_history)
    for (name, a), (_, b) in zip(model.state_dict().items(), reference_model.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_other_settings_is_ignored(toy_dataset, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    train_cell(toy_spec(target_train_acc=1.1), toy_dataset, CPU, log=quiet, checkpoint=checkpoint, checkpoint_every=15)
    lines = []
    _, _, summary = train_cell(toy_spec(target_train_acc=1.1, lr=0.05), toy_dataset, CPU, log=lines.append, checkpoint=checkpoint)
    assert summary["resumed_from_step"] == 0 and lines[0].startswith("ignoring checkpoint")


def test_train_command_preempted_by_sigterm_exits_nonzero_and_resumes(toy_dataset, tmp_path):
    from largelr.data import save_dataset

    save_dataset(toy_dataset, tmp_path / "toy.pt")
    out = tmp_path / "cell"
    spec = toy_spec(target_train_acc=1.1, max_steps=200_000, eval_every=100)
    command = [sys.executable, "-m", "largelr.cli", "train", "--spec", json.dumps(spec), "--data", str(tmp_path / "toy.pt"),
               "--out-dir", str(out), "--device", "cpu", "--checkpoint-every", "100000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # wait until training is under way
        if line.startswith("step"):
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "preempted (SIGTERM)" in stderr
    assert (out / "checkpoint.pt").exists() and not (out / "train.json").exists()
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    command[command.index("--spec") + 1] = json.dumps(spec | {"train": spec["train"] | {"max_steps": step + 50}})
    # A changed spec must not resume: the checkpoint is ignored and training starts over.
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0 and "ignoring checkpoint" in rerun.stdout
    assert json.loads((out / "train.json").read_text())["summary"]["steps"] == step + 50
    assert not (out / "checkpoint.pt").exists()
