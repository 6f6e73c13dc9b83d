"""Step engines: what one iteration (or a block of them) computes, for the one training loop.

An engine takes a run's :class:`Settings` once. Each ``advance(n, light)`` call
computes up to ``n`` iterations (forward, backward, the optimizer's update) and
hands back an :class:`Outcome`: the iterations done (an :class:`Iteration`, or a
:class:`Block` of several), the iteration that stopped being finite (a
:class:`Failure`: nothing of it is recorded), or a hand-over (this engine
cannot go on; the loop takes the next one). An engine never decides when to
stop and never writes the History: :class:`chainrule.loop.Trainer` does both.

- :class:`Epochs`: one epoch a call (the whole batch, or every mini-batch), each
  step by the eager engine (``forward_backward``) or by its NumPy replay
  (:class:`chainrule.trace.CompiledStep`).
- :class:`WrittenOut`: a tiny float64 full-batch model as plain Python
  arithmetic (:mod:`chainrule.scalar`), a block of iterations a call.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from .data import training_arrays
from .errors import CompileWarning, outside_stacklevel
from .history import TRACE_LIMIT, quiet_norm
from .losses import LOSSES, poisson, targets_for
from .nn import Module, Parameter
from .optim import LBFGS, Adam, GradientDescent, Momentum, Optimizer
from .scalar import BLOCK, MAX_ELEMENTS, RECHECK, Program, Step, Unsupported, hyperparameters
from .stopping import StoppingRule
from .tensor import Tensor, constant, is_anomaly_enabled, is_grad_enabled, no_grad, tensor_from
from .trace import CompiledStep

__all__ = [
    "Settings",
    "SparseRows",
    "is_sparse",
    "sparse_arrays",
    "dense",
    "Iteration",
    "Block",
    "Failure",
    "Outcome",
    "Epochs",
    "WrittenOut",
    "Minimized",
    "loss_and_grads",
    "forward_backward",
    "one_hot",
    "penalty",
    "add_penalty",
    "loss_now",
    "clip_gradients",
    "is_weight",
    "batches",
    "Batches",
    "BLOCK",
    "replays_weights",
    "WeightColumn",
    "WeightedReplay",
]


class Settings(NamedTuple):
    """One training run's settings, checked once by the Trainer and read by every engine."""

    model: Module
    x: Any  # (rows, features) in the model's dtype: an array, or SparseRows (made dense a batch at a time)
    y: np.ndarray  # targets: (rows, outputs), or class labels for cross-entropy
    loss_fn: Callable[..., Tensor]
    optimizer: Optimizer
    named: list  # [(name, Parameter)] of the trained parameters
    rule: StoppingRule  # tol and max_iter
    batch_size: int | None
    seed: int | None
    compile: bool
    alpha: float = 0.0  # the L2 penalty: 0.5 alpha sum(||W||^2) / rows of the batch, weights only
    sample_weight: np.ndarray | None = None  # (rows,) weights of the data loss
    clip: float | None = None  # the largest global norm of the gradients
    shuffle: Any = True  # mini-batches from a fresh permutation each epoch (False: in row order; a function
    # of the number of rows: that epoch's order, see Batches)
    source: Any = None  # a batch source (x and y are then empty): each iter() an epoch of (x, y) batches

    @property
    def params(self) -> list[Parameter]:
        return [p for _, p in self.named]

    @property
    def whole_batch(self) -> bool:
        return self.source is None and (self.batch_size is None or self.batch_size >= len(self.x))

    @property
    def plain(self) -> bool:
        """No penalty, weights or clipping: the step is the loss's own forward and backward."""
        return self.alpha == 0 and self.sample_weight is None and self.clip is None


class Iteration(NamedTuple):
    """One iteration done: its loss (before the update), largest |step|, and per parameter the old
    value, the derivative and the step (new = old - step; a large parameter's step may be its norm)."""

    loss: float
    largest: float
    olds: list
    grads: list
    steps: list


class Block(NamedTuple):
    """Several iterations done: per parameter arrays with the iteration as the first axis."""

    losses: list
    olds: list
    grads: list
    steps: list
    largest: float  # the last iteration's largest |step|


class Failure(NamedTuple):
    """The iteration whose loss, derivative or step was not finite (not recorded), and the values before it."""

    loss: float
    grads: list
    steps: list
    before: list
    why: str | None = None  # what happened, when the loss, derivatives and steps do not say it


