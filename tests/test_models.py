import pytest
import torch
from torch import nn

from largelr.models import VGGLike, build_model, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("shape", [[16], [1, 28, 28], [3, 28, 28], [1, 28, 56]])
def test_fcn_shapes_and_interface(shape):
    model = build_model("fcn", shape, 10, {"depth": 3, "width": 20})
    x = torch.randn(5, *shape)
    assert model(x).shape == (5, 10)
    assert model.features(x).shape == (5, 20)
    assert (model.features(x) >= 0).all()  # post-ReLU
    weights = model.prunable()
    assert [tuple(w.shape) for w in weights][-1] == (10, 20) and len(weights) == 4
    assert not any(isinstance(m, nn.Linear) and m.bias is not None for m in model.modules())


@pytest.mark.parametrize("shape,pools", [([1, 28, 28], 4), ([3, 32, 32], 5), ([1, 28, 56], 4), ([3, 64, 32], 5), ([1, 16, 16], 4)])
def test_vgg_like_keeps_all_eight_convs_and_pools_while_it_can(shape, pools):
    model = VGGLike(shape, 10, width=0.125)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all(m.bias is None and m.kernel_size == (3, 3) for m in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools
    x = torch.randn(2, *shape)
    assert model(x).shape == (2, 10)
    assert model.features(x).shape == (2, 64)  # 512 * 0.125
    assert len(model.prunable()) == 9  # 8 convs + the single linear classifier


def test_checkpoint_round_trip(tmp_path):
    spec = {"name": "cnn", "input_shape": [1, 28, 28], "num_classes": 3, "params": {"width": 0.0625}}
    model = build_model(**spec)
    save_checkpoint(model, spec, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model.eval()(x), loaded(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left behind


def test_unknown_model_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'vit'.*allowed: \['cnn', 'fcn'\]"):
        build_model("vit", [4], 2, {})
