"""Natural datasets: small files fabricated in the real on-disk formats, parsed back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from largelr.checks import defaults
from largelr.datasets.bases import DataMissingError
from largelr.datasets.celeba import CELEBA_PARAMS, build_celeba
from largelr.datasets.imagenet import build_imagenet
from largelr.datasets.lazy import (
    IMAGENET_NORMALIZATION,
    LazyImageDataset,
    decode_rgb,
    decode_rgb_pil,
    group_counts,
    load_image,
)
from largelr.datasets.waterbirds import build_waterbirds
from largelr.registry.kinds import KINDS as ALL_KINDS

# The natural sets' kinds (CelebA, Waterbirds, ImageNet).
KINDS = [ALL_KINDS[name] for name in ("celeba", "waterbirds", "imagenet")]

CELEBA_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male "
    "Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns "
    "Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
assert len(CELEBA_NAMES) == 40
CELEBA_SPLITS = [0, 2, 0, 1, 0, 0, 2, 1, 0, 2, 0, 1]  # 0 train, 1 val, 2 test
IMAGE_SIZE = 16


def write_image(path: Path, size: tuple[int, int], seed: int) -> None:
    """Random RGB image of (width, height); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_celeba(root: Path, n: int = len(CELEBA_SPLITS)) -> dict:
    """The three official CelebA inputs; returns what was written (names, ±1 values, split codes)."""
    folder = root / "celeba"
    folder.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    values = np.where(np.random.default_rng(0).random((n, 40)) < 0.5, -1, 1)
    # Both values of the two role attributes in every split, in different patterns (so y and b differ).
    values[:, CELEBA_NAMES.index("Male")] = [1, -1] * (n // 2)
    values[:, CELEBA_NAMES.index("Blond_Hair")] = [1, 1, -1, -1] * (n // 4)
    rows = [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, values)]
    (folder / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(CELEBA_NAMES) + " \n" + "\n".join(rows) + "\n")
    # The partition lists images in reverse order: the split must be matched by filename.
    partition = [f"{name} {code}" for name, code in zip(names, CELEBA_SPLITS[:n])][::-1]
    (folder / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    for i, name in enumerate(names):
        write_image(folder / "img_align_celeba" / name, (40 + i, 30), seed=i)
    return {"names": names, "values": values, "splits": np.array(CELEBA_SPLITS[:n])}


WATERBIRDS_ROWS = [  # img_filename, y, split, place
    ("001.Black_footed_Albatross/a.jpg", 1, 0, 1),
    ("001.Black_footed_Albatross/b.png", 1, 0, 0),
    ("002.Laysan_Albatross/c.jpg", 1, 1, 1),
    ("002.Laysan_Albatross/d.jpg", 1, 2, 0),
    ("100.Brown_Pelican/e.png", 0, 0, 0),
    ("100.Brown_Pelican/f.jpg", 0, 0, 0),
    ("100.Brown_Pelican/g.jpg", 0, 1, 1),
    ("101.White_Pelican/h.jpg", 0, 2, 1),
    ("101.White_Pelican/i.jpg", 0, 2, 0),
]


def write_waterbirds(
    root: Path, folder: str = "waterbird_complete95_forest2water2", drop_column: str | None = None
) -> Path:
    """metadata.csv in the group-DRO release's column layout, plus the images it lists."""
    directory = root / folder
    directory.mkdir(parents=True)
    columns = ["img_id", "img_filename", "y", "split", "place", "place_filename"]
    lines = [",".join(column for column in columns if column != drop_column)]
    for i, (filename, y, split, place) in enumerate(WATERBIRDS_ROWS):
        row = {
            "img_id": i + 1,
            "img_filename": filename,
            "y": y,
            "split": split,
            "place": place,
            "place_filename": f"/o/ocean/{i:08d}.jpg",
        }
        lines.append(",".join(str(row[column]) for column in columns if column != drop_column))
        write_image(directory / filename, (36, 36), seed=100 + i)
    (directory / "metadata.csv").write_text("\n".join(lines) + "\n")
    return directory


IMAGENET_CLASSES = ["n02085620", "n01440764"]  # created in unsorted order


def write_imagenet(root: Path, val_classes: list[str] = IMAGENET_CLASSES) -> None:
    for split, classes in (("train", IMAGENET_CLASSES), ("val", val_classes)):
        for c, wnid in enumerate(classes):
            for i in range(3):
                write_image(root / "imagenet" / split / wnid / f"{wnid}_{i}.JPEG", (20, 24), seed=10 * c + i)


def celeba_params(**overrides) -> dict:
    return {**defaults(CELEBA_PARAMS), "image_size": IMAGE_SIZE, **overrides}


# --- CelebA -------------------------------------------------------------------------------


def test_celeba_labels_and_splits_are_parsed_as_written(tmp_path):
    """Defaults as the paper states them: core (y) = gender (Male), spurious (b) = hair colour (Blond_Hair)."""
    written = write_celeba(tmp_path)
    dataset = build_celeba(celeba_params(), tmp_path, seed=3)
    target, spurious = CELEBA_NAMES.index("Male"), CELEBA_NAMES.index("Blond_Hair")
    for code, split in ((0, "train"), (1, "val"), (2, "test")):
        rows = np.flatnonzero(written["splits"] == code)
        assert dataset[split]["paths"] == [written["names"][i] for i in rows]
        assert dataset[split]["y"].tolist() == [int(written["values"][i, target] == 1) for i in rows]
        assert dataset[split]["b"].tolist() == [int(written["values"][i, spurious] == 1) for i in rows]
        assert dataset[split]["y"].dtype == torch.int64
    assert dataset["lazy"] is True
    assert dataset["root"] == str((tmp_path / "celeba" / "img_align_celeba").resolve())
    assert dataset["input_shape"] == [3, IMAGE_SIZE, IMAGE_SIZE]
    assert dataset["normalization"] == IMAGENET_NORMALIZATION
    assert dataset["params"]["seed"] == 3


def test_celeba_default_labels_worked_out_from_the_written_file(tmp_path):
    """Male alternates 1, -1 and Blond_Hair goes 1, 1, -1, -1 over the listed images; the train split holds
    rows 0, 2, 4, 5, 8, 10 (CELEBA_SPLITS), so y = [1, 1, 1, 0, 1, 1] and b = [1, 0, 1, 1, 1, 0]."""
    write_celeba(tmp_path)
    dataset = build_celeba(celeba_params(), tmp_path, seed=0)
    assert dataset["train"]["paths"] == [
        "000001.jpg",
        "000003.jpg",
        "000005.jpg",
        "000006.jpg",
        "000009.jpg",
        "000011.jpg",
    ]
    assert dataset["train"]["y"].tolist() == [1, 1, 1, 0, 1, 1]
    assert dataset["train"]["b"].tolist() == [1, 0, 1, 1, 1, 0]
    assert dataset["params"]["target_attribute"] == "Male" and dataset["params"]["spurious_attribute"] == "Blond_Hair"


def test_config_keeps_the_common_benchmark_as_celeba_blond(tmp_path):
    """config.yaml: `celeba` takes the paper's roles, `celeba_blond` the common benchmark's (y = Blond_Hair, b = Male)."""
    from largelr.config import dataset_kind, dataset_params
    from largelr.datasets import build_dataset

    config = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())
    assert dataset_kind(config, "celeba") == dataset_kind(config, "celeba_blond") == "celeba"
    write_celeba(tmp_path)
    paper = build_dataset("celeba", {**dataset_params(config, "celeba"), "image_size": IMAGE_SIZE}, tmp_path, 0)
    blond = build_dataset(
        "celeba", {**dataset_params(config, "celeba_blond"), "image_size": IMAGE_SIZE}, tmp_path, 0, name="celeba_blond"
    )
    assert (paper["params"]["target_attribute"], paper["params"]["spurious_attribute"]) == ("Male", "Blond_Hair")
    assert blond["name"] == "celeba_blond"
    for split in ("train", "val", "test"):  # the roles swap, sample by sample
        assert torch.equal(blond[split]["y"], paper[split]["b"]) and torch.equal(blond[split]["b"], paper[split]["y"])


def test_celeba_attributes_are_parameters(tmp_path):
    written = write_celeba(tmp_path)
    dataset = build_celeba(celeba_params(target_attribute="Smiling", spurious_attribute="Young"), tmp_path, seed=0)
    train_rows = np.flatnonzero(written["splits"] == 0)
    assert dataset["train"]["y"].tolist() == [
        int(written["values"][i, CELEBA_NAMES.index("Smiling")] == 1) for i in train_rows
    ]
    assert dataset["train"]["b"].tolist() == [
        int(written["values"][i, CELEBA_NAMES.index("Young")] == 1) for i in train_rows
    ]


def test_celeba_unknown_attribute_lists_the_available_ones(tmp_path):
    write_celeba(tmp_path)
    with pytest.raises(ValueError, match="Blnd_Hair") as error:
        build_celeba(celeba_params(target_attribute="Blnd_Hair"), tmp_path, seed=0)
    assert all(name in str(error.value) for name in CELEBA_NAMES)


def test_celeba_missing_files_name_them_and_where(tmp_path):
    with pytest.raises(DataMissingError) as error:
        build_celeba(celeba_params(), tmp_path, seed=0)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert str((tmp_path / "celeba").resolve()) in message
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba/"):
        assert name in message


def test_celeba_only_the_missing_file_is_reported_missing(tmp_path):
    write_celeba(tmp_path)
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DataMissingError, match=r"missing: list_eval_partition\.txt\)"):
        build_celeba(celeba_params(), tmp_path, seed=0)


