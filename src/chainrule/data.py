"""Data: the lessons' dosage data set, and your own data from CSV and Parquet files.

Example::

    >>> from chainrule.data import dosage
    >>> x, y = dosage()
    >>> x, y
    (array([0. , 0.5, 1. ]), array([0., 1., 0.]))

Reading a CSV file takes two readers that give the same answers. The fast one
parses blocks of about a megabyte of whole lines with ``pyarrow.csv`` (when
pyarrow is installed) or ``numpy.loadtxt`` straight into float64 arrays
(:func:`_parse_block`, the piece a reader of a file in chunks reuses); it
declines any block it cannot read exactly as the
rules of :func:`read_csv` say (quotes, tabs or other control characters,
text that is not ASCII, a lone CR line ending, a ragged row, a long line, a
cell that is not a finite number). Then the exact reader reads the whole file
with the csv module, cell by cell, and either returns the same arrays or
names the first bad cell. ``tests/test_data_reader.py`` holds the two to the
same results.

For a reader of a file in pieces (streaming): :func:`_header` and
:func:`_layout` read and check the header, :func:`_blocks` yields one
:class:`Block` of float arrays per megabyte of lines, and a Parquet file is
read one row group's column at a time (:func:`_parquet_chunks`). What such a
reader still needs: for a block the fast reader declines, the csv module's
records from that block's offset (``_checked_lines`` takes any file position).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import stat
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .checks import Integer, check
from .streams import SHUFFLE_BUFFER, Stream


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
BLOCK_BYTES = 2**20  # bytes of whole lines the fast reader parses at a time
PARQUET_SUFFIXES = (".parquet", ".pq")  # read_data reads these as Parquet, anything else as CSV
# What float() reads, minus the underscores and non-ASCII digits it also allows.
_REFUSED_IN_NAMES = {"\ufeff": "a byte order mark (U+FEFF)", "\x00": "a NUL character (U+0000)"}


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == is ambiguous
class CSVData:
    """What :func:`read_csv` (or :func:`read_parquet`) found in a file.

    - ``path``: the file read.
    - ``columns``: every column name, in file order.
    - ``features``: the names of the feature columns; ``x`` their values, float64
      of shape (rows, features).
    - ``target``: the target column's name (or None); ``y`` its values: float64
      when every cell is a number, otherwise the cells as text (class labels).
    - ``rows``: every data row's cells as text (blank lines skipped), for writing
      the rows back out. They are not kept in memory: each use reads the file
      again, and a ValueError says so if it changed since. ``lines``: each row's
      line number in the file (header = 1); for a Parquet file, None.
    """

    path: str
    columns: list
    features: list
    x: np.ndarray
    target: str | None
    y: np.ndarray | None
    line_numbers: np.ndarray | None = field(repr=False)  # int64 per row; None: rows numbered from 1 (Parquet)
    again: Callable[[], Iterator[list[str]]] = field(repr=False)  # the rows' cells, read again

    def __len__(self):
        return len(self.x)

    @property
    def lines(self) -> list[int] | None:
        return None if self.line_numbers is None else self.line_numbers.tolist()

    @property
    def rows(self) -> Rows:
        return Rows(self.again, len(self))

    def where(self, row: int, column: str | None) -> str:
        """'data.csv line 7, column 'x'': where a cell is, as users see the file."""
        place = f"row {row + 1}" if self.line_numbers is None else f"line {self.line_numbers[row]}"
        return f"{self.path} {place}, column {_show(column)}"

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
        y = self._need_target()
        numeric = all(not isinstance(c, str) for c in classes)  # then "1" and "1.0" are the same label
        keys = {float(c) if numeric else c: i for i, c in enumerate(classes)}
        if y.dtype.kind == "f" and not numeric:  # text labels to match: the cells as written
            y = np.array([cells[self.columns.index(self.target)].strip() for cells in self.rows])
        out = np.empty(len(self), dtype=np.intp)
        for row, value in enumerate(y.tolist()):
            key = _number(value) if numeric else value
            if key not in keys:
                raise ValueError(
                    f"{self.where(row, self.target)}: {_show(self._cell(row, self.target))} is not one of the "
                    f"model's classes {listing(classes)}"
                )
            out[row] = keys[key]
        return out

    def _cell(self, row: int, column: str | None) -> str:
        """One cell's text as the file has it (read again)."""
        cells = self.rows[row]
        return cells[self.columns.index(column)].strip()

    def _need_target(self) -> np.ndarray:
        """The target's values, or a ValueError when no target column was named."""
        if self.target is None or self.y is None:
            raise ValueError(f"no target column was named when reading {self.path}")
        return self.y


class Rows(Sequence):
    """A file's data rows as lists of cell texts, read again at each pass (``CSVData.rows``)."""

    def __init__(self, again: Callable[[], Iterator[list[str]]], count: int) -> None:
        self._again, self._count = again, count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[list[str]]:
        return self._again()

    def __getitem__(self, index):
        if not isinstance(index, int) or not -self._count <= index < self._count:
            raise IndexError(f"row {index!r} out of range for {self._count} rows")
        index %= self._count
        return next(cells for i, cells in enumerate(self) if i == index)


