"""Many random starts in one run: a leading population dimension on every trained parameter.

``fit(..., restarts=N, seed=s)`` draws N starting points with the model's own
``reset_parameters`` and trains them together: a parameter of shape ``(a, b)``
becomes ``(N, a, b)``, a scalar ``(N, 1, 1)``, so one forward and one backward
pass serve every start (the ops broadcast over the new leading axis). Each start
follows the lessons' rules on its own: it stops (is frozen) when every one of its
step sizes is below ``tol``, and one that diverges is frozen at its last finite
values without stopping the others. The best start is then trained once more
alone, which gives its full :class:`~chainrule.train.History` and leaves the
model exactly where a single run from that start ends.

Example: the lessons' network from 20 random starts; one of them fits the data::

    >>> import chainrule as cr
    >>> x, y = cr.data.dosage()
    >>> net = cr.nn.DosageNetwork.random(seed=0)
    >>> history = cr.fit(net, x, y, restarts=20, seed=0)
    >>> len(history.restart_losses), bool(history.restart_losses.min() < 0.01)
    (20, True)
    >>> bool(cr.losses.ssr(net(x), y).item() < 0.01)    # the model holds the best start's fit
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .engines import Settings, batches, forward_backward, one_hot
from .losses import binary_cross_entropy, cross_entropy, mse, ssr
from .nn import Module, Parameter
from .ops import REGISTRY
from .tensor import constant, no_grad, tensor_from
from .trace import CompiledStep

_log_softmax = REGISTRY["log_softmax"].fwd

# The most float64 numbers (about 1.6 GB) a run may ask for before anything is allocated: the parameters
# of every start plus the population's activations (starts x rows x the widest layer). A size estimate,
# not an exact count; it catches a mistyped size before it costs minutes or a MemoryError.
MAX_ELEMENTS = 200_000_000


def population_elements(parameters: int, rows: int, widest: int, restarts: int | None = None) -> int:
    """About how many float64 numbers a run holds: starts x (parameters + rows x widest layer).

    >>> population_elements(parameters=7, rows=3, widest=2, restarts=10)   # the lessons' network, 10 starts
    130
    """
    return max(restarts or 1, 1) * (int(parameters) + int(rows) * int(widest))


def check_population(named: Sequence[tuple[str, Parameter]], n: int, rows: int) -> None:
    """A ValueError, before any start is drawn, when ``n`` starts of these parameters would pass MAX_ELEMENTS."""
    parameters = sum(p.size for _, p in named)
    widest = max((max(p.shape, default=1) for _, p in named), default=1)
    need = population_elements(parameters, rows, widest, n)
    if need > MAX_ELEMENTS:
        raise ValueError(
            f"fit: restarts={n} would hold about {need:.3g} float64 numbers ({n} starts x ({parameters} "
            f"parameters + {rows} rows x {widest})), more than chainrule.restarts.MAX_ELEMENTS = "
            f"{MAX_ELEMENTS:.3g} (about {MAX_ELEMENTS * 8 / 1e9:.2g} GB); use fewer restarts, a smaller "
            "network or a smaller batch_size"
        )


def draw_starts(model: Module, named: Sequence[tuple[str, Parameter]], n: int, seed: int | None) -> list[np.ndarray]:
    """N starting points of the trained parameters: the k-th is the k-th ``reset_parameters`` draw from ``seed``.

    Returns one array per trained parameter with the starts stacked on axis 0.
    The model's own values are left as they were.
    """
    rng = np.random.default_rng(seed)
    everything = model.parameters()
    keep = [p.data.copy() for p in everything]
    starts = []
    try:
        for _ in range(n):
            model.reset_parameters(rng)
            starts.append([p.data.copy() for _, p in named])
    finally:
        for p, value in zip(everything, keep):
            p.data[...] = value
    return [np.stack([s[j] for s in starts]) for j in range(len(named))]


def _population_shape(n, shape, data_ndim):
    """(N, 1, ..., *shape): the population axis first, then padding so it broadcasts past the data's axes."""
    return (n,) + (1,) * max(data_ndim - len(shape), 0) + tuple(shape)


# ---- losses over a population --------------------------------------------------------------
# The loss to differentiate is the sum over starts of each start's loss, so every start's
# gradient is exactly its own. Targets are spread over the starts (``spread``) before the step,
# so a replayed step (compile=True) reads them as data, not as a constant of its first batch.
# Each entry: (spread(y, n), loss(pred, spread targets, n), per-start losses without the graph).


def _broadcast(y, n):
    return np.broadcast_to(y, (n,) + y.shape)


POPULATION = {
    ssr: (
        _broadcast,
        lambda pred, t, n: ssr(pred, constant(t, "Observed")),
        lambda pred, t: ((t - pred) ** 2).sum(axis=(1, 2)),
    ),
    mse: (
        _broadcast,
        lambda pred, t, n: mse(pred, constant(t, "Observed")) * n,
        lambda pred, t: ((t - pred) ** 2).mean(axis=(1, 2)),
    ),
    binary_cross_entropy: (
        _broadcast,
        lambda pred, t, n: binary_cross_entropy(pred, constant(t, "Target")) * n,
        lambda pred, t: (np.logaddexp(0.0, pred) - pred * t).mean(axis=(1, 2)),
    ),
    cross_entropy: (  # targets arrive one-hot (fit makes them once); the starts' rows are stacked
        lambda y, n: np.tile(y, (n, 1)),
        lambda pred, t, n: cross_entropy(pred.reshape((-1, pred.shape[-1])), t) * n,
        lambda pred, t: -(t.reshape(pred.shape) * _log_softmax(pred)).sum(axis=(1, 2)) / pred.shape[1],
    ),
}