def test_celeba_row_with_a_missing_value_is_rejected(tmp_path):
    write_celeba(tmp_path)
    path = tmp_path / "celeba" / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]  # drop the last attribute value of one row
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="list_attr_celeba.txt"):
        build_celeba(celeba_params(), tmp_path, seed=0)


def test_celeba_wrong_count_line_is_rejected(tmp_path):
    write_celeba(tmp_path)
    path = tmp_path / "celeba" / "list_attr_celeba.txt"
    path.write_text("99\n" + path.read_text().split("\n", 1)[1])
    with pytest.raises(ValueError, match="declares 99 images"):
        build_celeba(celeba_params(), tmp_path, seed=0)


def test_celeba_listed_but_absent_image_is_named(tmp_path):
    written = write_celeba(tmp_path)
    first_train = written["names"][int(np.flatnonzero(written["splits"] == 0)[0])]
    (tmp_path / "celeba" / "img_align_celeba" / first_train).unlink()
    with pytest.raises(ValueError, match=first_train):
        build_celeba(celeba_params(), tmp_path, seed=0)


def test_celeba_ragged_partition_file_is_named(tmp_path):
    write_celeba(tmp_path)
    path = tmp_path / "celeba" / "list_eval_partition.txt"
    path.write_text(path.read_text() + "000099.jpg 0 extra\n")
    with pytest.raises(ValueError, match=r"list_eval_partition\.txt: not a well-formed table"):
        build_celeba(celeba_params(), tmp_path, seed=0)


