"""Optimizers, the learning-rate schedule, the training loss and ASAM's gradients.

Plain SGD (the paper's optimizer) runs torch's functional SGD kernel without the
``torch.optim.Optimizer`` class around it (:class:`PlainSGD`); Adam, AdamW and PSGD-Kron are the
libraries' own. The schedule is a function of the step (:func:`lr_factor`), so it has no state to
checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.sgd import sgd

from largelr.config import TrainSettings


class PlainSGD:
    """``torch.optim.SGD``'s update through its functional kernel (``torch.optim.sgd.sgd``).

    The arithmetic is the library's own: the same kernel ``torch.optim.SGD(params, lr, momentum,
    weight_decay)`` calls. Left out is the class around it: its per-step wrappers (profiler and
    hook bookkeeping, grad-mode guards) and its import of ``torch._dynamo`` when it is built,
    which costs every training job about 1.5 s on a CPU. The learning rate is ``param_groups[0]["lr"]``,
    as in a torch optimizer, so schedules set it the same way.
    """

    def __init__(self, params: list[nn.Parameter], lr: float, momentum: float, weight_decay: float):
        self.params = params
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.param_groups = [{"lr": lr}]
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(params)

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]  # as torch.optim.SGD: skip grad-less
        params = [self.params[i] for i in live]
        buffers = [self.momentum_buffers[i] for i in live]
        sgd(
            params,
            [p.grad for p in params],
            buffers,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            lr=self.param_groups[0]["lr"],
            dampening=0.0,
            nesterov=False,
            maximize=False,
        )
        for i, buffer in zip(live, buffers):  # the kernel creates the buffers at the first step
            self.momentum_buffers[i] = buffer

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.param_groups[0]["lr"], "momentum_buffers": list(self.momentum_buffers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.param_groups[0]["lr"] = state["lr"]
        self.momentum_buffers = [
            None if buffer is None else buffer.to(p.device) for buffer, p in zip(state["momentum_buffers"], self.params)
        ]


def make_optimizer(params: list[nn.Parameter], settings: TrainSettings) -> PlainSGD | torch.optim.Optimizer:
    name = settings.optimizer
    lr = settings.lr
    decay = settings.weight_decay
    if name == "sgd":
        return PlainSGD(params, lr=lr, momentum=settings.momentum, weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=decay)
    try:
        import heavyball
    except ImportError as error:
        raise ImportError("optimizer psgd_kron needs the heavyball package: pip install heavyball") from error
    # heavyball torch.compiles its update kernels (with autotuning) by default; only do that
    # when the cell asks for compilation, so short CPU cells start at once.
    heavyball.utils.compile_mode = "max-autotune-no-cudagraphs" if settings.compile else None
    return heavyball.PSGDKron(params, lr=lr, weight_decay=decay)


def set_lr(optimizer: PlainSGD | torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def lr_factor(settings: TrainSettings | dict[str, Any]) -> Callable[[int], float]:
    """Multiplier of the base learning rate for the optimizer step after ``step`` steps."""
    settings = settings if isinstance(settings, TrainSettings) else TrainSettings(settings)
    schedule = settings.lr_schedule
    max_steps = settings.max_steps
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "step":
        return lambda step: settings.lr_step_factor if step >= settings.lr_step_at else 1.0
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max_steps))
    warmup = settings.warmup_steps
    decay = round(settings.wsd_decay_fraction * max_steps)

    def warmup_stable_decay(step: int) -> float:
        rising = (step + 1) / warmup if step < warmup else 1.0  # the first step already moves
        falling = (max_steps - step) / decay if decay and step >= max_steps - decay else 1.0  # 0 at max_steps
        return max(0.0, min(rising, falling))

    return warmup_stable_decay


def focal_loss(cross_entropy: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample focal loss (1 - p_t)^gamma * CE, with p_t = exp(-CE); gamma = 0 is CE."""
    if gamma == 0:
        return cross_entropy
    return (1 - torch.exp(-cross_entropy)).pow(gamma) * cross_entropy


def training_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    params: list[nn.Parameter],
    settings: TrainSettings,
) -> torch.Tensor:
    """Mean per-sample loss (CE or focal) plus the L1 penalty.

    Cross-entropy takes the mean inside ``F.cross_entropy`` (one autograd node, as a bare
    loop); its gradient is the same as that of the mean of the per-sample losses.
    """
    if settings.loss == "focal":
        loss = focal_loss(F.cross_entropy(logits.float(), y, reduction="none"), settings.focal_gamma).mean()
    else:
        loss = F.cross_entropy(logits.float(), y)
    if settings.l1:
        loss = loss + settings.l1 * sum(p.abs().sum() for p in params)
    return loss


@torch.no_grad()
def asam_perturbation(params: list[nn.Parameter], rho: float, eta: float) -> list[torch.Tensor]:
    """Adaptive SAM's ascent step from the current gradients (Kwon et al. 2021, p = 2).

    With T_w = |w| + eta elementwise (for every parameter), eps = rho * T_w^2 g / ||T_w g||_2,
    the norm taken over all parameters together.
    """
    scales = [p.abs() + eta for p in params]
    scaled = [t * p.grad for t, p in zip(scales, params)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
    factor = rho / (norm + 1e-12)
    return [t * s * factor for t, s in zip(scales, scaled)]


def asam_gradients(
    forward: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    autocast,
) -> None:
    """Replace the gradients with ASAM's: the gradient taken at w + eps (eps from the current gradients)."""
    moved = [p for p in params if p.grad is not None]
    eps = asam_perturbation(moved, settings.asam_rho, settings.asam_eta)
    with torch.no_grad():
        torch._foreach_add_(moved, eps)
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        perturbed = forward(x)
    training_loss(perturbed, y, params, settings).backward()
    with torch.no_grad():
        torch._foreach_sub_(moved, eps)
