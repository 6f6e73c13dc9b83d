"""Data: the lessons' dosage data set.

Example::

    >>> from chainrule.data import dosage
    >>> x, y = dosage()
    >>> x, y
    (array([0. , 0.5, 1. ]), array([0., 1., 0.]))
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Dataset(NamedTuple):
    """Inputs and observed targets; unpacks as ``x, y = data``."""

    inputs: np.ndarray
    observed: np.ndarray


def dosage():
    """The lessons' data: drug dosages 0 (low), 0.5, 1 (high) and observed effectiveness 0, 1, 0."""
    return Dataset(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0]))
