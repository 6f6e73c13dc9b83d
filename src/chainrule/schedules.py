"""Learning-rate schedules: small objects the training loop asks for the rate of each epoch.

At the start of every epoch the loop (:class:`chainrule.Trainer`) sets
``optimizer.lr = schedule.rate(lr0, epochs, seen)``: ``lr0`` is the optimizer's
rate when the run began, ``epochs`` the epochs done so far, ``seen`` the
training rows seen so far (as scikit-learn's ``t_``). :class:`Adaptive` instead
answers the loop's :meth:`Schedule.plateau` when the loss stops improving.

- :class:`Constant`: lr0 always.
- :class:`InvScaling`: lr0 / (seen + 1) ** power_t (scikit-learn's "invscaling").
- :class:`Adaptive`: lr0 until ``n_iter_no_change`` epochs in a row fail to improve
  the loss by ``tol``, then the rate / 5; the run stops at such a plateau once the
  rate is at most 1e-6 (scikit-learn's "adaptive").
- :class:`Step`: lr0 * gamma ** (epochs // every) (PyTorch's StepLR).
- :class:`Cosine`: min_lr + (lr0 - min_lr) (1 + cos(pi min(epochs, period) / period)) / 2
  (PyTorch's CosineAnnealingLR for one period, then min_lr).

The names "constant", "invscaling" and "adaptive" (scikit-learn's ``learning_rate``)
give them with their defaults.

Example: the rates of the first three epochs with 100 rows::

    >>> from chainrule.schedules import InvScaling, Step, get_schedule
    >>> [round(InvScaling(power_t=0.5).rate(0.1, e, 100 * e), 5) for e in range(3)]   # 0.1 / sqrt(1, 101, 201)
    [0.1, 0.00995, 0.00705]
    >>> [Step(every=2, gamma=0.5).rate(0.1, e, 0) for e in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    >>> get_schedule("adaptive")
    Adaptive()
"""

from __future__ import annotations

import math
from typing import Any

from .checks import Integer, Number, check

__all__ = ["Schedule", "Constant", "InvScaling", "Adaptive", "Step", "Cosine", "SCHEDULES", "get_schedule"]

# Below this rate an adaptive run stops at its next plateau (scikit-learn's limit).
ADAPTIVE_FLOOR = 1e-6


class Schedule:
    """Base: ``rate(lr0, epochs, seen)`` is the learning rate of the next epoch (None: leave it as it is)."""

    def rate(self, lr0: float, epochs: int, seen: int) -> float | None:
        raise NotImplementedError

    def plateau(self, lr: float) -> float | None:
        """The loss stopped improving: the rate to go on with, or None to let the stopping rule decide."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


class Constant(Schedule):
    """lr = lr0 every epoch."""

    def rate(self, lr0: float, epochs: int, seen: int) -> float:
        return lr0


class InvScaling(Schedule):
    """lr = lr0 / (seen + 1) ** power_t, ``seen`` the training rows seen before the epoch (scikit-learn)."""

    def __init__(self, power_t: float = 0.5) -> None:
        self.power_t = check("InvScaling", "power_t", power_t, Number(low=0))

    def rate(self, lr0: float, epochs: int, seen: int) -> float:
        return lr0 / (seen + 1) ** self.power_t

    def extra_repr(self) -> str:
        return f"power_t={self.power_t}"


class Adaptive(Schedule):
    """lr0 until the loss stops improving (the loop's count of epochs: ``tol``, ``n_iter_no_change``), then
    lr / 5 at each such plateau; at a plateau with lr <= 1e-6 the run stops (scikit-learn's "adaptive")."""

    def rate(self, lr0: float, epochs: int, seen: int) -> float | None:
        return lr0 if epochs == 0 else None

    def plateau(self, lr: float) -> float | None:
        return None if lr <= ADAPTIVE_FLOOR else lr / 5.0


class Step(Schedule):
    """lr = lr0 * gamma ** (epochs // every): the rate times ``gamma`` every ``every`` epochs."""

    def __init__(self, every: int, gamma: float = 0.1) -> None:
        self.every = check("Step", "every", every, Integer(low=1))
        self.gamma = check("Step", "gamma", gamma, Number(low=0, high=1, low_open=True, high_open=False))

    def rate(self, lr0: float, epochs: int, seen: int) -> float:
        return lr0 * self.gamma ** (epochs // self.every)

    def extra_repr(self) -> str:
        return f"every={self.every}, gamma={self.gamma}"


class Cosine(Schedule):
    """lr = min_lr + (lr0 - min_lr) (1 + cos(pi e / period)) / 2 with e = min(epochs, period): half a cosine
    from lr0 down to ``min_lr`` over ``period`` epochs, then ``min_lr`` (Loshchilov & Hutter, SGDR, 2017)."""

    def __init__(self, period: int, min_lr: float = 0.0) -> None:
        self.period = check("Cosine", "period", period, Integer(low=1))
        self.min_lr = check("Cosine", "min_lr", min_lr, Number(low=0))

    def rate(self, lr0: float, epochs: int, seen: int) -> float:
        if self.min_lr > lr0:
            raise ValueError(
                f"Cosine: min_lr={self.min_lr:g} is above the starting learning rate {lr0:g}: the rate would rise"
            )
        e = min(epochs, self.period)
        return self.min_lr + (lr0 - self.min_lr) * (1 + math.cos(math.pi * e / self.period)) / 2

    def extra_repr(self) -> str:
        return f"period={self.period}, min_lr={self.min_lr}"


SCHEDULES = {"constant": Constant, "invscaling": InvScaling, "adaptive": Adaptive}


def get_schedule(schedule: Any) -> Schedule | None:
    """A schedule from its name ("constant", "invscaling", "adaptive"), a Schedule itself, or None."""
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str) and schedule in SCHEDULES:
        return SCHEDULES[schedule]()
    raise ValueError(
        f"fit: schedule must be None, a chainrule.schedules.Schedule or one of {sorted(SCHEDULES)}, got {schedule!r}"
    )
