"""data.read_csv's two readers: the fast one (blocks parsed by pyarrow.csv or numpy.loadtxt) gives what the exact one
(csv, cell by cell) gives, declines what it cannot read exactly, and neither keeps the cells as text."""

import os
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule import data as data_module
from chainrule.data import read_csv


@pytest.fixture(autouse=True, params=["pyarrow", "numpy"])
def parser(request, monkeypatch):
    """Every test twice: blocks parsed by pyarrow.csv (when installed), and by numpy.loadtxt alone."""
    if request.param == "pyarrow":
        pytest.importorskip("pyarrow.csv")
    else:
        monkeypatch.setattr(data_module, "_arrow_csv", lambda: None)
    return request.param


def _write(tmp_path, raw, name="data.csv"):
    path = tmp_path / name
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    return path


def _both(path, target=None, features=None):
    """(fast result or None when it declined, exact result): each a CSVData or the ValueError/TypeError raised."""
    results = []
    for reader in (data_module._read_fast, data_module._read_exact):
        with open(path, "rb") as f:
            again = data_module._rows_again(str(path), os.fstat(f.fileno()), None)
            try:
                results.append(reader(str(path), f, again, target, features))
            except data_module._Declined:
                results.append(None)
            except (ValueError, TypeError) as e:
                results.append(e)
    return results


def _same(a, b):
    assert a.columns == b.columns and a.features == b.features and a.target == b.target
    assert a.x.dtype == b.x.dtype and np.array_equal(a.x, b.x)
    assert (a.y is None) == (b.y is None)
    if a.y is not None:
        assert a.y.dtype == b.y.dtype and np.array_equal(a.y, b.y)
    assert a.lines == b.lines and list(a.rows) == list(b.rows)


def _fast_reads(path, **kwargs):
    fast, exact = _both(path, **kwargs)
    assert not isinstance(fast, Exception), fast  # the fast reader declines, it never words an error
    assert fast is not None, "the fast reader declined"
    _same(fast, exact)
    return fast


# ---- what the fast reader reads --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "x,y\n1,2\n3,4\n",
        "x,y\n1,2\n3,4",  # no line end at the end
        "x,y\r\n1,2\r\n3,4\r\n",
        "\ufeffx, y \n 1 , -2.5e3 \n+.5,3.\n",  # a BOM, spaces around names and numbers
        "x,y\n1,2\n\n\n3,4\n\n",  # blank lines skipped, line numbers kept
        '"x","y"\n1,2\n',  # a quoted header is read by the csv module, the rows by loadtxt
    ],
)
def test_plain_files_are_read_by_the_fast_reader_as_the_exact_one_reads_them(tmp_path, raw):
    _fast_reads(_write(tmp_path, raw), target="y")


def test_a_column_not_asked_for_may_hold_anything(tmp_path):
    data = _fast_reads(_write(tmp_path, "x,note,y\n1,,2\n3,a b,4\n"), target="y", features=["x"])
    assert data.x.tolist() == [[1], [3]] and data.rows[0] == ["1", "", "2"]


def test_class_labels_are_read_fast_and_stripped(tmp_path):
    data = _fast_reads(_write(tmp_path, "x,kind\n1, b\n2,a \n3,2.0\n"), target="kind")
    assert data.y.tolist() == ["b", "a", "2.0"]


def test_many_blocks_give_the_rows_in_order_with_their_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "BLOCK_BYTES", 64)  # lines cut across reads, many blocks
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 3))
    text = "a,b,c\n" + "".join(
        ",".join(map(repr, map(float, row))) + ("\n\n" if i % 7 == 0 else "\n") for i, row in enumerate(values)
    )
    data = _fast_reads(_write(tmp_path, text), target="c")
    assert np.array_equal(data.x, values[:, :2]) and np.array_equal(data.y, values[:, 2])
    assert data.lines[:3] == [2, 4, 5]  # line 3 is blank


