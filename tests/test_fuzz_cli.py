"""The command line under random argv: exit 0 or 2, never a traceback; on 2 one line and nothing written.

The argv is built from the real options with values a user might mistype (huge, negative, nan, not a
number, empty) and paths that are missing, folders, or the input itself, on small valid and invalid CSV
files. ``make fuzz`` runs the coverage-guided version of this (fuzz/run.py, atheris).
"""

import hashlib
import itertools
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chainrule import cli, modelfile
from chainrule.nn import mlp

FILES = {
    "good.csv": "x,z,y\n0,1,0.5\n0.5,2,1.5\n1,0,0.25\n1.5,1,2\n2,3,1\n2.5,2,0\n",
    "labels.csv": "x,z,label\n0,1,a\n1,0,b\n2,1,a\n3,0,b\n",
    "huge.csv": "x,z,y\n1e300,1,2\n-1e300,2,3\n1e300,0,5\n",
    "empty.csv": "",
    "header.csv": "x,z,y\n",
    "ragged.csv": "x,z,y\n1,2\n",
    "text.csv": "x,z,y\nten,1,2\n1,2,3\n",
    "nan.csv": "x,z,y\nnan,1,2\n1,2,3\n",
    "quoted.csv": 'x,z,y\n"1,5",2,3\n1,2,3\n',
    "bom.csv": "\ufeffx,z,y\n1,2,3\n2,3,4\n",
    "notjson.json": "\x00 not json",
    "wrong.json": '{"format": "chainrule-model", "version": 1, "network": 3}',
}

NUMBERS = ["0", "-1", "-0", "1", "0.05", "nan", "inf", "-inf", "1e-300", "1e300", "1e30", "abc", "", "2,3", "0x10"]
INTEGERS = ["0", "-1", "1", "2", "3", "abc", "", "1.5", "nan", "2,3", "100000000", "1000000000000", "-9" * 5]
SMALL = ["0", "-1", "1", "3", "20", "abc", "", "1.5", "nan", "1e9"]  # --max-iter: valid ones stay quick
TEXT = ["x", "z", "y", "label", "nope", "", ",", "x,z", "x,,z", "y,x", "w1", "b3", "0.weight", "0,1", "9,9", "b3=2"]
# the values an option usually gets (three times in four); the others come from its list above
VALID = {
    "--target": ["y", "label"],
    "--features": ["x", "x,z"],
    "--hidden": ["2", "3", "2,2"],
    "--lr": ["0.05", "0.1", "1e-300"],
    "--tol": ["0.001", "0", "1"],
    "--max-iter": ["1", "5", "20"],
    "--batch-size": ["1", "2", "100"],
    "--seed": ["0", "1", "7"],
    "--restarts": ["1", "2", "3"],
}
OPTIONS = {
    "fit": {
        "--target": TEXT,
        "--features": TEXT,
        "--hidden": INTEGERS + ["2,2", "0,2", "3,100000000"],
        "--activation": ["relu", "tanh", "sigmoid", "softplus", "gelu"],
        "--loss": ["mse", "ssr", "cross-entropy", "l1"],
        "--optimizer": ["gd", "momentum", "adam", "sgd"],
        "--lr": NUMBERS,
        "--tol": NUMBERS,
        "--max-iter": SMALL,
        "--batch-size": INTEGERS,
        "--seed": INTEGERS,
        "--restarts": ["1", "2", "4", "0", "-2", "abc", "100000000", "1000000000"],
        "--standardize": None,
        "--quiet": None,
    },
    "predict": {"--proba": None},
    "evaluate": {},
    "plot": {},
    "explain": {"--param": TEXT, "--index": TEXT, "--set": TEXT, "--markdown": None},
}
POSITIONAL = {"fit": ["data"], "predict": ["model", "data"], "evaluate": ["model", "data"], "plot": ["model", "data"]}
OUT = ["out.json", "out.csv", "fig.png", "fig.svg", "fig.jpg", "{input}", "{folder}", "missing/out.json", ""]
DATA = [*[n for n in FILES if n.endswith(".csv")], "missing.csv", "{folder}", "model.json"]
MODELS = ["model.json", "classifier.json", "good.csv", "notjson.json", "wrong.json", "missing.json", "{folder}"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    for name, text in FILES.items():
        (base / name).write_text(text, encoding="utf-8")
    (base / "folder").mkdir()
    modelfile.save(base / "model.json", mlp([2, 3, 1], seed=0), features=["x", "z"], target="y")
    classifier = mlp([2, 3, 2], seed=0)
    modelfile.save(base / "classifier.json", classifier, features=["x", "z"], target="label", classes=["a", "b"])
    return base


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


@st.composite
def argvs(draw):
    command = draw(st.sampled_from(["fit"] * 5 + ["predict"] * 2 + ["evaluate", "plot", "explain"]))
    argv, inputs = [command], []
    for kind in POSITIONAL.get(command, []):
        pool = MODELS if kind == "model" else DATA
        usual = draw(st.sampled_from([True, True, False]))  # two in three: a file that works
        path = draw(st.sampled_from(pool[:2] if usual else pool))
        argv.append(path)
        inputs.append(path)
    if command == "explain" and draw(st.booleans()):
        argv += ["--model", draw(st.sampled_from(MODELS)), "--data", draw(st.sampled_from(DATA))]
    options = OPTIONS[command]
    flags = draw(st.lists(st.sampled_from(sorted(options)), max_size=5, unique=True)) if options else []
    if command == "fit" and "--target" not in flags and draw(st.sampled_from([True] * 9 + [False])):
        flags.append("--target")
    for flag in flags:
        argv.append(flag)
        if options[flag] is not None:
            usual = flag in VALID and draw(st.sampled_from([True, True, True, False]))
            argv.append(draw(st.sampled_from(VALID[flag] if usual else options[flag])))
    if command not in ("evaluate", "explain") and draw(st.sampled_from([True] * 9 + [False])):
        usual = {"fit": "out.json", "predict": "out.csv", "plot": "fig.svg"}[command]
        out = draw(st.sampled_from([usual] * len(OUT) + OUT))
        argv += ["--out", out.replace("{input}", inputs[-1] if inputs else "good.csv")]
    return argv


COUNTER = itertools.count()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=argvs())
def test_random_command_lines_exit_0_or_2_with_one_line_and_write_nothing_on_2(folder, capsys, argv):
    work = folder / f"run{next(COUNTER)}"  # the output folder of this example: empty unless it succeeded
    work.mkdir()
    argv = [_place(a, folder, work) for a in argv]
    before = _digest(folder)
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    event(f"{argv[0]} exit {code}")
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err and "Warning:" not in err, (argv, err)
    if code == 2:
        assert err.count("\n") == 1 and "error: " in err, (argv, err)
        assert os.listdir(work) == [], (argv, os.listdir(work))
    assert _digest(folder) == before, argv  # an input is never overwritten


def _place(arg, folder, work):
    """A file name of the pool -> its path; output names -> paths in this example's own folder."""
    if arg == "{folder}":
        return str(folder / "folder")
    if arg in FILES or arg in ("model.json", "classifier.json", "missing.csv", "missing.json"):
        return str(folder / arg)
    if arg in OUT[:5] or arg == "missing/out.json":
        return str(work / arg)
    return arg
