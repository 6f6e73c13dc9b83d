"""Training by the lessons' rules: forward, loss, backward, update, repeat.

:func:`fit` stops when every step size of an iteration is below ``tol`` (the
lessons' rule), after ``max_iter`` iterations (with a ConvergenceWarning), or
raises :class:`DivergenceError` when the loss or a derivative stops being finite.
It returns a :class:`History` of the loss and of each trained parameter's value,
derivative and step size per iteration.
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings

import numpy as np

from .data import training_arrays
from .losses import _targets, cross_entropy, get_loss
from .nn import Module, Parameter
from .optim import GradientDescent, Optimizer
from .tensor import is_anomaly_enabled, no_grad, tensor_from

# Parameters with at most this many elements get their full value/derivative/step
# recorded per iteration; larger ones only their norms (memory stays small).
TRACE_LIMIT = 64


class ConvergenceWarning(UserWarning):
    """Training reached ``max_iter`` before every step size fell below ``tol``."""


class GradientHealthWarning(UserWarning):
    """A parameter's gradient vanished or exploded during training (see :class:`GradientMonitor`)."""


class DivergenceError(FloatingPointError, ValueError):
    """The loss or a derivative became NaN or inf; the parameters were restored to the best seen.

    A numeric failure that a hyperparameter value (most often the learning rate)
    usually causes: it is both a FloatingPointError and a ValueError.

    Attributes: ``iteration``, ``parameter`` (its name) and ``history``.
    """

    def __init__(self, message, iteration, parameter, history):
        super().__init__(message)
        self.iteration, self.parameter, self.history = iteration, parameter, history


class Trace:
    """One parameter's record per iteration: old value, derivative, step size (new = old - step).

    Parameters with more than ``TRACE_LIMIT`` elements keep only the norms of
    their derivative and step (``full`` is False).
    """

    def __init__(self, name, shape, full):
        self.name, self.shape, self.full = name, shape, full
        self.value, self.derivative, self.step = [], [], []
        self._norms = ([], [])

    def record(self, old, grad, step):
        """Keep the arrays (fresh each iteration, so no copy) or, for large parameters, their norms."""
        if self.full:
            self.value.append(old)
            self.derivative.append(grad)
            self.step.append(step)
        else:
            self._norms[0].append(_norm(grad))
            self._norms[1].append(_norm(step))

    def extend(self, old, grad, step):
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
    def new_value(self):
        return [v - s for v, s in zip(self.value, self.step)]

    def last_grad_norm(self):
        if not self.full:
            return self._norms[0][-1]
        return _norm(self.derivative[-1])

    @property
    def grad_norm(self):
        """The derivative's Euclidean norm per iteration."""
        return [_norm(g) for g in self.derivative] if self.full else self._norms[0]

    @property
    def step_norm(self):
        """The step's Euclidean norm per iteration."""
        return [_norm(s) for s in self.step] if self.full else self._norms[1]


def _norm(a):
    """Euclidean norm as a float; inf rather than an overflow warning for huge values."""
    if type(a) is float:  # already a norm (see _distance); NumPy's float64 is a float too, but signed
        return a
    if a.size == 1:
        return abs(a.item())
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(np.sum(a * a)))