def read_data(path: str | os.PathLike, target: str | None = None, features: Sequence[str] | None = None) -> CSVData:
    """:func:`read_parquet` for a path ending ``.parquet`` or ``.pq`` (any case), else :func:`read_csv`.

    Example::

        >>> import os, tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "doses.CSV")
        >>> with open(path, "w") as f:
        ...     _ = f.write("dosage,effect\\n0,0\\n1,1\\n")
        >>> read_data(path, target="effect").x.tolist()
        [[0.0], [1.0]]
        >>> folder.cleanup()
    """
    if os.fspath(path).lower().endswith(PARQUET_SUFFIXES):
        return read_parquet(path, target=target, features=features)
    return read_csv(path, target=target, features=features)


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

    Speed and memory: plain files of numbers (ASCII, no quotes, ``\\n`` or
    ``\\r\\n`` line ends; class labels allowed) are parsed by ``pyarrow.csv``
    when pyarrow is installed (the ``parquet`` extra), else by ``numpy.loadtxt``,
    a block at a time straight into the float64 arrays; anything else, and any
    file with a mistake, is read by the exact reader, cell by cell in one pass
    (about eight times slower). Neither keeps the cells as text but the target's labels;
    ``CSVData.rows`` reads the file again. A pipe (anything not a regular file)
    is read into memory first.

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
        >>> data.lines, list(data.rows)  # rows: read again from the file
        ([2, 3, 4], [['0', '0'], ['0.5', '1'], ['1', '0']])
        >>> read_csv(path, target="effectiveness")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ... has no column 'effectiveness' (the target); its columns are ['dosage', 'effect']
        >>> folder.cleanup()
    """
    path = os.fspath(path)
    f, content = _open_csv(path)
    with f:
        again = _rows_again(path, os.fstat(f.fileno()) if content is None else None, content)
        try:
            return _read_fast(path, f, again, target, features)
        except _Declined:
            pass  # (the exact reader runs outside this handler: its errors come without this one attached)
        f.seek(0)
        return _read_exact(path, f, again, target, features)


class _Declined(Exception):
    """The fast reader cannot read this file exactly: the exact reader will (or will name the mistake)."""


class _Layout(NamedTuple):
    """The columns a reading needs: feature positions in the file, and the target's (None: no target)."""

    columns: list
    features: list
    usecols: list
    target: str | None
    target_col: int | None


def _open_csv(path):
    """(a seekable binary file, None), or (an in-memory copy, its bytes) for a pipe; the size checked first."""
    f = open(path, "rb")
    size = os.fstat(f.fileno())
    if stat.S_ISREG(size.st_mode):
        if size.st_size > MAX_FILE_BYTES:
            f.close()
            raise ValueError(
                f"{path} is {size.st_size} bytes, more than chainrule.data.MAX_FILE_BYTES = {MAX_FILE_BYTES}"
            )
        return f, None
    with f:
        content = _read_capped(f)
    return io.BytesIO(content), content


def _read_capped(f):
    """A stream's bytes, up to one past MAX_FILE_BYTES or past a line too long: enough to name either."""
    parts, total, unfinished = [], 0, 0  # unfinished: bytes since the last line end
    limit = 4 * (MAX_LINE_CHARS + 2)
    while total <= MAX_FILE_BYTES and unfinished <= limit and (chunk := f.read(_CHUNK)):
        parts.append(chunk)
        total += len(chunk)
        end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        unfinished = unfinished + len(chunk) if end < 0 else len(chunk) - end - 1
    return b"".join(parts)


def _rows_again(path, stamp, content):
    """A function giving the data rows' cells again: from ``content`` (a pipe's bytes) or the unchanged file."""

    def rows():
        f = io.BytesIO(content) if content is not None else open(path, "rb")
        with f:
            if stamp is not None and _changed(stamp, os.fstat(f.fileno())):
                raise ValueError(f"{path} changed since it was read; read it again")
            for cells, _ in _data_records(path, f):
                yield cells

    return rows


def _changed(before, now):
    return (before.st_ino, before.st_size, before.st_mtime_ns) != (now.st_ino, now.st_size, now.st_mtime_ns)


# ---- the fast reader: blocks of lines through pyarrow.csv or numpy.loadtxt ----


