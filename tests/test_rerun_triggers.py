"""What makes a finished cell rerun, one test per row of docs/reliability.md's table, on a finished
two-cell study in a temporary copy of the workflow: each row's change is a dry run whose scheduled jobs
are counted; then a dataset file is overwritten with garbage (and one deleted) and the real run must
rebuild it without retraining a cell."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml
from test_workflow import copy_workflow, snakemake

pytestmark = pytest.mark.slow

TINY = {
    "knob": "lr",
    "seeds": [0],
    "values": [0.05, 0.5],
    "train": {"optimizer": "sgd", "batch_size": 100, "eval_every": 5, "max_steps": 10},
    "analysis": {
        "represent_samples": 50,
        "attribute_samples": 8,
        "ig_steps": 4,
        "kappas": [0.0, 0.5],
        "prune_methods": ["structured"],
        "require_converged": False,
        "background": "none",
    },
    "grid": [{"datasets": ["tiny_parity"], "models": ["fcn"], "model_params": {"fcn": {"depth": 1, "width": 8}}}],
}
DATASET = {"kind": "parity", "core_bits": 4, "spurious_bits": 2, "noise_bits": 0, "n_train": 300, "n_test": 300}
CELLS = ["lr=0.05/seed=0", "lr=0.5/seed=0"]


def config(**changes) -> dict:
    study = yaml.safe_load(yaml.safe_dump(TINY)) | changes.pop("study", {})
    dataset = DATASET | changes.pop("dataset", {})
    return {
        "device": "auto",
        "data_root": "data",
        "default_studies": ["tiny"],
        "datasets": {"tiny_parity": dataset},
        "studies": {"tiny": study},
        **changes,
    }


def dry_run(workdir: Path, *args: str) -> dict[str, int]:
    run = snakemake(workdir, "tiny", "--dry-run", "--quiet", "rules", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    for name in ("all", "tiny", "total"):  # the target rules and the sum
        counts.pop(name, None)
    return counts


def overlay(workdir: Path, name: str, content: dict) -> list[str]:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(content))
    return ["--configfile", str(path)]


def cell_bytes(workdir: Path) -> dict[str, bytes]:
    base = workdir / "results/tiny/tiny_parity/fcn"
    return {
        f"{cell}/{name}": (base / cell / name).read_bytes() for cell in CELLS for name in ("train.json", "model.pt")
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("triggers"))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config()))
    run = snakemake(workdir, "tiny")
    assert run.returncode == 0, run.stderr[-4000:]
    assert dry_run(workdir) == {}
    return workdir


def study_change(**train) -> dict:
    return config(study={"train": TINY["train"] | train})


ROWS = [  # the table's rows: (id, the change, jobs scheduled per rule; rules absent: none)
    ("nothing", lambda w: [], {}),
    ("whole_number_as_float", lambda w: overlay(w, "float", study_change(max_steps=10.0, batch_size=100.0)), {}),
    ("device_named_as_auto_resolves", lambda w: ["--config", f"device={auto_device()}"], {}),
    ("data_root_moved", lambda w: ["--config", "data_root=/elsewhere/raw"], {}),
    (
        "value_added",
        lambda w: overlay(w, "value", config(study={"values": [0.05, 0.5, 0.2]})),
        {"train": 1, "analyze": 1, "aggregate": 1},
    ),
    (
        "seed_added",
        lambda w: overlay(w, "seed", config(study={"seeds": [0, 1]})),
        {"train": 2, "analyze": 2, "aggregate": 1},
    ),
    (
        "training_setting_changed",
        lambda w: overlay(w, "steps", study_change(max_steps=12)),
        {"train": 2, "analyze": 2, "aggregate": 1},
    ),
    (
        "dataset_parameter_changed",
        lambda w: overlay(w, "n_train", config(dataset={"n_train": 310})),
        {"data": 1, "train": 2, "analyze": 2, "aggregate": 1},
    ),
    (
        "analysis_setting_changed",
        lambda w: overlay(w, "ig", config(study={"analysis": TINY["analysis"] | {"ig_steps": 5}})),
        {"analyze": 2, "aggregate": 1},
    ),
    ("forced", lambda w: ["--forcerun", "train"], {"train": 2, "analyze": 2, "aggregate": 1}),
]


def auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize(("change", "expected"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_each_row_of_the_rerun_table(finished, change, expected):
    counts = dry_run(finished, *change(finished))
    if expected.get("aggregate"):  # the study's figures follow its aggregate
        expected = expected | {"figures_tiny": 1}
    assert counts == expected


def test_a_dataset_overwritten_with_garbage_is_rebuilt_and_no_cell_retrains(finished):
    dataset = finished / "results/data/tiny_parity.pt"
    before, original = cell_bytes(finished), hashlib.sha256(dataset.read_bytes()).hexdigest()
    logs = {
        cell: (finished / f"results/logs/train/tiny/tiny_parity/fcn/{cell}.log").stat().st_mtime_ns for cell in CELLS
    }
    dataset.write_bytes(os.urandom(dataset.stat().st_size))  # garbage of the same size
    planned = snakemake(finished, "tiny", "--dry-run")  # the plan already names the file and repairs it
    assert "results/data/tiny_parity.pt: not a torch file" in planned.stderr
    assert "no finished cell retrains" in planned.stderr
    assert dry_run(finished) == {"data": 1}
    run = snakemake(finished, "tiny")
    assert run.returncode == 0, run.stderr[-4000:]
    assert hashlib.sha256(dataset.read_bytes()).hexdigest() == original  # rebuilt, the same bytes
    assert cell_bytes(finished) == before  # no cell deleted or retrained
    assert {
        cell: (finished / f"results/logs/train/tiny/tiny_parity/fcn/{cell}.log").stat().st_mtime_ns for cell in CELLS
    } == logs
    assert dry_run(finished) == {}


def test_a_dataset_damaged_inside_is_named_by_its_reader_and_rebuilt_by_the_next_run(finished):
    dataset = finished / "results/data/tiny_parity.pt"
    data = bytearray(dataset.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, same zip directory: only the seal's SHA-256 tells
    dataset.write_bytes(bytes(data))
    before = cell_bytes(finished)
    value = overlay(finished, "value", config(study={"values": [0.05, 0.5, 0.2]}))
    first = snakemake(finished, "tiny", *value)  # the new cell reads the dataset: its train job names it
    assert first.returncode != 0
    assert "results/data/tiny_parity.pt: damaged dataset file" in first.stdout + first.stderr
    second = snakemake(finished, "tiny", *value)
    assert second.returncode == 0, second.stderr[-4000:]
    assert cell_bytes(finished) == before


def test_a_deleted_dataset_is_rebuilt_for_a_new_seed_and_only_new_cells_train(finished):
    (finished / "results/data/tiny_parity.pt").unlink()
    counts = dry_run(finished, *overlay(finished, "seed", config(study={"seeds": [0, 1]})))
    assert counts.get("data") == 1 and counts.get("train") == 2  # the two new cells, not the finished two
