"""The folder kind: PNG files plus a CSV of path, y, b, split, built from scikit-learn's bundled digits;
then the smoke chain on it through Snakemake."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from test_workflow import copy_workflow, snakemake

from largelr.datasets import DataMissingError, build_dataset, missing_data

SPLITS = ("train",) * 6 + ("val", "test", "test", "test")  # by index mod 10


def write_digits_folder(folder, n=120, with_bias=True):
    """Digits 0 and 1 as 8x8 PNGs; y = digit; b = 1 where the sample index is a multiple of 3 (so
    groups (y, b) are known per row); split by index. Returns the CSV as a frame."""
    from sklearn.datasets import load_digits

    digits = load_digits(n_class=2)
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        name = f"img/{i:04d}.png"
        (folder / "img").mkdir(exist_ok=True)
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), mode="L").save(folder / name)
        row = {"path": name, "y": int(digits.target[i]), "split": SPLITS[i % 10]}
        if with_bias:
            row["b"] = int(i % 3 == 0)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(folder / "metadata.csv", index=False)
    return table


def test_folder_reads_labels_splits_and_pixels(tmp_path):
    table = write_digits_folder(tmp_path / "mine")
    dataset = build_dataset("folder", {"folder": "mine", "image_size": 8, "grayscale": True}, tmp_path, seed=0)
    for split in ("train", "val", "test"):
        rows = table[table["split"] == split]
        assert dataset[split]["y"].tolist() == rows["y"].tolist()
        assert dataset[split]["b"].tolist() == rows["b"].tolist()
    assert len(dataset["train"]["y"]) == 72 and len(dataset["val"]["y"]) == 12 and len(dataset["test"]["y"]) == 36
    assert dataset["input_shape"] == [1, 8, 8] and dataset["num_classes"] == 2 and dataset["num_bias"] == 2
    train_rows = table[table["split"] == "train"]
    assert dataset["train"]["g"].tolist() == (train_rows["y"] * 2 + train_rows["b"]).tolist()
    # At the files' own size the pixels come back as written: floor(v * 255 / 16) / 255 (uint8 cast).
    from sklearn.datasets import load_digits

    first = torch.tensor(np.floor(load_digits(n_class=2).images[0] * 255 / 16) / 255, dtype=torch.float32)
    assert torch.allclose(dataset["train"]["x"][0, 0], first, atol=1e-6)
    assert dataset["traits"]["worst_group"] is True


def test_without_bias_column_no_groups(tmp_path):
    write_digits_folder(tmp_path / "mine", n=40, with_bias=False)
    dataset = build_dataset("folder", {"folder": "mine", "image_size": 16}, tmp_path, seed=0)
    assert torch.equal(dataset["test"]["b"], dataset["test"]["y"]) and dataset["input_shape"] == [3, 16, 16]
    assert dataset["traits"]["worst_group"] is False


def test_bad_input_named(tmp_path):
    assert "metadata.csv" in missing_data("folder", {"folder": "absent"}, tmp_path)
    with pytest.raises(DataMissingError, match="metadata.csv"):
        build_dataset("folder", {"folder": "absent"}, tmp_path, seed=0)
    table = write_digits_folder(tmp_path / "mine", n=20)
    table.loc[3, "split"] = "holdout"
    table.to_csv(tmp_path / "mine" / "metadata.csv", index=False)
    with pytest.raises(ValueError, match="split must be train, val or test.*holdout"):
        build_dataset("folder", {"folder": "mine"}, tmp_path, seed=0)
    table.loc[3, "split"] = "train"
    table.loc[5, "y"] = -1
    table.to_csv(tmp_path / "mine" / "metadata.csv", index=False)
    with pytest.raises(ValueError, match="column 'y' must hold integers >= 0"):
        build_dataset("folder", {"folder": "mine"}, tmp_path, seed=0)


def test_smoke_chain_on_a_folder(tmp_path):
    work = copy_workflow(tmp_path / "work")
    write_digits_folder(tmp_path / "data" / "mine")
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["data_root"] = str(tmp_path / "data")
    config["datasets"]["mine"] = {"kind": "folder", "folder": "mine", "image_size": 16}
    smoke = config["studies"]["smoke"]
    config["studies"]["folder_smoke"] = {
        **smoke,
        "seeds": [0],
        "grid": [{"datasets": ["mine"], "models": ["fcn"], "model_params": {"fcn": {"depth": 2, "width": 32}}}],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run = snakemake(work, "folder_smoke")
    assert run.returncode == 0, run.stderr[-4000:]
    cells = pd.read_parquet(work / "results" / "folder_smoke" / "cells.parquet")
    assert len(cells) == 2 and set(cells["dataset"]) == {"mine"}
    # Groups exist, so worst-group accuracy is reported, and it is at most the plain accuracy.
    assert cells["test_worst_group_acc"].notna().all()
    assert (cells["test_worst_group_acc"] <= cells["test_acc"] + 1e-9).all()


def test_dry_run_shows_the_whole_plan_without_the_data(tmp_path):
    """`snakemake -n STUDY` plans every cell of a study whose data is absent, below the missing-data block."""
    from largelr.config import study_cells

    work = copy_workflow(tmp_path / "work")
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["data_root"] = str(tmp_path / "empty")
    config["studies"]["needs_folder"] = {
        **config["studies"]["smoke"],
        "seeds": [0, 1, 2],
        "values": [0.1, 0.2],
        "grid": [{"datasets": ["mine"], "models": ["fcn", "cnn"]}],
    }
    config["datasets"]["mine"] = {"kind": "folder", "folder": "mine"}
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run = snakemake(work, "needs_folder", "--dry-run", "--quiet", "rules")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        "needs_folder: cannot run, missing mine" in run.stderr
        and "Dry run: the plan below is each study's whole plan" in run.stderr
    )
    counts = {
        parts[0]: int(parts[1])
        for line in run.stdout.splitlines()
        if len(parts := line.split()) == 2 and parts[1].isdigit()
    }
    assert counts["train"] == counts["analyze"] == 2 * 3 * 2 == len(study_cells(config, "needs_folder"))
    assert counts["data"] == 1
