"""chainrule demo: the lessons reproduced in the terminal, with the true numbers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from chainrule import cli

# From the lessons (MISSION.md's reference table), not from chainrule's output.
LESSON_NUMBERS = ["20.42", "7.77", "1.11", "0.46", "2.609", "1.40"]


def _check_lesson_numbers(out):
    for number in LESSON_NUMBERS:
        assert number in out, number
    assert "-15.66" in out or "-15.655" in out
    # Seed 000's mistake: the SSR is 0.46 at b3 = 3, not at b3 = 2.61.
    for line in out.splitlines():
        assert not ("0.46" in line and "2.61" in line), line


PICTURES = [
    "squiggle_before.png",
    "squiggle_after.png",
    "ssr_vs_b3.png",
    "landscape_w3_w4.png",
    "graph_neuron.png",
    "graph_neuron.svg",
    "graph_ops.png",
    "graph_ops.svg",
]
# The lesson on b3 stops after 10 iterations (MISSION.md): one frame each; the other runs get at most 20 frames.
# The backward pass has a frame per node of the lessons' graph: 9 leaves (Input, w1, b1, w2, b2, w3, w4, b3,
# Observed), 6 ops for the two SoftPlus nodes (mul, add, softplus each), 4 for the sum (two mul, two add),
# 3 for the SSR (sub, pow, sum): 22.
ANIMATIONS = {
    "loss_step_b3.gif": 10,
    "squiggle_b3.gif": 10,
    "landscape_w3_w4.gif": 20,
    "squiggle_best_start.gif": 20,
    "backward_pass.gif": 22,
}


def test_demo_prints_the_lessons_numbers(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "120")  # rich shortens numbers ("-15.6…") in very narrow terminals
    assert cli.main(["demo", "--out", str(tmp_path / "pictures")]) == 0
    out = capsys.readouterr().out
    _check_lesson_numbers(out)
    text = " ".join(out.split())  # rich wraps long lines at the terminal's width
    for title in ("Lesson 1", "Gradient descent on b3", "Lesson 2", "Lesson 3"):
        assert title in text
    assert "every step size fell below 0.001 at iteration 10" in text
    assert "learning rate 0.01" in text and "learning rate 0.1" in text
    for name in PICTURES:  # the lessons' pictures, said where
        assert (tmp_path / "pictures" / name).stat().st_size > 10_000
        assert name in text
    assert str(tmp_path / "pictures") in text
    for name, frames in ANIMATIONS.items():
        with Image.open(tmp_path / "pictures" / name) as gif:
            assert gif.n_frames == frames if frames == 10 else 2 <= gif.n_frames <= frames, name
        assert name in text


def test_demo_out_empty_draws_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--out", ""]) == 0
    assert list(tmp_path.iterdir()) == []


def test_demo_without_rich_prints_plain_tables(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich.console", None)  # makes `from rich.console import ...` fail
    assert cli.main(["demo", "--seed", "3", "--out", ""]) == 0
    out = capsys.readouterr().out
    _check_lesson_numbers(out)
    assert "┃" not in out and "iteration" in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_runs_the_demo(tmp_path):
    script = Path(sys.executable).parent / "chainrule"
    command = [str(script), "demo"] if script.exists() else [sys.executable, "-m", "chainrule.cli", "demo"]
    done = subprocess.run(
        command + ["--out", str(tmp_path), "--no-animations"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    _check_lesson_numbers(done.stdout)
    assert {p.suffix for p in tmp_path.iterdir()} == {".png", ".svg"}  # --no-animations: the pictures only


# ---- chainrule explain ----------------------------------------------------------------------


def test_explain_b3_at_the_first_lesson_shows_the_lesson_derivative(capsys):
    assert cli.main(["explain", "--param", "b3"]) == 0
    out = capsys.readouterr().out
    assert "dSSR/db3 = sum_i dSSR/dPredicted_i x dPredicted_i/db3" in out
    assert "-2 (Observed_i - Predicted_i)" in out
    # MISSION.md: dSSR/db3 at b3 = 0 is -15.66 (the lesson rounds it to -15.7).
    total = float(out.strip().splitlines()[-1].split("=")[1].split()[0])
    assert round(total, 2) == -15.66


def test_explain_w1_follows_the_chain_through_the_top_node(capsys):
    assert cli.main(["explain", "--param", "w1", "--set", "b3=2.61", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "`dSSR/dw1 = sum_i dSSR/dPredicted_i x dPredicted_i/dy1_i x dy1_i/dx1_i x dx1_i/dw1`" in out
    assert "e^x1_i / (1 + e^x1_i)" in out and "| i |" in out


@pytest.mark.parametrize(
    "argv", [["explain", "--set", "q=1"], ["explain", "--set", "b3=x"], ["explain", "--set", "b3"]]
)
def test_explain_bad_values_give_one_line_and_exit_2(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("chainrule: error:") and len(err.splitlines()) == 1


def test_explain_a_saved_model_on_its_csv_equals_backward(tmp_path, capsys):
    import numpy as np

    import chainrule as cr
    from chainrule.modelfile import load

    rows = ["x,y"] + [f"{v:.2f},{np.sin(3 * v):.4f}" for v in np.linspace(-1, 1, 9)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    model_path = str(tmp_path / "m.json")
    assert (
        cli.main(
            [
                "fit",
                str(tmp_path / "d.csv"),
                "--target",
                "y",
                "--hidden",
                "3",
                "--activation",
                "tanh",
                "--max-iter",
                "50",
                "--quiet",
                "--out",
                model_path,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        cli.main(
            [
                "explain",
                "--model",
                model_path,
                "--data",
                str(tmp_path / "d.csv"),
                "--param",
                "0.weight",
                "--index",
                "2,0",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "dMSE/d0.weight[2, 0] = sum_i dMSE/dlinear2_i" in out
    printed = float(out.strip().splitlines()[-1].split("=")[1].split()[0])
    # Independently: backward on the same loss (mse of the saved network on the 9 rows).
    model = load(model_path)
    x = np.linspace(-1, 1, 9)[:, None].round(2)
    y = np.sin(3 * x).round(4)
    cr.losses.mse(model.network(cr.tensor(x)), y).backward()
    assert printed == pytest.approx(model.network.layers[0].weight.grad[2, 0], rel=1e-5)


@pytest.mark.parametrize(
    "argv", [["explain", "--model", "m.json"], ["explain", "--param", "0.weight"], ["explain", "--index", "a"]]
)
def test_explain_misuse_gives_one_line(capsys, argv):
    assert cli.main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
