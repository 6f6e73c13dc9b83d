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
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

from ..nn import DosageNetwork
from ..tensor import no_grad

__all__ = ["PRESETS", "preset", "presets", "lessons", "lesson"]


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


def lessons() -> list[dict[str, Any]]:
    """Every lesson file's content, ordered by the number its file name starts with."""
    folder = resources.files(__package__).joinpath("lessons")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def lesson(lesson_id: int) -> dict[str, Any]:
    """The lesson with id ``lesson_id``; LookupError naming the ids there are."""
    found = [item for item in lessons() if item.get("id") == lesson_id]
    if not found:
        ids = ", ".join(str(item.get("id")) for item in lessons())
        raise LookupError(f"lesson: no lesson {lesson_id!r}; the lessons are {ids}")
    return found[0]
