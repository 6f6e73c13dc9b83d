"""chainrule.sweep and `chainrule sweep`: the folds, the scores against scikit-learn's, resuming, and the same
table here, on local processes and on a Dask cluster."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule import modelfile
from chainrule import sweep as sweep_module
from chainrule.sweep import kfold, parse_grid, sweep
from commandline import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::chainrule.ConvergenceWarning")  # (our fits of 40 iterations)

GRID = "hidden=2,3;optimizer=adam;lr=0.1,0.05;max-iter=40"  # 4 configurations
FOLDS = 3


@pytest.fixture
def curve(tmp_path):
    """30 rows of y = sin(2a) + b / 2."""
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 3, 30), rng.normal(size=30)
    path = tmp_path / "curve.csv"
    path.write_text(
        "a,b,y\n" + "".join(f"{p!r},{q!r},{float(np.sin(2 * p) + q / 2)!r}\n" for p, q in zip(a.tolist(), b.tolist()))
    )
    return path


@pytest.fixture
def flowers(tmp_path):
    """31 rows of three text classes (16, 9 and 6 rows)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=31), rng.normal(size=31)
    labels = ["large"] * 16 + ["middle"] * 9 + ["small"] * 6
    a += np.array([{"large": 1.0, "middle": 0.0, "small": -1.0}[s] for s in labels])
    path = tmp_path / "flowers.csv"
    path.write_text("a,b,size\n" + "".join(f"{p!r},{q!r},{s}\n" for p, q, s in zip(a.tolist(), b.tolist(), labels)))
    return path


