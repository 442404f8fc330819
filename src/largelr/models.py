"""Models of the paper behind one interface.

Every model is a ``body`` and a linear ``head``: ``model(x) == head(features(x))``, with
``features(x)`` the values the head reads. ``activations(x)`` are the non-negative
post-activation penultimate values the representation statistics use (the paper: "we obtain
the post-activation values for the penultimate layer"); they are ``features(x)`` for the FCN,
the CNN and the ResNets, and the positive part of the last MLP activation for Swin-T, whose
head reads a signed LayerNorm output. ``prunable()`` lists the conv/linear weights that
pruning acts on, ``prunable_units()`` the network's neurons and kernels (:class:`Units`;
never the raw inputs, never the logits). Checkpoints store the model's spec beside its
weights so any analysis can rebuild it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from largelr.io import atomic_torch_save
from largelr.registry import models as records
from largelr.registry.models import STEM_CHOICES, STEMS

# VGG11's layer plan: channel counts and "M" for max-pool.
VGG11_PLAN: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@dataclass(frozen=True, eq=False)
class Units:
    """One layer's structured-pruning units (the paper's "neurons in FC layers, nodes/kernels").

    A 2-D ``weight`` (a Linear layer [out, in]) holds neurons: neuron j is the output unit j,
    i.e. its incoming weights ``weight[j, :]``, ``bias[j]`` and column j of every ``outgoing``
    weight (the layers that read the neuron). Pruning it zeroes all of them, so it outputs
    exactly 0 and nothing reads it. A 4-D ``weight`` (a Conv2d [out, in, kh, kw]) holds its
    (out, in) kernels ``weight[o, i]``. Units are ranked within their layer.
    """

    weight: nn.Parameter
    bias: nn.Parameter | None = None
    outgoing: tuple[nn.Parameter, ...] = ()

    @classmethod
    def neurons(cls, layer: nn.Linear, readers: Sequence[nn.Linear] = ()) -> Units:
        return cls(layer.weight, layer.bias, tuple(reader.weight for reader in readers))

    @classmethod
    def kernels(cls, layer: nn.Conv2d) -> Units:
        return cls(layer.weight)


def neuron_chain(linears: Sequence[nn.Linear]) -> list[Units]:
    """Units of a chain of Linear layers, each reading the previous one, the last being the head.

    Every hidden layer's output units are neurons, each with its column of the next layer; the
    penultimate neurons (the head's inputs) are the last hidden layer's units and so count, the
    head's outputs (the logits) never do, and the inputs of the first layer are no units.
    """
    return [Units.neurons(layer, [reader]) for layer, reader in zip(linears[:-1], linears[1:])]


def conv_kernels(module: nn.Module) -> list[Units]:
    """The (out, in) kernels of every Conv2d inside ``module``."""
    return [Units.kernels(m) for m in module.modules() if isinstance(m, nn.Conv2d)]


def conv_and_linear_weights(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


class BodyAndHead(nn.Module):
    """A network as ``body`` (features) and a linear ``head`` (logits); ``prunable()`` is every
    Conv2d and Linear weight, head included."""

    body: nn.Module
    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input: ``self.head(self.features(x)) == self(x)``."""
        return self.body(x)

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Non-negative post-activation penultimate values [N, d] (here: the post-ReLU features)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def prunable(self) -> list[nn.Parameter]:
        return conv_and_linear_weights(self)

    def prunable_units(self) -> list[Units]:
        """Kernels of every conv; the head's inputs are conv channels, pruned through their kernels."""
        return conv_kernels(self.body)


class FCN(BodyAndHead):
    """Fully connected ReLU network without biases (the paper's FCN).

    ``features`` = ``activations``: the last hidden layer's post-ReLU values. Pruning units are
    the hidden neurons of every layer (see :func:`neuron_chain`).
    """

    PARAMS = records.MODELS["fcn"].params

    def __init__(self, input_shape: list[int], num_classes: int, depth: int = 3, width: int = 200):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width, bias=False), nn.ReLU()]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(fan_in, num_classes, bias=False)

    def prunable_units(self) -> list[Units]:
        return neuron_chain([m for m in self.body if isinstance(m, nn.Linear)] + [self.head])


