import json
import math
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import quiet, toy_spec

from largelr.config import TRAIN_DEFAULTS
from largelr.evaluate import group_accuracies
from largelr.models import build_model
from largelr.train import PlainSGD, Preempted, focal_loss, lr_factor, train_cell

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


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
    assert summary["train_acc"] == pytest.approx(1.0, abs=1e-7)  # a float32 mean
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
    # float32 sums in another order (batch shuffled, other SIMD width): compare with a tolerance
    assert history["loss"].iloc[0] == pytest.approx(losses.mean().item(), rel=1e-6)
    assert abs(history["bc_loss_ratio"].iloc[0] - (losses[conflicting].sum() / losses.sum()).item()) < 1e-6
    logits = reference(train["x"]).detach()
    assert abs(history["logit_norm"].iloc[0] - logits.norm(dim=1).mean().item()) < 1e-5
    assert abs(history["accuracy"].iloc[0] - (logits.argmax(1) == train["y"]).float().mean().item()) < 1e-7


def test_a_steps_statistics_do_not_depend_on_how_many_steps_share_the_batched_pass(toy_dataset):
    # Evaluating every step reduces each step's logits alone; every 40 steps, all 40 in one pass.
    _, alone, _ = train_cell(toy_spec(target_train_acc=1.1, eval_every=1), toy_dataset, CPU, log=quiet)
    _, pooled, _ = train_cell(toy_spec(target_train_acc=1.1, eval_every=40), toy_dataset, CPU, log=quiet)
    columns = ["step", "loss", "accuracy", "bc_loss_ratio", "logit_norm", "param_norm"]
    assert len(alone) == len(pooled) == 40
    for column in columns:  # reductions over rows of another shape: a tolerance
        assert alone[column].to_numpy() == pytest.approx(pooled[column].to_numpy(), rel=1e-6, abs=1e-7), column


def test_plain_sgd_takes_the_steps_of_torch_optim_sgd():
    # Same kernel (torch.optim.sgd.sgd) on the same tensors: the same computation, compared exactly.
    def run(make_optimizer):
        torch.manual_seed(0)
        model = build_model("fcn", [6], 2, {"depth": 2, "width": 8})
        unused = torch.nn.Parameter(torch.ones(3))  # never gets a gradient: skipped, as torch.optim.SGD does
        params = [*model.parameters(), unused]
        optimizer = make_optimizer(params)
        x, y = torch.randn(20, 6, generator=torch.Generator().manual_seed(1)), torch.arange(20) % 2
        for step in range(5):
            optimizer.param_groups[0]["lr"] = 0.1 / (step + 1)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        return [p.detach().clone() for p in params]

    kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}
    plain = run(lambda params: PlainSGD(params, **kwargs))
    reference = run(lambda params: torch.optim.SGD(params, **kwargs))
    assert all(torch.equal(a, b) for a, b in zip(plain, reference))
    assert torch.equal(plain[-1], torch.ones(3))


