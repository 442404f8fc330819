import copy
from pathlib import Path

import pytest
import yaml

from largelr.config import ConfigError, cell_spec, format_value, study_cells, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_shipped_config_is_valid(config):
    validate_config(config)


def test_demo_grid_size_matches_an_independent_count(config):
    demo = config["studies"]["demo"]
    expected = sum(len(b["datasets"]) * len(b["models"]) * len(b["values"]) for b in demo["grid"]) * len(demo["seeds"])
    cells = study_cells(config, "demo")
    assert len(cells) == expected == len(set(cells))
    assert {c.dataset for c in cells if c.model == "cnn"} == {"moon_star", "colored_digits", "double_digits"}


@pytest.mark.parametrize("value,text", [(0.01, "0.01"), (1e-5, "1e-05"), (100, "100"), (0.3, "0.3"), (2.0, "2")])
def test_value_text_is_canonical_and_round_trips(value, text):
    assert format_value(value) == text
    assert float(text) == value


def test_cell_spec_applies_the_knob_value_with_the_settings_type(config):
    spec = cell_spec(config, "demo", "parity", "fcn", "lr", "0.12", 1)
    assert spec["train"]["lr"] == 0.12 and spec["train"]["max_steps"] == 20000
    assert spec["model_params"] == {"depth": 3, "width": 200}
    config["studies"]["demo"]["knob"] = "batch_size"
    spec = cell_spec(config, "demo", "parity", "fcn", "batch_size", "50", 1)
    assert spec["train"]["batch_size"] == 50 and isinstance(spec["train"]["batch_size"], int)


def test_adding_a_value_leaves_existing_cell_specs_unchanged(config):
    before = cell_spec(config, "demo", "moon_star", "cnn", "lr", "0.1", 0)
    config["studies"]["demo"]["grid"][1]["values"].append(0.5)
    config["studies"]["demo"]["seeds"].append(7)
    assert cell_spec(config, "demo", "moon_star", "cnn", "lr", "0.1", 0) == before


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda c: c["studies"]["demo"].update(knob="lrr"), "studies.demo.knob"),
        (lambda c: c["studies"]["demo"]["train"].update(lr_decay=0.1), "studies.demo.train.lr_decay"),
        (lambda c: c["studies"]["demo"]["grid"][0]["models"].append("mlp"), "studies.demo.grid[0].models"),
        (lambda c: c["studies"]["demo"]["grid"][0]["datasets"].append("mnistt"), "studies.demo.grid[0].datasets"),
        (lambda c: c["studies"]["demo"].update(seeds=[0, 0]), "studies.demo.seeds"),
        (lambda c: c["studies"]["demo"]["train"].update(optimizer="sgdd"), "studies.demo.train.optimizer"),
        (lambda c: c["studies"]["demo"]["grid"][0]["train"].update(loss="hinge"), "studies.demo.grid[0].train.loss"),
        (lambda c: c["studies"]["demo"]["grid"][0]["model_params"].update(cnn={}), "studies.demo.grid[0].model_params"),
        (lambda c: c["studies"]["demo"]["grid"][0]["model_params"]["fcn"].update(depht=2), "model_params.fcn.depht"),
        (lambda c: c["studies"]["demo"]["grid"][1]["datasets"].append("parity"), "studies.demo.grid"),
        (lambda c: c["datasets"]["parity"].update(kind="parityy"), "datasets.parity.kind"),
        (lambda c: c["datasets"]["parity"].update(core_bitz=3), "datasets.parity.core_bitz"),
        (lambda c: c.update(default_studies=["dmo"]), "default_studies"),
    ],
)
def test_bad_config_names_the_key_and_the_allowed_values(config, edit, key):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(ConfigError, match="allowed") as error:
        validate_config(bad)
    assert key in str(error.value)


def test_schema_accepts_the_paper_families_and_check_data_and_rejects_others(config):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(ROOT / "workflow/schemas/config.schema.yaml")
    for check_data in (True, "false"):
        good = copy.deepcopy(config) | {"check_data": check_data}
        validate(good, schema)
    for edit in (lambda c: c["studies"]["demo"].update(paper="table3"), lambda c: c.update(check_data="no")):
        bad = copy.deepcopy(config)
        edit(bad)
        with pytest.raises(WorkflowError):
            validate(bad, schema)


@pytest.mark.parametrize(("key", "value"), [("background", "segformer"), ("ig_baseline", "blur"),
                                            ("ig_target", "argmax"), ("ig_method", "simpson")])
def test_analysis_choices_are_checked_at_parse_time(key, value):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["studies"]["smoke"]["analysis"][key] = value
    with pytest.raises(ConfigError, match=rf"studies\.smoke\.analysis\.{key} = '{value}'.*allowed"):
        validate_config(config)


def test_smp_background_needs_a_checkpoint():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["studies"]["smoke"]["analysis"]["background"] = "smp"
    with pytest.raises(ConfigError, match="segmenter_checkpoint"):
        validate_config(config)
