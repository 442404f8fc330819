"""One record per model: its parameters, where its class lives, its traits and its cost.

Torch-free, so that Snakemake's parse, config validation and the Slurm profile read the
records without importing the implementations; :meth:`ModelRecord.load` imports the class
(``largelr.models``) on use. Adding a model: a class with the interface of
:class:`largelr.models.BodyAndHead` and one record below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from largelr.checks import Setting

# The ResNet stems (model parameter ``stem``): (kernel, stride, padding, max-pool); largelr.models builds them.
STEMS = {"torchvision": (7, 2, 3, True), "small": (3, 1, 1, False), "stride1": (7, 1, 3, True)}
STEM_CHOICES = ("auto", *STEMS)
# The rules whose Slurm resources scale with the model (profiles/slurm/config.yaml).
COST_RULES = ("train", "analyze", "hilo")


@dataclass(frozen=True)
class Cost:
    """Slurm resources of one job of a rule for this model: minutes (per attempt) and memory."""

    runtime: int
    mem_mb: int


@dataclass(frozen=True)
class ModelRecord:
    name: str
    doc: str
    implementation: str  # "module:attribute" of the nn.Module class, imported on use
    params: dict[str, Setting] = field(default_factory=dict)
    # bf16 autocast in training under `amp: auto` on CUDA (large models, where it pays)
    autocast: bool = False
    # small enough that several cells share one GPU (a Slurm GPU slice, LARGELR_SLURM_GPU_SHARE)
    gpu_shared: bool = False
    cost: dict[str, Cost] = field(default_factory=dict)  # rule -> Cost, for every rule of COST_RULES

    @property
    def PARAMS(self) -> dict[str, Setting]:  # the name the model classes use
        return self.params

    def load(self) -> Any:
        """The model class (imports torch)."""
        module, _, attribute = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attribute)


def _costs(train: tuple[int, int], analyze: tuple[int, int], hilo: tuple[int, int]) -> dict[str, Cost]:
    return {"train": Cost(*train), "analyze": Cost(*analyze), "hilo": Cost(*hilo)}


RESNET_PARAMS = {
    "stem": Setting(
        "auto",
        "auto (torchvision for 3 channels, stride1 for 1 channel) | torchvision (7x7 stride 2 + "
        "max-pool, as shipped) | small (3x3 stride 1, no max-pool) | stride1 (7x7 stride 1 + max-pool)",
        type=str,
        choices=STEM_CHOICES,
    ),
}

_RECORDS = (
    ModelRecord(
        "fcn",
        "fully connected ReLU network without biases",
        "largelr.models:FCN",
        {
            "depth": Setting(3, "hidden layers", type=int, minimum=1),
            "width": Setting(200, "units per hidden layer", type=int, minimum=1),
        },
        gpu_shared=True,
        cost=_costs(train=(20, 4000), analyze=(10, 4000), hilo=(20, 8000)),
    ),
    ModelRecord(
        "cnn",
        "VGG11-like CNN",
        "largelr.models:VGGLike",
        {
            "width": Setting(1.0, "multiplier of VGG11's channel counts (1.0 = 64..512)", above=0.0),
            "pool": Setting(
                "avg",
                "global pool before the head: avg (VGG's average pool, the authors' code) | max",
                type=str,
                choices=("avg", "max"),
            ),
        },
        gpu_shared=True,
        cost=_costs(train=(30, 4000), analyze=(10, 4000), hilo=(20, 8000)),
    ),
    ModelRecord(
        "resnet18",
        "torchvision ResNet-18",
        "largelr.models:ResNet18",
        RESNET_PARAMS,
        autocast=True,
        cost=_costs(train=(240, 16000), analyze=(60, 16000), hilo=(120, 16000)),
    ),
    ModelRecord(
        "resnet50",
        "torchvision ResNet-50",
        "largelr.models:ResNet50",
        RESNET_PARAMS,
        autocast=True,
        cost=_costs(train=(720, 32000), analyze=(120, 32000), hilo=(240, 32000)),
    ),
    ModelRecord(
        "wrn101_2",
        "torchvision Wide ResNet-101-2",
        "largelr.models:WideResNet101",
        RESNET_PARAMS,
        autocast=True,
        cost=_costs(train=(1440, 64000), analyze=(240, 64000), hilo=(480, 64000)),
    ),
    ModelRecord(
        "swin_t",
        "torchvision Swin-T (ImageNet-1k weights by default)",
        "largelr.models:SwinT",
        {"pretrained": Setting(True, "start from the ImageNet-1k weights in the torch hub cache", type=bool)},
        autocast=True,
        cost=_costs(train=(720, 32000), analyze=(120, 32000), hilo=(240, 32000)),
    ),
)
MODELS: dict[str, ModelRecord] = {record.name: record for record in _RECORDS}


def gpu_shared_models() -> tuple[str, ...]:
    return tuple(name for name, record in MODELS.items() if record.gpu_shared)


def slurm_expression(rule: str, resource: str) -> str:
    """A Slurm resource of ``rule`` as the expression Snakemake evaluates per job (it sees ``wildcards``
    and ``attempt``): the records' values by model, indexed so that a model without a cost is an error
    rather than a silent default; runtime grows with the attempt (a retry gets more time)."""
    # dict(name=value, ...) rather than a {...} literal: Snakemake reads set-resources values as text
    # that may hold neither braces nor "name: value" pairs
    table = ", ".join(f"{name}={getattr(record.cost[rule], resource)}" for name, record in MODELS.items())
    return f"dict({table})[wildcards.model]" + (" * attempt" if resource == "runtime" else "")
