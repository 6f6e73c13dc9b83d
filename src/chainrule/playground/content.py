"""What the playground ships besides code: the preset data sets and the lesson files.

A preset is a named function of (noise, seed) giving points (x, y) of one
feature; a lesson is a JSON file in ``lessons/`` (the format is in
docs/playground.md). Both are plain data, read by :mod:`chainrule.playground.session`.

Example::

    >>> from chainrule.playground.content import preset, lessons
    >>> x, y = preset("dosage")
    >>> x.tolist(), y.tolist()
    ([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])
    >>> [lesson["id"] for lesson in lessons()]
    [1, 2, 3]
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

from ..nn import DosageNetwork
from ..tensor import no_grad

__all__ = ["PRESETS", "PROMPT_KINDS", "check_lesson", "preset", "presets", "lessons", "lesson"]


def _bump(x: np.ndarray) -> np.ndarray:
    """The lessons' fitted squiggle at x: the curve their dosage data is drawn from."""
    with no_grad():
        return DosageNetwork.from_lesson()(x).data.reshape(-1)


_GRID = np.linspace(0.0, 1.0, 20)

# name: (title, the noise used when none is given, points as a function of nothing)
PRESETS: dict[str, tuple[str, float, Callable[[], tuple[np.ndarray, np.ndarray]]]] = {
    "dosage": ("The lessons' three dosages", 0.0, lambda: (np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0]))),
    "dosage-noisy": (
        "The three dosages, four patients each, with noise",
        0.1,
        lambda: (np.repeat([0.0, 0.5, 1.0], 4), np.repeat([0.0, 1.0, 0.0], 4)),
    ),
    "dosage-wide": ("Twenty dosages on the lessons' fitted bump", 0.0, lambda: (_GRID, _bump(_GRID))),
    "sine": ("A sine wave, one period", 0.0, lambda: (_GRID, np.sin(2 * np.pi * _GRID))),
    "step": ("A step at 0.5", 0.0, lambda: (_GRID, (_GRID > 0.5).astype(float))),
    "parabola": ("A parabola", 0.0, lambda: (_GRID, 4 * (_GRID - 0.5) ** 2)),
    "line": ("A straight line", 0.0, lambda: (_GRID, 2 * _GRID - 1)),
}


def preset(name: str, noise: float | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The points of preset ``name``, with Gaussian noise of standard deviation ``noise`` drawn from ``seed``."""
    if name not in PRESETS:
        raise ValueError(f"preset: no preset {name!r}; the presets are {', '.join(PRESETS)}")
    _, default, make = PRESETS[name]
    sd = default if noise is None else noise
    x, y = make()
    if sd:
        y = y + np.random.default_rng(seed).normal(0.0, sd, len(y))
    return x.astype(float), y.astype(float)


def presets() -> list[dict[str, Any]]:
    """The list the page shows: name, title and the default noise of each preset."""
    return [{"name": n, "title": t, "noise": noise} for n, (t, noise, _) in PRESETS.items()]


def lessons(folder: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The lessons that ship with chainrule, then those of ``folder`` (a teacher's), each file checked;
    in each folder ordered by file name (``01-b3.json``, ``02-three.json``, ...)."""
    shipped = resources.files(__package__).joinpath("lessons")
    files = sorted((f for f in shipped.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    if folder is not None:
        if not os.path.isdir(folder):
            raise ValueError(f"lessons: {os.fspath(folder)!r} is not a folder of lesson files")
        files += sorted((p for p in pathlib.Path(folder).iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    found = []
    for f in files:
        try:
            content = json.loads(f.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"lesson file {f.name}: not JSON ({e})") from None
        found.append(check_lesson(content, f"lesson file {f.name}"))
    ids = [content["id"] for content in found]
    if len(set(ids)) != len(ids):
        raise ValueError(f"lesson files: two lessons have the same id (ids {ids})")
    return found


PROMPT_KINDS = ("derivative", "loss", "next", "value")
VIEWS = ("network", "squiggle", "loss_curve", "landscape", "graph", "training")


def check_lesson(content: Any, where: str = "lesson") -> dict[str, Any]:
    """``content`` if it is a lesson as docs/playground.md describes; else ValueError saying what and where.

    (The settings, the start values and the actions are checked again, by the session, when the lesson opens.)
    """

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"{where}: {what}")

    need(isinstance(content, dict), "a lesson is a JSON object")
    need(isinstance(content.get("id"), int) and content["id"] >= 1, "id must be a whole number >= 1")
    need(isinstance(content.get("title"), str), "title must be text")
    need(isinstance(content.get("settings", {}), dict), "settings must be an object")
    data = content.get("data", {"preset": "dosage"})
    need(isinstance(data, dict) and ("preset" in data or {"x", "y"} <= set(data)), 'data is {"preset": ...} or x and y')
    start = content.get("start", {})
    need(isinstance(start, dict) and set(start) <= {"values", "random"}, 'start is {"values": {...}} or {"random": N}')
    steps = content.get("steps")
    need(isinstance(steps, list) and len(steps) > 0, "steps must be a list of at least one step")
    for k, step in enumerate(steps):
        at = f"steps[{k}]"
        need(isinstance(step, dict) and isinstance(step.get("text"), str), f"{at} needs a text")
        for name in ("hide", "focus"):
            need(all(isinstance(v, str) for v in step.get(name, [])), f"{at}.{name} must be a list of names")
        unknown = [v for v in step.get("focus", []) if v not in VIEWS]
        need(not unknown, f"{at}.focus names {unknown}; the views are {', '.join(VIEWS)}")
        need(all(isinstance(a, dict) and "action" in a for a in step.get("actions", [])), f"{at}.actions: objects")
        prompt = step.get("prompt")
        if prompt is not None:
            need(isinstance(prompt, dict) and isinstance(prompt.get("question"), str), f"{at}.prompt needs a question")
            answer = prompt.get("answer", {})
            need(
                isinstance(answer, dict) and answer.get("kind") in PROMPT_KINDS,
                f"{at}.prompt.answer.kind: {PROMPT_KINDS}",
            )
            need(answer["kind"] == "loss" or isinstance(answer.get("key"), str), f"{at}.prompt.answer needs a key")
            tolerance = prompt.get("tolerance", 0.01)
            need(isinstance(tolerance, (int, float)) and tolerance >= 0, f"{at}.prompt.tolerance must be a number >= 0")
    return content


def lesson(lesson_id: int, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The lesson with id ``lesson_id``; LookupError naming the ids there are."""
    found = lessons(folder)
    for item in found:
        if item["id"] == lesson_id:
            return item
    raise LookupError(f"lesson: no lesson {lesson_id!r}; the lessons are {', '.join(str(x['id']) for x in found)}")
