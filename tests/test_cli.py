"""chainrule fit / predict / evaluate / plot: your own data from the command line.

Bad input gives one line on stderr and exit status 2, and writes nothing.
(The demo command is tested in test_demo.py.)
"""

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from chainrule import cli, modelfile, restarts
from chainrule.nn import mlp
from commandline import run_cli

# A fast, reliable set-up for the 30-row curve (the lessons' defaults, ssr with lr 0.1, are tuned for 3 rows).
QUICK = ["--hidden", "8", "--loss", "mse", "--optimizer", "adam", "--lr", "0.05", "--max-iter", "300"]


@pytest.fixture
def curve(tmp_path):
    """30 rows of y = sin(2x) on [0, 3], plus a column the model ignores."""
    x = np.linspace(0, 3, 30)
    rows = "".join(f"{float(a)!r},row{i},{float(np.sin(2 * a))!r}\n" for i, a in enumerate(x))
    path = tmp_path / "curve.csv"
    path.write_text("x,name,y\n" + rows)
    return path


@pytest.fixture
def flowers(tmp_path):
    """40 rows, two features, text labels 'small' / 'large'."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(size=40)
    labels = np.where(a + b > 0, "large", "small")
    path = tmp_path / "flowers.csv"
    path.write_text("a,b,size\n" + "".join(f"{float(p)!r},{float(q)!r},{s}\n" for p, q, s in zip(a, b, labels)))
    return path


def _fit(capsys, data, out, *extra):
    code, stdout, err = run_cli(capsys, "fit", data, "--out", out, *extra)
    assert code == 0, err
    return stdout, err


# ---- end to end ---------------------------------------------------------------------------


def test_fit_predict_evaluate_plot_end_to_end(tmp_path, capsys, curve):
    model_path, predictions, figure = tmp_path / "model.json", tmp_path / "predictions.csv", tmp_path / "fit.png"
    out, _ = _fit(capsys, curve, model_path, "--target", "y", "--features", "x", *QUICK)
    assert "fitting 'y' from x (30 rows)" in out and f"wrote {model_path}" in out
    assert "final loss: mse" in out and "stopped:" in out and "time:" in out

    assert run_cli(capsys, "predict", model_path, curve, "--out", predictions)[0] == 0
    with open(predictions, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["x", "name", "y", "predicted_y"] and rows[5][:3] == ["0.41379310344827586", "row4", rows[5][2]]
    model = modelfile.load(model_path)
    assert [float(r[3]) for r in rows[1:]] == model.predict(curve).tolist()  # written exactly

    code, out, _ = run_cli(capsys, "evaluate", model_path, curve)
    assert code == 0 and out.startswith("loss: mse ") and "on 30 rows" in out
    assert np.sqrt(model.evaluate(curve).loss) < 0.5  # it learned the curve

    assert run_cli(capsys, "plot", model_path, curve, "--out", figure)[0] == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 1000


def test_fit_prints_the_same_final_loss_that_evaluate_gives(tmp_path, capsys, curve):
    out, _ = _fit(capsys, curve, tmp_path / "m.json", "--target", "y", "--features", "x", "--standardize", *QUICK)
    final = next(line for line in out.splitlines() if line.startswith("final loss"))
    _, evaluated, _ = run_cli(capsys, "evaluate", tmp_path / "m.json", curve)
    assert final.split()[3] == evaluated.split()[2]


def test_predict_prints_csv_to_stdout_without_out(tmp_path, capsys, curve):
    _fit(capsys, curve, tmp_path / "m.json", "--target", "y", "--features", "x", "--quiet", *QUICK)
    code, out, err = run_cli(capsys, "predict", tmp_path / "m.json", curve)
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and err == "" and len(rows) == 31 and rows[0][-1] == "predicted_y"


def test_a_classifier_with_text_labels(tmp_path, capsys, flowers, monkeypatch):
    model_path = tmp_path / "flowers.json"
    _fit(capsys, flowers, model_path, "--target", "size", "--loss", "cross-entropy", "--max-iter", "200")
    model = modelfile.load(model_path)
    assert model.classes == ["large", "small"]
    passes = []
    outputs = modelfile.Model.outputs
    monkeypatch.setattr(modelfile.Model, "outputs", lambda self, data: passes.append(1) or outputs(self, data))
    code, out, _ = run_cli(capsys, "predict", model_path, flowers, "--proba")
    assert len(passes) == 1  # labels and probabilities from one forward pass over the 40 rows
    monkeypatch.undo()
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["a", "b", "size", "predicted_size", "probability_large", "probability_small"]
    assert {r[3] for r in rows[1:]} <= {"large", "small"}
    assert all(abs(float(r[4]) + float(r[5]) - 1) < 1e-12 for r in rows[1:])
    data = model.read_csv(flowers)  # the same cells as the model's own predict and predict_proba
    assert [r[3] for r in rows[1:]] == list(model.predict(data))
    assert [[float(r[4]), float(r[5])] for r in rows[1:]] == model.predict_proba(data).tolist()
    code, out, _ = run_cli(capsys, "evaluate", model_path, flowers)
    assert code == 0 and "loss: cross_entropy" in out and "accuracy:" in out and "of 40 rows" in out
    assert run_cli(capsys, "plot", model_path, flowers, "--out", tmp_path / "table.svg")[0] == 0
    assert b"<svg" in (tmp_path / "table.svg").read_bytes()[:400]


@pytest.mark.parametrize("target, kind", [("y", "curve"), ("band", "probabilities")])
def test_plot_with_one_feature(tmp_path, capsys, target, kind):
    x = np.linspace(-3, 3, 24)
    band = np.where(x < -1, "low", np.where(x < 1, "mid", "high"))
    path = tmp_path / "one.csv"
    path.write_text("x,y,band\n" + "".join(f"{float(a)!r},{float(a * a)!r},{b}\n" for a, b in zip(x, band)))
    other = "band" if target == "y" else "y"
    loss = ["--loss", "cross-entropy"] if kind == "probabilities" else ["--loss", "mse"]
    _fit(capsys, path, tmp_path / "m.json", "--target", target, "--features", "x", *loss, "--max-iter", "50", "--quiet")
    assert other not in modelfile.load(tmp_path / "m.json").features
    assert run_cli(capsys, "plot", tmp_path / "m.json", path, "--out", tmp_path / "f.png")[0] == 0
    assert (tmp_path / "f.png").stat().st_size > 1000


# ---- progress, warnings, divergence, Ctrl-C -------------------------------------------------


def test_progress_is_plain_lines_when_not_a_terminal_and_nothing_when_quiet(tmp_path, capsys, curve):
    out, _ = _fit(
        capsys,
        curve,
        tmp_path / "m.json",
        "--target",
        "y",
        "--features",
        "x",
        *QUICK[:-2],
        "--max-iter",
        "50",
        "--tol",
        "0",
    )
    lines = [line for line in out.splitlines() if line.startswith("iteration ")]
    assert [line.split()[1] for line in lines] == [f"{k}/50" for k in range(5, 55, 5)]
    assert "loss" in lines[0] and "largest step" in lines[0]
    out, err = _fit(capsys, curve, tmp_path / "q.json", "--target", "y", "--features", "x", *QUICK, "--quiet")
    assert out == ""


def test_progress_bar_on_a_terminal(tmp_path, capsys, monkeypatch, curve):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    out, _ = _fit(capsys, curve, tmp_path / "m.json", "--target", "y", "--features", "x", *QUICK)
    assert "training" in out and "largest step" in out and (tmp_path / "m.json").exists()


def test_not_converging_is_one_warning_line_and_the_model_is_still_written(tmp_path, capsys, curve):
    _, err = _fit(
        capsys, curve, tmp_path / "m.json", "--target", "y", "--features", "x", "--loss", "mse", "--max-iter", "3"
    )
    assert err.count("\n") == 1 and err.startswith("chainrule: warning: did not converge: reached max_iter = 3")
    assert "raise --max-iter" in err and "ConvergenceWarning" not in err
    assert (tmp_path / "m.json").exists()


def test_divergence_is_one_error_line_and_writes_nothing(tmp_path, capsys, curve):
    code, _, err = run_cli(
        capsys, "fit", curve, "--target", "y", "--features", "x", "--lr", "50", "--out", tmp_path / "m.json"
    )
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("chainrule: error: training diverged: diverged at iteration")
    assert "Nothing was written; try a smaller --lr (it was 50)" in err
    assert not (tmp_path / "m.json").exists()


@pytest.fixture
def default_sigint():
    """SIGINT raises KeyboardInterrupt, as in a terminal, whatever the handler pytest was started with."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_stops_after_the_iteration_and_saves_the_best_model(
    tmp_path, capsys, monkeypatch, curve, default_sigint
):
    show = cli._Progress.show

    def press_ctrl_c_at_iteration_5(self, history, force=False):
        show(self, history, force)
        if history.n_iter == 5:
            signal.raise_signal(signal.SIGINT)  # goes to the handler fit's callback installed

    monkeypatch.setattr(cli._Progress, "show", press_ctrl_c_at_iteration_5)
    out, err = _fit(
        capsys,
        curve,
        tmp_path / "m.json",
        "--target",
        "y",
        "--features",
        "x",
        "--loss",
        "mse",
        "--tol",
        "0",
        "--max-iter",
        "100000",
    )
    assert "Ctrl-C: stopping after iteration 5" in err
    assert "interrupted at iteration 5: saved the best model seen, from iteration" in out
    training = modelfile.load(tmp_path / "m.json").training
    assert training["n_iter"] == 5 and training["interrupted"] is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back afterwards


