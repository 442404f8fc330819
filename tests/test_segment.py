import pytest
import torch
from torch import nn

from largelr.attribute import region_share
from largelr.segment import (
    SegmenterMissingError,
    background_masks,
    load_smp_segmenter,
    load_torchvision_segmenter,
    mask_agreement,
    save_smp_checkpoint,
)


class ConstantSegmenter(nn.Module):
    """Logits that favour class 0 (background) at every pixel, whatever the input."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.logits = nn.Parameter(torch.linspace(1.0, 0.0, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        return self.logits.view(1, -1, 1, 1).expand(n, -1, h, w)


def tiny_smp_deeplabv3() -> nn.Module:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    return smp.DeepLabV3(encoder_name="resnet18", encoder_weights=None, classes=2).eval()


def test_smp_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = tiny_smp_deeplabv3()
    path = tmp_path / "segmenter.pt"
    save_smp_checkpoint(model, "resnet18", 2, path)
    loaded = load_smp_segmenter(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_background_masks_shape_and_dtype_for_grey_and_colour_images():
    segmenter = tiny_smp_deeplabv3()
    for channels in (1, 3):
        images = torch.rand(3, channels, 28, 20)
        masks = background_masks(segmenter, images, input_size=64, batch_size=2)
        assert masks.shape == (3, 28, 20) and masks.dtype == torch.bool


def test_constant_background_segmenter_gives_full_background_share():
    images = torch.rand(4, 3, 10, 12)
    masks = background_masks(ConstantSegmenter(), images, input_size=32)
    assert masks.all()
    attributions = torch.randn(4, 3, 10, 12)
    assert torch.equal(region_share(attributions, masks[:, None]), torch.ones(4, dtype=torch.float64))
    # a class the segmenter never predicts is background nowhere
    assert not background_masks(ConstantSegmenter(), images, background_class=2, input_size=32).any()


def test_missing_hub_weights_raise_naming_the_expected_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "deeplabv3_resnet50_coco-cd0a2569.pth"
    with pytest.raises(SegmenterMissingError) as error:
        load_torchvision_segmenter("cpu")
    assert str(expected) in str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert not expected.exists()  # nothing was downloaded


def test_missing_smp_checkpoint_raises(tmp_path):
    with pytest.raises(SegmenterMissingError, match="absent.pt"):
        load_smp_segmenter(tmp_path / "absent.pt")


def test_mask_agreement_of_identical_and_complementary_masks():
    mask = torch.rand(2, 8, 8) > 0.5
    assert mask_agreement(mask, mask) == 1.0
    assert mask_agreement(mask, ~mask) == 0.0
    # by hand: background {0, 1} vs {1, 2} -> IoU 1 / 3
    assert mask_agreement(torch.tensor([1, 1, 0, 0]), torch.tensor([0, 1, 1, 0])) == pytest.approx(1 / 3)