def _read_fast(path, f, again, target, features):
    """The CSVData, or _Declined (never an error of its own: the exact reader words those)."""
    try:
        columns, line, offset = _header(path, f)
        layout = _layout(path, columns, target, features)
    except (ValueError, TypeError, csv.Error):
        raise _Declined from None
    ends, size = _count_lines(f, offset)
    rows = min(ends, size // len(columns)) + 1  # at most this many rows: one of n columns takes n bytes or more
    x = np.empty((rows, len(layout.features)))
    lines = np.empty(rows, dtype=np.int64)
    labels, numbers = [], np.empty(rows) if target is not None else None
    n, mode = 0, None
    for block, mode in _blocks(f, offset, line + 1, layout):
        if n + len(block.x) > rows:
            raise _Declined  # more lines than counted: the file grew while it was read
        x[n : n + len(block.x)], lines[n : n + len(block.x)] = block.x, block.lines
        if mode == "numbers":
            numbers[n : n + len(block.x)] = block.y
        elif mode == "labels":
            labels.append(block.y)
        n += len(block.x)
    if n == 0:
        raise _Declined
    y = None if target is None else numbers[:n].copy() if mode == "numbers" else _narrow(np.concatenate(labels))
    return CSVData(path, columns, layout.features, _first(x, n), target, y, _first(lines, n), again)


def _narrow(labels):
    """Text labels in the narrowest dtype that holds them (stripping leaves a block's dtype as wide as before)."""
    return labels.astype(f"U{max(1, int(np.char.str_len(labels).max()))}")


def _first(a, n):
    """a[:n] without keeping a larger buffer alive when many rows were blank."""
    return a[:n] if n > 0.9 * len(a) else a[:n].copy()


def _header(path, f):
    """(column names, the header's line number, the byte offset after it), read exactly by the csv module."""
    offset = 0

    def texts():
        nonlocal offset
        for raw, text in _checked_lines(path, f):
            offset += len(raw)
            yield text

    reader = csv.reader(texts())
    for cells in reader:  # the reader takes a line only when its record needs one: offset ends the record
        if any(c.strip() for c in cells):
            columns = [c.strip() for c in cells]
            _check_header(f"{path} line {reader.line_num}", columns)
            return columns, reader.line_num, offset
    raise ValueError(f"{path} is empty")


def _count_lines(f, offset):
    """(line ends, bytes) from ``offset`` on."""
    f.seek(offset)
    count = size = 0
    while chunk := f.read(_CHUNK):
        count, size = count + chunk.count(b"\n"), size + len(chunk)
    return count, size


def _blocks(f, offset, line, layout):
    """(Block, mode) for each block of whole lines from ``offset`` (the file's line ``line``); _Declined if one fails.

    ``mode`` says what the target is: "numbers" or "labels", fixed by the first block.
    """
    f.seek(offset)
    rest, mode = b"", None
    while chunk := f.read(BLOCK_BYTES):
        rest += chunk
        cut = rest.rfind(b"\n") + 1
        if cut == 0:
            if len(rest) > 4 * (MAX_LINE_CHARS + 2):
                raise _Declined
            continue
        block, mode = _parse_block(rest[:cut], line, layout, mode)
        line += rest.count(b"\n", 0, cut)
        rest = rest[cut:]
        yield block, mode
    if rest:  # the last line has no line end
        yield _parse_block(rest + b"\n", line, layout, mode)


_PLAIN = bytes(range(32, 127)).replace(b'"', b"") + b"\n\r"  # the bytes of a block the fast reader reads


class Block(NamedTuple):
    """Rows parsed from one block of a file: ``x`` (rows, features), ``y`` (or None), each row's line number."""

    x: np.ndarray
    y: np.ndarray | None
    lines: np.ndarray


def _parse_block(raw, first_line, layout, mode):
    """(Block, mode) from ``raw``, whole lines each ending in ``\\n``, the first of them the file's line ``first_line``.

    Raises _Declined when the block is not plain enough to be read exactly this way. ``mode``: what the
    target is ("numbers", "labels", or None: not known yet), returned as the block found it.
    """
    if raw.translate(None, _PLAIN):
        raise _Declined  # not ASCII, quoted cells, or control characters besides line ends
    if b"\r" in raw:
        if raw.count(b"\r\n") != raw.count(b"\r"):
            raise _Declined  # a lone \r ends a line too: the csv module's business
        raw = raw.replace(b"\r\n", b"\n")
    if len(raw) <= MAX_LINE_CHARS + 1 and b"\n\n" not in raw and not raw.startswith(b"\n"):
        lines, counted = first_line + np.arange(raw.count(b"\n")), False  # no line too long, none blank
    else:
        lines, counted = _full_lines(raw, first_line, len(layout.columns)), True
    x, y, mode = _block_values(raw, layout, mode, counted)
    if len(x) != len(lines):
        raise _Declined  # a line of spaces, say
    return Block(x, y, lines), mode


def _full_lines(raw, first_line, width):
    """The numbers of the non-blank lines, after checking that each is short enough and has ``width`` cells."""
    a = np.frombuffer(raw, np.uint8)
    ends = np.flatnonzero(a == 10)
    lengths = np.diff(ends, prepend=-1) - 1
    full = lengths > 0  # loadtxt skips the empty lines, as read_csv does
    commas = np.diff(np.searchsorted(np.flatnonzero(a == 44), ends), prepend=0)
    if lengths.max() > MAX_LINE_CHARS or np.any(commas[full] != width - 1):
        raise _Declined
    return first_line + np.flatnonzero(full)


def _block_values(raw, layout, mode, counted):
    """(x, y, mode): the features as floats, the target as floats or as stripped text (class labels)."""
    width, features = len(layout.columns), len(layout.usecols)
    if layout.target_col is None:
        return _numbers(raw, layout.usecols, width, counted), None, mode
    if mode != "labels":
        try:
            both = _numbers(raw, [*layout.usecols, layout.target_col], width, counted)
            return both[:, :features], both[:, features], "numbers"
        except _Declined:
            if mode == "numbers":
                raise
    x = _numbers(raw, layout.usecols, width, counted)
    labels = np.char.strip(_texts(raw, layout.target_col, width))
    if not np.all(np.char.str_len(labels)):
        raise _Declined  # an empty target cell
    if mode is None and all(_number(c) is not None for c in labels.tolist()):
        raise _Declined  # numbers, some not finite: the exact reader says which
    return x, labels, "labels"


def _numbers(raw, columns, width, counted):
    """The cells of ``columns`` as finite float64 (rows, len(columns)); every line must have ``width`` cells.

    Parsed by pyarrow.csv when it is installed (about 3 times faster than numpy.loadtxt, on one core;
    it reads every line's cells and refuses a line with another number), else by numpy.loadtxt.
    NOTE: when every column is wanted, loadtxt reads them all and itself refuses a line with a different
    number of cells, so the lines need not be counted here (the common case).
    """
    arrow = _arrow_csv() if width <= _ARROW_COLUMNS else None
    if arrow is not None:
        table = _arrow_table(arrow, raw, columns, width, "float64")
        values = np.empty((table.num_rows, len(columns)))
        for j, column in enumerate(table.columns):
            at = 0
            for chunk in column.chunks:
                values[at : at + len(chunk), j] = _arrow_values(chunk)
                at += len(chunk)
        return _finite(values)
    if sorted(columns) == list(range(width)):
        values = _finite(_loadtxt(raw, None, np.float64))
        if values.shape[1] != width:
            raise _Declined
        return values if columns == list(range(width)) else values[:, columns]
    if not counted:
        _full_lines(raw, 0, width)
    return _finite(_loadtxt(raw, columns, np.float64))


def _texts(raw, column, width):
    """One column's cells as text (not stripped)."""
    arrow = _arrow_csv() if width <= _ARROW_COLUMNS else None
    if arrow is None:
        return _loadtxt(raw, [column], str)[:, 0]
    return np.array(_arrow_table(arrow, raw, [column], width, "string").column(0).to_pylist(), dtype=str)


_ARROW_COLUMNS = 4096  # wider files go to numpy.loadtxt: pyarrow's time per block grows fast with the columns


def _arrow_values(array):
    """A pyarrow Array without nulls as a NumPy array: numbers straight from its data buffer (no copy),
    anything else (text, booleans, dates) through its Python values.

    NOTE: not Array.to_numpy(): its first call imports pandas where pandas is installed, inside compiled
    code that swallows a KeyboardInterrupt raised during that import (the import fails quietly and
    reading goes on: a Ctrl-C in that half second is lost); and the import costs the half second.

        >>> import pyarrow as pa
        >>> _arrow_values(pa.array([1.5, 2.5, 3.5]).slice(1))
        array([2.5, 3.5])
        >>> _arrow_values(pa.array([3, 4], pa.uint16())).dtype, _arrow_values(pa.array(["a", "b"])).tolist()
        (dtype('uint16'), ['a', 'b'])
    """
    from pyarrow import types  # (pyarrow is imported: here is one of its arrays)

    kind = array.type
    if (types.is_integer(kind) or types.is_floating(kind)) and array.null_count == 0:
        letter = "f" if types.is_floating(kind) else "i" if types.is_signed_integer(kind) else "u"
        dtype = np.dtype(f"{letter}{kind.bit_width // 8}")
        return np.frombuffer(array.buffers()[1], dtype, len(array), array.offset * dtype.itemsize)
    return np.array(array.to_pylist())


@functools.cache
def _arrow_csv():
    """(pyarrow, pyarrow.csv), or None when pyarrow is not installed."""
    try:
        import pyarrow
        import pyarrow.csv
    except ImportError:
        return None
    return pyarrow, pyarrow.csv


def _arrow_table(arrow, raw, columns, width, kind):
    """The ``columns`` of a block as a pyarrow Table of ``kind``: no quoting, no nulls, every line ``width`` cells."""
    pa, pacsv = arrow
    names = [str(i) for i in range(width)]
    wanted = [names[c] for c in columns]
    try:
        return pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: kind for n in wanted},
                include_columns=wanted,
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException:
        raise _Declined from None


