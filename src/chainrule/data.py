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
import stat
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

# NOTE: read at every call, so a user can raise them: ``chainrule.data.MAX_LINE_CHARS = 10**7``.
MAX_LINE_CHARS = 1_000_000  # characters in one line of a CSV file (its line ending aside)
MAX_FILE_BYTES = 4 * 2**30  # bytes in one CSV file, 4 GiB: a regular file's size is checked before reading
SHOWN = 10  # columns or values an error message lists before "... and N more"

_CHUNK = 2**20  # bytes read at a time (more while one line is longer)
# What float() reads, minus the underscores and non-ASCII digits it also allows.
_REFUSED_IN_NAMES = {"\ufeff": "a byte order mark (U+FEFF)", "\x00": "a NUL character (U+0000)"}


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
        return f"{self.path} line {self.lines[row]}, column {_show(column)}"

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
            f"{self.where(row, self.target)}: {_show(str(y[row]))} is not a number; a regression "
            "target must be numeric (class labels need the cross-entropy loss)"
        )

    def target_classes(self) -> tuple[list[Any], np.ndarray]:
        """``(classes, indices)``: the sorted distinct labels and each row's index into them.

        Numeric labels come back as Python numbers (int when whole), text labels as str.
        """
        values, indices = np.unique(self._need_target(), return_inverse=True)
        if len(values) < 2:
            raise ValueError(
                f"column {_show(self.target)} of {self.path} has a single value ({_show(_label(values[0]))}) "
                "for all rows; classification needs at least 2 classes"
            )
        return [_label(v) for v in values], indices.reshape(-1)

    def target_indices(self, classes: Sequence[str]) -> np.ndarray:
        """Each row's index into ``classes`` (a model's labels); a ValueError names an unknown label."""
        self._need_target()
        numeric = all(not isinstance(c, str) for c in classes)  # then "1" and "1.0" are the same label
        keys = {float(c) if numeric else c: i for i, c in enumerate(classes)}
        column = self.columns.index(self.target)
        out = np.empty(len(self), dtype=np.intp)
        for row, cells in enumerate(self.rows):
            text = cells[column].strip()
            key = _number(text) if numeric else text
            if key not in keys:
                raise ValueError(
                    f"{self.where(row, self.target)}: {_show(text)} is not one of the model's classes "
                    f"{_listing(classes)}"
                )
            out[row] = keys[key]
        return out

    def _need_target(self) -> np.ndarray:
        """The target's values, or a ValueError when no target column was named."""
        if self.target is None or self.y is None:
            raise ValueError(f"no target column was named when reading {self.path}")
        return self.y


