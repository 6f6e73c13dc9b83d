"""Losses, composed from primitives so their gradients come from the op registry.

Each takes ``(predicted, target)`` and returns a scalar Tensor. Shapes must
match exactly: a (3,) prediction against a (3, 1) target is an error, never a
silent (3, 3) broadcast.

Example::

    >>> import chainrule as cr
    >>> from chainrule.losses import ssr
    >>> ssr(cr.tensor([1.0, 2.0]), [0.0, 0.0])     # (0 - 1)^2 + (0 - 2)^2
    tensor(5., name='SSR')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import functional as F
from .ops import REGISTRY
from .tensor import Tensor, apply, constant, tensor_from
from .tensor import named as _named

_SOFTMAX_XENT = REGISTRY["softmax_cross_entropy"]


def _same_shape(name, predicted, target):
    predicted = tensor_from(predicted)
    if not isinstance(target, Tensor):
        target = constant(np.asarray(target, dtype=predicted.dtype), "Observed")
    if predicted.shape != target.shape:
        raise ValueError(
            f"{name}: predicted has shape {predicted.shape} but target has shape "
            f"{target.shape}; they must match (no broadcasting in a loss)"
        )
    return predicted, target


def ssr(predicted: Tensor, observed: Any) -> Tensor:
    """Sum of squared residuals, the lessons' loss: sum_i (observed_i - predicted_i)^2.

    dSSR/dpredicted_i = -2 (observed_i - predicted_i).
    """
    predicted, observed = _same_shape("ssr", predicted, observed)
    return _named(((observed - predicted) ** 2).sum(), "SSR")


def mse(predicted: Tensor, observed: Any) -> Tensor:
    """Mean squared error: the SSR divided by the number of elements."""
    predicted, observed = _same_shape("mse", predicted, observed)
    return _named(((observed - predicted) ** 2).mean(), "MSE")


def cross_entropy(logits: Tensor, labels: Any) -> Tensor:
    """Mean over rows of -log softmax(logits)[label], from raw logits, stable for large logits.

    ``logits`` has shape (n, classes); ``labels`` holds n integers in [0, classes),
    or is an (n, classes) array of target probabilities (one-hot rows, or soft labels).

    Example::

        >>> import chainrule as cr
        >>> from chainrule.losses import cross_entropy
        >>> round(cross_entropy(cr.tensor([[0.0, 0.0]]), [1]).item(), 6)   # -log(1/2)
        0.693147
    """
    logits = tensor_from(logits)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must have shape (n, classes), got {logits.shape}")
    target = targets_for(logits, labels.data if isinstance(labels, Tensor) else labels)
    return _named(apply(_SOFTMAX_XENT, logits, constant(target, "Target")), "CE")


def targets_for(logits: Any, labels: Any) -> np.ndarray:
    """Labels as (n, classes) target probabilities of the logits' dtype, checked."""
    labels = np.asarray(labels)
    n, classes = logits.shape
    if labels.shape == logits.shape and labels.dtype.kind == "f":
        return labels.astype(logits.dtype, copy=False)
    if labels.shape != (n,):
        raise ValueError(
            f"cross_entropy: labels must have shape ({n},) (class indices) or {logits.shape} "
            f"(probabilities) to match logits {logits.shape}, got {labels.shape}"
        )
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
        raise TypeError(
            f"cross_entropy: labels must be integer class indices, got dtype {labels.dtype} "
            f"(e.g. {labels.reshape(-1)[:3].tolist()})"
        )
    labels = labels.astype(np.intp)
    if n and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(
            f"cross_entropy: labels must lie in [0, {classes}), got values from {labels.min()} to {labels.max()}"
        )
    onehot = np.zeros(logits.shape, dtype=logits.dtype)
    onehot[np.arange(n), labels] = 1.0
    return onehot


def binary_cross_entropy(logits: Tensor, targets: Any) -> Tensor:
    """Mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], from logits z.

    Computed as softplus(z) - t z, which is the same quantity without ever
    taking the log of 0.

    Example::

        >>> import chainrule as cr
        >>> from chainrule.losses import binary_cross_entropy
        >>> round(binary_cross_entropy(cr.tensor([0.0]), [1.0]).item(), 6)   # -log(1/2)
        0.693147
    """
    logits, targets = _same_shape("binary_cross_entropy", logits, targets)
    return _named((F.softplus(logits) - logits * targets).mean(), "BCE")


# How each loss adds up its rows: a mini-batch's share of an epoch's loss follows from it.
ssr.reduction = "sum"  # type: ignore[attr-defined]
mse.reduction = cross_entropy.reduction = binary_cross_entropy.reduction = "mean"  # type: ignore[attr-defined]

LOSSES = {
    "ssr": ssr,
    "mse": mse,
    "cross_entropy": cross_entropy,
    "cross-entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "binary-cross-entropy": binary_cross_entropy,
}


def get_loss(loss: str | Callable[..., Tensor]) -> Callable[..., Tensor]:
    """A loss function from its name, or the callable itself."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(set(LOSSES))} or pass a function")
    return LOSSES[loss]
