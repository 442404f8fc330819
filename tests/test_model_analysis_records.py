"""The declarations (largelr.registry): torch-free, the single source of the schema, the Slurm
profile's per-model resources and config validation's models and analysis settings."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
import yte

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


def _profile(monkeypatch, share: str = "") -> dict:
    """The Slurm profile as Snakemake reads it (yte renders its expressions)."""
    monkeypatch.setenv("LARGELR_SLURM_GPU_SHARE", share)
    with open(ROOT / "profiles/slurm/config.yaml") as stream:
        return yte.process_yaml(stream, require_use_yte=True)


def _per_job(expression: str, model: str, attempt: int = 1):
    """What Snakemake computes from a resource expression for one job."""
    return eval(expression, {"wildcards": SimpleNamespace(model=model), "attempt": attempt})


@pytest.mark.parametrize("share", ["", "shard:1"])
def test_slurm_profile_shares_gpus_for_the_records_that_say_so(monkeypatch, share):
    train = _profile(monkeypatch, share)["set-resources"]["train"]
    for name, record in model_records.MODELS.items():
        shares = bool(share) and record.gpu_shared
        assert _per_job(train["gpu"], name) == int(not shares), name
        if share:
            assert _per_job(train["gres"], name) == (share if record.gpu_shared else ""), name
    assert "gres" in train or not share
    assert {name for name, record in model_records.MODELS.items() if record.gpu_shared} == {"fcn", "cnn"}


@pytest.mark.parametrize("rule", model_records.COST_RULES)
@pytest.mark.parametrize("resource", ["runtime", "mem_mb"])
def test_slurm_profile_resources_are_the_records_costs(monkeypatch, rule, resource):
    expression = _profile(monkeypatch)["set-resources"][rule][resource]
    for name, record in model_records.MODELS.items():
        expected = getattr(record.cost[rule], resource)
        assert _per_job(expression, name) == expected, name
        assert _per_job(expression, name, attempt=2) == expected * (2 if resource == "runtime" else 1), name
    with pytest.raises(KeyError):  # a model without a record's cost: an error, never a default
        _per_job(expression, "unknown_model")


@pytest.mark.parametrize("share", ["", "shard:1"])
def test_snakemake_reads_the_slurm_profiles_resources(monkeypatch, share):
    # What `--profile slurm` does with the file: render it, turn it into command-line values,
    # parse those as `--set-resources` (values with braces or "a: b" pairs fail there).
    from snakemake.cli import parse_set_resources
    from snakemake.profiles import ProfileConfigFileParser

    monkeypatch.setenv("LARGELR_SLURM_GPU_SHARE", share)
    with open(ROOT / "profiles/slurm/config.yaml") as stream:
        arguments = ProfileConfigFileParser().parse(stream)
    resources = parse_set_resources(arguments["set-resources"])
    assert set(model_records.COST_RULES) <= set(resources)


def test_every_model_name_is_an_identifier():  # the Slurm expressions write dict(name=value, ...)
    assert all(name.isidentifier() for name in model_records.MODELS)


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


def test_hilo_models_accepts_a_model_registered_after_the_records_were_read(toy_records, toy_config):
    toy_config["studies"]["demo"]["analysis"].update(hilo=True, hilo_models=["toy"])
    validate_config(toy_config)
    toy_config["studies"]["demo"]["analysis"]["hilo_models"] = ["tiny"]
    with pytest.raises(ConfigError, match="hilo_models"):
        validate_config(toy_config)


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
