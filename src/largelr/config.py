"""Settings, study grids and the cell's files: everything config.yaml can say, checked once.

A study sweeps one knob (a training setting such as ``lr``) over values, for every
(dataset, model) pair of its grid and every seed. A cell is one such combination and the
unit of work. Every key config.yaml may hold is declared here (training and analysis
settings) or by its owner (dataset parameters by the dataset kind, model parameters by the
model) as a :class:`~largelr.checks.Setting`; :func:`validate_config` checks every value
against those declarations when the Snakefile is parsed and reports all problems at once,
each with its key path, the value, what is allowed and how to fix it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from largelr.analyses import ANALYSES
from largelr.analyses.attribute import BACKGROUND_CHOICES, BASELINE_CHOICES, SHARE_CHOICES
from largelr.analyses.prune import METHODS as PRUNE_METHODS
from largelr.analyses.represent import BN_CHOICES as REPRESENT_BN
from largelr.analyses.represent import LAYER_CHOICES as REPRESENT_LAYERS
from largelr.analyses.represent import NEURON_CHOICES as REPRESENT_NEURONS
from largelr.analyses.represent import SAMPLE_SEED_CHOICES as REPRESENT_SAMPLE_SEEDS
from largelr.analyses.prune import READINGS as PRUNE_READINGS
from largelr.checks import Setting, Settings, SettingError, check_section, defaults, suggestion
from largelr.registry.kinds import KINDS
from largelr.io import CELL_KEYS, TRAIN_FILES  # noqa: F401  (the cell's keys and train files, re-exported)
from largelr.landscape import LANDSCAPE_KEYS
from largelr.models import MODELS
from largelr.registry.figures import figure_files

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")

# --- training ----------------------------------------------------------------------------

TRAIN_KEYS: dict[str, Setting] = {
    "optimizer": Setting("sgd", "sgd | adam | adamw (betas 0.9, 0.999) | psgd_kron (heavyball.PSGDKron)", type=str,
                         choices=("sgd", "adam", "adamw", "psgd_kron")),
    "lr": Setting(0.1, "learning rate (the base rate of the schedule)", above=0.0),
    "momentum": Setting(0.0, "SGD momentum (sgd only)", minimum=0.0, below=1.0),
    "weight_decay": Setting(0.0, "L2: gradient += wd * w for sgd/adam; decoupled for adamw", minimum=0.0),
    "l1": Setting(0.0, "loss += l1 * sum |w| over all parameters", minimum=0.0),
    "loss": Setting("ce", "ce | focal", type=str, choices=("ce", "focal")),
    "focal_gamma": Setting(0.0, "focal loss exponent (0 = cross-entropy)", minimum=0.0),
    "asam_rho": Setting(0.0, "adaptive SAM neighbourhood radius (Kwon et al. 2021); 0 = off", minimum=0.0),
    "asam_eta": Setting(0.01, "ASAM's T_w = |w| + asam_eta (elementwise)", minimum=0.0),
    "lr_schedule": Setting("constant", "constant | step (x lr_step_factor from lr_step_at on) | cosine (to 0 at "
                           "max_steps) | wsd (warmup, stable, linear decay)", type=str,
                           choices=("constant", "step", "cosine", "wsd")),
    "lr_step_at": Setting(1000, "step schedule: the step from which the rate is multiplied", type=int, minimum=0),
    "lr_step_factor": Setting(0.1, "step schedule: the multiplier", minimum=0.0),
    "warmup_steps": Setting(0, "wsd: linear warmup steps", type=int, minimum=0),
    "wsd_decay_fraction": Setting(0.2, "wsd: fraction of max_steps decayed linearly to 0 at the end",
                                  minimum=0.0, maximum=1.0),
    "batch_size": Setting(100, "samples per step", type=int, minimum=1),
    "max_steps": Setting(3000, "step cap", type=int, minimum=1),
    "eval_every": Setting(100, "steps between full-training-set evaluations (stopping, divergence, val)",
                          type=int, minimum=1),
    "target_train_acc": Setting(1.0, "stop once the full training set is fit to this accuracy (> 1: never)",
                                minimum=0.0),
    "stop_train_ce": Setting(0.0, "> 0: stop once the full-training-set CE is below it (replaces target_train_acc)",
                             minimum=0.0),
    "select_on_val": Setting(False, "return the weights of the evaluation with the best val accuracy", type=bool),
    "val_fraction": Setting(0.1, "held out of train (seeded) for select_on_val when the dataset has no val split",
                            above=0.0, below=1.0),
    "collapse_patience": Setting(3, "evaluations at chance accuracy, after having learned, that count as "
                                 "divergence; 0 = off", type=int, minimum=0),
    "eval_test": Setting(False, "also measure test accuracy at every evaluation (history column test_acc)",
                         type=bool),
    "history_every": Setting(1, "record the per-step statistics every k steps", type=int, minimum=1),
    "bc_ratio_samples": Setting(1000, "fixed seeded training inputs on which the BC loss ratio is also measured at "
                                "every evaluation (the authors' code; history bc_loss_ratio_fixed); 0 = off",
                                type=int, minimum=0),
    "attribution_every": Setting(0, "steps between IG spurious-share records on 64 train samples; 0 = off",
                                 type=int, minimum=0),
    "amp": Setting("off", "off (fp32, the default for every model) | bf16 (autocast in the training steps, a "
                   "deviation: reported accuracies and analyses stay fp32) | auto (bf16 on CUDA for resnet*/wrn*/swin*)",
                   type=str, choices=("auto", "bf16", "off")),
    "channels_last": Setting(True, "channels-last memory format of conv models (CPU and CUDA)", type=bool),
    "compile": Setting(False, "torch.compile the model", type=bool),
    "num_workers": Setting(4, "DataLoader workers for lazy (image-file) datasets", type=int, minimum=0),
}
# Training settings a study may sweep; each value is checked against the key's Setting.
KNOBS = ("lr", "batch_size", "momentum", "weight_decay", "l1", "focal_gamma", "asam_rho", "lr_step_at")


class Positive:
    """A NEEDS condition: the other setting must be above 0."""

    def __repr__(self) -> str:
        return "> 0"


POSITIVE = Positive()
# Settings that act only with another one: key -> (the setting it needs, the value it must have, or
# POSITIVE). A key given (or swept) while its partner does not meet the condition is refused: it would
# change nothing, and a sweep of it would be a flat "trend".
NEEDS = {"momentum": ("optimizer", "sgd"), "focal_gamma": ("loss", "focal"),
         "lr_step_at": ("lr_schedule", "step"), "lr_step_factor": ("lr_schedule", "step"),
         "warmup_steps": ("lr_schedule", "wsd"), "wsd_decay_fraction": ("lr_schedule", "wsd"),
         "val_fraction": ("select_on_val", True), "asam_eta": ("asam_rho", POSITIVE),
         "target_train_acc": ("stop_train_ce", 0.0)}

# --- the rest of config.yaml: top-level keys, a study's own keys, a dataset's seed ---------------

TOP_KEYS: dict[str, Setting] = {
    "data_root": Setting("data", "directory with the raw datasets", type=str),
    "device": Setting("auto", "auto | cpu | cuda | cuda:N", type=str, pattern=r"auto|cpu|cuda(:[0-9]+)?"),
    "default_studies": Setting(["demo"], "studies the default target builds", type=list,
                               items=Setting("", "a study", type=str)),
    "check_data": Setting(True, "list studies whose raw data is missing at parse time and leave them out of the "
                          "paper tables (false: a submit host without the data)", type=bool, from_text=True),
    "gpu_slots_per_device": Setting(1, "concurrent GPU jobs per visible GPU (largelr gpu-slot; several small cells "
                                    "per GPU)", type=int, minimum=1),
}
SEED_LIMIT = 2**64 - 1  # the largest seed torch.manual_seed and torch.Generator.manual_seed take
STUDY_KEYS: dict[str, Setting] = {
    "description": Setting("", "what the study is", type=str),
    "paper": Setting(None, "the paper output the study feeds: table1 (Table 1 grids), table2 (interventions), "
                     "variant", type=str, choices=("table1", "table2", "variant"), nullable=True),
    "knob": Setting("lr", "the swept training setting", type=str, choices=KNOBS),
    "seeds": Setting([0], "seeds of every cell", type=list,
                     items=Setting(0, "a seed", type=int, minimum=0, maximum=SEED_LIMIT), min_items=1),
    "values": Setting(None, "the knob's values (each checked against the knob's setting)", type=list, min_items=1),
}
DATASET_SEED = Setting(0, "the seed of the dataset's random draw (shared by every cell)", type=int, minimum=0,
                       maximum=SEED_LIMIT)


class TrainSettings(Settings):
    """A cell's training settings, typed and checked (see ``TRAIN_KEYS``)."""

    KEYS = TRAIN_KEYS


