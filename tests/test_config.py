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
    assert {c.dataset for c in cells if c.model == "cnn"} == {"moon_star"}


@pytest.mark.parametrize("value,text", [(0.01, "0.01"), (1e-5, "1e-05"), (100, "100"), (0.3, "0.3"), (2.0, "2")])
def test_value_text_is_canonical_and_round_trips(value, text):
    assert format_value(value) == text
    assert float(text) == value


def test_cell_spec_applies_the_knob_value_with_the_settings_type(config):
    spec = cell_spec(config, "demo", "parity", "fcn", "lr", "0.12", 1)
    block_cap = config["studies"]["demo"]["grid"][0]["train"]["max_steps"]  # the parity block's override
    assert spec["train"]["lr"] == 0.12 and spec["train"]["max_steps"] == block_cap
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
        (lambda c: c["studies"]["demo"]["grid"].append(dict(c["studies"]["demo"]["grid"][0])), "studies.demo.grid"),
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


SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def test_paper_families_and_check_data_are_settings_checked_with_the_schema(config):
    for check_data in (True, False, "false", "true"):  # `--config check_data=false` passes text
        validate_config(copy.deepcopy(config) | {"check_data": check_data}, schema=SCHEMA)
    for edit, key in (
        (lambda c: c["studies"]["demo"].update(paper="table3"), "studies.demo.paper = 'table3'"),
        (lambda c: c.update(check_data="no"), "check_data = 'no'"),
    ):
        bad = copy.deepcopy(config)
        edit(bad)
        with pytest.raises(ConfigError, match="allowed") as error:
            validate_config(bad, schema=SCHEMA)
        assert key in str(error.value)


VALUE_CONSTRAINTS = {
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "const",
    "default",
    "multipleOf",
    "minLength",
    "maxLength",
    "anyOf",
    "oneOf",
    "format",
}


