"""Primitives: each op's forward NumPy computation beside its derivative.

Every primitive is one entry in ``REGISTRY``, made by :func:`defop`: its name,
a forward function on ndarrays, a one-line formula, and for each input a pair
(derivative formula, vector-Jacobian product). A VJP is called as
``vjp(g, out, *inputs, **kw)`` where ``g`` is the gradient arriving at ``out``;
it returns the gradient for its input, possibly in the broadcast shape: the
engine sums it back to the input's shape with :func:`unbroadcast`, the one place
that undoes broadcasting.

The tests, the gradient checker and the chain-rule explainer all read this table,
so adding an op is adding one entry here.

Points where an op is not differentiable get a fixed choice, written in its
formula: ``relu'(0) = 0``, ``abs'(0) = 0``, ties of ``maximum``/``minimum``
share the gradient half and half, ties of ``max`` share it equally, and ``clip``
passes the gradient at its bounds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np


class Op:
    """A primitive: forward function, formulas and one VJP per input.

    ``vjps[i]`` is None where input ``i`` is not differentiable (the condition of
    ``where``); ``derivs[i]`` is the formula of its local derivative as text.
    """

    def __init__(self, name: str, fwd: Callable, formula: str, derivs: tuple, vjps: Sequence | _EachInput) -> None:
        self.name = name
        self.fwd = fwd
        self.formula = formula
        self.derivs = derivs
        self.vjps = vjps
        self.__doc__ = "; ".join([formula, *[d for d in derivs if d]])

    def __repr__(self) -> str:
        return f"<op {self.name}: {self.__doc__}>"


REGISTRY: dict[str, Op] = {}


def defop(name: str, fwd: Callable, formula: str, *rules: tuple[str, Callable] | None) -> Op:
    """Register a primitive; each rule is ``(derivative text, vjp)`` or None."""
    derivs = tuple(r[0] if r else None for r in rules)
    vjps = tuple(r[1] if r else None for r in rules)
    REGISTRY[name] = op = Op(name, fwd, formula, derivs, vjps)
    return op


class _EachInput:
    """The VJPs of a variadic op: ``vjps[i]`` is ``vjp(i, ...)``."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, i):
        return lambda g, out, *xs, **kw: self.fn(i, g, out, *xs, **kw)


def defop_variadic(name: str, fwd: Callable, formula: str, deriv: str, vjp: Callable) -> Op:
    """Register a primitive that takes any number of tensors (concatenate, stack)."""
    REGISTRY[name] = op = Op(name, fwd, formula, (deriv,), _EachInput(vjp))
    return op


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the dimensions that broadcasting added or stretched, back to ``shape``."""
    if g.shape == shape:
        return g
    return _unbroadcaster(g.shape, shape)(g)


def unbroadcast_lines(var: str, src: tuple[int, ...], dst: tuple[int, ...]) -> list[str]:
    """Python lines that sum variable ``var`` of shape ``src`` back to ``dst`` (what :func:`unbroadcast` runs).

    NOTE: the plan depends only on the shapes, so it is made once per pair: the eager engine calls
    it as a small generated function, and a recorded tape (chainrule.trace) inlines the same lines.
    A short axis inside a large array (a population of starts over the data's rows) is summed slice
    by slice: NumPy's reduce would run one tiny loop per outer row.
    """
    if src == dst:
        return []
    if not dst:  # a scalar: the common case of a bias or a lesson's weight
        return [f"{var} = add_reduce({var}, axis=None)"]
    lines, shape = [], tuple(src)
    extra = len(src) - len(dst)
    if extra == 1 and len(src) == 2 and src[0] >= 16:  # a bias under a batch of rows: ones @ g, one BLAS call
        lines.append(f"{var} = ones({src[0]}, {var}.dtype) @ {var}")
        shape = shape[1:]
    elif extra:
        lines.append(f"{var} = {var}.sum(axis={tuple(range(extra))!r})")
        shape = shape[extra:]
    for axis in [i for i, n in enumerate(dst) if n == 1 and shape[i] != 1]:
        n, before = shape[axis], ":, " * axis
        if n > 8 or int(np.prod(shape)) < 512 or axis == 0:
            lines.append(f"{var} = {var}.sum(axis={axis}, keepdims=True)")
        else:
            lines += [
                f"_s = {var}",
                f"{var} = add(_s[{before}0:1], _s[{before}1:2])",
                *(f"{var} += _s[{before}{k}:{k + 1}]" for k in range(2, n)),
            ]
        shape = shape[:axis] + (1,) + shape[axis + 1 :]
    if shape != tuple(dst):
        lines.append(f"{var} = asarray({var}).reshape({tuple(dst)!r})")
    return lines


@functools.lru_cache(maxsize=256)
def _ones(n, dtype):
    """A vector of n ones, made once per size and dtype (read only: it is shared)."""
    ones = np.ones(n, dtype)
    ones.flags.writeable = False
    return ones


UNBROADCAST_NAMES = {"add": np.add, "add_reduce": np.add.reduce, "asarray": np.asarray, "ones": _ones}


@functools.lru_cache(maxsize=4096)
def _unbroadcaster(src, dst):
    source = "def unbroadcast(g):\n" + "".join(f"    {line}\n" for line in unbroadcast_lines("g", src, dst))
    names = dict(UNBROADCAST_NAMES)
    exec(compile(source + "    return g\n", "<chainrule unbroadcast>", "exec"), names)  # our own generated code
    return names["unbroadcast"]


def _norm_axes(axis, ndim):
    """Axis argument as a sorted tuple of non-negative axes (None means all)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(a % ndim if ndim else a for a in axes))


