from pathlib import Path

import pytest
import torch
from torch import nn

from largelr.analyses.attribute import region_share
from largelr.analyses.segment import (
    SegmenterMissingError,
    background_masks,
    load_segmenter,
    load_smp_segmenter,
    load_torchvision_segmenter,
    mask_agreement,
    oracle_background_masks,
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
    torch.testing.assert_close(
        region_share(attributions, masks[:, None]), torch.ones(4, dtype=torch.float64), rtol=1e-12, atol=0
    )  # float64 sums
    # a class the segmenter never predicts is background nowhere
    assert not background_masks(ConstantSegmenter(), images, background_class=2, input_size=32).any()


@pytest.mark.parametrize(
    "name, filename",
    [
        ("deeplabv3_resnet50", "deeplabv3_resnet50_coco-cd0a2569.pth"),
        ("deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large-fc3c493d.pth"),
    ],
)
def test_missing_hub_weights_raise_naming_the_expected_path(tmp_path, monkeypatch, name, filename):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / filename
    with pytest.raises(SegmenterMissingError) as error:
        load_segmenter(name, device="cpu")
    assert str(expected) in str(error.value) and "segmenter_checkpoint" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert not expected.exists()  # nothing was downloaded
    with pytest.raises(SegmenterMissingError):
        load_torchvision_segmenter("cpu", name)


def test_smp_background_without_a_checkpoint_says_which_key_to_set():
    with pytest.raises(SegmenterMissingError, match="segmenter_checkpoint"):
        load_segmenter("smp", "")
    with pytest.raises(ValueError, match="allowed"):
        load_segmenter("unet", "")


def test_missing_smp_checkpoint_raises(tmp_path):
    with pytest.raises(SegmenterMissingError, match="absent.pt"):
        load_smp_segmenter(tmp_path / "absent.pt")


def test_mask_agreement_of_identical_and_complementary_masks():
    mask = torch.rand(2, 8, 8) > 0.5
    assert mask_agreement(mask, mask) == pytest.approx(1.0, abs=1e-12)
    assert mask_agreement(mask, ~mask) == pytest.approx(0.0, abs=1e-12)
    # by hand: background {0, 1} vs {1, 2} -> IoU 1 / 3
    assert mask_agreement(torch.tensor([1, 1, 0, 0]), torch.tensor([0, 1, 1, 0])) == pytest.approx(1 / 3)


def test_oracle_masks_are_the_black_pixels():
    images = torch.zeros(1, 3, 2, 3)
    images[0, 1, 0, 0] = 0.7  # green stroke pixel
    images[0, 2, 1, 2] = 1e-4  # below half a grey level: still background
    assert oracle_background_masks(images).tolist() == [[[False, True, True], [True, True, True]]]


def fabricated_cell(tmp_path):
    """A trained-looking cell of a tiny black-canvas image set: dataset file, model.pt, train.json."""
    import json

    from largelr.datasets import load_dataset, save_dataset
    from largelr.models import build_model, save_checkpoint

    generator = torch.Generator().manual_seed(0)

    def split(n):
        x = torch.zeros(n, 3, 16, 16)
        for i in range(n):  # a coloured bar on black, at one of three places
            x[i, :, 4:12, 3 * (i % 3) + 3 : 3 * (i % 3) + 6] = torch.rand(3, 1, 1, generator=generator)
        y = torch.arange(n) % 2
        return {"x": x, "y": y, "b": (torch.arange(n) // 2) % 2}

    # drawn on black, so the file says it has an oracle background (as colored/double digits do)
    dataset = {
        "name": "bars",
        "kind": "bars",
        "traits": {"worst_group": False, "oracle_background": True},
        "train": split(8),
        "test": split(12),
        "num_classes": 2,
        "num_bias": 2,
        "input_shape": [3, 16, 16],
        "spurious_mask": None,
        "core_mask": None,
        "params": {},
        "normalization": {"mean": 0.0, "std": 1.0},
    }
    save_dataset(dataset, tmp_path / "bars.pt")
    dataset = load_dataset(tmp_path / "bars.pt")  # inputs as stored, i.e. as the analyses see them
    torch.manual_seed(0)
    model = build_model("cnn", [3, 16, 16], 2, {"width": 0.05})
    cell_dir = tmp_path / "cell"
    save_checkpoint(
        model,
        {"name": "cnn", "input_shape": [3, 16, 16], "num_classes": 2, "params": {"width": 0.05}},
        cell_dir / "model.pt",
    )
    cell = {"study": "s", "dataset": "bars", "model": "cnn", "knob": "lr", "value": 0.1, "seed": 0}
    (cell_dir / "train.json").write_text(json.dumps({"cell": cell, "summary": {"diverged": False}}))
    return dataset, cell_dir


SMALL_ANALYSIS = {
    "kappas": [0.0, 0.5],
    "prune_methods": ["structured"],
    "represent_samples": 12,
    "attribute_samples": 6,
    "ig_steps": 4,
    "segmenter_input_size": 64,
}


def analyze(tmp_path, cell_dir, settings, data="bars.pt"):
    import json

    from largelr.cli import main

    main(
        [
            "analyze",
            "--cell-dir",
            str(cell_dir),
            "--data",
            str(tmp_path / data),
            "--device",
            "cpu",
            "--steps",
            "attribute",
            "--settings",
            json.dumps(SMALL_ANALYSIS | settings),
        ]
    )
    import pandas as pd

    return pd.read_parquet(cell_dir / "attribute.parquet")


def test_analyze_cli_with_a_tiny_smp_checkpoint_end_to_end(tmp_path):
    from largelr.analyses.attribute import integrated_gradients, region_share
    from largelr.evaluate import sample_indices
    from largelr.models import load_checkpoint

    dataset, cell_dir = fabricated_cell(tmp_path)
    save_smp_checkpoint(tiny_smp_deeplabv3(), "resnet18", 2, tmp_path / "segmenter.pt")
    table = analyze(tmp_path, cell_dir, {"background": "smp", "segmenter_checkpoint": str(tmp_path / "segmenter.pt")})
    assert len(table) == 1 and table.loc[0, "study"] == "s"
    # the same numbers, worked out here from the pieces: IG maps, segmenter masks, oracle = black pixels
    idx = sample_indices(12, 6, seed=0)
    x, y = dataset["test"]["x"][idx], dataset["test"]["y"][idx]
    masks = background_masks(load_smp_segmenter(tmp_path / "segmenter.pt"), x, input_size=64)
    maps, _ = integrated_gradients(load_checkpoint(cell_dir / "model.pt"), x, y, n_steps=4)
    # the default attribution_share: the normalised map
    expected = region_share(maps, masks[:, None], "normalized").nanmean().item()
    assert table.loc[0, "background_share"] == pytest.approx(expected)
    oracle = x.amax(1) == 0
    assert table.loc[0, "background_iou"] == pytest.approx(int((masks & oracle).sum()) / int((masks | oracle).sum()))


def test_analyze_cli_with_oracle_masks(tmp_path):
    import math

    from largelr.analyses.attribute import integrated_gradients, normalized_map
    from largelr.evaluate import sample_indices
    from largelr.models import load_checkpoint

    dataset, cell_dir = fabricated_cell(tmp_path)
    table = analyze(tmp_path, cell_dir, {"background": "oracle", "ig_baseline": "mean", "attribution_share": "raw"})
    idx = sample_indices(12, 6, seed=0)
    x, y = dataset["test"]["x"][idx], dataset["test"]["y"][idx]
    maps, _ = integrated_gradients(load_checkpoint(cell_dir / "model.pt"), x, y, n_steps=4, baseline=x.mean(0))
    # by construction the bar (rows 4-11, 3 columns from 3 * (i % 3) + 3) is the object, the rest background

    def background_share(magnitude):  # [N, ..., H, W]: channels, if any, summed with the pixels
        shares = []
        for row, i in enumerate(idx.tolist()):
            bar = magnitude[row, ..., 4:12, 3 * (i % 3) + 3 : 3 * (i % 3) + 6].sum()
            shares.append(1 - bar / magnitude[row].sum())
        return sum(shares).item() / len(shares)

    assert table.loc[0, "background_share"] == pytest.approx(background_share(maps.abs().double()))
    assert 0.0 < table.loc[0, "background_share"] < 1.0
    normalized = analyze(tmp_path, cell_dir, {"background": "oracle", "ig_baseline": "mean"})  # the default reading
    assert normalized.loc[0, "background_share"] == pytest.approx(background_share(normalized_map(maps)))
    assert math.isnan(table.loc[0, "background_iou"])  # no segmenter to compare


def test_missing_segmenter_fails_before_data_and_model_are_read(tmp_path):
    _, cell_dir = fabricated_cell(tmp_path)
    with pytest.raises(SystemExit, match="segmenter checkpoint not found"):
        # the dataset file is garbage: the segmenter check comes before it is read
        (tmp_path / "garbage.pt").write_bytes(b"not a dataset")
        analyze(
            tmp_path,
            cell_dir,
            {"background": "smp", "segmenter_checkpoint": str(tmp_path / "none.pt")},
            data="garbage.pt",
        )


def test_analyze_cli_tables_have_the_same_columns_for_trained_and_diverged_cells(tmp_path):
    import json
    import math

    import pandas as pd

    from largelr.cli import main

    _, cell_dir = fabricated_cell(tmp_path)
    columns = {}
    for diverged in (False, True):
        record = json.loads((cell_dir / "train.json").read_text())
        record["summary"]["diverged"] = diverged
        (cell_dir / "train.json").write_text(json.dumps(record))
        main(
            [
                "analyze",
                "--cell-dir",
                str(cell_dir),
                "--data",
                str(tmp_path / "bars.pt"),
                "--device",
                "cpu",
                "--settings",
                json.dumps(SMALL_ANALYSIS | {"ig_baseline": "mean"}),
            ]
        )
        tables = {name: pd.read_parquet(cell_dir / f"{name}.parquet") for name in ("prune", "represent", "attribute")}
        columns[diverged] = {name: list(table.columns) for name, table in tables.items()}
        if not diverged:
            prune = tables["prune"]
            assert prune["kappa"].tolist() == [0.0, 0.5] and (prune["metric"] == "accuracy").all()
            # floor(0.5 * units) per layer: at most half of the weights, and nearly half
            assert (
                prune.loc[0, "retention"] == pytest.approx(1.0, abs=1e-12)
                and 0.49 < prune.loc[1, "pruned_fraction"] <= 0.5
            )
            # background: auto on a black-canvas dataset is the oracle (with the mean baseline)
            assert 0.0 < tables["attribute"].loc[0, "background_share"] < 1.0
        else:
            assert tables["prune"]["retention"].isna().all()
            assert math.isnan(tables["attribute"].loc[0, "background_share"])
    assert columns[False] == columns[True]
    assert {"pruned_fraction", "worst_group_acc", "retention"} <= set(columns[False]["prune"])


def test_extra_pruning_curves_use_the_fixed_subset_and_structured_the_whole_test_set(tmp_path):
    import json

    import pandas as pd

    from largelr.cli import main

    _, cell_dir = fabricated_cell(tmp_path)
    settings = SMALL_ANALYSIS | {"prune_methods": ["magnitude", "structured"], "prune_extra_samples": 5}
    main(
        [
            "analyze",
            "--cell-dir",
            str(cell_dir),
            "--data",
            str(tmp_path / "bars.pt"),
            "--device",
            "cpu",
            "--steps",
            "prune",
            "--settings",
            json.dumps(settings),
        ]
    )
    prune = pd.read_parquet(cell_dir / "prune.parquet")
    assert prune["method"].tolist() == ["magnitude"] * 2 + ["structured"] * 2  # the settings' order
    assert prune["test_inputs"].tolist() == [5, 5, 12, 12]


def test_the_weight_urls_are_torchvision_s():
    from torchvision.models import segmentation

    from largelr.analyses.segment import TORCHVISION_SEGMENTERS, TORCHVISION_WEIGHT_URLS

    weights = {
        "deeplabv3_resnet50": segmentation.DeepLabV3_ResNet50_Weights,
        "deeplabv3_mobilenet_v3_large": segmentation.DeepLabV3_MobileNet_V3_Large_Weights,
    }
    assert set(TORCHVISION_WEIGHT_URLS) == set(TORCHVISION_SEGMENTERS) == set(weights)
    for name, enum in weights.items():
        assert TORCHVISION_WEIGHT_URLS[name] == enum.COCO_WITH_VOC_LABELS_V1.url


def test_segmenter_availability_is_file_existence(tmp_path, monkeypatch):
    from largelr.analyses.segment import segmenter_available, torchvision_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not segmenter_available("deeplabv3_mobilenet_v3_large")
    path = torchvision_weights_path("deeplabv3_mobilenet_v3_large")
    assert path == tmp_path / "hub" / "checkpoints" / "deeplabv3_mobilenet_v3_large-fc3c493d.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not even weights: only existence is checked")
    assert segmenter_available("deeplabv3_mobilenet_v3_large") and not segmenter_available("deeplabv3_resnet50")
    assert not segmenter_available("smp", "") and not segmenter_available("smp", str(tmp_path / "absent.pt"))
    assert segmenter_available("smp", str(path))


def test_analyze_cli_with_auto_uses_the_cached_segmenter_on_a_black_canvas_with_the_zero_baseline(
    tmp_path, monkeypatch
):
    from largelr.analyses import segment

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    dataset, cell_dir = fabricated_cell(tmp_path)
    table = analyze(tmp_path, cell_dir, {})  # auto, zero baseline, nothing cached: no background
    assert table["background_share"].isna().all() and table["background_iou"].isna().all()
    path = segment.torchvision_weights_path("deeplabv3_mobilenet_v3_large")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")
    monkeypatch.setattr(segment, "load_segmenter", lambda name, checkpoint, device: ConstantSegmenter())
    table = analyze(tmp_path, cell_dir, {})
    # the stand-in calls every pixel background: share 1, IoU with the oracle = black pixels / all pixels
    assert table.loc[0, "background_share"] == pytest.approx(1.0)
    x = dataset["test"]["x"][sample_indices_of(12, 6)]
    assert table.loc[0, "background_iou"] == pytest.approx(float((x.amax(1) == 0).double().mean()))


def sample_indices_of(n: int, k: int) -> torch.Tensor:
    from largelr.evaluate import sample_indices

    return sample_indices(n, k, seed=0)


@pytest.mark.parametrize(
    "env",
    [{"TORCH_HOME": "/somewhere/torch"}, {"XDG_CACHE_HOME": "/cache"}, {}],
    ids=["TORCH_HOME", "XDG_CACHE_HOME", "default"],
)
def test_the_torch_free_hub_dir_is_torchs(monkeypatch, env):
    from largelr.weights import hub_dir

    for key in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert hub_dir() == Path(torch.hub.get_dir())