# --- analyses ----------------------------------------------------------------------------


def fraction(default: float, doc: str) -> Setting:
    return Setting(default, doc, minimum=0.0, maximum=1.0)


ANALYSIS_KEYS: dict[str, Setting] = {
    # pruning (largelr.analyses.prune)
    "kappas": Setting([round(0.1 * i, 1) for i in range(10)], "pruned fractions of each curve", type=list,
                      items=fraction(0.0, "a pruned fraction"), min_items=1),
    "prune_methods": Setting(["structured", "structured_columns", "column", "magnitude", "magnitude_global"],
                             "pruning curves to compute; structured (neurons and kernels) is the paper's "
                             "prunability, structured_columns the input columns of every linear layer", type=list,
                             items=Setting("structured", type=str, choices=PRUNE_METHODS), min_items=1),
    "prunability": Setting("chance", "Table 1's prunability: chance (mean over kappa of (Acc_k - c)/(Acc - c), c = 1/K, "
                           "or 0 for worst-group accuracy; the reading the paper's printed values fit) | ratio (mean of "
                           "Acc_k/Acc, the text's formula); cells.parquet holds both", type=str,
                           choices=tuple(PRUNE_READINGS)),
    "prune_extra_samples": Setting(2000, "test inputs of the non-structured curves (0 = all)", type=int, minimum=0),
    "eval_batch_size": Setting(1000, "inputs per forward pass in pruning curves and hi/lo predictions",
                               type=int, minimum=1),
    # representations (largelr.analyses.represent)
    "represent_samples": Setting(1000, "seeded test inputs of the representation statistics", type=int, minimum=1),
    "compress_q": Setting(2.0, "q of the (q, kappa)-compressibility", above=0.0),
    "compress_kappa": Setting(0.1, "kappa of the (q, kappa)-compressibility", above=0.0, maximum=1.0),
    # Diao et al.'s PQ-index 1 - d^(1/q - 1/p) ||z||_p / ||z||_q is a sparsity measure only for p < q; the
    # paper's Fig 25 caption prints p = 2, q = 1, read here as the pair (1, 2) with the roles swapped
    "pq_p": Setting(1.0, "p of the PQ-index (needs 0 < p < q)", above=0.0),
    "pq_q": Setting(2.0, "q of the PQ-index", above=0.0),
    "csi_eps": Setting(1e-7, "epsilon in the class-selectivity denominator", minimum=0.0),
    "csi_neurons": Setting("active", "CSI/BSI average over the neurons active (> 0) on at least one sampled input "
                           "(the authors' code) | all (dead neurons count 0); both go to represent.parquet",
                           type=str, choices=REPRESENT_NEURONS),
    "represent_layer": Setting("head_input", "the representation: head_input (what the classifier head reads, as "
                               "the authors hook it) | last_activation (the last post-activation values; Swin-T: "
                               "its last MLP GELU)", type=str, choices=REPRESENT_LAYERS),
    "represent_abs": Setting(True, "take |z| before CSI, class separation and compressibility (the authors' code)",
                             type=bool),
    "represent_bn": Setting("eval", "BatchNorm during the representation analysis: eval (running statistics) | "
                            "batch (statistics of batches of represent_bn_batch test inputs, the authors' train "
                            "mode; running statistics restored)", type=str, choices=REPRESENT_BN),
    "represent_bn_batch": Setting(100, "inputs per batch with represent_bn: batch", type=int, minimum=2),
    "represent_sample_seed": Setting("cell", "the represent_samples inputs: drawn with the cell's seed (the "
                                     "authors) | fixed (seed 0, one set for every cell)", type=str,
                                     choices=REPRESENT_SAMPLE_SEEDS),
    # attributions (largelr.analyses.attribute)
    "attribute_samples": Setting(200, "seeded test inputs of the attribution measures", type=int, minimum=1),
    "ig_steps": Setting(20, "Integrated Gradients steps", type=int, minimum=1),
    "ig_method": Setting("gausslegendre", "IG quadrature (captum)", type=str, choices=IG_METHODS),
    "ig_baseline": Setting("zero", "zero (all-black input) | mean (mean of the attributed inputs)", type=str,
                           choices=BASELINE_CHOICES),
    "ig_internal_batch_size": Setting(1000, "IG inputs per forward pass", type=int, minimum=1),
    "ig_target": Setting("true", "true (the label) | predicted (the model's class)", type=str,
                         choices=("true", "predicted")),
    "attribution_share": Setting("normalized", "region shares of the attribution map: normalized (summed over channels, "
                                 "|.|, divided by the value holding 98% of the cumulative mass, clipped to 1: the "
                                 "authors' code) | raw (|attribution| per input element); both are recorded",
                                 type=str, choices=SHARE_CHOICES),
    "deeplift": Setting(False, "also DeepLift spurious/core/noise shares (from the IG baseline), as a check on IG",
                        type=bool),
    "background": Setting("auto", "background mask of background_share: auto (oracle where the dataset has one "
                          "and ig_baseline is not zero, else auto_segmenter on images when its weights are here, "
                          "else none) | none | oracle | a DeepLabV3 segmenter", type=str, choices=BACKGROUND_CHOICES),
    "auto_segmenter": Setting("deeplabv3_mobilenet_v3_large", "the segmenter background: auto uses where its weights "
                              "file is here (none: never one)", type=str,
                              choices=tuple(c for c in BACKGROUND_CHOICES if c not in ("auto", "oracle"))),
    "segmenter_checkpoint": Setting("", "file from largelr.analyses.segment.save_smp_checkpoint (background: smp)",
                                    type=str),
    "segmenter_input_size": Setting(512, "square side the images are resized to for the segmenter",
                                    type=int, minimum=8),
    # aggregation (largelr.aggregate): which cells enter tables and figures
    "require_converged": Setting(True, "leave cells that stopped at the step cap short of their fit criterion out "
                                 "of tables and figures (the paper trains until 100% training accuracy)", type=bool),
    "bc_ratio": Setting("minibatch", "max BC loss ratio of the mechanism table and figure: minibatch (largest "
                        "per-step minibatch ratio, the paper's text) | fixed (largest over evaluations on "
                        "bc_ratio_samples fixed training inputs, the authors' code); cells.parquet has both",
                        type=str, choices=("minibatch", "fixed")),
    "min_epochs": Setting(3.0, "a study that requires converged cells must give every cell a step cap of at least "
                          "this many epochs of its training set (max_steps x batch_size / training samples), checked "
                          "at parse time (a lower bound that catches caps certainly too short)", minimum=0.0),
    "usable_range_drop": Setting(0.25, "an lr sweep's usable range ends where one seed loses more than this fraction "
                                 "of the best seed-mean test accuracy (the paper's >25%)", above=0.0, below=1.0),
    "usable_range_reading": Setting("relative", "how usable_range_drop reads the paper's '>25% in test accuracy': "
                                    "relative (below (1 - drop) x the best seed-mean accuracy) | points (below the "
                                    "best seed-mean minus drop, in accuracy points)", type=str,
                                    choices=("relative", "points")),
    "chance_margin": Setting(0.05, "cells whose test accuracy is within this of chance (1 / classes) are flagged "
                             "near_chance", minimum=0.0, maximum=1.0),
    # hi/lo maps (largelr.analyses.hilo)
    "hilo": Setting(False, "build the hi/lo learning-rate attribution maps of every pair", type=bool),
    "hilo_models": Setting(None, "the models whose pairs get hi/lo maps (null: every model of the study)", type=list,
                           items=Setting("", type=str, choices=tuple(MODELS)), nullable=True, min_items=1),
    "hilo_low": Setting(None, "the low value (default: the pair's smallest)", above=0.0, nullable=True),
    "hilo_high": Setting(None, "the high value (default: the pair's largest)", above=0.0, nullable=True),
    "hilo_high_threshold": fraction(0.75, "samples right in more than this fraction of high-value models"),
    "hilo_low_threshold": fraction(0.25, "and in fewer than this fraction of low-value models"),
    "hilo_max_samples": Setting(16, "most samples kept", type=int, minimum=1),
    # Figs 13 (maps over training) and 28 (one neuron over training): the first seed at hilo_low and
    # hilo_high replayed and observed (largelr.over_training), for the pairs of hilo_models.
    "training_maps": Setting(False, "replay the low and high cells' first seed and save IG maps and per-neuron "
                             "CSI/BSI at training_map_steps and at the end", type=bool),
    "training_map_steps": Setting([0, 100, 300, 1000, 3000], "steps observed besides the last (those past the "
                                  "run's end are dropped)", type=list, items=Setting(0, type=int, minimum=0),
                                  min_items=1),
    "training_map_samples": Setting(4, "seeded test samples whose IG maps are saved", type=int, minimum=1),
}


