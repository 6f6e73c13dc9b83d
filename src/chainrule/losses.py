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


def _row_weights(name: str, sample_weight: Any, rows: int, dtype: Any) -> np.ndarray | None:
    """Per-row weights as a checked (rows,) array, or None when there are none."""
    if sample_weight is None:
        return None
    w = np.asarray(getattr(sample_weight, "data", sample_weight))
    if w.shape != (rows,):
        raise ValueError(f"{name}: sample_weight must have shape ({rows},), one weight per row, got {w.shape}")
    if w.dtype.kind not in "biuf" or not np.all(np.isfinite(w)) or (w.size and w.min() < 0) or not w.sum() > 0:
        raise ValueError(f"{name}: sample_weight must hold finite numbers >= 0 with a positive sum, got {w[:3]}...")
    return w.astype(dtype)


def _graph_weights(name: str, sample_weight: Tensor, per_element: Tensor) -> Tensor:
    """Weights that come as a Tensor (a column of the targets, say: a replayed step reads them as data),
    checked, shaped to weigh the rows of ``per_element``; the weighting stays in the graph."""
    rows = per_element.shape[0] if per_element.ndim else 1
    _row_weights(name, sample_weight.data, rows, per_element.dtype)  # (the checks)
    return sample_weight.reshape((rows,) + (1,) * (per_element.ndim - 1))


