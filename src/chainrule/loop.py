"""The one training loop: :class:`Trainer` owns a run and applies the stopping rules.

A step engine (:mod:`chainrule.engines`) computes an iteration, or a block of
them; the Trainer records it in the History (through History's own methods),
lets the :class:`~chainrule.GradientMonitor` look, calls the callback, and
decides whether the run goes on: every step size below ``tol`` (the lessons'
rule), the callback asked to stop, ``max_iter`` reached (a ConvergenceWarning),
or the loss or a derivative stopped being finite (a DivergenceError, the
parameters restored to the best seen). ``fit`` is ``Trainer(...).run()``; a
browser session or ``partial_fit`` steps the same object.

Example: the lessons' gradient descent on b3, one iteration at a time::

    >>> import chainrule as cr
    >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
    >>> x, y = cr.data.dosage()
    >>> trainer = cr.Trainer(net, x, y, params=["b3"])
    >>> first = trainer.step()                  # dSSR/db3 = -15.66 at b3 = 0, step -1.566
    >>> round(first.loss, 2), round(net.b3.item(), 3)
    (20.42, 1.566)
    >>> trainer.optimizer.lr = 0.05             # hyperparameters may change between steps
    >>> net.b3.data[...] = 2.0                  # and so may the parameters: training goes on from there
    >>> history = trainer.run()
    >>> trainer.stop_reason is not None, round(net.b3.item(), 2)
    (True, 2.61)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .checks import Integer, Number, check
from .data import training_arrays
from .engines import BLOCK, Block, Epochs, Failure, Iteration, Settings, WrittenOut, forward_backward, one_hot, replayed
from .errors import ConvergenceWarning, DivergenceError, FirstIterationWarning, outside_stacklevel
from .history import GradientMonitor, History
from .losses import cross_entropy, get_loss
from .nn import Module, Parameter
from .optim import GradientDescent, Optimizer
from .restarts import check_population, draw_starts, train_population
from .stopping import StoppingRule
from .tensor import Tensor, is_anomaly_enabled

__all__ = ["Trainer", "ARGUMENTS", "FirstIterationWarning"]


# What fit's (and the Trainer's) numeric arguments must be: one table, worded by checks.check.
ARGUMENTS = {
    "tol": Number(low=0),
    "max_iter": Integer(low=1),
    "batch_size": Integer(low=1, optional=True),
    "seed": Integer(low=0, optional=True),
    "restarts": Integer(low=1, optional=True),
}


class Trainer:
    """One training run of ``model`` on (x, y) that you can step: ``Trainer(model, x, y, **the keywords of fit)``.

    - ``step()`` runs one iteration (the whole batch, or one epoch with ``batch_size``)
      and returns what was recorded (an :class:`~chainrule.engines.Iteration`: loss,
      largest step, each parameter's old value, derivative and step).
    - ``run()`` goes on until a stopping rule ends the run and returns the History.
    - ``history`` and ``stop_reason`` (None while the run goes on) say where it stands.

    Between steps the optimizer keeps its state (Momentum's velocity and Adam's
    moments go on), its hyperparameters may change (``trainer.optimizer.lr = 0.01``)
    and the parameters may be set by hand: training goes on from there. Once a
    stopping rule has ended the run, ``step()`` raises a RuntimeError.
    ``N`` eager ``step()`` calls give bit for bit what ``fit(..., max_iter=N, tol=0)``
    gives. The keywords are those of :func:`chainrule.fit`.
    """

    def __init__(
        self,
        model: Module,
        x: Any,
        y: Any,
        *,
        loss: str | Callable[..., Tensor] = "ssr",
        optimizer: Optimizer | None = None,
        params: Any = None,
        tol: float = 0.001,
        max_iter: int = 1000,
        batch_size: int | None = None,
        seed: int | None = None,
        callback: Callable[[History], Any] | None = None,
        monitor: bool | GradientMonitor = True,
        restarts: int | None = None,
        compile: bool = False,
    ) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"fit: model must be a chainrule.nn.Module, got {type(model).__name__}")
        tol, max_iter, batch_size, seed, self.restarts = (
            check("fit", name, value, ARGUMENTS[name])
            for name, value in (
                ("tol", tol),
                ("max_iter", max_iter),
                ("batch_size", batch_size),
                ("seed", seed),
                ("restarts", restarts),
            )
        )
        loss_fn = get_loss(loss)
        named = _trained(model, params)
        x, y = training_arrays(x, y, named[0][1].dtype, getattr(loss_fn, "__name__", "") == "cross_entropy")
        optimizer = GradientDescent(lr=0.1) if optimizer is None else optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"fit: optimizer must be a chainrule.optim.Optimizer, got {type(optimizer).__name__}")
        self.monitor = _monitor(monitor)
        if callback is not None and not callable(callback):
            raise TypeError(f"fit: callback must be a function of the history, got {type(callback).__name__}")
        self.callback = callback
        if self.restarts is not None:  # before a single start is drawn
            check_population(named, self.restarts, min(batch_size or len(x), len(x)))
        rule = StoppingRule(tol, max_iter)
        self.settings = Settings(model, x, y, loss_fn, optimizer, named, rule, batch_size, seed, bool(compile))
        self.frozen = [p for p in model.parameters() if all(p is not q for _, q in named)]
        self.history = History([(n, p.shape) for n, p in named], tol)
        self._engine: Epochs | WrittenOut | None = None
        self._label = "eager"
        self._ended = False
        self.population_interrupted = False  # True when Ctrl-C stopped the random starts (the run then ends)

    @property
    def model(self) -> Module:
        return self.settings.model

    @property
    def optimizer(self) -> Optimizer:
        return self.settings.optimizer

    @property
    def stop_reason(self) -> str | None:
        """Why the run ended (the History's ``stop_reason``), or None while it goes on."""
        return self.history.stop_reason if self._ended else None

    # ---- driving the run --------------------------------------------------------------------------

    def step(self) -> Iteration | Block | None:
        """One iteration (an epoch with mini-batches); returns what was recorded."""
        if self._ended:
            raise RuntimeError(
                f"Trainer.step(): the run has ended ({self.history.stop_reason}); make a new Trainer to train on"
            )
        with self._session():
            done = None
            while done is None and not self._ended:  # an engine that hands over did nothing: the next one does
                done = self._advance(1, light=True)
        return done

    def run(self) -> History:
        """Iterate until a stopping rule ends the run; return the History."""
        block, light = (1, True) if self.callback is not None else (BLOCK, False)
        with self._session():
            while not self._ended:
                self._advance(block, light)
        return self.history

    # ---- one call of the engine, recorded and judged ------------------------------------------------

    def _advance(self, n: int, light: bool) -> Iteration | Block | None:
        h, s = self.history, self.settings
        first = h.n_iter + 1
        engine = self._engine
        assert engine is not None
        rule = s.rule
        out = engine.advance(min(n, rule.max_iter - h.n_iter), light)
        done = out.done
        if isinstance(done, Iteration):
            h.record(first, done.loss, done.largest, done.olds, done.grads, done.steps)
            if self.monitor:
                self.monitor(h)
        elif done is not None:
            h.record_block(first, done.losses, done.olds, done.grads, done.steps, done.largest)
            if self.monitor:
                self.monitor.observe_grads(h, done.grads, first)
        if out.failure is not None:
            self._diverge(h.n_iter + 1, out.failure)
        if out.handover:
            self._hand_over()
        if done is None:
            return None
        stop = self.callback is not None and bool(self.callback(h))
        it = h.n_iter
        if rule.converged(done.largest):
            self._end(rule.converged_reason(it), converged=True)
            if it == 1:
                warnings.warn(
                    f"fit: converged at iteration 1: every step of the first iteration was already below "
                    f"tol={rule.tol:g}. The learning rate may be too small for the tol (or the start is "
                    "already a minimum).",
                    FirstIterationWarning,
                    stacklevel=outside_stacklevel(),
                )
        elif stop:
            self._end(rule.callback_reason(it))
        elif rule.ran_out(it):
            self._end(rule.ran_out_reason(done.largest))
            warnings.warn(
                f"fit: {h.stop_reason}. Raise max_iter or the learning rate.",
                ConvergenceWarning,
                stacklevel=outside_stacklevel(),
            )
        return done

    def _end(self, reason: str, converged: bool = False) -> None:
        self.history.end(reason, converged)
        self._ended = True

    def _diverge(self, iteration: int, f: Failure) -> None:
        """Put back the best parameters seen and raise, naming the first parameter that blew up."""
        h, named = self.history, self.settings.named
        restore = list(h.best_state.values()) or f.before
        for (_, p), b in zip(named, restore):
            p.data[...] = b
        h.diverge(f"diverged at iteration {iteration}: {_culprit(named, f)[1]}")
        self._ended = True
        seen = (
            f"the best seen (loss {h.best_loss:.6g} at iteration {h.best_iter})"
            if h.best_iter
            else "their values before this iteration"
        )
        raise DivergenceError(
            f"fit: {h.stop_reason}; parameters restored to {seen}. Try a smaller learning rate.",
            iteration,
            _culprit(named, f)[0],
            h,
        )

    # ---- engines -------------------------------------------------------------------------------

    def _begin(self) -> None:
        """Before the first iteration: the restarts (if any), the optimizer's fresh state, the engine."""
        s, h = self.settings, self.history
        if self.restarts is not None:
            starts = draw_starts(s.model, s.named, self.restarts, s.seed)
            with np.errstate(all="ignore"):
                found = train_population(s, starts)
            best = int(np.argmin(found.losses))
            for p, start in zip(s.params, found.values if found.values is not None else starts):
                p.data[...] = start[best]
            h.record_restarts(found.losses, found.iterations, found.converged, best)
            if found.interrupted:  # Ctrl-C among the starts: the model keeps the best start where it got to
                self.population_interrupted = True
                self._end(
                    f"interrupted (Ctrl-C) while training the {self.restarts} random starts, after "
                    f"{int(found.iterations.max())} whole iterations; kept start {best + 1}"
                )
                return
        s.optimizer.attach(s.params)
        if self.monitor:
            self.monitor.reset()
        if s.compile and not is_anomaly_enabled():
            if s.loss_fn is cross_entropy:  # a replayed step reads its targets as data, so one-hot them once
                self.settings = s = s._replace(y=one_hot(s.model, s.x, s.y))
            self._engine = WrittenOut.create(s)
            self._label = "python" if self._engine is not None else "numpy"
        if self._engine is None:
            self._engine = replayed(s) if self._label == "numpy" else Epochs(s, forward_backward)
        h.set_engine(self._label)

    def _hand_over(self) -> None:
        """The written-out path cannot go on: the NumPy replay takes the rest of the run from here."""
        assert self._engine is not None
        self._engine.finish()
        self._label = "python+numpy" if self.history.n_iter else "numpy"
        self._engine = replayed(self.settings)
        self.history.set_engine(self._label)

    def _final_label(self) -> str:
        if isinstance(self._engine, Epochs):
            some, whole = self._engine.declined
            if whole and self._label == "numpy":
                return "eager"
            if some:
                return self._label + "+eager"
        return self._label

    def _session(self) -> _Session:
        return _Session(self)


class _Session:
    """Around each step() or run(): frozen parameters held, overflow left to the divergence check, time kept."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __enter__(self) -> None:
        t = self.trainer
        self.before = [p.requires_grad for p in t.frozen]
        for p in t.frozen:
            p.requires_grad = False  # no gradient, no change
        self.errors = np.errstate(over="ignore", invalid="ignore")  # blow-ups are caught, and named
        self.errors.__enter__()
        self.start = time.perf_counter()
        if t._engine is None:
            t._begin()

    def __exit__(self, *exc: object) -> None:
        t = self.trainer
        try:
            if t._engine is not None:
                t._engine.finish()  # also when the callback raises (Ctrl-C) or training diverges
                t.history.set_engine(t._final_label())
            for p in t.settings.params:  # .grad gets its own copy to accumulate into (the History holds these)
                if p.grad is not None:
                    p.grad = p.grad.copy()
        finally:
            t.history.add_time(time.perf_counter() - self.start)
            self.errors.__exit__(None, None, None)
            for p, before in zip(t.frozen, self.before):
                p.requires_grad = before


def _culprit(named: Sequence[tuple[str, Parameter]], f: Failure) -> tuple[str, str]:
    """(the parameter to blame, what happened to it) for an iteration that was not finite."""
    names = [name for name, _ in named]
    bad_grad = next((n for n, g in zip(names, f.grads) if not np.all(np.isfinite(g))), None)
    bad_step = next((n for n, s in zip(names, f.steps) if s is not None and not np.all(np.isfinite(s))), None)
    if bad_grad:
        kind = "nan" if any(np.isnan(g).any() for g in f.grads) else "inf"
        return bad_grad, f"the derivative of '{bad_grad}' became {kind}"
    if bad_step:
        return bad_step, f"the step size of '{bad_step}' overflowed (learning rate x derivative)"
    sizes = [float(np.max(np.abs(g))) for g in f.grads]  # the loss overflowed first
    bad = names[int(np.argmax(sizes))]
    return bad, f"the loss is {f.loss} and the largest derivative is that of '{bad}' ({max(sizes):.3g})"


def _monitor(monitor: bool | GradientMonitor | None) -> GradientMonitor | None:
    if monitor is True:
        return GradientMonitor()
    if monitor is None or monitor is False:
        return None
    if not isinstance(monitor, GradientMonitor):
        raise TypeError(f"fit: monitor must be True, False or a GradientMonitor, got {type(monitor).__name__}")
    return monitor


def _trained(model: Module, params: Any) -> list[tuple[str, Parameter]]:
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
                raise ValueError(
                    f"fit: params names {item!r}, which is not a parameter of "
                    f"{type(model).__name__}; it has {list(by_name)}"
                )
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
