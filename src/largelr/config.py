"""Settings, study grids and the cell's files: everything config.yaml can say, checked once.

A study sweeps one knob (a training setting such as ``lr``) over values, for every
(dataset, model) pair of its grid and every seed. A cell is one such combination and the
unit of work. Every key config.yaml may hold is declared here (training and analysis
settings) or by its owner (dataset parameters by the dataset kind, model parameters by the
model) as a :class:`~largelr.checks.Setting`; :func:`validate_config` checks every value
against those declarations when the Snakefile is parsed and reports all problems at once,
each with its key path, the value, what is allowed and how to fix it.

Torch-free: the Snakefile imports it at every parse. Its parts, every name re-exported here:
:mod:`largelr.config_settings` (the Setting tables), :mod:`largelr.config_cells` (the cell, its files,
grid -> cells), :mod:`largelr.config_files` (config files and the generated JSON schema),
:mod:`largelr.config_validate` and :mod:`largelr.config_landscapes`. The registry
(:mod:`largelr.registry`) declares the models', analyses' and dataset kinds' records.
"""

from largelr.config_cells import (
    ANALYSIS_FILES,
    CELL_DIR,
    CELL_FILES,
    CELL_ID,
    RULE_NAMES,
    RULE_PREFIXES,
    Cell,
    ConfigError,
    analysis_settings,
    cell_spec,
    dataset_kind,
    dataset_params,
    dataset_seed,
    format_value,
    model_params,
    pair_blocks,
    study_cells,
    study_datasets,
    train_settings,
)
from largelr.config_files import (
    SCHEMA_PATH,
    SCHEMA_TYPES,
    config_schema,
    key_path,
    read_config_file,
    schema_errors,
    schema_text,
    short,
)
from largelr.config_landscapes import (
    axis_value,
    landscape_errors,
    landscape_pairs,
    landscape_rows,
    landscapes,
)
from largelr.config_settings import (
    ANALYSIS_DEFAULTS,
    ANALYSIS_KEYS,
    DATASET_SEED,
    IG_METHODS,
    KNOBS,
    NEEDS,
    POSITIVE,
    SEED_LIMIT,
    STUDY_KEYS,
    TOP_KEYS,
    TRAIN_DEFAULTS,
    TRAIN_KEYS,
    AnalysisSettings,
    Positive,
    TrainSettings,
)
from largelr.config_validate import MIN_TEST_PER_CLASS, known_datasets, validate_config
from largelr.layout import CELL_KEYS, TRAIN_FILES
from largelr.registry.figures import figure_files

# A study's figures: file stem per family, under results/figures/{study}/, each in every format.
# Figure family -> file stem pattern, derived from the family records (largelr.registry.figures).
FIGURE_FILES = figure_files()
FIGURE_FORMATS = ("png", "pdf")

__all__ = [
    "ANALYSIS_DEFAULTS",
    "ANALYSIS_FILES",
    "ANALYSIS_KEYS",
    "CELL_DIR",
    "CELL_FILES",
    "CELL_ID",
    "CELL_KEYS",
    "DATASET_SEED",
    "FIGURE_FILES",
    "FIGURE_FORMATS",
    "IG_METHODS",
    "KNOBS",
    "MIN_TEST_PER_CLASS",
    "NEEDS",
    "POSITIVE",
    "RULE_NAMES",
    "RULE_PREFIXES",
    "SCHEMA_PATH",
    "SCHEMA_TYPES",
    "SEED_LIMIT",
    "STUDY_KEYS",
    "TOP_KEYS",
    "TRAIN_DEFAULTS",
    "TRAIN_FILES",
    "TRAIN_KEYS",
    "AnalysisSettings",
    "Cell",
    "ConfigError",
    "Positive",
    "TrainSettings",
    "analysis_settings",
    "axis_value",
    "cell_spec",
    "config_schema",
    "dataset_kind",
    "dataset_params",
    "dataset_seed",
    "format_value",
    "key_path",
    "known_datasets",
    "landscape_errors",
    "landscape_pairs",
    "landscape_rows",
    "landscapes",
    "model_params",
    "pair_blocks",
    "read_config_file",
    "schema_errors",
    "schema_text",
    "short",
    "study_cells",
    "study_datasets",
    "train_settings",
    "validate_config",
]


if __name__ == "__main__":  # python -m largelr.config: regenerate the schema from the Setting tables
    with open(SCHEMA_PATH, "w") as file:
        file.write(schema_text())
    print(f"wrote {SCHEMA_PATH}")