def _finite(values):
    if not np.isfinite(values).all():
        raise _Declined
    return values


def _loadtxt(raw, usecols, dtype):
    with warnings.catch_warnings():  # "input contained no data" and the like: the caller checks the rows
        warnings.simplefilter("ignore")
        try:
            return np.loadtxt(
                io.BytesIO(raw), dtype=dtype, delimiter=",", comments=None, usecols=usecols, ndmin=2, encoding="ascii"
            )
        except ValueError:
            raise _Declined from None


# ---- the exact reader: the csv module, cell by cell ----


def _read_exact(path, f, again, target, features):
    """The CSVData, or a ValueError naming the first mistake in read_csv's order, in one pass over the file:
    every line's bytes first, then the header, the rows' lengths, the columns named, the cells."""
    lines, size = _line_bound(f)
    f.seek(0)
    records = _records(path, f)
    first = next(records, None)
    if first is None:
        raise ValueError(f"{path} is empty; expected a header line of column names, then rows of data")
    columns, cells = [c.strip() for c in first[0]], None
    header, chosen = _held(_check_header, f"{path} line {first[1]}", columns), None
    if header is None:
        chosen = _held(_layout, path, columns, target, features)
    count, ragged = 0, None
    if isinstance(chosen, _Layout):  # a row of n columns takes at least n bytes: blank lines claim no room
        cells = _Cells(chosen, min(lines, size // len(columns)) + 1)
    for row, line in records:
        count += 1
        if len(row) != len(columns):
            ragged = ragged or (line, len(row))
        elif cells is not None:
            cells.add(row, line)
    for mistake in (header, count == 0, ragged, None if cells is not None else chosen):
        _raise(path, mistake, columns)
    return cells.finish(path, columns, again)


def _held(check, *args):
    """What ``check(*args)`` returns, or the ValueError or TypeError it raised (to raise in its turn)."""
    try:
        return check(*args)
    except (ValueError, TypeError) as e:
        return e


def _raise(path, mistake, columns):
    if isinstance(mistake, Exception):
        raise mistake
    if mistake is True:
        raise ValueError(f"{path} has a header line but no data rows")
    if mistake:
        line, count = mistake
        raise ValueError(
            f"{path} line {line} has {count} cells but the header has {len(columns)} columns {listing(columns)}"
        )


def _line_bound(f):
    """(about the number of lines, the bytes): for sizing arrays (mixed lone \\r and \\n lines can exceed it:
    _Cells grows then)."""
    f.seek(0)
    lf = cr = size = 0
    while chunk := f.read(_CHUNK):
        lf, cr, size = lf + chunk.count(b"\n"), cr + chunk.count(b"\r"), size + len(chunk)
    return max(lf, cr), size


class _Cells:
    """The exact reader's rows as they come: features into float64, each feature's first bad cell, the target's text."""

    def __init__(self, layout, bound):
        self.layout, self.n = layout, 0
        self.x = np.empty((bound, len(layout.features)))
        self.lines = np.empty(bound, dtype=np.int64)
        self.texts, self.bad = [], {}  # the target's cells; feature number: its first bad (cell, line)

    def add(self, cells, line):
        if self.n == len(self.x):
            self.x = np.concatenate([self.x, np.empty_like(self.x)])
            self.lines = np.concatenate([self.lines, np.empty_like(self.lines)])
        self.lines[self.n] = line
        for j, c in enumerate(self.layout.usecols):
            value = _number(cells[c])
            if value is not None and math.isfinite(value):
                self.x[self.n, j] = value
            elif j not in self.bad:
                self.bad[j] = (cells[c], line)
        if self.layout.target is not None:
            self.texts.append(cells[self.layout.target_col])
        self.n += 1

    def finish(self, path, columns, again):
        layout, lines = self.layout, _first(self.lines, self.n)
        if self.bad:
            j = min(self.bad)  # the columns are checked in the order of the features
            _feature(path, *self.bad[j], layout.features[j])
        y = None if layout.target is None else _target(path, self.texts, lines.tolist(), layout.target)
        return CSVData(path, columns, layout.features, _first(self.x, self.n), layout.target, y, lines, again)


def _data_records(path, f):
    """The records after the header, as :func:`_records` gives them."""
    records = _records(path, f)
    next(records, None)
    return records


def _records(path, f, first=1, offset=0, cap=None):
    """Every non-blank CSV record with the number of its (last) line; ``f`` at byte ``offset``, the file's
    line ``first`` (a stream starts mid-file, with no cap on the file's bytes: ``cap=math.inf``)."""
    reader = csv.reader(text for _, text in _checked_lines(path, f, first, offset, cap))
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                yield cells, reader.line_num + first - 1
    except csv.Error as e:
        raise ValueError(f"{path} is not a readable CSV file (line {reader.line_num + first - 1}: {e})") from None


def _checked_lines(path, f, first=1, offset=0, cap=None):
    """Each line as (bytes, text) with its ending, checked: UTF-8, not too long, not too many bytes
    (``cap``, default MAX_FILE_BYTES); ``f`` at byte ``offset``, the file's line ``first``."""
    limit = 4 * (MAX_LINE_CHARS + 2)  # bytes: a UTF-8 character takes at most 4
    cap = MAX_FILE_BYTES if cap is None else cap
    for number, raw in enumerate(_raw_lines(f, limit), first):
        if offset + len(raw) > cap:
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
        yield raw, line[1:] if number == 1 and line.startswith("\ufeff") else line  # spreadsheets often add a BOM


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


def _check_header(where, columns):
    """Every column has a name of plain text, and no name appears twice (one pass: a dict, not a list scan)."""
    seen = {}  # name: its column number
    for i, name in enumerate(columns, 1):
        if not name:
            raise ValueError(f"{where}: column {i} has no name; every column needs one")
        for char, what in _REFUSED_IN_NAMES.items():
            if char in name:
                raise ValueError(f"{where}: column {i}'s name {_show(name)} contains {what}")
        if name in seen:
            raise ValueError(f"{where}: column name {_show(name)} appears twice (columns {seen[name]} and {i})")
        seen[name] = i


def _layout(path, columns, target, features):
    index = {name: i for i, name in enumerate(columns)}
    features = list(_choose(path, columns, index, target, features))
    return _Layout(columns, features, [index[f] for f in features], target, None if target is None else index[target])


def _choose(path, columns, index, target, features):
    """The feature names, after checking that every named column exists."""
    if target is not None and target not in index:
        raise ValueError(f"{path} has no column {_show(target)} (the target); its columns are {listing(columns)}")
    if features is None:
        features = [c for c in columns if c != target]
    elif isinstance(features, str):
        raise TypeError(f"read_csv: features must be a list of column names, got the string {_show(features)}")
    features = list(features)
    for name in features:
        if not isinstance(name, str):
            raise TypeError(f"read_csv: features must be column names (str), got {_show(name)}")
        if name not in index:
            raise ValueError(f"{path} has no column {_show(name)} (a feature); its columns are {listing(columns)}")
        if name == target:
            raise ValueError(f"column {_show(name)} is the target and cannot also be a feature")
    if len(set(features)) != len(features):
        raise ValueError(f"read_csv: features lists a column twice: {listing(features)}")
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


def listing(values):
    """'['a', 'b']': the values as a list, the first SHOWN of them and "... and N more" after (error messages
    of every module list names with it, so that no line grows with a file's columns or classes)."""
    values = list(values)
    shown = [_show(v, 40) for v in values[:SHOWN]]
    more = [f"... and {len(values) - SHOWN} more"] if len(values) > SHOWN else []
    return "[" + ", ".join(shown + more) + "]"


# ---- Parquet files -------------------------------------------------------------------------

_PARQUET_BATCH = 65_536  # rows converted at a time: the reader holds one batch besides the arrays


def read_parquet(path: str | os.PathLike, target: str | None = None, features: Sequence[str] | None = None) -> CSVData:
    """Read a Parquet file (through pyarrow) into a :class:`CSVData`, with :func:`read_csv`'s checks.

    Feature columns must have a numeric Parquet type (integers, floats or
    booleans, which count as 0 and 1); the target may be numeric or text
    (class labels). A missing value (null) or a NaN or infinity is refused,
    naming the row (the first data row is row 1) and the column. Before
    anything is read the file's size and what its metadata claims (rows x
    columns needed, as float64) are checked against ``MAX_FILE_BYTES``. A file
    pyarrow cannot read gives one line naming it. Needs the ``parquet`` extra
    (``pip install 'chainrule[parquet]'``); it reads one column of one row group at a time.

    Example::

        >>> import os, tempfile
        >>> import pyarrow as pa, pyarrow.parquet as pq
        >>> from chainrule.data import read_parquet
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "dosage.parquet")
        >>> pq.write_table(pa.table({"dosage": [0, 0.5, 1], "effect": [0, 1, 0]}), path)
        >>> data = read_parquet(path, target="effect")
        >>> data.features, data.x.shape, data.y
        (['dosage'], (3, 1), array([0., 1., 0.]))
        >>> list(data.rows)
        [['0.0', '0'], ['0.5', '1'], ['1.0', '0']]
        >>> pq.write_table(pa.table({"dosage": [0, None], "effect": [0, 1]}), path)
        >>> read_parquet(path, target="effect")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...dosage.parquet row 2, column 'dosage': is empty (a missing value); feature cells must be numbers
        >>> folder.cleanup()
    """
    pa, pq = _pyarrow()
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno())
        if stat.S_ISREG(size.st_mode) and size.st_size > MAX_FILE_BYTES:
            raise ValueError(
                f"{path} is {size.st_size} bytes, more than chainrule.data.MAX_FILE_BYTES = {MAX_FILE_BYTES}"
            )
        try:
            parquet = pq.ParquetFile(f)
            layout, rows = _parquet_layout(path, parquet, pa, target, features)
            x, y = _parquet_values(path, parquet, layout, rows)
        except pa.ArrowException as e:
            raise ValueError(f"{path} is not a readable Parquet file ({_one_line(e)})") from None
    return CSVData(path, layout.columns, layout.features, x, target, y, None, _parquet_again(path, size))


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ImportError("reading Parquet files needs pyarrow: pip install 'chainrule[parquet]'") from None
    return pyarrow, pyarrow.parquet


def _parquet_layout(path, parquet, pa, target, features, claim=True):
    """(the columns to read, rows): names, types and the claimed size (``claim``) checked before any data is read."""
    schema = parquet.schema_arrow
    columns = list(schema.names)
    _check_header(path, columns)
    layout = _layout(path, columns, target, features)
    for name in layout.features:
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
            raise ValueError(
                f"{path}: column {_show(name)} has Parquet type {kind}; feature columns must be numbers "
                "(integers, floats or booleans)"
            )
    if target is not None:
        kind = schema.field(target).type
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        if not (_numeric(pa, kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ValueError(
                f"{path}: column {_show(target)} (the target) has Parquet type {kind}; a target must be numbers "
                "or text (class labels)"
            )
    rows, wanted = parquet.metadata.num_rows, len(layout.features) + (target is not None)
    if claim and rows * wanted * 8 > MAX_FILE_BYTES:
        raise ValueError(
            f"{path} claims {rows} rows x {wanted} columns ({rows * wanted * 8} bytes as float64), more than "
            f"chainrule.data.MAX_FILE_BYTES = {MAX_FILE_BYTES}"
        )
    if rows == 0:
        raise ValueError(f"{path} has no data rows")
    return layout, rows


def _numeric(pa, kind):
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _parquet_values(path, parquet, layout, rows):
    """(x, y) filled one row group's column at a time (pyarrow holds one column chunk), each cell checked."""
    x = np.empty((rows, len(layout.features)))
    ys = []
    start = 0
    for group in range(parquet.num_row_groups):
        end = start + parquet.metadata.row_group(group).num_rows
        if end > rows:
            raise ValueError(f"{path} holds more rows than its metadata says ({rows})")
        for j, name in enumerate(layout.features):
            x[start:end, j] = _parquet_chunks(path, parquet, group, name, start, end, True)
        if layout.target is not None:
            ys.append(_parquet_chunks(path, parquet, group, layout.target, start, end, False))
        start = end
    if start != rows:
        raise ValueError(f"{path} holds {start} rows but its metadata says {rows}")
    return x, (np.concatenate(ys) if ys else None)


def _parquet_chunks(path, parquet, group, name, start, end, feature):
    """One column of one row group, checked, as one array of its end - start values."""
    column = parquet.read_row_group(group, columns=[name]).column(0)
    if len(column) != end - start:
        raise ValueError(f"{path} row group {group} holds {len(column)} rows, its metadata {end - start}")
    parts, at = [], start
    for chunk in column.chunks:
        parts.append(_parquet_column(path, chunk, name, at, feature))
        at += len(chunk)
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0)


def _parquet_column(path, column, name, start, feature=True):
    """One column of a batch as float64 (finite) or text (non-empty); a ValueError names the first bad row."""
    where = f"{path} row {{}}, column {_show(name)}"
    if column.null_count:
        row = start + column.is_null().to_pylist().index(True) + 1
        rule = "; feature cells must be numbers" if feature else ""
        raise ValueError(f"{where.format(row)}: is empty (a missing value){rule}")
    values = _arrow_values(column)
    if values.dtype.kind in "biuf":
        values = values.astype(np.float64, copy=False)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"{where.format(start + row + 1)}: {float(values[row])!r} is not a finite number")
        return values
    values = np.array(values.tolist(), dtype=str)
    empty = np.char.str_len(np.char.strip(values)) == 0
    if empty.any():
        raise ValueError(f"{where.format(start + int(np.argmax(empty)) + 1)}: is empty (a missing value)")
    return values


def _parquet_again(path, stamp):
    """A function giving the rows' cells again as text, a batch at a time, from the unchanged file."""

    def rows():
        _, pq = _pyarrow()
        with open(path, "rb") as f:
            if _changed(stamp, os.fstat(f.fileno())):
                raise ValueError(f"{path} changed since it was read; read it again")
            for batch in pq.ParquetFile(f).iter_batches(batch_size=_PARQUET_BATCH):
                for values in zip(*(column.to_pylist() for column in batch.columns)):
                    yield [_cell_text(v) for v in values]

    return rows


def _cell_text(value):
    """A Parquet value as a CSV cell: floats exactly (repr), a missing value empty."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


# ---- streaming: a file a block at a time, for training past memory -------------------------------

_EXACT_ROWS = 8192  # rows a block of the exact reader holds, where a stream reads cell by cell


def stream(
    path: str | os.PathLike,
    target: str | None = None,
    features: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
    shuffle_buffer: int = SHUFFLE_BUFFER,
    seed: int | None = None,
    standardize: bool = False,
    classes: Sequence[Any] | None = None,
) -> Stream:
    """A batch source over a CSV or Parquet file in constant memory: ``for x_batch, y_batch in source``.

    Give it to :func:`chainrule.fit` (or :class:`chainrule.Trainer`) in place of arrays:
    ``cr.fit(model, stream(path, target="y"), loss="mse", ...)``. Each ``iter()`` is one
    epoch, a new pass over the file. The columns are checked now (as :func:`read_data`
    checks them); the cells as they are read, with read_csv's and read_parquet's one-line
    errors naming the file, line (or row) and column: a bad cell found in the middle of the
    file stops the epoch there. The target must be numeric (regression), unless ``classes``
    lists the class labels (``FileBlocks(path, target, features, labels=True).found_classes()``
    finds them in one pass): then each batch's y holds every row's index into ``classes``.

    - ``batch_size``: rows a batch; ``shuffle_buffer``: rows mixed at a time (0: file order,
      see :class:`chainrule.streams.Stream` for what a buffer means for the batches:
      a file sorted by the target needs a buffer of most of the file, or one shuffle of
      the file first); ``seed``: the same seed gives the same batches, epoch after epoch.
    - ``standardize=True``: one pass first computes every column's mean and standard
      deviation (:meth:`~chainrule.streams.Stream.statistics`, Chan's merge a block at a
      time), and the batches come standardized (``source.scale`` holds them).
    - ``source.blocks.features`` names the feature columns; ``source.rows`` counts the
      rows once a pass has seen them all.

    Memory: the buffer, one block of the file (about a megabyte of lines, or 65,536 rows of a
    Parquet file) and one batch, whatever the file's size; no ``MAX_FILE_BYTES`` cap. CSV
    blocks are parsed as :func:`read_csv`'s fast reader parses them; from a block it
    declines (quotes, other line ends, a mistake) to the file's end the csv module reads
    cell by cell (about eight times slower). A file that changes between epochs is refused.

    Example::

        >>> import os, tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "doses.csv")
        >>> with open(path, "w") as f:
        ...     _ = f.write("dosage,effect\\n0,0\\n0.5,1\\n1,0\\n")
        >>> source = stream(path, target="effect", batch_size=2, seed=0)
        >>> sorted(y for _, yb in source for y in yb.tolist())    # one epoch: every row once
        [0.0, 0.0, 1.0]
        >>> [xb.tolist() for xb, _ in source.in_order()]           # file order
        [[[0.0], [0.5]], [[1.0]]]
        >>> source.statistics().feature_mean
        array([0.5])
        >>> with open(path, "a") as f:
        ...     _ = f.write("2,x\\n")
        >>> list(stream(path, target="effect"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...doses.csv line 5, column 'effect': 'x' is not a number; a regression target must be numeric...
        >>> folder.cleanup()
    """
    batch_size = check("stream", "batch_size", batch_size, Integer(low=1))
    shuffle_buffer = check("stream", "shuffle_buffer", shuffle_buffer, Integer(low=0))
    seed = check("stream", "seed", seed, Integer(low=0, optional=True))
    source = Stream(FileBlocks(path, target, features, classes=classes), batch_size, shuffle_buffer, seed)
    if not standardize:
        return source
    stats = source.statistics()
    feature_std = np.where(stats.feature_std > 0, stats.feature_std, 1.0)
    target_std = None if stats.target_std is None else stats.target_std or 1.0
    return source.scaled(stats.feature_mean, feature_std, stats.target_mean, target_std)


class FileBlocks:
    """A CSV or Parquet file's rows as float blocks ``(x, y)``, one pass per call; the columns checked at once.

    ``path``, ``columns``, ``features`` and ``target`` say what is read; ``rows_text()`` gives each data
    row's cells as text (for writing the rows back out). The target is numeric, or with ``labels=True``
    class labels as text (``found_classes()`` lists them in one pass), or with ``classes`` each row's
    index into them (a ValueError names a label not among them).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        target: str | None,
        features: Sequence[str] | None,
        labels: bool = False,
        classes: Sequence[Any] | None = None,
    ) -> None:
        self.labels, self.classes = labels or classes is not None, None if classes is None else list(classes)
        self.path = path = os.fspath(path)
        self.parquet = path.lower().endswith(PARQUET_SUFFIXES)
        with open(path, "rb") as f:
            self.stamp = os.fstat(f.fileno())
            if not stat.S_ISREG(self.stamp.st_mode):
                raise ValueError(f"{path} is not a regular file; a stream reads its file once per epoch")
            self.layout = (
                self._parquet_layout(f, target, features) if self.parquet else self._csv_layout(f, target, features)
            )
        self.columns, self.features, self.target = self.layout.columns, self.layout.features, target

    def _csv_layout(self, f, target, features):
        try:
            columns, self.header_line, self.offset = _header(self.path, f)
        except csv.Error as e:
            raise ValueError(f"{self.path} is not a readable CSV file (its header: {e})") from None
        except ValueError as e:
            if str(e) == f"{self.path} is empty":
                raise ValueError(
                    f"{self.path} is empty; expected a header line of column names, then rows of data"
                ) from None
            raise
        return _layout(self.path, columns, target, features)

    def _parquet_layout(self, f, target, features):
        pa, pq = _pyarrow()
        try:
            layout, _ = _parquet_layout(self.path, pq.ParquetFile(f), pa, target, features, claim=False)
        except pa.ArrowException as e:
            raise ValueError(f"{self.path} is not a readable Parquet file ({_one_line(e)})") from None
        kind = None if target is None else pq.ParquetFile(f).schema_arrow.field(target).type
        if target is not None and not self.labels and not _numeric(pa, kind):
            raise ValueError(
                f"{self.path}: column {_show(target)} (the target) holds text; a stream's target must be numeric "
                "(regression)"
            )
        return layout

    def __call__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        rows = 0
        for x, y, place in self._parquet() if self.parquet else self._csv():
            if self.classes is not None:
                y = self._indices(y, place)
            rows += len(x)
            yield x, y
        if rows == 0:
            raise ValueError(f"{self.path} has a header line but no data rows" if not self.parquet else
                             f"{self.path} has no data rows")  # fmt: skip

    def _open(self):
        f = open(self.path, "rb")
        if _changed(self.stamp, os.fstat(f.fileno())):
            f.close()
            raise ValueError(f"{self.path} changed since it was first read; make a new stream")
        return f

    def _csv(self):
        with self._open() as f:
            for block in _stream_csv(self.path, f, self.offset, self.header_line + 1, self.layout, self.labels):
                yield block.x, block.y, lambda row, lines=block.lines: f"{self.path} line {lines[row]}"

    def _parquet(self):
        pa, pq = _pyarrow()
        layout, start = self.layout, 0
        names = layout.features + ([layout.target] if layout.target is not None else [])
        with self._open() as f:
            try:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=_PARQUET_BATCH, columns=names):
                    x = np.empty((batch.num_rows, len(layout.features)))
                    for j, name in enumerate(layout.features):
                        x[:, j] = _parquet_column(self.path, batch.column(j), name, start, True)
                    y = None
                    if layout.target is not None:
                        y = _parquet_column(self.path, batch.column(len(layout.features)), layout.target, start, False)
                    yield x, y, lambda row, start=start: f"{self.path} row {start + row + 1}"
                    start += batch.num_rows
            except pa.ArrowException as e:
                raise ValueError(f"{self.path} is not a readable Parquet file ({_one_line(e)})") from None

    def _indices(self, y, place):
        """Each row's index into ``classes``; a ValueError names the first label that is not one of them."""
        classes = self.classes
        assert classes is not None
        numeric = all(not isinstance(c, str) for c in classes)  # then "1" and "1.0" are the same label
        keys = {float(c) if numeric else c: i for i, c in enumerate(classes)}
        out = np.empty(len(y), dtype=np.intp)
        for row, value in enumerate(y.tolist()):
            key = _number(value) if numeric else value if isinstance(value, str) else str(_label(value))
            if key not in keys:
                raise ValueError(
                    f"{place(row)}, column {_show(self.target)}: {_show(str(_label(value)))} is not one of the "
                    f"model's classes {listing(classes)}"
                )
            out[row] = keys[key]
        return out

    def found_classes(self) -> list[Any]:
        """One pass: the target's distinct labels, sorted as :meth:`CSVData.target_classes` sorts them
        (numbers as numbers, whole ones as int, when every label is a number; else text)."""
        seen: set = set()
        self.rows = 0  # (counted on the way)
        for _, y, _ in self._parquet() if self.parquet else self._csv():
            seen.update(np.unique(y).tolist())
            self.rows += len(y)
        values: list[Any] = sorted(str(v) for v in seen)
        if seen and all(_number(v) is not None for v in seen):
            values = sorted({_number(v) for v in seen})
        if len(values) < 2:
            shown = _show(_label(values[0]) if values else None)
            raise ValueError(
                f"column {_show(self.target)} of {self.path} has a single value ({shown}) for all rows; "
                "classification needs at least 2 classes"
            )
        return [_label(v) for v in values]

    def rows_text(self) -> Iterator[list[str]]:
        """Each data row's cells as text, read again from the unchanged file (blank lines skipped)."""
        return (_parquet_again(self.path, self.stamp) if self.parquet else _rows_again(self.path, self.stamp, None))()


