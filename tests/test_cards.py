"""Dataset cards: JSON values recomputed independently; PNGs are real, non-blank images."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from test_natural import write_waterbirds

from largelr.datasets import build_dataset
from largelr.datasets.cards import MAX_GROUPS_SHOWN, groups_to_show, sample_figure, write_card
from largelr.datasets.waterbirds import build_waterbirds


def hand_made(channels: int = 3, normalized: bool = False) -> dict:
    """Five training images in two classes, two bias values, one BC sample per class."""
    generator = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        x = torch.rand(n, channels, 8, 8, generator=generator)
        return (x - 0.5) / 0.2 if normalized else x

    return {
        "name": "hand",
        "train": {"x": images(5), "y": torch.tensor([0, 0, 1, 1, 1]), "b": torch.tensor([0, 1, 1, 1, 0])},
        "test": {"x": images(4), "y": torch.tensor([0, 1, 0, 1]), "b": torch.tensor([1, 0, 0, 1])},
        "num_classes": 2,
        "num_bias": 2,
        "input_shape": [channels, 8, 8],
        "spurious_mask": None,
        "core_mask": None,
        "params": {"rho_train": 0.4, "seed": 0},
    }


def expected_split(split: dict) -> dict:
    pairs = list(zip(split["y"].tolist(), split["b"].tolist()))
    return {
        "size": len(pairs),
        # the card takes a float64 torch mean, here Python divides: equal up to rounding
        "rho": pytest.approx(sum(y != b for y, b in pairs) / len(pairs), rel=1e-12),
        "group_counts": {f"y={y},b={b}": n for (y, b), n in Counter(pairs).items()},
    }


def write(dataset: dict, directory: Path, **options) -> tuple[dict, Image.Image]:
    write_card(dataset, directory / "card.json", directory / "card.png", **options)
    assert sorted(path.name for path in directory.iterdir()) == ["card.json", "card.png"]  # no temporaries left
    return json.loads((directory / "card.json").read_text()), Image.open(directory / "card.png")


def assert_drawn(png: Image.Image) -> None:
    assert png.format == "PNG"
    assert png.width > 200 and png.height > 150
    assert np.asarray(png.convert("L")).std() > 5  # not a blank canvas


def test_json_matches_counts_computed_by_hand(tmp_path):
    card, png = write(hand_made(), tmp_path)
    assert card["splits"]["train"] == {
        "size": 5,
        "rho": pytest.approx(0.4),
        "group_counts": {"y=0,b=0": 1, "y=0,b=1": 1, "y=1,b=0": 1, "y=1,b=1": 2},
    }
    assert card["splits"]["test"] == expected_split(hand_made()["test"])
    assert "val" not in card["splits"]
    assert (card["name"], card["num_classes"], card["num_bias"], card["input_shape"]) == ("hand", 2, 2, [3, 8, 8])
    assert card["params"] == {"rho_train": 0.4, "seed": 0}
    assert (card["has_spurious_mask"], card["has_core_mask"], card["has_noise_mask"], card["lazy"]) == (False,) * 4
    assert_drawn(png)


@pytest.mark.parametrize("channels, normalized", [(1, False), (3, True)])
def test_gray_and_normalized_images_are_drawn(tmp_path, channels, normalized):
    _, png = write(hand_made(channels, normalized), tmp_path)
    assert_drawn(png)


def parity_set(noise_bits: int) -> dict:
    return build_dataset(
        "parity",
        {"core_bits": 6, "spurious_bits": 3, "noise_bits": noise_bits, "n_train": 200, "n_test": 100},
        "unused",
        0,
    )


def test_vector_dataset_card(tmp_path):
    parity = parity_set(noise_bits=4)
    card, png = write(parity, tmp_path, samples_per_group=5)
    for split in ("train", "test"):
        assert card["splits"][split] == expected_split(parity[split])
    assert card["has_spurious_mask"] and card["has_core_mask"] and card["has_noise_mask"]
    assert_drawn(png)


def outlines(figure) -> set[tuple[float, float, str]]:
    """(first column, column count, line style) of every outlined column run in the strips."""
    return {
        (patch.get_x() + 0.5, patch.get_width(), patch.get_linestyle())
        for axes in figure.axes
        for patch in axes.patches
    }


def test_vector_card_outlines_spurious_columns_solid_and_noise_columns_dashed():
    """x = [6 core, 3 spurious, 4 noise]: columns 6-8 solid, 9-12 dashed, the core columns bare."""
    figure = sample_figure(parity_set(noise_bits=4), samples_per_group=3, seed=0)
    try:
        assert outlines(figure) == {(6.0, 3, "solid"), (9.0, 4, "dashed")}
        label = figure.axes[-1].get_xlabel()
        assert "spurious columns outlined" in label and "noise columns dashed" in label
    finally:
        plt.close(figure)
    figure = sample_figure(parity_set(noise_bits=0), samples_per_group=3, seed=0)
    try:
        assert outlines(figure) == {(6.0, 3, "solid")} and "noise" not in figure.axes[-1].get_xlabel()
    finally:
        plt.close(figure)


def test_lazy_dataset_card(tmp_path):
    write_waterbirds(tmp_path / "data")
    waterbirds = build_waterbirds({"image_size": 16}, tmp_path / "data", seed=0)
    cards = tmp_path / "cards"
    cards.mkdir()
    card, png = write(waterbirds, cards, samples_per_group=3)
    assert card["lazy"] is True
    assert set(card["splits"]) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        assert card["splits"][split] == expected_split(waterbirds[split])
    assert_drawn(png)


def test_many_groups_show_every_aligned_group_and_some_conflicting_ones():
    y = torch.arange(100) // 10
    b = torch.arange(100) % 10  # all 10 x 10 groups, one sample each
    groups, note = groups_to_show(y, b, 10, torch.Generator().manual_seed(0))
    assert len(groups) == MAX_GROUPS_SHOWN
    assert [group for group in groups if group[0] == group[1]] == [(k, k) for k in range(10)]
    assert "10 of 10 BA" in note and "10 of 90 BC" in note


def test_ten_by_ten_image_card_is_drawn(tmp_path):
    dataset = hand_made()
    dataset["train"] = {"x": torch.rand(200, 3, 8, 8), "y": torch.arange(200) % 10, "b": (torch.arange(200) // 10) % 10}
    dataset.update(num_classes=10, num_bias=10)
    card, png = write(dataset, tmp_path, samples_per_group=2)
    assert len(card["splits"]["train"]["group_counts"]) == 100
    assert_drawn(png)


def test_stored_group_ids_must_agree_with_the_labels(tmp_path):
    dataset = hand_made()
    y, b = dataset["train"]["y"], dataset["train"]["b"]
    dataset["train"]["g"] = torch.tensor([2 * yi + bi for yi, bi in zip(y.tolist(), b.tolist())])
    card, _ = write(dataset, tmp_path)
    assert card["splits"]["train"] == expected_split(dataset["train"])
    dataset["train"]["g"] = dataset["train"]["g"].flip(0)
    with pytest.raises(ValueError, match="group ids g disagree"):
        write_card(dataset, tmp_path / "bad.json", tmp_path / "bad.png")