def _lines(folder):
    with open(os.path.join(folder, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


def _same_outputs(a, b):
    for name in ("scores.csv", "model.json"):
        with open(os.path.join(a, name), "rb") as f, open(os.path.join(b, name), "rb") as g:
            assert f.read() == g.read(), name


# ---- the folds and the grid ---------------------------------------------------------------------


def test_kfold_puts_each_row_in_one_fold_of_sizes_within_one_and_stratifies_classes():
    # 10 rows in 3 folds: 4, 3, 3 rows (10 = 3 x 3 + 1)
    fold = kfold(10, 3, seed=5)
    assert sorted(np.bincount(fold).tolist()) == [3, 3, 4]
    labels = np.array([0] * 7 + [1] * 5 + [2] * 3)
    fold = kfold(15, 3, seed=2, labels=labels)
    for c, members in ((0, 7), (1, 5), (2, 3)):  # each class's share of a fold: members / 3, to within a row
        counts = np.bincount(fold[labels == c], minlength=3)
        assert counts.sum() == members and counts.max() - counts.min() <= 1
    assert np.bincount(fold).tolist() == [5, 5, 5]
    assert np.array_equal(kfold(15, 3, seed=2, labels=labels), fold)  # from the seed: the same every time
    assert not np.array_equal(kfold(15, 3, seed=3, labels=labels), fold)


def test_a_grid_is_every_combination_with_fits_spelling_of_the_keys():
    grid = parse_grid("hidden=8,8x8; lr=0.01,1e-3; batch-size=all,16")
    configs = grid.configs()
    assert len(configs) == 2 * 2 * 2
    assert configs[0] == {"hidden": [8], "lr": 0.01, "batch_size": None}
    assert configs[-1] == {"hidden": [8, 8], "lr": 0.001, "batch_size": 16}
    assert parse_grid({"hidden": [8, (4, 4)], "alpha": 0}).configs() == [
        {"hidden": [8], "alpha": 0.0},
        {"hidden": [4, 4], "alpha": 0.0},
    ]


@pytest.mark.parametrize(
    "grid, words",
    [
        ("", ["--grid is empty"]),
        ("hidden8", ["hidden8", "KEY=VALUES"]),
        ("hidden=8;speed=1,2", ["speed=1,2", "unknown key"]),
        ("lr=", ["lr", "no values"]),
        ("lr=0.1,fast", ["--grid lr", "'fast'"]),
        ("lr=-1", ["--grid lr", "-1.0"]),
        ("lr=nan", ["--grid lr", "nan"]),
        ("hidden=8y", ["--grid hidden", "'8y'"]),
        ("hidden=0", ["--grid hidden", "[0]"]),
        ("max-iter=1.5", ["--grid max-iter", "'1.5'"]),
        ("batch-size=0", ["--grid batch-size", "0"]),
        ("activation=swish", ["--grid activation", "'swish'"]),
        ("optimizer=sgd", ["--grid optimizer", "'sgd'"]),
        ("lr=0.1;lr=0.2", ["lr", "twice"]),
        ("lr=0.1,0.10", ["lr=0.1", "twice"]),
        ("optimizer=gd,lbfgs;lr=0.1", ["optimizer=lbfgs", "lr=0.1"]),
        ("optimizer=lbfgs;batch-size=4", ["optimizer=lbfgs", "batch_size=4"]),  # fit's own refusal, before any work
    ],
)
def test_a_bad_grid_is_one_line_exit_2_before_anything_is_written(tmp_path, capsys, curve, grid, words):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "sweep", curve, "--target", "y", "--grid", grid, "--out", out)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("chainrule: error: "), err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()


def test_too_many_folds_for_the_rows_and_two_places_to_run_are_refused(tmp_path, curve):
    with pytest.raises(ValueError, match="30 folds of 30 rows"):
        sweep(curve, "y", GRID, folds=30, out=tmp_path / "a", plot=False)
    with pytest.raises(ValueError, match="at most one of workers, scheduler and executor"):
        sweep(curve, "y", GRID, out=tmp_path / "a", plot=False, workers=1, scheduler="tcp://127.0.0.1:1")
    assert not (tmp_path / "a").exists()


def test_a_scheduler_out_of_reach_leaves_no_folder_behind(tmp_path, curve, monkeypatch):
    # the executor is opened after the folder is made (a Dask scheduler that cannot be reached says so after its
    # timeout): the folder the sweep made for nothing is taken away again; one that was there stays
    import chainrule.sweep as sweep_module

    def unreachable(**_):
        raise ValueError("could not reach the Dask scheduler at 'tcp://127.0.0.1:1'")

    monkeypatch.setattr(sweep_module, "open_executor", unreachable)
    for out, there in ((tmp_path / "new", False), (tmp_path / "old", True)):
        if there:
            out.mkdir()
        with pytest.raises(ValueError, match="could not reach"):
            sweep(curve, "y", GRID, out=out, plot=False, scheduler="tcp://127.0.0.1:1")
        assert out.exists() == there and (not there or not any(out.iterdir()))


# ---- the scores ------------------------------------------------------------------------------------


def test_a_regression_score_is_r2_of_fit_on_the_other_folds_as_scikit_learn_computes_it(tmp_path, curve):
    from sklearn.metrics import r2_score

    out = tmp_path / "out"
    found = sweep(curve, "y", GRID, folds=FOLDS, out=out, plot=False)
    data = cr.data.read_csv(curve, target="y")
    x, y = data.x, data.target_numbers()
    fold = kfold(len(x), FOLDS, seed=0)
    lines = _lines(out)
    line = next(r for r in lines[1:] if r["config"]["hidden"] == [3] and r["config"]["lr"] == 0.05 and r["fold"] == 1)
    net = cr.nn.mlp([2, 3, 1], "softplus", seed=0)
    history = cr.fit(
        net, x[fold != 1], y[fold != 1], loss="mse", optimizer=cr.optim.Adam(lr=0.05), max_iter=40, seed=0, compile=True
    )
    predicted = net(x[fold == 1]).data[:, 0]
    assert line["score"] == pytest.approx(r2_score(y[fold == 1], predicted), rel=1e-12)
    assert line["n_iter"] == history.n_iter
    trained = net(x[fold != 1]).data[:, 0]
    assert line["train_loss"] == pytest.approx(np.mean((trained - y[fold != 1]) ** 2), rel=1e-12)
    assert {"config", "fold", "score", "train_loss", "n_iter", "seconds", "version"} <= set(line)
    assert line["version"] == cr.__version__
    # the table: NumPy's mean and std (ddof=0, scikit-learn's cv_results_) of each configuration's folds
    for row in found.table:
        scores = [r["score"] for r in lines[1:] if r["config"] == row.config]
        assert row.scores == [
            r["score"] for r in sorted(lines[1:], key=lambda r: r["fold"]) if r["config"] == row.config
        ]
        assert row.mean == pytest.approx(np.mean(scores), rel=1e-12)
        assert row.std == pytest.approx(np.std(scores), rel=1e-12)
    assert found.best.mean == max(row.mean for row in found.table) and found.best.rank == 1
    with open(out / "scores.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["mean_score"]) for r in table] == [row.mean for row in found.table]
    assert [float(r["fold2"]) for r in table] == [row.scores[1] for row in found.table]


def test_the_best_model_is_the_best_configuration_trained_on_all_rows(tmp_path, curve):
    found = sweep(curve, "y", GRID, folds=FOLDS, out=tmp_path / "out", plot=False)
    data = cr.data.read_csv(curve, target="y")
    best = found.best.config
    net = cr.nn.mlp([2, *best["hidden"], 1], "softplus", seed=0)
    cr.fit(net, data.x, data.target_numbers(), loss="mse", optimizer=cr.optim.Adam(lr=best["lr"]), max_iter=40,
           seed=0, compile=True)  # fmt: skip
    model = modelfile.load(found.model)
    assert np.array_equal(model.predict(data.x), net(data.x).data[:, 0])
    assert model.training["sweep"]["mean"] == found.best.mean


def test_a_classification_sweep_has_stratified_folds_scored_by_accuracy_as_scikit_learn_computes_it(
    tmp_path, flowers, capsys
):
    from sklearn.metrics import accuracy_score

    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "sweep", flowers, "--target", "size", "--loss", "cross-entropy", "--grid", GRID,
                           "--folds", FOLDS, "--standardize", "--out", out)  # fmt: skip
    assert code == 0 and "mean accuracy" in stdout
    data = cr.data.read_csv(flowers, target="size")
    classes, y = data.target_classes()
    fold = kfold(len(y), FOLDS, seed=0, labels=y)
    for c in range(3):  # 16, 9, 6 rows: 5 or 6, 3, 2 of each class in a fold
        assert np.bincount(fold[y == c]).max() - np.bincount(fold[y == c]).min() <= 1
    line = next(
        r for r in _lines(out)[1:] if r["config"]["hidden"] == [2] and r["config"]["lr"] == 0.1 and r["fold"] == 2
    )
    train, held = fold != 2, fold == 2
    scaling = modelfile.Scaling.fit(data.x[train])  # --standardize: from the fold's training rows
    z = (data.x - np.array(scaling.feature_mean)) / np.array(scaling.feature_std)
    net = cr.nn.mlp([2, 2, 3], "softplus", seed=0)
    cr.fit(net, z[train], y[train], loss="cross_entropy", optimizer=cr.optim.Adam(lr=0.1), max_iter=40, seed=0,
           compile=True)  # fmt: skip
    predicted = np.array(classes)[net(z[held]).data.argmax(axis=1)]
    assert line["score"] == pytest.approx(accuracy_score(np.array(classes)[y[held]], predicted), rel=1e-12)
    code, predictions, _ = run_cli(capsys, "predict", out / "model.json", flowers)
    assert code == 0 and set(predictions.splitlines()[1].split(",")[-1:]) <= set(classes)


def test_restarts_score_as_fit_with_the_same_restarts_does(tmp_path, curve):
    # compared with fit itself, not with numbers: how restarts draw their starts may change
    from sklearn.metrics import r2_score

    out = tmp_path / "out"
    sweep(curve, "y", "hidden=3;lr=0.1;max-iter=30", folds=FOLDS, restarts=3, out=out, plot=False)
    data = cr.data.read_csv(curve, target="y")
    x, y = data.x, data.target_numbers()
    fold = kfold(len(x), FOLDS, seed=0)
    net = cr.nn.mlp([2, 3, 1], "softplus", seed=0)
    cr.fit(net, x[fold != 0], y[fold != 0], loss="mse", max_iter=30, seed=0, restarts=3, compile=True)
    line = next(r for r in _lines(out)[1:] if r["fold"] == 0)
    assert line["score"] == pytest.approx(r2_score(y[fold == 0], net(x[fold == 0]).data[:, 0]), rel=1e-12)


def test_a_configuration_that_diverges_has_no_score_and_is_not_the_best(tmp_path, curve, capsys):
    out = tmp_path / "out"
    found = sweep(curve, "y", "lr=0.1,1e6;max-iter=30", folds=FOLDS, out=out, plot=False)
    diverged = [r for r in _lines(out)[1:] if r["config"]["lr"] == 1e6]
    assert len(diverged) == FOLDS and all(r["score"] is None and r["stop_reason"] == "diverged" for r in diverged)
    assert found.best.config == {"lr": 0.1, "max_iter": 30}
    assert np.isnan(found.table[1].mean) and found.table[1].rank == 2
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["fold1"] == "" and rows[1]["mean_score"] == "nan"


# ---- resuming ----------------------------------------------------------------------------------------


def test_a_sweep_cut_short_by_a_kill_resumes_to_the_same_table_ignoring_the_half_line(tmp_path, curve):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    first = sweep(curve, "y", GRID, folds=FOLDS, out=whole, plot=False)
    assert first.ran == 4 * FOLDS
    with open(whole / "results.jsonl", "rb") as f:
        lines = f.read().split(b"\n")
    cut.mkdir()
    (cut / "results.jsonl").write_bytes(b"\n".join(lines[:6]) + b"\n" + lines[6][:40])  # header, 5 results, half a line
    notes = []
    again = sweep(curve, "y", GRID, folds=FOLDS, out=cut, plot=False, notes=notes.append)
    assert again.ran == 4 * FOLDS - 5
    assert any("cut short" in n for n in notes) and any("5 of 12 results found" in n for n in notes)
    assert again.table == first.table
    _same_outputs(whole, cut)
    resumed = _lines(cut)  # every line whole again: the half line is gone, not glued to the next one
    assert len(resumed) == 1 + 4 * FOLDS
    key = lambda r: (json.dumps(r["config"]), r["fold"], r["score"])  # noqa: E731
    assert sorted(map(key, resumed[1:])) == sorted(map(key, _lines(whole)[1:]))
    assert sweep(curve, "y", GRID, folds=FOLDS, out=cut, plot=False).ran == 0  # all there: nothing runs again


def test_an_empty_results_file_left_by_a_kill_before_the_header_starts_over(tmp_path, curve):
    whole, empty = tmp_path / "whole", tmp_path / "empty"
    first = sweep(curve, "y", GRID, folds=FOLDS, out=whole, plot=False)
    empty.mkdir()
    (empty / "results.jsonl").write_bytes(b"")  # created, then killed before its first line
    again = sweep(curve, "y", GRID, folds=FOLDS, out=empty, plot=False)
    assert again.ran == first.ran and again.table == first.table
    _same_outputs(whole, empty)


def test_ctrl_c_says_how_many_results_are_saved_exits_130_and_the_same_command_resumes(
    tmp_path, curve, capsys, monkeypatch
):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    sweep(curve, "y", GRID, folds=FOLDS, out=whole, plot=False)
    calls = []
    run_fold = sweep_module.run_fold

    def interrupted_at_the_fifth(*args):
        calls.append(args)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return run_fold(*args)

    monkeypatch.setattr(sweep_module, "run_fold", interrupted_at_the_fifth)
    command = ["sweep", curve, "--target", "y", "--grid", GRID, "--folds", FOLDS, "--out", stopped]
    code, out, err = run_cli(capsys, *command)
    assert code == 130 and out == ""
    assert err.strip().splitlines()[-1:] == [
        f"chainrule: interrupted: 4 of 12 results are saved in {stopped / 'results.jsonl'}; run the same command "
        "again to resume"
    ]
    monkeypatch.undo()
    code, out, err = run_cli(capsys, *command)
    assert code == 0 and "resuming: 4 of 12 results found" in err
    _same_outputs(whole, stopped)


def test_a_real_ctrl_c_in_a_running_sweep(tmp_path, curve):
    out = tmp_path / "out"
    grid = "hidden=2,3,4,5;lr=0.1,0.05,0.02,0.01;tol=0;max-iter=1500"  # 16 x 3 tasks of a few hundredths of a second
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "chainrule_command", "sweep", str(curve), "--target", "y", "--grid", grid,
         "--folds", "3", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # (a background job may ignore SIGINT)
    )  # fmt: skip
    results, deadline = out / "results.jsonl", time.monotonic() + 60
    while (
        process.poll() is None
        and time.monotonic() < deadline
        and not (results.exists() and results.read_bytes().count(b"\n") >= 3)
    ):
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    saved = len(_lines(out)) - 1
    assert process.returncode == 130, err
    assert 2 <= saved < 48
    assert err.strip().splitlines()[-1] == (
        f"chainrule: interrupted: {saved} of 48 results are saved in {results}; run the same command again to resume"
    )


