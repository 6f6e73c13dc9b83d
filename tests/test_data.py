"""data.read_csv: CSV files read into arrays, every bad cell named by line and column."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from chainrule import data as data_module
from chainrule.data import dosage, read_csv


def _write(tmp_path, text, name="data.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_dosage_is_the_lessons_data():
    x, y = dosage()
    assert x.tolist() == [0.0, 0.5, 1.0] and y.tolist() == [0.0, 1.0, 0.0]


def test_reads_features_and_numeric_target(tmp_path):
    path = _write(tmp_path, "dosage, age ,effect\n0,30,0\n0.5,40,1\n1,50,0\n")
    data = read_csv(path, target="effect")
    assert data.columns == ["dosage", "age", "effect"]  # names are stripped
    assert data.features == ["dosage", "age"]  # default: every column but the target
    assert data.x.tolist() == [[0, 30], [0.5, 40], [1, 50]]
    assert data.y.dtype == np.float64 and data.y.tolist() == [0, 1, 0]
    assert data.lines == [2, 3, 4] and len(data) == 3
    assert data.rows[1] == ["0.5", "40", "1"]


def test_features_are_taken_in_the_order_given(tmp_path):
    path = _write(tmp_path, "a,b,c\n1,2,3\n4,5,6\n")
    data = read_csv(path, features=["c", "a"])
    assert data.x.tolist() == [[3, 1], [6, 4]] and data.target is None and data.y is None


def test_blank_lines_are_skipped_and_line_numbers_stay_those_of_the_file(tmp_path):
    path = _write(tmp_path, "x,y\n1,2\n\n3,4\n\n5,oops\n")
    with pytest.raises(ValueError, match=r"line 6, column 'y': 'oops' is not a number"):
        read_csv(path, target="y").target_numbers()
    assert read_csv(path, target="y").lines == [2, 4, 6]


def test_a_byte_order_mark_from_a_spreadsheet_is_not_part_of_the_first_name(tmp_path):
    path = _write(tmp_path, "\ufeffx,y\n1,2\n", encoding="utf-8")
    assert read_csv(path, target="y").features == ["x"]


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("", {}, "is empty; expected a header line"),
        ("\n  \n", {}, "is empty"),
        ("x,y\n", {"target": "y"}, "has a header line but no data rows"),
        ("x,y\n1,2\n", {"target": "z"}, r"has no column 'z' \(the target\); its columns are \['x', 'y'\]"),
        ("x,y\n1,2\n", {"target": "y", "features": ["x", "w"]}, r"no column 'w' \(a feature\); its columns are"),
        ("x,y\n1,2\nabc,3\n", {"target": "y"}, r"line 3, column 'x': 'abc' is not a number"),
        ("x,y\n1,2\n,3\n", {"target": "y"}, r"line 3, column 'x': is empty \(a missing value\)"),
        ("x,y\n1,2\nnan,3\n", {"target": "y"}, r"line 3, column 'x': 'nan' is not a finite number"),
        ("x,y\n1,2\n3,-inf\n", {"target": "y"}, r"line 3, column 'y': '-inf' is not a finite number"),
        ("x,y\n1,\n", {"target": "y"}, r"line 2, column 'y': is empty"),
        ("x,y\n1,2,3\n", {"target": "y"}, r"line 2 has 3 cells but the header has 2 columns"),
        ("x,x\n1,2\n", {}, r"column name 'x' appears twice \(columns 1 and 2\)"),
        ("x,\n1,2\n", {}, r"column 2 has no name"),
        ("x,y\n1,2\n", {"target": "y", "features": ["x", "y"]}, r"'y' is the target and cannot also be a feature"),
        ("x,y\n1,2\n", {"target": "y", "features": ["x", "x"]}, r"lists a column twice"),
        ("y\n1\n", {"target": "y"}, r"no feature columns besides the target 'y'"),
    ],
)
def test_bad_files_raise_value_errors_saying_what_and_where(tmp_path, text, kwargs, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as info:
        read_csv(path, **kwargs)
    assert "\n" not in str(info.value)


def test_a_binary_file_is_not_utf8_text(tmp_path):
    path = _write(tmp_path, b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match="is not a UTF-8 text file"):
        read_csv(path)


def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_csv(tmp_path / "nope.csv")


def test_features_must_be_a_list_not_one_string(tmp_path):
    with pytest.raises(TypeError, match="list of column names"):
        read_csv(_write(tmp_path, "x,y\n1,2\n"), features="x")


# ---- targets ------------------------------------------------------------------------


def test_text_labels_become_sorted_classes_with_indices(tmp_path):
    data = read_csv(_write(tmp_path, "x,kind\n1,b\n2,a\n3,c\n4,a\n"), target="kind")
    classes, indices = data.target_classes()
    assert classes == ["a", "b", "c"] and indices.tolist() == [1, 0, 2, 0]
    with pytest.raises(ValueError, match=r"line 2, column 'kind': 'b' is not a number; a regression target"):
        data.target_numbers()


def test_numeric_labels_are_numbers_and_match_whatever_their_spelling(tmp_path):
    data = read_csv(_write(tmp_path, "x,k\n1,1\n2,0\n3,2.0\n"), target="k")
    classes, indices = data.target_classes()
    assert classes == [0, 1, 2] and all(type(c) is int for c in classes)
    assert indices.tolist() == [1, 0, 2]
    assert data.target_indices([0, 1, 2]).tolist() == [1, 0, 2]  # "2.0" is the class 2
    with pytest.raises(ValueError, match=r"line 4, column 'k': '2.0' is not one of the model's classes \[0, 1\]"):
        data.target_indices([0, 1])


def test_for_training_needs_two_rows_and_two_classes(tmp_path):
    one = read_csv(_write(tmp_path, "x,y\n1,2\n", "one.csv"), target="y")
    with pytest.raises(ValueError, match="has 1 data row; training needs at least 2"):
        one.for_training()
    same = read_csv(_write(tmp_path, "x,y\n1,a\n2,a\n", "same.csv"), target="y")
    with pytest.raises(ValueError, match=r"column 'y' of .*same.csv has a single value \('a'\).* at least 2 classes"):
        same.for_training(classify=True)
    x, y, classes = read_csv(_write(tmp_path, "x,y\n1,a\n2,b\n", "ok.csv"), target="y").for_training(classify=True)
    assert x.shape == (2, 1) and y.tolist() == [0, 1] and classes == ["a", "b"]


def test_without_a_target_the_target_methods_say_so(tmp_path):
    data = read_csv(_write(tmp_path, "x,y\n1,2\n"))
    with pytest.raises(ValueError, match="no target column was named"):
        data.for_training()


@settings(max_examples=25, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 3)),
        elements=st.floats(allow_nan=False, allow_infinity=False),
    )
)
def test_numbers_written_with_repr_read_back_exactly(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("csv") / "values.csv"
    header = ",".join(f"c{j}" for j in range(values.shape[1]))
    path.write_text(header + "\n" + "".join(",".join(map(repr, map(float, row))) + "\n" for row in values))
    assert np.array_equal(read_csv(path).x, values)


# ---- limits and strictness: nothing a file claims costs anything before it is checked -------


def test_a_line_longer_than_max_line_chars_is_refused_naming_file_line_and_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "MAX_LINE_CHARS", 10)
    assert read_csv(_write(tmp_path, "x,y\n1234567,89\n", "ok.csv")).x.tolist() == [[1234567, 89]]  # 10: allowed
    path = _write(tmp_path, "x,y\n1,2\n12345678,90\n")  # line 3 has 11 characters
    with pytest.raises(ValueError, match=r"data.csv line 3 is longer than chainrule.data.MAX_LINE_CHARS = 10 char"):
        read_csv(path)


def test_a_line_with_no_end_is_read_only_up_to_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "MAX_LINE_CHARS", 1000)
    monkeypatch.setattr(data_module, "_CHUNK", 256)  # so the line spans many reads
    path = _write(tmp_path, b"x," + b"9" * 100_000)
    with pytest.raises(ValueError, match=r"line 1 is longer than chainrule.data.MAX_LINE_CHARS = 1000"):
        read_csv(path)


def test_dev_zero_is_refused_after_one_line_of_reading(monkeypatch):
    # /dev/zero never ends and has no newline: the line cap is what stops it
    monkeypatch.setattr(data_module, "MAX_LINE_CHARS", 1000)
    with pytest.raises(ValueError, match=r"^/dev/zero line 1 is longer than chainrule.data.MAX_LINE_CHARS = 1000"):
        read_csv("/dev/zero", target="y")


def test_a_file_larger_than_max_file_bytes_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "MAX_FILE_BYTES", 10)
    with pytest.raises(ValueError, match=r"data.csv is 16 bytes, more than chainrule.data.MAX_FILE_BYTES = 10$"):
        read_csv(_write(tmp_path, "x,y\n1,2\n3,4\n5,6\n"))


def test_a_stream_longer_than_max_file_bytes_is_refused_while_reading(monkeypatch):
    monkeypatch.setattr(data_module, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(data_module, "MAX_LINE_CHARS", 1000)  # both apply to the first line: the file's cap is named
    with pytest.raises(ValueError, match=r"/dev/zero is longer than chainrule.data.MAX_FILE_BYTES = 100"):
        read_csv("/dev/zero")


def test_a_header_of_100000_columns_is_checked_in_one_pass_with_a_short_message(tmp_path):
    names = [f"c{i}" for i in range(100_000)]
    path = _write(tmp_path, ",".join(names + ["c7"]) + "\n" + ",".join(["1"] * 100_001) + "\n")
    with pytest.raises(ValueError, match=r"column name 'c7' appears twice \(columns 8 and 100001\)") as info:
        read_csv(path)
    assert len(str(info.value)) < 1000
    path = _write(tmp_path, ",".join(names) + "\n" + ",".join(["1"] * 100_000) + "\n", "wide.csv")
    with pytest.raises(ValueError, match=r"its columns are \['c0', 'c1', .*'c9', \.\.\. and 99990 more\]$") as info:
        read_csv(path, target="nope")
    assert len(str(info.value)) < 1000
    assert read_csv(path, target="c0").x.shape == (1, 99_999)


def test_long_names_and_cells_are_cut_in_messages(tmp_path):
    path = _write(tmp_path, "x,y\n" + "a" * 5000 + ",2\n")
    with pytest.raises(ValueError, match=r"'aaaa+\.\.\. \(5000 characters\) is not a number") as info:
        read_csv(path)
    assert len(str(info.value)) < 300


def test_a_bad_utf8_byte_far_into_the_file_is_reported_at_its_line_and_byte(tmp_path):
    good = b"x,y\n" + b"1,2\n" * 7501  # 30008 bytes, past the 8 KB a text decoder reads at a time
    path = _write(tmp_path, good + b"\xff,1\n")
    with pytest.raises(ValueError, match=r"is not a UTF-8 text file \(line 7503, byte 30008: invalid start byte\)"):
        read_csv(path)
    bom = _write(tmp_path, b"\xef\xbb\xbfx,y\n1,\xe9\n", "bom.csv")  # bytes count from 0; the BOM's 3 count too
    with pytest.raises(ValueError, match=r"\(line 2, byte 9: invalid continuation byte\)"):
        read_csv(bom)


@pytest.mark.parametrize(
    "cell", ["1_000", "1__0", "_1", "\u0661", "\u0661\u0662", "\uff11", "1\u0663", "0x10", "1e", ""]
)
def test_numbers_are_ascii_without_underscores(tmp_path, cell):
    path = _write(tmp_path, f"x,y\n{cell},2\n")
    with pytest.raises(ValueError, match=r"line 2, column 'x': (is empty|'.*' is not a number)"):
        read_csv(path, target="y")


@pytest.mark.parametrize(
    "cell, value",
    [("1", 1), (" -2.5 ", -2.5), ("+.5", 0.5), ("3.", 3), ("1e3", 1000), ("1E-3", 0.001), ("\xa07\t", 7)],
)
def test_numbers_in_the_usual_syntaxes_are_read(tmp_path, cell, value):
    assert read_csv(_write(tmp_path, f"x,y\n{cell},2\n"), target="y").x.tolist() == [[value]]


@pytest.mark.parametrize("cell", ["nan", "NaN", "-inf", "Infinity", "+INF", "1e999", "-1e400"])
def test_inf_and_nan_words_are_numbers_but_not_finite_ones(tmp_path, cell):
    with pytest.raises(ValueError, match=r"line 2, column 'x': '.*' is not a finite number"):
        read_csv(_write(tmp_path, f"x,y\n{cell},2\n"), target="y")


def test_a_target_with_unicode_digits_or_underscores_is_read_as_labels(tmp_path):
    data = read_csv(_write(tmp_path, "x,y\n1,\u0661\n2,1_0\n"), target="y")
    assert data.y.tolist() == ["\u0661", "1_0"]
    with pytest.raises(ValueError, match=r"line 2, column 'y': '\u0661' is not a number; a regression target"):
        data.target_numbers()


@pytest.mark.parametrize(
    "header, message",
    [
        ("\ufeffx,y", r"line 1: column 1's name '\\ufeffx' contains a byte order mark \(U\+FEFF\)"),
        ("x,a\ufeffb", r"line 1: column 2's name 'a\\ufeffb' contains a byte order mark"),
        ("x,a\x00b", r"line 1: column 2's name 'a\\x00b' contains a NUL character \(U\+0000\)"),
    ],
)
def test_a_second_bom_or_a_nul_in_a_column_name_is_refused(tmp_path, header, message):
    path = _write(tmp_path, "\ufeff" + header + "\n1,2\n")  # the first BOM is a spreadsheet's: dropped
    with pytest.raises(ValueError, match=message):
        read_csv(path)


def test_lines_may_end_in_cr_lf_or_a_lone_cr_and_quoted_cells_span_lines(tmp_path):
    assert read_csv(_write(tmp_path, b"x,y\r1,2\r3,4\r", "cr.csv"), target="y").lines == [2, 3]
    assert read_csv(_write(tmp_path, b"x,y\r\n1,2\r\n\r\n3,4\r\n", "crlf.csv"), target="y").lines == [2, 4]
    data = read_csv(_write(tmp_path, b'x,y\n1,"a\r\nb"\n2,c\n', "quoted.csv"), target="y")
    assert data.y.tolist() == ["a\r\nb", "c"] and data.lines == [3, 4]


def test_a_cr_lf_split_between_two_reads_is_one_line_end(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "_CHUNK", 4)
    path = _write(tmp_path, b"x,y\r\n1,2\r\n3,4\r\n")  # the \r of "1,2\r\n" is the last byte of a chunk
    assert read_csv(path, target="y").lines == [2, 3]


def test_features_must_be_column_names(tmp_path):
    with pytest.raises(TypeError, match=r"features must be column names \(str\), got 3"):
        read_csv(_write(tmp_path, "x,y\n1,2\n"), features=[3])
