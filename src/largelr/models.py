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

from largelr.checks import Setting
from largelr.io import atomic_torch_save

# VGG11's layer plan: channel counts and "M" for max-pool.
VGG11_PLAN: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class FCN(nn.Module):
    """Fully connected ReLU network without biases (the paper's FCN)."""

    PARAMS = {"depth": Setting(3, "hidden layers", type=int, minimum=1),
              "width": Setting(200, "units per hidden layer", type=int, minimum=1)}

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

    PARAMS = {"width": Setting(1.0, "multiplier of VGG11's channel counts (1.0 = 64..512)", above=0.0)}

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


# Inputs no larger than this on either side get the CIFAR-style stem (see TorchvisionResNet).
SMALL_INPUT_MAX_SIDE = 64


def conv_and_linear_weights(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


class BodyAndHead(nn.Module):
    """A torchvision network as ``body`` (classifier removed) and a new linear ``head``."""

    body: nn.Module
    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def prunable(self) -> list[nn.Parameter]:
        return conv_and_linear_weights(self)


class TorchvisionResNet(BodyAndHead):
    """A torchvision ResNet (random init) adapted to the input's size and channel count.

    Stem rule: inputs whose sides are both at most ``SMALL_INPUT_MAX_SIDE`` pixels
    (28x28, 32x32, 64x32, 28x56) get a 3x3 stride-1 first conv and no stem max-pool, as
    is usual for CIFAR-sized images; the 7x7 stride-2 stem would shrink a 28x28 image
    to 7x7 before the first block. Larger inputs keep torchvision's stem. The first
    conv takes the input's channel count (1 or 3); the classifier is ``head``.
    ``features(x)`` is the global-average-pooled output of the last block (post-ReLU).
    """

    builder = "resnet18"
    PARAMS: dict[str, Setting] = {}

    def __init__(self, input_shape: list[int], num_classes: int):
        super().__init__()
        import torchvision.models  # imported on use: slow import

        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} needs image inputs [C, H, W], got input_shape {input_shape}; "
                             "use the fcn model for flat inputs")
        channels, height, width = input_shape
        net = getattr(torchvision.models, self.builder)(weights=None)
        if max(height, width) <= SMALL_INPUT_MAX_SIDE:
            net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        else:
            net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        self.head = nn.Linear(net.fc.in_features, num_classes)
        net.fc = nn.Identity()
        self.body = net


class ResNet18(TorchvisionResNet):
    """torchvision ResNet-18, adapted as in :class:`TorchvisionResNet`."""

    builder = "resnet18"


class ResNet50(TorchvisionResNet):
    """torchvision ResNet-50, adapted as in :class:`TorchvisionResNet`."""

    builder = "resnet50"


class WideResNet101(TorchvisionResNet):
    """torchvision Wide ResNet-101-2, adapted as in :class:`TorchvisionResNet`."""

    builder = "wide_resnet101_2"


class SwinT(BodyAndHead):
    """torchvision Swin-T, by default with its ImageNet-1k weights, and a new ``head``.

    The weights are read only from the torch hub cache (never downloaded here, so cluster
    jobs without internet behave the same as laptops). A 1-channel input uses the patch
    embedding summed over RGB, which equals feeding the grey image as three equal channels.
    ``features(x)`` is the pooled output of the final LayerNorm (Swin's penultimate values;
    it has no ReLU before the classifier).
    """

    PARAMS = {"pretrained": Setting(True, "start from the ImageNet-1k weights in the torch hub cache", type=bool)}

    def __init__(self, input_shape: list[int], num_classes: int, pretrained: bool = True):
        super().__init__()
        import torchvision.models  # imported on use: slow import

        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise ValueError(f"swin_t needs image inputs [C, H, W] with 1 or 3 channels, got input_shape {input_shape}")
        net = torchvision.models.swin_t(weights=None)
        if pretrained:
            net.load_state_dict(torch.load(swin_t_weights_path(), map_location="cpu", weights_only=True))
        if input_shape[0] == 1:
            rgb = net.features[0][0]
            grey = nn.Conv2d(1, rgb.out_channels, rgb.kernel_size, rgb.stride, bias=True)
            with torch.no_grad():
                grey.weight.copy_(rgb.weight.sum(1, keepdim=True))
                grey.bias.copy_(rgb.bias)
            net.features[0][0] = grey
        self.head = nn.Linear(net.head.in_features, num_classes)
        net.head = nn.Identity()
        self.body = net


def swin_t_weights_path() -> Path:
    """The cached ImageNet-1k Swin-T weights, or FileNotFoundError saying how to get them."""
    from torchvision.models import Swin_T_Weights

    url = Swin_T_Weights.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not path.is_file():
        raise FileNotFoundError(
            f"swin_t: pretrained ImageNet-1k weights not found at {path}. Download them once on a machine with "
            f"internet (python -c \"import torchvision; torchvision.models.swin_t(weights='IMAGENET1K_V1')\", or fetch "
            f"{url} into that folder; TORCH_HOME moves it), or set model_params: {{swin_t: {{pretrained: false}}}}."
        )
    return path


MODELS: dict[str, type[nn.Module]] = {
    "fcn": FCN,
    "cnn": VGGLike,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "wrn101_2": WideResNet101,
    "swin_t": SwinT,
}


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
