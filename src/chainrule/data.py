"""Data: the lessons' dosage data set, and your own data from CSV files.

Example::

    >>> from chainrule.data import dosage
    >>> x, y = dosage()
    >>> x, y
    (array([0. , 0.5, 1. ]), array([0., 1., 0.]))
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class Dataset(NamedTuple):
    """Inputs and observed targets; unpacks as ``x, y = data``."""

    inputs: np.ndarray
    observed: np.ndarray


def dosage() -> Dataset:
    """The lessons' data: drug dosages 0 (low), 0.5, 1 (high) and observed effectiveness 0, 1, 0."""
    return Dataset(np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0]))


# ---- CSV files ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == is ambiguous
class CSVData:
    """What :func:`read_csv` found in a CSV file.

    - ``path``: the file read.
    - ``columns``: every column name, in file order.
    - ``features``: the names of the feature columns; ``x`` their values, float64
      of shape (rows, features).
    - ``target``: the target column's name (or None); ``y`` its values: float64
      when every cell is a number, otherwise the cells as text (class labels).
    - ``rows``: every data row's cells as text (blank lines skipped), for writing
      the rows back out; ``lines``: each row's line number in the file (header = 1).
    """

    path: str
    columns: list
    features: list
    x: np.ndarray
    target: str | None
    y: np.ndarray | None
    rows: list
    lines: list

    def __len__(self):
        return len(self.rows)

    def where(self, row: int, column: str | None) -> str:
        """'data.csv line 7, column 'x'': where a cell is, as users see the file."""
        return f"{self.path} line {self.lines[row]}, column {column!r}"

    def for_training(self, classify: bool = False) -> tuple[np.ndarray, np.ndarray, list[Any] | None]:
        """``(x, y, classes)`` ready for :func:`chainrule.fit`, checked for enough rows and classes.

        Regression (``classify=False``): y is the numeric target, classes None.
        Classification: y holds class indices into ``classes`` (sorted labels).
        """
        self._need_target()
        if len(self) < 2:
            raise ValueError(f"{self.path} has {len(self)} data row; training needs at least 2")
        if not classify:
            return self.x, self.target_numbers(), None
        classes, indices = self.target_classes()
        return self.x, indices, classes

    def target_numbers(self) -> np.ndarray:
        """The target as float64; a ValueError names the first cell that is not a number."""
        y = self._need_target()
        if y.dtype.kind == "f":
            return y
        row = next(i for i, v in enumerate(y) if _number(v) is None)
        raise ValueError(
            f"{self.where(row, self.target)}: {str(y[row])!r} is not a number; a regression "
            "target must be numeric (class labels need the cross-entropy loss)"
        )

    def target_classes(self) -> tuple[list[Any], np.ndarray]:
        """``(classes, indices)``: the sorted distinct labels and each row's index into them.

        Numeric labels come back as Python numbers (int when whole), text labels as str.
        """
        values, indices = np.unique(self._need_target(), return_inverse=True)
        if len(values) < 2:
            raise ValueError(
                f"column {self.target!r} of {self.path} has a single value ({_label(values[0])!r}) "
                "for all rows; classification needs at least 2 classes"
            )
        return [_label(v) for v in values], indices.reshape(-1)

    def target_indices(self, classes: Sequence[str]) -> np.ndarray:
        """Each row's index into ``classes`` (a model's labels); a ValueError names an unknown label."""
        self._need_target()
        numeric = all(not isinstance(c, str) for c in classes)  # then "1" and "1.0" are the same label
        keys = {float(c) if numeric else c: i for i, c in enumerate(classes)}
        out = np.empty(len(self), dtype=np.intp)
        for row in range(len(self)):
            key = _number(self._text(row)) if numeric else self._text(row)
            if key not in keys:
                raise ValueError(
                    f"{self.where(row, self.target)}: {self._text(row)!r} is not one of the model's classes {classes}"
                )
            out[row] = keys[key]
        return out

    def _text(self, row):
        return self.rows[row][self.columns.index(self.target)].strip()

    def _need_target(self) -> np.ndarray:
        """The target's values, or a ValueError when no target column was named."""
        if self.target is None or self.y is None:
            raise ValueError(f"no target column was named when reading {self.path}")
        return self.y


def read_csv(path: str | os.PathLike, target: str | None = None, features: Sequence[str] | None = None) -> CSVData:
    """Read a CSV file with a header line into a :class:`CSVData`, checking every cell.

    ``features``: column names (default: every column but the target); their
    cells must be finite numbers. ``target``: the column to predict (optional),
    numbers or class labels. A ValueError says what is wrong and where: the
    file, the line (the header is line 1), the column and the cell.

    Example::

        >>> import os, tempfile
        >>> from chainrule.data import read_csv
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "dosage.csv")
        >>> with open(path, "w") as f:
        ...     _ = f.write("dosage,effect\\n0,0\\n0.5,1\\n1,0\\n")
        >>> data = read_csv(path, target="effect")
        >>> data.features, data.x.shape, data.y
        (['dosage'], (3, 1), array([0., 1., 0.]))
        >>> read_csv(path, target="effectiveness")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ... has no column 'effectiveness' (the target); its columns are ['dosage', 'effect']
        >>> folder.cleanup()
    """
    path = os.fspath(path)
    columns, rows, lines = _read_cells(path)
    features = list(_choose(path, columns, target, features))
    index = {name: i for i, name in enumerate(columns)}
    x = np.empty((len(rows), len(features)))
    for j, name in enumerate(features):
        x[:, j] = [_feature(path, cells[index[name]], line, name) for cells, line in zip(rows, lines)]
    y = None if target is None else _target(path, [cells[index[target]] for cells in rows], lines, target)
    return CSVData(path, columns, features, x, target, y, rows, lines)