class AnalysisSettings(Settings):
    """A study's analysis settings, typed and checked (see ``ANALYSIS_KEYS``)."""

    KEYS = ANALYSIS_KEYS


# Backwards-readable views of the defaults.
TRAIN_DEFAULTS: dict[str, Any] = defaults(TRAIN_KEYS)
ANALYSIS_DEFAULTS: dict[str, Any] = defaults(ANALYSIS_KEYS)

# --- cells and their files ---------------------------------------------------------------

CELL_DIR = "results/{study}/{dataset}/{model}/{knob}={value}/seed={seed}"
CELL_ID = "{study}/{dataset}/{model}/{knob}={value}/seed={seed}"
# Every file of a cell: the rules declare these as outputs, the readers open them by the same names
# (TRAIN_FILES, from largelr.io, whose train.json seals the others).
ANALYSIS_FILES = {name: f"{name}.parquet" for name in ANALYSES}
CELL_FILES = {**TRAIN_FILES, **ANALYSIS_FILES}
# A study's figures: file stem per family, under results/figures/{study}/, each in every format.
# Figure family -> file stem pattern, derived from the family records (largelr.registry.figures).
FIGURE_FILES = figure_files()
FIGURE_FORMATS = ("png", "pdf")
# Names of the workflow's rules (tests/test_bad_configs.py compares them with Snakemake's list): a study
# of that name, or one starting with a prefix of the per-study rules (figures_<study>), would clash.
RULE_NAMES = ("all", "data", "train", "analyze", "hilo", "aggregate", "paper_table1", "paper_table2",
              "intervention_figure", "landscape_figure", "training_maps")
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
                raise ConfigError(f"studies.{study}.grid: the pair {list(pair)} appears in two blocks; allowed: each "
                                  "(dataset, model) pair in one block only")
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


