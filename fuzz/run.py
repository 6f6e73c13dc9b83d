"""Coverage-guided fuzzing (atheris) of what reads a user's bytes: read_csv, modelfile.from_dict and cli.main.

    make fuzz FUZZ_SECONDS=60        # or: python fuzz/run.py -max_total_time=60 .fuzz-corpus

One input drives one target, picked by its first byte: CSV text for read_csv (which must agree with its
exact reader: the same arrays or the same error), JSON for from_dict, or an argv
(NUL-separated words) for cli.main on a small CSV file. The rules are those of tests/test_fuzz_cli.py: a
ValueError, TypeError or OSError is a user's mistake; anything else is a bug, and so is cli.main exiting
with a status other than 0 or 2, or more than one line on stderr on 2.
"""

import contextlib
import io
import json
import os
import shutil
import sys

import atheris

with atheris.instrument_imports():
    from chainrule import cli, modelfile
    from chainrule import data as data_module
    from chainrule.data import read_csv

# The fuzzer's working folder: made anew each run beside the corpus (git-ignored), so that no run leaves a
# temporary folder behind (libFuzzer ends the process without Python's exit handlers).
FOLDER = os.path.abspath(".fuzz-work")
shutil.rmtree(FOLDER, ignore_errors=True)
os.makedirs(FOLDER)
DATA = os.path.join(FOLDER, "data.csv")
with open(DATA, "w") as f:
    f.write("x,y\n0,0.5\n1,1.5\n2,0.25\n")


def _csv(data: bytes) -> None:
    """read_csv gives what its exact reader gives (the same arrays, or the same error), whichever reader read it."""
    path = os.path.join(FOLDER, "fuzz.csv")
    with open(path, "wb") as f:
        f.write(data)
    got, expected = _outcome(lambda: read_csv(path, target="y")), _outcome(lambda: _exact(path, "y"))
    if got != expected:
        raise AssertionError(f"read_csv gave {got!r}, the exact reader {expected!r}")


def _exact(path, target):
    with open(path, "rb") as f:
        return data_module._read_exact(path, f, data_module._rows_again(path, None, None), target, None)


def _outcome(call):
    """What a reading gave, comparable with ==: the error's type and text, or the arrays' bytes and the lines."""
    try:
        data = call()
    except (ValueError, TypeError, OSError) as e:
        return type(e).__name__, str(e)
    y = None if data.y is None else (data.y.dtype.str, data.y.tolist())
    return data.columns, data.features, data.x.shape, data.x.tobytes(), y, data.lines


def _model(data: bytes) -> None:
    try:
        content = json.loads(data)
    except (ValueError, RecursionError):
        return
    with contextlib.suppress(ValueError, TypeError):
        modelfile.from_dict(content)


def _argv(data: bytes) -> None:
    words = [w.decode("utf-8", "replace").replace("{data}", DATA) for w in data.split(b"\0")][:12]
    words = [os.path.join(FOLDER, w[6:]) if w.startswith("{out}/") else w for w in words]
    if words and words[0] in ("demo", "playground"):  # (a long walk through the lessons; a server that waits)
        return
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = cli.main(words)
        except SystemExit as e:
            code = e.code
    if code not in (0, 2) or (code == 2 and err.getvalue().count("\n") != 1):
        raise AssertionError(f"cli.main({words!r}) exited {code} with {err.getvalue()!r}")


TARGETS = (_csv, _model, _argv)


def one_input(data: bytes) -> None:
    if data:
        TARGETS[data[0] % len(TARGETS)](data[1:])


SEEDS = [
    b"\x00x,y\n1,2\n3,4\n",
    b'\x01{"format": "chainrule-model", "version": 1}',
    b"\x02fit\0{data}\0--target\0y\0--max-iter\x005\0--out\0{out}/m.json",
    b"\x02predict\0{out}/m.json\0{data}",
]

if __name__ == "__main__":
    # The corpus path becomes absolute, then the fuzzer runs inside its working folder: a fuzzed argv may
    # name any relative --out, and it must land there, never in the repository.
    sys.argv = [sys.argv[0], *(a if a.startswith("-") else os.path.abspath(a) for a in sys.argv[1:])]
    os.chdir(FOLDER)
    corpus = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus:
        os.makedirs(corpus, exist_ok=True)
        for i, seed in enumerate(SEEDS):
            with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
                f.write(seed)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
