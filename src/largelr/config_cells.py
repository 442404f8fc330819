"""The cell: its keys and files, and the study grid read into cells and their specs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from largelr.checks import Gathered
from largelr.config_settings import TRAIN_KEYS
from largelr.layout import TRAIN_FILES
from largelr.registry.analyses import ANALYSES
from largelr.registry.models import MODELS

CELL_DIR = "results/{study}/{dataset}/{model}/{knob}={value}/seed={seed}"
CELL_ID = "{study}/{dataset}/{model}/{knob}={value}/seed={seed}"
# Every file of a cell: the rules declare these as outputs, the readers open them by the same names
# (TRAIN_FILES, from largelr.io, whose train.json seals the others).
ANALYSIS_FILES = Gathered(lambda: {name: f"{name}.parquet" for name in ANALYSES})
CELL_FILES = Gathered(lambda: {**TRAIN_FILES, **ANALYSIS_FILES})
# Names of the workflow's rules (tests/test_bad_configs.py compares them with Snakemake's list): a study
# of that name, or one starting with a prefix of the per-study rules (figures_<study>), would clash.
RULE_NAMES = (
    "all",
    "data",
    "train",
    "analyze",
    "hilo",
    "aggregate",
    "paper_table1",
    "paper_table2",
    "intervention_figure",
    "landscape_figure",
    "training_maps",
)
RULE_PREFIXES = ("figures_",)


class ConfigError(ValueError):
    """Config values that cannot be used; the message says which keys and what to do."""


@dataclass(frozen=True)
class Cell:
    study: str
    dataset: str
    model: str
    knob: str
    value: str
    seed: int

    @property
    def path(self) -> str:
        return CELL_ID.format(**self.__dict__)

    def file(self, name: str) -> str:
        """Path of the cell's file ``name`` (a key of CELL_FILES)."""
        return f"{CELL_DIR.format(**self.__dict__)}/{CELL_FILES[name]}"


def format_value(value: float) -> str:
    """Canonical text of a knob value, used in paths: 0.01 -> '0.01', 100 -> '100'."""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


# --- reading the config ------------------------------------------------------------------


def dataset_kind(config: dict[str, Any], name: str) -> str:
    return config.get("datasets", {}).get(name, {}).get("kind", name)


def dataset_params(config: dict[str, Any], name: str) -> dict[str, Any]:
    entry = dict(config.get("datasets", {}).get(name, {}))
    entry.pop("kind", None)
    entry.pop("seed", None)
    return entry


def dataset_seed(config: dict[str, Any], name: str) -> int:
    return int(config.get("datasets", {}).get(name, {}).get("seed", 0))


def pair_blocks(config: dict[str, Any], study: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, model) -> the grid block that declares it; a block may override values and train."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for block in config["studies"][study]["grid"]:
        for pair in itertools.product(block["datasets"], block["models"]):
            if pair in pairs:
                raise ConfigError(
                    f"studies.{study}.grid: the pair {list(pair)} appears in two blocks; allowed: each "
                    "(dataset, model) pair in one block only"
                )
            pairs[pair] = block
    return pairs


def train_settings(config: dict[str, Any], study: str, dataset: str, model: str) -> dict[str, Any]:
    """The training settings config.yaml gives a pair explicitly (defaults are filled in by
    TrainSettings): a new key with a default in a later version changes no cell's params,
    so it retrains nothing."""
    block = pair_blocks(config, study)[(dataset, model)]
    return {**config["studies"][study].get("train", {}), **block.get("train", {})}


def analysis_settings(config: dict[str, Any], study: str) -> dict[str, Any]:
    """The analysis settings config.yaml gives a study explicitly (top-level block, then the study's);
    AnalysisSettings fills in the defaults."""
    return {**(config.get("analysis") or {}), **config["studies"][study].get("analysis", {})}


def model_params(config: dict[str, Any], study: str, dataset: str, model: str) -> dict[str, Any]:
    return dict(pair_blocks(config, study)[(dataset, model)].get("model_params", {}).get(model, {}))


def study_cells(config: dict[str, Any], study: str) -> list[Cell]:
    spec = config["studies"][study]
    return [
        Cell(study, dataset, model, spec["knob"], format_value(value), int(seed))
        for (dataset, model), block in pair_blocks(config, study).items()
        for value, seed in itertools.product(block.get("values", spec.get("values")), spec["seeds"])
    ]


def study_datasets(config: dict[str, Any], study: str) -> list[str]:
    return list(dict.fromkeys(cell.dataset for cell in study_cells(config, study)))


def cell_spec(
    config: dict[str, Any], study: str, dataset: str, model: str, knob: str, value: str, seed: int
) -> dict[str, Any]:
    """Everything the train step needs for one cell, with the knob's value applied, every value in its
    setting's type: the spec is the cell's identity (the train rule's params), so `max_steps: 60.0`
    and `60` give the same spec and retrain nothing."""
    train = {key: TRAIN_KEYS[key].check(v) for key, v in train_settings(config, study, dataset, model).items()}
    train[knob] = TRAIN_KEYS[knob].check(float(value))
    params = MODELS[model].PARAMS
    return {
        "study": study,
        "dataset": dataset,
        "model": model,
        "knob": knob,
        "value": float(value),
        "seed": int(seed),
        "train": train,
        "model_params": {
            key: params[key].check(v) if key in params else v
            for key, v in model_params(config, study, dataset, model).items()
        },
    }