def _read_cells(path):
    """(column names, rows of cells, line numbers) with the file's shape checked."""
    records = []  # (cells, line number); blank lines skipped
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets often add a BOM
            reader = csv.reader(f)
            for cells in reader:
                if any(c.strip() for c in cells):
                    records.append((cells, reader.line_num))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    except csv.Error as e:
        raise ValueError(f"{path} is not a readable CSV file: {e}") from None
    if not records:
        raise ValueError(f"{path} is empty; expected a header line of column names, then rows of data")
    columns = [c.strip() for c in records[0][0]]
    _check_header(path, columns)
    if len(records) == 1:
        raise ValueError(f"{path} has a header line but no data rows")
    for cells, line in records[1:]:
        if len(cells) != len(columns):
            raise ValueError(
                f"{path} line {line} has {len(cells)} cells but the header has {len(columns)} columns {columns}"
            )
    return columns, [r for r, _ in records[1:]], [n for _, n in records[1:]]


def _check_header(path, columns):
    for i, name in enumerate(columns):
        if not name:
            raise ValueError(f"{path} line 1: column {i + 1} has no name; every column needs one")
        if name in columns[:i]:
            raise ValueError(
                f"{path} line 1: column name {name!r} appears twice (columns {columns.index(name) + 1} and {i + 1})"
            )


def _choose(path, columns, target, features):
    """The feature names, after checking that every named column exists."""
    if target is not None and target not in columns:
        raise ValueError(f"{path} has no column {target!r} (the target); its columns are {columns}")
    if features is None:
        features = [c for c in columns if c != target]
    elif isinstance(features, str):
        raise TypeError(f"read_csv: features must be a list of column names, got the string {features!r}")
    features = list(features)
    for name in features:
        if name not in columns:
            raise ValueError(f"{path} has no column {name!r} (a feature); its columns are {columns}")
        if name == target:
            raise ValueError(f"column {name!r} is the target and cannot also be a feature")
    if len(set(features)) != len(features):
        raise ValueError(f"read_csv: features lists a column twice: {features}")
    if not features:
        raise ValueError(f"{path} has no feature columns besides the target {target!r}")
    return features


def _feature(path, cell, line, column):
    value = _number(cell)
    if value is None:
        what = "is empty (a missing value)" if not cell.strip() else f"{cell.strip()!r} is not a number"
        raise ValueError(f"{path} line {line}, column {column!r}: {what}; feature cells must be numbers")
    if not math.isfinite(value):
        raise ValueError(f"{path} line {line}, column {column!r}: {cell.strip()!r} is not a finite number")
    return value


def _target(path, cells, lines, column):
    """float64 when every cell is a number (each must be finite), else the stripped text."""
    for cell, line in zip(cells, lines):
        if not cell.strip():
            raise ValueError(f"{path} line {line}, column {column!r}: is empty (a missing value)")
    values = [_number(c) for c in cells]
    if any(v is None for v in values):
        return np.array([c.strip() for c in cells])
    return np.array([_feature(path, c, n, column) for c, n in zip(cells, lines)])


def _number(cell):
    """The float in a cell (or a float already), None when it is not a number."""
    if isinstance(cell, (float, np.floating)):
        return float(cell)
    try:
        return float(cell)
    except ValueError:
        return None


def _label(value):
    """A class label as a plain Python value: text stays text, whole numbers become int."""
    if isinstance(value, (str, np.str_)):
        return str(value)
    value = float(value)
    return int(value) if value.is_integer() else value


# ---- arrays for training -------------------------------------------------------------


def training_arrays(x: Any, y: Any, dtype: Any, labels: bool) -> tuple[np.ndarray, np.ndarray]:
    """Inputs as (n, features) of the model's dtype; targets (n, 1) for 1-D regression targets."""
    x = _rows_array("x", x)
    y = _rows_array("y", y)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"fit: x must be 1-D (one feature) or 2-D (rows, features), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("fit: x is empty; need at least one row of data")
    if len(y) != len(x):
        raise ValueError(f"fit: x has {len(x)} rows but y has {len(y)}; they must match")
    if labels:
        return x.astype(dtype, copy=False), y
    return x.astype(dtype, copy=False), (y[:, None] if y.ndim == 1 else y).astype(dtype, copy=False)


def _rows_array(name, a):
    a = np.asarray(getattr(a, "data", a))
    if a.dtype.kind not in "biuf":
        raise TypeError(f"fit: {name} must hold numbers, got dtype {a.dtype}")
    a = a.astype(np.float64) if a.dtype.kind == "b" else a  # floats keep their precision: no copy
    if a.ndim == 0:
        raise ValueError(f"fit: {name} must be an array of rows, got a single number {a}")
    # min and max carry any NaN or inf through without a temporary array the size of the data
    if a.dtype.kind == "f" and a.size and not (np.isfinite(a.min()) and np.isfinite(a.max())):
        row = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"fit: {name} contains NaN or inf (first at index {tuple(int(i) for i in row)})")
    return a