def test_ctrl_c_among_the_random_starts_saves_the_best_start_where_it_got_to(
    tmp_path, capsys, monkeypatch, curve, default_sigint
):
    largest, calls = restarts._largest_per_start, []

    def press_ctrl_c_in_iteration_5(steps, n):
        calls.append(1)
        if len(calls) == 5:
            signal.raise_signal(signal.SIGINT)  # inside the population's 5th iteration
        return largest(steps, n)

    monkeypatch.setattr(restarts, "_largest_per_start", press_ctrl_c_in_iteration_5)
    args = ["--target", "y", "--features", "x", "--restarts", "4", "--max-iter", "100000", "--tol", "1e-12"]
    out, err = _fit(capsys, curve, tmp_path / "m.json", *args)
    assert "interrupted while training the random starts: saved start" in out
    assert re.search(r"of 4 \(the lowest loss, \S+\) as it was after 4 iterations, where its loss was lowest", out)
    assert "s for the random starts" in out and "for 0 iterations" not in out
    training = modelfile.load(tmp_path / "m.json").training
    assert training["interrupted"] is True and training["n_iter"] == 0
    lowest = float(re.search(r"final losses from (\S+) to", out).group(1))
    assert training["final_loss"] == pytest.approx(lowest, rel=1e-5)  # the file holds that start's values
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("stream", [False, True], ids=["rows", "stream"])
def test_ctrl_c_between_training_and_the_write_keeps_the_finished_model(
    tmp_path, capsys, monkeypatch, curve, default_sigint, stream
):
    # training has ended, the training record is being made (the final loss over every row): the model is
    # finished, so a Ctrl-C here waits for the file instead of throwing the model away
    record = cli._record

    def press_ctrl_c_then_record(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return record(*args, **kwargs)

    monkeypatch.setattr(cli, "_record", press_ctrl_c_then_record)
    extra = ["--stream", "--batch-size", "10"] if stream else []
    code, out, err = run_cli(
        capsys, "fit", curve, "--target", "y", "--features", "x", "--max-iter", "5", "--out", tmp_path / "m.json",
        *extra,
    )  # fmt: skip
    assert code == 130 and err.strip().splitlines()[-1] == (
        f"chainrule: Ctrl-C after training: {tmp_path / 'm.json'} was written in full first"
    )
    assert modelfile.load(tmp_path / "m.json").training["n_iter"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_the_demo_or_after_an_export_names_what_is_on_disk(tmp_path, capsys, monkeypatch, curve):
    def two_pictures_then_ctrl_c(seed, out, animations):
        os.makedirs(out, exist_ok=True)
        (tmp_path / "pictures" / "ssr_b3.png").write_bytes(b"\x89PNG")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_demo", two_pictures_then_ctrl_c)
    code, _, err = run_cli(capsys, "demo", "--out", tmp_path / "pictures")
    assert (
        code == 130
        and err.strip() == f"chainrule: interrupted; the pictures written before it are in {tmp_path / 'pictures'}"
    )
    pytest.importorskip("onnx")
    assert run_cli(capsys, "fit", curve, "--target", "y", "--features", "x", "--out", tmp_path / "m.json")[0] == 0

    def ctrl_c_at_wrote(*args, **kwargs):
        if args and str(args[0]).startswith("wrote"):
            raise KeyboardInterrupt
        print(*args, **kwargs)

    monkeypatch.setattr(cli, "print", ctrl_c_at_wrote, raising=False)
    code, _, err = run_cli(capsys, "export", tmp_path / "m.json", "--out", tmp_path / "m.onnx")
    assert code == 130 and (tmp_path / "m.onnx").exists()
    assert f"interrupted; {tmp_path / 'm.onnx'} written in full first" in err


def test_ctrl_c_after_the_random_starts_are_done_stops_the_best_start_as_any_run(default_sigint):
    # between the starts' end and the best start's first iteration, Ctrl-C no longer raises (which threw the
    # finished starts away): it asks the run to stop, as during any run
    class Starts:
        def __init__(self, finished):
            self.history = types.SimpleNamespace(restart_losses=np.ones(3) if finished else None)
            self.interrupted = False

        def interrupt(self):
            self.interrupted = True

    for finished in (False, True):
        progress = cli._Progress(10, quiet=True, population=True)
        progress.previous, progress.trainer = signal.default_int_handler, Starts(finished)
        if finished:
            progress._interrupt(signal.SIGINT, None)
        else:
            with pytest.raises(KeyboardInterrupt):
                progress._interrupt(signal.SIGINT, None)
        assert progress.interrupted and progress.trainer.interrupted is not finished


def test_a_second_ctrl_c_after_training_aborts(tmp_path, capsys, monkeypatch, curve, default_sigint):
    # one Ctrl-C after training is held back (the finished model is written); a second one means "stop now"
    record = cli._record

    def ctrl_c_twice_then_record(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        return record(*args, **kwargs)

    monkeypatch.setattr(cli, "_record", ctrl_c_twice_then_record)
    code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--features", "x", "--max-iter", "5", "--out",
                           tmp_path / "m.json")  # fmt: skip
    assert code == 130 and err.strip().splitlines()[-1] == "chainrule: interrupted; nothing written"
    assert not (tmp_path / "m.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_after_a_file_is_written_says_so_not_nothing_written(
    tmp_path, capsys, monkeypatch, curve, default_sigint
):
    # the summary after fit's write is held back too; after plot's write, the message names the file
    summary = cli._summary

    def ctrl_c_in_the_summary(*args):
        signal.raise_signal(signal.SIGINT)
        summary(*args)

    monkeypatch.setattr(cli, "_summary", ctrl_c_in_the_summary)
    code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--features", "x", "--max-iter", "5", "--out",
                           tmp_path / "m.json")  # fmt: skip
    assert code == 130 and f"Ctrl-C after training: {tmp_path / 'm.json'} was written in full first" in err
    monkeypatch.undo()

    def ctrl_c_after_wrote(*args, **kwargs):
        print(*args, **kwargs)
        if args and str(args[0]).startswith("wrote"):
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(cli, "print", ctrl_c_after_wrote, raising=False)
    code, _, err = run_cli(capsys, "plot", tmp_path / "m.json", curve, "--out", tmp_path / "f.png")
    assert code == 130 and err.strip() == f"chainrule: interrupted; {tmp_path / 'f.png'} written in full first"
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_the_model_file_is_written_waits_for_it(tmp_path, capsys, monkeypatch, curve, default_sigint):
    save = cli.save

    def press_ctrl_c_then_save(path, model):
        signal.raise_signal(signal.SIGINT)
        save(path, model)

    monkeypatch.setattr(cli, "save", press_ctrl_c_then_save)
    code, out, err = run_cli(
        capsys, "fit", curve, "--target", "y", "--features", "x", "--max-iter", "5", "--out", tmp_path / "m.json"
    )
    assert code == 130 and f"Ctrl-C after training: {tmp_path / 'm.json'} was written in full first" in err
    assert modelfile.load(tmp_path / "m.json").training["n_iter"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _restore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the child gets Python's KeyboardInterrupt in any parent


@pytest.mark.parametrize("extra, said", [([], "interrupted at iteration"), (["--restarts", "20"], "random starts")])
def test_a_real_ctrl_c_in_a_child_process_saves_and_prints_no_traceback(tmp_path, curve, extra, said):
    command = [sys.executable, "-c", "import sys; from chainrule.cli import main; sys.exit(main())"]
    args = [
        "fit",
        str(curve),
        "--target",
        "y",
        "--features",
        "x",
        "--tol",
        "0",
        "--max-iter",
        "100000000",
        "--out",
        str(tmp_path / "m.json"),
    ]
    child = subprocess.Popen(
        command + args + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_restore_sigint
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("fitting"), line + child.communicate(timeout=60)[1]
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert "Traceback" not in err, err
    if child.returncode == 0:
        assert said in out and modelfile.load(tmp_path / "m.json").training["interrupted"] is True
    else:  # Ctrl-C came before training began
        assert child.returncode == 130 and "nothing written" in err and not (tmp_path / "m.json").exists()


def test_explain_on_data_that_overflows_the_model_is_one_line(tmp_path, capsys, curve):
    _fit(capsys, curve, tmp_path / "m.json", "--target", "y", "--features", "x")
    huge = tmp_path / "huge.csv"
    huge.write_text("x,y\n1e300,2\n-1e300,3\n")  # (w x)^2 of 1e300 is beyond a float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning of NumPy's either
        code, _, err = run_cli(capsys, "explain", "--model", tmp_path / "m.json", "--data", huge, "--param", "0.weight")
    assert code == 2 and err.count("\n") == 1 and "loss of" in err and "is inf" in err


@pytest.mark.parametrize("out", ["", "fifo"])
def test_an_out_that_cannot_be_a_file_is_refused_before_training(tmp_path, capsys, curve, monkeypatch, out):
    if out == "fifo":
        os.mkfifo(tmp_path / out)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "Trainer", None)  # training would fail loudly: the check must come first
    code, _, err = run_cli(capsys, "fit", curve, "--target", "y", "--features", "x", "--out", out)
    assert code == 2 and err.count("\n") == 1
    assert ("--out is empty" if not out else "fifo: it is not a regular file") in err


def test_a_missing_file_whose_name_holds_a_newline_is_one_line(tmp_path, capsys, curve):
    # found by the fuzzer: the OSError's file name was printed as it is, a line break and all
    code, out, err = run_cli(capsys, "predict", "{o\n1<dtype", curve)
    assert code == 2 and out == "" and err == "chainrule: error: '{o\\n1<dtype': No such file or directory\n"


def test_running_out_of_memory_beyond_the_estimate_is_one_line(tmp_path, capsys, monkeypatch, curve):
    # the size checks are estimates: a MemoryError past them (a lower ulimit, another process) is one line too
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 618. MiB for an array with shape (9000, 9000) and data type float64")

    monkeypatch.setattr(cli, "mlp", no_memory)
    code, out, err = run_cli(capsys, "fit", curve, "--target", "y", "--features", "x", "--out", tmp_path / "m.json")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("chainrule: error: out of memory (Unable to allocate 618. MiB for an array with shape (9000,")
    assert not (tmp_path / "m.json").exists()


def test_out_through_a_dangling_symlink_is_refused_before_training(tmp_path, capsys, curve):
    (tmp_path / "m.json").symlink_to(tmp_path / "nowhere" / "x.json")
    code, out, err = run_cli(capsys, "fit", curve, "--target", "y", "--features", "x", "--out", tmp_path / "m.json")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"(a symbolic link to {tmp_path / 'nowhere' / 'x.json'}): the directory {tmp_path / 'nowhere'}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.csv", "m.json"]  # no temporary file, no folder made


def _python(script, *args, cwd=None):
    """``python -c script args`` in a child with SIGINT's default handler (whatever the parent's is)."""
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True, text=True, timeout=60, preexec_fn=_restore_sigint, cwd=cwd,
    )  # fmt: skip