def read_csv(path: str | os.PathLike, target: str | None = None, features: Sequence[str] | None = None) -> CSVData:
    """Read a CSV file with a header line into a :class:`CSVData`, checking every cell.

    ``features``: column names (default: every column but the target); their
    cells must be finite numbers. ``target``: the column to predict (optional),
    numbers or class labels. A ValueError says what is wrong and where, in one
    line: the file, the line (the header is line 1), the column and the cell.

    The file is UTF-8 text (a byte order mark at its start is dropped); lines
    end in ``\\n``, ``\\r\\n`` or ``\\r``; a quoted cell may span lines. Column
    names are stripped of spaces, must be distinct and non-empty, and may not
    hold a NUL character or a (second) byte order mark.

    Numbers: what ``float()`` reads, without its underscores (``1_000``) and
    non-ASCII digits: an optional sign, ASCII digits with an optional decimal
    point, an optional exponent (``2.5e-3``), or the words ``inf``,
    ``infinity`` and ``nan`` in any case; spaces around are ignored. Those
    words are numbers, so a feature cell or a numeric target holding one (or
    an exponent too large for float64, such as ``1e999``) is refused as not
    finite. A target with any cell that is not a number is read as class labels.

    Limits, module constants you may raise: ``MAX_LINE_CHARS`` characters in
    one line (1,000,000) and ``MAX_FILE_BYTES`` bytes in the file (4 GiB;
    checked before reading a regular file, and while reading anything else,
    such as a pipe). The csv module refuses a cell longer than
    ``csv.field_size_limit()`` (131,072 characters).

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
    index = {name: i for i, name in enumerate(columns)}
    features = list(_choose(path, columns, index, target, features))
    x = np.empty((len(rows), len(features)))
    for j, name in enumerate(features):
        x[:, j] = [_feature(path, cells[index[name]], line, name) for cells, line in zip(rows, lines)]
    y = None if target is None else _target(path, [cells[index[target]] for cells in rows], lines, target)
    return CSVData(path, columns, features, x, target, y, rows, lines)


def _read_cells(path):
    """(column names, rows of cells, line numbers) with the file's shape checked."""
    records = _records(path)  # (cells, line number); blank lines skipped
    if not records:
        raise ValueError(f"{path} is empty; expected a header line of column names, then rows of data")
    columns = [c.strip() for c in records[0][0]]
    _check_header(path, columns, records[0][1])
    if len(records) == 1:
        raise ValueError(f"{path} has a header line but no data rows")
    for cells, line in records[1:]:
        if len(cells) != len(columns):
            raise ValueError(
                f"{path} line {line} has {len(cells)} cells but the header has {len(columns)} columns "
                f"{_listing(columns)}"
            )
    return columns, [r for r, _ in records[1:]], [n for _, n in records[1:]]


def _records(path):
    """Every non-blank CSV record with the number of its (last) line."""
    records = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno())
        if stat.S_ISREG(size.st_mode) and size.st_size > MAX_FILE_BYTES:
            raise ValueError(
                f"{path} is {size.st_size} bytes, more than chainrule.data.MAX_FILE_BYTES = {MAX_FILE_BYTES}"
            )
        reader = csv.reader(_lines(path, f))
        try:
            for cells in reader:
                if any(c.strip() for c in cells):
                    records.append((cells, reader.line_num))
        except csv.Error as e:
            raise ValueError(f"{path} is not a readable CSV file (line {reader.line_num}: {e})") from None
    return records


def _lines(path, f):
    """The file's lines as text with their endings, each checked: UTF-8, not too long, not too many bytes."""
    limit, offset = 4 * (MAX_LINE_CHARS + 2), 0  # bytes: a UTF-8 character takes at most 4
    for number, raw in enumerate(_raw_lines(f, limit), 1):
        if offset + len(raw) > MAX_FILE_BYTES:
            raise ValueError(
                f"{path} is longer than chainrule.data.MAX_FILE_BYTES = {MAX_FILE_BYTES} (at line {number})"
            )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:  # NOTE: offset + e.start is exact: each line is decoded on its own
            raise ValueError(
                f"{path} is not a UTF-8 text file (line {number}, byte {offset + e.start}: {e.reason})"
            ) from None
        if len(raw) > limit or len(line.rstrip("\r\n")) > MAX_LINE_CHARS:
            raise ValueError(
                f"{path} line {number} is longer than chainrule.data.MAX_LINE_CHARS = {MAX_LINE_CHARS} characters"
            )
        offset += len(raw)
        yield line[1:] if number == 1 and line.startswith("\ufeff") else line  # spreadsheets often add a BOM


def _raw_lines(f, limit):
    """Each line's bytes with its ending; an unfinished line longer than ``limit`` bytes comes last, as it stands."""
    rest = b""
    while chunk := f.read(max(_CHUNK, len(rest))):  # doubling: a long line is scanned a bounded number of times
        lines = (rest + chunk).splitlines(keepends=True)  # at \n, \r\n or a lone \r, as newline="" text mode
        rest = lines.pop() if lines and not lines[-1].endswith((b"\n", b"\r")) else b""
        if not rest and lines and lines[-1].endswith(b"\r"):
            rest = lines.pop()  # its \n may be the next chunk's first byte
        yield from lines
        if len(rest) > limit:
            break
    if rest:
        yield rest


