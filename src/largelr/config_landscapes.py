"""Landscapes: one-knob studies joined over a second setting (Fig. 9; largelr.landscape)."""

from __future__ import annotations

from typing import Any

from largelr.checks import check_section
from largelr.config_cells import pair_blocks, train_settings
from largelr.config_settings import TRAIN_DEFAULTS, TRAIN_KEYS
from largelr.landscape import LANDSCAPE_KEYS


def landscapes(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every landscape of the config with its defaults filled in."""
    return {
        name: {"description": "", "axis": "lr", "spurious": "auto", **(entry or {})}
        for name, entry in (config.get("landscapes") or {}).items()
    }


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
            errors.append(
                f"{where}: studies {members} give ({dataset}, {model}) the {axis} values "
                f"{list(rows.values())}; allowed: a different {axis} per study"
            )
    return errors
