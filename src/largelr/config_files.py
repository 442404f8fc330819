"""Reading config files (YAML errors with file, line and column) and the JSON schema of their structure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from largelr.checks import suggestion
from largelr.config_cells import ConfigError
from largelr.config_settings import STUDY_KEYS, TOP_KEYS


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
                        None,
                        None,
                        f"the key {key!r} is given twice in this mapping (first on line {first[key] + 1}); "
                        "YAML would keep only the last one",
                        key_node.start_mark,
                    )
                first[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep)

    text = Path(path).read_text()
    try:
        return yaml.load(text, Loader=UniqueKeyLoader) or {}
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        context = (
            f" ({error.context} on line {error.context_mark.line + 1})" if error.context and error.context_mark else ""
        )
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        raise ConfigError(
            f"{path}, line {mark.line + 1}, column {mark.column + 1}: {error.problem}{context}\n"
            f"  {mark.line + 1:>5} | {line}\n        | {' ' * mark.column}^\n"
            f"Fix the YAML at that line of {path}."
        ) from None


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


SCHEMA_TYPES = {
    "object": "a mapping (key: value; {} when empty)",
    "array": "a list",
    "string": "text",
    "boolean": "true or false",
    "number": "a number",
    "integer": "a whole number",
}


def schema_errors(config: dict[str, Any], schema_path: str | Path | dict[str, Any]) -> list[str]:
    """Structure problems (sections, required keys, unknown keys, containers) against the JSON schema
    (a file, or the dict of config_schema()), each with its key path; values are checked by
    validate_config against the Settings."""
    import jsonschema
    import yaml

    schema = schema_path if isinstance(schema_path, dict) else yaml.safe_load(Path(schema_path).read_text())
    errors = []
    for error in sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: e.json_path):
        parts, where, kind = list(error.absolute_path), key_path(error.absolute_path), error.validator
        if kind == "additionalProperties" and isinstance(error.instance, dict):
            known = list(error.schema.get("properties", {}))
            errors += [
                f"{key_path([*parts, key])} = {short(value)}: unknown key {key!r}{suggestion(str(key), known)}; "
                f"allowed keys: {sorted(known)}"
                for key, value in error.instance.items()
                if key not in known
            ]
        elif kind == "required":
            errors += [
                f"{key_path([*parts, key])}: missing; {where} needs the keys {error.validator_value}"
                for key in error.validator_value
                if key not in error.instance
            ]
        elif kind == "type":
            errors.append(f"{where} = {short(error.instance)}: allowed: {SCHEMA_TYPES.get(error.validator_value)}")
        elif kind == "propertyNames":
            errors.append(
                f"{where}: {error.message}; allowed: names of letters, digits and _ (they become paths and rule names)"
            )
        else:
            errors.append(f"{where} = {short(error.instance)}: {error.message}")
    return errors


# --- the JSON schema, derived from the Setting tables -------------------------------------

SCHEMA_PATH = "workflow/schemas/config.schema.yaml"  # the checked-in copy the Snakefile validates with
NAME_PATTERN = "^[A-Za-z0-9_]+$"  # names that become paths and rule names
SCHEMA_DESCRIPTION = (
    "largelr config.yaml, structure only: the sections, their required and allowed keys and which of them hold "
    "mappings or lists. Every value (type, range, choices, default) is declared once, as a largelr.checks.Setting "
    "(largelr.config TOP_KEYS, STUDY_KEYS, TRAIN_KEYS; the analyses' settings in largelr.registry.analyses; the "
    "dataset kinds' and models' params), and checked by largelr.config.validate_config, which applies this schema "
    "first. Generated from those tables by `python -m largelr.config`."
)


def _named_mappings(**extra: Any) -> dict[str, Any]:
    return {"type": "object", "propertyNames": {"pattern": NAME_PATTERN}, **extra}


def schema_text() -> str:
    """config_schema() as the YAML of the checked-in file."""
    import yaml

    header = (
        "# Generated from largelr.config's Setting tables by `python -m largelr.config`: edit those, not this file.\n"
    )
    return header + yaml.safe_dump(config_schema(), sort_keys=False, width=100)


def config_schema() -> dict[str, Any]:
    """The structure of config.yaml as a JSON schema: the key lists come from TOP_KEYS and STUDY_KEYS
    (each key's value is left to its Setting: ``{}``), the sections and containers are declared here."""
    block = {
        "type": "object",
        "additionalProperties": False,
        "required": ["datasets", "models"],
        "properties": {
            "datasets": {"$ref": "#/$defs/names"},
            "models": {"$ref": "#/$defs/names"},
            "values": {},
            "train": {"type": "object"},
            "model_params": {"type": "object", "additionalProperties": {"type": "object"}},
        },
    }
    study = {
        "type": "object",
        "additionalProperties": False,
        "required": ["knob", "seeds", "grid"],
        "properties": {
            **{key: {} for key in STUDY_KEYS},
            "train": {"type": "object"},
            "analysis": {"type": "object"},
            "grid": {"type": "array", "minItems": 1, "items": block},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": SCHEMA_DESCRIPTION,
        "type": "object",
        "additionalProperties": False,
        "required": ["studies"],
        "properties": {
            **{key: {} for key in TOP_KEYS},
            "datasets": _named_mappings(additionalProperties={"type": "object"}),
            "analysis": {"type": "object"},
            "landscapes": _named_mappings(additionalProperties={"type": "object"}),
            "studies": _named_mappings(minProperties=1, additionalProperties=study),
        },
        "$defs": {"names": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": NAME_PATTERN}}},
    }
