"""The README's Python examples run, top to bottom, as a reader would paste them."""

import re
from pathlib import Path

import matplotlib

README = Path(__file__).resolve().parent.parent / "README.md"
# These two need what the reader brings: the files the CLI walkthrough writes, and their own X, y.
NEEDS_THE_READER = ("modelfile.load", "NeuralNetworkClassifier((16,)")


def test_the_readme_python_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    runnable = [b for b in blocks if not any(k in b for k in NEEDS_THE_READER)]
    assert len(runnable) >= 5
    namespace = {}
    for block in runnable:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102  (our own README)
    out = capsys.readouterr().out
    assert "every step size fell below 0.001 at iteration 10" in out  # the quick start's stop reason
    assert "dSSR/dw1 = sum_i dSSR/dPredicted_i" in out  # the explanation example


def test_the_training_options_section_says_how_the_estimators_train():
    # review finding 8: it said every option "works the same in cr.fit, the scikit-learn estimators and the
    # command line", but the estimators take scikit-learn's parameters only (no clip); they train sgd and
    # adam through Trainer, as the section says
    import inspect

    import pytest

    sk = pytest.importorskip("chainrule.sklearn")
    section = README.read_text().split("### Training options")[1].split("\n## ")[0]
    assert "the scikit-learn estimators and the command line" not in section
    assert "through `Trainer` too" in section
    assert "Trainer(" in inspect.getsource(sk)  # as the section says
    params = sk.MLPRegressor().get_params()
    assert not {"clip", "stopping", "schedule", "validation"} & set(params)
