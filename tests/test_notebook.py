"""examples/lessons.ipynb runs top to bottom in a local kernel (this Python, these sources) and shows the lessons."""

import json
import os
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "lessons.ipynb"
KERNEL = "chainrule-test"


def _kernelspec(folder):
    """A kernel that is this interpreter, written where Jupyter looks first (JUPYTER_PATH)."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))


def _text(cell):
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts += [str(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


def test_the_lessons_notebook_runs_and_prints_the_lessons_numbers(tmp_path, monkeypatch):
    _kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("print(cr.__file__)"))  # which chainrule the kernel ran
    client = nbclient.NotebookClient(
        notebook, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # a failing cell raises CellExecutionError naming it
    assert _text(notebook.cells.pop()).strip() == str(ROOT / "src" / "chainrule" / "__init__.py")
    out = "\n".join(_text(c) for c in notebook.cells if c.cell_type == "code")
    # From the lessons (MISSION.md's reference table), printed by chainrule in the notebook.
    for number in ("SSR = 20.42", "SSR = 7.77", "SSR = 1.11", "SSR = 0.46", "final b3 = 2.609", "start: 1.40"):
        assert number in out, number
    assert "-15.655" in out  # dSSR/db3 at b3 = 0 (the lesson's -15.7), in the explanation
    assert "every step size fell below 0.001 at iteration 10" in out
    # dSSR/db3 = sum of -2 (Observed_i - Predicted_i) over the three points (MISSION.md): -5.207 - 5.218 - 5.23
    assert "dSSR/db3 = -15.66 = sum of" in out and all(f"{p}" in out for p in (-5.207, -5.218, -5.23))
    svgs = [o for c in notebook.cells for o in c.get("outputs", []) if "image/svg+xml" in o.get("data", {})]
    assert len(svgs) >= 2  # the graph displayed as SVG, both levels
    players = [c for c in notebook.cells if "chainrule-player-" in _text(c)]
    assert len(players) == 5  # the backward pass, the loss step, the two squiggles and the landscape
    assert (tmp_path / "loss_step_b3.gif").stat().st_size > 0 and (tmp_path / "loss_step_b3.mp4").stat().st_size > 0