def test_ctrl_c_while_the_package_is_still_loading_is_one_line(tmp_path):
    """The command's entry point guards the import of chainrule (NumPy and all) against Ctrl-C."""
    press_ctrl_c_while_importing_numpy = (
        "import builtins, signal, sys\n"
        "real = builtins.__import__\n"
        "def imported(name, *a, **k):\n"
        "    if name == 'numpy':\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imported\n"
        "import chainrule_command\n"
        "sys.exit(chainrule_command.main())\n"
    )
    out = tmp_path / "m.json"
    child = _python(press_ctrl_c_while_importing_numpy, "fit", "x.csv", "--target", "y", "--out", out)
    assert child.returncode == 130, child.stderr
    assert child.stderr.strip().splitlines() == ["chainrule: interrupted while starting; nothing written"]
    assert not out.exists()


def test_an_import_error_caused_by_ctrl_c_is_the_interrupt_too(tmp_path):
    # A KeyboardInterrupt inside a C extension's import can come out as another error (NumPy's: "ImportError:
    # PyCapsule_Import could not import module "datetime""): the guard knows Ctrl-C came, so it is one line.
    press_ctrl_c_as_numpy_would = (
        "import builtins, signal, sys\n"
        "real = builtins.__import__\n"
        "def imported(name, *a, **k):\n"
        "    if name == 'numpy':\n"
        "        try:\n"
        "            signal.raise_signal(signal.SIGINT)\n"
        "        except KeyboardInterrupt:\n"
        "            raise ImportError('PyCapsule_Import could not import module \"datetime\"') from None\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imported\n"
        "import chainrule_command\n"
        "sys.exit(chainrule_command.main())\n"
    )
    child = _python(press_ctrl_c_as_numpy_would, "fit", "x.csv", "--target", "y", "--out", "m.json", cwd=tmp_path)
    assert child.returncode == 130, child.stderr
    assert child.stderr.strip().splitlines() == ["chainrule: interrupted while starting; nothing written"]
    # an import error without a Ctrl-C is still the error it is
    broken = press_ctrl_c_as_numpy_would.replace("signal.raise_signal(signal.SIGINT)", "raise KeyboardInterrupt")
    child = _python(broken)
    assert child.returncode == 1 and "ImportError: PyCapsule_Import" in child.stderr