def _distance(a, b, piece=1 << 15):
    """The Euclidean norm of a - b, a piece at a time: no array of their size is made."""
    a, b = a.reshape(-1), b.reshape(-1)
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, a.size, piece):
            d = a[i:i + piece] - b[i:i + piece]
            total += float(np.dot(d, d))
    return math.sqrt(total)


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
    """

    def __init__(self, names_shapes, tol):
        self.tol = tol
        self.loss = []
        self.params = {n: Trace(n, s, int(np.prod(s)) <= TRACE_LIMIT) for n, s in names_shapes}
        self.n_iter = 0
        self.stop_reason = "not started"
        self.converged = False
        self.best_loss = math.inf
        self.best_iter = None
        self.largest_step = math.nan
        self._best = []
        self.health_events = []  # what the GradientMonitor flagged, as sentences
        self.engine = "eager"
        self.seconds = 0.0

    @property
    def best_state(self):
        """{name: values} of the trained parameters at the iteration with the best loss."""
        return dict(zip(self.params, self._best))

    @property
    def final_loss(self):
        return self.loss[-1] if self.loss else math.nan

    def table(self, name=None, index=None, max_rows=30):
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
        rows = [[str(k + 1), *(f"{float(pick(a)):.6g}" for a in (v, d, s, v - s))]
                for k, (v, d, s) in enumerate(zip(trace.value, trace.derivative, trace.step))]
        if len(rows) > max_rows:
            half = max_rows // 2
            rows = rows[:half] + [["...", "", "", "", ""]] + rows[-half:]
        return _format_table(head, rows)

    def _trace(self, name):
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

    def health(self):
        """Gradient health in a few lines: each parameter's derivative norm (first, smallest, largest, last)."""
        lines = ["gradient health (derivative norm per parameter: first, smallest, largest, last):"]
        for name, trace in self.params.items():
            norms = trace.grad_norm
            if norms:
                lines.append(f"  {name}: {norms[0]:.3g}, {min(norms):.3g}, {max(norms):.3g}, {norms[-1]:.3g}")
        lines += [f"  ! {event}" for event in self.health_events] or ["  no vanishing or exploding gradients seen"]
        return "\n".join(lines)

    def summary(self):
        """A few lines: iterations, stop reason, first/final/best loss."""
        first = self.loss[0] if self.loss else math.nan
        return (f"{self.n_iter} iterations in {self.seconds:.3g} s; {self.stop_reason}\n"
                f"loss: first {first:.6g}, final {self.final_loss:.6g}, best {self.best_loss:.6g}"
                f" (iteration {self.best_iter})")

    def __repr__(self):
        return f"History(n_iter={self.n_iter}, final_loss={self.final_loss:.6g}, stop_reason={self.stop_reason!r})"


def _format_table(head, rows):
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


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

    def __init__(self, vanishing=1e-4, exploding=1e6, patience=10):
        self.vanishing = _number("GradientMonitor", "vanishing", vanishing, 0)
        self.exploding = _number("GradientMonitor", "exploding", exploding, 0)
        self.patience = _whole("GradientMonitor", "patience", patience, 1)
        self.reset()

    def reset(self):
        self.low, self.flagged = {}, set()

    def __call__(self, history):
        self.observe(history, {name: trace.last_grad_norm() for name, trace in history.params.items()},
                     history.n_iter)

    def observe(self, history, norms, iteration):
        """Look at one iteration's derivative norms ({parameter name: norm})."""
        top = max(norms.values())
        small = self.vanishing * top
        for name, norm in norms.items():
            if norm > self.exploding:
                self._flag(history, name, "exploding", f"exploding gradient: the derivative of '{name}' reached "
                           f"{norm:.3g} at iteration {iteration} (threshold {self.exploding:g})")
            low = self.low[name] = self.low.get(name, 0) + 1 if norm < small or norm == 0 else 0
            if low >= self.patience:
                self._flag(history, name, "vanishing", f"vanishing gradient: the derivative of '{name}' stayed "
                           f"below {self.vanishing:g} x the largest one for {self.patience} iterations "
                           f"(iteration {iteration}: {norm:.3g} against {top:.3g})")

    def observe_block(self, history, norms, first):
        """Look at a block of iterations at once: ``norms[i, j]`` is parameter j's derivative norm at
        iteration ``first + i``. Flags what calling :meth:`observe` on each would, in the same order."""
        names = list(history.params)
        top = norms.max(axis=1)
        small = self.vanishing * top
        events = []
        for j, name in enumerate(names):
            column = norms[:, j]
            for i in np.flatnonzero(column > self.exploding)[:1].tolist():
                events.append((i, j, 0, name, "exploding", f"exploding gradient: the derivative of '{name}' "
                               f"reached {column[i]:.3g} at iteration {first + i} (threshold {self.exploding:g})"))
            run, seen = self.low.get(name, 0), False
            for i, low in enumerate(((column < small) | (column == 0)).tolist()):
                run = run + 1 if low else 0
                if run >= self.patience and not seen:
                    seen = True
                    events.append((i, j, 1, name, "vanishing", f"vanishing gradient: the derivative of '{name}' "
                                   f"stayed below {self.vanishing:g} x the largest one for {self.patience} "
                                   f"iterations (iteration {first + i}: {column[i]:.3g} against {top[i]:.3g})"))
            self.low[name] = run
        for *_, name, kind, message in sorted(events, key=lambda e: e[:3]):
            self._flag(history, name, kind, message)

    def _flag(self, history, name, kind, message):
        if (name, kind) not in self.flagged:
            self.flagged.add((name, kind))
            history.health_events.append(message)
            warnings.warn(message, GradientHealthWarning, stacklevel=outside_stacklevel())