class Population(NamedTuple):
    """What the population's run found: per start its final ``losses``, ``iterations`` and whether it
    ``converged``; ``interrupted`` when Ctrl-C (KeyboardInterrupt) stopped the run early, and then ``values``
    (one array per parameter, starts on axis 0) as of the last whole iteration (else None)."""

    losses: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    values: list | None  # the values reached, kept only when interrupted
    interrupted: bool


def train_population(run: Settings, starts: list) -> Population:
    """Train every start at once; return what each start reached (a :class:`Population`).

    Restores the parameters' single shapes (and their values) afterwards.
    Ctrl-C stops within an iteration: every start goes back to its values at
    the start of that iteration, and the result says ``interrupted``.
    """
    if run.loss_fn not in POPULATION:
        raise ValueError(
            "fit: restarts work with the built-in losses (ssr, mse, cross_entropy, "
            f"binary_cross_entropy), got {getattr(run.loss_fn, '__name__', run.loss_fn)!r}"
        )
    spread, differentiable, per_start = POPULATION[run.loss_fn]
    n = len(starts[0])
    params, optimizer = run.params, run.optimizer
    singles = [p.data for p in params]
    y = one_hot(run.model, run.x, run.y) if run.loss_fn is cross_entropy else run.y
    loss = lambda pred, t: differentiable(pred, t, n)  # noqa: E731
    kept = vars(optimizer).get("keep_limit")  # a limit the user set on this optimizer comes back after
    try:
        for p, start in zip(params, starts):
            p.data = start.reshape(_population_shape(n, p.shape, run.x.ndim)).copy()
        optimizer.keep_limit = math.inf  # each start's largest step is read from the step arrays
        optimizer.attach(params)
        step = CompiledStep(run.model, loss, params, forward_backward) if run.compile else forward_backward
        population = run._replace(y=y, loss_fn=loss)
        return _loop(population, step, lambda pred, yb: per_start(pred, spread(yb, n)), spread, n)
    finally:
        if kept is None:
            vars(optimizer).pop("keep_limit", None)
        else:
            optimizer.keep_limit = kept
        for p, single in zip(params, singles):
            p.data = single


def _loop(run: Settings, step, per_start, spread, n: int) -> Population:
    """The population's iterations: each start stops (is frozen) by the lessons' rule on its own steps, or
    when it stops being finite; the others go on. Ctrl-C ends them all at the last whole iteration."""
    model, x, y, params, optimizer, rule = run.model, run.x, run.y, run.params, run.optimizer, run.rule
    rng = np.random.default_rng(run.seed)
    xt = tensor_from(x)
    done = np.zeros(n, dtype=bool)
    converged = np.zeros(n, dtype=bool)
    iterations = np.full(n, rule.max_iter)
    # NOTE: with tol = 0 no start converges, so the steps are not measured: a start that blows up is
    # found by its loss (one iteration later for a NaN step that leaves the loss finite).
    watch, whole = rule.can_converge, run.whole_batch
    spread_y = spread(y, n)
    whole_state = (0, [p.data.copy() for p in params])  # (iterations done, the values then): one assignment
    values: list | None = None  # kept only when Ctrl-C stops the run
    try:
        for it in range(1, rule.max_iter + 1):
            olds = [p.data.copy() for p in params]
            whole_state = (it - 1, olds)
            largest = np.zeros(n)
            finite = np.ones(n, dtype=bool)
            for xb, yb, _ in [(xt, y, None)] if whole else batches(rng, x, y, run.batch_size or len(x)):
                total, _ = step(model, xb, spread_y if whole else spread(yb, n), run.loss_fn, params)
                optimizer.step()
                if watch:
                    largest = np.maximum(largest, _largest_per_start(optimizer.step_sizes, n))
                if not math.isfinite(total):  # some start's loss blew up: find which, at the values before the step
                    finite &= np.isfinite(_losses_before_step(model, xb, yb, per_start, params, optimizer))
                finite &= np.isfinite(largest)
            if not watch and finite.all():  # nothing stops this iteration
                continue
            stop = ~done & (~finite | rule.converged(largest))
            converged |= stop & finite
            iterations[stop] = it
            frozen = done | ~finite  # those already stopped, and those that just blew up, keep their old values
            if frozen.any():
                for p, old in zip(params, olds):
                    np.copyto(p.data, old, where=frozen.reshape((n,) + (1,) * (p.data.ndim - 1)))
            done |= stop
            if done.all():
                break
    except KeyboardInterrupt:
        # NOTE: Ctrl-C may land inside a step: every start goes back to its values at the start of that
        # iteration, the last state known to be whole.
        whole_iterations, olds = whole_state
        for p, old in zip(params, olds):
            np.copyto(p.data, old)
        iterations[~done] = np.minimum(iterations[~done], whole_iterations)
        values = [p.data.copy() for p in params]
    with no_grad():
        final = per_start(model(xt).data, y)
    return Population(np.where(np.isfinite(final), final, math.inf), iterations, converged, values, values is not None)


def _losses_before_step(model, x, y, per_start, params, optimizer):
    """Each start's loss at its values before the last step (new value + step size)."""
    after = [p.data for p in params]
    try:
        for p, s in zip(params, optimizer.step_sizes):
            p.data = p.data + s
        with no_grad():
            return per_start(model(x).data, y)
    finally:
        for p, value in zip(params, after):
            p.data = value


def _largest_per_start(steps, n):
    """max |step| of each start over every parameter: (n,). One stack when each start's parameters are scalars."""
    if all(s.size == n for s in steps):
        return np.abs(np.stack([s.reshape(n) for s in steps])).max(axis=0)
    return np.max([np.abs(s).reshape(n, -1).max(axis=1) for s in steps], axis=0)