def schema_nodes(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, child in node.items():
            yield from schema_nodes(child, (*path, key))
    elif isinstance(node, list):
        for position, child in enumerate(node):
            yield from schema_nodes(child, (*path, position))


def test_the_schema_declares_structure_only_and_every_value_has_one_setting():
    # Values (ranges, choices, defaults) live in the Settings; the schema holds none of them, and
    # patterns only for names that become paths and rule names.
    schema = yaml.safe_load(SCHEMA.read_text())
    for path, node in schema_nodes(schema):
        assert not VALUE_CONSTRAINTS & set(node), (path, VALUE_CONSTRAINTS & set(node))
        if "pattern" in node and path[-1] != "propertyNames":
            assert path[-2:] == ("names", "items"), path
    from largelr.config import STUDY_KEYS, TOP_KEYS

    top, studies = schema["properties"], schema["properties"]["studies"]["additionalProperties"]["properties"]
    assert set(TOP_KEYS) == {key for key, value in top.items() if value == {} or "description" in value}
    assert set(STUDY_KEYS) == {key for key, value in studies.items() if value == {}}


@pytest.mark.parametrize(
    "knob,values",
    [("momentum", [0, 0.5, 0.9]), ("weight_decay", [0, 1.0e-4]), ("l1", [0, 1.0e-6]), ("asam_rho", [0.0, 0.1])],
)
def test_zero_is_a_sweepable_value_where_the_knobs_setting_allows_it(config, knob, values):
    config["studies"]["smoke"].update(knob=knob, values=values)
    validate_config(config, schema=SCHEMA)
    assert {cell.value for cell in study_cells(config, "smoke")} == {format_value(v) for v in values}


def test_schema_errors_name_the_key_path_and_suggest_the_key(config):
    config["studies"]["smoke"]["grid"][0]["model_parms"] = {}
    config["studies"]["smoke"].pop("seeds")
    with pytest.raises(ConfigError) as error:
        validate_config(config, schema=SCHEMA)
    text = str(error.value)
    assert "studies.smoke.grid[0].model_parms = {}: unknown key 'model_parms' (did you mean 'model_params'?)" in text
    assert "studies.smoke.seeds: missing" in text and "2 problems" in text


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    from largelr.config import read_config_file

    path = tmp_path / "bad.yaml"
    path.write_text("studies:\n  a:\n    seeds: [0, 1\n    knob: lr\n")
    with pytest.raises(ConfigError) as error:
        read_config_file(path)
    # PyYAML marks where the flow sequence should have been closed: line 4, column 9 (after "knob").
    assert f"{path}, line 4, column 9" in str(error.value) and "    knob: lr" in str(error.value)


def test_a_key_given_twice_is_refused_but_merge_keys_override_quietly(tmp_path):
    from largelr.config import read_config_file

    path = tmp_path / "twice.yaml"
    path.write_text("base: &b {lr: 0.1, seeds: [0]}\nstudy: {<<: *b, lr: 0.2}\ntrain:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"line 5, column 3: the key 'lr' is given twice .*first on line 4"):
        read_config_file(path)
    path.write_text("base: &b {lr: 0.1, seeds: [0]}\nstudy: {<<: *b, lr: 0.2}\n")
    assert read_config_file(path)["study"] == {"lr": 0.2, "seeds": [0]}


def test_settings_that_would_have_no_effect_are_refused(config):
    config["studies"]["smoke"]["train"]["optimizer"] = "adam"
    config["studies"]["smoke"]["train"]["momentum"] = 0.9
    with pytest.raises(ConfigError, match=r"studies\.smoke\.grid\[0\]: momentum = 0\.9 but optimizer = adam"):
        validate_config(config)


def test_numbers_written_as_text_and_infinite_numbers_get_a_hint():
    from largelr.checks import Setting, SettingError

    rate = Setting(0.1, above=0.0)
    for value, hint in (("1e-3", "write it as 1.0e-3"), ("0.5", "without quotes"), (float("inf"), "infinite")):
        with pytest.raises(SettingError, match=hint):
            rate.check(value)
    assert rate.check(1.0e-3) == 0.001


def test_rule_names_cover_the_per_study_rules(config):
    config["studies"]["figures_demo"] = copy.deepcopy(config["studies"]["smoke"])
    with pytest.raises(ConfigError, match=r"studies\.figures_demo: the name is taken by a rule"):
        validate_config(config)


@pytest.mark.parametrize(
    ("key", "value"),
    [("background", "segformer"), ("ig_baseline", "blur"), ("ig_target", "argmax"), ("ig_method", "simpson")],
)
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


def test_a_boolean_written_as_text_is_refused_except_where_the_command_line_passes_text(config):
    config["studies"]["smoke"]["train"]["select_on_val"] = "false"  # truthy text: it would switch it on
    with pytest.raises(ConfigError, match=r"studies\.smoke\.train\.select_on_val = 'false': allowed: true or false"):
        validate_config(config)
    del config["studies"]["smoke"]["train"]["select_on_val"]
    validate_config(config | {"check_data": "false"})  # `--config check_data=false`


def test_the_silent_choices_are_checked_at_parse_time(config):
    bad = copy.deepcopy(config)
    bad["datasets"]["colored_mnist"] = {"standardize": "imagenet"}
    bad["studies"]["smoke"].setdefault("analysis", {}).update(
        csi_neurons="dead", bc_ratio="max", usable_range_reading="percent", represent_bn="train"
    )
    bad["studies"]["smoke"]["grid"][1]["model_params"]["cnn"]["pool"] = "min"
    with pytest.raises(ConfigError) as error:
        validate_config(bad)
    for expected in (
        "datasets.colored_mnist.standardize = 'imagenet'",
        "csi_neurons = 'dead'",
        "bc_ratio = 'max'",
        "usable_range_reading = 'percent'",
        "represent_bn = 'train'",
        "pool = 'min'",
    ):
        assert expected in str(error.value), expected
