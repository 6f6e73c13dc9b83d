"""chainrule.partitions and `chainrule predict` over partitions: one output a partition, the same bytes as the
one-file predict of that partition (the same NumPy calls on the same rows), here, on local processes and on the
session's Dask cluster; every partition's columns checked before anything is written."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chainrule import partitions
from chainrule.modelfile import ROWS_AT_ONCE, Model, Scaling, load
from chainrule.nn import mlp
from chainrule.partitions import Partition, predict_frame, predict_partition, predict_partitions
from commandline import run_cli

FEATURES = ["a", "b", "c"]


@pytest.fixture
def regressor(tmp_path):
    """A 3-8-1 tanh network with standardized features and target, saved."""
    net = mlp([3, 8, 1], activation="tanh", seed=1)
    path = tmp_path / "regressor.json"
    Model(net, FEATURES, "y", scaling=Scaling([0.5, -1.0, 2.0], [1.5, 0.5, 3.0], 10.0, 4.0)).save(path)
    return path


@pytest.fixture
def classifier(tmp_path):
    """A 3-6-3 relu network with text labels, saved."""
    net = mlp([3, 6, 3], activation="relu", seed=2)
    path = tmp_path / "classifier.json"
    Model(net, FEATURES, "kind", classes=["cat", "dog", "eel"]).save(path)
    return path


def _frame(rows, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)) * [2.0, 1.0, 5.0]
    return {"id": np.arange(rows) + 1000 * seed, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}


def _csv(path, columns):
    names = list(columns)
    lines = [",".join(names)]
    lines += [",".join(repr(float(v)) if k != "id" else str(v) for k, v in zip(names, row))
              for row in zip(*columns.values())]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def csv_parts(tmp_path):
    folder = tmp_path / "csv_parts"
    folder.mkdir()
    return [_csv(folder / f"part-{k}.csv", _frame(rows, k)) for k, rows in enumerate((40, 1, 25))]


@pytest.fixture
def parquet_parts(tmp_path):
    folder = tmp_path / "parquet_parts"
    folder.mkdir()
    paths = []
    # 70,000 rows in row groups of 9,000: batches cross the network's ROWS_AT_ONCE blocks
    for k, rows in enumerate((ROWS_AT_ONCE + 4464, 30)):
        paths.append(folder / f"part-{k}.parquet")
        pq.write_table(pa.table(_frame(rows, k)), paths[-1], row_group_size=9_000)
    return paths


def _one_file(capsys, model, part, out, *extra):
    code, _, err = run_cli(capsys, "predict", model, part, "--out", out, *extra)
    assert code == 0, err
    return out


def test_csv_partitions_are_the_one_file_predictions_byte_for_byte(capsys, tmp_path, regressor, csv_parts):
    out = tmp_path / "predicted"
    code, stdout, err = run_cli(capsys, "predict", regressor, csv_parts[0].parent, "--out", out)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["part-0.csv", "part-1.csv", "part-2.csv"]
    model = load(regressor)
    for part in csv_parts:
        single = _one_file(capsys, regressor, part, tmp_path / "single.csv")
        assert (out / part.name).read_bytes() == single.read_bytes()
        # and the numbers are Model.predict's on the partition's rows (the cells are exact reprs)
        rows = np.loadtxt(out / part.name, delimiter=",", skiprows=1, ndmin=2)
        assert np.array_equal(rows[:, -1], model.predict(rows[:, 1:4]))
    assert stdout == ""
    assert "partition 3/3: part-2.csv, 25 rows (66 in all)" in err
    assert err.strip().endswith(f"wrote 3 partitions (66 rows) to {out}")
    # --quiet: the same files, and nothing on stderr
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    code, stdout, err = run_cli(capsys, "predict", regressor, csv_parts[0].parent, "--out", out, "--quiet")
    assert (code, stdout, err) == (0, "", "")
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before


def test_parquet_partitions_are_the_one_file_predictions(capsys, tmp_path, regressor, parquet_parts):
    out = tmp_path / "predicted"
    written = predict_partitions(regressor, str(parquet_parts[0].parent / "*.parquet"), out)
    assert [w.rows for w in written] == [ROWS_AT_ONCE + 4464, 30]
    model = load(regressor)
    for part in parquet_parts:
        single = pq.read_table(_one_file(capsys, regressor, part, tmp_path / "single.parquet"))
        mine = pq.read_table(out / part.name)
        assert mine.equals(single, check_metadata=True)
        x = np.column_stack([mine.column(n).to_numpy() for n in FEATURES])
        assert np.array_equal(mine.column("predicted_y").to_numpy(), model.predict(x))


def test_a_classifier_with_probabilities_csv_and_parquet(capsys, tmp_path, classifier, csv_parts, parquet_parts):
    out = tmp_path / "predicted"
    code, _, err = run_cli(capsys, "predict", classifier, csv_parts[0], parquet_parts[1], "--out", out, "--proba")
    assert code == 0, err
    single = _one_file(capsys, classifier, csv_parts[0], tmp_path / "single.csv", "--proba")
    assert (out / csv_parts[0].name).read_bytes() == single.read_bytes()
    single = pq.read_table(_one_file(capsys, classifier, parquet_parts[1], tmp_path / "single.parquet", "--proba"))
    mine = pq.read_table(out / parquet_parts[1].name)
    assert mine.equals(single)
    assert mine.column_names[-4:] == ["predicted_kind", "probability_cat", "probability_dog", "probability_eel"]


def test_the_task_carries_the_model_files_bytes_not_its_path(tmp_path, regressor, csv_parts):
    raw = regressor.read_bytes()
    expected = predict_partitions(regressor, csv_parts[0], tmp_path / "a")[0]
    regressor.unlink()
    partitions._MODELS.clear()  # as on a fresh worker, which never saw the file
    written = predict_partition(Partition(raw, str(csv_parts[0]), str(tmp_path / "b.csv")))
    assert written.rows == expected.rows == 40
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "a" / "part-0.csv").read_bytes()


def _nothing_written(out):
    return not out.exists() or os.listdir(out) == []


def test_an_empty_glob_or_directory_is_one_line(capsys, tmp_path, regressor):
    out = tmp_path / "predicted"
    code, _, err = run_cli(capsys, "predict", regressor, tmp_path / "nothing-*.csv", "--out", out)
    assert code == 2
    assert err == f"chainrule: error: no partitions to predict: {tmp_path / 'nothing-*.csv'} matches no files\n"
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "predict", regressor, tmp_path / "empty", "--out", out)
    assert code == 2 and "holds no .csv, .parquet or .pq files" in err and err.count("\n") == 1
    assert _nothing_written(out)


def test_a_partition_with_the_wrong_columns_stops_everything_before_writing(capsys, tmp_path, regressor, csv_parts):
    wrong = _csv(csv_parts[0].parent / "part-9.csv", {"a": [1.0], "b": [2.0], "d": [3.0]})
    out = tmp_path / "predicted"
    code, _, err = run_cli(capsys, "predict", regressor, csv_parts[0].parent, "--out", out, "--workers", "1")
    assert code == 2
    assert err.startswith(f"chainrule: error: {wrong}") and "'c'" in err and err.count("\n") == 1
    assert _nothing_written(out)


def test_a_broken_parquet_file_or_a_header_without_rows_is_found_first(capsys, tmp_path, regressor, parquet_parts):
    broken = parquet_parts[0].parent / "part-5.parquet"
    broken.write_bytes(b"PAR1 this is not a Parquet file")
    out = tmp_path / "predicted"
    code, _, err = run_cli(capsys, "predict", regressor, parquet_parts[0].parent, "--out", out)
    assert code == 2
    assert err.startswith(f"chainrule: error: {broken} is not a readable Parquet file") and err.count("\n") == 1
    broken.unlink()
    headed = _csv(tmp_path / "headed.csv", {"a": [], "b": [], "c": []})
    code, _, err = run_cli(capsys, "predict", regressor, parquet_parts[1], headed, "--out", out)
    assert (code, err) == (2, f"chainrule: error: {headed} has no data rows\n")
    assert _nothing_written(out)


def test_a_bad_cell_found_mid_run_names_the_partition_and_leaves_no_half_file(capsys, tmp_path, regressor, csv_parts):
    text = csv_parts[2].read_text().splitlines()
    text[7] = text[7].replace(text[7].split(",")[2], "oops", 1)
    csv_parts[2].write_text("\n".join(text) + "\n")
    out = tmp_path / "predicted"
    code, _, err = run_cli(capsys, "predict", regressor, *csv_parts, "--out", out)
    assert code == 2
    assert f"\nchainrule: error: {csv_parts[2]} line 8, column 'b': 'oops' is not a number;" in err
    assert err.endswith("\n") and err.count("chainrule: error") == 1
    assert sorted(os.listdir(out)) == ["part-0.csv", "part-1.csv"]  # written whole; no temporary file left


def test_outputs_that_would_overwrite_an_input_or_each_other_are_refused(capsys, tmp_path, regressor, csv_parts):
    code, _, err = run_cli(capsys, "predict", regressor, csv_parts[0].parent, "--out", csv_parts[0].parent)
    assert code == 2 and "is the partition itself" in err
    other = tmp_path / "other"
    other.mkdir()
    twin = _csv(other / "part-0.csv", _frame(3, 7))
    code, _, err = run_cli(capsys, "predict", regressor, csv_parts[0], twin, "--out", tmp_path / "predicted")
    assert code == 2 and f"the partitions {csv_parts[0]} and {twin} would both be written to" in err
    code, _, err = run_cli(capsys, "predict", regressor, csv_parts[0], csv_parts[1], "--out", regressor)
    assert code == 2 and "exists and is not a directory" in err
    code, _, err = run_cli(capsys, "predict", regressor, csv_parts[0], csv_parts[1])
    assert code == 2 and "--out DIR" in err


def test_one_file_is_still_one_file(capsys, tmp_path, regressor, csv_parts):
    code, out, _ = run_cli(capsys, "predict", regressor, csv_parts[0])
    assert code == 0 and out.splitlines()[0] == "id,a,b,c,predicted_y" and len(out.splitlines()) == 41


def test_predict_frame_refuses_a_missing_column_or_a_null(regressor):
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match=r"predict_frame: the frame has no column 'c'"):
        predict_frame(pd.DataFrame({"a": [1.0], "b": [2.0]}), str(regressor))
    with pytest.raises(ValueError, match=r"row 1, column 'b': nan is not a finite number"):
        predict_frame(pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, None], "c": [0.0, 0.0]}), regressor)


# ---- on workers: the session's Dask cluster, and local processes ----------------------------------------


def test_on_the_dask_cluster_one_or_two_workers_give_the_same_bytes(tmp_path, client, regressor, csv_parts):
    here = predict_partitions(regressor, csv_parts, tmp_path / "here")
    both = predict_partitions(regressor, csv_parts, tmp_path / "both", client.get_executor())
    first = sorted(client.scheduler_info()["workers"])[0]
    one = predict_partitions(regressor, csv_parts, tmp_path / "one", client.get_executor(workers=[first]))
    assert [w.rows for w in here] == [w.rows for w in both] == [w.rows for w in one] == [40, 1, 25]
    for part in csv_parts:
        expected = (tmp_path / "here" / part.name).read_bytes()
        assert (tmp_path / "both" / part.name).read_bytes() == expected
        assert (tmp_path / "one" / part.name).read_bytes() == expected


def test_the_command_line_on_the_scheduler(capsys, tmp_path, cluster, classifier, parquet_parts):
    out = tmp_path / "predicted"
    code, _, err = run_cli(
        capsys, "predict", classifier, parquet_parts[0].parent, "--out", out, "--scheduler", cluster.scheduler_address
    )
    assert code == 0, err
    assert "partition 2/2" in err
    for part in parquet_parts:
        single = pq.read_table(_one_file(capsys, classifier, part, tmp_path / "single.parquet"))
        assert pq.read_table(out / part.name).equals(single)


def test_the_command_line_on_local_processes(capsys, tmp_path, regressor, csv_parts):
    out = tmp_path / "predicted"
    code, _, err = run_cli(capsys, "predict", regressor, *csv_parts, "--out", out, "--workers", "1")
    assert code == 0, err
    for part in csv_parts:
        single = _one_file(capsys, regressor, part, tmp_path / "single.csv")
        assert (out / part.name).read_bytes() == single.read_bytes()


def test_everything_is_checked_before_the_scheduler_is_reached(capsys, tmp_path, regressor, csv_parts):
    # port 9 (discard) on loopback: no scheduler there; the partition's mistake comes first, at once
    wrong = _csv(csv_parts[0].parent / "part-9.csv", {"a": [1.0], "b": [2.0]})
    code, _, err = run_cli(
        capsys, "predict", regressor, wrong, "--out", tmp_path / "p", "--scheduler", "tcp://127.0.0.1:9"
    )
    assert code == 2 and err.startswith(f"chainrule: error: {wrong}") and "'c'" in err
    code, _, err = run_cli(capsys, "predict", regressor, *csv_parts, "--out", tmp_path / "no" / "p")
    assert (code, err) == (
        2,
        f"chainrule: error: cannot write the predictions into {tmp_path / 'no' / 'p'}: the directory "
        f"{tmp_path / 'no'} does not exist\n",
    )


def test_more_local_workers_than_cores_is_refused_before_anything_is_written(capsys, tmp_path, regressor, csv_parts):
    many = max(2, os.cpu_count() or 1) + 1
    code, _, err = run_cli(capsys, "predict", regressor, *csv_parts, "--out", tmp_path / "p", "--workers", many)
    assert code == 2 and err.count("\n") == 1 and f"--workers must be an integer in [1, {many - 1}]" in err
    assert not (tmp_path / "p").exists()


def test_ctrl_c_after_a_partition_says_what_was_written(capsys, tmp_path, regressor, csv_parts, monkeypatch):
    # Ctrl-C while the second of three partitions is predicted: the first is on disk, whole, and the
    # message says so (not "nothing written")
    real, calls = partitions.predict_partition, []

    def interrupted_at_the_second(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(partitions, "predict_partition", interrupted_at_the_second)
    code, _, err = run_cli(capsys, "predict", regressor, *csv_parts, "--out", tmp_path / "p")
    assert code == 130 and "nothing written" not in err
    assert "1 of 3 partitions were written" in err and str(tmp_path / "p") in err
    assert sorted(os.listdir(tmp_path / "p")) == ["part-0.csv"]
