"""The ops as functions (``chainrule.exp(x)``), and composites built from primitives.

Composites (``mean``, ``softmax``) are written with primitives, so their
gradients come from the primitives' VJPs and need no code of their own.

Example::

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0, 1.0, 2.0], requires_grad=True)
    >>> y = cr.mean(cr.softplus(x))
    >>> y.backward()
    >>> x.grad.round(4)          # sigmoid(x) / 3
    array([0.1667, 0.2437, 0.2936])
"""
from __future__ import annotations

import numpy as np

from .ops import REGISTRY as _OPS
from .tensor import Tensor, apply, tensor_from


def _apply(name, *inputs, **kw):
    return apply(_OPS[name], *inputs, **kw)


# ---- arithmetic ---------------------------------------------------------------------

def add(a, b):
    """a + b, broadcasting."""
    return _apply("add", a, b)


def sub(a, b):
    """a - b, broadcasting."""
    return _apply("sub", a, b)


def mul(a, b):
    """a * b, broadcasting."""
    return _apply("mul", a, b)


def div(a, b):
    """a / b, broadcasting."""
    return _apply("div", a, b)


def pow(a, b):  # noqa: A001  (the op's name)
    """a ** b, broadcasting."""
    return _apply("pow", a, b)


def neg(x):
    """-x."""
    return _apply("neg", x)


def matmul(a, b):
    """a @ b, with NumPy's rules for 1-D, batched and broadcast operands."""
    return _apply("matmul", a, b)


def maximum(a, b):
    """Elementwise max(a, b); on ties each side gets half the gradient."""
    return _apply("maximum", a, b)


def minimum(a, b):
    """Elementwise min(a, b); on ties each side gets half the gradient."""
    return _apply("minimum", a, b)


def where(condition, a, b):
    """a where ``condition`` is true, else b (the condition gets no gradient).

    Example::

        >>> import chainrule as cr
        >>> x = cr.tensor([-2.0, 3.0])
        >>> cr.where(x > 0, x, 0.0)
        tensor([0., 3.])
    """
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    return _apply("where", condition, a, b)


# ---- elementwise functions -----------------------------------------------------------

def exp(x):
    """e^x."""
    return _apply("exp", x)


def log(x):
    """Natural logarithm."""
    return _apply("log", x)


def sqrt(x):
    """Square root."""
    return _apply("sqrt", x)


def abs(x):  # noqa: A001
    """|x|; the derivative at 0 is taken as 0."""
    return _apply("abs", x)


def tanh(x):
    """Hyperbolic tangent."""
    return _apply("tanh", x)


def sigmoid(x):
    """1 / (1 + e^-x), computed without overflow for any x."""
    return _apply("sigmoid", x)


def softplus(x):
    """log(1 + e^x), the lessons' activation, computed without overflow for any x.

    Example::

        >>> import chainrule as cr
        >>> cr.softplus(cr.tensor([0.0, 1000.0, -1000.0])).data.tolist()   # log 2, ~x, ~0
        [0.693, 1000.0, 0.0]
    """
    return _apply("softplus", x)


def relu(x):
    """max(x, 0); the derivative at 0 is taken as 0."""
    return _apply("relu", x)


def clip(x, lo=None, hi=None):
    """x limited to [lo, hi]; the gradient passes where lo <= x <= hi."""
    try:
        lo, hi = (None if b is None else float(b) for b in (lo, hi))  # plain floats keep float32 float32
    except (TypeError, ValueError):
        raise TypeError(f"clip: lo and hi must be numbers or None, got lo={lo!r} and hi={hi!r}") from None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip: lo must be <= hi, got lo={lo} and hi={hi}")
    return _apply("clip", x, lo=lo, hi=hi)


# ---- reductions ----------------------------------------------------------------------

def sum(x, axis=None, keepdims=False):  # noqa: A001
    """Sum over ``axis`` (all axes when None)."""
    return _apply("sum", x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``: the sum divided by the count, so its gradient is 1/count."""
    x = tensor_from(x)
    total = sum(x, axis, keepdims)  # checks the axis, naming the op and the shape
    count = x.data.size // total.data.size if x.data.size else 0
    return total * (1.0 / count) if count else total * np.nan


def max(x, axis=None, keepdims=False):  # noqa: A001
    """Largest element over ``axis``; tied maxima share the gradient equally."""
    return _apply("max", x, axis=axis, keepdims=keepdims)


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over ``axis``, shifted by the max so it never overflows."""
    return _apply("logsumexp", x, axis=axis, keepdims=keepdims)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) over ``axis``: log-probabilities from logits, stable."""
    return _apply("log_softmax", x, axis=axis)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) over ``axis``, as exp(log_softmax(x)).

    Example::

        >>> import chainrule as cr
        >>> cr.softmax(cr.tensor([1000.0, 1000.0]))
        tensor([0.5, 0.5])
    """
    return exp(log_softmax(x, axis))


# ---- shape ------------------------------------------------------------------------------

def reshape(x, shape):
    """The same elements in a new shape (one entry may be -1)."""
    return _apply("reshape", x, shape=shape)


def transpose(x, axes=None):
    """Axes permuted (reversed when ``axes`` is None)."""
    return _apply("transpose", x, axes=axes)


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis (``axis=None`` flattens them first, as in NumPy)."""
    tensors = _sequence(tensors, "concatenate")
    if axis is None:  # flattened here, so the primitive's VJP always has an axis to slice along
        tensors, axis = [reshape(t, (-1,)) for t in tensors], 0
    return _apply("concatenate", *tensors, axis=axis)


def stack(tensors, axis=0):
    """Join tensors along a new axis."""
    return _apply("stack", *_sequence(tensors, "stack"), axis=axis)


def _sequence(tensors, name):
    if isinstance(tensors, (Tensor, np.ndarray)) or not hasattr(tensors, "__iter__"):
        raise TypeError(f"{name}: expected a list or tuple of tensors, got {type(tensors).__name__}")
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: needs at least one tensor, got an empty sequence")
    return tensors