class VGGLike(BodyAndHead):
    """VGG11-like CNN: 3x3 convs without bias, ReLU, max-pools, one linear classifier.

    ``width`` scales VGG11's channel counts (1.0 = 64..512). A max-pool is skipped
    once the feature map is 1 pixel wide, so 28x28 and 64x32 inputs keep every conv.
    ``features`` = ``activations``: the global pool (``pool``: average, as VGG's average pool
    the authors' code hooks, or max) of the last post-ReLU conv map.
    Pruning units are the (out, in) kernels of the convs.
    """

    PARAMS = records.MODELS["cnn"].params

    def __init__(self, input_shape: list[int], num_classes: int, width: float = 1.0, pool: str = "avg"):
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
        if pool not in ("avg", "max"):
            raise ValueError(f"cnn pool = {pool!r} is not allowed; allowed: ['avg', 'max']")
        layers += [nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes, bias=False)
        # He initialisation as in torchvision's VGG: without it, eight bias-free ReLU
        # convs shrink the signal so much that small learning rates barely train.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


# The ResNet stems (model parameter ``stem``, see TorchvisionResNet) are declared with the records:
# STEMS (kernel, stride, padding, max-pool) and STEM_CHOICES, imported above.


class SeparateReLUBlock(nn.Module):
    """A torchvision ``BasicBlock`` or ``Bottleneck`` with one ReLU module per use.

    torchvision's blocks call one ``relu`` module two (basic) or three (bottleneck) times;
    captum's DeepLift replaces each ReLU module's gradient by its rescale rule and needs each
    module used once. This block takes over the convs, norms and ``downsample`` of ``block``
    under the same names (so state dicts and checkpoints are unchanged) and computes the same
    function: ``relu1`` after bn1, ``relu2`` after bn2 (bottleneck only), ``relu_out`` after
    the residual addition.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        for name, child in block.named_children():
            if name != "relu":
                setattr(self, name, child)
        self.downsample = block.downsample  # None where the shapes already match
        self.bottleneck = hasattr(block, "conv3")
        self.relu1 = nn.ReLU(inplace=True)
        if self.bottleneck:
            self.relu2 = nn.ReLU(inplace=True)
        self.relu_out = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.bottleneck:
            out = self.bn3(self.conv3(self.relu2(out)))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity
        return self.relu_out(out)


class TorchvisionResNet(BodyAndHead):
    """A torchvision ResNet (random init) adapted to the input's channel count.

    The paper uses the ResNets "as included in torchvision". Model parameter ``stem``:

    - ``torchvision``: the stem as shipped, a 7x7 stride-2 first conv and the 3x3 stride-2 max-pool;
    - ``small``: a 3x3 stride-1 first conv and no max-pool, usual for CIFAR-sized images (a deviation:
      full resolution into the first block);
    - ``stride1``: a 7x7 stride-1 first conv keeping the max-pool, how the first author's public sibling
      code rebuilds the first conv of a 1-channel ResNet;
    - ``auto`` (default): ``torchvision`` for 3-channel inputs; for 1-channel inputs, whose first conv must
      be rebuilt anyway (torchvision's reads 3 channels), ``stride1``, the authors' rebuild.

    The first conv takes the input's channel count (1 or 3); the classifier is ``head``.
    ``features(x)`` = ``activations(x)`` is the global-average-pooled output of the last block
    (post-ReLU, non-negative). Every block is a :class:`SeparateReLUBlock` (same function and
    parameter names, DeepLift-ready). Pruning units are the (out, in) kernels of every conv,
    the 1x1 and downsampling convs included.
    """

    builder = "resnet18"
    PARAMS = records.RESNET_PARAMS

    def __init__(self, input_shape: list[int], num_classes: int, stem: str = "auto"):
        super().__init__()
        import torchvision.models  # imported on use: slow import

        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} needs image inputs [C, H, W], got input_shape {input_shape}; "
                "use the fcn model for flat inputs"
            )
        if stem not in STEM_CHOICES:
            raise ValueError(f"ResNet stem {stem!r} is not known; allowed: {list(STEM_CHOICES)}")
        channels = input_shape[0]
        self.stem = resolved_stem(stem, channels)
        kernel, stride, padding, pool = STEMS[self.stem]
        net = getattr(torchvision.models, self.builder)(weights=None)
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=kernel, stride=stride, padding=padding, bias=False)
        if not pool:
            net.maxpool = nn.Identity()
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            for index, block in enumerate(stage):
                stage[index] = SeparateReLUBlock(block)
        self.head = nn.Linear(net.fc.in_features, num_classes)
        net.fc = nn.Identity()
        self.body = net


def resolved_stem(stem: str, channels: int) -> str:
    """The stem ``auto`` stands for: torchvision's for 3-channel inputs, the authors' stride1 for 1 channel."""
    if stem != "auto":
        return stem
    return "torchvision" if channels == 3 else "stride1"


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

    ``features(x)`` is what the head reads: the token-averaged output of the final LayerNorm,
    768-d and signed (LayerNorm centres every token), so it is no post-activation value; the
    representation analysis reads it by default (``represent_layer: head_input``) at |z|.
    ``activations(x)`` is the penultimate post-activation layer: the last nonlinearity before
    the head is the GELU of the last block's MLP (after it come fc2, the residual addition,
    LayerNorm and pooling, all without an activation). Its values [N, H, W, 4 * 768] are
    taken at their positive part (GELU is negative only on a lobe bounded by -0.17, where
    the unit is inactive, as ReLU's zeros) and averaged over the tokens, as the ResNets average
    post-ReLU maps over positions. Pruning units: the patch-embedding conv's (out, in) kernels
    and the output units of every Linear layer but the head (attention qkv and projection,
    MLP fc1 and fc2, patch-merging reductions), each with its bias; an MLP hidden neuron
    also takes its fc2 column with it.
    """

    PARAMS = records.MODELS["swin_t"].params

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

    def last_activation(self) -> nn.Module:
        """The GELU of the last block's MLP (torchvision's MLP: Linear, GELU, Dropout, Linear, Dropout)."""
        return self.body.features[-1][-1].mlp[1]

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        hook = self.last_activation().register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            self.body(x)
        finally:
            hook.remove()
        return captured[0].clamp_min(0).mean(dim=(1, 2))

    def prunable_units(self) -> list[Units]:
        import torchvision.ops

        readers = {}
        for mlp in (m for m in self.body.modules() if isinstance(m, torchvision.ops.MLP)):
            fc1, fc2 = (m for m in mlp if isinstance(m, nn.Linear))
            readers[fc1] = [fc2]
        return conv_kernels(self.body) + [
            Units.neurons(m, readers.get(m, ())) for m in self.body.modules() if isinstance(m, nn.Linear)
        ]


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


# name -> class, from the records (largelr.registry.models), whose implementation paths name the classes above.
MODELS: dict[str, type[nn.Module]] = {name: record.load() for name, record in records.MODELS.items()}


def build_model(name: str, input_shape: list[int], num_classes: int, params: dict[str, Any]) -> nn.Module:
    if name not in records.MODELS:
        raise ValueError(f"model {name!r} is not known; allowed: {sorted(records.MODELS)}")
    return records.MODELS[name].load()(list(input_shape), num_classes, **params)


def save_checkpoint(model: nn.Module, spec: dict[str, Any], path: str | Path) -> None:
    """Save weights with the spec (name, input_shape, num_classes, params) that rebuilds them."""
    atomic_torch_save({"spec": spec, "state_dict": model.state_dict()}, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    payload = torch.load(path, map_location=device, weights_only=True)
    spec = payload["spec"]
    model = build_model(spec["name"], spec["input_shape"], spec["num_classes"], spec["params"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