# One gray level after normalization, the largest difference allowed between decoders/resamplers.
ONE_LEVEL = 1 / 255 / min(IMAGENET_NORMALIZATION["std"]) + 1e-6


def manual_pil_pixels(path: Path, size: int) -> np.ndarray:
    """[S, S, 3] normalized pixels: shorter side -> size with PIL's bilinear, then the central crop."""
    with Image.open(path) as image:
        scale = size / min(image.width, image.height)
        width, height = int(image.width * scale), int(image.height * scale)
        left, top = round((width - size) / 2), round((height - size) / 2)
        expected = (
            image.convert("RGB").resize((width, height), Image.BILINEAR).crop((left, top, left + size, top + size))
        )
    pixels = np.asarray(expected, dtype=np.float32) / 255
    return (pixels - np.array(IMAGENET_NORMALIZATION["mean"])) / np.array(IMAGENET_NORMALIZATION["std"])


def test_lazy_image_matches_a_manual_pil_computation(tmp_path):
    write_celeba(tmp_path)
    dataset = build_celeba(celeba_params(), tmp_path, seed=0)
    reader = LazyImageDataset(dataset, "train")
    x, y, b = reader[1]
    assert len(reader) == len(dataset["train"]["paths"])
    assert x.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == torch.float32
    assert (y, b) == (dataset["train"]["y"][1], dataset["train"]["b"][1])
    # Decoded by torchvision.io and resized on tensors; PIL's pipeline agrees to a gray level.
    expected = manual_pil_pixels(tmp_path / "celeba" / "img_align_celeba" / dataset["train"]["paths"][1], IMAGE_SIZE)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), expected, atol=ONE_LEVEL)


