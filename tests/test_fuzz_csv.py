"""Fuzzing read_csv: any file gives a CSVData as documented or a ValueError/TypeError of one short line."""

import csv
import io
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule import data as data_module
from chainrule.data import read_csv

CAP = 200  # MAX_LINE_CHARS while fuzzing, so long lines are cheap to make
ODD_NAMES = ["x", "y", "a", "", " ", "\ufeff", "\ufeffx", "a\x00b", '"q"', "a,b", "a\nb", "x ", "\r", "é"]
ODD_CELLS = [
    *["1", "-2.5", "+.5e3", "3.", "1e999", "-1e-999", "1_000", "\u0661", "\uff11", "0x1", ".", "e5", "1e"],
    *["nan", "-NaN", "inf", "-Infinity", "", " ", "\x00", "\ufeff1", "a\nb", '"', "1,5", "\xa02\xa0"],
]
PLAIN = ["x", "y", "z", "dose", "kind"]
NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr), st.integers().map(str))
names = st.one_of(st.sampled_from(PLAIN), st.sampled_from(ODD_NAMES), st.text(max_size=8))
cells = st.one_of(NUMBERS, st.sampled_from(ODD_CELLS), st.floats().map(repr), st.text(max_size=6))
MUTATIONS = ["none", "none", "name", "cell", "ragged", "bytes", "long"]


def _render(draw, header, rows):
    text = io.StringIO()
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    csv.writer(text, quoting=quoting, lineterminator=ending).writerows([header, *rows])
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + text.getvalue().encode("utf-8")


@st.composite
def clean_files(draw):
    """A well-formed file of numbers (and maybe labels), then at most one thing made wrong."""
    header = draw(st.lists(st.sampled_from(PLAIN), min_size=1, max_size=5, unique=True))
    labels = st.sampled_from(["a", "b", "1", "2.0"])
    row = st.tuples(*[NUMBERS if draw(st.integers(0, 3)) else labels for _ in header]).map(list)
    rows = draw(st.lists(row, min_size=1, max_size=6))
    mutation = draw(st.sampled_from(MUTATIONS))
    if mutation == "name":
        header[draw(st.integers(0, len(header) - 1))] = draw(names)
    elif mutation == "cell":
        rows[draw(st.integers(0, len(rows) - 1))][draw(st.integers(0, len(header) - 1))] = draw(cells)
    elif mutation == "ragged":
        rows.append(draw(st.lists(cells, max_size=7)))
    raw = _render(draw, header, rows)
    if mutation == "bytes":  # invalid UTF-8, NULs, lone quotes...
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=12)) + raw[at:]
    elif mutation == "long":  # a line near or over the cap
        raw += draw(st.sampled_from([b"9", b"\xc3\xa9", b","])) * draw(st.integers(CAP // 2, 2 * CAP))
    return raw, header


@st.composite
def wild_files(draw):
    """Anything: odd headers (duplicates, empty names, BOMs, NULs), odd cells, ragged rows, or bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64)), PLAIN
    header = draw(st.lists(names, min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(cells, max_size=6), max_size=6))
    return _render(draw, header, rows), header


files = st.one_of(clean_files(), clean_files(), wild_files())


def _check(data, target):
    assert data.x.dtype == np.float64 and data.x.shape == (len(data.rows), len(data.features))
    assert np.isfinite(data.x).all()
    assert len(data.lines) == len(data.rows) and all(len(r) == len(data.columns) for r in data.rows)
    if target is None:
        assert data.y is None
        return
    assert data.y.shape == (len(data.rows),)
    assert (data.y.dtype == np.float64 and np.isfinite(data.y).all()) or data.y.dtype.kind == "U"
    for method in (data.target_numbers, data.target_classes, data.for_training):
        _one_line_or(method, data.path)


def _one_line_or(call, path):
    """call(); a ValueError or TypeError may come out, with a one-line message of bounded length."""
    try:
        return call()
    except (ValueError, TypeError) as e:
        message = str(e)
        assert "\n" not in message and "\r" not in message, message
        assert len(message) < 1000 + len(str(path)), message
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=files, pick=st.data())
def test_read_csv_returns_data_or_raises_one_short_line(tmp_path_factory, file, pick):
    raw, header = file
    choices = header + ["zz"]
    target = pick.draw(st.none() | st.sampled_from(choices), label="target")
    features = pick.draw(st.none() | st.lists(st.sampled_from(choices), max_size=3), label="features")
    path = tmp_path_factory.mktemp("fuzz") / "data.csv"
    path.write_bytes(raw)
    with mock.patch.object(data_module, "MAX_LINE_CHARS", CAP):
        data = _one_line_or(lambda: read_csv(path, target=target, features=features), path)
    if data is not None:
        _check(data, target)