# ---- another sweep's file ----------------------------------------------------------------------------


def test_a_results_file_of_another_sweep_is_refused_in_one_line(tmp_path, curve, capsys):
    out = tmp_path / "out"
    sweep(curve, "y", GRID, folds=FOLDS, out=out, plot=False)
    before = (out / "results.jsonl").read_bytes()
    for change, word in (
        ({"grid": "hidden=2;lr=0.1;max-iter=40"}, "another grid"),
        ({"folds": 4}, "another folds"),
        ({"seed": 1}, "another seed"),
        ({"restarts": 2}, "another restarts"),
        ({"loss": "ssr"}, "another loss"),
    ):
        arguments = {"grid": GRID, "folds": FOLDS, **change}
        with pytest.raises(ValueError, match=word):
            sweep(curve, "y", out=out, **arguments)
    renamed = tmp_path / "renamed.csv"
    shutil.copy(curve, renamed)  # the same bytes under another name: the same data set, nothing to run again
    assert sweep(renamed, "y", GRID, folds=FOLDS, out=out, plot=False).ran == 0
    before = (out / "results.jsonl").read_bytes()
    curve.write_text(curve.read_text() + "0.5,0.5,0.5\n")  # one row more
    code, _, err = run_cli(capsys, "sweep", curve, "--target", "y", "--grid", GRID, "--folds", FOLDS, "--out", out)
    assert code == 2 and err.count("\n") == 1 and "another data file (its SHA-256)" in err
    assert (out / "results.jsonl").read_bytes() == before
    (out / "results.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not a sweep's header"):
        sweep(curve, "y", GRID, folds=FOLDS, out=out, plot=False)
    (out / "results.jsonl").write_text("someone's notes, no newline")  # not taken for a header cut short
    with pytest.raises(ValueError, match="is not a chainrule sweep's results file"):
        sweep(curve, "y", GRID, folds=FOLDS, out=out, plot=False)
    assert (out / "results.jsonl").read_text() == "someone's notes, no newline"


