"""data.read_parquet and Parquet files on the command line: the CSV reader's checks and one-line errors."""

import csv
import io
import subprocess
import sys

import numpy as np
import pytest

from chainrule import data as data_module
from chainrule import modelfile
from chainrule.data import read_csv, read_data, read_parquet
from commandline import run_cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _parquet(tmp_path, columns, name="data.parquet", **options):
    path = tmp_path / name
    pq.write_table(pa.table(columns), path, **options)
    return path


def test_reads_features_and_a_numeric_target_of_any_numeric_type(tmp_path):
    path = _parquet(
        tmp_path,
        {"a": pa.array([1, 2, 3], pa.int8()), "b": [0.5, 1.5, -2.0], "ok": [True, False, True], "y": [1.0, 2, 3]},
    )
    data = read_parquet(path, target="y")
    assert data.columns == ["a", "b", "ok", "y"] and data.features == ["a", "b", "ok"]
    assert data.x.dtype == np.float64 and data.x.tolist() == [[1, 0.5, 1], [2, 1.5, 0], [3, -2, 1]]
    assert data.y.tolist() == [1, 2, 3] and data.lines is None and len(data) == 3
    assert data.rows[1] == ["2", "1.5", "False", "2.0"]


def test_text_and_dictionary_targets_are_class_labels(tmp_path):
    path = _parquet(tmp_path, {"x": [1.0, 2, 3, 4], "kind": pa.array(["b", "a", "b", "c"]).dictionary_encode()})
    classes, indices = read_parquet(path, target="kind").target_classes()
    assert classes == ["a", "b", "c"] and indices.tolist() == [1, 0, 1, 2]


def test_many_row_groups_read_in_batches_keep_the_rows_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "_PARQUET_BATCH", 7)
    x = np.arange(100.0)
    data = read_parquet(_parquet(tmp_path, {"x": x, "y": 2 * x}, row_group_size=30), target="y")
    assert np.array_equal(data.x[:, 0], x) and np.array_equal(data.y, 2 * x)


def test_the_same_table_as_csv_and_as_parquet_reads_the_same(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 3))
    table = {"p": values[:, 0], "q": values[:, 1], "r": values[:, 2]}
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("p,q,r\n" + "".join(",".join(map(repr, map(float, row))) + "\n" for row in values))
    a, b = read_csv(csv_path, target="r"), read_data(_parquet(tmp_path, table, "t.pq"), target="r")
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)


@pytest.mark.parametrize(
    "columns, kwargs, message",
    [
        ({"x": [1.0], "y": [2.0]}, {"target": "z"}, r"has no column 'z' \(the target\); its columns are \['x', 'y'\]"),
        ({"x": [1.0], "y": [2.0]}, {"features": ["w"]}, r"has no column 'w' \(a feature\)"),
        ({"x": ["a"], "y": [2.0]}, {"target": "y"}, r"column 'x' has Parquet type string; feature columns must be"),
        ({"x": [1.0, None], "y": [2.0, 3]}, {"target": "y"}, r"row 2, column 'x': is empty \(a missing value\)"),
        ({"x": [1.0, float("nan")], "y": [2.0, 3]}, {"target": "y"}, r"row 2, column 'x': nan is not a finite number"),
        ({"x": [1.0, 2.0], "y": [2.0, float("inf")]}, {"target": "y"}, r"row 2, column 'y': inf is not a finite"),
        ({"x": [1.0, 2.0], "y": ["a", None]}, {"target": "y"}, r"row 2, column 'y': is empty \(a missing value\)$"),
        ({"x": [1.0, 2.0], "y": ["a", " "]}, {"target": "y"}, r"row 2, column 'y': is empty"),
        ({"x": pa.array([], pa.float64()), "y": pa.array([], pa.float64())}, {"target": "y"}, r"has no data rows"),
        ({"x": [1.0], "y": pa.array([[1]])}, {"target": "y"}, r"'y' \(the target\) has Parquet type list<"),
    ],
)
def test_bad_tables_raise_one_line_saying_what_and_where(tmp_path, columns, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        read_parquet(_parquet(tmp_path, columns), **kwargs)
    assert "\n" not in str(info.value) and "data.parquet" in str(info.value)


def test_duplicate_and_empty_names_are_refused_as_in_csv(tmp_path):
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["x", "x"]), path)
    with pytest.raises(ValueError, match=r"dup.parquet: column name 'x' appears twice \(columns 1 and 2\)"):
        read_parquet(path)