class Outcome(NamedTuple):
    done: Iteration | Block | None = None
    failure: Failure | None = None
    handover: bool = False
    finished: tuple[str, bool] | None = None  # an engine that runs its own stopping test (L-BFGS): (why, converged)


# ---- the eager step and the data --------------------------------------------------------------


class SparseRows:
    """A sparse matrix of inputs (SciPy's CSR, rows cut fast) that training reads a batch at a time:
    ``x[rows]`` is that batch made dense, ``take(rows)`` keeps the rows sparse (a training part).

    Example::

        >>> import numpy as np, scipy.sparse
        >>> x = SparseRows(scipy.sparse.csr_matrix(np.eye(3)), np.float64)
        >>> len(x), x.shape, x[[2, 0]].tolist()
        (3, (3, 3), [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    """

    def __init__(self, matrix: Any, dtype: Any) -> None:
        self.matrix = matrix.tocsr().astype(dtype)
        self.shape: tuple[int, ...] = tuple(self.matrix.shape)
        self.dtype = self.matrix.dtype
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        return self.matrix[rows].toarray()

    def take(self, rows: Any) -> SparseRows:
        return SparseRows(self.matrix[rows], self.dtype)

    def dense(self) -> np.ndarray:
        return self.matrix.toarray()


def is_sparse(x: Any) -> bool:
    """Whether ``x`` is a SciPy sparse matrix or array (it has ``tocsr``), not rows of numbers."""
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