def cell_spec(config: dict[str, Any], study: str, dataset: str, model: str, knob: str, value: str, seed: int) -> dict[str, Any]:
    """Everything the train step needs for one cell, with the knob's value applied, every value in its
    setting's type: the spec is the cell's identity (the train rule's params), so `max_steps: 60.0`
    and `60` give the same spec and retrain nothing."""
    train = {key: TRAIN_KEYS[key].check(v) for key, v in train_settings(config, study, dataset, model).items()}
    train[knob] = TRAIN_KEYS[knob].check(float(value))
    params = MODELS[model].PARAMS
    return {
        "study": study, "dataset": dataset, "model": model, "knob": knob,
        "value": float(value), "seed": int(seed), "train": train,
        "model_params": {key: params[key].check(v) if key in params else v
                         for key, v in model_params(config, study, dataset, model).items()},
    }


# --- reading config files ----------------------------------------------------------------


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file as a dict; ConfigError naming the file, line and column of a YAML syntax error
    or of a key given twice in one mapping (YAML keeps the last one silently)."""
    import yaml

    class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when present
        def construct_mapping(self, node, deep=False):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: explicit keys override it
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) and key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice in this mapping (first on line {first[key] + 1}); "
                        "YAML would keep only the last one", key_node.start_mark)
                first[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep)

    text = Path(path).read_text()
    try:
        return yaml.load(text, Loader=UniqueKeyLoader) or {}
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        context = f" ({error.context} on line {error.context_mark.line + 1})" if error.context and error.context_mark else ""
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        raise ConfigError(f"{path}, line {mark.line + 1}, column {mark.column + 1}: {error.problem}{context}\n"
                          f"  {mark.line + 1:>5} | {line}\n        | {' ' * mark.column}^\n"
                          f"Fix the YAML at that line of {path}.") from None


def key_path(parts: Any) -> str:
    """A key path as config messages write it: studies.demo.grid[0].datasets."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the top level)"


