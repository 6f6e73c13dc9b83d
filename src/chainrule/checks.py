"""Argument checks: one rule per kind of value, one message shape.

A rule knows what it accepts and how to say it; :func:`check` raises the one
message shape every public entry point uses::

    <owner>: <name> must be <what the rule allows>, got <the value given>

A ValueError, or a TypeError for a value not even of the right kind where the
rule says so (:class:`Instance`, :class:`Typed`). The command line leaves the
owner out (``owner=None``: "--lr must be ..."), and scikit-learn's estimators
word the same rules in scikit-learn's own sentence (:func:`sklearn_message`).

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
from collections.abc import Sequence
from collections.abc import Sequence as _Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Rule",
    "Number",
    "Integer",
    "Integers",
    "OneOf",
    "AnyOf",
    "Instance",
    "Typed",
    "check",
    "message",
    "sklearn_message",
]


class Rule:
    """What a value must be: ``accepts(value)`` and ``allowed`` (the words after "must be")."""

    allowed: str = "valid"

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def convert(self, value: Any) -> Any:
        """The accepted value in its canonical type (a float, an int)."""
        return value

    def of_kind(self, value: Any) -> bool:
        """Whether ``value`` is of the kind the rule is about (a number, an integer), whatever its range."""
        return True

    def error(self, value: Any) -> type[Exception]:
        """The exception a rejected ``value`` raises: ValueError unless the rule says otherwise."""
        return ValueError


def _is_real(value: Any) -> bool:
    # NOTE: plain floats and ints first: an isinstance check against the numbers ABCs costs a microsecond
    return (
        type(value) is float or type(value) is int or (isinstance(value, numbers.Real) and not isinstance(value, bool))
    )


def _is_integer(value: Any) -> bool:
    return type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


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

    def of_kind(self, value: Any) -> bool:
        return _is_real(value)

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
    """An integer (not a bool, not a float) >= ``low`` (and <= ``high`` when given); None too when ``optional``."""

    low: int = 0
    optional: bool = False
    high: int | None = None

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return _is_integer(value) and value >= self.low and (self.high is None or value <= self.high)

    def convert(self, value: Any) -> int | None:
        return None if value is None else int(value)

    def of_kind(self, value: Any) -> bool:
        return (value is None and self.optional) or _is_integer(value)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        within = f"in [{self.low}, {self.high}]" if self.high is not None else f">= {self.low}"
        return f"{'None or ' if self.optional else ''}an integer {within}"


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
        if len(self.options) == 1:  # one value, e.g. "auto" among other rules of an AnyOf
            return repr(self.options[0])
        return "one of " + ", ".join(repr(o) for o in self.options)


@dataclass(frozen=True)
class Integers(Rule):
    """A sequence (tuple, list, range; not text) of at least ``min_length`` integers, each >= ``low``.

    ``items`` says what each must be, in the plural ("integers >= 1"), for a
    sentence of one's own (the command line's "--hidden must be integers >= 1
    separated by commas").
    """

    low: int = 1
    min_length: int = 0

    def accepts(self, value: Any) -> bool:
        return self.of_kind(value) and len(value) >= self.min_length and all(v >= self.low for v in value)

    def convert(self, value: Any) -> tuple[int, ...]:
        return tuple(int(v) for v in value)

    def of_kind(self, value: Any) -> bool:
        return (
            isinstance(value, _Sequence) and not isinstance(value, (str, bytes)) and all(_is_integer(v) for v in value)
        )

    @property
    def items(self) -> str:
        return f"integers >= {self.low}"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        least = f"at least {self.min_length} " if self.min_length else ""
        return f"a sequence of {least}{self.items}"


@dataclass(frozen=True)
class AnyOf(Rule):
    """A value any one of ``rules`` accepts (converted by the first that does)."""

    rules: Sequence[Rule]

    def accepts(self, value: Any) -> bool:
        return any(rule.accepts(value) for rule in self.rules)

    def convert(self, value: Any) -> Any:
        return next(rule for rule in self.rules if rule.accepts(value)).convert(value)

    def of_kind(self, value: Any) -> bool:
        return any(rule.of_kind(value) for rule in self.rules)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return " or ".join(rule.allowed for rule in self.rules)


@dataclass(frozen=True)
class Instance(Rule):
    """A value of one of ``types`` (a bool only if ``bool`` is among them); a TypeError otherwise.

    ``allowed`` is said in words: ``Instance((numbers.Real,), "a number")``.
    """

    types: tuple[Any, ...]  # classes, or ABCs such as collections.abc.Callable
    words: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types) and (bool in self.types or not isinstance(value, bool))

    def of_kind(self, value: Any) -> bool:
        return self.accepts(value)

    def error(self, value: Any) -> type[Exception]:
        return TypeError

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return self.words


@dataclass(frozen=True)
class Typed(Rule):
    """``rule``, raising TypeError for a value not of the rule's kind and ValueError for one out of range.

    ``Typed(Integer(low=1))`` rejects 2.0 and "3" with a TypeError, 0 with a ValueError.
    """

    rule: Rule

    def accepts(self, value: Any) -> bool:
        return self.rule.accepts(value)

    def convert(self, value: Any) -> Any:
        return self.rule.convert(value)

    def of_kind(self, value: Any) -> bool:
        return self.rule.of_kind(value)

    def error(self, value: Any) -> type[Exception]:
        return ValueError if self.rule.of_kind(value) else TypeError

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return self.rule.allowed


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def message(owner: str | None, name: str, value: Any, rule: Rule) -> str:
    """The one message shape: what was wrong (owner and argument), what is allowed, what was given.

    With ``owner=None`` the name stands alone (the command line's "--lr must be ...").
    """
    where = "" if owner is None else f"{owner}: "
    return f"{where}{name} must be {rule.allowed}, got {value!r}"


def sklearn_message(owner: str, name: str, value: Any, rule: Rule) -> str:
    """The same rule in scikit-learn's sentence, which its estimator checks expect.

    >>> sklearn_message("NeuralNetworkClassifier", "tol", -1.0, Number(low=0))
    "The 'tol' parameter of NeuralNetworkClassifier must be a finite number >= 0. Got -1.0 instead."
    """
    return f"The {name!r} parameter of {owner} must be {rule.allowed}. Got {value!r} instead."


def check(owner: str | None, name: str, value: Any, rule: Rule) -> Any:
    """``value`` converted by ``rule``, or an error in the one message shape.

    The error is a ValueError, or a TypeError where the rule says so (:class:`Instance`, :class:`Typed`).
    """
    if not rule.accepts(value):
        raise rule.error(value)(message(owner, name, value, rule))
    return rule.convert(value)