@pytest.mark.parametrize(
    "suffix, mode", [(".jpg", "L"), (".png", "L"), (".png", "P"), (".bmp", "RGB"), (".tiff", "RGB"), (".jpg", "CMYK")]
)
def test_every_format_and_colour_mode_becomes_the_same_rgb(tmp_path, suffix, mode):
    """Formats torchvision.io cannot decode (BMP, TIFF) go through PIL; all agree with PIL's RGB conversion."""
    pixels = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = tmp_path / f"image{suffix}"
    Image.fromarray(pixels).convert(mode).save(path)
    x = load_image(path, IMAGE_SIZE, IMAGENET_NORMALIZATION)
    assert x.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), manual_pil_pixels(path, IMAGE_SIZE), atol=ONE_LEVEL)


def test_pil_and_torchvision_decoders_agree_exactly_on_a_png(tmp_path):
    """Lossless file: both decoders must return the identical uint8 pixels."""
    pixels = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert torch.equal(decode_rgb(tmp_path / "a.png"), torch.from_numpy(pixels).permute(2, 0, 1))
    assert torch.equal(decode_rgb_pil(tmp_path / "a.png"), torch.from_numpy(pixels).permute(2, 0, 1))


def test_lazy_dataset_round_trips_through_weights_only_load(tmp_path):
    write_celeba(tmp_path)
    dataset = build_celeba(celeba_params(), tmp_path, seed=0)
    torch.save(dataset, tmp_path / "celeba.pt")
    loaded = torch.load(tmp_path / "celeba.pt", weights_only=True)
    assert loaded["train"]["paths"] == dataset["train"]["paths"]
    assert torch.equal(loaded["test"]["b"], dataset["test"]["b"])
    assert loaded["normalization"] == dataset["normalization"]


# --- Waterbirds ---------------------------------------------------------------------------


def test_waterbirds_splits_and_labels_are_parsed_as_written(tmp_path):
    directory = write_waterbirds(tmp_path)
    dataset = build_waterbirds({"image_size": IMAGE_SIZE}, tmp_path, seed=0)
    for code, split in ((0, "train"), (1, "val"), (2, "test")):
        rows = [row for row in WATERBIRDS_ROWS if row[2] == code]
        assert dataset[split]["paths"] == [row[0] for row in rows]
        assert dataset[split]["y"].tolist() == [row[1] for row in rows]
        assert dataset[split]["b"].tolist() == [row[3] for row in rows]
    assert dataset["root"] == str(directory.resolve())
    x, _, _ = LazyImageDataset(dataset, "train")[1]  # a PNG
    assert x.shape == (3, IMAGE_SIZE, IMAGE_SIZE)


def test_waterbirds_folder_is_a_parameter(tmp_path):
    write_waterbirds(tmp_path, folder="wb")
    dataset = build_waterbirds({"folder": "wb", "image_size": IMAGE_SIZE}, tmp_path, seed=0)
    assert len(dataset["train"]["paths"]) == 4


def test_waterbirds_missing_column_is_named(tmp_path):
    write_waterbirds(tmp_path, drop_column="place")
    with pytest.raises(ValueError, match=r"metadata\.csv: missing column\(s\) place"):
        build_waterbirds({"image_size": IMAGE_SIZE}, tmp_path, seed=0)