def test_a_broken_file_is_one_line_naming_it(tmp_path):
    good = _parquet(tmp_path, {"x": np.arange(1000.0), "y": np.arange(1000.0)})
    for name, raw in [("garbage.parquet", b"not parquet at all"), ("cut.parquet", good.read_bytes()[:-100])]:
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(ValueError, match=rf"^{path} is not a readable Parquet file \(") as info:
            read_parquet(path, target="y")
        assert "\n" not in str(info.value)


def test_what_the_metadata_claims_is_checked_before_reading(tmp_path, monkeypatch):
    path = _parquet(tmp_path, {"x": np.zeros(10_000), "y": np.zeros(10_000)})  # a few kB: zeros compress well
    monkeypatch.setattr(data_module, "MAX_FILE_BYTES", 100_000)  # 10,000 rows x 2 columns x 8 bytes = 160,000
    with pytest.raises(ValueError, match=r"claims 10000 rows x 2 columns \(160000 bytes as float64\), more than"):
        read_parquet(path, target="y")


# ---- the command line --------------------------------------------------------------------------


@pytest.fixture
def curve(tmp_path):
    x = np.linspace(0, 3, 30)
    return _parquet(tmp_path, {"x": x, "name": [f"row{i}" for i in range(30)], "y": np.sin(2 * x)}, "curve.pq")


def test_fit_predict_evaluate_plot_on_a_parquet_file(tmp_path, capsys, curve):
    model_path = tmp_path / "m.json"
    fit = ["fit", curve, "--target", "y", "--features", "x", "--hidden", "8", "--loss", "mse", "--out", model_path]
    code, out, err = run_cli(capsys, *fit, "--optimizer", "adam", "--lr", "0.05", "--max-iter", "300")
    assert code == 0, err
    model = modelfile.load(model_path)
    expected = model.predict(read_parquet(curve, features=["x"]).x)

    code, out, err = run_cli(capsys, "predict", model_path, curve)
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["x", "name", "y", "predicted_y"] and rows[3][1] == "row2"
    assert [float(r[3]) for r in rows[1:]] == expected.tolist()

    assert run_cli(capsys, "predict", model_path, curve, "--out", tmp_path / "p.parquet")[0] == 0
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == ["x", "name", "y", "predicted_y"] and table.column("name")[2].as_py() == "row2"
    assert table.column("predicted_y").to_pylist() == expected.tolist()

    code, out, _ = run_cli(capsys, "evaluate", model_path, curve)
    assert code == 0 and f"{model.evaluate(read_parquet(curve, target='y', features=['x'])).loss:.6g}" in out
    assert run_cli(capsys, "plot", model_path, curve, "--out", tmp_path / "fit.png")[0] == 0


def test_parquet_mistakes_on_the_command_line_are_one_line_and_exit_2(tmp_path, capsys, curve):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 nothing else")
    code, _, err = run_cli(capsys, "fit", broken, "--target", "y", "--out", tmp_path / "m.json")
    assert code == 2 and err.count("\n") == 1 and "broken.parquet is not a readable Parquet file" in err
    code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--out", tmp_path / "m.json")
    assert code == 2 and "column 'name' has Parquet type string" in err
    assert not (tmp_path / "m.json").exists()


def test_without_pyarrow_a_parquet_file_is_one_line_saying_what_to_install(tmp_path, capsys, monkeypatch, curve):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--features", "x", "--out", tmp_path / "m.json")
    assert (
        code == 2 and err == "chainrule: error: reading Parquet files needs pyarrow: pip install 'chainrule[parquet]'\n"
    )


def test_reading_never_imports_pandas(tmp_path):
    # pyarrow's to_numpy() imports pandas on its first call, inside compiled code that swallows a
    # KeyboardInterrupt raised during that import: a Ctrl-C in that half second was lost (the fit went on).
    # The readers take numbers from the arrays' buffers instead, so pandas is never imported: a fresh
    # process fits from a CSV file (pyarrow's parser) and a Parquet file with text and integer columns.
    pytest.importorskip("pandas")  # (without pandas installed there is nothing to import)
    (tmp_path / "d.csv").write_text("a,b,y\n" + "".join(f"{i / 40},{i % 3},{i % 2}\n" for i in range(40)))
    _parquet(tmp_path, {"a": [i / 40 for i in range(40)], "b": [float(i % 3) for i in range(40)], "y": ["u", "v"] * 20})
    script = (
        "import sys\n"
        "from chainrule.cli import main\n"
        "for name, loss in (('d.csv', 'mse'), ('data.parquet', 'cross-entropy')):\n"
        "    args = ['fit', name, '--target', 'y', '--loss', loss, '--out', name + '.json', '--max-iter', '2']\n"
        "    assert main([*args, '--quiet']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "d.csv.json").exists() and (tmp_path / "data.parquet.json").exists()
