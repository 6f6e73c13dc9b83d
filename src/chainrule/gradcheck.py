"""Finite-difference gradient checking, public so users can check their own functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .checks import Instance, Number, check
from .tensor import Tensor, no_grad

_STEP = Number(low=0, low_open=True)  # eps: a finite number > 0
_TOLERANCE = Number(low=0)  # atol, rtol: a finite number >= 0
_FUNCTION = Instance((Callable,), "a function of the inputs")


class GradcheckError(AssertionError):
    """The gradient from backward differs from the finite-difference one.

    Attributes: ``input`` (position of the input), ``index`` (element index),
    ``numerical`` and ``analytical``.
    """

    def __init__(self, input: int, index: tuple[int, ...], numerical: float, analytical: float) -> None:
        self.input, self.index, self.numerical, self.analytical = input, index, numerical, analytical
        super().__init__(
            f"gradcheck: input {input}, element {index}: numerical derivative {numerical:.10g} "
            f"but backward gave {analytical:.10g}"
        )


def gradcheck(
    fn: Callable[..., Tensor], *inputs: Any, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0
) -> bool:
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
    eps = check("gradcheck", "eps", eps, _STEP)
    atol = check("gradcheck", "atol", atol, _TOLERANCE)
    rtol = check("gradcheck", "rtol", rtol, _TOLERANCE)
    check("gradcheck", "fn", fn, _FUNCTION)
    checked = [i for i, x in enumerate(inputs) if _is_checked(x)]
    if not checked:
        raise ValueError("gradcheck: no input to check; pass Tensors with requires_grad=True or float arrays")
    args = [
        Tensor(np.array(_raw(x), dtype=np.float64), requires_grad=True) if i in checked else x
        for i, x in enumerate(inputs)
    ]
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
