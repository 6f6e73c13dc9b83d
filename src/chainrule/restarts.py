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

The population can be split: start k is drawn from its own seed,
``SeedSequence(seed, spawn_key=(k,))`` (with ``seed=None``, from entropy drawn
once for the run), and the loss is each start's own (its rows, its scale), so a
shard of starts trains bit for bit as those starts do inside the whole
population. ``fit(..., restarts=N, executor=E)`` trains shards of starts
(:func:`shard_starts`) on any :class:`concurrent.futures.Executor` and gives the
same numbers as without it. (Earlier versions drew the starts one after another
from ``default_rng(seed)`` and scaled the mean losses over the whole population:
the same call gave other starts, and so other numbers.)

Example: the lessons' network from 20 random starts; one of them fits the data::

    >>> import chainrule as cr
    >>> x, y = cr.data.dosage()
    >>> net = cr.nn.DosageNetwork.random(seed=0)
    >>> history = cr.fit(net, x, y, restarts=20, seed=0)
    >>> len(history.restart_losses), bool(history.restart_losses.min() < 0.01)
    (20, True)
    >>> bool(cr.losses.ssr(net(x), y).item() < 0.01)    # the model holds the best start's fit
    True

The same starts in shards on two local processes: the same numbers::

    >>> from chainrule.distribute import open_executor
    >>> spread = cr.nn.DosageNetwork.random(seed=0)
    >>> with open_executor(workers=2) as pool:
    ...     shards = cr.fit(spread, x, y, restarts=20, seed=0, executor=pool)
    >>> bool((shards.restart_losses == history.restart_losses).all()), shards.loss == history.loss
    (True, True)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, NamedTuple

import numpy as np

from .distribute import run_tasks, workers_of
from .engines import Settings, batches, one_hot
from .functional import log_softmax, softplus
from .losses import binary_cross_entropy, cross_entropy, mse, ssr
from .nn import Module, Parameter
from .tensor import constant, no_grad, tensor_from
from .trace import CompiledStep

# The most float64 numbers (about 1.6 GB) a run may ask for before anything is allocated: COPIES of the
# parameters of every start plus the activations (starts x rows x the widest layer). A size estimate, not
# an exact count; it catches a mistyped size before it costs minutes or a MemoryError.
MAX_ELEMENTS = 200_000_000
# What a run holds of its parameters at once: values, gradients, the step, the values before the epoch,
# the best values seen, the model file's text, and the optimizer's state (Adam: two moments and a scratch
# array). Measured on a 2-3000-3000-1 network from the command line (peak memory over the parameters'
# bytes): about 7.5 with gradient descent, 10.5 with Adam.
COPIES = 11


def population_elements(parameters: int, rows: int, widest: int, restarts: int | None = None) -> int:
    """About how many float64 numbers a run holds: starts x (COPIES x parameters + rows x widest layer).

    >>> population_elements(parameters=7, rows=3, widest=2, restarts=10)   # the lessons' network, 10 starts
    830
    """
    return max(restarts or 1, 1) * (COPIES * int(parameters) + int(rows) * int(widest))


def check_population(named: Sequence[tuple[str, Parameter]], n: int, rows: int) -> None:
    """A ValueError, before any start is drawn, when ``n`` starts of these parameters would pass MAX_ELEMENTS."""
    parameters = sum(p.size for _, p in named)
    widest = max((max(p.shape, default=1) for _, p in named), default=1)
    need = population_elements(parameters, rows, widest, n)
    if need > MAX_ELEMENTS:
        raise ValueError(
            f"fit: restarts={n} would hold about {need:.3g} float64 numbers ({n} starts x ({COPIES} copies of "
            f"{parameters} parameters + {rows} rows x {widest})), more than chainrule.restarts.MAX_ELEMENTS = "
            f"{MAX_ELEMENTS:.3g} (about {MAX_ELEMENTS * 8 / 1e9:.2g} GB); use fewer restarts, a smaller "
            "network or a smaller batch_size"
        )


def start_entropy(seed: int | None) -> int:
    """The entropy every start is drawn from: ``seed`` itself, or (None) fresh entropy drawn once for the run."""
    return int(np.random.SeedSequence().entropy) if seed is None else int(seed)  # type: ignore[arg-type]


def start_rng(entropy: int, k: int) -> np.random.Generator:
    """Start k's own generator: ``SeedSequence(entropy, spawn_key=(k,))``, so any process can draw any start."""
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(k,)))


