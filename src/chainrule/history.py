"""History: what a training run did, written only by its own methods.

The training loop (:class:`chainrule.Trainer`) hands each iteration, or a block
of iterations, to :meth:`History.record` / :meth:`History.record_block`, and the
end of the run to :meth:`History.end` or :meth:`History.diverge`; the
:class:`GradientMonitor` adds its sentences with :meth:`History.add_health_event`.
Nothing else assigns a History's fields.

Example: one iteration of the lessons' table, recorded by hand::

    >>> import numpy as np
    >>> from chainrule.history import History
    >>> h = History([("b3", ())], tol=0.001)
    >>> h.record(1, 20.42, 1.566, [np.float64(0.0)], [np.float64(-15.66)], [np.float64(-1.566)])
    >>> h.n_iter, h.params["b3"].new_value[0], h.best_loss
    (1, np.float64(1.566), 20.42)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .checks import Integer, Number, check
from .errors import GradientHealthWarning, outside_stacklevel

__all__ = ["History", "Trace", "ParameterTrace", "GradientMonitor", "TRACE_LIMIT", "format_table"]

# Parameters with at most this many elements get their full value/derivative/step
# recorded per iteration; larger ones only their norms (memory stays small).
TRACE_LIMIT = 64


class Trace:
    """One parameter's record per iteration: old value, derivative, step size (new = old - step).

    Parameters with more than ``TRACE_LIMIT`` elements keep only the norms of
    their derivative and step (``full`` is False).
    """

    def __init__(self, name: str, shape: tuple[int, ...], full: bool) -> None:
        self.name, self.shape, self.full = name, shape, full
        self.value: list[Any] = []
        self.derivative: list[Any] = []
        self.step: list[Any] = []
        self._norms: tuple[list[float], list[float]] = ([], [])

    def record(self, old: Any, grad: Any, step: Any) -> None:
        """Keep the arrays (fresh each iteration, so no copy) or, for large parameters, their norms."""
        if self.full:
            self.value.append(old)
            self.derivative.append(grad)
            self.step.append(step)
        else:  # (written during a run, whose overflows are caught by the divergence check, not warned of)
            self._norms[0].append(quiet_norm(grad))
            self._norms[1].append(quiet_norm(step))

    def extend(self, old: np.ndarray, grad: np.ndarray, step: np.ndarray) -> None:
        """A block of iterations at once: arrays with the iteration as their first axis."""
        if self.full:
            self.value.extend(old)
            self.derivative.extend(grad)
            self.step.extend(step)
        else:
            k = len(grad)
            self._norms[0].extend(np.sqrt(np.sum(np.reshape(grad * grad, (k, -1)), axis=1)).tolist())
            self._norms[1].extend(np.sqrt(np.sum(np.reshape(step * step, (k, -1)), axis=1)).tolist())

    @property
    def new_value(self) -> list[Any]:
        return [v - s for v, s in zip(self.value, self.step)]

    def last_grad_norm(self) -> float:
        if not self.full:
            return self._norms[0][-1]
        return _norm(self.derivative[-1])

    @property
    def grad_norm(self) -> list[float]:
        """The derivative's Euclidean norm per iteration."""
        return [_norm(g) for g in self.derivative] if self.full else self._norms[0]

    @property
    def step_norm(self) -> list[float]:
        """The step's Euclidean norm per iteration."""
        return [_norm(s) for s in self.step] if self.full else self._norms[1]


def _norm(a: Any) -> float:
    """Euclidean norm as a float; inf rather than an overflow warning for huge values."""
    if type(a) is float:  # already a norm (see _distance); NumPy's float64 is a float too, but signed
        return a
    if a.size == 1:
        return abs(a.item())
    flat = np.reshape(a, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(np.dot(flat, flat)))  # (one dot product: no array of the squares is made)


def quiet_norm(a: Any) -> float:
    """The Euclidean norm by one dot product (no array of the squares), without :func:`_norm`'s errstate:
    for a run, whose overflows the divergence check reports (the Trainer's session ignores them)."""
    if type(a) is float:
        return a
    flat = np.reshape(a, -1)
    return math.sqrt(float(np.dot(flat, flat)))


