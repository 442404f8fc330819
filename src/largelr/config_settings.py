"""Training settings, the top-level and study keys, and the analysis settings gathered from their records.

Each key config.yaml may hold is a :class:`~largelr.checks.Setting`: its type, range, choices
and default, declared once; the JSON schema's key lists (largelr.config_files.config_schema)
and the checks of validate_config are derived from these tables.
"""

from __future__ import annotations

from typing import Any

from largelr.checks import Setting, Settings, defaults
from largelr.registry.analyses import ANALYSIS_KEYS, IG_METHODS  # noqa: F401  (re-exported)

# --- training ----------------------------------------------------------------------------

TRAIN_KEYS: dict[str, Setting] = {
    "optimizer": Setting(
        "sgd",
        "sgd | adam | adamw (betas 0.9, 0.999) | psgd_kron (heavyball.PSGDKron)",
        type=str,
        choices=("sgd", "adam", "adamw", "psgd_kron"),
    ),
    "lr": Setting(0.1, "learning rate (the base rate of the schedule)", above=0.0),
    "momentum": Setting(0.0, "SGD momentum (sgd only)", minimum=0.0, below=1.0),
    "weight_decay": Setting(0.0, "L2: gradient += wd * w for sgd/adam; decoupled for adamw", minimum=0.0),
    "l1": Setting(0.0, "loss += l1 * sum |w| over all parameters", minimum=0.0),
    "loss": Setting("ce", "ce | focal", type=str, choices=("ce", "focal")),
    "focal_gamma": Setting(0.0, "focal loss exponent (0 = cross-entropy)", minimum=0.0),
    "asam_rho": Setting(0.0, "adaptive SAM neighbourhood radius (Kwon et al. 2021); 0 = off", minimum=0.0),
    "asam_eta": Setting(0.01, "ASAM's T_w = |w| + asam_eta (elementwise)", minimum=0.0),
    "lr_schedule": Setting(
        "constant",
        "constant | step (x lr_step_factor from lr_step_at on) | cosine (to 0 at "
        "max_steps) | wsd (warmup, stable, linear decay)",
        type=str,
        choices=("constant", "step", "cosine", "wsd"),
    ),
    "lr_step_at": Setting(1000, "step schedule: the step from which the rate is multiplied", type=int, minimum=0),
    "lr_step_factor": Setting(0.1, "step schedule: the multiplier", minimum=0.0),
    "warmup_steps": Setting(0, "wsd: linear warmup steps", type=int, minimum=0),
    "wsd_decay_fraction": Setting(
        0.2, "wsd: fraction of max_steps decayed linearly to 0 at the end", minimum=0.0, maximum=1.0
    ),
    "batch_size": Setting(100, "samples per step", type=int, minimum=1),
    "max_steps": Setting(3000, "step cap", type=int, minimum=1),
    "eval_every": Setting(
        100, "steps between full-training-set evaluations (stopping, divergence, val)", type=int, minimum=1
    ),
    "target_train_acc": Setting(
        1.0, "stop once the full training set is fit to this accuracy (> 1: never)", minimum=0.0
    ),
    "stop_train_ce": Setting(
        0.0, "> 0: stop once the full-training-set CE is below it (replaces target_train_acc)", minimum=0.0
    ),
    "select_on_val": Setting(False, "return the weights of the evaluation with the best val accuracy", type=bool),
    "val_fraction": Setting(
        0.1, "held out of train (seeded) for select_on_val when the dataset has no val split", above=0.0, below=1.0
    ),
    "collapse_patience": Setting(
        3,
        "evaluations at chance accuracy, after having learned, that count as divergence; 0 = off",
        type=int,
        minimum=0,
    ),
    "eval_test": Setting(False, "also measure test accuracy at every evaluation (history column test_acc)", type=bool),
    "history_every": Setting(1, "record the per-step statistics every k steps", type=int, minimum=1),
    "bc_ratio_samples": Setting(
        1000,
        "fixed seeded training inputs on which the BC loss ratio is also measured at "
        "every evaluation (the authors' code; history bc_loss_ratio_fixed); 0 = off",
        type=int,
        minimum=0,
    ),
    "attribution_every": Setting(
        0, "steps between IG spurious-share records on 64 train samples; 0 = off", type=int, minimum=0
    ),
    "amp": Setting(
        "off",
        "off (fp32, the default for every model) | bf16 (autocast in the training steps, a "
        "deviation: reported accuracies and analyses stay fp32) | auto (bf16 on CUDA for the models whose "
        "record has autocast: the ResNets, WRN, Swin-T)",
        type=str,
        choices=("auto", "bf16", "off"),
    ),
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
NEEDS = {
    "momentum": ("optimizer", "sgd"),
    "focal_gamma": ("loss", "focal"),
    "lr_step_at": ("lr_schedule", "step"),
    "lr_step_factor": ("lr_schedule", "step"),
    "warmup_steps": ("lr_schedule", "wsd"),
    "wsd_decay_fraction": ("lr_schedule", "wsd"),
    "val_fraction": ("select_on_val", True),
    "asam_eta": ("asam_rho", POSITIVE),
    "target_train_acc": ("stop_train_ce", 0.0),
}

# --- the rest of config.yaml: top-level keys, a study's own keys, a dataset's seed ---------------

TOP_KEYS: dict[str, Setting] = {
    "data_root": Setting("data", "directory with the raw datasets", type=str),
    "device": Setting("auto", "auto | cpu | cuda | cuda:N", type=str, pattern=r"auto|cpu|cuda(:[0-9]+)?"),
    "default_studies": Setting(
        ["demo"], "studies the default target builds", type=list, items=Setting("", "a study", type=str)
    ),
    "check_data": Setting(
        True,
        "list studies whose raw data is missing at parse time and leave them out of the "
        "paper tables (false: a submit host without the data)",
        type=bool,
        from_text=True,
    ),
    "gpu_slots_per_device": Setting(
        1, "concurrent GPU jobs per visible GPU (largelr gpu-slot; several small cells per GPU)", type=int, minimum=1
    ),
}
SEED_LIMIT = 2**64 - 1  # the largest seed torch.manual_seed and torch.Generator.manual_seed take
STUDY_KEYS: dict[str, Setting] = {
    "description": Setting("", "what the study is", type=str),
    "paper": Setting(
        None,
        "the paper output the study feeds: table1 (Table 1 grids), table2 (interventions), variant",
        type=str,
        choices=("table1", "table2", "variant"),
        nullable=True,
    ),
    "knob": Setting("lr", "the swept training setting", type=str, choices=KNOBS),
    "seeds": Setting(
        [0],
        "seeds of every cell",
        type=list,
        items=Setting(0, "a seed", type=int, minimum=0, maximum=SEED_LIMIT),
        min_items=1,
    ),
    "values": Setting(None, "the knob's values (each checked against the knob's setting)", type=list, min_items=1),
}
DATASET_SEED = Setting(
    0, "the seed of the dataset's random draw (shared by every cell)", type=int, minimum=0, maximum=SEED_LIMIT
)


class TrainSettings(Settings):
    """A cell's training settings, typed and checked (see ``TRAIN_KEYS``)."""

    KEYS = TRAIN_KEYS


class AnalysisSettings(Settings):
    """A study's analysis settings, typed and checked (see ``ANALYSIS_KEYS``, gathered from the records
    of largelr.registry.analyses)."""

    KEYS = ANALYSIS_KEYS


# Backwards-readable views of the defaults.
TRAIN_DEFAULTS: dict[str, Any] = defaults(TRAIN_KEYS)
ANALYSIS_DEFAULTS: dict[str, Any] = defaults(ANALYSIS_KEYS)