def _keep(a, ndim, axis, keepdims):
    """Re-insert the reduced axes of a reduction result, so it broadcasts against the input."""
    if keepdims or ndim == 0 or axis is None:
        return a  # a full reduction's result is 0-d and broadcasts as it is
    return np.expand_dims(a, _norm_axes(axis, ndim))


def _share(g, wins, ties):
    """Gradient share of one side of maximum/minimum: all where it wins, half on ties."""
    return g * np.where(ties, 0.5, wins).astype(g.dtype, copy=False)


# Zeros for maximum(x, 0): NumPy's SIMD loop of maximum runs for two arrays, not for an array and a
# scalar (about 4x slower on a batch of activations), so relu compares with an array of zeros. One
# read-only array per (shape, dtype), up to ZEROS_LIMIT elements; beyond it a row of zeros broadcasts.
ZEROS_LIMIT = 1 << 17
_zeros: dict[tuple, np.ndarray] = {}


def _zeros_like(x):
    """Read-only zeros that broadcast against the float array ``x`` (its shape, or its last axis), or 0."""
    shape = x.shape if x.size <= ZEROS_LIMIT else x.shape[-1:]
    if x.dtype.kind != "f" or not shape or shape[-1] > ZEROS_LIMIT:
        return 0
    key = (shape, x.dtype)
    zeros = _zeros.get(key)
    if zeros is None:
        if len(_zeros) >= 64:  # many shapes (batches of every size): start over rather than grow
            _zeros.clear()
        zeros = np.zeros(shape, x.dtype)
        zeros.flags.writeable = False
        _zeros[key] = zeros
    return zeros


def _relu(x):
    return np.maximum(x, _zeros_like(x)) if type(x) is np.ndarray else np.maximum(x, 0)


def _relu_vjp(g, out):
    """g where relu(x) > 0, else 0: g times a mask of ones and zeros, made from booleans in g's type
    (NumPy's sign() branches on every element, and a float-times-bool multiply casts as it goes)."""
    return g * np.greater(out, 0).astype(getattr(g, "dtype", out.dtype))


def _clip(x, lo=None, hi=None):
    return np.clip(x, lo, hi)


def _clip_vjp(g, out, x, lo=None, hi=None):
    inside = np.ones(x.shape, dtype=bool)
    if lo is not None:
        inside &= x >= lo
    if hi is not None:
        inside &= x <= hi
    return g * inside


# fmt: off
# (The registry below is a table: each entry stays laid out as one block, STYLE.md 1.)

# ---- elementwise arithmetic --------------------------------------------------

defop("add", np.add, "add(a, b) = a + b",
      ("d/da = 1", lambda g, out, a, b: g),
      ("d/db = 1", lambda g, out, a, b: g))
defop("sub", np.subtract, "sub(a, b) = a - b",
      ("d/da = 1", lambda g, out, a, b: g),
      ("d/db = -1", lambda g, out, a, b: -g))
defop("mul", np.multiply, "mul(a, b) = a * b",
      ("d/da = b", lambda g, out, a, b: g * b),
      ("d/db = a", lambda g, out, a, b: g * a))
defop("div", np.divide, "div(a, b) = a / b",
      ("d/da = 1 / b", lambda g, out, a, b: g / b),
      ("d/db = -a / b^2", lambda g, out, a, b: -g * out / b))