def test_ctrl_c_after_the_command_has_returned_is_ignored(tmp_path):
    # Everything is written when main returns: a Ctrl-C while Python shuts down has nothing to stop, and
    # would print a traceback from threading._shutdown. The entry point ignores it from then on.
    script = (
        "import signal, sys, chainrule_command\n"
        "code = chainrule_command.main()\n"
        "print(code, signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
        "signal.raise_signal(signal.SIGINT)\n"
        "print('still here')\n"
    )
    child = _python(script, "fit", "x.csv", "--target", "y", "--out", "m.json", cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["2", "True", "still", "here"]  # (x.csv is missing: exit status 2)


def test_the_installed_command_goes_through_the_guard():
    """pyproject.toml's console script is the guarded entry point, and it runs the same main."""
    import chainrule_command

    project = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^chainrule = "chainrule_command:main"', project, re.MULTILINE)
    assert chainrule_command.main.__module__ == "chainrule_command"


# ---- bad input: one line, exit 2, nothing written ---------------------------------------------

FILES = {
    "empty.csv": "",
    "header.csv": "x,y\n",
    "one.csv": "x,y\n1,2\n",
    "text.csv": "x,y\n1,2\nten,3\n",
    "nan.csv": "x,y\n1,2\nnan,3\n",
    "inf.csv": "x,y\n1,2\n2,inf\n",
    "labels.csv": "x,y\n1,a\n2,b\n",
    "same.csv": "x,y\n1,a\n2,a\n",
    "ragged.csv": "x,y\n1,2\n3\n",
    "good.csv": "x,y\n1,2\n2,3\n3,5\n",
    "huge.csv": "x,z,y\n1,1e300,2\n2,-1e300,3\n3,1e300,5\n",
    "fractions.csv": "x,y\n1,0.5\n2,1.5\n3,2.25\n",
    "notamodel.json": '{"hello": "world"}',
    "v2.json": '{"format": "chainrule-model", "version": 2}',
    "garbage.json": "\x00\x01 not json",
}

FIT = ["fit", "{good.csv}", "--target", "y"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "{missing.csv}", "--target", "y"], r"missing.csv: No such file or directory"),
        (["fit", "{empty.csv}", "--target", "y"], r"empty.csv is empty"),
        (["fit", "{header.csv}", "--target", "y"], r"header.csv has a header line but no data rows"),
        (["fit", "{good.csv}", "--target", "z"], r"has no column 'z' \(the target\); its columns are \['x', 'y'\]"),
        (FIT + ["--features", "x,w"], r"has no column 'w' \(a feature\); its columns are \['x', 'y'\]"),
        (["fit", "{text.csv}", "--target", "y"], r"text.csv line 3, column 'x': 'ten' is not a number"),
        (["fit", "{nan.csv}", "--target", "y"], r"nan.csv line 3, column 'x': 'nan' is not a finite number"),
        (["fit", "{inf.csv}", "--target", "y"], r"inf.csv line 3, column 'y': 'inf' is not a finite number"),
        (["fit", "{ragged.csv}", "--target", "y"], r"ragged.csv line 3 has 1 cells but the header has 2 columns"),
        (["fit", "{one.csv}", "--target", "y"], r"one.csv has 1 data row; training needs at least 2"),
        (
            ["fit", "{same.csv}", "--target", "y", "--loss", "cross-entropy"],
            r"single value \('a'\).*at least 2 classes",
        ),
        (["fit", "{labels.csv}", "--target", "y"], r"line 2, column 'y': 'a' is not a number; a regression target"),
        (FIT + ["--lr", "0"], r"--lr must be a finite number > 0, got 0.0"),
        (FIT + ["--lr", "-0.1"], r"--lr must be a finite number > 0, got -0.1"),
        (FIT + ["--lr", "nan"], r"--lr must be a finite number > 0, got nan"),
        (FIT + ["--tol", "-1"], r"--tol must be a finite number >= 0, got -1.0"),
        (FIT + ["--max-iter", "0"], r"--max-iter must be an integer >= 1, got 0"),
        (FIT + ["--batch-size", "0"], r"--batch-size must be an integer >= 1, got 0"),
        (FIT + ["--restarts", "0"], r"--restarts must be an integer >= 1, got 0"),
        (FIT + ["--tol", "inf"], r"--tol must be a finite number >= 0, got inf"),
        (FIT + ["--hidden", "4,zero"], r"--hidden must be integers >= 1 separated by commas .* got '4,zero'"),
        (FIT + ["--hidden", "0"], r"--hidden must be integers >= 1"),
        (FIT + ["--features", "x,,y"], r"--features must be column names separated by commas"),
        (FIT + ["--features", "y"], r"column 'y' is the target and cannot also be a feature"),
        # checked before anything is allocated or trained (the reproductions)
        # (1 + 1) x 1e12 + (1e12 + 1) x 1 = 3,000,000,000,001 parameters, above a model file's 5e7
        (FIT + ["--hidden", "1000000000000"], r"1-1000000000000-1 network has 3,000,000,000,001 parameters, more "),
        # 1-2000-2000-1: 2 x 2000 + 2001 x 2000 + 2001 = 4,008,001 parameters; 11 copies and 3 rows x 2000:
        # 44,088,011 + 6,000 = 44,094,011 float64 numbers a start, within 2e8; 5 starts are 2.2e8, not
        (FIT + ["--hidden", "2000,2000", "--restarts", "5"], r"x 5 --restarts on 3 rows needs about 2.2e\+08 float64"),
        (FIT + ["--restarts", "1000000000"], r"x 1000000000 --restarts .* more than the limit of 2e\+08"),
        (FIT + ["--out", "{good.csv}"], r"--out .*good.csv is the input file .*good.csv; choose another name"),
        (
            ["fit", "{huge.csv}", "--target", "y", "--standardize"],
            r"--standardize cannot scale column 'z': .*std inf",
        ),
        (FIT + ["--seed", "-1"], r"--seed must be an integer >= 0, got -1"),
        (
            ["fit", "{fractions.csv}", "--target", "y", "--loss", "cross-entropy"],
            r"treats 'y' as class labels, but it holds continuous numbers .*use --loss mse",
        ),
        (["predict", "{model.json}", "{good.csv}", "--out", "{good.csv}"], r"is the input file .*good.csv"),
        (["predict", "{model.json}", "{good.csv}", "--out", "{model.json}"], r"is the input file .*model.json"),
        (["plot", "{model.json}", "{good.csv}", "--out", "{model.json}"], r"--out must end in one of"),
        (["demo", "--seed", "-1", "--out", ""], r"--seed must be an integer >= 0, got -1"),
        (["predict", "{good.csv}", "{good.csv}"], r"good.csv is not a chainrule model file \(not JSON"),
        (["predict", "{notamodel.json}", "{good.csv}"], r"not a chainrule model file \(format None"),
        (["predict", "{v2.json}", "{good.csv}"], r"version 2 is not supported; this chainrule reads version 1"),
        (["predict", "{garbage.json}", "{good.csv}"], r"garbage.json is not a chainrule model file"),
        (["predict", "{missing.json}", "{good.csv}"], r"missing.json: No such file or directory"),
        (["predict", "{model.json}", "{missing.csv}"], r"missing.csv: No such file or directory"),
        (["predict", "{model.json}", "{text.csv}"], r"text.csv line 3, column 'x': 'ten' is not a number"),
        (
            ["predict", "{model.json}", "{good.csv}", "--proba"],
            r"--proba needs a classifier; .*model.json does regression",
        ),
        (["evaluate", "{model.json}", "{labels.csv}"], r"labels.csv line 2, column 'y': 'a' is not a number"),
        (["evaluate", "{notamodel.json}", "{good.csv}"], r"not a chainrule model file"),
        (["plot", "{model.json}", "{good.csv}", "--out", "{fig.jpg}"], r"--out must end in one of .png, .svg, .pdf"),
        (["plot", "{model.json}", "{header.csv}"], r"header.csv has a header line but no data rows"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, message):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    modelfile.save(tmp_path / "model.json", mlp([1, 2, 1], seed=0), features=["x"], target="y")
    before = set(os.listdir(tmp_path))
    out_name = "fig.png" if args[0] == "plot" else "out.json" if args[0] == "fit" else "out.csv"
    if "--out" not in args and args[0] not in ("evaluate", "demo"):
        args = args + ["--out", "{" + out_name + "}"]
    code, _, err = run_cli(capsys, *[_fill(a, tmp_path) for a in args])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("chainrule: error: "), err
    assert re.search(message, err), err
    assert set(os.listdir(tmp_path)) == before  # no output file, no temp file
    assert all((tmp_path / name).read_text() == text for name, text in FILES.items())  # no input overwritten


