"""How a cell's arithmetic runs: bf16 autocast or fp32, and the inputs' memory format.

:class:`ComputeFormat` decides both from the train settings, the model and the device; the loop,
the probes and the evaluations ask it for their autocast context and their input layout.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from largelr.config import TrainSettings
from largelr.registry.models import MODELS


class ComputeFormat:
    """bf16 autocast and channels-last memory format, as the settings and device allow.

    Channels-last applies to conv models on every device: on a CPU it is 1.0-1.4x faster for the
    VGG-like CNN and ResNet-18 (oneDNN's native layout), on a GPU it is the tensor cores' layout.
    """

    def __init__(self, model: nn.Module, model_name: str, settings: TrainSettings, device: torch.device):
        has_convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
        self.channels_last = settings.channels_last and has_convs
        amp_auto = settings.amp == "auto" and device.type == "cuda" and MODELS[model_name].autocast
        self.amp = settings.amp == "bf16" or amp_auto
        self.device_type = device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    @staticmethod
    def reported() -> contextlib.AbstractContextManager:
        """The precision of every number a cell reports (final train/test accuracy, predictions; the
        analyses too): fp32, so that a test accuracy and the pruning base accuracy it stands beside
        come from one precision even when training ran in bf16 (``amp: bf16``)."""
        return contextlib.nullcontext()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