def short(value: Any, width: int = 70) -> str:
    """repr of a value, cut to ``width`` characters (a whole study would fill the screen)."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 4] + " ..."


SCHEMA_TYPES = {"object": "a mapping (key: value; {} when empty)", "array": "a list", "string": "text",
                "boolean": "true or false", "number": "a number", "integer": "a whole number"}


def schema_errors(config: dict[str, Any], schema_path: str | Path) -> list[str]:
    """Structure problems (sections, required keys, unknown keys, containers) against the JSON schema,
    each with its key path; values are checked by validate_config against the Settings."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = []
    for error in sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: e.json_path):
        parts, where, kind = list(error.absolute_path), key_path(error.absolute_path), error.validator
        if kind == "additionalProperties" and isinstance(error.instance, dict):
            known = list(error.schema.get("properties", {}))
            errors += [f"{key_path([*parts, key])} = {short(value)}: unknown key {key!r}{suggestion(str(key), known)}; "
                       f"allowed keys: {sorted(known)}" for key, value in error.instance.items() if key not in known]
        elif kind == "required":
            errors += [f"{key_path([*parts, key])}: missing; {where} needs the keys {error.validator_value}"
                       for key in error.validator_value if key not in error.instance]
        elif kind == "type":
            errors.append(f"{where} = {short(error.instance)}: allowed: {SCHEMA_TYPES.get(error.validator_value)}")
        elif kind == "propertyNames":
            errors.append(f"{where}: {error.message}; allowed: names of letters, digits and _ (they become paths "
                          "and rule names)")
        else:
            errors.append(f"{where} = {short(error.instance)}: {error.message}")
    return errors


# --- validation --------------------------------------------------------------------------


def validate_config(config: dict[str, Any], schema: str | Path | None = None) -> None:
    """Check the structure (against ``schema``, when given) and then every name and value of the
    config; raises ConfigError listing every problem with its key path, the value and what is allowed."""
    errors = schema_errors(config, schema) if schema is not None else []
    if not errors:
        errors = [*_top_level_errors(config), *_dataset_errors(config)]
        for study in config.get("studies", {}):
            errors += _study_errors(config, study)
    if errors:
        listed = "\n".join(f"  - {error}" for error in errors)
        raise ConfigError(f"config: {len(errors)} problem{'s' if len(errors) > 1 else ''} "
                          f"(fix them in config.yaml, the --configfile files or --config):\n{listed}")


def _top_level_errors(config: dict[str, Any]) -> list[str]:
    studies = config.get("studies", {})
    errors = check_section({k: v for k, v in config.items() if k in TOP_KEYS}, TOP_KEYS, "")[1]
    errors += [f"default_studies: {study!r} is not a study; allowed: studies defined in config.yaml, {sorted(studies)}"
               for study in (config.get("default_studies") if isinstance(config.get("default_studies"), list) else [])
               if isinstance(study, str) and study not in studies]
    errors += [f"studies.{study}: the name is taken by a rule of the workflow; allowed: any name but "
               f"{list(RULE_NAMES)} or one starting with {list(RULE_PREFIXES)}. Rename the study"
               for study in studies if study in RULE_NAMES or study.startswith(RULE_PREFIXES)]
    errors += check_section(config.get("analysis", {}) or {}, ANALYSIS_KEYS, "analysis")[1]
    errors += landscape_errors(config)
    return errors


def _dataset_errors(config: dict[str, Any]) -> list[str]:
    errors = []
    for name, entry in (config.get("datasets") or {}).items():
        kind = (entry or {}).get("kind", name)
        if kind not in KINDS:
            errors.append(f"datasets.{name}.kind = {kind!r}: unknown kind{suggestion(str(kind), KINDS)}; "
                          f"allowed: {sorted(KINDS)}")
            continue
        errors += check_section({"seed": entry["seed"]} if "seed" in entry else {}, {"seed": DATASET_SEED},
                                f"datasets.{name}")[1]
        errors += KINDS[kind].check_params(dataset_params(config, name), f"datasets.{name}")[1]
    return errors


