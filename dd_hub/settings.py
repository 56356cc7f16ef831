"""Settings: the one place where the rules of every setting live, and building settings from plain data.

A setting's rule is its type annotation, shared by the dataclass and by everything that fills it in (recipes,
``--set``, metrics.json): ``Literal[...]`` for a choice, ``Annotated[float, POSITIVE]`` for a range (on a list, the
range holds for every item), ``Annotated[str, OneOf(names)]`` for a choice from a registry. Dataclasses that derive
from :class:`Settings` check every field when they are built, so ``TrainConfig(lr=-1)`` fails like
``--set harden.lr=-1`` does; :func:`build` turns plain data into them with errors that name the key
(``harden.lr``). Numbers must be finite.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Collection

from .errors import DDHubError, did_you_mean


@dataclass(frozen=True)
class Range:
    """Valid values of a number: ``low <= x`` (``low < x`` when ``open_low``) and ``x <= high`` (``x < high`` when
    ``open_high``); None leaves that side unbounded."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, x: float) -> bool:
        above = self.low is None or (x > self.low if self.open_low else x >= self.low)
        below = self.high is None or (x < self.high if self.open_high else x <= self.high)
        return above and below

    def __str__(self) -> str:
        def number(x: float) -> str:
            return str(int(x)) if float(x).is_integer() and abs(x) >= 1e6 else f"{x:g}"

        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {number(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {number(self.high)}")
        return " and ".join(parts) or "a finite number"

    def check(self, value: Any, label: str) -> None:
        if value not in self:
            raise DDHubError(f"{label} must be {self}, got {_short(value)}")


@dataclass(frozen=True)
class OneOf:
    """Valid values of a string: the names of ``choices`` (a collection, or a function returning one, for
    registries that fill up at import time)."""

    choices: Collection[str] | Callable[[], Collection[str]]

    def names(self) -> list[str]:
        return list(self.choices() if callable(self.choices) else self.choices)

    def check(self, value: Any, label: str) -> None:
        if value not in self.names():
            raise DDHubError(f"{label} must be one of {', '.join(self.names())}, got {_short(value)}"
                             f"{did_you_mean(str(value)[:100], self.names())}")


#: ceilings of iterative budgets (attack steps, restarts): bounded work, whatever a recipe or metrics.json says
MAX_STEPS = 1000
MAX_RESTARTS = 100
#: the longest list, mapping and string any setting may hold (a recorded protocol of 200,000 epsilons is refused)
MAX_ITEMS = 64
MAX_STRING = 1000

POSITIVE, NON_NEGATIVE, AT_LEAST_ONE, AT_LEAST_TWO = Range(0, open_low=True), Range(0), Range(1), Range(2)
STEPS = Range(1, MAX_STEPS)
FRACTION = Range(0, 1, open_low=True)                # (0, 1]
UNIT_INTERVAL = Range(0, 1)                           # [0, 1]
SEED = Range(0, 2**32 - 1)                            # what NumPy's and every library's seeding accepts
BELOW_ONE = Range(0, 1, open_high=True)               # [0, 1)

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.IGNORECASE)


class Settings:
    """Base of the settings dataclasses: every field is checked against its annotation when the object is built."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self), include_extras=True)
        for item in dataclasses.fields(self):
            setattr(self, item.name, value_of(hints[item.name], getattr(self, item.name),
                                              f"{type(self).__name__}.{item.name}", noun="setting"))


def build(cls: type, data: Any, where: str = "", *, noun: str = "key") -> Any:
    """A settings dataclass ``cls`` from plain data, every value checked; unknown keys and wrong types or values
    are one-line errors naming the key (``where`` is the path of ``data``, e.g. ``'harden'``; ``noun`` what a key
    is called in the messages, e.g. ``'recipe key'``)."""
    if not isinstance(data, dict):
        raise DDHubError(f"{where or 'the settings'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DDHubError(f"unknown {noun} '{_join(where, unknown[0])}'{did_you_mean(str(unknown[0]), names)}; valid "
                         f"keys here: {', '.join(sorted(names))}")
    kwargs = {key: value_of(hints[key], value, _join(where, key), noun=noun) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise DDHubError(f"{where or cls.__name__}: {exc}") from None


def value_of(hint: Any, value: Any, where: str, *, noun: str = "key") -> Any:
    """``value`` checked against the annotation ``hint`` (and converted where the data format is loose: an int for
    a float, YAML 1.1's ``'1e6'`` string for a number); a one-line error naming ``where`` otherwise (as
    ``noun 'where'``, or as ``where`` alone when ``noun`` is empty)."""
    return _coerce(hint, value, where, noun, ())


def _coerce(hint: Any, value: Any, where: str, noun: str, rules: tuple) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    label = f"{noun} '{where}'" if noun else where
    if isinstance(value, (list, tuple, dict, str)) and len(value) > (MAX_STRING if isinstance(value, str) else MAX_ITEMS):
        raise DDHubError(f"{label} must hold at most {MAX_STRING if isinstance(value, str) else MAX_ITEMS} "
                         f"{'characters' if isinstance(value, str) else 'items'}, got {len(value):,}")
    if origin is typing.Annotated:
        return _coerce(args[0], value, where, noun, (*rules, *args[1:]))
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, where, noun, rules)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else build(hint, value, where, noun=noun)
    if origin is typing.Literal:
        if value not in args:
            raise DDHubError(f"{label} must be one of {', '.join(map(repr, args))}, got {_short(value)}"
                             f"{did_you_mean(str(value)[:100], [str(a) for a in args])}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise DDHubError(f"{label} must be a list, got {str(value)[:80]!r}")
        return [_coerce(args[0], item, f"{where}[{i}]", noun, rules) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise DDHubError(f"{label} must be a mapping of names to values, got {_short(value)}")
        for key, item in value.items():
            _check_plain(item, f"{noun} '{where}.{key}'")
        return dict(value)
    value = _scalar(hint, value, label)
    for rule in rules:
        rule.check(value, label)
    return value


def _short(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def is_finite_number(value: Any) -> bool:
    """A finite int or float, not a bool: what a figure read from outside must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scalar(hint: Any, value: Any, label: str) -> Any:
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads '1e6' (no dot) as a string
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise DDHubError(f"{label} must be a finite number, got {_short(value)}")
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    raise DDHubError(f"{label} must be {getattr(hint, '__name__', hint)}, got {_short(value)}")


def _check_plain(value: Any, label: str, depth: int = 0) -> None:
    """Constructor arguments are plain data (numbers, strings, booleans, null and lists of them), as JSON holds,
    and small (:data:`MAX_ITEMS`, :data:`MAX_STRING`, lists nested at most 4 deep)."""
    if isinstance(value, (list, str)) and len(value) > (MAX_STRING if isinstance(value, str) else MAX_ITEMS) \
            or depth > 4:
        raise DDHubError(f"{label} is too large (at most {MAX_ITEMS} items, {MAX_STRING} characters, 4 levels)")
    if isinstance(value, list):
        for item in value:
            _check_plain(item, label, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise DDHubError(f"{label} must hold finite numbers, got {_short(value)}")
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise DDHubError(f"{label} must hold numbers, strings, booleans or lists, got {_short(value)}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
