"""The one training loop: :class:`Trainer` owns a run and applies the stopping rules.

A step engine (:mod:`chainrule.engines`) computes an iteration, or a block of
them; the Trainer records it in the History (through History's own methods),
lets the :class:`~chainrule.GradientMonitor` look, calls the callback, and
decides whether the run goes on: the stopping rule by name (every step size
below ``tol``, the lessons' rule; or scikit-learn's count of epochs without
improvement of the training loss or of the validation score, see
:mod:`chainrule.stopping`), the callback asked to stop, ``max_iter`` reached (a
ConvergenceWarning), or the loss or a derivative stopped being finite (a
DivergenceError, the parameters restored to the best seen). Each epoch it also
sets the schedule's learning rate and scores the validation data; the
options (``alpha``, ``sample_weight``, ``clip``, ...) are written once here and in
:mod:`chainrule.engines`. With ``LBFGS`` scipy's own test stops the run. ``fit`` is ``Trainer(...).run()``; a
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

import math
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from .checks import AnyOf, Integer, Number, OneOf, check
from .data import training_arrays
from .engines import (
    BLOCK,
    Block,
    Epochs,
    Failure,
    Iteration,
    Minimized,
    Settings,
    SparseRows,
    WrittenOut,
    dense,
    forward_backward,
    is_sparse,
    loss_now,
    one_hot,
    replayed,
    replays_weights,
    sparse_arrays,
)
from .errors import (
    CompileWarning,
    ConvergenceWarning,
    DivergenceError,
    FirstIterationWarning,
    PrematureStopWarning,
    outside_stacklevel,
)
from .history import GradientMonitor, History
from .losses import LOSSES, cross_entropy, get_loss
from .nn import Module, Parameter
from .optim import LBFGS, GradientDescent, Optimizer
from .restarts import check_population, train_restarts
from .schedules import Schedule, get_schedule
from .stopping import RULES, NoImprovement, StoppingRule
from .tensor import Tensor, is_anomaly_enabled, no_grad, tensor_from
from .trace import CompiledStep
from .validation import MIN_ROWS, score, split

__all__ = ["Trainer", "ARGUMENTS", "FirstIterationWarning", "PrematureStopWarning"]


# What fit's (and the Trainer's) arguments must be: one table, worded by checks.check.
ARGUMENTS = {
    "tol": AnyOf((OneOf((None,)), Number(low=0))),  # None: 0.001 (the lessons'), or L-BFGS's own default
    "max_iter": Integer(low=1),
    "batch_size": Integer(low=1, optional=True),
    "seed": Integer(low=0, optional=True),
    "restarts": Integer(low=1, optional=True),
    "alpha": Number(low=0),
    "clip": AnyOf((OneOf((None,)), Number(low=0, low_open=True))),
    "stopping": OneOf(RULES),
    "n_iter_no_change": Integer(low=1),
    "validation": Number(low=0, high=1, low_open=True),  # a fraction; or (x_val, y_val)
    "shuffle": OneOf((True, False)),
}
# The Trainer also takes n_iter_no_change=math.inf (never a plateau: scikit-learn allows it); the command
# line's flag keeps the table's whole numbers.
PATIENCE = AnyOf((Integer(low=1), OneOf((math.inf,))))
DEFAULT_TOL = 0.001  # the lessons' threshold for the step sizes
# The last step of a run the lessons' rule stopped "still falls" when it lowered the loss by more than
# this share of the whole run's drop, and by more than RELATIVE_DROP of the loss itself.
STILL_FALLING, RELATIVE_DROP = 0.05, 1e-6


class Trainer:
    """One training run of ``model`` on (x, y) that you can step: ``Trainer(model, x, y, **the keywords of fit)``.

    - ``step()`` runs one iteration (the whole batch, or one epoch with ``batch_size``)
      and returns what was recorded (an :class:`~chainrule.engines.Iteration`: loss,
      largest step, each parameter's old value, derivative and step).
    - ``run()`` goes on until a stopping rule ends the run and returns the History.
    - ``history`` and ``stop_reason`` (None while the run goes on) say where it stands;
      ``seen`` counts the training rows seen (scikit-learn's ``t_``, the clock of the
      invscaling schedule), and may be set to go on from an earlier run's count.
    - ``validation=(x_val, y_val)`` may carry the validation rows' sample weights as a third
      item; ``scorer``, None for accuracy or R^2 by the loss, may be set to a function
      ``scorer(outputs, y_val, w_val) -> float`` of the model's outputs on ``x_val``: each
      epoch's validation score (what ``stopping="early"`` watches; higher is better).
    - Reporting: ``callback(history)`` sees every epoch (its loss, validation score, rate);
      ``on_plateau``, when set, is called at each plateau of the count with the rate the
      adaptive schedule goes on with, or None where the run stops there (what scikit-learn's
      ``verbose`` says at those moments).

    Between steps the optimizer keeps its state (Momentum's velocity and Adam's
    moments go on), its hyperparameters may change (``trainer.optimizer.lr = 0.01``)
    and the parameters may be set by hand: training goes on from there; ``set_data(x, y,
    sample_weight=None)`` gives it new rows, the optimizer's state kept. Once a
    stopping rule has ended the run, ``step()`` raises a RuntimeError.
    ``N`` eager ``step()`` calls give bit for bit what ``fit(..., max_iter=N, tol=0)``
    gives. The keywords are those of :func:`chainrule.fit`. With ``optimizer=LBFGS()`` scipy runs
    the whole minimization (keeping its own state) in ``run()``; ``step()`` raises a TypeError.
    With ``restarts=N, executor=E`` the random starts train in shards on ``E`` (see
    :mod:`chainrule.restarts`); set ``trainer.on_shard = f`` before the run to have
    ``f(done, total, best loss so far)`` called as each shard ends. ``restart_entropy`` is what the
    starts were drawn from (the seed, or fresh entropy drawn once when ``seed`` is None).
    """

    def __init__(
        self,
        model: Module,
        x: Any,
        y: Any = None,
        *,
        loss: str | Callable[..., Tensor] = "ssr",
        optimizer: Optimizer | None = None,
        params: Any = None,
        tol: float | None = None,
        max_iter: int = 1000,
        batch_size: int | None = None,
        seed: int | None = None,
        callback: Callable[[History], Any] | None = None,
        monitor: bool | GradientMonitor = True,
        restarts: int | None = None,
        compile: bool = False,
        alpha: float = 0.0,
        sample_weight: Any = None,
        schedule: str | Schedule | None = None,
        clip: float | None = None,
        validation: Any = None,
        stopping: str = "steps",
        n_iter_no_change: int | float = 10,
        shuffle: bool | Callable[[int], Any] = True,
        executor: Executor | None = None,
    ) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"fit: model must be a chainrule.nn.Module, got {type(model).__name__}")
        tol, max_iter, batch_size, seed, self.restarts, alpha, clip, stopping = (
            check("fit", name, value, ARGUMENTS[name])
            for name, value in (
                ("tol", tol),
                ("max_iter", max_iter),
                ("batch_size", batch_size),
                ("seed", seed),
                ("restarts", restarts),
                ("alpha", alpha),
                ("clip", clip),
                ("stopping", stopping),
            )
        )
        n_iter_no_change = check("fit", "n_iter_no_change", n_iter_no_change, PATIENCE)
        loss_fn = get_loss(loss)
        named = _trained(model, params)
        dtype = named[0][1].dtype
        source = x if y is None and is_source(x) else None
        if source is not None:
            _source_applies(restarts, optimizer, validation, sample_weight)
            x, y = np.empty((0, 0), dtype), np.empty((0, 1), dtype)  # (the rows come from the source)
        elif y is None:
            raise TypeError("fit: y is missing: pass the targets y with arrays x, or a batch source as x")
        else:
            x, y = _arrays(x, y, dtype, getattr(loss_fn, "__name__", "") == "cross_entropy")
        weights = _sample_weights(sample_weight, len(x), dtype)
        if weights is not None and loss_fn not in LOSSES.values():
            raise TypeError(
                f"fit: sample_weight needs one of the built-in losses ({', '.join(sorted(LOSSES))}), which weigh "
                f"rows; got the function {getattr(loss_fn, '__name__', loss_fn)!r}"
            )
        x, y, weights, self.held = _held_out(validation, x, y, weights, loss_fn, seed)
        if stopping == "early" and self.held is None:
            raise ValueError(
                "fit: stopping='early' needs validation data: validation=a fraction (0.1) or (x_val, y_val)"
            )
        self.schedule = get_schedule(schedule)
        optimizer = GradientDescent(lr=0.1) if optimizer is None else optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"fit: optimizer must be a chainrule.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(optimizer, LBFGS):
            _lbfgs_applies(batch_size, len(x), self.schedule, clip, self.held, restarts, stopping)
        self.monitor = _monitor(monitor)
        if callback is not None and not callable(callback):
            raise TypeError(f"fit: callback must be a function of the history, got {type(callback).__name__}")
        self.callback = callback
        tol = _default_tol(optimizer) if tol is None else tol
        rule = StoppingRule(tol, max_iter, stopping, n_iter_no_change)
        if not callable(shuffle):  # (a function of the rows gives each epoch's order: see engines.Batches)
            shuffle = bool(check("fit", "shuffle", shuffle, ARGUMENTS["shuffle"]))
        if callable(shuffle) and source is not None:
            raise ValueError(
                "fit: shuffle as a function orders the rows of arrays; a batch source orders its own batches"
            )
        self.settings = Settings(
            model, x, y, loss_fn, optimizer, named, rule, batch_size, seed, bool(compile), alpha, weights, clip
        )._replace(shuffle=shuffle, source=source)
        if self.restarts is not None:  # before a single start is drawn
            _restarts_apply(self.settings, self.schedule, self.held)
            check_population(named, self.restarts, min(batch_size or len(x), len(x)))
        self.executor = _executor(executor, self.restarts)
        self.on_shard: Callable[[int, int, float], Any] | None = None  # with an executor: each shard as it ends
        self.restart_entropy: int | None = None  # what the random starts were drawn from (seed, or fresh)
        self.frozen = [p for p in model.parameters() if all(p is not q for _, q in named)]
        self.history = History([(n, p.shape) for n, p in named], tol)
        self.history.set_stopping(stopping)
        self.count = NoImprovement(tol, n_iter_no_change, higher_is_better=stopping == "early")
        self._best_values: list | None = None  # stopping="early": the parameters of the count's best score
        # The validation score of each epoch: None for validation.score (accuracy or R^2 by the loss), or a
        # function of (the model's outputs on x_val, y_val, the validation rows' weights or None) -> float.
        self.scorer: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float] | None = None
        # Told at each plateau of the count: the rate the adaptive schedule goes on with, or None (the run stops)
        self.on_plateau: Callable[[float | None], Any] | None = None
        # Per epoch the loop looks at more than the steps: the engine hands back one iteration at a time.
        self.per_epoch = self.held is not None or self.schedule is not None or stopping != "steps"
        self._lr0 = optimizer.lr  # (read again when the run begins: it may be set before the first step)
        # Training rows seen so far, as scikit-learn's t_ (invscaling's clock): it goes on across set_data,
        # and a run that carries on from another (partial_fit, a warm start) may set it to that run's.
        self.seen = 0
        self._scheduled: float | None = None  # the rate the schedule last set (another one was set by hand)
        self._engine: Epochs | WrittenOut | Minimized | None = None
        self._label = "eager"
        self._ended = False
        self._diverged = False
        self.population_interrupted = False  # True when Ctrl-C stopped the random starts (the run then ends)
        self._interrupted = False  # set by interrupt()

    def interrupt(self) -> None:
        """What a Ctrl-C handler calls beside raising KeyboardInterrupt: the random starts of ``restarts``
        (in this process) stop after their present batch even if that KeyboardInterrupt is lost (Python
        swallows an exception raised inside a finalizer or an import's callback), as if it had come."""
        self._interrupted = True

    @property
    def model(self) -> Module:
        return self.settings.model

    @property
    def optimizer(self) -> Optimizer:
        return self.settings.optimizer

    @property
    def held_rows(self) -> np.ndarray | None:
        """The indices of the rows of x held out by ``validation=fraction`` (None: none, or a pair given)."""
        return None if self.held is None else self.held[3]

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
        if isinstance(self.optimizer, LBFGS):
            raise TypeError(
                "Trainer.step(): optimizer=LBFGS() runs the whole minimization in one scipy call, not one iteration "
                "a step; use run()"
            )
        with self._session():
            done = None
            while done is None and not self._ended:  # an engine that hands over did nothing: the next one does
                done = self._advance(1, light=True)
        return done

    def run(self) -> History:
        """Iterate until a stopping rule ends the run; return the History."""
        block, light = (1, True) if self.callback is not None or self.per_epoch else (BLOCK, False)
        with self._session():
            while not self._ended:
                self._advance(block, light)
        return self.history

    def set_data(self, x: Any, y: Any, sample_weight: Any = None, batch_size: int | None = None) -> None:
        """Train on new rows (x, y) from the next step on, the run going on: the optimizer keeps its state
        (Momentum's velocity, Adam's moments and step count), the History, the stopping rule's count
        and the schedule go on, and so do the shuffling draws. ``sample_weight`` weighs the new rows
        (None: each once); ``batch_size``, when given, is the new rows' (None: as before). What
        ``partial_fit`` needs: a step on each new batch of data.

        The new rows must have the features of the first ones. Not for a batch source, nor with
        ``validation`` as a fraction (its rows were held out of the first data: give
        ``(x_val, y_val)``), nor once the run has ended. With ``compile=True`` the steps after it
        are replayed NumPy calls (a written-out program starts from a fresh optimizer state).

        Example: two steps of Adam on one data set, then one on another (Adam's third step)::

            >>> import chainrule as cr
            >>> net = cr.nn.mlp([1, 1], seed=0)
            >>> trainer = cr.Trainer(net, [[0.0], [1.0]], [[1.0], [3.0]], loss="mse", optimizer=cr.optim.Adam(lr=0.1))
            >>> _ = trainer.step(); _ = trainer.step()
            >>> trainer.set_data([[2.0], [3.0]], [[5.0], [7.0]])
            >>> _ = trainer.step()
            >>> trainer.history.n_iter, trainer.optimizer.t
            (3, 3)
        """
        s = self.settings
        if self._ended:
            raise RuntimeError(
                f"Trainer.set_data(): the run has ended ({self.history.stop_reason}); make a new Trainer to train on"
            )
        if s.source is not None:
            raise ValueError("Trainer.set_data(): this run reads a batch source; new arrays cannot take its place")
        if self.held is not None and self.held[3] is not None:
            raise ValueError(
                "Trainer.set_data(): validation=fraction held out rows of the first data; give validation=(x_val, "
                "y_val) to train on new data"
            )
        labels = getattr(s.loss_fn, "__name__", "") == "cross_entropy"
        x, y = _arrays(x, y, s.x.dtype, labels)
        if x.shape[1:] != s.x.shape[1:]:
            raise ValueError(
                f"Trainer.set_data(): the new rows have shape {x.shape[1:]}, the first ones {s.x.shape[1:]}; "
                "they must match"
            )
        weights = _sample_weights(sample_weight, len(x), s.x.dtype)
        if weights is not None and s.loss_fn not in LOSSES.values():
            raise TypeError(
                f"Trainer.set_data(): sample_weight needs one of the built-in losses ({', '.join(sorted(LOSSES))})"
            )
        old = self._engine
        if batch_size is not None:
            s = s._replace(batch_size=check("Trainer.set_data", "batch_size", batch_size, ARGUMENTS["batch_size"]))
        self.settings = s = s._replace(x=x, y=y, sample_weight=weights)
        if old is None:  # not begun: the first step chooses the engine, as for the first data
            return
        old.finish()  # (a written-out program's optimizer state is loaded back first)
        unweighable = weights is not None and not replays_weights(s.loss_fn)
        if self._label == "eager" or unweighable or (isinstance(old, Epochs) and old.step is forward_backward):
            self._engine = Epochs(s, forward_backward)
            self._label = self._label if not unweighable or self._label == "eager" else self._label + "+eager"
        else:
            if s.loss_fn is cross_entropy:  # a replayed step reads its targets as data, so one-hot them once
                self.settings = s = s._replace(y=one_hot(s.model, s.x, s.y))
            if isinstance(old, Epochs) and isinstance(old.step, CompiledStep) and weights is None:
                self._engine = Epochs(s, old.step)  # the steps recorded so far replay the new rows too
            else:
                self._engine = replayed(s)
            if isinstance(old, WrittenOut):
                self._label = "python+numpy" if self.history.n_iter else "numpy"
        if isinstance(old, Epochs) and isinstance(self._engine, Epochs):
            self._engine.batches.rng = old.batches.rng  # the shuffling draws go on
        self.history.set_engine(self._label)

    def carry_on(self, best: float, count: int, best_values: Sequence[Any] | None = None) -> None:
        """Go on with an earlier run's count of epochs without improvement (``stopping="improvement"`` or
        ``"early"``, and the adaptive schedule's): its best value (loss, or validation score) and its
        count, as a warm start or the next ``partial_fit`` call of scikit-learn goes on with
        ``best_loss_`` / ``best_validation_score_`` and ``_no_improvement_count``. With
        ``stopping="early"``, ``best_values`` are the parameters of that best score (one array per
        trained parameter): put back at the end unless an epoch of this run scores higher. Read the
        count back from ``trainer.count`` (``.best``, ``.count``).

        Example: an earlier run's best loss 0.0 cannot be beaten, and its count 1 goes on: with
        ``n_iter_no_change=2`` the count reaches 3 > 2 at this run's second epoch::

            >>> import chainrule as cr
            >>> net = cr.nn.mlp([1, 1], seed=0)
            >>> trainer = cr.Trainer(net, [[0.0], [1.0]], [[1.0], [3.0]], loss="mse", stopping="improvement",
            ...                      n_iter_no_change=2, max_iter=50)
            >>> trainer.carry_on(best=0.0, count=1)
            >>> _ = trainer.run()
            >>> trainer.history.n_iter, trainer.count.count, trainer.count.best
            (2, 3, 0.0)
        """
        if self._ended:
            raise RuntimeError(f"Trainer.carry_on(): the run has ended ({self.history.stop_reason})")
        count = check("Trainer.carry_on", "count", count, Integer(low=0))
        best = float(check("Trainer.carry_on", "best", best, AnyOf((Number(), OneOf((math.inf, -math.inf))))))
        if best_values is not None:
            shapes = [p.shape for p in self.settings.params]
            values = [np.array(v, dtype=p.dtype) for v, p in zip(best_values, self.settings.params)]
            if len(values) != len(shapes) or [v.shape for v in values] != shapes:
                raise ValueError(
                    f"Trainer.carry_on(): best_values must be one array per trained parameter, shapes {shapes}, "
                    f"got {[np.shape(v) for v in best_values]}"
                )
            self._best_values = values
        self.count.best, self.count.count = best, count

    def resume(self, more: int) -> None:
        """Go on for ``more`` iterations after a stopping rule ended the run (or before it did): the
        optimizer's state, the History, the count and the schedule go on, ``max_iter`` becomes the
        iterations done plus ``more``. What scikit-learn's ``partial_fit`` does after a fit that
        stopped: one more epoch from where the optimizer stands. Not after a divergence.

        Example: two iterations, the run over; two more on top of them::

            >>> import chainrule as cr
            >>> net = cr.nn.mlp([1, 1], seed=0)
            >>> trainer = cr.Trainer(net, [[0.0], [1.0]], [[1.0], [3.0]], loss="mse", max_iter=2, tol=0)
            >>> import warnings; warnings.simplefilter("ignore", cr.ConvergenceWarning)
            >>> _ = trainer.run(); trainer.resume(2); _ = trainer.run()
            >>> trainer.history.n_iter, trainer.settings.rule.max_iter
            (4, 4)
        """
        more = check("Trainer.resume", "more", more, Integer(low=1))
        if self._diverged:
            raise RuntimeError(f"Trainer.resume(): the run diverged ({self.history.stop_reason}); it cannot go on")
        s = self.settings
        self.settings = s._replace(rule=s.rule._replace(max_iter=self.history.n_iter + more))
        if isinstance(self._engine, Epochs):
            self._engine.run = self.settings
        self._ended = False

    @property
    def next_rate(self) -> float:
        """The learning rate the next epoch will take: the schedule's for it (invscaling: from ``seen``),
        else the optimizer's present one (what scikit-learn's ``_optimizer.learning_rate`` says)."""
        lr = self.optimizer.lr
        if self.schedule is not None and self._engine is not None:
            rate = self.schedule.rate(self._lr0, self.history.n_iter, self.seen)
            if rate is not None and not (self._scheduled is not None and lr != self._scheduled):
                return rate
        return lr

    # ---- one call of the engine, recorded and judged ------------------------------------------------

    def _advance(self, n: int, light: bool) -> Iteration | Block | None:
        h, s = self.history, self.settings
        first = h.n_iter + 1
        engine = self._engine
        assert engine is not None
        rule = s.rule
        if self.schedule is not None:
            self._set_rate()
        lr = s.optimizer.lr
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
        if out.finished is not None:  # L-BFGS: scipy's own test ended the run
            self._end(*out.finished)
            if not out.finished[1]:
                warnings.warn(f"fit: {h.stop_reason}", ConvergenceWarning, stacklevel=outside_stacklevel())
            return done
        if done is None:
            return None
        self.seen += (1 if isinstance(done, Iteration) else len(done.losses)) * self._rows()
        if self.schedule is not None:
            h.record_rate(lr)
        if self.held is not None and isinstance(done, Iteration):
            self._validate()
        stop = self.callback is not None and bool(self.callback(h))
        it = h.n_iter
        plateau = self.per_epoch and isinstance(done, Iteration) and self._plateau(done.loss)
        if rule.by_steps and rule.converged(done.largest):
            self._end(rule.converged_reason(it), converged=True)
            self._warn_if_early(done, lr)
        elif stop:
            self._end(rule.callback_reason(it))
        elif plateau:
            self._end(plateau, converged=True)
        elif rule.ran_out(it):
            self._end(rule.ran_out_reason(done.largest))
            warnings.warn(
                f"fit: {h.stop_reason}. Raise max_iter or the learning rate.",
                ConvergenceWarning,
                stacklevel=outside_stacklevel(),
            )
        return done

    def _end(self, reason: str, converged: bool = False) -> None:
        h = self.history
        if self.settings.rule.kind == "early" and self._best_values is not None:
            for p, best in zip(self.settings.params, self._best_values):
                p.data[...] = best
            if h.best_validation_score is not None and h.best_validation_score >= self.count.best:
                reason += (
                    f"; the parameters of iteration {h.best_validation_iter} (the highest validation score, "
                    f"{h.best_validation_score:.6g}, even where it rose by less than tol) were put back"
                )
            else:
                reason += (
                    f"; the parameters of the earlier run's highest validation score ({self.count.best:.6g}), "
                    "which no epoch of this run reached, were put back"
                )
        h.end(reason, converged)
        self._ended = True

    # ---- what the loop looks at each epoch: the rate, the held-out data, the count of plateaus ------

    def _set_rate(self) -> None:
        s, h = self.settings, self.history
        assert self.schedule is not None
        lr = self.schedule.rate(self._lr0, h.n_iter, self.seen)
        if lr and self._scheduled is not None and s.optimizer.lr != self._scheduled:  # set by hand between
            self._lr0 *= s.optimizer.lr / lr  # steps: this epoch's rate, and the schedule goes on from it
            lr = s.optimizer.lr
        if lr is not None:
            s.optimizer.lr = lr
        self._scheduled = s.optimizer.lr

    def _rows(self) -> int:
        """The rows of an epoch: the arrays', or a batch source's (known once it has given an epoch)."""
        s = self.settings
        return len(s.x) if s.source is None else getattr(s.source, "rows", None) or 0

    def _validate(self) -> None:
        """The validation loss and score at the parameters the epoch ended with; the outputs a batch of rows
        at a time (no activations of more rows than a training step's), the loss on all of them."""
        s = self.settings
        assert self.held is not None
        x_val, y_val, w_val, _ = self.held
        if s.source is None:
            size = min(s.batch_size or len(s.x), len(s.x))
        else:  # a batch source sets its own batch size (and holds no rows here)
            size = getattr(s.source, "batch_size", None) or len(x_val)
        with no_grad():
            pieces = [s.model(tensor_from(x_val.data[a : a + size])).data for a in range(0, len(x_val), size)]
            out = tensor_from(np.concatenate(pieces))
            loss = (s.loss_fn(out, y_val) if w_val is None else s.loss_fn(out, y_val, sample_weight=w_val)).item()
        value = (
            score(s.loss_fn, out.data, y_val, w_val)
            if self.scorer is None
            else float(self.scorer(out.data, y_val, w_val))
        )
        self.history.record_validation(loss, value, [p.data for p in s.params])

    def _plateau(self, loss: float) -> str | None:
        """The reason to stop when the watched value stopped improving (None: go on). The adaptive
        schedule lowers the rate at a plateau instead, until the rate is at its floor."""
        h, rule = self.history, self.settings.rule
        best = self.count.best
        plateau = self.count.see(h.validation_score[-1] if rule.kind == "early" else loss)
        if rule.kind == "early" and self.count.best != best:  # a new best score: these parameters come back
            self._best_values = (
                list(h.best_validation_state.values())
                if h.best_validation_iter == h.n_iter
                else [p.data.copy() for p in self.settings.params]
            )
        if not plateau:
            return None
        if self.schedule is not None and type(self.schedule).plateau is not Schedule.plateau:
            lowered = self.schedule.plateau(self.optimizer.lr)
            if lowered is not None:
                self.optimizer.lr = self._scheduled = lowered
                self.count.restart()
                self._tell_plateau(lowered)
                return None
            self._tell_plateau(None)
            return f"{rule.plateau_reason(h.n_iter)} with the learning rate at its floor ({self.optimizer.lr:.3g})"
        if rule.by_steps:
            return None
        self._tell_plateau(None)
        return rule.plateau_reason(h.n_iter)

    def _tell_plateau(self, rate: float | None) -> None:
        if self.on_plateau is not None:
            self.on_plateau(rate)

    def _warn_if_early(self, done: Iteration | Block, lr: float) -> None:
        """The lessons' rule stopped the run: warn if the loss was still falling fast, if only a schedule's
        lower rate made the steps small enough (or at iteration 1)."""
        h, s = self.history, self.settings
        it, tol = h.n_iter, s.rule.tol
        if self.schedule is not None and lr < self._lr0 and done.largest * (self._lr0 / lr) >= tol:
            # each step is the rate times what the optimizer makes of the gradients: at the first rate it was not small
            warnings.warn(
                f"fit: stopped by the lessons' rule (every step below tol={tol:g}) at iteration {it}, but the steps "
                f"shrank because the schedule lowered the rate (to {lr:.3g} from {self._lr0:g}): at the first rate "
                f"the largest step would have been {done.largest * self._lr0 / lr:.3g}. Use stopping='improvement' "
                "(scikit-learn's rule: the loss must stop improving by tol) with a schedule, or tol=0.",
                PrematureStopWarning,
                stacklevel=outside_stacklevel(),
            )
            return
        now = loss_now(s)
        last, total = h.loss[-1] - now, h.loss[0] - now
        if last > STILL_FALLING * total and last > RELATIVE_DROP * max(abs(now), 1e-300):
            why = (
                f" {type(s.optimizer).__name__}'s steps stay near its learning rate (lr={s.optimizer.lr:g}) "
                "whatever the slope, so a tol at or above about the learning rate stops it at once."
                if getattr(s.optimizer, "scale_free", False)
                else ""
            )
            warnings.warn(
                f"fit: stopped by the lessons' rule (every step below tol={tol:g}) at iteration {it} while the "
                f"loss was still falling: the last iteration lowered it by {last:.3g} ({last / total:.0%} of the "
                f"run's drop).{why} Use stopping='improvement' (scikit-learn's rule: the loss must stop "
                "improving by tol) or a smaller tol.",
                PrematureStopWarning,
                stacklevel=outside_stacklevel(),
            )
        elif it == 1:
            warnings.warn(
                f"fit: converged at iteration 1: every step of the first iteration was already below "
                f"tol={tol:g}. The learning rate may be too small for the tol (or the start is "
                "already a minimum).",
                FirstIterationWarning,
                stacklevel=outside_stacklevel(),
            )

    def _diverge(self, iteration: int, f: Failure) -> None:
        """Put back the best parameters seen and raise, naming the first parameter that blew up."""
        h, named = self.history, self.settings.named
        early = self.settings.rule.kind == "early" and self._best_values is not None
        restore = self._best_values if early else list(h.best_state.values()) or f.before
        assert restore is not None
        for (_, p), b in zip(named, restore):
            p.data[...] = b
        h.diverge(f"diverged at iteration {iteration}: {_culprit(named, f)[1]}")
        self._ended = self._diverged = True
        seen = (
            f"those of the highest validation score ({self.count.best:.6g})"
            if early
            else f"the best seen (loss {h.best_loss:.6g} at iteration {h.best_iter})"
            if h.best_iter
            else "their values before this iteration"
        )
        hint = (
            "L-BFGS takes no learning rate: try inputs on a smaller scale, a larger alpha or another start"
            if isinstance(self.optimizer, LBFGS)
            else "Try a smaller learning rate"
        )
        raise DivergenceError(
            f"fit: {h.stop_reason}; parameters restored to {seen}. {hint}.",
            iteration,
            _culprit(named, f)[0],
            h,
        )

    # ---- engines -------------------------------------------------------------------------------

    def _begin(self) -> None:
        """Before the first iteration: the restarts (if any), the optimizer's fresh state, the engine."""
        s, h = self.settings, self.history
        if self.restarts is not None:
            found = train_restarts(s, self.restarts, self.executor, self.on_shard, lambda: self._interrupted)
            self._interrupted = False  # (asked and done: a resumed run's starts begin unasked)
            self.restart_entropy = found.entropy
            for p, value in zip(s.params, found.values or []):
                p.data[...] = value
            if found.best is not None:
                h.record_restarts(found.losses, found.iterations, found.converged, found.best)
            if found.interrupted:  # Ctrl-C among the starts: the model keeps the best start where it got to
                self.population_interrupted = True
                self._end(found.interrupted)
                return
        s.optimizer.attach(s.params)
        self._lr0 = s.optimizer.lr
        if self.monitor:
            self.monitor.reset()
        if isinstance(s.optimizer, LBFGS):
            self._engine = self._minimized(s)
        if s.compile and self._engine is None and not is_anomaly_enabled():
            if s.loss_fn is cross_entropy and s.source is not None:
                warnings.warn(
                    "fit(compile=True): the NumPy replay needs one-hot targets, which a batch source does not "
                    "give; training runs eagerly",
                    CompileWarning,
                    stacklevel=outside_stacklevel(),
                )
            else:
                if s.loss_fn is cross_entropy:  # a replayed step reads its targets as data, so one-hot them once
                    self.settings = s = s._replace(y=one_hot(s.model, s.x, s.y))
                self._engine = WrittenOut.create(s)  # (never for a batch source: its batches are not the whole)
                self._label = "python" if self._engine is not None else "numpy"
        if (
            self._engine is None
            and self._label == "numpy"
            and s.sample_weight is not None
            and not replays_weights(s.loss_fn)
        ):
            self._label = "eager"
            warnings.warn(
                "fit(compile=True): the NumPy replay reads no sample weights of this loss (poisson's constant "
                "term is computed from the targets outside the graph); training runs eagerly",
                CompileWarning,
                stacklevel=outside_stacklevel(),
            )
        if self._engine is None:
            self._engine = replayed(s) if self._label == "numpy" else Epochs(s, forward_backward)
        h.set_engine(self._label)

    def _minimized(self, s: Settings) -> Minimized:
        """scipy's L-BFGS, its loss and gradient by the NumPy replay with ``compile=True`` (eager otherwise,
        and where the replay reads no sample weights of the loss)."""
        if not s.compile or is_anomaly_enabled() or (s.sample_weight is not None and not replays_weights(s.loss_fn)):
            return Minimized(s)
        if s.loss_fn is cross_entropy:  # a replayed step reads its targets as data, so one-hot them once
            self.settings = s = s._replace(y=one_hot(s.model, s.x, s.y))
        self._label = "numpy"
        return Minimized(s, replayed(s).step)

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
    if f.why is not None:
        sizes = [float(np.max(np.abs(g))) if np.size(g) else 0.0 for g in f.grads]
        return names[int(np.argmax(sizes))], f.why
    if bad_step:
        return bad_step, f"the step size of '{bad_step}' overflowed (learning rate x derivative)"
    sizes = [float(np.max(np.abs(g))) for g in f.grads]  # the loss overflowed first
    bad = names[int(np.argmax(sizes))]
    return bad, f"the loss is {f.loss} and the largest derivative is that of '{bad}' ({max(sizes):.3g})"


def _sample_weights(sample_weight: Any, rows: int, dtype: Any) -> np.ndarray | None:
    """Per-row weights as a checked (rows,) array (None: every row counts once)."""
    if sample_weight is None:
        return None
    w = np.asarray(getattr(sample_weight, "data", sample_weight))
    if w.dtype.kind not in "biuf":
        raise TypeError(f"fit: sample_weight must hold numbers, got dtype {w.dtype}")
    if w.shape != (rows,):
        raise ValueError(f"fit: sample_weight must have shape ({rows},), one weight per row of x, got {w.shape}")
    with np.errstate(over="ignore"):  # a sum beyond float range is refused below, not warned about
        total = w.sum()
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0) or not 0 < total < np.inf:
        raise ValueError(
            f"fit: sample_weight must be finite numbers >= 0 with a positive, finite sum, got a sum of {total:.3g}"
        )
    return w.astype(dtype)


def held_out_rows(y: np.ndarray, fraction: float, seed: int | None, loss_fn: Any) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of ``validation=fraction``, as fit draws them from ``seed``: stratified
    for one class label a row (scikit-learn's rule: cross-entropy's targets, or one binary label)."""
    stratify = getattr(loss_fn, "task", "") == "classification" and (
        y.ndim == 1 or loss_fn is cross_entropy or y.shape[1] == 1
    )
    labels = None
    if stratify:
        labels = y if y.ndim == 1 else np.argmax(y, axis=1) if loss_fn is cross_entropy else y[:, 0]
    return split(len(y), fraction, seed, labels)


def _held_out(validation: Any, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, loss_fn: Any, seed: Any) -> tuple:
    """(x, y, w) to train on and (x_val as a Tensor, y_val, w_val, the held rows' indices or None), or None
    without validation."""
    if validation is None:
        return x, y, w, None
    if isinstance(validation, (tuple, list)):
        if len(validation) not in (2, 3):
            raise ValueError(
                "fit: validation must be a fraction, a pair (x_val, y_val) or a triple (x_val, y_val, "
                f"sample weights of the validation rows), got {len(validation)} items"
            )
        labels = getattr(loss_fn, "__name__", "") == "cross_entropy"
        x_val, y_val = _arrays(validation[0], validation[1], x.dtype, labels)
        x_val = dense(x_val)
        if len(x_val) < MIN_ROWS:
            raise ValueError(
                f"fit: validation data has {len(x_val)} row; the validation set is too small: at least {MIN_ROWS} "
                "rows are needed (scikit-learn's rule)"
            )
        # NOTE: a batch source (streaming) holds no training rows in memory: nothing to compare shapes with
        if len(x) and (x_val.shape[1:] != x.shape[1:] or (not labels and y_val.shape[1:] != y.shape[1:])):
            raise ValueError(
                f"fit: validation rows have shapes {x_val.shape[1:]} and {y_val.shape[1:]}, the training rows "
                f"{x.shape[1:]} and {y.shape[1:]}; they must match"
            )
        w_val = _sample_weights(validation[2], len(x_val), x.dtype) if len(validation) == 3 else None
        if w_val is not None and loss_fn not in LOSSES.values():
            raise TypeError(
                f"fit: validation sample weights need one of the built-in losses ({', '.join(sorted(LOSSES))}), "
                f"which weigh rows; got the function {getattr(loss_fn, '__name__', loss_fn)!r}"
            )
        return x, y, w, (tensor_from(x_val), y_val, w_val, None)
    fraction = check("fit", "validation", validation, ARGUMENTS["validation"])
    kept, held = held_out_rows(y, fraction, seed, loss_fn)
    w_val = None if w is None else w[held]
    for part, rows in (("held-out", held), ("training", kept)):
        if w is not None and not w[rows].sum() > 0:
            raise ValueError(
                f"fit: the sample weights of the {len(rows)} {part} rows (validation={fraction!r}, seed={seed}) are "
                "all 0; give those rows weight, or another seed or validation fraction"
            )
    x_kept = x.take(kept) if isinstance(x, SparseRows) else x[kept]
    return x_kept, y[kept], None if w is None else w[kept], (tensor_from(x[held]), y[held], w_val, held)


def _arrays(x: Any, y: Any, dtype: Any, labels: bool) -> tuple[Any, np.ndarray]:
    """Inputs and targets checked: dense arrays, or sparse inputs kept sparse (made dense a batch at a time)."""
    return sparse_arrays(x, y, dtype, labels) if is_sparse(x) else training_arrays(x, y, dtype, labels)


def is_source(x: Any) -> bool:
    """Whether ``x`` is a batch source (each ``iter()`` an epoch of (x, y) batches), not an array of rows."""
    return hasattr(x, "__iter__") and not isinstance(x, (np.ndarray, list, tuple, Tensor, str, bytes))


def _source_applies(restarts: Any, optimizer: Any, validation: Any, sample_weight: Any) -> None:
    """A batch source gives its rows a batch at a time: refuse the options that need them all at once."""
    given = [
        name
        for name, on in (
            ("restarts", restarts is not None),
            ("optimizer=LBFGS()", isinstance(optimizer, LBFGS)),
            ("validation as a fraction", validation is not None and not isinstance(validation, (tuple, list))),
            ("sample_weight", sample_weight is not None),
        )
        if on
    ]
    if given:
        raise ValueError(
            f"fit: a batch source gives its rows a batch at a time; it cannot be combined with {', '.join(given)}, "
            "which need all rows at once (validation=(x_val, y_val) arrays work)"
        )


def _lbfgs_applies(
    batch_size: Any, rows: int, schedule: Any, clip: Any, held: Any, restarts: Any, stopping: str
) -> None:
    """L-BFGS takes the whole batch and stops by scipy's test: refuse the options that do not apply."""
    given = [
        name
        for name, on in (
            (f"batch_size={batch_size}", batch_size is not None and batch_size < rows),
            ("schedule", schedule is not None),
            ("clip", clip is not None),
            ("validation", held is not None),
            ("restarts", restarts is not None),
            (f"stopping={stopping!r}", stopping != "steps"),
        )
        if on
    ]
    if given:
        raise ValueError(
            f"fit: optimizer=LBFGS() minimizes the whole batch's loss and stops by scipy's own test; it "
            f"cannot be combined with {', '.join(given)}"
        )


def _restarts_apply(s: Settings, schedule: Any, held: Any) -> None:
    """fit(restarts=N) trains its starts by the lessons' rule alone: refuse the options it does not know."""
    given = [
        name
        for name, on in (
            ("alpha", s.alpha != 0),
            ("sample_weight", s.sample_weight is not None),
            ("clip", s.clip is not None),
            ("schedule", schedule is not None),
            ("validation", held is not None),
            (f"stopping={s.rule.kind!r}", not s.rule.by_steps),
            ("shuffle=False", s.shuffle is False),
            ("shuffle as a function", callable(s.shuffle)),
            ("sparse x", isinstance(s.x, SparseRows)),
        )
        if on
    ]
    if given:
        raise ValueError(
            f"fit: restarts trains its starts with the lessons' rule and plain steps; it cannot be combined "
            f"with {', '.join(given)} (train one start at a time instead)"
        )


def _executor(executor: Any, restarts: int | None) -> Executor | None:
    """The executor the random starts are spread over (None: this process), checked."""
    if executor is None:
        return None
    if not isinstance(executor, Executor):
        raise TypeError(
            f"fit: executor must be a concurrent.futures.Executor (a ProcessPoolExecutor, a Dask client's "
            f"get_executor()), got {type(executor).__name__}"
        )
    if restarts is None:
        raise ValueError("fit: executor spreads the random starts of restarts=N over workers; give restarts too")
    return executor


def _default_tol(optimizer: Optimizer) -> float:
    """fit's tol when none is given: the lessons' 0.001; for L-BFGS its own tol (scipy's gtol, which the
    History then shows), else scikit-learn's 1e-4."""
    if isinstance(optimizer, LBFGS):
        return LBFGS.DEFAULT_TOL if optimizer.tol is None else optimizer.tol
    return DEFAULT_TOL


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
