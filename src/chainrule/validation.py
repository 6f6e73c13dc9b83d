"""Held-out data for a training run: the split, and the score each epoch is judged by.

- :func:`split`: a fraction of the rows held out, drawn from ``seed`` (the same
  rows every time), stratified by class for class labels (each class keeps its
  share in both parts, as scikit-learn's ``train_test_split(stratify=y)``).
- :func:`score`: R^2 for regression losses (scikit-learn's ``r2_score``, the
  outputs' mean), accuracy for classification losses (the share of rows whose
  predicted class, or every predicted label, is right); sample weights optional.

Example: 10 rows of two classes, 30% held out: 3 rows, the classes' shares kept::

    >>> import numpy as np
    >>> from chainrule.validation import split, r2
    >>> x, y = np.arange(10.0)[:, None], np.array([0] * 6 + [1] * 4)
    >>> train, held = split(len(x), 0.3, seed=0, labels=y)
    >>> len(held), sorted(y[held].tolist()), len(train)
    (3, [0, 0, 1], 7)
    >>> r2(np.array([[1.0], [2.0], [4.0]]), np.array([[1.0], [2.0], [3.0]]))   # 1 - SS_res / SS_tot = 1 - 1 / 2
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["split", "score", "r2", "accuracy", "MIN_ROWS"]

# The fewest held-out rows a run is judged by: R^2 needs 2 (scikit-learn refuses fewer for every MLP).
MIN_ROWS = 2


def split(rows: int, fraction: float, seed: int | None, labels: np.ndarray | None = None) -> tuple:
    """(training rows, held-out rows): ceil(fraction x rows) held out, drawn from ``seed``, per class if
    ``labels`` are given (each class's share rounded to whole rows, the largest remainders first)."""
    rng = np.random.default_rng(seed)
    n_held = math.ceil(fraction * rows - 1e-9)  # (0.3 x 10 is 3.0000000000000004: 3 rows, as scikit-learn)
    if n_held < MIN_ROWS:
        raise ValueError(
            f"fit: validation={fraction!r} holds out {n_held} of {rows} rows; the validation set is too small: "
            f"at least {MIN_ROWS} rows must be held out (scikit-learn's rule)"
        )
    if n_held >= rows:
        raise ValueError(f"fit: validation={fraction!r} holds out {n_held} of {rows} rows; none is left to train on")
    if labels is None:
        order = rng.permutation(rows)
        return np.sort(order[n_held:]), np.sort(order[:n_held])
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    exact = np.array([fraction * len(m) for m in members])
    take = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - take), kind="stable")[: n_held - int(take.sum())]:
        take[c] += 1
    held = np.concatenate([m[:k] for m, k in zip(members, take)])
    kept = np.concatenate([m[k:] for m, k in zip(members, take)])
    return np.sort(kept), np.sort(held)


def _mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    return float(np.average(values, weights=weights))


def r2(predicted: np.ndarray, observed: np.ndarray, weights: np.ndarray | None = None) -> float:
    """1 - SS_res / SS_tot per output, averaged over the outputs (a constant output: 1 if fitted, else 0);
    NaN for fewer than 2 rows, where it is not defined (scikit-learn's ``r2_score``)."""
    if len(observed) < 2:
        return math.nan
    predicted, observed = predicted.reshape(len(predicted), -1), observed.reshape(len(observed), -1)
    w = np.ones(len(observed)) if weights is None else weights
    centre = np.average(observed, axis=0, weights=w)
    res = np.sum(w[:, None] * (observed - predicted) ** 2, axis=0)
    tot = np.sum(w[:, None] * (observed - centre) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        each = np.where(tot > 0, 1 - res / np.where(tot > 0, tot, 1.0), np.where(res == 0, 1.0, 0.0))
    return float(np.mean(each))


def accuracy(predicted: np.ndarray, observed: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The (weighted) share of rows predicted right: every label of a row for multi-label targets."""
    right = predicted == observed if predicted.ndim == 1 else np.all(predicted == observed, axis=1)
    return _mean(right.astype(float), weights)


def score(loss_fn: Callable[..., Any], outputs: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The validation score of a loss's outputs: accuracy for classification losses, R^2 otherwise.

    cross_entropy's class is the largest logit (its targets: labels or probability rows);
    binary_cross_entropy's labels are the positive logits; poisson predicts e^z.
    """
    name = getattr(loss_fn, "__name__", "")
    if getattr(loss_fn, "task", "regression") == "classification":
        if name == "cross_entropy":
            labels = y if y.ndim == 1 else np.argmax(y, axis=1)
            return accuracy(np.argmax(outputs, axis=1), labels, weights)
        return accuracy(outputs > 0, y > 0.5, weights)
    predicted = np.exp(outputs) if name == "poisson" else outputs
    if predicted.shape != y.shape:
        return math.nan
    return r2(predicted, y, weights)
