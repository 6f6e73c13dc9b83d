"""The stopping rules, written once: the training loop applies them to a run, restarts to each start.

A rule is chosen by name (``fit(..., stopping=...)``):

- ``"steps"`` (**converged**): every step size of an iteration is below ``tol`` in
  absolute value (the lessons' rule, the default); with ``tol = 0`` it never fires.
- ``"improvement"``: scikit-learn's rule: the training loss has not improved by at
  least ``tol`` for more than ``n_iter_no_change`` epochs in a row (an epoch counts
  when ``loss > best_loss - tol``; the run stops when the count exceeds
  ``n_iter_no_change``, so with 10 at the 11th such epoch) (see :class:`NoImprovement`).
- ``"early"``: scikit-learn's ``early_stopping``: the same count on the validation
  score (an epoch counts when ``score < best_score + tol``); the best weights come back.
- **ran out**: ``max_iter`` iterations are done.
- the callback may stop a run; a loss or derivative that stops being finite ends
  it (a run raises, a start of the restarts is frozen).

Example::

    >>> from chainrule.stopping import StoppingRule
    >>> rule = StoppingRule(tol=0.001, max_iter=1000)
    >>> rule.converged(0.0004), rule.ran_out(999), rule.ran_out(1000)
    (True, False, True)
    >>> rule.converged_reason(10)
    'every step size fell below 0.001 at iteration 10'

scikit-learn's count, by hand: losses 1.0, 0.95, 0.9499, 0.9498 with tol = 0.01 and
n_iter_no_change = 1: epoch 1 improves on inf, epoch 2 by 0.05, epochs 3 and 4 by less
than 0.01 (count 1, then 2 > 1: a plateau)::

    >>> from chainrule.stopping import NoImprovement
    >>> count = NoImprovement(tol=0.01, n_iter_no_change=1)
    >>> [count.see(loss) for loss in (1.0, 0.95, 0.9499, 0.9498)]
    [False, False, False, True]
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["StoppingRule", "NoImprovement", "RULES"]

RULES = ("steps", "improvement", "early")


class StoppingRule(NamedTuple):
    tol: float
    max_iter: int
    kind: str = "steps"  # one of RULES
    n_iter_no_change: float = 10  # a whole number, or math.inf (never a plateau)

    @property
    def by_steps(self) -> bool:
        """The lessons' rule: the run stops when every step size is below ``tol``."""
        return self.kind == "steps"

    @property
    def can_converge(self) -> bool:
        """False for ``tol = 0``: no step is small enough, so step sizes need not be measured to stop."""
        return self.tol > 0

    def converged(self, largest: Any) -> Any:
        """Every step size below ``tol``, from the largest |step| (one number, or one per start)."""
        return largest < self.tol

    def ran_out(self, iteration: int) -> bool:
        return iteration >= self.max_iter

    def converged_reason(self, iteration: int) -> str:
        return f"every step size fell below {self.tol:g} at iteration {iteration}"

    def ran_out_reason(self, largest: float) -> str:
        if not self.by_steps:
            watched = "training loss" if self.kind == "improvement" else "validation score"
            return (
                f"reached max_iter = {self.max_iter} iterations; the {watched} was still improving "
                f"by at least tol = {self.tol:g} within {self.n_iter_no_change + 1} epochs"
            )
        return (
            f"reached max_iter = {self.max_iter} iterations; the largest step size was still "
            f"{largest:.3g} (tol = {self.tol:g})"
        )

    def plateau_reason(self, iteration: int) -> str:
        watched = "training loss" if self.kind != "early" else "validation score"
        return (
            f"the {watched} did not improve by tol = {self.tol:g} for {self.n_iter_no_change + 1} "
            f"epochs in a row (n_iter_no_change = {self.n_iter_no_change}), at iteration {iteration}"
        )

    @staticmethod
    def callback_reason(iteration: int) -> str:
        return f"stopped by the callback at iteration {iteration}"


class NoImprovement:
    """scikit-learn's count of epochs without improvement: ``see(value)`` is True at a plateau.

    For a loss (``higher_is_better=False``) an epoch counts when ``value > best - tol``,
    for a score when ``value < best + tol``; any other epoch sets the count back to 0.
    ``best`` follows every strict improvement. A plateau: the count exceeds
    ``n_iter_no_change``. ``restart()`` sets the count to 0 (after the adaptive
    schedule lowered the rate).
    """

    def __init__(self, tol: float, n_iter_no_change: float, higher_is_better: bool = False) -> None:
        self.tol, self.patience, self.higher = tol, n_iter_no_change, higher_is_better
        self.best = -math.inf if higher_is_better else math.inf
        self.count = 0

    def see(self, value: float) -> bool:
        if self.higher:
            worse, better = value < self.best + self.tol, value > self.best
        else:
            worse, better = value > self.best - self.tol, value < self.best
        self.count = self.count + 1 if worse else 0
        if better:
            self.best = value
        return self.count > self.patience

    def restart(self) -> None:
        self.count = 0