# ---- the command line ---------------------------------------------------------------------------------


def test_the_command_prints_the_table_and_writes_the_four_files(tmp_path, curve, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "sweep", curve, "--target", "y", "--grid", GRID, "--folds", FOLDS, "--out", out)
    assert code == 0, err
    assert "mean R^2" in stdout and "best: hidden=" in stdout and f"wrote {out / 'model.json'}" in stdout
    assert "sweep: 12/12 tasks" in err  # (stderr is not a terminal here: plain progress lines)
    assert sorted(os.listdir(out)) == ["model.json", "results.jsonl", "scores.csv", "scores.png"]
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "scores.csv") as f:
        head = next(csv.reader(f))
    assert head == [
        "hidden",
        "optimizer",
        "lr",
        "max_iter",
        "mean_score",
        "std_score",
        "rank",
        "fold1",
        "fold2",
        "fold3",
    ]
    code, predictions, _ = run_cli(capsys, "predict", out / "model.json", curve)
    assert code == 0 and predictions.splitlines()[0] == "a,b,y,predicted_y"
    code, quiet, _ = run_cli(capsys, "sweep", curve, "--target", "y", "--grid", GRID, "--folds", FOLDS, "--out", out,
                          "--quiet")  # fmt: skip
    assert code == 0 and quiet == ""