def _weighted(name: str, per_element: Tensor, sample_weight: Any, mean: bool) -> Tensor:
    """Elements (rows first) added up with per-row weights: a weighted sum, or mean (sum(w_i loss_i) / sum(w_i))."""
    rows = per_element.shape[0] if per_element.ndim else 1
    if isinstance(sample_weight, Tensor):
        total = (per_element * _graph_weights(name, sample_weight, per_element)).sum()
        return total / (sample_weight.sum() * float(per_element.size // max(rows, 1))) if mean else total
    w = _row_weights(name, sample_weight, rows, per_element.dtype)
    if w is None:
        return per_element.mean() if mean else per_element.sum()
    scale = w.reshape((rows,) + (1,) * (per_element.ndim - 1))
    if mean:  # each element of a row counts as 1 / (its row's width), so rows weigh w_i / sum(w)
        scale = scale / (w.sum() * (per_element.size // max(rows, 1)))
    return (per_element * constant(scale, "sample_weight")).sum()


def ssr(predicted: Tensor, observed: Any, sample_weight: Any = None) -> Tensor:
    """Sum of squared residuals, the lessons' loss: sum_i (observed_i - predicted_i)^2.

    dSSR/dpredicted_i = -2 (observed_i - predicted_i). With ``sample_weight``:
    sum_i w_i (observed_i - predicted_i)^2 (a weight of 2 counts a row twice).
    """
    predicted, observed = _same_shape("ssr", predicted, observed)
    return _named(_weighted("ssr", (observed - predicted) ** 2, sample_weight, mean=False), "SSR")


def mse(predicted: Tensor, observed: Any, sample_weight: Any = None) -> Tensor:
    """Mean squared error: the SSR divided by the number of elements.

    With ``sample_weight`` each row's squared residuals weigh w_i / sum(w) (scikit-learn's convention).
    """
    predicted, observed = _same_shape("mse", predicted, observed)
    return _named(_weighted("mse", (observed - predicted) ** 2, sample_weight, mean=True), "MSE")


def squared_error(predicted: Tensor, observed: Any, sample_weight: Any = None) -> Tensor:
    """Half the mean squared error, scikit-learn's MLPRegressor loss: 0.5 mean((observed - predicted)^2).

    d/dpredicted_i = -(observed_i - predicted_i) / n, n the number of elements.

    Example::

        >>> import chainrule as cr
        >>> from chainrule.losses import squared_error
        >>> squared_error(cr.tensor([1.0, 2.0]), [0.0, 0.0]).item()   # 0.5 x (1 + 4) / 2
        1.25
    """
    predicted, observed = _same_shape("squared_error", predicted, observed)
    return _named(_weighted("squared_error", (observed - predicted) ** 2, sample_weight, mean=True) * 0.5, "SE")


def poisson(log_mean: Tensor, observed: Any, sample_weight: Any = None) -> Tensor:
    """Half the Poisson deviance with a log link, scikit-learn's ``loss="poisson"``, from z = log(mean).

    Per element: y log(y / e^z) - y + e^z = e^z - y z + (y log y - y), the last term constant
    (0 log 0 = 0), so that a perfect fit scores 0; averaged over rows, summed over outputs.
    d/dz = e^z - y. Observed counts must be >= 0.

    Example::

        >>> import chainrule as cr
        >>> from chainrule.losses import poisson
        >>> poisson(cr.tensor([0.0]), [1.0]).item()   # e^0 - 1 x 0 + (1 log 1 - 1) = 0: mean 1 fits count 1
        0.0
    """
    given = isinstance(observed, Tensor)
    log_mean, observed = _same_shape("poisson", log_mean, observed)
    y = observed.data
    if y.size and not y.min() >= 0:
        raise ValueError(f"poisson: observed values must be >= 0 (counts), got a minimum of {y.min()}")
    if not given:
        # NOTE: tracked, so that the constant term is recorded ops on the targets, which a replayed step
        # (compile=True) reads as each batch's data; computed in NumPy it would be folded at the first
        # batch's values (and the replay declined). No derivative is asked of it.
        observed.requires_grad = True
    # y log y with 0 log 0 = 0: log(y + tiny) is log(y) for every y above about 1e-292 and finite at 0
    tiny = float(np.finfo(y.dtype).tiny) if y.dtype.kind == "f" else 1e-300
    offset = observed * (observed + tiny).log() - observed
    per_element = log_mean.exp() - log_mean * observed + _named(offset, "y log y - y")
    outputs = per_element.shape[-1] if per_element.ndim > 1 else 1
    return _named(_weighted("poisson", per_element, sample_weight, mean=True) * float(outputs), "Poisson")


def cross_entropy(logits: Tensor, labels: Any, sample_weight: Any = None) -> Tensor:
    """Mean over rows of -log softmax(logits)[label], from raw logits, stable for large logits.

    ``logits`` has shape (n, classes); ``labels`` holds n integers in [0, classes),
    or is an (n, classes) array of target probabilities (one-hot rows, or soft labels).
    With ``sample_weight``: sum_i w_i loss_i / sum_i w_i, from log_softmax and a sum. (Every loss
    here also takes the weights as a Tensor, a column of the targets, say: the weighting is then
    part of the graph, so that a replayed step reads each batch's weights as data.)

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
    if isinstance(sample_weight, Tensor):  # weights from the graph: the weighting stays in it
        t = labels if isinstance(labels, Tensor) and labels.shape == logits.shape else constant(target, "Target")
        per_row = -(F.log_softmax(logits) * t).sum(axis=1)
        total = (per_row * _graph_weights("cross_entropy", sample_weight, per_row)).sum()
        return _named(total / sample_weight.sum(), "CE")
    w = _row_weights("cross_entropy", sample_weight, logits.shape[0], logits.dtype)
    if w is None:
        return _named(apply(_SOFTMAX_XENT, logits, constant(target, "Target")), "CE")
    # NOTE: the one-node primitive's derivative assumes target rows that sum to 1, so weighted rows
    # are added up from log_softmax instead.
    weighted = constant(target * (w / w.sum())[:, None], "weight x Target")
    return _named(-(F.log_softmax(logits) * weighted).sum(), "CE")


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


def binary_cross_entropy(logits: Tensor, targets: Any, sample_weight: Any = None) -> Tensor:
    """Mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], from logits z.

    Computed as softplus(z) - t z, which is the same quantity without ever
    taking the log of 0. The mean is over every element (rows and labels);
    with ``sample_weight`` each row weighs w_i / sum(w).

    Example::

        >>> import chainrule as cr
        >>> from chainrule.losses import binary_cross_entropy
        >>> round(binary_cross_entropy(cr.tensor([0.0]), [1.0]).item(), 6)   # -log(1/2)
        0.693147
    """
    logits, targets = _same_shape("binary_cross_entropy", logits, targets)
    per_element = F.softplus(logits) - logits * targets
    return _named(_weighted("binary_cross_entropy", per_element, sample_weight, mean=True), "BCE")


# ---- scikit-learn's MLP convention: each row's loss summed over its output columns, a mean over rows ----


def _per_row(name: str, per_element: Tensor, sample_weight: Any) -> Tensor:
    """The elements of each row added up, then the mean over rows (weighted: sum_i w_i row_i / sum_i w_i)."""
    rows = per_element.shape[0] if per_element.ndim else 1
    if isinstance(sample_weight, Tensor):
        return (per_element * _graph_weights(name, sample_weight, per_element)).sum() / sample_weight.sum()
    w = _row_weights(name, sample_weight, rows, per_element.dtype)
    if w is None:
        return per_element.sum() * (1.0 / max(rows, 1))
    scale = (w / w.sum()).reshape((rows,) + (1,) * (per_element.ndim - 1))
    return (per_element * constant(scale, "sample_weight / sum")).sum()


def squared_error_by_row(predicted: Tensor, observed: Any, sample_weight: Any = None) -> Tensor:
    """scikit-learn's MLPRegressor objective: 0.5 sum_j (observed_ij - predicted_ij)^2, averaged over rows i.

    d/dpredicted_ij = -(observed_ij - predicted_ij) / n, n the rows: the gradient scikit-learn
    follows (its outputs are not averaged). With one output it is :func:`squared_error`.

    Example::

        >>> import chainrule as cr
        >>> from chainrule.losses import squared_error_by_row
        >>> squared_error_by_row(cr.tensor([[1.0, 2.0]]), [[0.0, 0.0]]).item()   # 0.5 x (1 + 4) / 1 row
        2.5
    """
    predicted, observed = _same_shape("squared_error_by_row", predicted, observed)
    return _named(_per_row("squared_error_by_row", (observed - predicted) ** 2 * 0.5, sample_weight), "SE")


def binary_log_loss(logits: Tensor, targets: Any, sample_weight: Any = None) -> Tensor:
    """scikit-learn's multi-label loss: -sum_j [t_ij log sigmoid(z_ij) + (1 - t_ij) log(1 - sigmoid(z_ij))],
    averaged over rows i (summed over the labels, where :func:`binary_cross_entropy` averages them).

    Computed as softplus(z) - t z; d/dz_ij = (sigmoid(z_ij) - t_ij) / n, n the rows.

    Example::

        >>> import chainrule as cr
        >>> from chainrule.losses import binary_log_loss
        >>> round(binary_log_loss(cr.tensor([[0.0, 0.0]]), [[1.0, 0.0]]).item(), 6)   # 2 x -log(1/2)
        1.386294
    """
    logits, targets = _same_shape("binary_log_loss", logits, targets)
    return _named(_per_row("binary_log_loss", F.softplus(logits) - logits * targets, sample_weight), "BCE")


# How each loss adds up its rows: a mini-batch's share of an epoch's loss follows from it.
ssr.reduction = "sum"  # type: ignore[attr-defined]
mse.reduction = squared_error.reduction = poisson.reduction = "mean"  # type: ignore[attr-defined]
cross_entropy.reduction = binary_cross_entropy.reduction = "mean"  # type: ignore[attr-defined]
squared_error_by_row.reduction = binary_log_loss.reduction = "mean"  # type: ignore[attr-defined]
# What a loss predicts, for a validation score: classes (accuracy) or values (R^2); poisson's are e^z.
cross_entropy.task = binary_cross_entropy.task = binary_log_loss.task = "classification"  # type: ignore[attr-defined]
ssr.task = mse.task = squared_error.task = poisson.task = "regression"  # type: ignore[attr-defined]
squared_error_by_row.task = "regression"  # type: ignore[attr-defined]

LOSSES = {
    "ssr": ssr,
    "mse": mse,
    "cross_entropy": cross_entropy,
    "cross-entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "binary-cross-entropy": binary_cross_entropy,
    "squared_error": squared_error,
    "squared-error": squared_error,
    "poisson": poisson,
    "squared_error_by_row": squared_error_by_row,
    "squared-error-by-row": squared_error_by_row,
    "binary_log_loss": binary_log_loss,
    "binary-log-loss": binary_log_loss,
}


def get_loss(loss: str | Callable[..., Tensor]) -> Callable[..., Tensor]:
    """A loss function from its name, or the callable itself."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(set(LOSSES))} or pass a function")
    return LOSSES[loss]
