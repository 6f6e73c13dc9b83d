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

from collections.abc import Sequence

import numpy as np

from .ops import REGISTRY as _OPS
from .tensor import Axis, Tensor, TensorLike, apply, tensor_from


def _apply(name: str, *inputs, **kw) -> Tensor:
    return apply(_OPS[name], *inputs, **kw)


def _lifted(x) -> Tensor:
    """``x`` as a Tensor for a composite method: a non-tensor becomes float64, as apply makes a constant."""
    return x if isinstance(x, Tensor) else Tensor(x, dtype=np.float64)


# ---- arithmetic ---------------------------------------------------------------------


def add(a: TensorLike, b: TensorLike) -> Tensor:
    """a + b, broadcasting."""
    return _apply("add", a, b)


def sub(a: TensorLike, b: TensorLike) -> Tensor:
    """a - b, broadcasting."""
    return _apply("sub", a, b)


def mul(a: TensorLike, b: TensorLike) -> Tensor:
    """a * b, broadcasting."""
    return _apply("mul", a, b)


def div(a: TensorLike, b: TensorLike) -> Tensor:
    """a / b, broadcasting."""
    return _apply("div", a, b)


def pow(a: TensorLike, b: TensorLike) -> Tensor:  # noqa: A001  (the op's name)
    """a ** b, broadcasting."""
    return _apply("pow", a, b)


def neg(x: TensorLike) -> Tensor:
    """-x."""
    return _apply("neg", x)


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """a @ b, with NumPy's rules for 1-D, batched and broadcast operands."""
    return _apply("matmul", a, b)


def maximum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise max(a, b); on ties each side gets half the gradient."""
    return _apply("maximum", a, b)


def minimum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise min(a, b); on ties each side gets half the gradient."""
    return _apply("minimum", a, b)


def where(condition: TensorLike, a: TensorLike, b: TensorLike) -> Tensor:
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


def exp(x: TensorLike) -> Tensor:
    """e^x."""
    return _apply("exp", x)


def log(x: TensorLike) -> Tensor:
    """Natural logarithm."""
    return _apply("log", x)


def sqrt(x: TensorLike) -> Tensor:
    """Square root."""
    return _apply("sqrt", x)


def abs(x: TensorLike) -> Tensor:  # noqa: A001
    """|x|; the derivative at 0 is taken as 0."""
    return _apply("abs", x)


def tanh(x: TensorLike) -> Tensor:
    """Hyperbolic tangent."""
    return _apply("tanh", x)


def sigmoid(x: TensorLike) -> Tensor:
    """1 / (1 + e^-x), computed without overflow for any x."""
    return _apply("sigmoid", x)


def softplus(x: TensorLike) -> Tensor:
    """log(1 + e^x), the lessons' activation, computed without overflow for any x.

    Example::

        >>> import chainrule as cr
        >>> cr.softplus(cr.tensor([0.0, 1000.0, -1000.0])).data.tolist()   # log 2, ~x, ~0
        [0.693, 1000.0, 0.0]
    """
    return _apply("softplus", x)


def relu(x: TensorLike) -> Tensor:
    """max(x, 0); the derivative at 0 is taken as 0."""
    return _apply("relu", x)


def clip(x: TensorLike, lo: float | None = None, hi: float | None = None) -> Tensor:
    """x limited to [lo, hi]; the gradient passes where lo <= x <= hi."""
    return _lifted(x).clip(lo, hi)


# ---- reductions ----------------------------------------------------------------------


def sum(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes when None)."""
    return _apply("sum", x, axis=axis, keepdims=keepdims)


def mean(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis``: the sum divided by the count, so its gradient is 1/count."""
    return tensor_from(x).mean(axis, keepdims)


def max(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Largest element over ``axis``; tied maxima share the gradient equally."""
    return _apply("max", x, axis=axis, keepdims=keepdims)


def logsumexp(x: TensorLike, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) over ``axis``, shifted by the max so it never overflows."""
    return _apply("logsumexp", x, axis=axis, keepdims=keepdims)


def log_softmax(x: TensorLike, axis: int = -1) -> Tensor:
    """x - logsumexp(x) over ``axis``: log-probabilities from logits, stable."""
    return _apply("log_softmax", x, axis=axis)


def softmax(x: TensorLike, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) over ``axis``, as exp(log_softmax(x)).

    Example::

        >>> import chainrule as cr
        >>> cr.softmax(cr.tensor([1000.0, 1000.0]))
        tensor([0.5, 0.5])
    """
    return _lifted(x).softmax(axis)


# ---- shape ------------------------------------------------------------------------------


def reshape(x: TensorLike, shape: int | tuple[int, ...]) -> Tensor:
    """The same elements in a new shape (one entry may be -1)."""
    return _apply("reshape", x, shape=shape)


def transpose(x: TensorLike, axes: tuple[int, ...] | None = None) -> Tensor:
    """Axes permuted (reversed when ``axes`` is None)."""
    return _apply("transpose", x, axes=axes)


def concatenate(tensors: Sequence[TensorLike], axis: int | None = 0) -> Tensor:
    """Join tensors along an existing axis (``axis=None`` flattens them first, as in NumPy)."""
    tensors = _sequence(tensors, "concatenate")
    if axis is None:  # flattened here, so the primitive's VJP always has an axis to slice along
        tensors, axis = [reshape(t, (-1,)) for t in tensors], 0
    return _apply("concatenate", *tensors, axis=axis)


def stack(tensors: Sequence[TensorLike], axis: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    return _apply("stack", *_sequence(tensors, "stack"), axis=axis)


def _sequence(tensors, name: str) -> list:
    if isinstance(tensors, (Tensor, np.ndarray)) or not hasattr(tensors, "__iter__"):
        raise TypeError(f"{name}: expected a list or tuple of tensors, got {type(tensors).__name__}")
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: needs at least one tensor, got an empty sequence")
    return tensors