# NOTE: d/db uses log(a) only where a != 0 (a^b * log a -> 0 there for b > 0).
defop("pow", np.power, "pow(a, b) = a^b",
      ("d/da = b * a^(b - 1)", lambda g, out, a, b: g * (a * 2) if b.ndim == 0 and b == 2 else
       g * b * a ** (b - 1)),  # a square: 2 a, one pass fewer, the same numbers (a^1 = a; doubling is exact)
      ("d/db = a^b * log(a)",
       lambda g, out, a, b: g * out * np.log(np.where(a == 0, 1, a))))
defop("neg", np.negative, "neg(x) = -x",
      ("d/dx = -1", lambda g, out, x: -g))
defop("maximum", np.maximum, "maximum(a, b) = max(a, b) elementwise, ties share the gradient half and half",
      ("d/da = 1 where a > b, 1/2 where a == b, else 0", lambda g, out, a, b: _share(g, a > b, a == b)),
      ("d/db = 1 where b > a, 1/2 where a == b, else 0", lambda g, out, a, b: _share(g, b > a, a == b)))
defop("minimum", np.minimum, "minimum(a, b) = min(a, b) elementwise, ties share the gradient half and half",
      ("d/da = 1 where a < b, 1/2 where a == b, else 0", lambda g, out, a, b: _share(g, a < b, a == b)),
      ("d/db = 1 where b < a, 1/2 where a == b, else 0", lambda g, out, a, b: _share(g, b < a, a == b)))
defop("where", np.where, "where(c, a, b) = a where c is true, else b",
      None,
      ("d/da = 1 where c, else 0", lambda g, out, c, a, b: g * c),
      ("d/db = 0 where c, else 1", lambda g, out, c, a, b: g * ~c))

# ---- elementwise functions ----------------------------------------------------

defop("exp", np.exp, "exp(x) = e^x",
      ("d/dx = e^x", lambda g, out, x: g * out))
defop("log", np.log, "log(x) = ln x",
      ("d/dx = 1 / x", lambda g, out, x: g / x))
defop("sqrt", np.sqrt, "sqrt(x) = x^(1/2)",
      ("d/dx = 1 / (2 sqrt(x))", lambda g, out, x: g / (2 * out)))
defop("abs", np.abs, "abs(x) = |x|, with abs'(0) = sign(0) = 0",
      ("d/dx = sign(x)", lambda g, out, x: g * np.sign(x)))
defop("tanh", np.tanh, "tanh(x) = (e^x - e^-x) / (e^x + e^-x)",
      ("d/dx = 1 - tanh(x)^2", lambda g, out, x: g * (1 - out * out)))
# Primitive for stability: log(1 + e^x) overflows for large x; logaddexp(0, x) does not.
# Its derivative e^x / (1 + e^x) is computed as exp(x - softplus(x)), stable both ways.
defop("softplus", lambda x: np.logaddexp(0.0, x), "softplus(x) = log(1 + e^x)",
      ("d/dx = e^x / (1 + e^x) = sigmoid(x)", lambda g, out, x: g * np.exp(x - out)))
# Primitive for stability: 1 / (1 + e^-x) overflows e^-x for very negative x.
defop("sigmoid", lambda x: np.exp(-np.logaddexp(0.0, -x)), "sigmoid(x) = 1 / (1 + e^-x)",
      ("d/dx = sigmoid(x) (1 - sigmoid(x))", lambda g, out, x: g * out * (1 - out)))
# NOTE: relu'(0) = 0 (as in PyTorch), so a unit sitting exactly at 0 gets no gradient; so does a NaN
# input, as in PyTorch (its output and the loss are NaN already, which detect_anomaly and fit report).
defop("relu", _relu, "relu(x) = max(x, 0)",
      ("d/dx = 1 where x > 0, else 0", lambda g, out, x: _relu_vjp(g, out)))
defop("clip", _clip, "clip(x, lo, hi) = min(max(x, lo), hi)",
      ("d/dx = 1 where lo <= x <= hi, else 0", _clip_vjp))

# ---- reductions -------------------------------------------------------------------


def _sum_vjp(g, out, x, axis=None, keepdims=False):
    full = np.empty(x.shape, dtype=g.dtype)
    full[...] = _keep(g, x.ndim, axis, keepdims)
    return full


def _max_vjp(g, out, x, axis=None, keepdims=False):
    hit = x == _keep(out, x.ndim, axis, keepdims)
    share = hit / hit.sum(axis=axis, keepdims=True, dtype=g.dtype)
    return _keep(g, x.ndim, axis, keepdims) * share