def test_plain_sgd_does_not_import_torch_dynamo():
    # torch.optim.Optimizer imports torch._dynamo when it is built (about 1.5 s per training job).
    code = (
        "import sys, torch; from largelr.train import PlainSGD; m = torch.nn.Linear(3, 2); "
        "o = PlainSGD(list(m.parameters()), 0.1, 0.0, 0.0); m(torch.ones(1, 3)).sum().backward(); o.step(); "
        "print('torch._dynamo' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_group_accuracies_by_hand():
    y = torch.tensor([0, 0, 1, 1, 1, 0])
    b = torch.tensor([0, 1, 1, 0, 1, 0])
    pred = torch.tensor([0, 1, 1, 1, 0, 0])
    # aligned samples: 0, 2, 4, 5 -> correct 0, 2, 5 = 3/4; conflicting: 1, 3 -> correct 3 = 1/2
    # groups (y,b): (0,0): {0,5} 2/2; (0,1): {1} 0/1; (1,1): {2,4} 1/2; (1,0): {3} 1/1
    acc = group_accuracies(pred, y, b)
    assert acc == pytest.approx({"acc": 4 / 6, "acc_ba": 3 / 4, "acc_bc": 1 / 2, "worst_group_acc": 0.0}, abs=1e-12)


def fixed_run(toy_dataset, **overrides):
    spec = toy_spec(target_train_acc=1.1, **overrides)
    return train_cell(spec, toy_dataset, CPU, log=quiet)


def weight_l1(model) -> float:
    return sum(p.abs().sum().item() for p in model.parameters())


def test_focal_loss_by_hand_and_gamma_zero_equals_cross_entropy(toy_dataset):
    import pandas as pd

    ce = torch.tensor([0.0, math.log(2.0), 2.0])
    # p_t = exp(-ce) = 1, 1/2, e^-2 -> (1 - p_t)^2 * ce
    expected = torch.tensor([0.0, 0.25 * math.log(2.0), (1 - math.exp(-2.0)) ** 2 * 2.0])
    assert torch.allclose(focal_loss(ce, 2.0), expected)
    model_ce, history_ce, _ = fixed_run(toy_dataset)
    model_focal, history_focal, _ = fixed_run(toy_dataset, loss="focal", focal_gamma=0.0)
    # CE takes its mean inside F.cross_entropy, focal as .mean() of the per-sample losses: another reduction,
    # so float32 rounding may differ; 40 steps keep that below 1e-5 relative, a wrong loss is far off
    pd.testing.assert_frame_equal(history_ce, history_focal, check_exact=False, rtol=1e-5, atol=1e-7)
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
    assert (
        step_history["lr"].iloc[:25].sub(0.1).abs().lt(1e-12).all()
        and step_history["lr"].iloc[25:].sub(0.01).abs().lt(1e-12).all()
    )
    _, cosine, _ = fixed_run(toy_dataset, lr_schedule="cosine")
    assert abs(cosine["lr"].iloc[0] - 0.1) < 1e-12 and abs(cosine["lr"].iloc[20] - 0.05) < 1e-12  # half way: cos(pi/2)
    # annealing changes training only after the step it starts at
    _, constant, _ = fixed_run(toy_dataset)
    # exact: before lr_step_at the step schedule's factor is the literal 1.0, as the constant one's: the same run
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


def test_a_checkpoint_from_before_the_stopping_key_was_renamed_still_resumes(toy_dataset, tmp_path):
    # Checkpoints written before the stopping state's key was "stopping" have it under "loop"; a job
    # preempted then must still resume to the uninterrupted result (the best-on-validation state included).
    spec = toy_spec(target_train_acc=1.1, max_steps=60, select_on_val=True)
    reference_model, reference_history, reference = train_cell(spec, toy_dataset, CPU, log=quiet)

    def preempt_at_step_30(line: str) -> None:
        if line.startswith("step     30"):
            os.kill(os.getpid(), signal.SIGTERM)

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted):
        train_cell(spec, toy_dataset, CPU, log=preempt_at_step_30, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert state["stopping"]["best_step"] is not None
    state["loop"] = state.pop("stopping")
    torch.save(state, checkpoint)
    lines = []
    model, history, summary = train_cell(spec, toy_dataset, CPU, log=lines.append, checkpoint=checkpoint)
    assert lines[0].startswith("resuming from step 30") and history.equals(reference_history)
    assert same_weights(model, reference_model)
    assert (summary["best_step"], summary["val_acc"]) == (reference["best_step"], reference["val_acc"])


def test_a_checkpoint_of_other_settings_is_ignored(toy_dataset, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    train_cell(toy_spec(target_train_acc=1.1), toy_dataset, CPU, log=quiet, checkpoint=checkpoint, checkpoint_every=15)
    lines = []
    _, _, summary = train_cell(
        toy_spec(target_train_acc=1.1, lr=0.05), toy_dataset, CPU, log=lines.append, checkpoint=checkpoint
    )
    assert summary["resumed_from_step"] == 0 and lines[0].startswith("ignoring checkpoint")


def test_train_command_preempted_by_sigterm_exits_nonzero_and_resumes(toy_dataset, tmp_path):
    from largelr.datasets import save_dataset

    save_dataset(toy_dataset, tmp_path / "toy.pt")
    out = tmp_path / "cell"
    spec = toy_spec(target_train_acc=1.1, max_steps=200_000, eval_every=100)
    command = [
        sys.executable,
        "-m",
        "largelr.cli",
        "train",
        "--spec",
        json.dumps(spec),
        "--data",
        str(tmp_path / "toy.pt"),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--checkpoint-every",
        "100000",
    ]
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


# --- variants added with the full engine ---------------------------------------------------


def same_weights(model_a, model_b) -> bool:
    return all(torch.equal(a, b) for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()))


def test_asam_with_vanishing_rho_gives_the_sgd_weights(toy_dataset):
    sgd, _, _ = fixed_run(toy_dataset)
    tiny, _, _ = fixed_run(toy_dataset, asam_rho=1e-9)
    asam, _, _ = fixed_run(toy_dataset, asam_rho=0.5)
    for a, b in zip(sgd.parameters(), tiny.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not all(torch.allclose(a, b, atol=1e-3) for a, b in zip(sgd.parameters(), asam.parameters()))


def test_one_asam_step_on_a_linear_model_matches_a_hand_computed_update(toy_dataset):
    rho, eta, lr = 0.3, 0.01, 0.5
    train = toy_dataset["train"]
    n = len(train["y"])
    spec = toy_spec(batch_size=n, max_steps=1, eval_every=1, asam_rho=rho, asam_eta=eta, lr=lr)
    spec["model_params"] = {"depth": 0, "width": 1}  # FCN without hidden layers: logits = x W^T
    model, _, _ = train_cell(spec, toy_dataset, CPU, log=quiet)
    torch.manual_seed(spec["seed"])
    w = build_model("fcn", [6], 2, spec["model_params"]).head.weight.detach().double()
    x, onehot = train["x"].double(), F.one_hot(train["y"], 2).double()

    def mean_ce_gradient(weights):  # d/dW mean CE = (softmax(x W^T) - onehot)^T x / n
        return (torch.softmax(x @ weights.T, dim=1) - onehot).T @ x / n

    g = mean_ce_gradient(w)
    scale = w.abs() + eta
    eps = rho * scale**2 * g / (scale * g).norm()
    expected = w - lr * mean_ce_gradient(w + eps)
    assert torch.allclose(model.head.weight.double(), expected, atol=1e-6)
    assert not torch.allclose(expected, w - lr * g, atol=1e-4)  # the check can tell ASAM from SGD


def test_wsd_schedule_warms_up_holds_and_decays_to_zero():
    settings = {"lr_schedule": "wsd", "max_steps": 100, "warmup_steps": 10, "wsd_decay_fraction": 0.2}
    factor = lr_factor(settings)
    # warmup: (s + 1) / 10; stable 1; decay over the last 20 steps: (100 - s) / 20
    expected = {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 50: 1.0, 80: 1.0, 81: 0.95, 90: 0.5, 99: 0.05, 100: 0.0}
    assert {s: factor(s) for s in expected} == pytest.approx(expected)
    no_decay = lr_factor(settings | {"wsd_decay_fraction": 0.0, "warmup_steps": 0})
    assert no_decay(0) == no_decay(99) == 1.0  # exact: no warmup and no decay leave the literal 1.0


def test_wsd_rates_reach_the_history(toy_dataset):
    _, history, _ = fixed_run(toy_dataset, lr_schedule="wsd", warmup_steps=4, wsd_decay_fraction=0.25)
    # max_steps 40: decay over the last 10 steps; history row i is step i + 1
    assert history["lr"].iloc[[0, 3, 20, 30, 39]].tolist() == pytest.approx([0.025, 0.1, 0.1, 0.1, 0.01])


def full_train_ce(model, dataset) -> float:
    with torch.no_grad():
        return F.cross_entropy(model.eval()(dataset["train"]["x"]), dataset["train"]["y"]).item()


def test_stop_train_ce_replaces_the_accuracy_target(toy_dataset):
    _, _, by_accuracy = train_cell(toy_spec(lr=0.5, max_steps=2000), toy_dataset, CPU, log=quiet)
    loose_model, _, loose = train_cell(
        toy_spec(lr=0.5, max_steps=2000, stop_train_ce=0.05), toy_dataset, CPU, log=quiet
    )
    tight_model, _, tight = train_cell(
        toy_spec(lr=0.5, max_steps=2000, stop_train_ce=1e-3), toy_dataset, CPU, log=quiet
    )
    assert loose["stopped_by"] == tight["stopped_by"] == "stop_train_ce"
    assert by_accuracy["steps"] < tight["steps"] and loose["steps"] < tight["steps"] < 2000
    assert full_train_ce(loose_model, toy_dataset) < 0.05 and full_train_ce(tight_model, toy_dataset) < 1e-3
    assert abs(tight["train_ce"] - full_train_ce(tight_model, toy_dataset)) < 1e-6
    # one evaluation earlier the CE was not yet below the threshold
    _, _, before = train_cell(
        toy_spec(lr=0.5, max_steps=tight["steps"] - 10, stop_train_ce=1e-3), toy_dataset, CPU, log=quiet
    )
    assert before["stopped_by"] == "max_steps" and before["train_ce"] >= 1e-3


def val_accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == y).float().mean().item()


def noisy_dataset():
    # Label noise in train makes later weights memorize it, so the best val evaluation is not the last.
    from conftest import make_dataset

    dataset = make_dataset(n_train=200, n_test=64, seed=1)
    generator = torch.Generator().manual_seed(0)
    flip = torch.rand(200, generator=generator) < 0.3
    dataset["train"]["y"] = torch.where(flip, 1 - dataset["train"]["y"], dataset["train"]["y"])
    dataset["train"]["x"][:, 1:5] *= 3  # room to memorize
    return dataset


def test_validation_selection_returns_the_weights_of_the_best_evaluation():
    dataset = noisy_dataset()
    spec = toy_spec(lr=0.2, max_steps=300, eval_every=10, target_train_acc=1.1, select_on_val=True, val_fraction=0.25)
    spec["model_params"] = {"depth": 2, "width": 64}
    model, _, summary = train_cell(spec, dataset, CPU, log=quiet)
    assert summary["val_source"].startswith("held-out") and summary["best_step"] % 10 == 0
    # independent hold-out: the same seeded permutation, its first quarter
    order = torch.randperm(200, generator=torch.Generator().manual_seed(spec["seed"]))
    held = order[:50]
    x_val, y_val = dataset["train"]["x"][held], dataset["train"]["y"][held]
    assert val_accuracy(model, x_val, y_val) == pytest.approx(
        summary["val_acc"], abs=1e-6
    )  # float32 means, steps of 1/50
    # rerunning up to best_step (deterministic) gives exactly the returned weights
    until_best = toy_spec(**(spec["train"] | {"max_steps": summary["best_step"], "select_on_val": False}))
    until_best["model_params"] = spec["model_params"]
    plain = toy_spec(**(spec["train"] | {"select_on_val": False}))
    plain["model_params"] = spec["model_params"]
    # without selection nothing is held out, so these reruns get the reduced training set directly
    reduced = dict(dataset, train={k: v[order[50:].sort().values] for k, v in dataset["train"].items()})
    best_model, _, _ = train_cell(until_best, reduced, CPU, log=quiet)
    last_model, _, _ = train_cell(plain, reduced, CPU, log=quiet)
    assert same_weights(model, best_model)
    assert summary["best_step"] < 300  # the noise made later weights worse on val
    assert not same_weights(model, last_model)
    assert val_accuracy(last_model, x_val, y_val) < summary["val_acc"]


def test_validation_selection_uses_the_dataset_val_split_when_there_is_one(toy_dataset):
    from conftest import make_dataset

    dataset = dict(toy_dataset, val=make_dataset(n_train=20, seed=7)["train"])
    model, _, summary = fixed_run(dataset, select_on_val=True)
    assert summary["val_source"] == "val split"
    assert val_accuracy(model, dataset["val"]["x"], dataset["val"]["y"]) == pytest.approx(summary["val_acc"], abs=1e-6)


class CollapsingFCN(torch.nn.Module):
    """Wraps an FCN and zeroes its weights after 25 training forwards: a bias-free ReLU net at
    zero outputs logits 0 (argmax = class 0, chance accuracy) with zero gradients and finite loss."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == 26:
                with torch.no_grad():
                    for p in self.inner.parameters():
                        p.zero_()
        return self.inner(x)


def test_accuracy_collapse_is_recorded_as_divergence_through_the_cli(toy_dataset, tmp_path, monkeypatch):
    import largelr.training.loop
    from largelr.cli import main
    from largelr.datasets import save_dataset

    original = largelr.training.loop.build_model
    monkeypatch.setattr(largelr.training.loop, "build_model", lambda **spec: CollapsingFCN(original(**spec)))
    save_dataset(toy_dataset, tmp_path / "toy.pt")
    spec = toy_spec(target_train_acc=1.1, max_steps=200, collapse_patience=3)
    main(
        [
            "train",
            "--spec",
            json.dumps(spec),
            "--data",
            str(tmp_path / "toy.pt"),
            "--out-dir",
            str(tmp_path / "cell"),
            "--device",
            "cpu",
        ]
    )  # returns: no SystemExit, i.e. exit status 0
    summary = json.loads((tmp_path / "cell" / "train.json").read_text())["summary"]
    # fit by step 20; zeroed in step 26; at chance at evaluations 30, 40, 50 -> stopped at 50
    assert summary["diverged"] and summary["stopped_by"] == "diverged" and summary["diverged_reason"] == "collapse"
    assert summary["diverged_step"] == 30 and summary["steps"] == 50


def test_nonfinite_divergence_names_its_reason(toy_dataset):
    _, _, summary = train_cell(toy_spec(lr=1e12, max_steps=50), toy_dataset, CPU, log=quiet)
    assert summary["diverged_reason"] == "nonfinite"


def test_history_every_thins_the_history_and_keeps_the_recorded_values(toy_dataset):
    _, full, _ = fixed_run(toy_dataset)
    _, thin, _ = fixed_run(toy_dataset, history_every=7)
    # every 7th step plus every evaluation (every 10th step, and the last)
    assert thin["step"].tolist() == [7, 10, 14, 20, 21, 28, 30, 35, 40]
    assert thin.reset_index(drop=True).equals(full[full["step"].isin(thin["step"])].reset_index(drop=True))


def test_attribution_share_is_recorded_at_its_interval(toy_dataset):
    from captum.attr import IntegratedGradients

    model, history, _ = fixed_run(toy_dataset, attribution_every=20)
    shares = history.set_index("step")["spurious_share"]
    assert shares.notna().sum() == 2 and shares.loc[[20, 40]].notna().all()
    # last record: the final model on all 64 train samples, spurious feature = the last column
    x, y = toy_dataset["train"]["x"], toy_dataset["train"]["y"]
    attributions = (
        IntegratedGradients(model.eval())
        .attribute(x, torch.zeros_like(x), target=y, n_steps=20, method="gausslegendre")
        .abs()
    )
    expected = (attributions[:, -1] / attributions.sum(1)).mean().item()
    assert shares.loc[40] == pytest.approx(expected, rel=1e-5)
    # the toy's core mask is the rest of the input: the two shares add up to one; no noise mask, no share
    core = history.set_index("step")["core_share"]
    assert core.loc[40] == pytest.approx(1 - expected, rel=1e-5) and history["noise_share"].isna().all()


def test_resume_keeps_the_new_state(toy_dataset, tmp_path):
    spec = toy_spec(
        target_train_acc=1.1,
        max_steps=60,
        select_on_val=True,
        history_every=3,
        asam_rho=0.1,
        lr_schedule="wsd",
        warmup_steps=5,
    )
    reference_model, reference_history, reference = train_cell(spec, toy_dataset, CPU, log=quiet)

    def preempt_at_step_30(line: str) -> None:
        if line.startswith("step     30"):
            os.kill(os.getpid(), signal.SIGTERM)

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted):
        train_cell(spec, toy_dataset, CPU, log=preempt_at_step_30, checkpoint=checkpoint, checkpoint_every=1000)
    model, history, summary = train_cell(spec, toy_dataset, CPU, log=quiet, checkpoint=checkpoint)
    assert summary["resumed_from_step"] == 30 and history.equals(reference_history)
    assert same_weights(model, reference_model)
    assert (summary["best_step"], summary["val_acc"]) == (reference["best_step"], reference["val_acc"])


def test_psgd_kron_trains_deterministically(toy_dataset):
    pytest.importorskip("heavyball")
    model_a, history_a, _ = fixed_run(toy_dataset, optimizer="psgd_kron", lr=0.01, max_steps=20)
    model_b, history_b, _ = fixed_run(toy_dataset, optimizer="psgd_kron", lr=0.01, max_steps=20)
    _, sgd, _ = fixed_run(toy_dataset, lr=0.01, max_steps=20)
    assert history_a.equals(history_b) and same_weights(model_a, model_b)
    assert history_a["loss"].iloc[-1] < history_a["loss"].iloc[0] and not history_a["loss"].equals(sgd["loss"])


def test_bf16_autocast_key_is_honoured_on_cpu(toy_dataset):
    _, plain, off = fixed_run(toy_dataset, amp="off")
    _, history, summary = fixed_run(toy_dataset, amp="bf16")
    assert off["amp"] == "off" and summary["amp"] == "bf16"
    assert history["loss"].notna().all() and not history["logit_norm"].equals(plain["logit_norm"])
    _, _, default = fixed_run(toy_dataset)  # the default is fp32 for every model
    assert default["amp"] == "off" and TRAIN_DEFAULTS["amp"] == "off"
    _, _, auto = fixed_run(toy_dataset, amp="auto")  # auto: bf16 only for ResNet/WRN/Swin on CUDA
    assert auto["amp"] == "off"


def test_a_bf16_cell_reports_its_test_accuracy_in_fp32_like_the_pruning_base(toy_dataset):
    from largelr.analyses.prune import accuracy

    model, _, summary = fixed_run(toy_dataset, amp="bf16")
    test = toy_dataset["test"]
    with torch.no_grad():  # fp32, as the pruning curve's unpruned accuracy is measured
        fp32 = accuracy(model.eval(), test["x"], test["y"])
    assert summary["test_acc"] == pytest.approx(fp32, abs=1e-12)


@pytest.mark.parametrize(
    "key,value,hint",
    [
        ("lr_schedule", "linear", "allowed: one of ['constant'"),
        ("history_every", 0, ">= 1"),
        ("asam_rho", -1.0, ">= 0"),
    ],
)
def test_bad_train_settings_name_the_key_and_what_is_allowed(toy_dataset, key, value, hint):
    with pytest.raises(ValueError, match=rf"train\.{key} = .*{re.escape(hint)}"):
        fixed_run(toy_dataset, **{key: value})


def test_lazy_image_dataset_trains_like_the_same_images_in_memory(tmp_path):
    from test_natural import write_waterbirds

    from largelr.datasets.lazy import LazyImageDataset
    from largelr.datasets.waterbirds import build_waterbirds

    write_waterbirds(tmp_path)
    lazy = build_waterbirds({"image_size": 8}, tmp_path, seed=0)
    in_memory = {key: value for key, value in lazy.items() if key not in ("lazy", "root")}
    for split in ("train", "val", "test"):
        images = LazyImageDataset(lazy, split)
        in_memory[split] = {
            "x": torch.stack([images[i][0] for i in range(len(images))]),
            "y": lazy[split]["y"],
            "b": lazy[split]["b"],
        }
    spec = toy_spec(batch_size=3, max_steps=12, eval_every=4, target_train_acc=1.1, num_workers=0)
    spec["model_params"] = {"depth": 1, "width": 8}
    model_memory, history_memory, summary_memory = train_cell(spec, in_memory, CPU, log=quiet)
    model_lazy, history_lazy, summary_lazy = train_cell(spec, lazy, CPU, log=quiet)
    with_workers = toy_spec(**(spec["train"] | {"num_workers": 2}))
    with_workers["model_params"] = spec["model_params"]
    model_workers, history_workers, _ = train_cell(with_workers, lazy, CPU, log=quiet)
    # exact: the same images in batches of the same shapes (each split fits one evaluation batch): the same run
    assert history_lazy.equals(history_memory) and history_workers.equals(history_memory)
    assert same_weights(model_lazy, model_memory) and same_weights(model_workers, model_memory)
    assert summary_lazy["test_acc"] == summary_memory["test_acc"]


def test_batch_order_drops_a_single_sample_last_batch_only():
    from largelr.train import BatchOrder

    order = BatchOrder(201, 100, seed=0)
    epoch = [order.next() for _ in range(2)]
    assert [len(batch) for batch in epoch] == [100, 100] and len(torch.cat(epoch).unique()) == 200
    assert len(order.next()) == 100  # the next epoch starts; the left-out sample was not served alone
    partial = BatchOrder(202, 100, seed=0)
    assert [len(partial.next()) for _ in range(3)] == [100, 100, 2]


def test_lazy_image_dataset_resumes_in_the_same_batch_order(tmp_path):
    from test_natural import write_waterbirds

    from largelr.datasets.waterbirds import build_waterbirds

    write_waterbirds(tmp_path)
    lazy = build_waterbirds({"image_size": 8}, tmp_path, seed=0)  # 4 training images
    # batches of 2 and an evaluation every 3 steps: preempted in the middle of the second epoch
    spec = toy_spec(batch_size=2, max_steps=12, eval_every=3, target_train_acc=1.1, num_workers=1, momentum=0.9)
    spec["model_params"] = {"depth": 1, "width": 8}
    reference_model, reference_history, _ = train_cell(spec, lazy, CPU, log=quiet)

    def preempt_at_step_3(line: str) -> None:
        if line.startswith("step      3"):
            os.kill(os.getpid(), signal.SIGTERM)

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted):
        train_cell(spec, lazy, CPU, log=preempt_at_step_3, checkpoint=checkpoint)
    model, history, summary = train_cell(spec, lazy, CPU, log=quiet, checkpoint=checkpoint)
    assert summary["resumed_from_step"] == 3 and history.equals(reference_history)
    assert same_weights(model, reference_model)


def test_a_cell_is_converged_when_its_fit_criterion_stopped_it_or_it_ran_its_fixed_length(toy_dataset):
    _, _, fit = train_cell(toy_spec(lr=0.5, max_steps=2000), toy_dataset, CPU, log=quiet)
    assert fit["stopped_by"] == "target_train_acc" and fit["converged"] is True
    # a fit criterion that the step cap beat: not converged
    _, _, capped = train_cell(toy_spec(lr=1e-4, max_steps=20, target_train_acc=1.0), toy_dataset, CPU, log=quiet)
    assert capped["stopped_by"] == "max_steps" and capped["converged"] is False
    _, _, capped_ce = train_cell(
        toy_spec(lr=1e-4, max_steps=20, target_train_acc=1.1, stop_train_ce=1e-6), toy_dataset, CPU, log=quiet
    )
    assert capped_ce["stopped_by"] == "max_steps" and capped_ce["converged"] is False
    # no fit criterion (target 1.1, no CE stop): a fixed-length run is complete at its step budget
    _, _, fixed = fixed_run(toy_dataset)
    assert fixed["stopped_by"] == "max_steps" and fixed["converged"] is True
    _, _, diverged = train_cell(toy_spec(lr=1e12, max_steps=50), toy_dataset, CPU, log=quiet)
    assert diverged["converged"] is False
    _, _, diverged_fixed = train_cell(
        toy_spec(lr=1e12, max_steps=50, target_train_acc=1.1), toy_dataset, CPU, log=quiet
    )
    assert diverged_fixed["converged"] is False


def test_train_and_test_accuracy_are_logged_at_every_evaluation(toy_dataset):
    model, history, summary = fixed_run(toy_dataset, eval_test=True)
    at_evaluations = history.dropna(subset=["test_acc"])
    assert at_evaluations["step"].tolist() == [10, 20, 30, 40]
    assert history.dropna(subset=["train_acc"])["step"].tolist() == [10, 20, 30, 40]
    # the last evaluation is the final model: its numbers, recomputed here from the model
    test, train = toy_dataset["test"], toy_dataset["train"]
    with torch.no_grad():
        test_acc = (model.eval()(test["x"]).argmax(1) == test["y"]).double().mean().item()
        train_acc = (model(train["x"]).argmax(1) == train["y"]).double().mean().item()
    assert at_evaluations["test_acc"].iloc[-1] == pytest.approx(test_acc) == pytest.approx(summary["test_acc"])
    assert history.dropna(subset=["train_acc"])["train_acc"].iloc[-1] == pytest.approx(train_acc)
    _, plain, _ = fixed_run(toy_dataset)
    assert plain["test_acc"].isna().all()  # off by default


def test_a_trained_cell_saves_its_test_predictions(toy_dataset, tmp_path):
    import pandas as pd

    from largelr.datasets import save_dataset
    from largelr.models import load_checkpoint
    from largelr.train import train_and_save

    save_dataset(toy_dataset, tmp_path / "toy.pt")
    spec = toy_spec(target_train_acc=1.1)
    train_and_save(spec, tmp_path / "toy.pt", tmp_path / "cell", CPU, log=quiet)
    predictions = pd.read_parquet(tmp_path / "cell" / "predictions.parquet")
    summary = json.loads((tmp_path / "cell" / "train.json").read_text())["summary"]
    test = toy_dataset["test"]
    assert predictions["index"].tolist() == list(range(len(test["y"])))
    assert predictions["group"].tolist() == (test["y"] * 2 + test["b"]).tolist()
    assert (predictions["pred"] == predictions["y"]).mean() == pytest.approx(summary["test_acc"])
    # the true-class probability, recomputed from the saved model
    with torch.no_grad():
        probs = torch.softmax(load_checkpoint(tmp_path / "cell" / "model.pt")(test["x"]), 1)
    expected = probs[range(len(test["y"])), test["y"]].double().numpy()
    assert predictions["p_true"].to_numpy() == pytest.approx(expected, rel=1e-5)
    assert set(predictions.columns) >= {"study", "dataset", "model", "knob", "value", "seed"}


# --- interrupts and byte-identical outputs ---------------------------------------------------


def test_train_command_interrupted_by_sigint_checkpoints_and_resumes_to_the_uninterrupted_result(toy_dataset, tmp_path):
    from largelr.datasets import save_dataset

    save_dataset(toy_dataset, tmp_path / "toy.pt")
    spec = toy_spec(target_train_acc=1.1, max_steps=2000, eval_every=100)

    def command(out):
        return [
            sys.executable,
            "-m",
            "largelr.cli",
            "train",
            "--spec",
            json.dumps(spec),
            "--data",
            str(tmp_path / "toy.pt"),
            "--out-dir",
            str(out),
            "--device",
            "cpu",
            "--checkpoint-every",
            "100000",
        ]

    process = subprocess.Popen(command(tmp_path / "cell"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # wait until training is under way
        if line.startswith("step"):
            break
    process.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "preempted (SIGINT)" in stderr and "KeyboardInterrupt" not in stderr
    assert (tmp_path / "cell" / "checkpoint.pt").exists() and not (tmp_path / "cell" / "train.json").exists()
    step = torch.load(tmp_path / "cell" / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < 2000
    from largelr.train import train_and_save

    # The rerun (in this process, as `largelr train` runs it: one thread) resumes from the checkpoint.
    lines = []
    train_and_save(spec, tmp_path / "toy.pt", tmp_path / "cell", CPU, log=lines.append)
    assert f"resuming from step {step}" in lines[1]
    train_and_save(spec, tmp_path / "toy.pt", tmp_path / "plain", CPU, log=quiet)
    for name in ("model.pt", "history.parquet"):  # the resumed cell ends exactly like an uninterrupted one
        assert (tmp_path / "cell" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
    assert not (tmp_path / "cell" / "checkpoint.pt").exists()


def test_two_fresh_runs_of_a_cell_write_byte_identical_model_files(toy_dataset, tmp_path):
    import zipfile

    from largelr.datasets import save_dataset
    from largelr.train import train_and_save

    save_dataset(toy_dataset, tmp_path / "toy.pt")
    spec = toy_spec(target_train_acc=1.1)
    for folder in ("first", "second"):
        train_and_save(spec, tmp_path / "toy.pt", tmp_path / folder, CPU, log=quiet)
    first, second = ((tmp_path / folder / "model.pt").read_bytes() for folder in ("first", "second"))
    assert first == second
    # torch.save names the zip's root folder after the file: the final name, not a temporary one
    with zipfile.ZipFile(tmp_path / "first" / "model.pt") as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"model"}
    assert not [p.name for p in (tmp_path / "first").iterdir() if p.name.startswith(".")]  # no temporary left


def test_bc_loss_ratio_on_a_hand_made_batch():
    from largelr.train import bc_loss_ratio

    # CE: [0, 0] -> ln 2; [ln 3, 0] with y = 0 -> -ln(3/4) = ln(4/3); [0, ln 3] with y = 0 -> ln 4 (the BC sample)
    logits = torch.tensor([[0.0, 0.0], [math.log(3), 0.0], [0.0, math.log(3)]])
    y, b = torch.tensor([0, 0, 0]), torch.tensor([0, 0, 1])
    expected = math.log(4) / (math.log(2) + math.log(4 / 3) + math.log(4))
    assert bc_loss_ratio(logits, y, b) == pytest.approx(expected, rel=1e-6)
    assert bc_loss_ratio(logits, y, y) == 0.0  # exact: no conflicting sample, an empty sum


def test_fixed_set_bc_ratio_is_measured_at_each_evaluation_on_the_seeded_training_sample(toy_dataset):
    from largelr.evaluate import sample_indices

    spec = toy_spec(target_train_acc=1.1, max_steps=20, eval_every=10, bc_ratio_samples=60)
    model, history, summary = train_cell(spec, toy_dataset, CPU, log=quiet)
    measured = history.set_index("step")["bc_loss_ratio_fixed"]
    assert measured.notna().sum() == 2 and measured.loc[[10, 20]].notna().all()
    # the returned model is the one of step 20: its ratio on the same seeded 60 training inputs, by hand
    train = toy_dataset["train"]
    picked = sample_indices(len(train["y"]), 60, spec["seed"])
    with torch.no_grad():
        losses = F.cross_entropy(model(train["x"][picked]), train["y"][picked], reduction="none")
    conflicting = train["y"][picked] != train["b"][picked]
    assert conflicting.any()
    assert measured.loc[20] == pytest.approx((losses[conflicting].sum() / losses.sum()).item(), rel=1e-5)
    assert summary["max_bc_loss_ratio_fixed"] == pytest.approx(measured.max(), rel=1e-12)
    assert summary["max_bc_loss_ratio_fixed_step"] == int(measured.idxmax())
    _, off, off_summary = train_cell(toy_spec(bc_ratio_samples=0, max_steps=10), toy_dataset, CPU, log=quiet)
    assert off["bc_loss_ratio_fixed"].isna().all() and math.isnan(off_summary["max_bc_loss_ratio_fixed"])