def _stream_csv(path, f, offset, line, layout, labels=False):
    """Blocks of ``f`` from byte ``offset`` (the file's line ``line``) by the fast reader; from a block it
    declines on, records by the csv module, checked cell by cell. ``labels``: the target as text."""
    f.seek(offset)
    rest, mode = b"", None if layout.target is None else "labels" if labels else "numbers"
    while chunk := f.read(BLOCK_BYTES):
        rest += chunk
        cut = rest.rfind(b"\n") + 1
        if cut == 0 and len(rest) <= 4 * (MAX_LINE_CHARS + 2):
            continue
        try:
            if cut == 0:
                raise _Declined  # a line too long: the exact reader names it
            block, mode = _parse_block(rest[:cut], line, layout, mode)
        except _Declined:
            yield from _exact_blocks(path, f, offset, line, layout, labels)
            return
        yield block
        line += rest.count(b"\n", 0, cut)
        offset, rest = offset + cut, rest[cut:]
    if rest:  # the last line has no line end
        try:
            yield _parse_block(rest + b"\n", line, layout, mode)[0]
        except _Declined:
            yield from _exact_blocks(path, f, offset, line, layout, labels)


def _exact_blocks(path, f, offset, line, layout, labels=False):
    """Blocks from byte ``offset`` (the file's line ``line``) to the end, by the csv module; a ValueError
    names the first bad row or cell in the file's order."""
    f.seek(offset)
    width, features = len(layout.columns), len(layout.features)
    x, n, lines = np.empty((_EXACT_ROWS, features)), 0, []
    y = np.empty(_EXACT_ROWS, dtype=object if labels else float)
    for cells, number in _records(path, f, line, offset, math.inf):
        if len(cells) != width:
            raise ValueError(
                f"{path} line {number} has {len(cells)} cells but the header has {width} columns "
                f"{listing(layout.columns)}"
            )
        for j, c in enumerate(layout.usecols):
            x[n, j] = _feature(path, cells[c], number, layout.features[j])
        if layout.target_col is not None:
            cell = cells[layout.target_col]
            if labels and not cell.strip():
                raise ValueError(f"{path} line {number}, column {_show(layout.target)}: is empty (a missing value)")
            y[n] = cell.strip() if labels else _numeric_target(path, cell, number, layout.target)
        lines.append(number)
        n += 1
        if n == _EXACT_ROWS:
            yield Block(x.copy(), None if layout.target is None else _narrowed(y, labels), np.array(lines))
            n, lines = 0, []
    if n:
        yield Block(x[:n].copy(), None if layout.target is None else _narrowed(y[:n], labels), np.array(lines))


def _narrowed(y, labels):
    return np.array(y.tolist(), dtype=str) if labels else y.copy()


def _numeric_target(path, cell, line, column):
    """A regression target's cell as a finite float, or a ValueError naming it."""
    if not cell.strip():
        raise ValueError(f"{path} line {line}, column {_show(column)}: is empty (a missing value)")
    if _number(cell) is None:
        raise ValueError(
            f"{path} line {line}, column {_show(column)}: {_show(cell.strip())} is not a number; a regression "
            "target must be numeric (class labels need the cross-entropy loss)"
        )
    return _feature(path, cell, line, column)


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
