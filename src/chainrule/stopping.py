"""The stopping rules, written once: the training loop applies them to a run, restarts to each start.

- **converged**: every step size of an iteration is below ``tol`` in absolute
  value (the lessons' rule); with ``tol = 0`` it never fires.
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
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["StoppingRule"]


class StoppingRule(NamedTuple):
    tol: float
    max_iter: int

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
        return (
            f"reached max_iter = {self.max_iter} iterations; the largest step size was still "
            f"{largest:.3g} (tol = {self.tol:g})"
        )

    @staticmethod
    def callback_reason(iteration: int) -> str:
        return f"stopped by the callback at iteration {iteration}"