class History:
    """What :func:`fit` did: loss per iteration, per-parameter traces, why it stopped.

    ``loss[k]`` is the loss at the start of iteration k + 1 (before its update),
    so ``final_loss`` is the loss before the last update; with mini-batches it
    is the running loss of the epoch (each batch's loss at the values it saw,
    weighed by its rows), and a trace's derivative is the last batch's while
    its step is the epoch's whole change. ``params[name]`` is a :class:`Trace`;
    ``n_iter``, ``stop_reason``, ``converged``, ``best_loss`` and ``best_iter``
    summarize the run; ``engine`` says how its steps ran: "eager" (the engine,
    op by op), "python" (``compile=True``, written out as Python arithmetic, see
    :mod:`chainrule.scalar`), "numpy" (``compile=True``, replayed NumPy calls, see
    :mod:`chainrule.trace`) or "python+numpy" (the first, then the second);
    "+eager" is added where the replay declined some batch shapes.

    With validation data (``fit(..., validation=...)``), ``validation_loss`` and
    ``validation_score`` hold one value per epoch, measured after its updates
    (the score: R^2 for regression losses, accuracy for classification losses),
    and ``best_validation_score`` / ``best_validation_iter`` the best of them.
    ``stopping`` names the stopping rule ("steps", "improvement", "early");
    ``learning_rates`` holds each epoch's rate when a schedule set it.
    """

    def __init__(self, names_shapes: Iterable[tuple[str, tuple[int, ...]]], tol: float) -> None:
        self.tol = tol
        self.loss: list[float] = []
        self.params = {n: Trace(n, s, int(np.prod(s)) <= TRACE_LIMIT) for n, s in names_shapes}
        self.n_iter = 0
        self.stop_reason = "not started"
        self.converged = False
        self.best_loss = math.inf
        self.best_iter: int | None = None
        self.largest_step = math.nan
        self._best: list[Any] = []
        self.health_events: list[str] = []  # what the GradientMonitor flagged, as sentences
        self.engine = "eager"
        self.seconds = 0.0
        self.restart_losses: np.ndarray | None = None
        self.restart_iterations: np.ndarray | None = None
        self.restart_converged: np.ndarray | None = None
        self.best_restart: int | None = None
        self.stopping = "steps"
        self.validation_loss: list[float] = []
        self.validation_score: list[float] = []
        self.best_validation_score: float | None = None  # None until a validation score is recorded
        self.best_validation_iter: int | None = None
        self._best_validation: list[Any] = []
        self.learning_rates: list[float] = []  # each epoch's rate, when a schedule set it

    # ---- the writers: only these assign the fields ------------------------------------------

    def record(
        self,
        iteration: int,
        loss: float,
        largest: float,
        olds: Sequence[Any],
        grads: Sequence[Any],
        steps: Sequence[Any],
    ) -> None:
        """One iteration: its loss (before the update), largest step, and each parameter's old value,
        derivative and step (arrays fresh each iteration, so kept without a copy; a step may be a norm)."""
        if loss < self.best_loss:
            self.best_loss, self.best_iter, self._best = loss, iteration, list(olds)
        self.loss.append(loss)
        for trace, old, g, s in zip(self.params.values(), olds, grads, steps):
            trace.record(old, g, s)
        self.n_iter, self.largest_step = iteration, largest

    def record_block(
        self,
        first: int,
        losses: Sequence[float],
        olds: Sequence[np.ndarray],
        grads: Sequence[np.ndarray],
        steps: Sequence[np.ndarray],
        largest: float,
    ) -> None:
        """Iterations ``first`` .. ``first + k - 1`` at once: ``olds[j]`` (and ``grads[j]``, ``steps[j]``)
        holds parameter j's values with the iteration as the first axis; ``largest`` is the last
        iteration's largest step."""
        k = len(losses)
        best = int(np.argmin(losses))
        if losses[best] < self.best_loss:
            self.best_loss, self.best_iter = float(losses[best]), first + best
            self._best = [np.array(o[best]) for o in olds]
        self.loss.extend(losses)
        for trace, old, g, s in zip(self.params.values(), olds, grads, steps):
            trace.extend(old, g, s)
        self.n_iter, self.largest_step = first + k - 1, largest

    def end(self, reason: str, converged: bool = False) -> None:
        """The run stopped: why, and whether it was the stopping rule on step sizes."""
        self.stop_reason, self.converged = reason, converged

    def diverge(self, reason: str) -> None:
        """The run failed: the loss or a derivative stopped being finite."""
        self.stop_reason, self.converged = reason, False

    def record_validation(self, loss: float, score: float, values: Sequence[Any]) -> None:
        """The last epoch's validation loss and score, at the parameters ``values`` it ended with."""
        self.validation_loss.append(loss)
        self.validation_score.append(score)
        if score > (-math.inf if self.best_validation_score is None else self.best_validation_score):
            self.best_validation_score, self.best_validation_iter = score, self.n_iter
            self._best_validation = [np.array(v, copy=True) for v in values]

    def record_rate(self, lr: float) -> None:
        """The learning rate a schedule set for the next epoch."""
        self.learning_rates.append(lr)

    def set_stopping(self, rule: str) -> None:
        self.stopping = rule

    @property
    def best_validation_state(self) -> dict[str, Any]:
        """{name: values} of the trained parameters after the epoch with the best validation score."""
        return dict(zip(self.params, self._best_validation))

    def set_engine(self, engine: str) -> None:
        """Which step engine ran (see the class docstring)."""
        self.engine = engine

    def add_time(self, seconds: float) -> None:
        self.seconds += seconds

    def add_health_event(self, message: str) -> None:
        self.health_events.append(message)

    def record_restarts(self, losses: np.ndarray, iterations: np.ndarray, converged: np.ndarray, best: int) -> None:
        """What ``fit(restarts=N)`` found: every start's final loss, iterations, convergence; the best."""
        self.restart_losses, self.restart_iterations = losses, iterations
        self.restart_converged, self.best_restart = converged, best

    @property
    def best_state(self) -> dict[str, Any]:
        """{name: values} of the trained parameters at the iteration with the best loss."""
        return dict(zip(self.params, self._best))

    @property
    def final_loss(self) -> float:
        return self.loss[-1] if self.loss else math.nan

    def table(self, name: Any = None, index: Any = None, max_rows: int = 30) -> str:
        """The lessons' table for one parameter (or one element of it by ``index``).

        Columns: iteration, old value, derivative of the loss, step size, new value.
        ``name`` defaults to the only trained parameter; long runs show the first
        and last rows.
        """
        trace = self._trace(name)
        pick = (lambda a: np.asarray(a)[index]) if index is not None else (lambda a: np.asarray(a).reshape(-1)[0])
        if trace.value and np.prod(trace.shape) > 1 and index is None:
            raise ValueError(f"table: '{trace.name}' has shape {trace.shape}; pass index= to pick an element")
        label = trace.name + ("" if index is None else str(list(np.atleast_1d(index))))
        head = ["iteration", f"old {label}", f"d loss/d {label}", "step size", f"new {label}"]
        rows = [
            [str(k + 1), *(f"{float(pick(a)):.6g}" for a in (v, d, s, v - s))]
            for k, (v, d, s) in enumerate(zip(trace.value, trace.derivative, trace.step))
        ]
        if len(rows) > max_rows:
            half = max_rows // 2
            rows = rows[:half] + [["...", "", "", "", ""]] + rows[-half:]
        return format_table(head, rows)

    def _trace(self, name: Any) -> Trace:
        if name is None:
            if len(self.params) != 1:
                raise ValueError(f"table: several parameters were trained ({list(self.params)}); name one")
            name = next(iter(self.params))
        name = getattr(name, "name", name)
        if name not in self.params:
            raise ValueError(f"unknown parameter {name!r}; trained: {list(self.params)}")
        trace = self.params[name]
        if not trace.full:
            raise ValueError(f"'{name}' has more than {TRACE_LIMIT} elements, so only norms were recorded")
        return trace

    def health(self) -> str:
        """Gradient health in a few lines: each parameter's derivative norm (first, smallest, largest, last)."""
        lines = ["gradient health (derivative norm per parameter: first, smallest, largest, last):"]
        for name, trace in self.params.items():
            norms = trace.grad_norm
            if norms:
                lines.append(f"  {name}: {norms[0]:.3g}, {min(norms):.3g}, {max(norms):.3g}, {norms[-1]:.3g}")
        lines += [f"  ! {event}" for event in self.health_events] or ["  no vanishing or exploding gradients seen"]
        return "\n".join(lines)

    def summary(self) -> str:
        """A few lines: iterations, stop reason, first/final/best loss."""
        first = self.loss[0] if self.loss else math.nan
        return (
            f"{self.n_iter} iterations in {self.seconds:.3g} s; {self.stop_reason}\n"
            f"loss: first {first:.6g}, final {self.final_loss:.6g}, best {self.best_loss:.6g}"
            f" (iteration {self.best_iter})"
        )

    def __repr__(self) -> str:
        return f"History(n_iter={self.n_iter}, final_loss={self.final_loss:.6g}, stop_reason={self.stop_reason!r})"

    # ---- the notebook display: the summary, the last rows and the loss curve (inline SVG, no matplotlib) ----

    def _repr_html_(self, rows: int = 8) -> str:
        import html  # NOTE: here, not at the top: the display is the only user (keeps this hunk in one place)

        shown = list(self.params)[:7]
        head = ["iteration", "loss"] + [
            n if self.params[n].full and not self.params[n].shape else f"|step {n}|" for n in shown
        ]
        columns = [self.params[n].value if h == n else self.params[n].step_norm for n, h in zip(shown, head[2:])]
        first = max(0, len(self.loss) - rows)
        body = [
            [str(k + 1), f"{self.loss[k]:.6g}", *(f"{float(c[k]):.6g}" for c in columns)]
            for k in range(first, len(self.loss))
        ]
        cell = lambda tag, text: f"<{tag} style='text-align:right'>{html.escape(text)}</{tag}>"  # noqa: E731
        table = "".join(
            "<tr>" + "".join(cell(t, c) for c in r) + "</tr>" for t, r in [("th", head)] + [("td", r) for r in body]
        )
        summary = html.escape(self.summary()).replace("\n", "<br>")
        return f"<div><p>{summary}</p>{self._curve_svg()}<table>{table}</table></div>"

    def _curve_svg(self, width: int = 360, height: int = 120) -> str:
        """The loss per iteration as a polyline (log scale when it spans more than two decades)."""
        loss = np.asarray(self.loss, float)
        keep = np.isfinite(loss) & (loss > 0) if loss.size else loss.astype(bool)
        if keep.sum() < 2:
            return ""
        its, values = np.flatnonzero(keep) + 1, loss[keep]
        log = values.max() / values.min() > 100
        v = np.log10(values) if log else values
        span = (v.max() - v.min()) or 1.0
        px = 30 + (width - 40) * (its - its[0]) / max(its[-1] - its[0], 1)
        py = 10 + (height - 30) * (v.max() - v) / span
        picked = _per_pixel(px, py)  # a long run: about 4 points a pixel column, not one an iteration
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px[picked], py[picked]))
        label = (
            f"loss{' (log scale)' if log else ''}: {values.max():.3g} to {values.min():.3g}, iterations 1 to {its[-1]}"
        )
        return (
            f"<svg width='{width}' height='{height}' role='img'>"
            f"<title>{label}</title><polyline fill='none' stroke='#e377c2' stroke-width='2' points='{points}'/>"
            f"<text x='30' y='{height - 4}' font-size='11' font-family='sans-serif'>{label}</text></svg>"
        )


