"""Streaming: chainrule.data.stream as a batch source, fit on it, the --stream commands, a memory limit."""

import io
import os
import statistics
import subprocess
import sys
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import cli, data
from chainrule.streams import Moments, Stream

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _table(rows=500, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 3)).round(4)
    y = (x @ [1.0, -2.0, 0.5] + 0.1 * rng.standard_normal(rows)).round(4)
    return x, y


def _csv(folder, x, y, name="t.csv"):
    path = os.path.join(folder, name)
    np.savetxt(path, np.column_stack([x, y]), fmt="%.4f", delimiter=",", header="a,b,c,y", comments="")
    return path


@pytest.fixture
def small(tmp_path):
    x, y = _table()
    return _csv(str(tmp_path), x, y), x, y


def _epoch(source):
    return [(xb.copy(), yb.copy()) for xb, yb in source]


def test_same_seed_same_batches_and_a_new_order_each_epoch(small):
    path = small[0]
    a = data.stream(path, "y", batch_size=32, shuffle_buffer=100, seed=3)
    b = data.stream(path, "y", batch_size=32, shuffle_buffer=100, seed=3)
    first_a, first_b = _epoch(a), _epoch(b)
    assert all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(first_a, first_b))
    assert len(first_a) == len(first_b)
    second = _epoch(a)
    assert not np.array_equal(np.concatenate([y for _, y in second]), np.concatenate([y for _, y in first_a]))
    other = _epoch(data.stream(path, "y", batch_size=32, shuffle_buffer=100, seed=4))
    assert not np.array_equal(np.concatenate([y for _, y in other]), np.concatenate([y for _, y in first_a]))


@pytest.mark.parametrize("buffer", [0, 1, 50, 499, 500, 10_000])
def test_every_row_exactly_once_per_epoch(small, buffer):
    path, x, y = small
    source = data.stream(path, "y", batch_size=32, shuffle_buffer=buffer, seed=1)
    for _ in range(2):
        batches = _epoch(source)
        assert all(len(xb) <= 32 for xb, _ in batches)
        got = np.concatenate([np.column_stack([xb, yb]) for xb, yb in batches])
        want = np.column_stack([x, y])
        # every row once: the sorted rows of the epoch are the file's sorted rows
        assert np.array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])
    assert source.rows == 500


def test_the_buffer_mixes_only_nearby_rows():
    # rows 0..9999 in order, a buffer of 100: the first batch holds only rows from the first 100 + 10
    x = np.arange(10_000.0)[:, None]
    source = Stream(lambda: iter([(x[i : i + 1000], x[i : i + 1000, 0]) for i in range(0, 10_000, 1000)]), 10, 100, 0)
    first = next(iter(source))[1]
    assert first.max() < 110
    assert sorted(np.concatenate([yb for _, yb in source]).tolist()) == list(range(10_000))