def draw_starts(
    model: Module, named: Sequence[tuple[str, Parameter]], starts: int | Sequence[int], entropy: int | None
) -> list[np.ndarray]:
    """Starting points of the trained parameters: start k is ``model.reset_parameters(start_rng(entropy, k))``.

    ``starts`` is a count n (starts 0 .. n-1) or the start numbers to draw.
    Returns one array per trained parameter with the starts stacked on axis 0.
    The model's own values are left as they were. (``entropy`` None: fresh.)
    """
    entropy = start_entropy(entropy) if entropy is None else entropy
    numbers = range(starts) if isinstance(starts, (int, np.integer)) else starts
    everything = model.parameters()
    keep = [p.data.copy() for p in everything]
    drawn = []
    try:
        for k in numbers:
            model.reset_parameters(start_rng(entropy, int(k)))
            drawn.append([p.data.copy() for _, p in named])
    finally:
        for p, value in zip(everything, keep):
            p.data[...] = value
    return [np.stack([s[j] for s in drawn]) for j in range(len(named))]


def _population_shape(n, shape, data_ndim):
    """(N, 1, ..., *shape): the population axis first, then padding so it broadcasts past the data's axes."""
    return (n,) + (1,) * max(data_ndim - len(shape), 0) + tuple(shape)


# ---- losses over a population --------------------------------------------------------------
# Each start's own loss, a (N,) vector: its rows only, scaled by its rows only, so a start's numbers
# do not depend on which other starts share the run (a shard trains as the whole population does).
# The loss to differentiate is the vector's sum, so every start's gradient is exactly its own.
# Targets arrive spread over the starts, (N, rows, outputs) (cross-entropy's one-hot, made once by
# fit), so a replayed step (compile=True) reads them as data, not as a constant of its first batch.


def _spread(y, n):
    return np.broadcast_to(y, (n,) + y.shape)


def _ssr_each(pred, t):
    return ((constant(t, "Observed") - pred) ** 2).sum(axis=(1, 2))


def _mse_each(pred, t):
    return ((constant(t, "Observed") - pred) ** 2).mean(axis=(1, 2))


def _bce_each(pred, t):
    return (softplus(pred) - pred * constant(t, "Target")).mean(axis=(1, 2))


def _cross_entropy_each(pred, t):
    return -(log_softmax(pred) * constant(t, "Target")).sum(axis=(1, 2)) * (1.0 / pred.shape[1])


# Each built-in loss: the (N,) vector of every start's loss, from predictions and spread targets.
POPULATION = {ssr: _ssr_each, mse: _mse_each, binary_cross_entropy: _bce_each, cross_entropy: _cross_entropy_each}


class Population(NamedTuple):
    """What the population's run found: per start its final ``losses``, ``iterations`` and whether it
    ``converged``; ``interrupted`` when Ctrl-C (KeyboardInterrupt) stopped the run early, and then ``values``
    (one array per parameter, starts on axis 0): each start's values where its loss was lowest (else None);
    ``best_values``: the values the start with the lowest loss ended at (one array per parameter)."""

    losses: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    values: list | None  # the values kept, only when interrupted
    interrupted: bool
    best_values: list | None = None


def _check_loss(run: Settings) -> None:
    if run.loss_fn not in POPULATION:
        raise ValueError(
            "fit: restarts work with the built-in losses (ssr, mse, cross_entropy, "
            f"binary_cross_entropy), got {getattr(run.loss_fn, '__name__', run.loss_fn)!r}"
        )


def _each_step(model, x, y, loss_fn, params):
    """One eager forward and backward of the starts' vector of losses: (each start's loss, the gradients of
    their sum). Seeding backward with ones is the gradient of the sum, so each start's gradient is its own."""
    for p in params:
        p.grad = None
    out = loss_fn(model(x), y)
    out.backward(np.ones_like(out.data))
    return out.data, [p.grad if p.grad is not None else np.zeros_like(p.data) for p in params]


