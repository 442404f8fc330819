"""One record per analysis: its settings, its table's columns and where its code lives.

Torch-free, so that config validation and the rules' outputs read the records without importing
the implementations. A cell analysis (``ANALYSES``: one table per cell, ``{name}.parquet``) is run
by ``largelr analyze`` through its module (``implementation``, imported on use), which declares
``run()`` and reads its ``COLUMNS`` from the record. The study steps (``STUDY_STEPS``: the
aggregation, the hi/lo maps, the maps over training) have settings but no cell table.
Adding an analysis: a module with ``run()`` and one record in ``ANALYSES``; adding a metric:
compute it in ``run()`` and list its column in the record.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from largelr.checks import Gathered, Setting
from largelr.registry.models import MODELS


@dataclass(frozen=True)
class AnalysisRecord:
    name: str
    doc: str
    implementation: str  # the module with run() (cell analyses) or the code that reads the settings
    settings: dict[str, Setting] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)  # the cell table's columns and dtypes

    def load(self) -> ModuleType:
        """The implementation module (imports torch)."""
        return importlib.import_module(self.implementation)

    def default(self, key: str) -> Any:
        return self.settings[key].default


def fraction(default: float, doc: str) -> Setting:
    return Setting(default, doc, minimum=0.0, maximum=1.0)


# --- prune -------------------------------------------------------------------------------

# "structured": neurons and kernels (the paper's); the others act on the prunable weights alone.
PRUNE_METHODS = ("structured", "structured_columns", "column", "magnitude", "magnitude_global")
# The two readings of prunability (the mean over kappa of a retention column) and their retention column.
PRUNE_READINGS = {"ratio": "retention", "chance": "retention_chance"}

PRUNE = AnalysisRecord(
    "prune",
    "accuracy under structured and unstructured pruning, per pruned fraction kappa",
    "largelr.analyses.prune",
    settings={
        "kappas": Setting(
            [round(0.1 * i, 1) for i in range(10)],
            "pruned fractions of each curve",
            type=list,
            items=fraction(0.0, "a pruned fraction"),
            min_items=1,
        ),
        "prune_methods": Setting(
            list(PRUNE_METHODS),
            "pruning curves to compute; structured (neurons and kernels) is the paper's "
            "prunability, structured_columns the input columns of every linear layer",
            type=list,
            items=Setting("structured", type=str, choices=PRUNE_METHODS),
            min_items=1,
        ),
        "prunability": Setting(
            "chance",
            "Table 1's prunability: chance (mean over kappa of (Acc_k - c)/(Acc - c), c = "
            "1/K, or 0 for worst-group accuracy; the reading the paper's printed values fit) | ratio "
            "(mean of Acc_k/Acc, the text's formula); cells.parquet holds both",
            type=str,
            choices=tuple(PRUNE_READINGS),
        ),
        "prune_extra_samples": Setting(2000, "test inputs of the non-structured curves (0 = all)", type=int, minimum=0),
        "eval_batch_size": Setting(
            1000,
            "inputs per forward pass in pruning curves, the representation "
            "statistics (represent_bn: eval), hi/lo predictions and the maps over training",
            type=int,
            minimum=1,
        ),
    },
    columns={
        "method": "object",
        "kappa": "float64",
        "accuracy": "float64",
        "worst_group_acc": "float64",
        "retention": "float64",
        "retention_chance": "float64",
        "chance": "float64",
        "pruned_fraction": "float64",
        "metric": "object",
        "test_inputs": "int64",
    },
)

# --- represent ---------------------------------------------------------------------------

# ``csi_neurons``: average the selectivity over the neurons active (> 0) on at least one sampled input (the
# authors' code), or over all neurons (dead ones counting 0).
REPRESENT_NEURON_CHOICES = ("active", "all")
# ``represent_layer``: the classifier head's input (the authors' hook), or the model's last post-activation values.
REPRESENT_LAYER_CHOICES = ("head_input", "last_activation")
# ``represent_bn``: BatchNorm with its running statistics, or with batch statistics (the authors' train mode).
REPRESENT_BN_CHOICES = ("eval", "batch")
# ``represent_sample_seed``: the test inputs drawn with the cell's seed (the authors), or one set for every cell.
REPRESENT_SAMPLE_SEED_CHOICES = ("cell", "fixed")

REPRESENT = AnalysisRecord(
    "represent",
    "statistics of the penultimate representation: compressibility, CSI, BSI, class separation",
    "largelr.analyses.represent",
    settings={
        "represent_samples": Setting(1000, "seeded test inputs of the representation statistics", type=int, minimum=1),
        "compress_q": Setting(2.0, "q of the (q, kappa)-compressibility", above=0.0),
        "compress_kappa": Setting(0.1, "kappa of the (q, kappa)-compressibility", above=0.0, maximum=1.0),
        # Diao et al.'s PQ-index 1 - d^(1/q - 1/p) ||z||_p / ||z||_q is a sparsity measure only for p < q; the
        # paper's Fig 25 caption prints p = 2, q = 1, read here as the pair (1, 2) with the roles swapped
        "pq_p": Setting(1.0, "p of the PQ-index (needs 0 < p < q)", above=0.0),
        "pq_q": Setting(2.0, "q of the PQ-index", above=0.0),
        "csi_eps": Setting(1e-7, "epsilon in the class-selectivity denominator", minimum=0.0),
        "csi_neurons": Setting(
            "active",
            "CSI/BSI average over the neurons active (> 0) on at least one sampled input "
            "(the authors' code) | all (dead neurons count 0); both go to represent.parquet",
            type=str,
            choices=REPRESENT_NEURON_CHOICES,
        ),
        "represent_layer": Setting(
            "head_input",
            "the representation: head_input (what the classifier head reads, as "
            "the authors hook it) | last_activation (the last post-activation values; Swin-T: "
            "its last MLP GELU)",
            type=str,
            choices=REPRESENT_LAYER_CHOICES,
        ),
        "represent_abs": Setting(
            True, "take |z| before CSI, class separation and compressibility (the authors' code)", type=bool
        ),
        "represent_bn": Setting(
            "eval",
            "BatchNorm during the representation analysis: eval (running statistics) | "
            "batch (statistics of batches of represent_bn_batch test inputs, the authors' train "
            "mode; running statistics restored)",
            type=str,
            choices=REPRESENT_BN_CHOICES,
        ),
        "represent_bn_batch": Setting(100, "inputs per batch with represent_bn: batch", type=int, minimum=2),
        "represent_sample_seed": Setting(
            "cell",
            "the represent_samples inputs: drawn with the cell's seed (the "
            "authors) | fixed (seed 0, one set for every cell)",
            type=str,
            choices=REPRESENT_SAMPLE_SEED_CHOICES,
        ),
    },
    # csi / bsi are the reading ``csi_neurons`` chooses; both readings and the active fraction sit beside them.
    columns={
        name: "float64"
        for name in (
            "compressibility",
            "sparsity",
            "pq_index",
            "csi",
            "bsi",
            "class_sep",
            "bias_sep",
            "csi_active",
            "csi_all",
            "bsi_active",
            "bsi_all",
            "active_fraction",
        )
    },
)

# --- attribute ---------------------------------------------------------------------------

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
TORCHVISION_SEGMENTERS = ("deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50")
SEGMENTERS = (*TORCHVISION_SEGMENTERS, "smp")
# ``background``; "auto": see largelr.analyses.attribute.resolve_background.
BACKGROUND_CHOICES = ("auto", "none", "oracle", *SEGMENTERS)
# ``auto_segmenter``: the segmenter "auto" uses where its weights are here; "none": never one.
AUTO_SEGMENTER_CHOICES = ("none", *SEGMENTERS)
# ``ig_baseline``: the all-zero input, or the mean of the attributed inputs (one image for all).
BASELINE_CHOICES = ("zero", "mean")
# ``attribution_share``: the share of the visualisation-normalised map (the authors' code) or of raw |attribution|.
SHARE_CHOICES = ("normalized", "raw")
# The regions a dataset may mask (its ``{region}_mask``): one ``{region}_share`` column each.
REGIONS = ("spurious", "core", "noise")

ATTRIBUTE = AnalysisRecord(
    "attribute",
    "Integrated Gradients shares of the spurious, core, noise and background regions",
    "largelr.analyses.attribute",
    settings={
        "attribute_samples": Setting(200, "seeded test inputs of the attribution measures", type=int, minimum=1),
        "ig_steps": Setting(20, "Integrated Gradients steps", type=int, minimum=1),
        "ig_method": Setting("gausslegendre", "IG quadrature (captum)", type=str, choices=IG_METHODS),
        "ig_baseline": Setting(
            "zero", "zero (all-black input) | mean (mean of the attributed inputs)", type=str, choices=BASELINE_CHOICES
        ),
        "ig_internal_batch_size": Setting(1000, "IG inputs per forward pass", type=int, minimum=1),
        "ig_target": Setting(
            "true", "true (the label) | predicted (the model's class)", type=str, choices=("true", "predicted")
        ),
        "attribution_share": Setting(
            "normalized",
            "region shares of the attribution map: normalized (summed over "
            "channels, |.|, divided by the value holding 98% of the cumulative mass, clipped "
            "to 1: the authors' code) | raw (|attribution| per input element); both are "
            "recorded",
            type=str,
            choices=SHARE_CHOICES,
        ),
        "deeplift": Setting(
            False, "also DeepLift spurious/core/noise shares (from the IG baseline), as a check on IG", type=bool
        ),
        "background": Setting(
            "auto",
            "background mask of background_share: auto (oracle where the dataset has one "
            "and ig_baseline is not zero, else auto_segmenter on images when its weights are here, "
            "else none) | none | oracle | a DeepLabV3 segmenter",
            type=str,
            choices=BACKGROUND_CHOICES,
        ),
        # deeplabv3_mobilenet_v3_large: ~17x cheaper than deeplabv3_resnet50
        "auto_segmenter": Setting(
            "deeplabv3_mobilenet_v3_large",
            "the segmenter background: auto uses where its weights file is here (none: never one)",
            type=str,
            choices=AUTO_SEGMENTER_CHOICES,
        ),
        "segmenter_checkpoint": Setting(
            "", "file from largelr.analyses.segment.save_smp_checkpoint (background: smp)", type=str
        ),
        # near torchvision's 520 and divisible by 32 as smp encoders need
        "segmenter_input_size": Setting(
            512, "square side the images are resized to for the segmenter", type=int, minimum=8
        ),
    },
    # Every column is always present (NaN where a region has no mask, without deeplift, without a background).
    # ``{region}_share`` is the reading ``attribution_share`` chooses; both readings sit beside it.
    columns={
        name: "float64"
        for name in (
            "attribution_entropy",
            "ig_max_abs_delta",
            *(f"{region}_share" for region in REGIONS),
            "background_share",
            "background_iou",
            *(f"deeplift_{region}_share" for region in REGIONS),
            *(f"{region}_share_{reading}" for region in REGIONS for reading in ("raw", "normalized")),
        )
    },
)

# --- study steps: settings without a cell table ------------------------------------------

USABLE_RANGE_READINGS = ("relative", "points")
BC_RATIO_READINGS = ("minibatch", "fixed")

AGGREGATE = AnalysisRecord(
    "aggregate",
    "which cells enter tables and figures",
    "largelr.aggregate",
    settings={
        "require_converged": Setting(
            True,
            "leave cells that stopped at the step cap short of their fit criterion "
            "out of tables and figures (the paper trains until 100% training accuracy)",
            type=bool,
        ),
        "bc_ratio": Setting(
            "minibatch",
            "max BC loss ratio of the mechanism table and figure: minibatch (largest "
            "per-step minibatch ratio, the paper's text) | fixed (largest over evaluations on "
            "bc_ratio_samples fixed training inputs, the authors' code); cells.parquet has both",
            type=str,
            choices=BC_RATIO_READINGS,
        ),
        "min_epochs": Setting(
            3.0,
            "a study that requires converged cells must give every cell a step cap of at "
            "least this many epochs of its training set (max_steps x batch_size / training "
            "samples), checked at parse time (a lower bound that catches caps certainly too short)",
            minimum=0.0,
        ),
        # "we utilize LRs up to the point of divergence or drastic performance loss (>25% in test accuracy)
        # among any one of the seeds"
        "usable_range_drop": Setting(
            0.25,
            "an lr sweep's usable range ends where one seed loses more than this "
            "fraction of the best seed-mean test accuracy (the paper's >25%)",
            above=0.0,
            below=1.0,
        ),
        "usable_range_reading": Setting(
            "relative",
            "how usable_range_drop reads the paper's '>25% in test "
            "accuracy': relative (below (1 - drop) x the best seed-mean accuracy) | points "
            "(below the best seed-mean minus drop, in accuracy points)",
            type=str,
            choices=USABLE_RANGE_READINGS,
        ),
        # "a few points" above chance (1 / classes)
        "chance_margin": Setting(
            0.05,
            "cells whose test accuracy is within this of chance (1 / classes) are flagged near_chance",
            minimum=0.0,
            maximum=1.0,
        ),
    },
)

HILO = AnalysisRecord(
    "hilo",
    "hi/lo learning-rate attribution maps of every (dataset, model) pair",
    "largelr.analyses.hilo",
    settings={
        "hilo": Setting(False, "build the hi/lo learning-rate attribution maps of every pair", type=bool),
        "hilo_models": Setting(
            None,
            "the models whose pairs get hi/lo maps (null: every model of the study)",
            type=list,
            # a live view of the records: a model registered later is allowed too
            items=Setting("", type=str, choices=MODELS.keys()),
            nullable=True,
            min_items=1,
        ),
        "hilo_low": Setting(None, "the low value (default: the pair's smallest)", above=0.0, nullable=True),
        "hilo_high": Setting(None, "the high value (default: the pair's largest)", above=0.0, nullable=True),
        "hilo_high_threshold": fraction(0.75, "samples right in more than this fraction of high-value models"),
        "hilo_low_threshold": fraction(0.25, "and in fewer than this fraction of low-value models"),
        "hilo_max_samples": Setting(16, "most samples kept", type=int, minimum=1),
    },
)

# Figs 13 (maps over training) and 28 (one neuron over training): the first seed at hilo_low and
# hilo_high replayed and observed, for the pairs of hilo_models.
TRAINING_MAPS = AnalysisRecord(
    "training_maps",
    "IG maps and per-neuron CSI/BSI over training, replayed",
    "largelr.over_training",
    settings={
        "training_maps": Setting(
            False,
            "replay the low and high cells' first seed and save IG maps and per-neuron "
            "CSI/BSI at training_map_steps and at the end",
            type=bool,
        ),
        "training_map_steps": Setting(
            [0, 100, 300, 1000, 3000],
            "steps observed besides the last (those past the run's end are dropped)",
            type=list,
            items=Setting(0, type=int, minimum=0),
            min_items=1,
        ),
        "training_map_samples": Setting(4, "seeded test samples whose IG maps are saved", type=int, minimum=1),
    },
)

# Cell analyses, in the order `largelr analyze` runs them; each writes {name}.parquet into the cell.
ANALYSES: dict[str, AnalysisRecord] = {record.name: record for record in (PRUNE, REPRESENT, ATTRIBUTE)}
STUDY_STEPS: dict[str, AnalysisRecord] = {record.name: record for record in (AGGREGATE, HILO, TRAINING_MAPS)}


def analysis_keys() -> dict[str, Setting]:
    """Every record's settings in one table (a key belongs to one record only)."""
    keys: dict[str, Setting] = {}
    for record in (*ANALYSES.values(), *STUDY_STEPS.values()):
        clash = set(keys) & set(record.settings)
        if clash:
            raise ValueError(f"analysis settings {sorted(clash)} of {record.name!r} are declared by another record")
        keys.update(record.settings)
    return keys


# Every analysis setting config.yaml may give (top-level `analysis:` and a study's), from the records.
ANALYSIS_KEYS: Mapping[str, Setting] = Gathered(analysis_keys)