def outside_stacklevel():
    """The ``stacklevel`` that makes a warning point at the first caller outside chainrule."""
    here, frame, level = os.path.dirname(os.path.abspath(__file__)) + os.sep, sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    return level


# ---- fit -----------------------------------------------------------------------------


def fit(model, x, y, *, loss="ssr", optimizer=None, params=None, tol=0.001, max_iter=1000,
        batch_size=None, seed=None, callback=None, monitor=True, restarts=None, compile=False):
    """Train ``model`` on (x, y) by backpropagation and gradient descent; return a :class:`History`.

    - ``loss``: "ssr" (the lessons'), "mse", "cross_entropy", "binary_cross_entropy" or a function.
    - ``optimizer``: default ``GradientDescent(lr=0.1)``; fit attaches it to the
      trained parameters with fresh state.
    - ``params``: names or Parameters to train; the others are held fixed, bit for bit.
    - Stops when every step size of an iteration is below ``tol`` in absolute
      value, or after ``max_iter`` iterations (a ConvergenceWarning; with
      ``tol=0`` that is the plan, so filter the warning).
    - ``batch_size``: mini-batches shuffled each epoch from ``seed``; then an
      iteration is an epoch, and the stopping rule looks at every step of it.
    - ``callback(history)``: called after every iteration; returning True stops
      training there (progress bars, Ctrl-C handling, early stopping).
    - ``monitor``: a :class:`GradientMonitor` warning of vanishing and exploding
      gradients (True: the default thresholds; False: none).
    - ``restarts=N``: train N starts drawn from ``seed`` with the model's
      ``reset_parameters`` in one vectorized run (see :mod:`chainrule.restarts`),
      then keep the best: the model ends where a single run from that start
      ends, and the History (of that run) also holds ``restart_losses`` (every
      start's loss at its final values, after its last update),
      ``restart_iterations``, ``restart_converged`` and ``best_restart``.
    - ``compile=True``: record one step's graph and replay it as a flat list of
      NumPy calls (see :mod:`chainrule.trace`): the same numbers, less Python
      overhead. A tiny float64 model trained on the full batch (the lessons'
      size: at most about 2000 float operations a step) is written out as plain Python
      arithmetic instead, loop and update included (see :mod:`chainrule.scalar`):
      the same numbers to rounding, twenty times faster than PyTorch on the lessons' network. Falls back
      to eager with a ``CompileWarning`` where it cannot apply; ``History.engine``
      says which ran.

    Example: the lessons' gradient descent on b3 alone, from b3 = 0::

        >>> import chainrule as cr
        >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
        >>> x, y = cr.data.dosage()
        >>> h = cr.fit(net, x, y, params=["b3"])
        >>> h.n_iter, round(net.b3.item(), 3)
        (10, 2.609)
    """
    if not isinstance(model, Module):
        raise TypeError(f"fit: model must be a chainrule.nn.Module, got {type(model).__name__}")
    tol = _number("fit", "tol", tol, 0)
    max_iter = _whole("fit", "max_iter", max_iter, 1)
    batch_size = _whole("fit", "batch_size", batch_size, 1, optional=True)
    seed = _whole("fit", "seed", seed, 0, optional=True)
    restarts = _whole("fit", "restarts", restarts, 1, optional=True)
    loss_fn = get_loss(loss)
    named = _trained(model, params)
    dtype = named[0][1].dtype
    x, y = training_arrays(x, y, dtype, getattr(loss_fn, "__name__", "") == "cross_entropy")
    optimizer = GradientDescent(lr=0.1) if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"fit: optimizer must be a chainrule.optim.Optimizer, got {type(optimizer).__name__}")
    watcher, hook = _after_iteration(monitor, callback)
    frozen = [p for p in model.parameters() if all(p is not q for _, q in named)]
    population = _restarts(model, x, y, loss_fn, optimizer, named, frozen, tol, max_iter, batch_size, seed,
                           restarts, compile)
    optimizer.attach([p for _, p in named])
    history = History([(n, p.shape) for n, p in named], tol)
    if population is not None:
        history.restart_losses, history.restart_iterations, history.restart_converged, history.best_restart = \
            population
    start = time.perf_counter()
    with _held(frozen), np.errstate(over="ignore", invalid="ignore"):  # blow-ups are caught, and named
        step, done, ended = _forward_backward, 0, False
        history.engine = "numpy" if compile and not is_anomaly_enabled() else "eager"
        if compile:
            from .engines import train as train_written_out
            from .trace import CompiledStep
            y = _one_hot(model, x, y) if loss_fn is cross_entropy else y
            if batch_size is None or batch_size >= len(x):  # tiny float64 models: plain Python arithmetic
                done, ended = train_written_out(model, x, y, loss_fn, optimizer, named, history, tol, max_iter,
                                                watcher, callback, _forward_backward)
            step = CompiledStep(model, loss_fn, [p for _, p in named], _forward_backward)
        if history.engine == "python" and not ended and done < max_iter:  # handed over to the NumPy replay
            history.engine = "python+numpy" if done else "numpy"
        if not ended and done == max_iter:
            _ran_out(history, max_iter, history.largest_step, tol)
        elif not ended:
            try:
                _loop(model, x, y, step, loss_fn, optimizer, named, history, tol, max_iter, batch_size, seed, hook,
                      done + 1)
            finally:
                refused = [key for key, tape in getattr(step, "tapes", {}).items() if tape is None]
                if refused:  # the replay declined some input shapes (a CompileWarning said why)
                    whole = len(refused) == len(step.tapes) and history.engine == "numpy"
                    history.engine = "eager" if whole else history.engine + "+eager"
    history.seconds = time.perf_counter() - start
    for _, p in named:  # the last gradients are in the History too: give .grad its own copy to accumulate into
        if p.grad is not None:
            p.grad = p.grad.copy()
    return history


