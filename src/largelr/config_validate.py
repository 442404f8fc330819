"""validate_config: every name and value of the config, all problems at once, each with its key path."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from largelr.checks import SettingError, check_section, suggestion
from largelr.config_cells import (
    RULE_NAMES,
    RULE_PREFIXES,
    ConfigError,
    analysis_settings,
    dataset_kind,
    dataset_params,
    format_value,
    pair_blocks,
)
from largelr.config_files import schema_errors
from largelr.config_landscapes import landscape_errors
from largelr.config_settings import (
    ANALYSIS_KEYS,
    DATASET_SEED,
    NEEDS,
    POSITIVE,
    STUDY_KEYS,
    TOP_KEYS,
    TRAIN_DEFAULTS,
    TRAIN_KEYS,
    AnalysisSettings,
)
from largelr.registry.kinds import KINDS
from largelr.registry.models import MODELS


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
        raise ConfigError(
            f"config: {len(errors)} problem{'s' if len(errors) > 1 else ''} "
            f"(fix them in config.yaml, the --configfile files or --config):\n{listed}"
        )


def _top_level_errors(config: dict[str, Any]) -> list[str]:
    studies = config.get("studies", {})
    errors = check_section({k: v for k, v in config.items() if k in TOP_KEYS}, TOP_KEYS, "")[1]
    errors += [
        f"default_studies: {study!r} is not a study; allowed: studies defined in config.yaml, {sorted(studies)}"
        for study in (config.get("default_studies") if isinstance(config.get("default_studies"), list) else [])
        if isinstance(study, str) and study not in studies
    ]
    errors += [
        f"studies.{study}: the name is taken by a rule of the workflow; allowed: any name but "
        f"{list(RULE_NAMES)} or one starting with {list(RULE_PREFIXES)}. Rename the study"
        for study in studies
        if study in RULE_NAMES or study.startswith(RULE_PREFIXES)
    ]
    errors += check_section(config.get("analysis", {}) or {}, ANALYSIS_KEYS, "analysis")[1]
    errors += landscape_errors(config)
    return errors


def _dataset_errors(config: dict[str, Any]) -> list[str]:
    errors = []
    for name, entry in (config.get("datasets") or {}).items():
        kind = (entry or {}).get("kind", name)
        if kind not in KINDS:
            errors.append(
                f"datasets.{name}.kind = {kind!r}: unknown kind{suggestion(str(kind), KINDS)}; allowed: {sorted(KINDS)}"
            )
            continue
        errors += check_section(
            {"seed": entry["seed"]} if "seed" in entry else {}, {"seed": DATASET_SEED}, f"datasets.{name}"
        )[1]
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
        (block.get("values"), f"{where}.grid[{i}].values") for i, block in enumerate(spec["grid"])
    ]:
        errors += _knob_value_errors(knob, values, at) if knob is not None and values is not None else []
    if not errors:
        for position, block in enumerate(spec["grid"]):
            given = {**spec.get("train", {}), **block.get("train", {})}
            values = block.get("values", spec.get("values"))
            errors += _effect_errors({**TRAIN_DEFAULTS, **given}, set(given), knob, values, f"{where}.grid[{position}]")
            errors += _dataset_fit_errors(
                config, study, block, {**TRAIN_DEFAULTS, **given}, values, f"{where}.grid[{position}]"
            )
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
                train = {
                    **TRAIN_DEFAULTS,
                    **spec.get("train", {}),
                    **block.get("train", {}),
                    spec.get("knob", "lr"): value,
                }
                cells.append((dataset, model, n_train, train))
        errors += budget_errors(
            cells, settings.min_epochs, settings.require_converged, f"studies.{study}.grid[{position}]"
        )
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
        errors.append(
            f"{where}: {key} {used} but {now}, and {key} acts only with {condition}, so every cell would "
            f"train as without it; allowed: set {fix}, or leave {key} out"
        )
    return errors


def _step_never_reached(train: dict[str, Any], knob: str, values: list, where: str) -> list[str]:
    """A step schedule whose step always comes at or after max_steps trains at the constant rate. A sweep
    may hold one such value (the "never cut" control of Fig. 28), not only such values."""
    if train["lr_schedule"] != "step":
        return []
    steps = values if knob == "lr_step_at" else [train["lr_step_at"]]
    if any(step < train["max_steps"] for step in steps):
        return []
    return [
        f"{where}: lr_step_at {steps if knob == 'lr_step_at' else steps[0]} is never before max_steps = "
        f"{train['max_steps']}, so the rate never steps and every cell trains at the constant rate; "
        f"allowed: lr_step_at < {train['max_steps']} (for at least one value); fix: lower it or raise "
        "max_steps"
    ]


# At least this many analysed test samples per class: CSI, BSI and class separation compare class
# (and bias-group) means, and a seeded draw of 10 per class misses a balanced binary class with
# probability 2**-19.
MIN_TEST_PER_CLASS = 10


def _dataset_fit_errors(
    config: dict[str, Any], study: str, block: dict[str, Any], train: dict[str, Any], values: list, where: str
) -> list[str]:
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
            errors.append(
                f"{where}: batch_size {too_big if knob == 'batch_size' else too_big[0]} is above the "
                f"{n_train} training samples of {dataset}{held}; every step would take all {n_train}, so "
                f"such cells train alike while train.json records the larger size; allowed: batch_size "
                f"<= {n_train}; fix: lower batch_size or raise datasets.{dataset}.{train_key}"
            )
        analysed = min(n_test, samples)
        if analysed < MIN_TEST_PER_CLASS * kind.num_classes:
            source = (
                f"datasets.{dataset}.{test_key} = {n_test}"
                if n_test <= samples
                else f"studies.{study}.analysis.represent_samples = {samples}"
            )
            errors.append(
                f"{source}: the analyses of {where} would see {analysed} test samples of {dataset}, "
                f"{analysed / kind.num_classes:g} per class; CSI and class separation need every class, "
                f"at least {MIN_TEST_PER_CLASS} samples per class; allowed: "
                f">= {MIN_TEST_PER_CLASS * kind.num_classes}; fix: raise it"
            )
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
        errors.append(
            f"{where}: pq_p = {settings.pq_p} and pq_q = {settings.pq_q}: the PQ-index (Diao et al. 2023) "
            "needs p < q; allowed: pq_p < pq_q (default 1 and 2; the paper's Fig 25 caption's p = 2, q = 1 "
            "is this pair with the roles swapped)"
        )
    if settings.background == "smp" and not settings.segmenter_checkpoint:
        errors.append(
            f"{where}.segmenter_checkpoint = '': background: smp needs the path of a segmentation-models-"
            "pytorch DeepLabV3 checkpoint (largelr.analyses.segment.save_smp_checkpoint); allowed: a file path"
        )
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
            return [
                f"{where}.hilo_models = {settings.hilo_models}: no pair of the study has these models; allowed: "
                f"models of the study ({sorted({model for _, model in pair_blocks(config, study)})}) or null"
            ]
    errors = []
    for key in ("hilo_low", "hilo_high"):
        value = settings[key]
        for (dataset, model), block in pairs.items() if value is not None else ():
            values = block.get("values", config["studies"][study].get("values")) or []
            texts = [format_value(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if format_value(value) not in texts:
                errors.append(
                    f"{where}.{key} = {value!r}: not a value of ({dataset}, {model}); allowed: one of "
                    f"{values} or null (the pair's {'smallest' if key == 'hilo_low' else 'largest'})"
                )
    return errors


def _block_errors(config: dict[str, Any], study: str, block: dict[str, Any], where: str) -> list[str]:
    errors = check_section(block.get("train", {}), TRAIN_KEYS, f"{where}.train")[1]
    if "values" in block:
        errors += check_section({"values": block["values"]}, {"values": STUDY_KEYS["values"]}, where)[1]
    for dataset in block["datasets"]:
        if dataset_kind(config, dataset) not in KINDS:
            errors.append(
                f"{where}.datasets: {dataset!r} is not a dataset{suggestion(dataset, known_datasets(config))}; "
                f"allowed: define it under `datasets:` or use one of {sorted(KINDS)}"
            )
    for model in block["models"]:
        if model not in MODELS:
            errors.append(
                f"{where}.models: {model!r} is not a model{suggestion(model, MODELS)}; allowed: {sorted(MODELS)}"
            )
    for model, params in block.get("model_params", {}).items():
        if model not in block["models"]:
            errors.append(
                f"{where}.model_params.{model}: not a model of this block; allowed: parameters for {block['models']}"
            )
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
