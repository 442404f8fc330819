"""The declarations (largelr.registry): torch-free, the single source of the schema, the Slurm
profile's per-model resources and config validation's models and analysis settings."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from largelr.checks import Setting
from largelr.config import (
    ANALYSIS_FILES,
    ANALYSIS_KEYS,
    CELL_FILES,
    ConfigError,
    cell_spec,
    schema_text,
    validate_config,
)
from largelr.registry import analyses as analysis_records
from largelr.registry import models as model_records

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def test_config_and_registry_import_without_torch():
    code = "import sys\n"
    code += "import largelr.config, largelr.registry, largelr.seals, largelr.weights, largelr.targets\n"
    code += "assert 'torch' not in sys.modules, 'torch imported'\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr


def test_checked_in_schema_is_the_generated_one():
    assert (ROOT / "workflow/schemas/config.schema.yaml").read_text() == schema_text(), (
        "regenerate it: python -m largelr.config"
    )


def _profile() -> dict:
    return yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())


def _profile_table(expression: str) -> dict[str, int]:
    match = re.fullmatch(r"(dict\(.*\))\[wildcards\.model\]( \* attempt)?", expression)
    assert match, f"{expression!r}: expected dict(model=value, ...)[wildcards.model], no default for other models"
    call = ast.parse(match.group(1), mode="eval").body
    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}


def test_slurm_profile_shares_gpus_for_the_records_that_say_so():
    definitions = [line for line in _profile()["__definitions__"] if line.startswith("SHARED_MODELS")]
    assert len(definitions) == 1
    shared = ast.literal_eval(definitions[0].split("=", 1)[1].split("#")[0].strip())
    assert tuple(shared) == model_records.gpu_shared_models()


@pytest.mark.parametrize("rule", model_records.COST_RULES)
@pytest.mark.parametrize("resource", ["runtime", "mem_mb"])
def test_slurm_profile_resources_are_the_records_costs(rule, resource):
    expression = _profile()["set-resources"][rule][resource]
    table = _profile_table(expression)
    assert table == {name: getattr(record.cost[rule], resource) for name, record in model_records.MODELS.items()}
    assert expression.endswith("* attempt") == (resource == "runtime")


def test_every_model_record_has_a_cost_per_rule_and_a_loadable_class():
    for name, record in model_records.MODELS.items():
        assert set(record.cost) == set(model_records.COST_RULES), name
        assert record.load().PARAMS == record.params, name


def test_autocast_trait_is_the_large_models():
    # train.py's amp "auto" (bf16 on CUDA) covers the resnet*, wrn* and swin* models
    assert {name for name, record in model_records.MODELS.items() if record.autocast} == {
        name for name in model_records.MODELS if name.startswith(("resnet", "wrn", "swin"))
    }


def test_analysis_modules_declare_the_records_columns_and_choices():
    from largelr.analyses import ANALYSES
    from largelr.analyses.prune import METHODS

    assert list(ANALYSES) == list(analysis_records.ANALYSES)
    for name, module in ANALYSES.items():
        assert module.NAME == name and module.COLUMNS == analysis_records.ANALYSES[name].columns
    assert set(METHODS) == set(analysis_records.PRUNE_METHODS)


# --- a toy model and a toy analysis, one record each ------------------------------------------

TOY_MODEL = model_records.ModelRecord(
    "toy",
    "a toy model",
    "largelr.models:FCN",
    {"width": Setting(8, "units", type=int, minimum=1)},
    gpu_shared=True,
    cost={rule: model_records.Cost(1, 100) for rule in model_records.COST_RULES},
)
TOY_ANALYSIS = analysis_records.AnalysisRecord(
    "toy_metric",
    "a toy analysis",
    "largelr.analyses.toy_metric",
    settings={"toy_threshold": Setting(0.5, "a toy threshold", minimum=0.0, maximum=1.0)},
    columns={"toy_score": "float64"},
)


@pytest.fixture
def toy_records(monkeypatch):
    monkeypatch.setitem(model_records.MODELS, "toy", TOY_MODEL)
    monkeypatch.setitem(analysis_records.ANALYSES, "toy_metric", TOY_ANALYSIS)


@pytest.fixture
def toy_config() -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["landscapes"] = {}
    config["default_studies"] = ["demo"]
    demo = config["studies"]["demo"]
    demo["analysis"]["toy_threshold"] = 0.25
    demo["grid"] = [
        {
            "datasets": ["parity"],
            "models": ["toy"],
            "values": [0.05, 0.2],
            "train": {"max_steps": 16000, "eval_every": 400},
            "model_params": {"toy": {"width": 16}},
        }
    ]
    config["studies"] = {"demo": demo}
    return config


def test_a_toy_model_and_analysis_flow_into_validation_and_cells(toy_records, toy_config):
    validate_config(toy_config)
    spec = cell_spec(toy_config, "demo", "parity", "toy", "lr", "0.05", 0)
    assert spec["model_params"] == {"width": 16}
    assert ANALYSIS_KEYS["toy_threshold"].default == 0.5
    assert ANALYSIS_FILES["toy_metric"] == "toy_metric.parquet" and "toy_metric" in CELL_FILES


def test_toy_setting_values_are_checked(toy_records, toy_config):
    toy_config["studies"]["demo"]["analysis"]["toy_threshold"] = 2.0
    with pytest.raises(ConfigError, match="toy_threshold"):
        validate_config(toy_config)
    toy_config["studies"]["demo"]["analysis"]["toy_threshold"] = 0.25
    toy_config["studies"]["demo"]["grid"][0]["model_params"] = {"toy": {"depth": 2}}
    with pytest.raises(ConfigError, match=r"model_params\.toy"):
        validate_config(toy_config)


def test_without_its_record_the_toy_model_is_refused_naming_the_records(toy_config):
    del toy_config["studies"]["demo"]["analysis"]["toy_threshold"]
    with pytest.raises(ConfigError) as error:
        validate_config(toy_config)
    message = str(error.value)
    assert "'toy' is not a model" in message
    assert f"allowed: {sorted(model_records.MODELS)}" in message