def test_predictions_that_are_not_finite_are_one_line_and_nothing_written(tmp_path, capsys):
    net = mlp([1, 2, 1], activation="relu", seed=0)
    for p in net.parameters():
        p.data[...] = 1e100  # (MAX_MAGNITUDE) 1e100 x 1e300 overflows to inf
    modelfile.save(tmp_path / "model.json", net, features=["x"], target="y")
    (tmp_path / "new.csv").write_text("x\n1e300\n2e300\n")
    code, out, err = run_cli(
        capsys, "predict", tmp_path / "model.json", tmp_path / "new.csv", "--out", tmp_path / "p.csv"
    )
    assert code == 2 and err.count("\n") == 1, err
    assert "the model's output is not a finite number (nan or inf) on 2 of 2 rows, first on data row 1" in err
    assert "RuntimeWarning" not in err and not (tmp_path / "p.csv").exists()


def test_two_fits_with_the_same_seed_write_the_same_bytes(tmp_path, capsys, curve):
    for name in ("a.json", "b.json"):
        _fit(capsys, curve, tmp_path / name, "--target", "y", "--features", "x", "--max-iter", "50", "--seed", "3")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert "seconds" not in modelfile.load(tmp_path / "a.json").training  # the time is printed, not saved


def test_a_learning_rate_too_small_for_the_tol_warns_at_iteration_1(tmp_path, capsys, curve):
    out, err = _fit(capsys, curve, tmp_path / "m.json", "--target", "y", "--features", "x", "--lr", "1e-300")
    assert "stopped: every step size fell below 0.001 at iteration 1" in out
    assert err.count("\n") == 1 and "converged at iteration 1" in err and "learning rate may be too small" in err