def train_population(run: Settings, starts: list, stop: Callable[[], bool] | None = None) -> Population:
    """Train every start at once; return what each start reached (a :class:`Population`).

    Mini-batches are shuffled from ``run.seed`` (one order for every start). Restores the
    parameters' single shapes (and their values) afterwards. Ctrl-C stops within an
    iteration: every start goes back to its values of lowest loss seen, and the result
    says ``interrupted``; so does ``stop()`` turning true, looked at after every batch (a
    signal handler's flag: its KeyboardInterrupt can be lost where Python swallows
    exceptions, in a finalizer or an import's callback).
    """
    _check_loss(run)
    each = POPULATION[run.loss_fn]
    n = len(starts[0])
    params, optimizer = run.params, run.optimizer
    singles = [p.data for p in params]
    y = one_hot(run.model, run.x, run.y) if run.loss_fn is cross_entropy else run.y
    kept = vars(optimizer).get("keep_limit")  # a limit the user set on this optimizer comes back after
    try:
        for p, start in zip(params, starts):
            p.data = start.reshape(_population_shape(n, p.shape, run.x.ndim)).copy()
        optimizer.keep_limit = math.inf  # each start's largest step is read from the step arrays
        optimizer.attach(params)
        step = CompiledStep(run.model, each, params, _each_step) if run.compile else _each_step
        population = run._replace(y=y, loss_fn=each)
        found = _loop(population, step, lambda pred, yb: each(pred, _spread(yb, n)).data, n, stop)
        best = int(np.argmin(found.losses))
        return found._replace(best_values=[p.data[best].reshape(s.shape).copy() for p, s in zip(params, singles)])
    finally:
        if kept is None:
            vars(optimizer).pop("keep_limit", None)
        else:
            optimizer.keep_limit = kept
        for p, single in zip(params, singles):
            p.data = single


class _Lowest(NamedTuple):
    """Each start's lowest loss so far (inf: none finite yet), the iteration it was measured in, and the
    values it was measured at (one array per parameter, starts on axis 0; None before any)."""

    losses: np.ndarray
    iterations: np.ndarray
    values: list | None


def _lower(lowest: _Lowest, it: int, losses: np.ndarray, olds: list) -> _Lowest:
    """``lowest`` with the starts whose loss this iteration (measured at ``olds``) is lower taken from it.
    Never writes into an array it was given: the caller swaps the result in with one assignment, so a
    Ctrl-C at any moment finds either the old record or the new one, whole."""
    lower = losses < lowest.losses  # NaN: never lower
    if not lower.any():
        return lowest
    if lowest.values is None or lower.all():  # olds is this iteration's own copy, never written: kept as it is
        values = olds
    else:
        values = [np.where(lower.reshape((-1,) + (1,) * (o.ndim - 1)), o, v) for o, v in zip(olds, lowest.values)]
    return _Lowest(np.where(lower, losses, lowest.losses), np.where(lower, it, lowest.iterations), values)


def _loop(run: Settings, step, per_start, n: int, halted: Callable[[], bool] | None = None) -> Population:
    """The population's iterations: each start stops (is frozen) by the lessons' rule on its own steps, or
    when it stops being finite; the others go on. Ctrl-C ends them all, each start at its lowest loss seen.

    An iteration's loss of a start is measured at its values before that iteration's steps: with the whole
    data, its loss there; with mini-batches, the mean of its batches' losses over the epoch (as the
    History's loss of an epoch), kept with the values the epoch began at."""
    model, x, y, params, optimizer, rule = run.model, run.x, run.y, run.params, run.optimizer, run.rule
    rng = np.random.default_rng(run.seed)
    xt = tensor_from(x)
    done = np.zeros(n, dtype=bool)
    converged = np.zeros(n, dtype=bool)
    iterations = np.full(n, rule.max_iter)
    # NOTE: with tol = 0 no start converges, so the steps are not measured: a start that blows up is
    # found by its loss (one iteration later for a NaN step that leaves the loss finite).
    watch, whole = rule.can_converge, run.whole_batch
    spread_y = _spread(y, n)
    whole_state = (0, [p.data.copy() for p in params])  # (iterations done, the values then): one assignment
    lowest = _Lowest(np.full(n, math.inf), np.zeros(n, dtype=int), None)
    values: list | None = None  # kept only when Ctrl-C stops the run
    try:
        for it in range(1, rule.max_iter + 1):
            olds = [p.data.copy() for p in params]
            whole_state = (it - 1, olds)
            largest = np.zeros(n)
            finite = np.ones(n, dtype=bool)
            epoch = np.zeros(n)
            for xb, yb, _ in [(xt, y, None)] if whole else batches(rng, x, y, run.batch_size or len(x)):
                if halted is not None and halted():  # (a Ctrl-C whose KeyboardInterrupt was lost)
                    raise KeyboardInterrupt
                losses, _ = step(model, xb, spread_y if whole else _spread(yb, n), run.loss_fn, params)
                optimizer.step()
                if watch:
                    largest = np.maximum(largest, _largest_per_start(optimizer.step_sizes, n))
                finite &= np.isfinite(losses) & np.isfinite(largest)  # a start blew up: its loss before the step
                epoch = epoch + losses if whole else epoch + losses * (len(yb) / len(y))
            lowest = _lower(lowest, it, epoch, olds)
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
        # NOTE: Ctrl-C may land inside a step. Each start still training goes back to the lower of two: its
        # values at the start of the last whole iteration, and those of its lowest loss seen before it (both
        # measured again here on all the data, so a mini-batch epoch's mean loss does not decide alone).
        # A start already stopped (converged, or frozen when it blew up) keeps its values and its count.
        whole_iterations, olds = whole_state
        record = lowest
        kept, at = _lower_of(params, model, xt, y, per_start, olds, record.values, done)
        iterations = np.where(at, record.iterations - 1, np.where(done, iterations, whole_iterations))
        for p, value in zip(params, kept):
            np.copyto(p.data, value)
        values = [p.data.copy() for p in params]
    with no_grad():
        final = per_start(model(xt), y)
    return Population(np.where(np.isfinite(final), final, math.inf), iterations, converged, values, values is not None)