@pytest.mark.parametrize(
    "raw",
    [
        'x,y\n1,"2"\n',  # quotes
        "x,y\n1,\t2\n",  # a tab
        "x,y\n1,2\xa0\n",  # not ASCII
        "x,y\r1,2\r3,4\r",  # lone CR line ends
        "x,y\n1,2,3\n",  # ragged
        "x,y\n1,nan\n",  # not finite
        "x,y\n1_0,1\n",  # underscores: float() reads them, read_csv does not
        "x,y\n1,\n",  # empty
        "x,y\n   \n1,2\n",  # a line of spaces
    ],
)
def test_the_fast_reader_declines_what_it_cannot_read_exactly(tmp_path, raw):
    fast, exact = _both(_write(tmp_path, raw), target="y")
    assert fast is None


@pytest.mark.parametrize("raw", ["x,note,y\n1,a,2\n3,b\n", "x,note,y\n1,a,2\n3,b,4,5\n"])
def test_a_ragged_row_is_found_when_only_some_columns_are_read(tmp_path, raw):
    path = _write(tmp_path, raw)
    fast, exact = _both(path, features=["x"])
    assert fast is None and "line 3 has" in str(exact)


def test_labels_come_in_the_narrowest_text_dtype(tmp_path):
    data = _fast_reads(_write(tmp_path, "x,kind\n1,  b  \n2,a\n"), target="kind")
    assert data.y.dtype == np.dtype("U1") and data.y.tolist() == ["b", "a"]


def test_a_target_of_numbers_then_labels_in_a_later_block_is_read_by_the_exact_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "BLOCK_BYTES", 16)
    path = _write(tmp_path, "x,y\n" + "1,2\n" * 20 + "3,four\n")
    fast, exact = _both(path, target="y")
    assert fast is None and exact.y.tolist() == ["2"] * 20 + ["four"]
    assert read_csv(path, target="y").y.dtype.kind == "U"


def test_a_bad_cell_deep_in_a_big_file_is_named_by_line_and_column(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "BLOCK_BYTES", 1000)
    path = _write(tmp_path, "x,y\n" + "1,2\n" * 4000 + "3,oops\n" + "4,5\n" * 10 + "nan,1\n")
    with pytest.raises(ValueError, match=r"line 4013, column 'x': 'nan' is not a finite number"):
        read_csv(path, target="y")  # features are checked before the target, as before


def test_a_line_over_the_cap_in_a_block_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "MAX_LINE_CHARS", 20)
    path = _write(tmp_path, "x,y\n" + "1,2\n" * 50 + "1," + "2" * 30 + "\n")
    with pytest.raises(ValueError, match=r"line 52 is longer than chainrule.data.MAX_LINE_CHARS = 20"):
        read_csv(path)


# ---- the two readers agree on any file ----------------------------------------------------------------

NUMBER = st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr), st.integers(-(10**20), 10**20).map(str))
ODD = ["", " ", "nan", "inf", "1e999", "1_0", "0x1", "a", " b ", "é", "\t1", '"1"', "1 2", ".", "-", "+1", "1.e5"]
CELL = st.one_of(NUMBER, NUMBER, NUMBER, st.sampled_from(ODD), st.text(st.characters(max_codepoint=127), max_size=4))


@st.composite
def files(draw):
    width = draw(st.integers(1, 4))
    header = ",".join(f"c{j}" for j in range(width))
    cell = NUMBER if draw(st.booleans()) else CELL  # half the files plain numbers: the fast reader's
    rows = draw(st.lists(st.lists(cell, min_size=width, max_size=width), min_size=1, max_size=30))
    lines = [",".join(row) for row in rows]
    if draw(st.booleans()):  # a ragged row, a blank line or a line of spaces
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "   ", "1", "1,2,3,4,5"])))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return (header + ending + ending.join(lines) + draw(st.sampled_from(["", ending]))).encode(), width


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(file=files(), pick=st.data())
def test_whenever_the_fast_reader_reads_a_file_the_exact_reader_reads_the_same(tmp_path, monkeypatch, file, pick):
    raw, width = file
    monkeypatch.setattr(data_module, "BLOCK_BYTES", pick.draw(st.sampled_from([8, 64, 2**20])))
    target = pick.draw(st.none() | st.sampled_from([f"c{j}" for j in range(width)]))
    path = _write(tmp_path, raw)
    fast, exact = _both(path, target=target)
    assert not isinstance(fast, Exception)
    if fast is not None:
        assert not isinstance(exact, Exception), exact
        _same(fast, exact)
    result = _try(lambda: read_csv(path, target=target))
    if isinstance(exact, Exception):
        assert type(result) is type(exact) and str(result) == str(exact)
    else:
        _same(result, exact)