def _study_errors(config: dict[str, Any], study: str) -> list[str]:
    spec, where = config["studies"][study], f"studies.{study}"
    own, errors = check_section({k: v for k, v in spec.items() if k in STUDY_KEYS}, STUDY_KEYS, where)
    knob = own.get("knob")
    errors += check_section(spec.get("train", {}), TRAIN_KEYS, f"{where}.train")[1]
    errors += _analysis_errors(config, study)
    if "seeds" in own and len(set(own["seeds"])) != len(own["seeds"]):
        errors.append(f"{where}.seeds = {spec['seeds']}: a seed is repeated; allowed: distinct seeds")
    if "values" not in spec and not all("values" in block for block in spec["grid"]):
        errors.append(f"{where}.values: missing; allowed: give `values` for the study or for every grid block")
    try:
        pair_blocks(config, study)
    except ConfigError as error:
        return errors + [str(error)]
    for position, block in enumerate(spec["grid"]):
        errors += _block_errors(config, study, block, f"{where}.grid[{position}]")
    for values, at in [(spec.get("values"), f"{where}.values")] + [
            (block.get("values"), f"{where}.grid[{i}].values") for i, block in enumerate(spec["grid"])]:
        errors += _knob_value_errors(knob, values, at) if knob is not None and values is not None else []
    if not errors:
        for position, block in enumerate(spec["grid"]):
            given = {**spec.get("train", {}), **block.get("train", {})}
            values = block.get("values", spec.get("values"))
            errors += _effect_errors({**TRAIN_DEFAULTS, **given}, set(given), knob, values, f"{where}.grid[{position}]")
            errors += _dataset_fit_errors(config, study, block, {**TRAIN_DEFAULTS, **given}, values,
                                          f"{where}.grid[{position}]")
            errors += _step_never_reached({**TRAIN_DEFAULTS, **given}, knob, values, f"{where}.grid[{position}]")
        errors += _budget_errors(config, study)
    return errors


def _budget_errors(config: dict[str, Any], study: str) -> list[str]:
    """Step caps that cannot reach the fit criterion (largelr.budgets), per grid block and knob value."""
    from largelr.budgets import budget_errors, train_size

    spec = config["studies"][study]
    try:
        settings = AnalysisSettings(analysis_settings(config, study))
    except SettingError:
        return []  # reported with the analysis block
    errors = []
    for position, block in enumerate(spec["grid"]):
        cells = []
        for dataset, model in itertools.product(block["datasets"], block["models"]):
            kind = dataset_kind(config, dataset)
            try:
                n_train = train_size(kind, KINDS[kind].merged_params(dataset_params(config, dataset)))
            except (SettingError, KeyError):
                continue  # an unknown kind or bad parameters: reported with the datasets
            for value in block.get("values", spec.get("values")):
                train = {**TRAIN_DEFAULTS, **spec.get("train", {}), **block.get("train", {}),
                         spec.get("knob", "lr"): value}
                cells.append((dataset, model, n_train, train))
        errors += budget_errors(cells, settings.min_epochs, settings.require_converged,
                                f"studies.{study}.grid[{position}]")
    return errors


def _meets(value: Any, needed: Any) -> bool:
    return value > 0 if needed is POSITIVE else value == needed


