"""The workflow schedules the figures of Figs 9, 13, 14 and 28 (a dry run with a small --configfile)."""

from __future__ import annotations

import re

import pytest
import yaml
from test_workflow import copy_workflow, snakemake

TINY_MAPS = {
    "description": "tiny hi/lo with DeepLift, and maps over training",
    "knob": "lr",
    "seeds": [0, 1],
    "values": [0.02, 0.3],
    "train": {"optimizer": "sgd", "batch_size": 50, "eval_every": 20, "max_steps": 80},
    "analysis": {
        "background": "none",
        "hilo": True,
        "deeplift": True,
        "training_maps": True,
        "training_map_steps": [0, 10, 30],
    },
    "grid": [{"datasets": ["tiny_double_digits"], "models": ["cnn"], "model_params": {"cnn": {"width": 0.0625}}}],
}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    work = copy_workflow(tmp_path_factory.mktemp("figure_targets"))
    without_deeplift = {**TINY_MAPS, "analysis": {"background": "none", "hilo": True}}
    extra = {
        "studies": {"tiny_maps": TINY_MAPS, "tiny_ig": without_deeplift},
        "default_studies": ["tiny_landscape_lr005", "tiny_landscape_lr05", "tiny_maps", "tiny_ig"],
    }
    (work / "extra.yaml").write_text(yaml.safe_dump(extra))
    run = snakemake(work, "--dry-run", "--printshellcmds", "--configfile", "extra.yaml")
    assert run.returncode == 0, run.stderr + run.stdout
    return run.stdout


def test_the_default_target_draws_the_landscape_of_default_studies_with_each_studys_row(dry_run):
    for suffix in ("png", "pdf"):
        assert f"results/figures/landscape-tiny-tiny_parity-fcn.{suffix}" in dry_run
    command = next(line for line in dry_run.splitlines() if "largelr landscape-figure" in line)
    rows = re.search(r"--rows (.*?) --axis", command).group(1).split()
    assert rows == ["tiny_landscape_lr005=0.05", "tiny_landscape_lr05=0.5"]
    assert "--cells results/tiny_landscape_lr005/cells.parquet results/tiny_landscape_lr05/cells.parquet" in command
    assert "--spurious auto" in command and "--name tiny" in command


def test_deeplift_studies_draw_ig_beside_deeplift_and_others_do_not(dry_run):
    assert "results/figures/tiny_maps/tiny_double_digits-cnn.hilo_methods.png" in dry_run
    assert "results/figures/tiny_ig/tiny_double_digits-cnn.hilo.png" in dry_run
    assert "tiny_ig/tiny_double_digits-cnn.hilo_methods" not in dry_run


def test_training_maps_replay_the_first_seed_at_the_low_and_high_value(dry_run):
    command = next(line for line in dry_run.splitlines() if "largelr training-maps" in line)
    assert "--model-low results/tiny_maps/tiny_double_digits/cnn/lr=0.02/seed=0/model.pt" in command
    assert "--summary-high results/tiny_maps/tiny_double_digits/cnn/lr=0.3/seed=0/train.json" in command
    assert '"value": 0.3' in command and '"seed": 0' in command
    for family in ("training_maps", "neuron"):
        assert f"results/figures/tiny_maps/tiny_double_digits-cnn.{family}.png" in dry_run
    assert "results/tiny_ig/training_maps" not in dry_run and "tiny_ig/tiny_double_digits-cnn.neuron" not in dry_run
    assert dry_run.count("largelr training-maps") == 1