def _lower_of(params, model, xt, y, per_start, olds, seen, stopped):
    """Per start, the values of lower loss on (xt, y): ``olds`` or ``seen`` (None: olds); the ``stopped``
    starts keep ``olds``. Returns (the values, one array per parameter; a mask of the starts that took ``seen``)."""
    if seen is None:
        return olds, np.zeros(len(olds[0]), dtype=bool)
    losses, current = [], [p.data for p in params]
    try:
        with no_grad():
            for values in (olds, seen):
                for p, value in zip(params, values):
                    p.data = value
                found = per_start(model(xt), y)
                losses.append(np.where(np.isnan(found), math.inf, found))
    finally:
        for p, array in zip(params, current):
            p.data = array
    take = (losses[1] < losses[0]) & ~stopped
    return [np.where(take.reshape((-1,) + (1,) * (o.ndim - 1)), v, o) for o, v in zip(olds, seen)], take


def _largest_per_start(steps, n):
    """max |step| of each start over every parameter: (n,). One stack when each start's parameters are scalars."""
    if all(s.size == n for s in steps):
        return np.abs(np.stack([s.reshape(n) for s in steps])).max(axis=0)
    return np.max([np.abs(s).reshape(n, -1).max(axis=1) for s in steps], axis=0)


# ---- restarts, in this process or in shards on an executor ---------------------------------
# The population split into shards: each shard a task for any concurrent.futures executor, which
# draws its own starts from their seeds and trains them with the same loop. A start trains bit for
# bit as it does inside the whole population, so the result does not depend on the split.

SHARDS_PER_WORKER = 2  # shards a worker gets (a dead worker's loss is a shard; more shards, more overhead)
MIN_SHARD = 16  # the fewest starts a shard holds (unless there are fewer starts): vectorized runs pay per step


class Shard(NamedTuple):
    """One task: the run's settings (model, data, loss, optimizer, rule; picklable), the entropy the
    starts are drawn from, and the numbers of the starts to train."""

    run: Settings
    entropy: int
    starts: tuple[int, ...]


class ShardResult(NamedTuple):
    """What a shard's starts reached: per start (in the shard's order) its final loss, iterations and
    whether it converged; ``best_values``, the final values of its start with the lowest loss."""

    starts: tuple[int, ...]
    losses: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    best_values: list


class Restarts(NamedTuple):
    """What ``restarts=N`` found, for the Trainer: every start's ``losses``, ``iterations``, ``converged``
    (a start no finished shard trained: NaN, 0, False); ``best`` (None: none finished); ``values``, what
    the model takes (the best start's starting values, or after Ctrl-C where it got to); ``entropy``,
    what the starts were drawn from; ``interrupted``: the stop reason after Ctrl-C, else None."""

    losses: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    best: int | None
    values: list | None
    entropy: int
    interrupted: str | None


