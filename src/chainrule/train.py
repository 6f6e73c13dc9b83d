"""Training by the lessons' rules: forward, loss, backward, update, repeat.

:func:`fit` stops when every step size of an iteration is below ``tol`` (the
lessons' rule), after ``max_iter`` iterations (with a ConvergenceWarning), or
raises :class:`DivergenceError` when the loss or a derivative stops being finite.
It returns a :class:`History` of the loss and of each trained parameter's value,
derivative and step size per iteration. It is ``Trainer(...).run()``: the one
training loop lives in :mod:`chainrule.loop`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .errors import (
    ConvergenceWarning,
    DivergenceError,
    FirstIterationWarning,
    GradientHealthWarning,
    PrematureStopWarning,
    outside_stacklevel,
)
from .history import TRACE_LIMIT, GradientMonitor, History, Trace, format_table
from .loop import Trainer
from .nn import Module
from .optim import Optimizer
from .schedules import Schedule
from .tensor import Tensor

__all__ = [
    "fit",
    "Trainer",
    "FirstIterationWarning",
    "PrematureStopWarning",
    "History",
    "Trace",
    "GradientMonitor",
    "ConvergenceWarning",
    "DivergenceError",
    "GradientHealthWarning",
    "TRACE_LIMIT",
    "format_table",
    "outside_stacklevel",
]


def fit(
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
    n_iter_no_change: int = 10,
    shuffle: bool | Callable[[int], Any] = True,
    executor: Executor | None = None,
) -> History:
    """Train ``model`` on (x, y) by backpropagation and gradient descent; return a :class:`History`.

    - ``loss``: "ssr" (the lessons'), "mse", "cross_entropy", "binary_cross_entropy" or a function.
    - ``optimizer``: default ``GradientDescent(lr=0.1)``; fit attaches it to the
      trained parameters with fresh state.
    - ``params``: names or Parameters to train; the others are held fixed, bit for bit.
    - Stops when every step size of an iteration is below ``tol`` in absolute
      value (None: 0.001, the lessons'; with ``LBFGS`` 1e-4, its gradient
      tolerance), or after ``max_iter`` iterations (a ConvergenceWarning; with
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
      ``restart_iterations``, ``restart_converged`` and ``best_restart``. Start k is drawn from its
      own seed, ``SeedSequence(seed, spawn_key=(k,))``, and every loss is each start's own.
    - ``executor``: with ``restarts``, any :class:`concurrent.futures.Executor` (a
      ``ProcessPoolExecutor``, :func:`chainrule.distribute.open_executor`, a Dask client's
      ``get_executor()``): the starts train in shards on its workers, and the model and History
      are bit for bit those of the same call without it (a dead worker's shard runs again).
    - ``compile=True``: record one step's graph and replay it as a flat list of
      NumPy calls (see :mod:`chainrule.trace`): the same numbers, less Python
      overhead. A tiny float64 model trained on the full batch (the lessons'
      size: at most about 2000 float operations a step) is written out as plain Python
      arithmetic instead, loop and update included (see :mod:`chainrule.scalar`):
      the same numbers to rounding, twenty times faster than PyTorch on the lessons' network. Falls back
      to eager with a ``CompileWarning`` where it cannot apply; ``History.engine``
      says which ran. Schedules, validation and the stopping rules work on every path (the
      written-out one then runs one iteration a call); with ``alpha``, ``clip`` or an
      optimizer's ``weight_decay`` the written-out path steps aside for the NumPy replay, and
      with ``sample_weight`` the eager engine runs (a ``CompileWarning`` says so).

    The training options (the README's "Training options"):

    - ``alpha``: an L2 penalty, scikit-learn's: the loss minimized (and recorded) is
      ``data loss + 0.5 alpha sum(||W||^2) / n``, ``n`` the batch's rows (its sum of
      sample weights), over every weight (a parameter named ``weight``, the lessons'
      w's), not the biases.
    - ``sample_weight``: (n,) weights of the rows in the data loss (weighted mean
      ``sum(w_i loss_i) / sum(w_i)`` for the mean losses); integer weights act as repeated rows.
    - ``schedule``: the learning rate per epoch, a :mod:`chainrule.schedules` object or
      "constant", "invscaling", "adaptive"; ``History.learning_rates`` holds each epoch's.
    - ``clip``: scale the gradients down when their global norm is above ``clip``.
    - ``validation``: a fraction of the rows held out (drawn from ``seed``, stratified
      for classification losses) or ``(x_val, y_val)``; ``History.validation_loss``,
      ``validation_score`` (R^2 or accuracy) per epoch, ``best_validation_score``.
    - ``stopping``: "steps" (the lessons' rule, above), "improvement" (scikit-learn's:
      the training loss did not improve by ``tol`` for more than ``n_iter_no_change``
      epochs), "early" (the same on the validation score; the best parameters come back).
      See :mod:`chainrule.stopping`. A run the lessons' rule stops while the loss is
      still falling fast warns (:class:`PrematureStopWarning`) and says why.
    - ``shuffle=False``: mini-batches in row order; ``shuffle=order``, a function of the number
      of rows n returning a permutation of ``range(n)``: each epoch's mini-batches take the rows
      in the order it returns (called once an epoch; another library's draws, say).

    A batch source instead of arrays (``fit(model, source, loss=...)``, no ``y``): any object
    whose every ``iter()`` is one epoch of ``(x_batch, y_batch)`` arrays, such as
    :func:`chainrule.data.stream` over a file bigger than memory. Each epoch is an iteration
    (the History and the stopping rules as with mini-batches); its loss is the mean over the
    epoch's rows of the batches' losses (the sum for the SSR). The source shuffles (``shuffle=False``
    reads its ``in_order()`` pass, file order, when it has one); ``batch_size`` is the source's.
    ``restarts``, ``optimizer=LBFGS()``, ``sample_weight`` and a validation fraction need all rows at
    once and are refused (``validation=(x_val, y_val)`` works); ``compile=True`` replays NumPy calls
    per batch (never the written-out path, which needs the whole batch; with cross-entropy, eagerly).

    Example: the lessons' gradient descent on b3 alone, from b3 = 0::

        >>> import chainrule as cr
        >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
        >>> x, y = cr.data.dosage()
        >>> h = cr.fit(net, x, y, params=["b3"])
        >>> h.n_iter, round(net.b3.item(), 3)
        (10, 2.609)

    scikit-learn's rule instead of the lessons', with an L2 penalty::

        >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
        >>> h = cr.fit(net, x, y, params=["b3"], stopping="improvement", tol=1e-4, alpha=0.01)
        >>> h.stopping, h.converged, round(net.b3.item(), 2)
        ('improvement', True, 2.61)
    """
    return Trainer(
        model,
        x,
        y,
        loss=loss,
        optimizer=optimizer,
        params=params,
        tol=tol,
        max_iter=max_iter,
        batch_size=batch_size,
        seed=seed,
        callback=callback,
        monitor=monitor,
        restarts=restarts,
        compile=compile,
        alpha=alpha,
        sample_weight=sample_weight,
        schedule=schedule,
        clip=clip,
        validation=validation,
        stopping=stopping,
        n_iter_no_change=n_iter_no_change,
        shuffle=shuffle,
        executor=executor,
    ).run()