def _one_hot(model, x, labels):
    """Class labels as one-hot rows, made and checked once (a replayed step needs its targets as data)."""
    with no_grad():
        classes = model(tensor_from(x[:1])).shape[-1]
    return _targets(np.empty((len(labels), classes), dtype=x.dtype), labels)


def _restarts(model, x, y, loss_fn, optimizer, named, frozen, tol, max_iter, batch_size, seed, restarts, compile):
    """Train ``restarts`` starts at once and set the model to the best one's start (None: no restarts)."""
    if restarts is None:
        return None
    from .restarts import draw_starts, train_population
    starts = draw_starts(model, named, restarts, seed)
    with _held(frozen), np.errstate(all="ignore"):
        final, iterations, converged = train_population(model, x, y, loss_fn, optimizer, named, starts, tol,
                                                        max_iter, batch_size, seed, compile)
    best = int(np.argmin(final))
    for (_, p), start in zip(named, starts):
        p.data[...] = start[best]
    return final, iterations, converged, best


def _after_iteration(monitor, callback):
    """(the GradientMonitor or None, one hook for the loop: the monitor, then the user's callback)."""
    if monitor is True:
        monitor = GradientMonitor()
    if monitor is not None and monitor is not False and not isinstance(monitor, GradientMonitor):
        raise TypeError(f"fit: monitor must be True, False or a GradientMonitor, got {type(monitor).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"fit: callback must be a function of the history, got {type(callback).__name__}")
    if monitor:
        monitor.reset()
    if not monitor:
        return None, callback

    def hook(history):
        monitor(history)
        return callback(history) if callback is not None else False
    return monitor, hook


def _loop(model, x, y, step, loss_fn, optimizer, named, history, tol, max_iter, batch_size, seed, callback,
          first=1):
    batches = _Batches(x, y, batch_size, seed, getattr(loss_fn, "reduction", "mean") == "mean")
    params = [p for _, p in named]
    watch = tol > 0 or batches.whole  # measure every step's size (else only each epoch's last)
    for it in range(first, max_iter + 1):
        olds = [p.data.copy() for p in params]
        value, largest = 0.0, 0.0
        for xb, yb, weight in batches:
            loss, grads = step(model, xb, yb, loss_fn, params)
            optimizer.step()
            # NOTE: with tol = 0 no step is small enough to stop, so only the epoch's last step is measured
            # (for its finiteness: a NaN step of an earlier batch makes the next batch's loss NaN).
            top = optimizer.largest_step() if watch else 0.0
            if not math.isfinite(loss + top):  # a NaN or inf loss, derivative or step
                _diverged(it, loss, grads, optimizer.step_sizes, named, history, history._best or olds)
            value, largest = value + loss * weight, max(largest, top)
        if not watch:
            largest = optimizer.largest_step()
            if not math.isfinite(largest):
                _diverged(it, loss, grads, optimizer.step_sizes, named, history, history._best or olds)
        steps = [s if batches.whole and s is not None else old - p.data if trace.full else _distance(old, p.data)
                 for old, p, s, trace in zip(olds, params, optimizer.step_sizes, history.params.values())]
        _record(history, it, value, largest, olds, grads, steps)
        stop = callback is not None and callback(history)
        if largest < tol:
            history.stop_reason = f"every step size fell below {tol:g} at iteration {it}"
            history.converged = True
            break
        if stop:
            history.stop_reason = f"stopped by the callback at iteration {it}"
            break
    else:
        _ran_out(history, max_iter, largest, tol)


class _Batches:
    """The (inputs, targets, weight) of each step of an epoch: the whole data, or fresh mini-batches.

    A batch's weight turns its loss into its share of the epoch's: its rows / n for a mean loss.
    """

    def __init__(self, x, y, batch_size, seed, mean):
        self.x, self.y, self.size, self.mean = x, y, batch_size, mean
        self.whole = batch_size is None or batch_size >= len(x)
        self.rng = np.random.default_rng(seed)
        self.all = [(tensor_from(x), y, 1.0)]

    def __iter__(self):
        if self.whole:
            return iter(self.all)
        n = len(self.x)
        return ((xb, yb, len(yb) / n if self.mean else 1.0)
                for xb, yb in _batches(self.rng, self.x, self.y, self.size))


def _record(history, it, value, largest, olds, grads, steps):
    """One iteration into the History: loss, best so far, each parameter's old value, derivative, step."""
    if value < history.best_loss:
        history.best_loss, history.best_iter, history._best = value, it, olds
    history.loss.append(value)
    for trace, old, g, s in zip(history.params.values(), olds, grads, steps):
        trace.record(old, g, s)
    history.n_iter, history.largest_step = it, largest


def _ran_out(history, max_iter, largest, tol):
    """max_iter reached: say so, with a ConvergenceWarning (with tol = 0 no step can be small enough)."""
    history.stop_reason = (f"reached max_iter = {max_iter} iterations; the largest step size was still "
                           f"{largest:.3g} (tol = {tol:g})")
    warnings.warn(f"fit: {history.stop_reason}. Raise max_iter or the learning rate.", ConvergenceWarning,
                  stacklevel=outside_stacklevel())


def _forward_backward(model, x, y, loss_fn, params):
    for p in params:
        p.grad = None
    out = loss_fn(model(x), y)
    out.backward()
    return out.item(), [p.grad if p.grad is not None else np.zeros_like(p.data) for p in params]


def _batches(rng, x, y, batch_size):
    """(inputs, targets) mini-batches of a fresh random permutation of the rows, gathered one at a time."""
    order = rng.permutation(len(x))
    for i in range(0, len(x), batch_size):
        rows = order[i:i + batch_size]
        yield tensor_from(x[rows]), y[rows]


def _diverged(it, loss, grads, steps, named, history, restore):
    """Put back the best parameters seen and raise, naming the first parameter that blew up."""
    for (_, p), b in zip(named, restore):
        p.data[...] = b
    names = [name for name, _ in named]
    bad_grad = next((n for n, g in zip(names, grads) if not np.all(np.isfinite(g))), None)
    bad_step = next((n for n, s in zip(names, steps) if s is not None and not np.all(np.isfinite(s))), None)
    if bad_grad:
        kind = "nan" if any(np.isnan(g).any() for g in grads) else "inf"
        bad, who = bad_grad, f"the derivative of '{bad_grad}' became {kind}"
    elif bad_step:
        bad, who = bad_step, f"the step size of '{bad_step}' overflowed (learning rate x derivative)"
    else:  # the loss overflowed first: name the parameter with the largest derivative
        sizes = [float(np.max(np.abs(g))) for g in grads]
        bad = names[int(np.argmax(sizes))]
        who = f"the loss is {loss} and the largest derivative is that of '{bad}' ({max(sizes):.3g})"
    history.stop_reason = f"diverged at iteration {it}: {who}"
    seen = (f"the best seen (loss {history.best_loss:.6g} at iteration {history.best_iter})"
            if history.best_iter else "their values before this iteration")
    raise DivergenceError(f"fit: {history.stop_reason}; parameters restored to {seen}. "
                          "Try a smaller learning rate.", it, bad, history)


class _held:
    """Turn off requires_grad of the frozen parameters for the run (no gradient, no change)."""

    def __init__(self, frozen):
        self.frozen = frozen

    def __enter__(self):
        self.before = [p.requires_grad for p in self.frozen]
        for p in self.frozen:
            p.requires_grad = False

    def __exit__(self, *exc):
        for p, before in zip(self.frozen, self.before):
            p.requires_grad = before


def _trained(model, params):
    """(name, Parameter) pairs to train, from names or Parameters (None: all)."""
    named = list(model.named_parameters())
    if not named:
        raise ValueError(f"fit: {type(model).__name__} has no parameters to train")
    if params is None:
        return named
    if isinstance(params, (str, Parameter)):
        params = [params]
    by_name, chosen = dict(named), []
    for item in params:
        if isinstance(item, str):
            if item not in by_name:
                raise ValueError(f"fit: params names {item!r}, which is not a parameter of "
                                 f"{type(model).__name__}; it has {list(by_name)}")
            chosen.append((item, by_name[item]))
        elif isinstance(item, Parameter):
            match = [(n, p) for n, p in named if p is item]
            if not match:
                raise ValueError(f"fit: params includes {item!r}, which is not a parameter of this model")
            chosen.append(match[0])
        else:
            raise TypeError(f"fit: params must be parameter names or Parameters, got {type(item).__name__}")
    if not chosen:
        raise ValueError("fit: params is empty; name at least one parameter to train (or None for all)")
    return list(dict((n, (n, p)) for n, p in chosen).values())


def _number(owner, name, value, low):
    """``value`` as a float, or a ValueError naming ``owner``'s argument, its range and what was given."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < low:
        raise ValueError(f"{owner}: {name} must be a finite number >= {low}, got {value!r}")
    return float(value)


def _whole(owner, name, value, low, optional=False):
    """``value`` as an int >= ``low`` (or None when ``optional``), or a ValueError saying so."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        allowed = f"{'None or ' if optional else ''}an integer >= {low}"
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")
    return int(value)