def _logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # rows of all -inf stay -inf without a nan
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else out.reshape(np.sum(x, axis=axis).shape)


# The widest rows whose log-softmax takes the short-row path below.
SHORT_ROWS = 64


def _log_softmax(x, axis=-1):
    # NOTE: shift by each row's max, then subtract log(sum(exp)): five NumPy calls, no overflow, and the
    # largest entry of every row exactly 0 before the log (a shift by the whole array's max would be one
    # fast reduce, but loses the precision of rows far below it). (A row of all -inf has no log-softmax;
    # it comes out NaN, which detect_anomaly and fit report.)
    if type(x) is np.ndarray and x.ndim == 2 and axis in (-1, 1) and 1 < x.shape[1] <= SHORT_ROWS < x.shape[0]:
        return _log_softmax_short_rows(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


def _log_softmax_short_rows(x):
    """The same for a matrix of many short rows (a classifier's batch): NumPy reduces a short row at a
    time slowly, so each row's max is taken over the transposed copy's columns (a max is exact in any
    order) and each row's sum of exponentials is one matrix-vector product."""
    shifted = x - np.ascontiguousarray(x.T).max(axis=0)[:, None]
    total = np.exp(shifted) @ np.ones(x.shape[1], x.dtype)
    shifted -= np.log(total)[:, None]
    return shifted


defop("sum", np.add.reduce, "sum(x) = x_1 + x_2 + ... over axis",
      ("d/dx_i = 1", _sum_vjp))
defop("max", np.max, "max(x) = the largest x_i over axis; ties share the gradient equally",
      ("d/dx_i = 1 where x_i is the max (1/k for k ties), else 0", _max_vjp))
# Primitive for stability: shifts by the max before exponentiating.
defop("logsumexp", _logsumexp, "logsumexp(x) = log(sum_i e^x_i) over axis",
      ("d/dx_i = e^x_i / sum_j e^x_j = softmax(x)_i",
       lambda g, out, x, axis=None, keepdims=False:
           _keep(g, x.ndim, axis, keepdims) * np.exp(x - _keep(out, x.ndim, axis, keepdims))))
# Primitive for stability and speed: the loss of every classifier goes through it.
defop("log_softmax", _log_softmax, "log_softmax(x)_i = x_i - logsumexp(x) over axis",
      ("d/dx_j = [i = j] - softmax(x)_j",
       lambda g, out, x, axis=-1: g - np.exp(out) * np.sum(g, axis=axis, keepdims=True)))

# ---- linear algebra ---------------------------------------------------------------


def _t(a):
    """``a`` with its last two axes swapped: a view (``.T`` for a matrix skips NumPy's Python wrapper)."""
    return a.T if a.ndim == 2 else a.swapaxes(-1, -2)


def _as_matrices(g, a, b):
    """Promote 1-D operands as matmul does (a to a row, b to a column) and g to match.

    b goes first so that a 0-d g (vector @ vector) becomes (1,) and then (1, 1).
    """
    if b.ndim == 1:
        b, g = b[:, None], np.expand_dims(g, -1)
    if a.ndim == 1:
        a, g = a[None, :], np.expand_dims(g, -2)
    return g, a, b


def _matmul_vjp_a(g, out, a, b):
    g, _, b2 = _as_matrices(g, a, b)
    ga = g @ _t(b2)
    return ga[..., 0, :] if a.ndim == 1 else ga


def _matmul_vjp_b(g, out, a, b):
    g, a2, _ = _as_matrices(g, a, b)
    gb = _t(a2) @ g
    return gb[..., 0] if b.ndim == 1 else gb


defop("matmul", np.matmul, "matmul(a, b) = a @ b",
      ("d/da = g @ b^T", _matmul_vjp_a),
      ("d/db = a^T @ g", _matmul_vjp_b))

# ---- fused primitives ----------------------------------------------------------------


def _linear(x, w, b):
    out = np.matmul(x, _t(w))  # a transposed view: BLAS reads it as it is, no copy
    if b.shape != out.shape[out.ndim - b.ndim:]:
        return out + b  # the bias may widen the result (a population of biases): a new array
    out += b  # in place: one output array instead of two
    return out


def _linear_vjp_w(g, out, x, w, b):
    if x.ndim >= 2:
        return np.matmul(_t(g), x)  # g^T @ x: C-ordered like w, so no copy later
    return _t(_matmul_vjp_b(g, out, x, _t(w)))


def _linear_vjp_x(g, out, x, w, b):
    if x.ndim >= 2 and w.ndim == 2:
        # one output (a regressor's or binary classifier's last layer): g @ w is an outer product, each
        # entry one product; np.dot gives the same numbers in a third of matmul's time (and half of a
        # broadcast multiply's)
        return np.dot(g, w) if w.shape[0] == 1 and g.ndim == 2 else g @ w
    return _matmul_vjp_a(g, out, x, _t(w))


# The log-softmax of the last softmax_cross_entropy forward, keyed by the loss array it returned
# (fresh per call, so a later forward can never be mistaken for it): its VJP reuses it.
_last_xent = (None, None)


def _softmax_xent(z, t):
    global _last_xent
    log_p = _log_softmax(z)
    if log_p.ndim == 2 and type(t) is np.ndarray and t.shape == log_p.shape:  # (one dot product: no t * log_p)
        out = np.asarray(-np.vdot(t, log_p) / (z.size // z.shape[-1]))
    else:
        out = np.asarray(-(t * log_p).sum() / (z.size // z.shape[-1]))
    _last_xent = (out, log_p)
    return out


def _xent_log_p(out, z):
    """log_softmax(z) as the forward that returned ``out`` computed it (recomputed if that was not the last)."""
    memo = _last_xent  # one read: another thread may replace it
    return memo[1] if memo[0] is out else _log_softmax(z)


# Primitive for speed: every Linear layer is one node, and its output is written once. The weight is
# (out_features, in_features), as in PyTorch.
defop("linear", _linear, "linear(x, w, b) = x @ w^T + b",
      ("d/dx = g @ w", _linear_vjp_x),
      ("d/dw = g^T @ x", _linear_vjp_w),
      ("d/db = 1", lambda g, out, x, w, b: g))
# Primitive for stability and speed: the classifier loss in one node, its derivative the familiar
# (softmax(z) - t) / n, with no log of 0 anywhere. t holds target probabilities (one-hot labels),
# so n, the number of rows, is the size of z over its last axis.
defop("softmax_cross_entropy", _softmax_xent,
      "softmax_cross_entropy(z, t) = -sum(t log_softmax(z)) / n, over rows of z",
      ("d/dz = (softmax(z) - t) / n",
       lambda g, out, z, t: g * ((np.exp(_xent_log_p(out, z)) - t) / (z.size // z.shape[-1]))),
      ("d/dt = -log_softmax(z) / n", lambda g, out, z, t: g * (-_xent_log_p(out, z) / (z.size // z.shape[-1]))))

# ---- shape and indexing -----------------------------------------------------------


def _is_basic(index):
    """True when an index is only ints, slices, None and Ellipsis (no element repeats)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice)) for p in parts)


def _getitem_vjp(g, out, x, index):
    z = np.zeros(x.shape, dtype=g.dtype)
    if _is_basic(index):
        z[index] = g
    else:
        np.add.at(z, index, g)  # integer arrays may pick one element twice
    return z


def _transpose_vjp(g, out, x, axes=None):
    if axes is None:
        return g.transpose()
    return g.transpose(np.argsort([a % x.ndim for a in axes]))


def _concat_vjp(i, g, out, *xs, axis=0):
    start = sum(x.shape[axis] for x in xs[:i])
    index = [slice(None)] * g.ndim
    index[axis] = slice(start, start + xs[i].shape[axis])
    return g[tuple(index)]


defop("reshape", np.reshape, "reshape(x) = x with a new shape",
      ("d/dx = g reshaped back", lambda g, out, x, shape: g.reshape(x.shape)))
defop("transpose", np.transpose, "transpose(x) = x with its axes permuted",
      ("d/dx = g with the axes permuted back", _transpose_vjp))
defop("getitem", lambda x, index: x[index], "getitem(x) = x[index]",
      ("d/dx = g scattered into zeros at index (added where an index repeats)", _getitem_vjp))
defop_variadic("concatenate", lambda *xs, axis=0: np.concatenate(xs, axis=axis),
               "concatenate(x_1, ..., x_n) along axis",
               "d/dx_i = the slice of g that x_i filled", _concat_vjp)
defop_variadic("stack", lambda *xs, axis=0: np.stack(xs, axis=axis),
               "stack(x_1, ..., x_n) along a new axis",
               "d/dx_i = g at position i of the new axis",
               lambda i, g, out, *xs, axis=0: np.take(g, i, axis=axis))
# fmt: on
