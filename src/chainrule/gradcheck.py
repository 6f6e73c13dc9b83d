"""Finite-difference gradient checking, public so users can check their own functions."""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The gradient from backward differs from the finite-difference one.

    Attributes: ``input`` (position of the input), ``index`` (element index),
    ``numerical`` and ``analytical``.
    """

    def __init__(self, input, index, numerical, analytical):
        self.input, self.index, self.numerical, self.analytical = input, index, numerical, analytical
        super().__init__(f"gradcheck: input {input}, element {index}: numerical derivative {numerical:.10g} "
                         f"but backward gave {analytical:.10g}")


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Compare ``fn``'s backward gradients with central differences, in float64.

    Inputs that are Tensors with ``requires_grad=True``, or float ndarrays, are
    checked; other inputs are passed through unchanged. A non-scalar output is
    reduced to ``sum(out * v)`` with a fixed random ``v``, so every output
    element takes part. Returns True, or raises :class:`GradcheckError` naming
    the input, the element, and both values.

    Example::

        >>> import chainrule as cr
        >>> cr.gradcheck(lambda x: cr.softplus(x) * x, cr.tensor([-1.0, 0.0, 2.0], requires_grad=True))
        True
    """
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (number and np.isfinite(value) and value >= 0) or (name == "eps" and value == 0):
            raise ValueError(f"gradcheck: {name} must be a finite number > 0 (>= 0 for tolerances), "
                             f"got {value!r}")
    if not callable(fn):
        raise TypeError(f"gradcheck: fn must be a function of the inputs, got {type(fn).__name__}")
    checked = [i for i, x in enumerate(inputs) if _is_checked(x)]
    if not checked:
        raise ValueError("gradcheck: no input to check; pass Tensors with requires_grad=True or float arrays")
    args = [Tensor(np.array(_raw(x), dtype=np.float64), requires_grad=True) if i in checked else x
            for i, x in enumerate(inputs)]
    weights = None

    def scalar(*xs):
        nonlocal weights
        out = fn(*xs)
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
        if weights is None:
            weights = np.random.default_rng(seed).normal(size=out.shape)
        return (out * weights).sum() if out.size != 1 else out.sum()

    out = scalar(*args)
    if out.requires_grad:  # else no graph reached the inputs: backward's gradient is 0, compare that
        out.backward()
    for i in checked:
        x = args[i]
        analytical = x.grad if x.grad is not None else np.zeros_like(x.data)
        for index in np.ndindex(x.shape):
            numerical = _central_difference(scalar, args, x, index, eps)
            if not abs(numerical - analytical[index]) <= atol + rtol * abs(numerical):
                raise GradcheckError(i, index, numerical, float(analytical[index]))
    return True


def _central_difference(scalar, args, x, index, eps):
    keep = x.data[index]
    with no_grad():
        x.data[index] = keep + eps
        up = scalar(*args).item()
        x.data[index] = keep - eps
        down = scalar(*args).item()
    x.data[index] = keep
    return (up - down) / (2 * eps)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _is_checked(x):
    if isinstance(x, Tensor):
        return x.requires_grad
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"
