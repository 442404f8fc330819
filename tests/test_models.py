import re

import pytest
import torch
from torch import nn

from largelr.models import VGGLike, build_model, load_checkpoint, save_checkpoint
from largelr.registry import MODELS


@pytest.mark.parametrize("shape", [[16], [1, 28, 28], [3, 28, 28], [1, 28, 56]])
def test_fcn_shapes_and_interface(shape):
    model = build_model("fcn", shape, 10, {"depth": 3, "width": 20})
    x = torch.randn(5, *shape)
    assert model(x).shape == (5, 10)
    assert model.features(x).shape == (5, 20)
    assert (model.features(x) >= 0).all()  # post-ReLU
    assert torch.equal(model.activations(x), model.features(x))
    weights = model.prunable()
    assert [tuple(w.shape) for w in weights][-1] == (10, 20) and len(weights) == 4
    assert not any(isinstance(m, nn.Linear) and m.bias is not None for m in model.modules())
    # neurons of the three hidden layers, each read by the next layer (the last by the head)
    units = model.prunable_units()
    assert [u.weight for u in units] == weights[:3]
    assert [u.outgoing for u in units] == [(w,) for w in weights[1:]]


@pytest.mark.parametrize(
    "shape,pools", [([1, 28, 28], 4), ([3, 32, 32], 5), ([1, 28, 56], 4), ([3, 64, 32], 5), ([1, 16, 16], 4)]
)
def test_vgg_like_keeps_all_eight_convs_and_pools_while_it_can(shape, pools):
    model = VGGLike(shape, 10, width=0.125)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all(m.bias is None and m.kernel_size == (3, 3) for m in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools
    x = torch.randn(2, *shape)
    assert model(x).shape == (2, 10)
    assert model.features(x).shape == (2, 64)  # 512 * 0.125
    assert torch.equal(model.activations(x), model.features(x)) and (model.activations(x) >= 0).all()
    assert len(model.prunable()) == 9  # 8 convs + the single linear classifier
    assert [u.weight for u in model.prunable_units()] == [m.weight for m in convs]  # kernels; the head is none


def test_checkpoint_round_trip(tmp_path):
    spec = {"name": "cnn", "input_shape": [1, 28, 28], "num_classes": 3, "params": {"width": 0.0625}}
    model = build_model(**spec)
    save_checkpoint(model, spec, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model.eval()(x), loaded(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left behind


def test_unknown_model_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'vit'.*allowed: " + re.escape(str(sorted(MODELS)))):
        build_model("vit", [4], 2, {})


SMALL_SHAPES = [[1, 28, 28], [3, 32, 32], [3, 64, 32], [1, 28, 56]]
TORCHVISION_MODELS = {"resnet18": ({}, 512), "resnet50": ({}, 2048), "swin_t": ({"pretrained": False}, 768)}


def matrix_weights(model: nn.Module) -> set[int]:
    """Ids of every weight with >= 2 dims except Swin's relative-position tables: the conv/linear weights."""
    return {
        id(p)
        for name, p in model.named_parameters()
        if name.endswith("weight") and p.dim() >= 2 and "relative_position" not in name
    }


@pytest.mark.parametrize("name", sorted(TORCHVISION_MODELS))
def test_torchvision_models_interface_on_every_small_input(name):
    params, width = TORCHVISION_MODELS[name]
    for shape in SMALL_SHAPES:
        torch.manual_seed(0)
        model = build_model(name, shape, 7, params).eval()
        x = torch.randn(2, *shape)
        logits = model(x)
        assert logits.shape == (2, 7), shape
        z = model.features(x)
        assert z.shape == (2, width)
        assert torch.allclose(model.head(z), logits, atol=1e-6)  # the features feed the head
        prunable = model.prunable()
        assert {id(p) for p in prunable} == matrix_weights(model) and len(prunable) == len(matrix_weights(model))
        activations = model.activations(x)
        assert (activations >= 0).all()  # post-activation values, for every model
        if name.startswith("resnet"):
            assert (z >= 0).all() and torch.equal(activations, z)  # post-ReLU: the head's input itself
        check_units(model)


def check_units(model: nn.Module) -> None:
    """Units lie in prunable(), never in the head, and cover every conv and (for Swin) every other linear."""
    ids = {id(p) for p in model.prunable()}
    units = model.prunable_units()
    touched = [u.weight for u in units] + [w for u in units for w in u.outgoing]
    assert all(id(w) in ids for w in touched) and all(u.weight is not model.head.weight for u in units)
    assert {id(u.weight) for u in units} == ids - {id(model.head.weight)}


def test_swin_activations_are_the_positive_part_of_the_last_mlp_activation_averaged_over_tokens():
    torch.manual_seed(0)
    model = build_model("swin_t", [3, 64, 64], 3, {"pretrained": False}).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # by hand: the last block's MLP input, its fc1 and GELU, positive part, token mean
        tokens = model.body.features[:-1](x)
        for block in model.body.features[-1][:-1]:
            tokens = block(tokens)
        last = model.body.features[-1][-1]
        tokens = tokens + last.attn(last.norm1(tokens))
        hidden = torch.nn.functional.gelu(last.mlp[0](last.norm2(tokens)))
        assert hidden.shape == (2, 2, 2, 3072)  # 64 / 32: a 2 x 2 grid of tokens
        expected = hidden.clamp_min(0).mean(dim=(1, 2))
        assert torch.allclose(model.activations(x), expected, atol=1e-5)
        assert torch.allclose(model.head(model.features(x)), model(x), atol=1e-6)
    mlp = model.body.features[1][0].mlp
    readers = {id(u.weight): u.outgoing for u in model.prunable_units()}
    assert readers[id(mlp[0].weight)] == (mlp[3].weight,) and readers[id(mlp[3].weight)] == ()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnets_use_each_relu_module_once_and_compute_torchvision_s_function(name):
    import torchvision

    torch.manual_seed(0)
    model = build_model(name, [3, 16, 16], 5, {})
    model.train()(torch.randn(8, 3, 16, 16))  # move BatchNorm statistics away from their init
    model.eval()
    calls: dict[int, int] = {}
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for relu in relus:
        relu.register_forward_hook(
            lambda module, args, output: calls.__setitem__(id(module), calls.get(id(module), 0) + 1)
        )
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ours = model.features(x)
    assert sorted(calls.values()) == [1] * len(relus)  # every ReLU module used exactly once (DeepLift needs it)
    reference = getattr(torchvision.models, name)(weights=None)  # torchvision's blocks, shared ReLUs
    reference.conv1, reference.maxpool, reference.fc = model.body.conv1, model.body.maxpool, nn.Identity()
    reference.load_state_dict(model.body.state_dict(), strict=True)  # the same parameter names
    # torchvision's block code, the same ops: float32 rounding at most; a wrong block moves features (0.1 to 1) by 0.1
    with torch.no_grad():
        torch.testing.assert_close(ours, reference.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_default_resnet_has_torchvision_s_layer_shapes(name):
    import torchvision

    ours = build_model(name, [3, 32, 32], 10, {})
    shipped = getattr(torchvision.models, name)()
    shapes = {key: tuple(value.shape) for key, value in shipped.state_dict().items() if not key.startswith("fc.")}
    assert {key: tuple(value.shape) for key, value in ours.body.state_dict().items()} == shapes
    conv, pool = ours.body.conv1, ours.body.maxpool
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (2, 2), (3, 3))
    assert isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert ours.stem == "torchvision"


def test_resnet_stems_by_hand():
    x = torch.randn(1, 1, 28, 28)

    def into_layer1(model):
        body = model.body
        return nn.Sequential(body.conv1, body.bn1, body.relu, body.maxpool, body.layer1)(x).shape

    small = build_model("resnet18", [1, 28, 28], 10, {"stem": "small"})
    assert (
        small.body.conv1.kernel_size == (3, 3)
        and small.body.conv1.stride == (1, 1)
        and small.body.conv1.in_channels == 1
    )
    assert isinstance(small.body.maxpool, nn.Identity)
    assert into_layer1(small) == (1, 64, 28, 28)  # full resolution
    # 1 channel, auto: the authors' 7x7 stride-1 conv and the max-pool: 28 -> 28 -> 14
    grey = build_model("resnet18", [1, 28, 28], 10, {})
    assert grey.stem == "stride1" and grey.body.conv1.kernel_size == (7, 7) and grey.body.conv1.stride == (1, 1)
    assert into_layer1(grey) == (1, 64, 14, 14)
    # torchvision's stem: 28 -> 14 (conv, stride 2) -> 7 (max-pool)
    assert into_layer1(build_model("resnet18", [1, 28, 28], 10, {"stem": "torchvision"})) == (1, 64, 7, 7)
    with pytest.raises(ValueError, match="allowed"):
        build_model("resnet18", [3, 32, 32], 10, {"stem": "cifar"})


def test_wide_resnet_101_2_builds_once_with_the_interface():
    model = build_model("wrn101_2", [3, 32, 32], 5, {}).eval()
    assert model.body.layer1[0].conv2.out_channels == 128  # width doubled: 64 * 2
    assert sum(p.numel() for p in model.parameters()) > 120e6
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        z = model.features(x)
        assert z.shape == (1, 2048) and torch.allclose(model.head(z), model(x), atol=1e-5)
        assert torch.equal(model.activations(x), z) and (z >= 0).all()
    assert {id(p) for p in model.prunable()} == matrix_weights(model)
    check_units(model)


@pytest.mark.parametrize(
    "name,shape,params", [("resnet18", [3, 32, 32], {}), ("swin_t", [1, 28, 28], {"pretrained": False})]
)
def test_torchvision_model_checkpoint_round_trip(tmp_path, name, shape, params):
    spec = {"name": name, "input_shape": shape, "num_classes": 4, "params": params}
    model = build_model(**spec)
    model.train()(torch.randn(8, *shape))  # move BatchNorm statistics away from their init
    save_checkpoint(model, spec, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(3, *shape)
    assert torch.equal(model.eval()(x), loaded(x))


def test_swin_without_cached_weights_says_which_file_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        build_model("swin_t", [3, 32, 32], 2, {})
    message = str(error.value)
    assert str(tmp_path / "checkpoints" / "swin_t-704ceda3.pth") in message
    assert "download.pytorch.org/models/swin_t-704ceda3.pth" in message and "pretrained: false" in message


def test_swin_loads_cached_weights_and_a_grey_input_equals_three_equal_channels(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.swin_t(weights=None).eval()
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "swin_t-704ceda3.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    rgb = build_model("swin_t", [3, 32, 32], 1000, {}).eval()
    grey = build_model("swin_t", [1, 32, 32], 3, {}).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        # Same backbone as the cached file: features equal torchvision's pooled features.
        expected = reference.avgpool(reference.permute(reference.norm(reference.features(x.repeat(1, 3, 1, 1)))))
        assert torch.allclose(rgb.features(x.repeat(1, 3, 1, 1)), expected.flatten(1), atol=1e-5)
        assert torch.allclose(grey.features(x), expected.flatten(1), atol=1e-4)
    assert grey.head.out_features == 3