def _try(call):
    try:
        return call()
    except (ValueError, TypeError) as e:
        return e


# ---- rows: read again, not kept ------------------------------------------------------------------------


def test_rows_are_read_again_from_the_file_and_a_change_is_refused(tmp_path):
    path = _write(tmp_path, 'x,name,y\n1,"a, b",2\n\n3,c,4\n')
    data = read_csv(path, target="y", features=["x"])
    assert list(data.rows) == [["1", "a, b", "2"], ["3", "c", "4"]] and data.rows[-1] == ["3", "c", "4"]
    path.write_text("x,name,y\n1,a,2\n3,c,4\n")
    with pytest.raises(ValueError, match=r"data.csv changed since it was read; read it again"):
        list(data.rows)


def test_a_pipe_is_read_once_and_its_rows_are_kept_as_bytes(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("x,y\n1,2\n3,4\n"))
    writer.start()
    data = read_csv(fifo, target="y")
    writer.join()
    assert data.x.tolist() == [[1], [3]] and list(data.rows) == [["1", "2"], ["3", "4"]]


def test_reading_keeps_no_text_per_cell(tmp_path):
    # 50,000 rows x 10 numbers: 4 MB as float64. Cells kept as Python strings would take about 30 MB.
    rng = np.random.default_rng(1)
    values = rng.normal(size=(50_000, 10)).round(6)
    path = tmp_path / "data.csv"
    np.savetxt(path, values, fmt="%.6f", delimiter=",", header=",".join(f"c{j}" for j in range(10)), comments="")
    tracemalloc.start()
    try:
        data = read_csv(path, target="c9")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(data.x, values[:, :9])
    assert peak < 2 * values.nbytes + 8 * 2**20, peak  # the arrays twice plus two blocks' buffers, with room


def test_predict_writes_the_rows_read_again_and_nothing_when_the_file_changed_meanwhile(tmp_path, monkeypatch, capsys):
    from chainrule import cli, modelfile
    from chainrule.nn import mlp

    path = _write(tmp_path, 'x,name\n1,"a, b"\n2,c\n')
    modelfile.save(tmp_path / "m.json", mlp([1, 2, 1], seed=0), features=["x"], target="y")
    assert cli.main(["predict", str(tmp_path / "m.json"), str(path), "--out", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().splitlines()[:2] == ["x,name,predicted_y", f'1,"a, b",{_first(tmp_path)}']

    def read_then_change(*args, **kwargs):
        data = original(*args, **kwargs)
        path.write_text("x,name\n1,z\n2,c\n")  # same size, another text: the stamp's time and size say so
        os.utime(path, ns=(0, 0))
        return data

    original = modelfile.read_data
    monkeypatch.setattr(modelfile, "read_data", read_then_change)
    code = cli.main(["predict", str(tmp_path / "m.json"), str(path), "--out", str(tmp_path / "q.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "data.csv changed since it was read; read it again" in err and err.count("\n") == 1
    assert not (tmp_path / "q.csv").exists()


def _first(tmp_path):
    from chainrule import modelfile

    return repr(float(modelfile.load(tmp_path / "m.json").predict([[1.0]])[0]))


def test_blank_lines_claim_no_room(tmp_path):
    # 100,000 line ends after a header of 4000 columns: sized by the lines alone, the arrays would take
    # 1e5 x 3999 x 8 bytes = 3.2 GB; a row of 4000 columns takes at least 4000 bytes: 0.1 MB allow 30 rows.
    path = _write(tmp_path, ",".join(f"c{j}" for j in range(4000)) + "\n" + "\n" * 100_000)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="has a header line but no data rows"):
            read_csv(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, peak
