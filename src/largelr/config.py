"""Study grids: validate config.yaml and expand studies into cells.

A study sweeps one knob (a training setting such as ``lr``) over values, for every
(dataset, model) pair of its grid and every seed. A cell is one such combination and
the unit of work. The Snakefile calls these functions at parse time, so a bad config
fails before anything is scheduled, naming the key, the value and what is allowed.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
from typing import Any

from largelr.data import DATASET_DEFAULTS, DATASETS
from largelr.models import MODELS

TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",  # sgd | adam | adamw (Adam betas 0.9, 0.999) | psgd_kron (heavyball.PSGDKron)
    "lr": 0.1,
    "momentum": 0.0,  # sgd only
    "weight_decay": 0.0,  # L2 for sgd/adam (gradient += wd * w); decoupled for adamw
    "l1": 0.0,  # loss += l1 * sum |w| over all parameters
    "loss": "ce",  # ce | focal
    "focal_gamma": 0.0,
    "asam_rho": 0.0,  # adaptive SAM (Kwon et al. 2021) neighbourhood radius; 0 = off
    "asam_eta": 0.01,  # ASAM's T_w = |w| + asam_eta (elementwise)
    # constant | step (x lr_step_factor from lr_step_at on) | cosine (to 0 at max_steps)
    # | wsd (linear warmup over warmup_steps, constant, linear decay to 0 over the last
    #   wsd_decay_fraction of max_steps)
    "lr_schedule": "constant",
    "lr_step_at": 1000,
    "lr_step_factor": 0.1,
    "warmup_steps": 0,
    "wsd_decay_fraction": 0.2,
    "batch_size": 100,
    "max_steps": 3000,
    "eval_every": 100,  # steps between full-training-set evaluations (stopping, divergence, val)
    "target_train_acc": 1.0,
    "stop_train_ce": 0.0,  # >0: stop once the full-training-set CE is below it (replaces target_train_acc)
    "select_on_val": False,  # return the weights of the evaluation with the best val accuracy
    "val_fraction": 0.1,  # held out of train (seeded) for select_on_val when the dataset has no "val" split
    "collapse_patience": 3,  # evaluations at chance accuracy, after having learned, that count as divergence
    "history_every": 1,  # record the per-step statistics every k steps
    "attribution_every": 0,  # steps between IG spurious-share records on 64 train samples; 0 = off
    "amp": "auto",  # auto (bf16 autocast on CUDA for resnet*/wrn*/swin*) | bf16 | off
    "channels_last": True,  # conv models on CUDA only
    "compile": False,  # torch.compile the model
    "num_workers": 4,  # DataLoader workers for lazy (image-file) datasets
}
CHOICES = {
    "optimizer": ("sgd", "adam", "adamw", "psgd_kron"),
    "loss": ("ce", "focal"),
    "lr_schedule": ("constant", "step", "cosine", "wsd"),
    "amp": ("auto", "bf16", "off"),
    "select_on_val": (False, True),
    "channels_last": (False, True),
    "compile": (False, True),
}
KNOBS = ("lr", "batch_size", "momentum", "weight_decay", "l1", "focal_gamma", "asam_rho")

ANALYSIS_DEFAULTS: dict[str, Any] = {
    "kappas": [round(0.1 * i, 1) for i in range(10)],
    # structured = input columns of every Linear, (out, in) kernels of every Conv2d (FCN, CNN,
    # ResNets, Swin alike); the others are extra curves. Worst-group metric on celeba/waterbirds.
    "prune_methods": ["structured", "column", "magnitude", "magnitude_global"],
    # the structured curve uses the whole test set; the other methods' curves a fixed seeded
    # subset of this many test inputs (0 = all), which keeps analyses < 10% of training
    "prune_extra_samples": 2000,
    "represent_samples": 1000,
    "compress_q": 2.0,
    "compress_kappa": 0.1,
    "csi_eps": 1e-7,
    "attribute_samples": 200,
    "ig_steps": 20,
    "ig_method": "gausslegendre",
    # zero (all-black input) | mean (mean of the attributed inputs); black pixels get exactly zero
    # IG attribution from a zero baseline, so the oracle background share needs "mean"
    "ig_baseline": "zero",
    "ig_internal_batch_size": 1000,
    "ig_target": "true",  # true (the label) | predicted (the model's class)
    "deeplift": False,  # also DeepLift core/spurious shares, as a check on IG
    "eval_batch_size": 1000,  # inputs per forward pass in pruning curves and hi/lo predictions
    # Background mask for background_share: auto (= oracle where the construction knows its
    # background and ig_baseline is not zero, else none) | none | oracle |
    # deeplabv3_mobilenet_v3_large | deeplabv3_resnet50 (torchvision COCO/VOC weights, read
    # from the torch hub cache only) | smp (a trained smp DeepLabV3 at segmenter_checkpoint)
    "background": "auto",
    "segmenter_checkpoint": "",  # file from largelr.segment.save_smp_checkpoint, for background: smp
    "segmenter_input_size": 512,  # square side the images are resized to for the segmenter
    # Hi/lo maps: samples right in > hilo_high_threshold of high-lr models and < hilo_low_threshold
    # of low-lr models; hilo_low/hilo_high default to the pair's smallest/largest value.
    "hilo": False,
    "hilo_low": None,
    "hilo_high": None,
    "hilo_high_threshold": 0.75,
    "hilo_low_threshold": 0.25,
    "hilo_max_samples": 16,
}

ANALYSIS_CHOICES = {
    "background": ("auto", "none", "oracle", "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "smp"),
    "ig_baseline": ("zero", "mean"),
    "ig_target": ("true", "predicted"),
    "ig_method": ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"),
    "deeplift": (False, True),
    "hilo": (False, True),
}


class ConfigError(ValueError):
    """A config value that cannot be used; the message says which key and what to do."""


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
        return f"{self.study}/{self.dataset}/{self.model}/{self.knob}={self.value}/seed={self.seed}"


def format_value(value: float) -> str:
    """Canonical text of a knob value, used in paths: 0.01 -> '0.01', 100 -> '100'."""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config.yaml: {key} = {value!r} is not allowed; {allowed}. Fix it in config.yaml (or --config).")


def _check_keys(section: dict[str, Any], allowed: dict[str, Any] | tuple[str, ...], where: str) -> None:
    for key in section:
        if key not in allowed:
            _fail(f"{where}.{key}", section[key], f"allowed keys: {sorted(allowed)}")


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
                _fail(f"studies.{study}.grid", list(pair), "each (dataset, model) pair may appear in one block only")
            pairs[pair] = block
    return pairs


def train_settings(config: dict[str, Any], study: str, dataset: str, model: str) -> dict[str, Any]:
    block = pair_blocks(config, study)[(dataset, model)]
    return {**TRAIN_DEFAULTS, **config["studies"][study].get("train", {}), **block.get("train", {})}


def analysis_settings(config: dict[str, Any], study: str) -> dict[str, Any]:
    return {**ANALYSIS_DEFAULTS, **config.get("analysis", {}), **config["studies"][study].get("analysis", {})}


def model_params(config: dict[str, Any], study: str, dataset: str, model: str) -> dict[str, Any]:
    return dict(pair_blocks(config, study)[(dataset, model)].get("model_params", {}).get(model, {}))


def model_param_names(model: str) -> tuple[str, ...]:
    signature = inspect.signature(MODELS[model].__init__)
    return tuple(name for name in signature.parameters if name not in ("self", "input_shape", "num_classes"))


def validate_config(config: dict[str, Any]) -> None:
    """Semantic checks the JSON schema cannot express; raises ConfigError."""
    for study in config.get("default_studies", []):
        if study not in config["studies"]:
            _fail("default_studies", study, f"allowed: studies defined in config.yaml, {sorted(config['studies'])}")
    for name, entry in config.get("datasets", {}).items():
        kind = entry.get("kind", name)
        if kind not in DATASETS:
            _fail(f"datasets.{name}.kind", kind, f"allowed: {sorted(DATASETS)}")
        _check_keys(dataset_params(config, name), DATASET_DEFAULTS.get(kind, {}), f"datasets.{name}")
    for study, spec in config["studies"].items():
        where = f"studies.{study}"
        knob = spec["knob"]
        if knob not in KNOBS:
            _fail(f"{where}.knob", knob, f"allowed: {list(KNOBS)}")
        _check_keys(spec.get("train", {}), TRAIN_DEFAULTS, f"{where}.train")
        _check_keys(spec.get("analysis", {}), ANALYSIS_DEFAULTS, f"{where}.analysis")
        analysis = analysis_settings(config, study)
        for key, allowed in ANALYSIS_CHOICES.items():
            if analysis[key] not in allowed:
                _fail(f"{where}.analysis.{key}", analysis[key], f"allowed: {list(allowed)}")
        if analysis["background"] == "smp" and not analysis["segmenter_checkpoint"]:
            _fail(f"{where}.analysis.segmenter_checkpoint", "", "background: smp needs the path of a "
                  "segmentation-models-pytorch DeepLabV3 checkpoint (largelr.segment.save_smp_checkpoint)")
        for dataset, model in pair_blocks(config, study):
            settings = train_settings(config, study, dataset, model)
            for key, allowed in CHOICES.items():
                if settings[key] not in allowed:
                    _fail(f"{where}.train.{key}", settings[key], f"allowed: {list(allowed)}")
        for block in [spec, *spec["grid"]]:
            texts = [format_value(v) for v in block.get("values", [])]
            if len(set(texts)) != len(texts):
                _fail(f"{where}.values", block["values"], "values must be distinct")
            _check_keys(block.get("train", {}), TRAIN_DEFAULTS, f"{where}.grid.train")
        if "values" not in spec and not all("values" in block for block in spec["grid"]):
            _fail(f"{where}.values", None, "give `values` for the study or for every grid block")
        pair_blocks(config, study)
        if len(set(spec["seeds"])) != len(spec["seeds"]):
            _fail(f"{where}.seeds", spec["seeds"], "seeds must be distinct")
        for block in spec["grid"]:
            for dataset in block["datasets"]:
                if dataset_kind(config, dataset) not in DATASETS:
                    _fail(f"{where}.grid.datasets", dataset, f"define it under `datasets:` or use one of {sorted(DATASETS)}")
            for model in block["models"]:
                if model not in MODELS:
                    _fail(f"{where}.grid.models", model, f"allowed: {sorted(MODELS)}")
            for model, params in block.get("model_params", {}).items():
                if model not in block["models"]:
                    _fail(f"{where}.grid.model_params", model, f"allowed: parameters for a model of this block, {block['models']}")
                if model in MODELS:
                    _check_keys(params, model_param_names(model), f"{where}.grid.model_params.{model}")


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
    """Everything the train step needs for one cell, with the knob's value applied."""
    train = train_settings(config, study, dataset, model)
    default = TRAIN_DEFAULTS[knob]
    train[knob] = type(default)(float(value)) if isinstance(default, (int, float)) else value
    return {
        "study": study, "dataset": dataset, "model": model, "knob": knob,
        "value": float(value), "seed": int(seed),
        "train": train, "model_params": model_params(config, study, dataset, model),
    }
