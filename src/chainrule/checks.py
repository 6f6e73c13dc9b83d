"""Argument checks: one rule per kind of value, one message shape.

A rule knows what it accepts and how to say it; :func:`check` raises the one
message shape every public entry point uses::

    <owner>: <name> must be <what the rule allows>, got <the value given>

(scikit-learn's estimators word the same rules in scikit-learn's own sentence,
see :mod:`chainrule.sklearn`.)

Example::

    >>> from chainrule.checks import Integer, Number, check
    >>> check("fit", "tol", 0.001, Number(low=0))
    0.001
    >>> check("fit", "max_iter", 0, Integer(low=1))
    Traceback (most recent call last):
    ...
    ValueError: fit: max_iter must be an integer >= 1, got 0
    >>> check("Adam", "betas[0]", 1.0, Number(low=0, high=1))
    Traceback (most recent call last):
    ...
    ValueError: Adam: betas[0] must be a number in [0, 1), got 1.0
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Rule", "Number", "Integer", "OneOf", "check", "message"]


class Rule:
    """What a value must be: ``accepts(value)`` and ``allowed`` (the words after "must be")."""

    allowed: str = "valid"

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def convert(self, value: Any) -> Any:
        """The accepted value in its canonical type (a float, an int)."""
        return value


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Number(Rule):
    """A finite real number between ``low`` and ``high``; ``low`` closed, ``high`` open unless said otherwise.

    With no ``high`` it reads "a finite number >= low"; with both ends "a number in [low, high)".
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True

    def accepts(self, value: Any) -> bool:
        if not _is_real(value) or not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open or self.high == math.inf else value <= self.high
        return above and below

    def convert(self, value: Any) -> float:
        return float(value)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        if self.high == math.inf:
            if self.low == -math.inf:
                return "a finite number"
            return f"a finite number {'>' if self.low_open else '>='} {_num(self.low)}"
        lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"a number in {lo}{_num(self.low)}, {_num(self.high)}{hi}"


@dataclass(frozen=True)
class Integer(Rule):
    """An integer (not a bool, not a float) >= ``low``; None too when ``optional``."""

    low: int = 0
    optional: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= self.low

    def convert(self, value: Any) -> int | None:
        return None if value is None else int(value)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"{'None or ' if self.optional else ''}an integer >= {self.low}"


@dataclass(frozen=True)
class OneOf(Rule):
    """One of a few given values (strings, usually)."""

    options: Sequence[Any]

    def accepts(self, value: Any) -> bool:
        try:
            return value in self.options
        except TypeError:  # an unhashable value in a set of options
            return False

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(repr(o) for o in self.options)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def message(owner: str, name: str, value: Any, rule: Rule) -> str:
    """The one message shape: what was wrong (owner and argument), what is allowed, what was given."""
    return f"{owner}: {name} must be {rule.allowed}, got {value!r}"


def check(owner: str, name: str, value: Any, rule: Rule) -> Any:
    """``value`` converted by ``rule``, or a ValueError in the one message shape."""
    if not rule.accepts(value):
        raise ValueError(message(owner, name, value, rule))
    return rule.convert(value)
