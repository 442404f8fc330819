"""Models of the paper behind one interface.

Every model maps inputs to logits, exposes its penultimate post-activation values
through ``features(x)`` and the weights that pruning acts on through ``prunable()``.
Checkpoints store the model's spec beside its weights so any analysis can rebuild it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from largelr.io import atomic_torch_save

# VGG11's layer plan: channel counts and "M" for max-pool.
VGG11_PLAN: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class FCN(nn.Module):
    """Fully connected ReLU network without biases (the paper's FCN)."""

    def __init__(self, input_shape: list[int], num_classes: int, depth: int = 3, width: int = 200):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width, bias=False), nn.ReLU()]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(fan_in, num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def prunable(self) -> list[nn.Parameter]:
        return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]


class VGGLike(nn.Module):
    """VGG11-like CNN: 3x3 convs without bias, ReLU, max-pools, one linear classifier.

    ``width`` scales VGG11's channel counts (1.0 = 64..512). A max-pool is skipped
    once the feature map is 1 pixel wide, so 28x28 and 64x32 inputs keep every conv.
    """

    def __init__(self, input_shape: list[int], num_classes: int, width: float = 1.0):
        super().__init__()
        channels, height, breadth = input_shape
        layers: list[nn.Module] = []
        for item in VGG11_PLAN:
            if item == "M":
                if min(height, breadth) >= 2:
                    layers.append(nn.MaxPool2d(2))
                    height, breadth = height // 2, breadth // 2
                continue
            out = max(1, round(int(item) * width))
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.ReLU()]
            channels = out
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes, bias=False)
        # He initialisation as in torchvision's VGG: without it, eight bias-free ReLU
        # convs shrink the signal so much that small learning rates barely train.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def prunable(self) -> list[nn.Parameter]:
        return [m.weight for m in self.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


MODELS: dict[str, type[nn.Module]] = {"fcn": FCN, "cnn": VGGLike}


def build_model(name: str, input_shape: list[int], num_classes: int, params: dict[str, Any]) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"model {name!r} is not known; allowed: {sorted(MODELS)}")
    return MODELS[name](list(input_shape), num_classes, **params)


def save_checkpoint(model: nn.Module, spec: dict[str, Any], path: str | Path) -> None:
    """Save weights with the spec (name, input_shape, num_classes, params) that rebuilds them."""
    atomic_torch_save({"spec": spec, "state_dict": model.state_dict()}, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    payload = torch.load(path, map_location=device, weights_only=True)
    spec = payload["spec"]
    model = build_model(spec["name"], spec["input_shape"], spec["num_classes"], spec["params"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
