"""Damaged cells are told from good ones and healed: train.json seals the files written before it.

One small study folder (two trained and analysed cells of a parity set) is built once; each test
damages a copy of it and checks what the readers (largelr.io.check_cell, the analyze step, the
aggregation's read_cell) report and remove, so that the next run rebuilds exactly that cell.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import toy_spec

from largelr.io import TRAIN_FILES, DamagedCellError, check_cell

CPU = torch.device("cpu")
SEALED = ("model.pt", "history.parquet", "predictions.parquet")
ANALYSIS_SETTINGS = {
    "kappas": [0.0, 0.5],
    "prune_methods": ["structured"],
    "represent_samples": 50,
    "attribute_samples": 4,
    "ig_steps": 2,
}


def quiet(_line: str) -> None:
    pass


def cell_dir(study_dir: Path, seed: int) -> Path:
    return study_dir / "tiny_parity" / "fcn" / "lr=0.1" / f"seed={seed}"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """results/t/... with two trained, analysed cells, and the dataset file beside."""
    from largelr.analyses import analyze_cell
    from largelr.config import ANALYSIS_FILES, AnalysisSettings
    from largelr.datasets import build_dataset, save_dataset
    from largelr.io import with_cell_keys, write_parquet
    from largelr.train import train_and_save

    root = tmp_path_factory.mktemp("damaged")
    params = {"core_bits": 4, "spurious_bits": 2, "n_train": 200, "n_test": 100}
    save_dataset(build_dataset("parity", params, root, 0, name="tiny_parity"), root / "tiny_parity.pt")
    settings = AnalysisSettings(ANALYSIS_SETTINGS)
    for seed in (0, 1):
        spec = toy_spec(target_train_acc=1.1, max_steps=20) | {"dataset": "tiny_parity", "seed": seed}
        folder = cell_dir(root / "results" / "t", seed)
        train_and_save(spec, root / "tiny_parity.pt", folder, CPU, log=quiet)
        cell = json.loads((folder / "train.json").read_text())["cell"]

        def write(name, table, folder=folder, cell=cell):
            write_parquet(with_cell_keys(table, cell, CPU), folder / ANALYSIS_FILES[name])

        analyze_cell(
            folder / "train.json",
            folder / "model.pt",
            root / "tiny_parity.pt",
            settings,
            CPU,
            list(ANALYSIS_FILES),
            write,
            log=quiet,
        )
    return root


@pytest.fixture
def study(built, tmp_path) -> Path:
    """A fresh copy of the study folder."""
    shutil.copytree(built / "results", tmp_path / "results")
    return tmp_path / "results" / "t"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_train_json_seals_size_and_sha256_of_the_files_written_before_it(study):
    folder = cell_dir(study, 0)
    files = json.loads((folder / "train.json").read_text())["files"]
    assert set(files) == set(SEALED)
    for name in SEALED:
        data = (folder / name).read_bytes()
        assert files[name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    record = check_cell(folder, full=("model", "history", "predictions"))
    assert record["cell"]["seed"] == 0


@pytest.mark.parametrize("name", ["model", "history", "predictions"])
@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_a_damaged_sealed_file_is_named_and_removed_with_the_record(study, name, damage):
    folder = cell_dir(study, 0)
    damage(folder / TRAIN_FILES[name])
    with pytest.raises(DamagedCellError) as error:
        check_cell(folder, full=(name,))
    text = str(error.value)
    assert str(folder) in text and f"{TRAIN_FILES[name]}:" in text and "snakemake --cores all t" in text
    assert ("bytes, sealed in train.json" if damage is truncate else "SHA-256 differs") in text
    left = {path.name for path in folder.iterdir()}
    assert TRAIN_FILES[name] not in left and "train.json" not in left
    assert {"prune.parquet", "represent.parquet", "attribute.parquet"} <= left  # rewritten after the retrain
    check_cell(cell_dir(study, 1), full=("model", "history", "predictions"))  # the other cell is untouched


def test_a_size_check_misses_a_flipped_byte_that_the_checksum_finds(study):
    folder = cell_dir(study, 0)
    flip_a_byte(folder / "model.pt")
    check_cell(folder, sized=("model",))
    with pytest.raises(DamagedCellError, match="SHA-256"):
        check_cell(folder, full=("model",))


def test_an_unreadable_record_is_removed(study):
    folder = cell_dir(study, 0)
    truncate(folder / "train.json")
    with pytest.raises(DamagedCellError, match=r"train\.json: unreadable \(JSONDecodeError"):
        check_cell(folder)
    assert not (folder / "train.json").exists() and (folder / "model.pt").exists()


def test_a_damaged_analysis_table_alone_is_removed(study):
    folder = cell_dir(study, 1)
    truncate(folder / "represent.parquet")
    with pytest.raises(DamagedCellError, match="represent.parquet: unreadable") as error:
        check_cell(folder, tables=("prune.parquet", "represent.parquet"))
    assert "the next run rewrites these files" in str(error.value)
    left = {path.name for path in folder.iterdir()}
    assert "represent.parquet" not in left and {"train.json", "model.pt", "prune.parquet"} <= left


def test_a_cell_written_before_seals_is_checked_by_structure(study):
    folder = cell_dir(study, 0)
    record = json.loads((folder / "train.json").read_text())
    del record["files"]
    (folder / "train.json").write_text(json.dumps(record))
    check_cell(folder, full=("model", "history", "predictions"))
    truncate(folder / "model.pt")
    with pytest.raises(DamagedCellError, match=r"model\.pt: unreadable \(BadZipFile"):
        check_cell(folder, full=("model",))


def test_analyze_names_a_truncated_model_instead_of_torchs_zip_error(built, study):
    from largelr.analyses import analyze_cell
    from largelr.config import AnalysisSettings

    folder = cell_dir(study, 0)
    truncate(folder / "model.pt")
    written = []
    with pytest.raises(DamagedCellError, match=r"model\.pt: \d+ bytes, sealed in train\.json with \d+"):
        analyze_cell(
            folder / "train.json",
            folder / "model.pt",
            built / "tiny_parity.pt",
            AnalysisSettings(ANALYSIS_SETTINGS),
            CPU,
            ["prune"],
            lambda name, table: written.append(name),
            log=quiet,
        )
    assert written == [] and not (folder / "train.json").exists()


def test_aggregation_reports_every_damaged_cell_of_the_study_at_once(study):
    from largelr.aggregate import read_cell

    row = read_cell(cell_dir(study, 1) / "train.json")
    assert row["seed"] == 1 and "prunability" in row
    truncate(cell_dir(study, 0) / "history.parquet")
    truncate(cell_dir(study, 1) / "prune.parquet")
    with pytest.raises(DamagedCellError) as error:
        read_cell(cell_dir(study, 1) / "train.json")
    text = str(error.value)
    assert f"{cell_dir(study, 1)}: damaged cell" in text and "prune.parquet: unreadable" in text
    assert f"{cell_dir(study, 0)}: damaged cell" in text and "history.parquet:" in text
    assert not (cell_dir(study, 0) / "train.json").exists() and not (cell_dir(study, 1) / "prune.parquet").exists()
    assert (cell_dir(study, 1) / "train.json").exists()
