"""A cell's params hold only what config.yaml says about it, so code changes retrain nothing."""

from __future__ import annotations

from pathlib import Path

import yaml

from largelr.config import TRAIN_KEYS, AnalysisSettings, TrainSettings, analysis_settings, cell_spec

ROOT = Path(__file__).resolve().parents[1]


def test_a_cell_spec_holds_the_explicit_settings_and_the_knob_only():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    demo = config["studies"]["demo"]
    block = next(b for b in demo["grid"] if b["models"] == ["fcn"])
    dataset = block["datasets"][0]
    spec = cell_spec(config, "demo", dataset, "fcn", "lr", "0.1", 0)
    explicit = {**demo.get("train", {}), **block.get("train", {})}
    assert set(spec["train"]) == set(explicit) | {"lr"}
    assert len(spec["train"]) < len(TRAIN_KEYS)  # a default added later cannot change this spec
    # the defaults are filled in where the settings are used
    settings = TrainSettings(spec["train"])
    assert settings.lr == 0.1 and settings.optimizer == TRAIN_KEYS["optimizer"].default


def test_analysis_settings_of_a_study_are_the_explicit_ones_with_defaults_filled_in_by_the_typed_object():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    explicit = analysis_settings(config, "smoke")
    assert explicit == {**config.get("analysis", {}), **config["studies"]["smoke"].get("analysis", {})}
    typed = AnalysisSettings(explicit)
    assert typed.represent_samples == explicit["represent_samples"] and typed.hilo is False
