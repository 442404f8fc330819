"""What the loop carries across steps, and what stops or interrupts it.

:class:`TrainState` (model, optimizer, batch order, history, stopping rules) is what a
checkpoint saves and a resumed run restores; :class:`Stopping` holds the stopping rules and
their state; :class:`RunClock` times the run, with evaluations kept out of the training rates;
:func:`interrupt_flag` turns SIGTERM and SIGINT into a flag the loop checks between steps.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from largelr.config import TrainSettings
from largelr.evaluate import Split
from largelr.io import atomic_torch_save
from largelr.training.data import BatchOrder
from largelr.training.history import History
from largelr.training.optim import make_optimizer

# Accuracy collapse: a run counts as having learned once its train accuracy reached
# chance + LEARNED_MARGIN; it has collapsed when it is back at or below chance + COLLAPSE_MARGIN.
LEARNED_MARGIN = 0.1
COLLAPSE_MARGIN = 0.02  # not aggregate's NEAR_CHANCE_MARGIN (the chance_margin setting), which flags cells


class Stopping:
    """The stopping rules, applied at each evaluation: fit, train CE, accuracy collapse, best on val.

    It also keeps the training set's accuracy and CE of the last evaluation it judged
    (``last_train_acc``, ``last_train_ce``; NaN before the first), which the summary reports.
    """

    def __init__(self, settings: TrainSettings, num_classes: int):
        self.settings = settings
        self.chance = 1 / num_classes
        self.learned = False
        self.at_chance = 0
        self.first_at_chance = None
        self.best_val = -1.0
        self.best_step = None
        self.best_state = None
        self.last_train_acc = math.nan
        self.last_train_ce = math.nan

    def after_evaluation(self, step: int, train_acc: float, train_ce: float) -> tuple[str, int | None] | None:
        """(stopped_by, diverged_step) when training should stop after this evaluation, else None."""
        self.last_train_acc = train_acc
        self.last_train_ce = train_ce
        if train_acc >= self.chance + LEARNED_MARGIN:
            self.learned = True
        if self.learned and train_acc <= self.chance + COLLAPSE_MARGIN:
            self.at_chance += 1
            self.first_at_chance = self.first_at_chance or step
        else:
            self.at_chance = 0
            self.first_at_chance = None
        if self.settings.collapse_patience and self.at_chance >= self.settings.collapse_patience:
            return "collapse", self.first_at_chance
        if self.settings.stop_train_ce > 0:
            return ("stop_train_ce", None) if train_ce < self.settings.stop_train_ce else None
        return ("target_train_acc", None) if train_acc >= self.settings.target_train_acc else None

    def keep_if_best(self, step: int, val_acc: float, model: nn.Module) -> None:
        if val_acc > self.best_val:
            self.best_val = val_acc
            self.best_step = step
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "learned": self.learned,
            "at_chance": self.at_chance,
            "first_at_chance": self.first_at_chance,
            "best_val": self.best_val,
            "best_step": self.best_step,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class TrainState:
    """Everything a resumed run needs: model, optimizer, batch order, history, stopping rules.

    The learning-rate schedule is a function of the step (``lr_factor``), so it needs no state.
    """

    FORMAT = 2  # checkpoints of another format (an older largelr) are not resumed from

    def __init__(self, model: nn.Module, settings: TrainSettings, train: Split, num_classes: int, seed: int):
        self.model = model
        self.settings = settings
        self.step = 0
        self.params = list(model.parameters())
        self.optimizer = make_optimizer(self.params, settings)
        self.order = BatchOrder(len(train), settings.batch_size, seed)
        self.history = History(settings.max_steps, train)
        self.stopping = Stopping(settings, num_classes)

    def state_dict(self) -> dict[str, Any]:
        parts = {name: getattr(self, name).state_dict() for name in ("model", "optimizer", "order")}
        return {
            **parts,
            "format": self.FORMAT,
            "step": self.step,
            "history": self.history.state_dict(self.step),
            "stopping": self.stopping.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("model", "optimizer", "order"):
            getattr(self, name).load_state_dict(state[name])
        self.step = state["step"]
        self.history.load_state_dict(state["history"], self.step)
        # "loop": the key of the stopping state in checkpoints written before it was named "stopping"
        stopping = state["stopping"] if "stopping" in state else state["loop"]
        self.stopping.load_state_dict(stopping)
        torch.set_rng_state(state["torch_rng"])

    def save(self, path: str | Path, spec: dict[str, Any]) -> None:
        atomic_torch_save({"spec": spec, **self.state_dict()}, path)

    def checkpoint(self, path: str | Path | None, spec: dict[str, Any], interrupt: dict[str, Any], due: bool) -> None:
        """Between steps: save to ``path`` (if any) when ``due`` or a signal arrived; after a signal,
        raise :class:`Preempted`."""
        if path and (interrupt["raised"] or due):
            self.save(path, spec)
        if interrupt["raised"]:
            raise Preempted(self.step, saved=path is not None, signal_name=interrupt["signal"])

    def resume(self, path: str | Path | None, spec: dict[str, Any], log: Callable[[str], None]) -> int:
        """Restore a checkpoint of this very spec; returns its step (0 if none)."""
        if path is None or not Path(path).exists():
            return 0
        # Loaded on the CPU: generator states must stay there; load_state_dict moves the rest.
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("spec") != spec or state.get("format") != self.FORMAT:
            log(f"ignoring checkpoint {path}: it was written for different settings (or by an older largelr)")
            return 0
        self.load_state_dict(state)
        log(f"resuming from step {self.step} ({path})")
        return self.step


class RunClock:
    """Wall time of a run and the images it trained on, with evaluations and attributions kept
    out of the training rates."""

    def __init__(self, resumed_from: int):
        self.started = time.perf_counter()
        self.aside_s = 0.0
        self.images = 0
        self.resumed_from = resumed_from

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.aside_s += time.perf_counter() - started

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def training_s(self) -> float:
        return time.perf_counter() - self.started - self.aside_s

    def rates(self, step: int) -> tuple[float, float]:
        """(steps/s, images/s) over training time only, since this run started."""
        seconds = self.training_s()
        return ((step - self.resumed_from) / seconds, self.images / seconds) if seconds > 0 else (math.nan, math.nan)


class Preempted(SystemExit):
    """SIGTERM or SIGINT arrived (Slurm preemption, Ctrl-C): stop between steps and exit non-zero."""

    def __init__(self, step: int, saved: bool, signal_name: str = "SIGTERM"):
        what = "checkpoint written, rerun the cell to resume" if saved else "no checkpoint path given"
        super().__init__(f"preempted ({signal_name}) at step {step}: {what}")


@contextlib.contextmanager
def interrupt_flag() -> Iterator[dict[str, Any]]:
    """Turn SIGTERM and SIGINT into a flag the training loop checks between steps."""
    flag: dict[str, Any] = {"raised": False, "signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        flag.update(raised=True, signal=signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