def sparse_arrays(x: Any, y: Any, dtype: Any, labels: bool) -> tuple[SparseRows, np.ndarray]:
    """Sparse inputs and their targets checked as :func:`chainrule.data.training_arrays` checks dense ones."""
    if len(x.shape) != 2:
        raise ValueError(f"fit: sparse x must be 2-D (rows, features), got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"fit: x must hold numbers, got dtype {x.dtype}")
    rows = SparseRows(x, dtype)
    values = rows.matrix.data
    if values.size and not (np.isfinite(values.min()) and np.isfinite(values.max())):
        raise ValueError("fit: sparse x contains NaN or inf")
    _, y = training_arrays(np.zeros((x.shape[0], 1), dtype), y, dtype, labels)  # (checks y and the row counts)
    return rows, y


def dense(x: Any) -> np.ndarray:
    """The inputs as one dense array (sparse ones made dense: the whole batch, L-BFGS)."""
    return x.dense() if isinstance(x, SparseRows) else x


def forward_backward(
    model: Module,
    x: Tensor,
    y: np.ndarray,
    loss_fn: Callable[..., Tensor],
    params: Sequence[Parameter],
    sample_weight: np.ndarray | None = None,
) -> tuple[float, list[np.ndarray]]:
    """One eager forward and backward pass: (loss, each parameter's gradient, zeros where none flows)."""
    for p in params:
        p.grad = None
    out = loss_fn(model(x), y) if sample_weight is None else loss_fn(model(x), y, sample_weight=sample_weight)
    out.backward()
    return out.item(), [p.grad if p.grad is not None else np.zeros_like(p.data) for p in params]


def one_hot(model: Module, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class labels as one-hot rows, made and checked once (a replayed step needs its targets as data)."""
    with no_grad():
        classes = model(tensor_from(x[:1])).shape[-1]
    return targets_for(np.empty((len(labels), classes), dtype=x.dtype), labels)


def batches(
    rng: np.random.Generator | None, x: np.ndarray, y: np.ndarray, batch_size: int, order: Any = None
) -> Iterator[tuple]:
    """(inputs, targets, rows) mini-batches of a fresh random permutation of the rows (no ``rng``: in row
    order; ``order``: the rows in that order), gathered one at a time."""
    if order is None:
        order = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    dense_x, dense_y = type(x) is np.ndarray, type(y) is np.ndarray  # take(): half the time of x[rows]
    for i in range(0, len(x), batch_size):
        rows = order[i : i + batch_size]
        yield (
            tensor_from(x.take(rows, axis=0) if dense_x else x[rows]),
            y.take(rows, axis=0) if dense_y else y[rows],
            rows,
        )


class Batches:
    """The (inputs, targets, sample weights, share) of each step of an epoch: the whole data, or mini-batches.

    A batch's share turns its loss into its part of the epoch's: its rows / n for a mean loss
    (as scikit-learn adds up an epoch's loss, also with sample weights). From a batch source
    (``run.source``) the rows of an epoch are known only at its end: a batch's share is then its
    rows, and ``seen`` (the epoch's rows) divides the sum (:meth:`epoch_loss`).

    ``run.shuffle`` may be a function of the number of rows n returning a permutation of
    ``range(n)``: it is called once an epoch of mini-batches, and the batches take the rows in
    that order (another library's draws, say: scikit-learn's ``RandomState`` shuffles). The
    whole batch needs no order and does not call it.
    """

    def __init__(self, run: Settings) -> None:
        self.x, self.y, self.size, self.weights = run.x, run.y, run.batch_size, run.sample_weight
        self.mean = getattr(run.loss_fn, "reduction", "mean") == "mean"
        self.whole = run.whole_batch
        self.order = run.shuffle if callable(run.shuffle) else None
        self.rng = np.random.default_rng(run.seed) if run.shuffle is True else None
        self.source, self.seen = run.source, 0
        self.labels = getattr(run.loss_fn, "__name__", "") == "cross_entropy"
        self.all = [] if run.source is not None else [(tensor_from(dense(run.x)), run.y, run.sample_weight, 1.0)]

    def epoch_loss(self, total: float) -> float:
        """An epoch's loss from the sum of its batches' losses by their shares."""
        return total / max(self.seen, 1) if self.source is not None and self.mean else total

    def _streamed(self, in_order: bool) -> Iterator[tuple]:
        """The source's batches checked and in the model's dtype (in file order for ``in_order``)."""
        self.seen = 0
        ordered = getattr(self.source, "in_order", None) if in_order else None
        for xb, yb in ordered() if ordered is not None else self.source:
            xb, yb = training_arrays(xb, yb, self.x.dtype, self.labels)
            self.seen += len(xb)
            yield tensor_from(xb), yb, None, float(len(yb)) if self.mean else 1.0
        if self.seen == 0:
            raise ValueError("fit: the batch source gave no rows in an epoch")

    def __iter__(self) -> Iterator[tuple]:
        if self.source is not None:
            return self._streamed(self.rng is None)
        if self.whole:
            return iter(self.all)
        n, w = len(self.x), self.weights
        assert self.size is not None
        return (
            (xb, yb, None if w is None else w[rows], len(yb) / n if self.mean else 1.0)
            for xb, yb, rows in batches(self.rng, self.x, self.y, self.size, self._order(n))
        )

    def _order(self, n: int) -> np.ndarray | None:
        """This epoch's order of the rows from ``run.shuffle``'s function, checked (None: no function)."""
        if self.order is None:
            return None
        order = np.asarray(self.order(n))
        if order.shape != (n,) or order.dtype.kind not in "iu" or not _is_permutation(order):
            what = (
                f"shape {order.shape}, dtype {order.dtype}"
                if order.shape != (n,) or order.dtype.kind not in "iu"
                else "repeated or missing rows"
            )
            raise ValueError(
                f"fit: shuffle's function must return a permutation of the {n} row indices 0..{n - 1} "
                f"(integers, each once), got {what}"
            )
        return order


def _is_permutation(order: np.ndarray) -> bool:
    """Whether the integers ``order`` hold each of 0..len(order)-1 once."""
    n = len(order)
    return n == 0 or (
        int(order.min()) >= 0 and int(order.max()) < n and bool(np.all(np.bincount(order, minlength=n) == 1))
    )


# ---- what the loop adds to a step: the L2 penalty and clipping ------------------------------------


def is_weight(name: str) -> bool:
    """Whether the L2 penalty (``alpha``) covers a parameter: a module's ``weight`` (nn.Linear's), or the
    lessons' w1, w2, ... (biases are not penalized)."""
    last = name.rsplit(".", 1)[-1]
    return last == "weight" or (last[:1] == "w" and last[1:].isdigit())


def penalty(run: Settings, rows: float) -> float:
    """The L2 penalty of the trained weights: 0.5 alpha sum(||W||^2) / rows (scikit-learn's ``alpha``)."""
    # (one dot product a weight, as scikit-learn sums the squares: no array of the squares is made)
    total = 0.0
    for name, p in run.named:
        if is_weight(name):
            flat = p.data.reshape(-1)
            total += float(np.dot(flat, flat))
    return 0.5 * run.alpha * total / rows


def add_penalty(run: Settings, loss: float, rows: float) -> float:
    """The loss plus the penalty; d penalty/dW = alpha W / rows is added to each weight's ``.grad``."""
    total, c = 0.0, run.alpha / rows
    for name, p in run.named:  # (one pass: penalty()'s sum of squares and the derivatives together)
        if is_weight(name):
            flat = p.data.reshape(-1)
            total += float(np.dot(flat, flat))
            extra = c * p.data
            if p.grad is not None:  # (into the new array: a .grad may be shared, see trace.Tape.run)
                extra += p.grad
            p.grad = extra
    return loss + 0.5 * run.alpha * total / rows


def loss_and_grads(
    run: Settings, xb: Tensor, yb: np.ndarray, wb: np.ndarray | None, step: Callable[..., tuple] = forward_backward
) -> tuple[float, list[np.ndarray]]:
    """The loss of a batch with its sample weights and the L2 penalty, and each parameter's gradient."""
    params = run.params
    if wb is None and not isinstance(step, WeightedReplay):
        loss, _ = step(run.model, xb, yb, run.loss_fn, params)
    elif isinstance(step, WeightedReplay):  # the weights ride with the targets, as data of the replayed graph
        loss, _ = step(run.model, xb, yb, run.loss_fn, params) if wb is None else step.weighted(run, xb, yb, wb)
    else:
        loss, _ = forward_backward(run.model, xb, yb, run.loss_fn, params, wb)
    if run.alpha:
        loss = add_penalty(run, loss, float(len(yb)) if wb is None else float(np.sum(wb)))
    return loss, [p.grad if p.grad is not None else np.zeros_like(p.data) for p in params]


def loss_now(run: Settings) -> float:
    """The loss (with its weights and penalty) at the parameters' present values, a batch at a time
    (no activations of more rows than a training step's): each batch's loss by its share, as an epoch's."""
    total, shares = 0.0, Batches(run._replace(shuffle=False))
    with no_grad():
        for xb, yb, wb, share in shares:
            if wb is not None and not wb.sum() > 0:  # (skipped by training too)
                continue
            out = run.model(xb)
            loss = (run.loss_fn(out, yb) if wb is None else run.loss_fn(out, yb, sample_weight=wb)).item()
            if run.alpha:
                loss += penalty(run, float(len(yb)) if wb is None else float(np.sum(wb)))
            total += loss * share
    return shares.epoch_loss(total)


def clip_gradients(params: Sequence[Parameter], limit: float) -> float:
    """Scale every ``.grad`` by limit / norm when their global Euclidean norm is above ``limit``; return
    the norm before clipping (PyTorch's ``clip_grad_norm_``). A norm that is not finite (a derivative
    inf or NaN, or a norm beyond float range) leaves the gradients as they are: the caller diverges.

    NOTE: the squares are summed after dividing by the largest |element|, so finite derivatives of
    1e300 give a finite norm (sqrt(sum(g * g)) would overflow to inf and clip them to 0).
    """
    grads = [p.grad for p in params if p.grad is not None]
    top = max((float(np.max(np.abs(g))) for g in grads if np.size(g)), default=0.0)
    if top == 0 or not math.isfinite(top):
        return top
    norm = top * math.sqrt(sum(float(np.sum(np.square(g / top))) for g in grads))
    if norm > limit and math.isfinite(norm):
        scale = limit / norm
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * scale
    return norm


def _distance(a: np.ndarray, b: np.ndarray, piece: int = 1 << 15) -> float:
    """The Euclidean norm of a - b, a piece at a time: no array of their size is made."""
    a, b = a.reshape(-1), b.reshape(-1)
    if a.size <= piece:  # (most parameters: one subtraction, one dot product; an overflow is left to the
        d = a - b  # divergence check, the Trainer's session ignores it)
        return math.sqrt(float(np.dot(d, d)))
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, a.size, piece):
            d = a[i : i + piece] - b[i : i + piece]
            total += float(np.dot(d, d))
    return math.sqrt(total)


# ---- one epoch a call: eager or replayed ----------------------------------------------------------


class Epochs:
    """One iteration a call: every batch of an epoch through ``step``, the optimizer after each."""

    def __init__(self, run: Settings, step: Callable[..., tuple[float, list]]) -> None:
        self.run, self.step = run, step
        self.batches = Batches(run)
        # NOTE: with tol = 0, or a rule that does not read the steps, no step size stops the run, so only an
        # epoch's last step is measured (for its finiteness: a NaN step of an earlier batch makes the next
        # batch's loss NaN).
        self.watch = (run.rule.by_steps and run.rule.can_converge) or self.batches.whole
        self.params = run.params
        self.full = [p.size <= TRACE_LIMIT for p in self.params]

    def advance(self, n: int, light: bool) -> Outcome:
        run, params, optimizer = self.run, self.params, self.run.optimizer
        olds = [p.data.copy() for p in params]
        value, largest = 0.0, 0.0
        for xb, yb, wb, weight in self.batches:
            if wb is not None and not wb.sum() > 0:  # rows that all weigh 0: no loss to take a mean of, no step
                continue
            if run.plain:
                loss, grads = self.step(run.model, xb, yb, run.loss_fn, params)
            else:
                loss, grads, norm = self._step(xb, yb, wb)
                if not math.isfinite(norm):  # clipping cannot scale a norm that is not a number
                    why = f"the gradients' global norm is {norm} (clip={run.clip:g} cannot scale it)"
                    return Outcome(failure=Failure(loss, grads, [None] * len(grads), olds, why))
            optimizer.step()
            top = optimizer.largest_step() if self.watch else 0.0
            if not math.isfinite(loss + top):  # a NaN or inf loss, derivative or step
                return Outcome(failure=Failure(loss, grads, optimizer.step_sizes, olds))
            value, largest = value + loss * weight, max(largest, top)
        value = self.batches.epoch_loss(value)
        if not self.watch:
            largest = optimizer.largest_step()
            if not math.isfinite(largest):
                return Outcome(failure=Failure(loss, grads, optimizer.step_sizes, olds))
        whole = self.batches.whole
        steps = [
            (s if full else quiet_norm(s))
            if whole and s is not None
            else old - p.data
            if full
            else _distance(old, p.data)
            for old, p, s, full in zip(olds, params, optimizer.step_sizes, self.full)
        ]
        return Outcome(Iteration(value, largest, olds, grads, steps))

    def _step(self, xb: Tensor, yb: np.ndarray, wb: np.ndarray | None) -> tuple[float, list, float]:
        """A step with the options of the run: weighted loss, L2 penalty, then clipping (the History keeps
        the derivatives before clipping; the optimizer reads the clipped ones); and the gradients' norm."""
        loss, grads = loss_and_grads(self.run, xb, yb, wb, self.step)
        norm = clip_gradients(self.params, self.run.clip) if self.run.clip is not None else 0.0
        return loss, grads, norm

    def finish(self) -> None:
        """Nothing to settle: every step went through the optimizer itself."""

    @property
    def declined(self) -> tuple[bool, bool]:
        """(some, all) of the batch shapes the NumPy replay declined (a CompileWarning said why)."""
        tapes = getattr(self.step, "tapes", {})
        refused = [key for key, tape in tapes.items() if tape is None]
        return bool(refused), bool(refused) and len(refused) == len(tapes)


def replayed(run: Settings) -> Epochs:
    """The NumPy replay of ``compile=True`` (one-hot targets, so that they are data, not constants); with
    sample weights, each batch's weights ride as the targets' last column (see :class:`WeightColumn`)."""
    if run.sample_weight is not None:
        return Epochs(run, WeightedReplay(run))
    return Epochs(run, CompiledStep(run.model, run.loss_fn, run.params, forward_backward))


def replays_weights(loss_fn: Any) -> bool:
    """Whether the NumPy replay can read this loss's sample weights as data: the built-in losses whose
    weighting is all in the graph (not poisson, whose constant term is computed from the targets outside it)."""
    return loss_fn in LOSSES.values() and loss_fn is not poisson


class WeightColumn:
    """A built-in loss reading each row's sample weight from the targets' last column, inside the graph
    (so one recorded step replays for every batch): ``WeightColumn(mse)(out, [y | w]) = mse(out, y, w)``."""

    def __init__(self, loss_fn: Callable[..., Tensor]) -> None:
        self.loss_fn = loss_fn
        self.__name__ = getattr(loss_fn, "__name__", "loss")
        self.reduction = getattr(loss_fn, "reduction", "mean")
        self.task = getattr(loss_fn, "task", "regression")

    def __call__(self, out: Tensor, target: np.ndarray) -> Tensor:
        t = constant(target, "Observed | weight")
        # NOTE: tracked, so that its slices are recorded ops on the targets (data a replay reads for each
        # batch); on a constant they would be folded at the first batch's values. No derivative is asked of it.
        t.requires_grad = True
        return self.loss_fn(out, t[:, :-1], sample_weight=t[:, -1])


class WeightedReplay:
    """The NumPy replay of a step with sample weights: the targets and weights of a batch as one array."""

    def __init__(self, run: Settings) -> None:
        self.replay = CompiledStep(run.model, WeightColumn(run.loss_fn), run.params, forward_backward)
        self.tapes = self.replay.tapes

    def __call__(
        self, model: Module, x: Tensor, y: np.ndarray, loss_fn: Callable[..., Tensor], params: Sequence[Parameter]
    ) -> tuple[float, list[np.ndarray]]:
        """A step of rows that each weigh 1 (the step engines' signature)."""
        return self._step(x, y, np.ones(len(y), y.dtype))

    def weighted(self, run: Settings, x: Tensor, y: np.ndarray, w: np.ndarray) -> tuple[float, list[np.ndarray]]:
        return self._step(x, y, w)

    def _step(self, x: Tensor, y: np.ndarray, w: np.ndarray) -> tuple[float, list[np.ndarray]]:
        packed = np.concatenate([y.reshape(len(y), -1), w.reshape(-1, 1).astype(y.dtype, copy=False)], axis=1)
        r = self.replay
        return r(r.model, x, packed, r.loss_fn, r.params)


# ---- the whole run in one call: L-BFGS by scipy ---------------------------------------------------


class Minimized:
    """``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` on the trained parameters packed into one
    float64 vector: one ``advance`` runs the whole minimization and hands back every scipy iteration
    as a :class:`Block`, and ``finished`` (scipy's own stopping test decides, not the loop's rules)."""

    def __init__(self, run: Settings, step: Callable[..., tuple] = forward_backward) -> None:
        self.run, self.params, self.step = run, run.params, step
        sizes = [p.size for p in self.params]
        ends = np.cumsum(sizes)
        self.spans = list(zip((ends - sizes).tolist(), ends.tolist()))
        self.xt = tensor_from(dense(run.x))  # every evaluation reads every row: sparse rows made dense once
        self.evaluated: list[tuple[np.ndarray, float, np.ndarray]] = []  # the last few (point, loss, gradient)

    def _put(self, flat: np.ndarray) -> None:
        for p, (a, b) in zip(self.params, self.spans):
            p.data[...] = flat[a:b].reshape(p.shape)

    def _split(self, flat: np.ndarray) -> list[np.ndarray]:
        return [flat[..., a:b].reshape(flat.shape[:-1] + p.shape) for p, (a, b) in zip(self.params, self.spans)]

    def objective(self, flat: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss and its gradient (packed, float64) at the packed parameter values ``flat``."""
        self._put(flat)
        loss, grads = loss_and_grads(self.run, self.xt, self.run.y, self.run.sample_weight, self.step)
        g = np.concatenate([np.ravel(g) for g in grads]).astype(np.float64, copy=False)
        self.evaluated = [*self.evaluated[-4:], (flat.copy(), loss, g)]
        return loss, g

    def _at(self, flat: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss and gradient at ``flat``: an evaluation scipy asked for (the newest first), else a new one."""
        for point, loss, g in reversed(self.evaluated):
            if np.array_equal(point, flat):
                return loss, g
        return self.objective(flat)

    def advance(self, n: int, light: bool) -> Outcome:
        try:
            from scipy.optimize import minimize  # type: ignore[import-untyped]  # (needed only here)
        except ImportError:
            raise ImportError("fit: optimizer=LBFGS() needs scipy: pip install 'chainrule[lbfgs]'") from None

        run, opt = self.run, self.run.optimizer
        assert isinstance(opt, LBFGS)
        start = np.concatenate([p.data.ravel() for p in self.params]).astype(np.float64)
        points, losses, grads = [start], [], []  # each iteration's point, and the loss and gradient there

        def record(new: np.ndarray) -> None:  # (scipy hands over a copy of its point)
            loss, g = self._at(points[-1])
            losses.append(loss)
            grads.append(g)
            points.append(new)

        result = minimize(
            self.objective,
            start,
            jac=True,
            method="L-BFGS-B",
            callback=record,
            options={
                "maxiter": min(opt.max_iter or run.rule.max_iter, run.rule.max_iter),
                "maxfun": opt.max_fun,
                "gtol": run.rule.tol if opt.tol is None else opt.tol,
                "maxcor": opt.memory,
            },
        )
        final = np.asarray(result.x, dtype=np.float64)
        self._put(final)
        loss, g = self._at(final)
        for p, grad in zip(self.params, self._split(g)):
            p.grad = grad.astype(p.dtype)
        if not (math.isfinite(loss) and np.all(np.isfinite(g))):
            return Outcome(failure=Failure(loss, self._split(g), self._split(final * 0), self._split(start)))
        why = f"L-BFGS-B (scipy) stopped after {result.nit} iterations and {result.nfev} evaluations: {result.message}"
        if not losses:
            return Outcome(finished=(why, result.status == 0))
        path = np.array(points)
        steps = path[:-1] - path[1:]
        done = Block(
            losses,
            self._split(path[:-1]),
            self._split(np.array(grads)),
            self._split(steps),
            float(np.max(np.abs(steps[-1]))),
        )
        return Outcome(done, finished=(why, result.status == 0))

    def finish(self) -> None:
        """Nothing to settle: scipy's state ends with the call."""


# ---- a block of iterations a call: written out as Python arithmetic ---------------------------------


class WrittenOut:
    """Full-batch iterations of a tiny float64 model run by a :class:`chainrule.scalar.Program`.

    Every ``RECHECK`` iterations an eager step is taken beside the written-out one and must match it
    to 1e-9 (relative), else the engine hands over (with a CompileWarning); a math error in pure
    Python (an overflow, a log of 0) hands the iteration over too, to the NumPy replay.
    """

    label = "python"

    @classmethod
    def create(cls, run: Settings) -> WrittenOut | None:
        """The engine, or None when the model, data or optimizer cannot be written out (nothing done)."""
        arrays = [run.x, run.y, *(p.data for p in run.params)]
        if (
            isinstance(run.x, SparseRows)
            or is_anomaly_enabled()
            or not is_grad_enabled()
            or not run.whole_batch
            or not run.plain
            or run.optimizer.weight_decay
            or type(run.optimizer) not in (GradientDescent, Momentum, Adam)
            or any(a.dtype != np.float64 or a.size > MAX_ELEMENTS for a in arrays)
        ):
            return None  # (before any forward pass: a large model or data set is never written out)
        xt = tensor_from(run.x)
        try:
            program = Program(
                Step(run.loss_fn(run.model(xt), run.y), run.params, run.x, run.y), run.optimizer, run.rule.tol
            )
        except Unsupported:
            return None
        return cls(run, program, xt)

    def __init__(self, run: Settings, program: Program, xt: Tensor) -> None:
        self.run, self.program, self.xt = run, program, xt
        self.params = run.params
        sizes = [p.size for p in self.params]
        ends = np.cumsum(sizes)
        self.spans = list(zip((ends - sizes).tolist(), ends.tolist()))
        self.X, self.Y = run.x.ravel().tolist(), run.y.ravel().tolist()
        self.S: tuple = (0.0,) * (program.n_state * int(ends[-1]))
        self.t = run.optimizer.t
        self.since_check = RECHECK
        self.pending: tuple | None = None  # the optimizer's state after a light call, loaded by finish()

    def _values(self) -> tuple:
        return tuple(np.concatenate([p.data.ravel() for p in self.params]).tolist())

    def _split(self, flat: np.ndarray) -> list[np.ndarray]:
        return [flat[..., a:b].reshape(flat.shape[:-1] + p.shape) for p, (a, b) in zip(self.params, self.spans)]

    def advance(self, n: int, light: bool) -> Outcome:
        """Up to ``n`` iterations from the parameters' current values (a learner may have set them)."""
        run, params = self.run, self.params
        before = self._values()
        expected = (
            forward_backward(run.model, self.xt, run.y, run.loss_fn, params) if self.since_check >= RECHECK else None
        )
        L: list = []
        V: list = []
        D: list = []
        Z: list = []
        k, why, P, S, t, extra = self.program.run(
            n, before, self.X, self.Y, self.S, self.t, hyperparameters(run.optimizer), L, V, D, Z
        )
        if expected is not None and k and not _agrees(L[0], D[0], expected):
            self._put(np.array(before))  # the eager check ran at these values; the next engine goes on from them
            warnings.warn(
                "fit(compile=True): a step written out as Python arithmetic differs from the eager one "
                "(the model does different work per step); training goes on replaying NumPy calls",
                CompileWarning,
                stacklevel=outside_stacklevel(),
            )
            return Outcome(handover=True)
        self.since_check = (0 if expected is not None else self.since_check) + k
        self.S, self.t = S, t
        done = self._done(L, V, D, Z, P, light) if k else None
        if why == "diverged":
            self.pending = None  # the optimizer stands as after the failed step, as in eager training
            self._settle(P, S, t, extra[2], extra[1])
            grads, steps = (self._split(np.array(a, dtype=float)) for a in extra[1:])
            return Outcome(done, Failure(extra[0], grads, steps, self._split(np.array(P))))
        return Outcome(done, handover=why == "error")  # a math error: the NumPy path takes this iteration

    def _done(self, L: list, V: list, D: list, Z: list, P: tuple, light: bool) -> Iteration | Block:
        """The iterations as the loop records them; the parameters and gradients as they leave them."""
        old, grad, step = (np.array(r, dtype=float) for r in (V, D, Z))
        if light:  # one iteration: the optimizer's state arrays are settled by finish()
            self.pending = (P, self.S, self.t, Z[0], D[0])
            self.run.optimizer.t = self.t  # a schedule in the callback may read it
            olds, grads, steps = (self._split(a[0]) for a in (old, grad, step))
            self._put(np.array(P), grads)
            return Iteration(L[0], max(abs(v) for v in Z[0]), olds, grads, steps)
        self._settle(P, self.S, self.t, Z[-1], D[-1])
        return Block(L, self._split(old), self._split(grad), self._split(step), float(np.max(np.abs(step[-1]))))

    def _put(self, flat: np.ndarray, grads: list | None = None) -> None:
        """Parameters (and their gradients: none where the loss does not reach) set from flat values."""
        for p, v, g, graded in zip(self.params, self._split(flat), grads or self.params, self.program.graded):
            p.data[...] = v
            if grads is not None:
                p.grad = np.array(g) if graded else None

    def _settle(self, P: tuple, S: tuple, t: int, steps: Sequence[float], grads: Sequence[float]) -> None:
        """Parameters, gradients and the optimizer's state as the program left them."""
        self._put(np.array(P), self._split(np.array(grads, dtype=float)))
        e, n_state = len(P), self.program.n_state
        state: dict[str, Any] = {}
        if n_state == 2:  # Adam
            state = {"m": np.array(S[:e]), "v": np.array(S[e:]), "scratch": np.zeros(e)}
        elif n_state == 1 and t:  # Momentum (its velocity exists after the first step)
            state = {"v": np.array(S)}
        self.run.optimizer.restore(t, np.array(steps, dtype=float), state)

    def finish(self) -> None:
        """Load the optimizer's state after light calls (the parameters are already in place)."""
        if self.pending is not None:
            P, S, t, steps, grads = self.pending
            self.pending = None
            values = [p.data.copy() for p in self.params]  # a callback may have set them since
            self._settle(P, S, t, steps, grads)
            for p, v in zip(self.params, values):
                p.data[...] = v


def _agrees(loss: float, grads: Sequence[float], expected: tuple[float, list]) -> bool:
    """The written-out step against the eager one: Python's math and NumPy's may differ in the last
    bits (and long sums are added in another order), so to 1e-9, not bit for bit."""
    flat = np.concatenate([np.ravel(g) for g in expected[1]])
    return bool(
        np.isclose(loss, expected[0], rtol=1e-9, atol=1e-12) and np.allclose(grads, flat, rtol=1e-9, atol=1e-12)
    )