def _per_pixel(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """The indices of the points to draw: in each pixel column (px increasing) its first, last, highest
    and lowest point, in order, so the line looks the same and a one-iteration spike stays visible."""
    columns = np.floor(px).astype(np.int64)
    starts = np.flatnonzero(np.diff(columns, prepend=columns[0] - 1))
    ends = np.append(starts[1:], len(px))
    if len(px) <= 4 * len(starts):
        return np.arange(len(px))
    keep = [starts, ends - 1]
    keep += [np.array([a + np.argmin(py[a:b]), a + np.argmax(py[a:b])]) for a, b in zip(starts, ends)]
    return np.unique(np.concatenate(keep))


def format_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns right-aligned under a header and a rule of dashes."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


_THRESHOLD, _PATIENCE = Number(low=0), Integer(low=1)


class GradientMonitor:
    """Watches the derivatives during :func:`fit` and warns once per parameter and kind.

    - **vanishing**: a parameter's derivative norm stays below ``vanishing`` times
      the largest derivative norm among the trained parameters (or at exactly 0)
      for ``patience`` iterations in a row. Relative, so a model that simply
      converges (every derivative small) is not flagged.
    - **exploding**: a parameter's derivative norm rises above ``exploding``.

    Each event becomes a :class:`GradientHealthWarning` naming the parameter and
    a sentence in ``History.health_events``.
    """

    def __init__(self, vanishing: float = 1e-4, exploding: float = 1e6, patience: int = 10) -> None:
        self.vanishing = check("GradientMonitor", "vanishing", vanishing, _THRESHOLD)
        self.exploding = check("GradientMonitor", "exploding", exploding, _THRESHOLD)
        self.patience = check("GradientMonitor", "patience", patience, _PATIENCE)
        self.reset()

    def reset(self) -> None:
        self.low: dict[str, int] = {}
        self.flagged: set[tuple[str, str]] = set()

    def __call__(self, history: History) -> None:
        self.observe(history, {name: trace.last_grad_norm() for name, trace in history.params.items()}, history.n_iter)

    def observe(self, history: History, norms: dict[str, float], iteration: int) -> None:
        """Look at one iteration's derivative norms ({parameter name: norm})."""
        top = max(norms.values())
        small = self.vanishing * top
        for name, norm in norms.items():
            if norm > self.exploding:
                self._flag(
                    history,
                    name,
                    "exploding",
                    f"exploding gradient: the derivative of '{name}' reached "
                    f"{norm:.3g} at iteration {iteration} (threshold {self.exploding:g})",
                )
            low = self.low[name] = self.low.get(name, 0) + 1 if norm < small or norm == 0 else 0
            if low >= self.patience:
                self._flag(
                    history,
                    name,
                    "vanishing",
                    f"vanishing gradient: the derivative of '{name}' stayed "
                    f"below {self.vanishing:g} x the largest one for {self.patience} iterations "
                    f"(iteration {iteration}: {norm:.3g} against {top:.3g})",
                )

    def observe_block(self, history: History, norms: np.ndarray, first: int) -> None:
        """Look at a block of iterations at once: ``norms[i, j]`` is parameter j's derivative norm at
        iteration ``first + i``. Flags what calling :meth:`observe` on each would, in the same order."""
        names = list(history.params)
        top = norms.max(axis=1)
        small = self.vanishing * top
        events = []
        for j, name in enumerate(names):
            column = norms[:, j]
            for i in np.flatnonzero(column > self.exploding)[:1].tolist():
                events.append(
                    (
                        i,
                        j,
                        0,
                        name,
                        "exploding",
                        f"exploding gradient: the derivative of '{name}' "
                        f"reached {column[i]:.3g} at iteration {first + i} (threshold {self.exploding:g})",
                    )
                )
            run, seen = self.low.get(name, 0), False
            for i, low in enumerate(((column < small) | (column == 0)).tolist()):
                run = run + 1 if low else 0
                if run >= self.patience and not seen:
                    seen = True
                    events.append(
                        (
                            i,
                            j,
                            1,
                            name,
                            "vanishing",
                            f"vanishing gradient: the derivative of '{name}' "
                            f"stayed below {self.vanishing:g} x the largest one for {self.patience} "
                            f"iterations (iteration {first + i}: {column[i]:.3g} against {top[i]:.3g})",
                        )
                    )
            self.low[name] = run
        for *_, name, kind, message in sorted(events, key=lambda e: e[:3]):
            self._flag(history, name, kind, message)

    def observe_grads(self, history: History, grads: Sequence[np.ndarray], first: int) -> None:
        """Look at a block of iterations from the derivatives themselves: ``grads[j]`` holds parameter j's
        with the iteration as the first axis."""
        k = len(grads[0])
        norms = np.stack(
            [np.abs(g.reshape(k)) if g[0].size == 1 else np.sqrt(np.sum(g.reshape(k, -1) ** 2, axis=1)) for g in grads],
            axis=1,
        )
        self.observe_block(history, norms, first)

    def _flag(self, history: History, name: str, kind: str, message: str) -> None:
        if (name, kind) not in self.flagged:
            self.flagged.add((name, kind))
            history.add_health_event(message)
            warnings.warn(message, GradientHealthWarning, stacklevel=outside_stacklevel())


ParameterTrace = Trace  # the name the architecture uses; both are public