def _fill(arg, folder):
    """ "{name}" in an argument -> the path of name in the test's folder."""
    return re.sub(r"\{([^}]+)\}", lambda m: str(folder / m.group(1)), arg)


def test_an_output_folder_that_does_not_exist_is_reported_before_training(tmp_path, capsys):
    (tmp_path / "good.csv").write_text(FILES["good.csv"])
    code, out, err = run_cli(capsys, "fit", tmp_path / "good.csv", "--target", "y", "--out", tmp_path / "no" / "m.json")
    assert code == 2 and "the directory" in err and "does not exist" in err and out == ""


def test_argparse_mistakes_exit_2(capsys):
    code, _, err = run_cli(capsys, "fit", "data.csv", "--target", "y", "--out", "m.json", "--optimizer", "sgd")
    assert code == 2 and "invalid choice: 'sgd'" in err


# ---- help -------------------------------------------------------------------------------------


def test_fit_help_explains_every_option_with_an_example(capsys):
    code, out, _ = run_cli(capsys, "fit", "--help")
    assert code == 0
    for option in (
        "--target",
        "--features",
        "--hidden",
        "--activation",
        "--loss",
        "--optimizer",
        "--lr",
        "--tol",
        "--max-iter",
        "--batch-size",
        "--seed",
        "--standardize",
        "--quiet",
        "--out",
    ):
        assert option in out, option
    assert "examples:" in out and "chainrule fit dosage.csv --target effect --out model.json" in out
    assert "Ctrl-C" in out


@pytest.mark.parametrize("command", ["predict", "evaluate", "plot"])
def test_every_command_has_help_with_an_example(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and f"chainrule {command} model.json" in out


def test_the_console_script_exits_2_on_bad_input(tmp_path):
    script = Path(sys.executable).parent / "chainrule"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "chainrule.cli"]
    done = subprocess.run(
        command + ["evaluate", str(tmp_path / "none.json"), "x.csv"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stderr.strip().endswith("none.json: No such file or directory")
