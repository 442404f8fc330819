"""What a setting allows, declared once, and the one check every layer uses.

A :class:`Setting` states a key's default, its type, range, choices and what it means.
Config validation at parse time, dataset parameters and the typed settings objects all
check values with :meth:`Setting.check`, so a constraint is written in one place and a bad
value is reported the same way wherever it is caught.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# YAML 1.1 (PyYAML) reads 1e-3 as text: a float needs a dot before the exponent.
_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class SettingError(ValueError):
    """A value a Setting does not allow; the message says what is allowed."""


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Setting:
    """A key's default, allowed values and meaning.

    ``type`` is one of bool, int, float, str, list (with ``items`` describing each entry);
    ``int`` accepts whole floats (100.0) and returns an int; ``float`` takes finite numbers only.
    Bounds are inclusive (``minimum``/``maximum``) or exclusive (``above``/``below``); ``pattern``
    is a regular expression a ``str`` value must match in full. ``nullable`` admits None. A ``bool``
    with ``from_text`` also takes the texts 'true' and 'false' (what ``--config key=false`` passes);
    only for settings read through their Setting, since the text 'false' is truthy elsewhere.
    """

    default: Any
    doc: str = ""
    type: type = float
    choices: Collection = ()  # a tuple, or a live view such as a records dict's keys()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    items: Setting | None = None
    nullable: bool = False
    min_items: int = 0
    pattern: str | None = None
    from_text: bool = False

    def allowed(self) -> str:
        """What the setting accepts, in words: 'a number > 0', "one of ['sgd', 'adam']"."""
        if self.choices:
            text = f"one of {list(self.choices)}"
        elif self.type is list:
            entries = self.items.allowed() if self.items else "anything"
            noun = "entry" if self.min_items == 1 else "entries"
            least = f"at least {self.min_items} {noun}, " if self.min_items else ""
            text = f"a list ({least}each {entries})"
        else:
            text = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[self.type]
            if self.pattern is not None:
                text = f"text matching {self.pattern!r}"
            limits = []
            if self.minimum is not None and self.maximum is not None:
                limits.append(f"in [{bound_text(self.minimum)}, {bound_text(self.maximum)}]")
            else:
                limits += [
                    f"{sign} {bound_text(bound)}"
                    for sign, bound in ((">=", self.minimum), ("<=", self.maximum))
                    if bound is not None
                ]
            limits += [
                f"{sign} {bound_text(bound)}"
                for sign, bound in ((">", self.above), ("<", self.below))
                if bound is not None
            ]
            text = " ".join([text, " and ".join(limits)]) if limits else text
        return f"{text} or null" if self.nullable else text

    def check(self, value: Any) -> Any:
        """The value in the declared type; SettingError saying what is allowed otherwise."""
        if value is None and self.nullable:
            return None
        if self.type is list:
            return self._check_list(value)
        converted = self._convert(value)
        if self.choices and converted not in self.choices:
            close = suggestion(converted, [str(c) for c in self.choices]) if isinstance(converted, str) else ""
            raise SettingError(f"allowed: {self.allowed()}{close}")
        if self.type in (int, float) and not self._in_bounds(converted):
            raise SettingError(f"allowed: {self.allowed()}")
        if self.pattern is not None and not re.fullmatch(self.pattern, converted):
            raise SettingError(f"allowed: {self.allowed()}")
        return converted

    def _check_list(self, value: Any) -> list:
        if not isinstance(value, (list, tuple)):
            raise SettingError(f"allowed: {self.allowed()}")
        if len(value) < self.min_items:
            raise SettingError(f"allowed: {self.allowed()}")
        if self.items is None:
            return list(value)
        checked = []
        for position, entry in enumerate(value):
            try:
                checked.append(self.items.check(entry))
            except SettingError as error:
                raise SettingError(f"entry {position} ({entry!r}): {error}") from None
        return checked

    def _convert(self, value: Any) -> Any:
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if self.from_text and isinstance(value, str) and value in ("true", "false"):
                return value == "true"
        elif self.type is str:
            if isinstance(value, str):
                return value
        elif self.type is int:
            if is_number(value) and math.isfinite(value) and float(value).is_integer():
                return int(value)
        elif self.type is float:
            if is_number(value) and math.isfinite(value):
                return float(value)
        raise SettingError(f"allowed: {self.allowed()}{number_hint(value)}")

    def _in_bounds(self, value: float) -> bool:
        return (
            (self.minimum is None or value >= self.minimum)
            and (self.maximum is None or value <= self.maximum)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
        )


def bound_text(bound: float) -> str:
    """A bound as the messages write it: whole-number bounds in full (2**64 - 1 is not 1.84467e+19)."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def number_hint(value: Any) -> str:
    """A hint for numbers that YAML read as text, such as 1e-3, and for infinite or NaN numbers."""
    if is_number(value) and not math.isfinite(value):
        return f" (got {value!r}: infinite and NaN values are not allowed)"
    if not isinstance(value, str) or not _NUMBER_TEXT.match(value.strip()):
        return ""
    if "." not in value and "e" in value.lower():
        return (
            f" (got the text {value!r}: YAML reads a number with an exponent but no dot, such as 1e-3, as text; "
            f"write it as 1.0e-3 or 0.001)"
        )
    return f" (got the text {value!r}: write the number without quotes)"


def check_section(
    values: Mapping[str, Any], settings: Mapping[str, Setting], where: str
) -> tuple[dict[str, Any], list[str]]:
    """Check every key of ``values`` against ``settings``; returns (checked values, error messages).

    Unknown keys are errors too. Each message names ``where.key`` (``key`` when ``where`` is empty),
    the value and what is allowed.
    """
    checked, errors = {}, []
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in settings:
            errors.append(
                f"{path} = {value!r}: unknown key {key!r}{suggestion(str(key), settings)}; "
                f"allowed keys: {sorted(settings)}"
            )
            continue
        try:
            checked[key] = settings[key].check(value)
        except SettingError as error:
            errors.append(f"{path} = {value!r}: {error}")
    return checked, errors


def suggestion(key: str, known: Mapping[str, Any] | list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def defaults(settings: Mapping[str, Setting]) -> dict[str, Any]:
    return {key: setting.default for key, setting in settings.items()}


class Settings(Mapping):
    """Typed, validated, immutable settings: ``settings.lr`` (and ``settings["lr"]``).

    Subclasses declare ``KEYS``; construction fills defaults, checks every value and raises
    SettingError listing every problem at once.
    """

    KEYS: dict[str, Setting] = {}

    def __init__(self, values: Mapping[str, Any] | None = None, where: str = "settings"):
        checked, errors = check_section(dict(values or {}), self.KEYS, where)
        if errors:
            raise SettingError("; ".join(errors))
        object.__setattr__(self, "_values", {**defaults(self.KEYS), **checked})

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no setting {key!r}{suggestion(key, self.KEYS)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace({key}=...)")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"

    def replace(self, **changes: Any):
        return type(self)({**self._values, **changes})


class Gathered(Mapping):
    """A read-only table computed from the records on every read, so that a record added at run time
    (a test's toy analysis) reaches every reader of the table."""

    def __init__(self, build: Callable[[], dict[str, Any]]):
        self._build = build

    def __getitem__(self, key: str) -> Any:
        return self._build()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(self._build())
