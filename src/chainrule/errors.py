"""The warnings and errors chainrule raises, and where a warning points.

They live at the bottom of the house so that every layer can raise them:
the engine (:class:`AnomalyError`, re-exported by :mod:`chainrule.tensor`), the
step engines (:class:`CompileWarning`) and the training loop (the others).
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

__all__ = [
    "AnomalyError",
    "ConvergenceWarning",
    "GradientHealthWarning",
    "CompileWarning",
    "DivergenceError",
    "FirstIterationWarning",
    "PrematureStopWarning",
    "outside_stacklevel",
]


class AnomalyError(FloatingPointError):
    """An op produced NaN or inf while :func:`~chainrule.detect_anomaly` was on."""


class ConvergenceWarning(UserWarning):
    """Training reached ``max_iter`` before every step size fell below ``tol``."""


class GradientHealthWarning(UserWarning):
    """A parameter's gradient vanished or exploded during training (see :class:`~chainrule.GradientMonitor`)."""


class FirstIterationWarning(UserWarning):
    """fit stopped at iteration 1 by the lessons' rule: often a learning rate too small for ``tol``."""


class PrematureStopWarning(UserWarning):
    """The lessons' rule stopped fit while the loss was still falling fast: every step was below ``tol``
    but the last one still lowered the loss a good deal (Adam's steps stay near its learning rate, so a
    ``tol`` at or above it stops Adam at once), or a schedule's lowered learning rate made the steps small.
    ``stopping="improvement"`` watches the loss instead."""


class CompileWarning(UserWarning):
    """``compile=True`` could not replay this model; training goes on eagerly."""


class DivergenceError(FloatingPointError, ValueError):
    """The loss or a derivative became NaN or inf; the parameters were restored to the best seen.

    A numeric failure that a hyperparameter value (most often the learning rate)
    usually causes: it is both a FloatingPointError and a ValueError.

    Attributes: ``iteration``, ``parameter`` (its name) and ``history``.
    """

    def __init__(self, message: str, iteration: int, parameter: str, history: Any) -> None:
        super().__init__(message)
        self.iteration, self.parameter, self.history = iteration, parameter, history


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def outside_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside chainrule."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