def test_waterbirds_bad_split_code_is_rejected(tmp_path):
    directory = write_waterbirds(tmp_path)
    metadata = directory / "metadata.csv"
    metadata.write_text(metadata.read_text().replace("a.jpg,1,0,1", "a.jpg,1,5,1"))
    with pytest.raises(ValueError, match="split must be one of"):
        build_waterbirds({"image_size": IMAGE_SIZE}, tmp_path, seed=0)


def test_waterbirds_missing_metadata_says_where(tmp_path):
    with pytest.raises(DataMissingError, match="metadata.csv") as error:
        build_waterbirds({"image_size": IMAGE_SIZE}, tmp_path, seed=0)
    assert str((tmp_path / "waterbird_complete95_forest2water2").resolve()) in str(error.value)


# --- ImageNet -----------------------------------------------------------------------------


def test_imagenet_labels_follow_sorted_class_folders(tmp_path):
    write_imagenet(tmp_path)
    dataset = build_imagenet({"image_size": IMAGE_SIZE}, tmp_path, seed=0)
    assert "val" not in dataset
    assert dataset["num_classes"] == dataset["num_bias"] == 2
    for split, folder in (("train", "train"), ("test", "val")):
        expected = [
            (f"{folder}/{wnid}/{wnid}_{i}.JPEG", label)
            for label, wnid in enumerate(sorted(IMAGENET_CLASSES))
            for i in range(3)
        ]
        assert list(zip(dataset[split]["paths"], dataset[split]["y"].tolist())) == expected
        assert torch.equal(dataset[split]["b"], dataset[split]["y"])
    x, y, _ = LazyImageDataset(dataset, "test")[4]
    assert x.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and y == 1


def test_imagenet_val_classes_must_match_train(tmp_path):
    write_imagenet(tmp_path, val_classes=["n01440764"])
    with pytest.raises(ValueError, match="class folders differ"):
        build_imagenet({"image_size": IMAGE_SIZE}, tmp_path, seed=0)


def test_imagenet_missing_tree_is_data_missing(tmp_path):
    with pytest.raises(DataMissingError, match=r"train/, val/"):
        build_imagenet({"image_size": IMAGE_SIZE}, tmp_path, seed=0)


# --- registry and helpers -----------------------------------------------------------------


def test_registry_and_defaults_cover_the_same_datasets():
    assert {kind.name for kind in KINDS} == {"celeba", "waterbirds", "imagenet"}
    assert all("image_size" in kind.params for kind in KINDS)
    # the paper reports worst-group accuracy for the natural spurious-correlation sets
    assert {kind.name for kind in KINDS if kind.traits["worst_group"]} == {"celeba", "waterbirds"}


def test_group_counts_counts_each_non_empty_group():
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    b = torch.tensor([0, 1, 1, 1, 0, 0])
    assert group_counts(y, b, num_bias=2) == {"y=0,b=0": 1, "y=0,b=1": 1, "y=1,b=0": 1, "y=1,b=1": 2, "y=2,b=0": 1}


@pytest.mark.parametrize(
    "build, write",
    [(build_celeba, write_celeba), (build_waterbirds, write_waterbirds), (build_imagenet, write_imagenet)],
)
def test_download_true_is_answered_clearly_and_is_harmless_when_files_exist(tmp_path, build, write):
    with pytest.raises(
        DataMissingError, match=r"not found: expected .*cannot be downloaded by this pipeline.*download: false"
    ):
        build({"image_size": IMAGE_SIZE, "download": True}, tmp_path, seed=0)
    write(tmp_path)
    assert len(build({"image_size": IMAGE_SIZE, "download": True}, tmp_path, seed=0)["train"]["y"]) > 0


def test_lazy_splits_store_group_ids(tmp_path):
    write_waterbirds(tmp_path)
    dataset = build_waterbirds({"image_size": IMAGE_SIZE}, tmp_path, seed=0)
    for split in ("train", "val", "test"):
        pairs = zip(dataset[split]["y"].tolist(), dataset[split]["b"].tolist())
        assert dataset[split]["g"].tolist() == [2 * y + b for y, b in pairs]
