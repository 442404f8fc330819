"""Background masks for the background attribution share: DeepLabV3 segmenters and oracles.

A segmenter here is any nn.Module mapping ImageNet-normalized [N, 3, H, W] images to
class logits [N, classes, H, W]; background is class 0. Sources, none of which downloads:

- torchvision's DeepLabV3 with COCO_WITH_VOC_LABELS_V1 weights (``deeplabv3_resnet50``, or
  the ~17x cheaper ``deeplabv3_mobilenet_v3_large``), only when the weights file is already
  in the torch hub cache (:func:`torchvision_weights_path`; :func:`segmenter_available` tells
  from file existence alone, without importing torchvision);
- a segmentation_models_pytorch DeepLabV3 saved with ``save_smp_checkpoint`` as
  {"encoder_name", "classes", "state_dict"} (smp ships no trained DeepLabV3 weights).

Oracle masks come from the construction: in datasets with the ``oracle_background`` trait
the object (digit strokes, moon or star) is drawn on an exactly black canvas, so background
= the pixels that are black in every channel. Other datasets have no known background.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from largelr.io import atomic_torch_save
from largelr.registry.analyses import ATTRIBUTE, SEGMENTERS, TORCHVISION_SEGMENTERS  # noqa: F401
from largelr.weights import (  # noqa: F401  (re-exported: where the weights belong)
    TORCHVISION_WEIGHT_URLS,
    how_to_get_torchvision_weights,
    segmenter_available,
    torchvision_weights_path,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Square side fed to the segmenter (the segmenter_input_size setting's default).
DEFAULT_INPUT_SIZE = ATTRIBUTE.default("segmenter_input_size")


class SegmenterMissingError(FileNotFoundError):
    """No segmenter weights are available locally; the message says where they are expected."""


class _OutputLogits(nn.Module):
    """Unwraps torchvision's {"out": logits, "aux": ...} so every segmenter returns a tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


# Oracle backgrounds (see the module docstring): values at or below this are background.
ORACLE_DARK_LEVEL = 0.5 / 255  # half an 8-bit grey level: tolerates float noise, not a faint stroke


def _torchvision_builder(name: str):
    """(builder, COCO_WITH_VOC_LABELS_V1 weights) of a torchvision segmenter name."""
    from torchvision.models import segmentation

    if name not in TORCHVISION_SEGMENTERS:
        raise ValueError(f"segmenter {name!r} is not known; allowed: {list(TORCHVISION_SEGMENTERS)}")
    weights = {
        "deeplabv3_resnet50": segmentation.DeepLabV3_ResNet50_Weights,
        "deeplabv3_mobilenet_v3_large": segmentation.DeepLabV3_MobileNet_V3_Large_Weights,
    }[name].COCO_WITH_VOC_LABELS_V1
    return getattr(segmentation, name), weights


def load_torchvision_segmenter(device: torch.device | str = "cpu", name: str = "deeplabv3_resnet50") -> nn.Module:
    """torchvision segmenter ``name`` in eval mode; raises SegmenterMissingError if not cached."""
    builder, weights = _torchvision_builder(name)
    path = torchvision_weights_path(name)
    # checked before construction: with a missing file torchvision would download it
    if not path.is_file():
        raise SegmenterMissingError(
            f"{name} weights not found at {path} (nothing is downloaded). {how_to_get_torchvision_weights(name)} "
            "Or set analysis `background: smp` with `segmenter_checkpoint` (a file written by "
            "largelr.analyses.segment.save_smp_checkpoint), or `background: none`."
        )
    model = builder(weights=weights, weights_backbone=None)
    return _OutputLogits(model).to(device).eval()


def _build_smp_deeplabv3(encoder_name: str, classes: int) -> nn.Module:
    import segmentation_models_pytorch as smp  # heavy; only segmenter users need it

    return smp.DeepLabV3(encoder_name=encoder_name, encoder_weights=None, classes=classes)