# ---- where the tasks run --------------------------------------------------------------------------------


def test_one_worker_two_workers_and_in_process_give_the_same_files(tmp_path, curve):
    here = sweep(curve, "y", GRID, folds=FOLDS, out=tmp_path / "here", plot=False)
    for workers in (1, 2):
        there = sweep(curve, "y", GRID, folds=FOLDS, out=tmp_path / f"w{workers}", plot=False, workers=workers)
        assert there.table == here.table
        _same_outputs(tmp_path / "here", tmp_path / f"w{workers}")


def test_a_dask_cluster_gives_the_same_files_as_in_process(tmp_path, curve, cluster):
    here = sweep(curve, "y", GRID, folds=FOLDS, out=tmp_path / "here", plot=False)
    there = sweep(
        curve, "y", GRID, folds=FOLDS, out=tmp_path / "there", plot=False, scheduler=cluster.scheduler_address
    )
    assert there.table == here.table
    _same_outputs(tmp_path / "here", tmp_path / "there")
    shutil.rmtree(tmp_path / "there")


def test_more_local_workers_than_cores_is_refused_before_anything_is_written(tmp_path, capsys, curve):
    many = max(2, os.cpu_count() or 1) + 1
    code, _, err = run_cli(capsys, "sweep", curve, "--target", "y", "--grid", "hidden=2", "--folds", "2",
                        "--workers", many, "--out", tmp_path / "s")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and f"--workers must be an integer in [1, {many - 1}]" in err
    assert not (tmp_path / "s").exists()