def test_a_buffer_holding_the_file_gives_fits_own_batches_bit_for_bit(small):
    # the same NumPy calls in the same order: rng.permutation(rows) each epoch, rows gathered by it
    path = small[0]
    arrays = data.read_csv(path, target="y")
    models = []
    for source in ((arrays.x, arrays.y), (data.stream(path, "y", batch_size=64, shuffle_buffer=500, seed=7),)):
        net = cr.nn.mlp([3, 5, 1], "tanh", seed=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = cr.fit(net, *source, loss="mse", optimizer=cr.optim.Adam(lr=0.01), batch_size=64, seed=7,
                       max_iter=4, tol=0)  # fmt: skip
        models.append((net, h))
    (a, ha), (b, hb) = models
    for p, q in zip(a.parameters(), b.parameters()):
        assert np.array_equal(p.data, q.data)
    # the epoch's loss: sum(loss_b * rows_b / n) against sum(loss_b * rows_b) / n, to rounding
    np.testing.assert_allclose(hb.loss, ha.loss, rtol=1e-12)


def test_fit_on_a_source_in_file_order_and_its_final_loss(small):
    path, x, y = small
    net = cr.nn.mlp([3, 1], "relu", seed=0)
    source = data.stream(path, "y", batch_size=100, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cr.fit(net, source, loss="mse", optimizer=cr.optim.GradientDescent(lr=0.1), max_iter=2, tol=0, shuffle=False)
    # shuffle=False reads in_order(): the same steps as fit on the arrays with shuffle=False
    ref = cr.nn.mlp([3, 1], "relu", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cr.fit(ref, x, y, loss="mse", optimizer=cr.optim.GradientDescent(lr=0.1), batch_size=100, max_iter=2,
               tol=0, shuffle=False)  # fmt: skip
    assert all(np.array_equal(p.data, q.data) for p, q in zip(net.parameters(), ref.parameters()))


@pytest.mark.parametrize("option", [dict(restarts=2), dict(optimizer=cr.optim.LBFGS()), dict(validation=0.2)])
def test_options_that_need_every_row_are_refused(small, option):
    with pytest.raises(ValueError, match="a batch source gives its rows a batch at a time; it cannot be combined"):
        cr.fit(cr.nn.mlp([3, 1]), data.stream(small[0], "y"), **option)


def test_statistics_by_chans_merge_match_numpy_on_the_whole_array(tmp_path):
    rng = np.random.default_rng(5)
    x = np.column_stack([1e6 + rng.standard_normal(3000), rng.standard_normal(3000) * 1e-3, rng.random(3000)])
    y = 50 + rng.standard_normal(3000)
    path = os.path.join(tmp_path, "s.parquet")
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}), path, row_group_size=700)
    stats = data.stream(path, "y").statistics()  # Parquet batches of 700 rows (row groups), merged
    np.testing.assert_allclose(stats.feature_mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.feature_std, x.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose([stats.target_mean, stats.target_std], [y.mean(), y.std()], rtol=1e-12)
    m = Moments(3)
    for i in range(0, 3000, 7):  # uneven pieces
        m.add(x[i : i + 7])
    # pieces of 7 rows around 1e6: each piece's mean is off by about 1e-16 * 1e6, so the merged std of a
    # column of std 1 is good to about 1e-11 (against exact rational arithmetic: statistics.pstdev)
    exact = [statistics.pstdev(column) for column in x.T.tolist()]
    np.testing.assert_allclose(m.std, exact, rtol=1e-10)
    np.testing.assert_allclose(m.mean, [statistics.fmean(column) for column in x.T.tolist()], rtol=1e-14)


def _mid_stream_csv(folder, bad_line, cell):
    """A file of more than one block (BLOCK_BYTES) whose line ``bad_line`` holds ``cell`` in column 'b'."""
    x, y = _table(rows=40_000, seed=1)
    path = _csv(folder, x, y)
    with open(path) as f:
        lines = f.read().splitlines()
    cells = lines[bad_line - 1].split(",")
    cells[1] = cell
    lines[bad_line - 1] = ",".join(cells)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("cell", ["abc", "", "inf", "1_0"])
def test_a_bad_cell_mid_stream_is_named_as_read_csv_names_it(tmp_path, cell):
    path = _mid_stream_csv(str(tmp_path), 38_001, cell)
    assert os.path.getsize(path) > data.BLOCK_BYTES  # the bad line is in the second block
    with pytest.raises(ValueError) as whole:
        data.read_csv(path, target="y")
    with pytest.raises(ValueError) as streamed:
        for _ in data.stream(path, "y", batch_size=500, seed=0):
            pass
    assert str(streamed.value) == str(whole.value)
    assert "line 38001, column 'b'" in str(streamed.value)


def test_a_quoted_cell_mid_stream_is_read_by_the_exact_reader(tmp_path):
    path = _mid_stream_csv(str(tmp_path), 38_001, '"1.5"')
    whole = data.read_csv(path, target="y")
    got = np.concatenate([xb for xb, _ in data.stream(path, "y", batch_size=999).in_order()])
    assert np.array_equal(got, whole.x)


def test_fit_stream_stops_at_a_bad_cell_and_writes_nothing(tmp_path, capsys):
    path = _mid_stream_csv(str(tmp_path), 38_001, "oops")
    out = os.path.join(tmp_path, "m.json")
    code = cli.main(["fit", path, "--target", "y", "--stream", "--batch-size", "256", "--quiet", "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not os.path.exists(out)
    assert err == [
        f"chainrule: error: {path} line 38001, column 'b': 'oops' is not a number; feature cells must be numbers"
    ]


def _fit_model(tmp_path, path, *extra):
    out = os.path.join(tmp_path, "m.json")
    argv = ["fit", path, "--target", "y", "--hidden", "4", "--activation", "tanh", "--optimizer", "adam"]
    argv += ["--lr", "0.01", "--batch-size", "64", "--max-iter", "3", "--tol", "0", "--quiet", "--out", out]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(argv + list(extra)) == 0
    return out


def test_fit_stream_with_a_whole_buffer_equals_fit_and_records_the_final_loss(tmp_path, capsys):
    x, y = _table(rows=700)
    path = _csv(str(tmp_path), x, y)
    plain = cr.modelfile.load(_fit_model(tmp_path, path, "--standardize"))
    streamed = cr.modelfile.load(_fit_model(tmp_path, path, "--standardize", "--stream"))
    # the scaling: the mean by Chan's merge against numpy's sum, to rounding
    np.testing.assert_allclose(streamed.scaling.feature_mean, plain.scaling.feature_mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(streamed.scaling.feature_std, plain.scaling.feature_std, rtol=1e-12)
    for p, q in zip(plain.network.parameters(), streamed.network.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(streamed.training["final_loss"], plain.training["final_loss"], rtol=1e-9)
    assert streamed.training["rows"] == 700


@pytest.mark.parametrize("proba", [False, True])
def test_predict_stream_writes_the_same_bytes(tmp_path, proba):
    x, y = _table(rows=70_000)  # more than ROWS_AT_ONCE rows: two blocks of predictions
    path = _csv(str(tmp_path), x, y)
    if proba:
        labels = np.where(y > 0, "up", "down")
        path = os.path.join(tmp_path, "c.csv")
        with open(path, "w") as f:
            f.write("a,b,c,y\n" + "".join(f"{r[0]},{r[1]},{r[2]},{t}\n" for r, t in zip(x, labels)))
        model = cr.modelfile.Model(cr.nn.mlp([3, 4, 2], seed=1), ["a", "b", "c"], "y", ["down", "up"])
    else:
        model = cr.modelfile.Model(
            cr.nn.mlp([3, 4, 1], seed=1), ["a", "b", "c"], "y", scaling=([0, 1, 2], [1, 2, 3], 1.0, 2.0)
        )
    model_path = os.path.join(tmp_path, "m.json")
    model.save(model_path)
    outs = []
    for extra in ([], ["--stream"]):
        out = os.path.join(tmp_path, f"p{len(outs)}.csv")
        assert cli.main(["predict", model_path, path, "--out", out, *(["--proba"] if proba else []), *extra]) == 0
        outs.append(open(out, "rb").read())
    assert outs[0] == outs[1]


def test_predict_stream_leaves_no_file_after_a_bad_cell(tmp_path, capsys):
    path = _mid_stream_csv(str(tmp_path), 38_001, "oops")
    model_path = os.path.join(tmp_path, "m.json")
    cr.modelfile.Model(cr.nn.mlp([3, 1], seed=1), ["a", "b", "c"], "y").save(model_path)
    out = os.path.join(tmp_path, "p.csv")
    assert cli.main(["predict", model_path, path, "--stream", "--out", out]) == 2
    assert not os.path.exists(out) and not any(n.endswith("chainrule-tmp") for n in os.listdir(tmp_path))
    assert "line 38001, column 'b'" in capsys.readouterr().err


def test_evaluate_stream_gives_evaluates_numbers(tmp_path, capsys):
    x, y = _table(rows=3000)
    path = _csv(str(tmp_path), x, y)
    model_path = _fit_model(tmp_path, path)
    capsys.readouterr()
    reports = []
    for extra in ([], ["--stream"]):
        assert cli.main(["evaluate", model_path, path, "--json", *extra]) == 0
        reports.append(__import__("json").loads(capsys.readouterr().out))
    assert reports[0].keys() == reports[1].keys()
    for key in ("loss_value", "r2", "mae", "rmse"):
        np.testing.assert_allclose(reports[1][key], reports[0][key], rtol=1e-10)
    assert reports[1]["rows"] == 3000


def test_fit_stream_refuses_what_needs_every_row(small, capsys):
    code = cli.main(
        ["fit", small[0], "--target", "y", "--stream", "--batch-size", "8", "--restarts", "2", "--out", "x.json"]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "chainrule: error: --stream reads a batch at a time; --restarts needs all rows at once: leave it out"
    )


# ---- past a memory limit -------------------------------------------------------------------------------

CHILD = """
import os, resource, sys
import numpy as np
import chainrule as cr
from chainrule import data
data._arrow_csv()

def size():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))

limit = size() + int(sys.argv[3]) * 2**20  # the interpreter and its imports, measured here, plus the headroom
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
path = sys.argv[1]
if sys.argv[2] == "whole":
    try:
        data.read_csv(path, target="y")
    except MemoryError:
        print("MemoryError")
    sys.exit(0)
net = cr.nn.mlp([20, 4, 1], "relu", seed=0)
source = data.stream(path, target="y", batch_size=4096, shuffle_buffer=20_000, seed=0, standardize=True)
history = cr.fit(net, source, loss="mse", optimizer=cr.optim.Adam(lr=0.01), max_iter=1, tol=0)
print("trained", source.rows, history.loss[-1])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status: Linux")
def test_training_past_a_memory_limit_that_reading_the_whole_file_exceeds(tmp_path):
    rows, headroom_mb = 800_000, 100  # the float64 array alone: 800,000 x 21 x 8 bytes = 134 MB > 100 MB
    rng = np.random.default_rng(0)
    text = io.StringIO()
    np.savetxt(text, rng.integers(0, 100, (10_000, 21)) / 100, fmt="%.2f", delimiter=",")
    block = text.getvalue().encode()
    path = os.path.join(tmp_path, "big.csv")
    with open(path, "wb") as f:  # 10,000 lines written 80 times: a big file fast
        f.write((",".join([f"x{i}" for i in range(20)] + ["y"]) + "\n").encode())
        for _ in range(rows // 10_000):
            f.write(block)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
           # pyarrow's default pool reserves address space in large pieces: the system allocator does not
           "ARROW_DEFAULT_MEMORY_POOL": "system",
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    run = [sys.executable, "-c", CHILD, path]
    whole = subprocess.run([*run, "whole", str(headroom_mb)], capture_output=True, text=True, env=env, timeout=120)
    assert whole.stdout.strip() == "MemoryError", whole.stderr  # the limit bites: the whole file does not fit
    streamed = subprocess.run([*run, "stream", str(headroom_mb)], capture_output=True, text=True, env=env, timeout=120)
    assert streamed.returncode == 0, streamed.stderr
    word, count, loss = streamed.stdout.split()
    assert word == "trained" and int(count) == rows and np.isfinite(float(loss))


def test_a_parquet_null_mid_stream_is_named_as_read_parquet_names_it(tmp_path):
    x, y = _table(rows=150_000)
    b = pa.array(x[:, 1].tolist()[:140_000] + [None] + x[:, 1].tolist()[140_001:])
    path = os.path.join(tmp_path, "n.parquet")
    pq.write_table(pa.table({"a": x[:, 0], "b": b, "c": x[:, 2], "y": y}), path, row_group_size=50_000)
    with pytest.raises(ValueError) as whole:
        data.read_parquet(path, target="y")
    with pytest.raises(ValueError) as streamed:
        for _ in data.stream(path, "y", batch_size=1000):
            pass
    assert str(streamed.value) == str(whole.value)
    assert "row 140001, column 'b': is empty (a missing value)" in str(streamed.value)


def test_a_file_that_changes_between_epochs_is_refused(small):
    path = small[0]
    source = data.stream(path, "y", batch_size=100)
    _epoch(source)
    with open(path, "a") as f:
        f.write("1,2,3,4\n")
    with pytest.raises(ValueError, match="changed since it was first read; make a new stream"):
        _epoch(source)


def _labelled(folder, rows=2000, extra=""):
    x, _ = _table(rows=rows, seed=3)
    labels = np.where(x[:, 0] + x[:, 1] > 0, "up", "down")
    path = os.path.join(folder, "c.csv")
    with open(path, "w") as f:
        f.write("a,b,c,y\n" + "".join(f"{r[0]},{r[1]},{r[2]},{t}\n" for r, t in zip(x, labels)) + extra)
    return path


def test_a_classifier_streamed_with_a_whole_buffer_equals_one_fit_on_the_arrays(tmp_path, capsys):
    path = _labelled(str(tmp_path))
    models = []
    for extra in ([], ["--stream"]):
        out = os.path.join(tmp_path, f"c{len(models)}.json")
        argv = ["fit", path, "--target", "y", "--loss", "cross-entropy", "--hidden", "4", "--optimizer", "adam"]
        argv += ["--lr", "0.01", "--batch-size", "128", "--max-iter", "3", "--tol", "0", "--standardize", "--quiet"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert cli.main([*argv, "--out", out, *extra]) == 0
        models.append(cr.modelfile.load(out))
    plain, streamed = models
    assert streamed.classes == plain.classes == ["down", "up"]
    for p, q in zip(plain.network.parameters(), streamed.network.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-9, atol=1e-12)  # the scaling's means differ in rounding
    np.testing.assert_allclose(streamed.training["final_loss"], plain.training["final_loss"], rtol=1e-9)
    reports = []
    for extra in ([], ["--stream"]):
        capsys.readouterr()
        assert cli.main(["evaluate", os.path.join(tmp_path, "c0.json"), path, "--json", *extra]) == 0
        reports.append(__import__("json").loads(capsys.readouterr().out))
    assert reports[0]["confusion_matrix"] == reports[1]["confusion_matrix"]
    np.testing.assert_allclose(reports[1]["loss_value"], reports[0]["loss_value"], rtol=1e-12)


def test_a_label_not_among_the_models_classes_is_named_mid_stream(tmp_path, capsys):
    path = _labelled(str(tmp_path), extra="0.1,0.2,0.3,sideways\n")
    model_path = os.path.join(tmp_path, "m.json")
    cr.modelfile.Model(cr.nn.mlp([3, 2], seed=1), ["a", "b", "c"], "y", ["down", "up"]).save(model_path)
    assert cli.main(["evaluate", model_path, path, "--stream"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"chainrule: error: {path} line 2002, column 'y': 'sideways' is not one of the model's classes ['down', 'up']"
    )
    assert cli.main(["evaluate", model_path, path]) == 2  # the same words without --stream
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("line 2002, column 'y': 'sideways' is not one of the model's classes ['down', 'up']")
    )


def test_held_out_arrays_are_scored_each_epoch_of_a_stream(small):
    path, x, y = small
    net = cr.nn.mlp([3, 4, 1], "tanh", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = cr.fit(net, data.stream(path, "y", batch_size=50, seed=0), loss="mse", max_iter=3, tol=0,
                   optimizer=cr.optim.Adam(lr=0.01), validation=(x[:100], y[:100]))  # fmt: skip
    assert len(h.validation_score) == 3 and len(h.loss) == 3
    with cr.no_grad():
        mse = float(np.mean((net(cr.tensor(x[:100])).data[:, 0] - y[:100]) ** 2))
    assert h.validation_loss[-1] == pytest.approx(mse, rel=1e-12)  # scored at the last epoch's parameters