def _yaml_text(value: Any) -> str:
    """A value as config.yaml writes it: true, 0, step."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _effect_errors(train: dict[str, Any], given: set[str], knob: str, values: list, where: str) -> list[str]:
    """Settings that would silently have no effect: one given (or swept) whose partner (NEEDS) is off."""
    errors = []
    for key, (other, needed) in NEEDS.items():
        partner = values if other == knob else [train[other]]
        if (key != knob and key not in given) or any(_meets(value, needed) for value in partner):
            continue
        used = "is the knob" if key == knob else f"= {_yaml_text(train[key])}"
        now = f"the knob {other} takes only {values}" if other == knob else f"{other} = {_yaml_text(train[other])}"
        condition = f"{other} {needed!r}" if needed is POSITIVE else f"{other}: {_yaml_text(needed)}"
        fix = f"a value of {other} above 0" if needed is POSITIVE else f"train.{other}: {_yaml_text(needed)}"
        errors.append(f"{where}: {key} {used} but {now}, and {key} acts only with {condition}, so every cell would "
                      f"train as without it; allowed: set {fix}, or leave {key} out")
    return errors


def _step_never_reached(train: dict[str, Any], knob: str, values: list, where: str) -> list[str]:
    """A step schedule whose step always comes at or after max_steps trains at the constant rate. A sweep
    may hold one such value (the "never cut" control of Fig. 28), not only such values."""
    if train["lr_schedule"] != "step":
        return []
    steps = values if knob == "lr_step_at" else [train["lr_step_at"]]
    if any(step < train["max_steps"] for step in steps):
        return []
    return [f"{where}: lr_step_at {steps if knob == 'lr_step_at' else steps[0]} is never before max_steps = "
            f"{train['max_steps']}, so the rate never steps and every cell trains at the constant rate; "
            f"allowed: lr_step_at < {train['max_steps']} (for at least one value); fix: lower it or raise "
            "max_steps"]


# At least this many analysed test samples per class: CSI, BSI and class separation compare class
# (and bias-group) means, and a seeded draw of 10 per class misses a balanced binary class with
# probability 2**-19.
MIN_TEST_PER_CLASS = 10


def _dataset_fit_errors(config: dict[str, Any], study: str, block: dict[str, Any], train: dict[str, Any],
                        values: list, where: str) -> list[str]:
    """A study's settings against the sizes of its datasets (where the kind declares them): a batch
    larger than the training set, too few test samples per class for the analyses."""
    errors, knob = [], config["studies"][study]["knob"]
    try:
        samples = AnalysisSettings(analysis_settings(config, study)).represent_samples
    except SettingError:
        return []  # reported with the top-level analysis block
    for dataset in block["datasets"]:
        kind = KINDS.get(dataset_kind(config, dataset))
        if kind is None or kind.size_keys is None:
            continue
        params, problems = kind.check_params(dataset_params(config, dataset), f"datasets.{dataset}")
        if problems:
            continue  # reported with the dataset
        train_key, test_key = kind.size_keys
        n_train, n_test, held = params[train_key], params[test_key], ""
        if train["select_on_val"]:
            n_train -= max(1, round(train["val_fraction"] * n_train))
            held = f" left after select_on_val holds out val_fraction {train['val_fraction']}"
        sizes = values if knob == "batch_size" else [train["batch_size"]]
        if too_big := [size for size in sizes if size > n_train]:
            errors.append(f"{where}: batch_size {too_big if knob == 'batch_size' else too_big[0]} is above the "
                          f"{n_train} training samples of {dataset}{held}; every step would take all {n_train}, so "
                          f"such cells train alike while train.json records the larger size; allowed: batch_size "
                          f"<= {n_train}; fix: lower batch_size or raise datasets.{dataset}.{train_key}")
        analysed = min(n_test, samples)
        if analysed < MIN_TEST_PER_CLASS * kind.num_classes:
            source = f"datasets.{dataset}.{test_key} = {n_test}" if n_test <= samples else \
                f"studies.{study}.analysis.represent_samples = {samples}"
            errors.append(f"{source}: the analyses of {where} would see {analysed} test samples of {dataset}, "
                          f"{analysed / kind.num_classes:g} per class; CSI and class separation need every class, "
                          f"at least {MIN_TEST_PER_CLASS} samples per class; allowed: "
                          f">= {MIN_TEST_PER_CLASS * kind.num_classes}; fix: raise it")
    return errors


def _analysis_errors(config: dict[str, Any], study: str) -> list[str]:
    where = f"studies.{study}.analysis"
    errors = check_section(config["studies"][study].get("analysis", {}), ANALYSIS_KEYS, where)[1]
    if errors:
        return errors
    try:
        settings = AnalysisSettings(analysis_settings(config, study))
    except SettingError:
        return []  # reported with the top-level analysis block
    if not settings.pq_p < settings.pq_q:
        errors.append(f"{where}: pq_p = {settings.pq_p} and pq_q = {settings.pq_q}: the PQ-index (Diao et al. 2023) "
                      "needs p < q; allowed: pq_p < pq_q (default 1 and 2; the paper's Fig 25 caption's p = 2, q = 1 "
                      "is this pair with the roles swapped)")
    if settings.background == "smp" and not settings.segmenter_checkpoint:
        errors.append(f"{where}.segmenter_checkpoint = '': background: smp needs the path of a segmentation-models-"
                      "pytorch DeepLabV3 checkpoint (largelr.analyses.segment.save_smp_checkpoint); allowed: a file path")
    return errors + _hilo_errors(config, study, settings, where)


def _hilo_errors(config: dict[str, Any], study: str, settings: AnalysisSettings, where: str) -> list[str]:
    """hilo_models must name models of the study; hilo_low / hilo_high must be knob values of every pair
    that gets maps."""
    if not settings.hilo:
        return []
    try:
        pairs = pair_blocks(config, study)
    except ConfigError:
        return []  # reported with the grid
    if settings.hilo_models is not None:
        pairs = {(dataset, model): block for (dataset, model), block in pairs.items() if model in settings.hilo_models}
        if not pairs:
            return [f"{where}.hilo_models = {settings.hilo_models}: no pair of the study has these models; allowed: "
                    f"models of the study ({sorted({model for _, model in pair_blocks(config, study)})}) or null"]
    errors = []
    for key in ("hilo_low", "hilo_high"):
        value = settings[key]
        for (dataset, model), block in pairs.items() if value is not None else ():
            values = block.get("values", config["studies"][study].get("values")) or []
            texts = [format_value(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if format_value(value) not in texts:
                errors.append(f"{where}.{key} = {value!r}: not a value of ({dataset}, {model}); allowed: one of "
                              f"{values} or null (the pair's {'smallest' if key == 'hilo_low' else 'largest'})")
    return errors


def _block_errors(config: dict[str, Any], study: str, block: dict[str, Any], where: str) -> list[str]:
    errors = check_section(block.get("train", {}), TRAIN_KEYS, f"{where}.train")[1]
    if "values" in block:
        errors += check_section({"values": block["values"]}, {"values": STUDY_KEYS["values"]}, where)[1]
    for dataset in block["datasets"]:
        if dataset_kind(config, dataset) not in KINDS:
            errors.append(f"{where}.datasets: {dataset!r} is not a dataset{suggestion(dataset, known_datasets(config))}; "
                          f"allowed: define it under `datasets:` or use one of {sorted(KINDS)}")
    for model in block["models"]:
        if model not in MODELS:
            errors.append(f"{where}.models: {model!r} is not a model{suggestion(model, MODELS)}; "
                          f"allowed: {sorted(MODELS)}")
    for model, params in block.get("model_params", {}).items():
        if model not in block["models"]:
            errors.append(f"{where}.model_params.{model}: not a model of this block; allowed: parameters for "
                          f"{block['models']}")
        elif model in MODELS:
            errors += check_section(params or {}, MODELS[model].PARAMS, f"{where}.model_params.{model}")[1]
    return errors


def known_datasets(config: dict[str, Any]) -> list[str]:
    return sorted({*KINDS, *(config.get("datasets") or {})})


def _knob_value_errors(knob: str, values: Any, where: str) -> list[str]:
    """Each value must be a legal value of the knob's setting, distinct in its path text."""
    if not isinstance(values, list):
        return []  # reported as not a list
    errors = []
    for position, value in enumerate(values):
        try:
            TRAIN_KEYS[knob].check(value)
        except SettingError as error:
            errors.append(f"{where}[{position}] = {value!r}: not a value of the knob {knob}; {error}")
    texts = [format_value(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(set(texts)) != len(texts):
        errors.append(f"{where} = {values}: two values have the same path text; allowed: distinct values")
    return errors


# --- landscapes: one-knob studies joined over a second setting (Fig. 9; largelr.landscape) -------


def landscapes(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every landscape of the config with its defaults filled in."""
    return {name: {"description": "", "axis": "lr", "spurious": "auto", **(entry or {})}
            for name, entry in (config.get("landscapes") or {}).items()}


def axis_value(config: dict[str, Any], study: str, dataset: str, model: str, axis: str) -> float:
    """The study's value of the landscape axis on one pair (its explicit setting, else the default)."""
    return float(train_settings(config, study, dataset, model).get(axis, TRAIN_DEFAULTS[axis]))


def landscape_pairs(config: dict[str, Any], name: str) -> list[tuple[str, str]]:
    """(dataset, model) pairs that every study of the landscape has."""
    studies = landscapes(config)[name]["studies"]
    common = list(pair_blocks(config, studies[0]))
    return [pair for pair in common if all(pair in pair_blocks(config, study) for study in studies[1:])]


def landscape_rows(config: dict[str, Any], name: str, dataset: str, model: str) -> dict[str, float]:
    """study -> its axis value on the pair, for every study of the landscape."""
    entry = landscapes(config)[name]
    return {study: axis_value(config, study, dataset, model, entry["axis"]) for study in entry["studies"]}


def landscape_errors(config: dict[str, Any]) -> list[str]:
    """Every problem of the ``landscapes`` section, each with its key path, value and what is allowed."""
    errors: list[str] = []
    studies = config.get("studies") or {}
    for name, entry in (config.get("landscapes") or {}).items():
        where = f"landscapes.{name}"
        checked, found = check_section(entry or {}, LANDSCAPE_KEYS, where)
        errors += found
        if "studies" not in checked:
            errors += [] if found else [f"{where}.studies: missing; allowed: a list of at least two studies"]
            continue
        unknown = [s for s in checked["studies"] if s not in studies]
        errors += [f"{where}.studies: {s!r} is not a study; allowed: {sorted(studies)}" for s in unknown]
        axis = checked.get("axis", "lr")
        if axis not in TRAIN_KEYS:
            errors.append(f"{where}.axis = {axis!r}: not a training setting; allowed: {sorted(TRAIN_KEYS)}")
        if unknown or found or axis not in TRAIN_KEYS:
            continue
        errors += _shape_errors(config, name, checked["studies"], axis, where)
    return errors


def _shape_errors(config: dict[str, Any], name: str, members: list[str], axis: str, where: str) -> list[str]:
    """One knob for every study, other than the axis; a common pair; distinct axis values per pair."""
    knobs = {config["studies"][s]["knob"] for s in members}
    if len(knobs) != 1:
        return [f"{where}.studies: the studies sweep different knobs {sorted(knobs)}; allowed: one knob for all"]
    if axis in knobs:
        return [f"{where}.axis = {axis!r} is the studies' knob; allowed: a training setting the studies fix"]
    try:
        pairs = landscape_pairs(config, name)
    except ValueError as error:  # a study's own grid problem, reported with the study
        return [f"{where}: {error}"]
    if not pairs:
        return [f"{where}.studies: no (dataset, model) pair is common to all of {members}"]
    errors = []
    for dataset, model in pairs:
        rows = landscape_rows(config, name, dataset, model)
        if len(set(rows.values())) != len(rows):
            errors.append(f"{where}: studies {members} give ({dataset}, {model}) the {axis} values "
                          f"{list(rows.values())}; allowed: a different {axis} per study")
    return errors