def shard_starts(n: int, workers: int) -> list[range]:
    """Start numbers 0 .. n-1 in contiguous shards: SHARDS_PER_WORKER a worker, each of at least MIN_SHARD.

    >>> [len(s) for s in shard_starts(1000, 2)]     # 4 shards for 2 workers
    [250, 250, 250, 250]
    >>> [len(s) for s in shard_starts(20, 2)]       # at least 16 a shard
    [20]
    """
    count = max(1, min(SHARDS_PER_WORKER * max(workers, 1), n // MIN_SHARD))
    edges = [n * i // count for i in range(count + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:])]


# NOTE: the recording of graphs (no_grad) is process-wide, and a thread pool (or a Dask worker with
# several threads) hands every task the same model: shards in one process take turns.
_ONE_SHARD_AT_A_TIME = threading.Lock()


def train_shard(shard: Shard) -> ShardResult:
    """Draw this shard's starts from their seeds and train them at once (a task a worker runs)."""
    run = shard.run
    with _ONE_SHARD_AT_A_TIME, np.errstate(all="ignore"):
        starts = draw_starts(run.model, run.named, shard.starts, shard.entropy)
        found = train_population(run._replace(seed=shard.entropy), starts)
    if found.interrupted:  # the worker itself was interrupted: its shard did not finish
        raise KeyboardInterrupt
    assert found.best_values is not None
    return ShardResult(shard.starts, found.losses, found.iterations, found.converged, found.best_values)


def train_restarts(
    run: Settings,
    n: int,
    executor: Executor | None = None,
    on_shard: Callable[[int, int, float], Any] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Restarts:
    """Train ``n`` starts in this process, or in shards on ``executor``; the two give the same numbers.

    ``on_shard(done, total, best loss so far)`` is called as each shard finishes. Ctrl-C (a
    KeyboardInterrupt), or ``stop()`` turning true (in this process): here the starts stop within an
    iteration and the start whose lowest loss is lowest is kept at those values; on an executor the
    shards not finished are cancelled and the best start of the finished ones is kept at its final values.
    """
    _check_loss(run)
    entropy = start_entropy(run.seed)
    run = run._replace(seed=entropy)  # the mini-batches' order: one for every start, in every shard
    if executor is None:
        starts = draw_starts(run.model, run.named, n, entropy)
        with np.errstate(all="ignore"):
            found = train_population(run, starts, stop)
        best = int(np.argmin(found.losses))
        values = found.best_values if found.interrupted else [s[best] for s in starts]
        reason = None
        if found.interrupted:
            reason = (
                f"interrupted (Ctrl-C) while training the {n} random starts; kept start {best + 1} where its "
                f"loss was lowest ({found.losses[best]:.6g}, after {int(found.iterations[best])} iterations), "
                "the lowest of every start's lowest"
            )
        return Restarts(found.losses, found.iterations, found.converged, best, values, entropy, reason)
    tasks = [Shard(run, entropy, tuple(s)) for s in shard_starts(n, workers_of(executor))]
    finished: dict[int, ShardResult] = {}
    lowest = [math.inf]

    def done(i: int, result: ShardResult) -> None:
        finished[i] = result
        lowest[0] = min(lowest[0], float(np.min(result.losses)))
        if on_shard is not None:
            on_shard(len(finished), len(tasks), lowest[0])

    interrupted = False
    try:
        run_tasks(executor, train_shard, tasks, on_done=done)
    except KeyboardInterrupt:
        interrupted = True
    return _gathered(run, n, tasks, finished, entropy, interrupted)


def _gathered(run: Settings, n: int, tasks: list, finished: dict, entropy: int, interrupted: bool) -> Restarts:
    """The shards' results in start order; the best start's starting values drawn again from its seed."""
    losses, iterations, converged = np.full(n, math.nan), np.zeros(n, dtype=int), np.zeros(n, dtype=bool)
    for r in finished.values():
        index = list(r.starts)
        losses[index], iterations[index], converged[index] = r.losses, r.iterations, r.converged
    if not finished:
        reason = (
            f"interrupted (Ctrl-C) while training the {n} random starts in {len(tasks)} shards, before any shard "
            "finished; the model keeps the values it had"
        )
        return Restarts(losses, iterations, converged, None, None, entropy, reason)
    best = int(np.nanargmin(losses))
    if not interrupted:
        values = [start[0] for start in draw_starts(run.model, run.named, [best], entropy)]
        return Restarts(losses, iterations, converged, best, values, entropy, None)
    owner = next(r for r in finished.values() if best in r.starts)
    reason = (
        f"interrupted (Ctrl-C) while training the {n} random starts: {len(finished)} of {len(tasks)} shards "
        f"({sum(len(r.starts) for r in finished.values())} starts) had finished; kept start {best + 1}, "
        "the best of those, at its final values"
    )
    return Restarts(losses, iterations, converged, best, owner.best_values, entropy, reason)
