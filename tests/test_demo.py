"""chainrule demo: the lessons reproduced in the terminal, with the true numbers."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_demo_prints_the_lessons_numbers(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")          # rich shortens numbers ("-15.6…") in very narrow terminals
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    _check_lesson_numbers(out)
    text = " ".join(out.split())                  # rich wraps long lines at the terminal's width
    for title in ("Lesson 1", "Gradient descent on b3", "Lesson 2", "Lesson 3"):
        assert title in text
    assert "every step size fell below 0.001 at iteration 10" in text
    assert "learning rate 0.01" in text and "learning rate 0.1" in text


def test_demo_without_rich_prints_plain_tables(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich.console", None)       # makes `from rich.console import ...` fail
    assert cli.main(["demo", "--seed", "3"]) == 0
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


def test_console_script_runs_the_demo():
    script = Path(sys.executable).parent / "chainrule"
    command = [str(script), "demo"] if script.exists() else [sys.executable, "-m", "chainrule.cli", "demo"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    _check_lesson_numbers(done.stdout)
