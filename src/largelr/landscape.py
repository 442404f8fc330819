"""Two-knob landscapes (Fig. 9) as sets of one-knob studies.

A landscape names studies that sweep the same knob (e.g. focal_gamma) over the same
(dataset, model) pairs and differ in one training setting (``axis``, e.g. lr). Cells stay
one-knob (results/{study}/{dataset}/{model}/{knob}={value}/seed={seed}); the landscape
figure reads the studies' cells tables and puts each study on the row of its ``axis`` value.
Torch-free: the workflow's parse reads it.
"""

from __future__ import annotations

from typing import Any

from largelr.checks import Setting, check_section

# How "spurious feature use" is read from a cell (the landscape's third panel). The paper does not
# name the measure of its Fig. 9; "auto" takes the attribution share on the dataset's spurious
# region where the dataset marks one (its measure of feature use), else the bias selectivity of the
# penultimate neurons (BSI: the class-selectivity index computed with bias labels).
SPURIOUS_MEASURES = {
    "spurious_share": "spurious attribution share (IG)",
    "bsi": "bias selectivity (BSI)",
    "bias_gap": "bias-aligned − bias-conflicting test acc.",
}
SPURIOUS_CHOICES = ("auto", *SPURIOUS_MEASURES)
LANDSCAPE_KEYS: dict[str, Setting] = {
    "description": Setting("", "what the landscape shows", type=str),
    "studies": Setting(None, "the one-knob studies that make the landscape's rows (at least two)", type=list,
                       items=Setting("", "a study", type=str), min_items=2),
    "axis": Setting("lr", "the training setting that tells the studies apart (the landscape's rows)", type=str),
    "spurious": Setting("auto", "the spurious-feature-use panel: auto (spurious_share where the dataset marks its "
                        "spurious region, else bsi) | spurious_share | bsi | bias_gap (test_acc_ba - test_acc_bc)",
                        type=str, choices=SPURIOUS_CHOICES),
}


def landscapes(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every landscape of the config with its defaults filled in."""
    return {name: {"description": "", "axis": "lr", "spurious": "auto", **(entry or {})}
            for name, entry in (config.get("landscapes") or {}).items()}


def axis_value(config: dict[str, Any], study: str, dataset: str, model: str, axis: str) -> float:
    """The study's value of the landscape axis on one pair (its explicit setting, else the default)."""
    from largelr.config import TRAIN_DEFAULTS, train_settings

    return float(train_settings(config, study, dataset, model).get(axis, TRAIN_DEFAULTS[axis]))


def landscape_pairs(config: dict[str, Any], name: str) -> list[tuple[str, str]]:
    """(dataset, model) pairs that every study of the landscape has."""
    from largelr.config import pair_blocks

    studies = landscapes(config)[name]["studies"]
    common = [pair for pair in pair_blocks(config, studies[0])]
    return [pair for pair in common if all(pair in pair_blocks(config, study) for study in studies[1:])]


def landscape_rows(config: dict[str, Any], name: str, dataset: str, model: str) -> dict[str, float]:
    """study -> its axis value on the pair, for every study of the landscape."""
    entry = landscapes(config)[name]
    return {study: axis_value(config, study, dataset, model, entry["axis"]) for study in entry["studies"]}


def landscape_errors(config: dict[str, Any]) -> list[str]:
    """Every problem of the ``landscapes`` section, each with its key path, value and what is allowed."""
    from largelr.config import TRAIN_KEYS

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