def _check_header(path, columns, line):
    """Every column has a name of plain text, and no name appears twice (one pass: a dict, not a list scan)."""
    seen = {}  # name: its column number
    for i, name in enumerate(columns, 1):
        if not name:
            raise ValueError(f"{path} line {line}: column {i} has no name; every column needs one")
        for char, what in _REFUSED_IN_NAMES.items():
            if char in name:
                raise ValueError(f"{path} line {line}: column {i}'s name {_show(name)} contains {what}")
        if name in seen:
            raise ValueError(
                f"{path} line {line}: column name {_show(name)} appears twice (columns {seen[name]} and {i})"
            )
        seen[name] = i


def _choose(path, columns, index, target, features):
    """The feature names, after checking that every named column exists."""
    if target is not None and target not in index:
        raise ValueError(f"{path} has no column {_show(target)} (the target); its columns are {_listing(columns)}")
    if features is None:
        features = [c for c in columns if c != target]
    elif isinstance(features, str):
        raise TypeError(f"read_csv: features must be a list of column names, got the string {_show(features)}")
    features = list(features)
    for name in features:
        if not isinstance(name, str):
            raise TypeError(f"read_csv: features must be column names (str), got {_show(name)}")
        if name not in index:
            raise ValueError(f"{path} has no column {_show(name)} (a feature); its columns are {_listing(columns)}")
        if name == target:
            raise ValueError(f"column {_show(name)} is the target and cannot also be a feature")
    if len(set(features)) != len(features):
        raise ValueError(f"read_csv: features lists a column twice: {_listing(features)}")
    if not features:
        raise ValueError(f"{path} has no feature columns besides the target {_show(target)}")
    return features


def _feature(path, cell, line, column):
    value = _number(cell)
    if value is None:
        what = "is empty (a missing value)" if not cell.strip() else f"{_show(cell.strip())} is not a number"
        raise ValueError(f"{path} line {line}, column {_show(column)}: {what}; feature cells must be numbers")
    if not math.isfinite(value):
        raise ValueError(f"{path} line {line}, column {_show(column)}: {_show(cell.strip())} is not a finite number")
    return value


def _target(path, cells, lines, column):
    """float64 when every cell is a number (each must be finite), else the stripped text."""
    for cell, line in zip(cells, lines):
        if not cell.strip():
            raise ValueError(f"{path} line {line}, column {_show(column)}: is empty (a missing value)")
    values = [_number(c) for c in cells]
    if any(v is None for v in values):
        return np.array([c.strip() for c in cells])
    return np.array([_feature(path, c, n, column) for c, n in zip(cells, lines)])


def _number(cell):
    """The float in a cell (or a float already), None when it is not a number (see read_csv)."""
    if isinstance(cell, (float, np.floating)):
        return float(cell)
    try:
        value = float(cell)  # (float() itself skips the spaces around a number)
    except ValueError:
        return None
    if "_" in cell:  # less underscores
        return None
    return value if cell.isascii() or cell.strip().isascii() else None  # and non-ASCII digits (spaces may be any)


def _label(value):
    """A class label as a plain Python value: text stays text, whole numbers become int."""
    if isinstance(value, (str, np.str_)):
        return str(value)
    value = float(value)
    return int(value) if value.is_integer() else value


def _show(value, width=60):
    """repr(value) for one line of an error message, cut to about ``width`` characters."""
    text = repr(value)
    if len(text) <= width:
        return text
    count = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[: width - 20]}...{count}"


def _listing(values):
    """'['a', 'b']': the values as a list, the first SHOWN of them and "... and N more" after."""
    values = list(values)
    shown = [_show(v, 40) for v in values[:SHOWN]]
    more = [f"... and {len(values) - SHOWN} more"] if len(values) > SHOWN else []
    return "[" + ", ".join(shown + more) + "]"


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