def save_smp_checkpoint(model: nn.Module, encoder_name: str, classes: int, path: str | Path) -> None:
    """Save an smp DeepLabV3 as {"encoder_name", "classes", "state_dict"}, enough to rebuild it offline."""
    atomic_torch_save({"encoder_name": encoder_name, "classes": classes, "state_dict": model.state_dict()}, path)


def load_smp_segmenter(checkpoint_path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild an smp DeepLabV3 from a ``save_smp_checkpoint`` file, in eval mode."""
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        raise SegmenterMissingError(
            f"smp segmenter checkpoint not found at {checkpoint_path}. Set analysis `segmenter_checkpoint` to a "
            "trained segmentation_models_pytorch DeepLabV3 saved with largelr.analyses.segment.save_smp_checkpoint "
            "(background = class 0), or choose another `background`."
        )
    payload = torch.load(checkpoint_path, map_location=device, weights_only=True)
    model = _build_smp_deeplabv3(payload["encoder_name"], payload["classes"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def _segmenter_input(images: torch.Tensor, input_size: int) -> torch.Tensor:
    """[N, 1 or 3, H, W] images in [0, 1] -> 3-channel, ImageNet-normalized, input_size square."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    resized = F.interpolate(images.float(), size=(input_size, input_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (resized - mean) / std


def background_masks(
    segmenter: nn.Module,
    images: torch.Tensor,
    background_class: int = 0,
    input_size: int = DEFAULT_INPUT_SIZE,
    batch_size: int = 16,
) -> torch.Tensor:
    """Bool [N, H, W], True where the segmenter's most likely class is ``background_class``.

    ``images`` are [N, 1 or 3, H, W] with values in [0, 1] (normalization is done here).
    They are resized to ``input_size`` for the segmenter and the mask back to H x W (nearest).
    """
    device = next(segmenter.parameters()).device
    was_training = segmenter.training
    segmenter.eval()
    masks = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = _segmenter_input(images[start : start + batch_size].to(device), input_size)
                is_background = (segmenter(batch).argmax(dim=1) == background_class).float()
                # nearest keeps the mask binary when scaling back to the image size
                restored = F.interpolate(is_background[:, None], size=images.shape[-2:], mode="nearest")
                masks.append(restored[:, 0].bool().cpu())
    finally:
        segmenter.train(was_training)
    return torch.cat(masks) if masks else torch.zeros(0, *images.shape[-2:], dtype=torch.bool)


def mask_agreement(predicted: torch.Tensor, oracle: torch.Tensor) -> float:
    """IoU of the background (True) regions; 1.0 when both masks have no background at all."""
    predicted, oracle = predicted.bool(), oracle.bool()
    union = int((predicted | oracle).sum())
    if union == 0:
        return 1.0
    return int((predicted & oracle).sum()) / union


def load_segmenter(background: str, checkpoint: str | Path = "", device: torch.device | str = "cpu") -> nn.Module:
    """The segmenter a ``background`` setting names; SegmenterMissingError when it is not available."""
    if background == "smp":
        if not checkpoint:
            raise SegmenterMissingError(
                "analysis `background: smp` needs `segmenter_checkpoint`: the path of a trained "
                "segmentation_models_pytorch DeepLabV3 saved with largelr.analyses.segment.save_smp_checkpoint."
            )
        return load_smp_segmenter(checkpoint, device)
    if background in TORCHVISION_SEGMENTERS:
        return load_torchvision_segmenter(device, background)
    raise ValueError(f"segmenter {background!r} is not known; allowed: {list(SEGMENTERS)}")


def oracle_background_masks(images: torch.Tensor) -> torch.Tensor:
    """Bool [N, H, W] background of [N, C, H, W] images drawn on a black canvas (as stored, unnormalized)."""
    return images.amax(dim=1) <= ORACLE_DARK_LEVEL
