"""One learner's playground: settings, data, a network and the run, driven by actions.

A :class:`Session` is what one browser tab sees, with no HTTP in it: ``apply``
takes an action object (``{"action": "step", "n": 1}``; the actions and the
state are documented in docs/playground.md) and returns the state as plain
JSON data. Training goes through the same :class:`chainrule.Trainer` that
:func:`chainrule.fit` runs: the optimizer keeps its state between steps, and
parameters set between steps are where training goes on from. A failed action
raises ValueError (or LookupError) with one line and leaves the session as it was.

The log of actions is the shareable state: :meth:`Session.link` compacts it,
and ``Session.restore(link)`` replays it in a fresh session, giving the same
numbers bit for bit (the same engine on the same inputs).

Example: lesson 1, one step of gradient descent on b3::

    >>> from chainrule.playground.session import Session
    >>> s = Session()
    >>> state = s.apply({"action": "lesson", "id": 1})
    >>> round(state["loss"], 2), state["elements"][-1]["key"]
    (20.42, 'b3')
    >>> state = s.apply({"action": "step"})
    >>> round(state["history"]["loss"][0], 2), round(s.value("b3"), 4)
    (20.42, 1.5655)
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..checks import Integer, Integers, Number, OneOf, check
from ..errors import DivergenceError, GradientHealthWarning
from ..loop import Trainer
from ..losses import get_loss
from ..nn import ACTIVATIONS, DosageNetwork, Module, mlp
from ..optim import Adam, GradientDescent, Momentum, Optimizer
from ..picture import graph
from ..tensor import Tensor, no_grad, tensor
from .content import lessons as shipped_lessons
from .content import preset

__all__ = ["Session", "DEFAULTS", "MAX_ROWS", "MAX_STEPS", "MAX_ACTIONS"]

DEFAULTS: dict[str, Any] = {
    "lesson": None,
    "seed": 0,
    "lr": 0.1,
    "optimizer": "gd",
    "momentum": 0.9,
    "beta1": 0.9,
    "beta2": 0.999,
    "loss": "ssr",
    "activation": "softplus",
    "hidden": [2],
    "train": None,  # None: every parameter
    "tol": 0.001,
    "max_iter": 1000,
}
LOSS_NAMES = {"ssr": "SSR", "mse": "MSE", "cross-entropy": "cross-entropy"}
LOSS_FUNCTIONS = {"ssr": "ssr", "mse": "mse", "cross-entropy": "cross_entropy"}
MAX_ROWS = 10_000  # data points a session holds
MAX_STEPS = 10_000  # iterations one step action may ask for
MAX_ACTIONS = 2000  # actions a link may replay
SHOWN_ROWS = 2000  # rows of the lessons' table in the state (the latest); GET /api/history gives the others
MAX_ROWS_ANSWERED = 20_000  # rows of the table one answer holds
MAX_UNITS = 64  # hidden units in a layer
MAX_LAYERS = 4

SETTINGS = {
    "lr": Number(low=0, low_open=True),
    "momentum": Number(low=0, high=1),
    "beta1": Number(low=0, high=1),
    "beta2": Number(low=0, high=1),
    "optimizer": OneOf(("gd", "momentum", "adam")),
    "loss": OneOf(tuple(LOSS_NAMES)),
    "activation": OneOf(tuple(a for a in ACTIVATIONS if a != "identity")),
    "tol": Number(low=0),
    "max_iter": Integer(low=1),
}
LIVE = ("lr", "momentum", "beta1", "beta2")  # changed on the running optimizer: its state goes on
SEGMENT = ("optimizer", "loss", "train", "tol", "max_iter")  # a new Trainer from the current values
NETWORK = ("activation", "hidden")  # a new network
ANCHORS = ("lesson",)  # an action that fixes everything: the link drops what came before

_KEY = re.compile(r"^([A-Za-z0-9_.]+)(?:\[(\d+(?:,\d+)*)\])?$")


def _clean(a: Any) -> Any:
    """A number or array as JSON data: floats at full precision, non-finite numbers as None."""
    if isinstance(a, (list, tuple)):
        return [_clean(v) for v in a]
    if isinstance(a, np.ndarray):
        return _clean(a.tolist()) if a.ndim else _clean(a.item())
    if isinstance(a, (np.floating, np.integer)):
        a = a.item()
    if isinstance(a, float):
        return a if math.isfinite(a) else None
    return a


def _key(name: str, index: tuple[int, ...]) -> str:
    return name if not index else f"{name}[{','.join(map(str, index))}]"


class Session:
    """A playground session: ``apply(action)`` changes it and returns :meth:`state`; the views are methods."""

    def __init__(
        self,
        actions: list[dict[str, Any]] | None = None,
        session_id: str = "default",
        lessons: list[dict[str, Any]] | None = None,
    ) -> None:
        self.id = session_id
        self.library = shipped_lessons() if lessons is None else lessons  # the lessons it can open
        self.settings = copy.deepcopy(DEFAULTS)
        self.x = np.zeros((0, 1))
        self.y: list[Any] = []
        self.features, self.target, self.source = ["x"], "y", "empty"
        self.net: Module = DosageNetwork.from_lesson()  # until the first action builds the session's own
        self.arch: tuple | None = None
        self.trainer: Trainer | None = None
        self.start: dict[str, np.ndarray] = {}
        self.rows: list[list[Any]] = []
        self.losses: list[float | None] = []
        self.events: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.restarts: dict[str, Any] | None = None
        self.lesson: dict[str, Any] | None = None
        self.iteration = 0  # iterations of this run, over its segments
        self.offset = 0  # iterations done by the earlier segments (Trainers) of this run
        self.copied = 0  # iterations of the current Trainer's History already in rows
        self.edited = False  # the run was changed by hand between steps (the code export says so)
        self.log: list[dict[str, Any]] = []
        for action in actions if actions is not None else [{"action": "lesson", "id": 1, "guide": False}]:
            self.apply(action)

    # ---- actions ------------------------------------------------------------------------------

    def apply(self, action: Any) -> dict[str, Any]:
        """Do one action (docs/playground.md); return the state. On an error nothing has changed."""
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            raise ValueError(f'an action is an object with a name, {{"action": "step"}}, got {_show(action)}')
        name = action["action"]
        handler = ACTIONS.get(name)
        if handler is None:
            raise ValueError(f"unknown action {name!r}; the actions are {', '.join(ACTIONS)}")
        fields = {k: v for k, v in action.items() if k != "action"}
        before = self._snapshot()
        try:
            handler(self, **fields)
        except TypeError as e:
            self._undo(before)
            raise ValueError(f"{name}: {_fields_message(e)}") from None
        except BaseException:
            self._undo(before)
            raise
        self._record(dict(action))
        return self.state()

    # NOTE: an action that fails is undone from a snapshot taken before it. The fields are put back as
    # they were (the objects they named: a Trainer or a network an action replaced is simply named
    # again), the small mutable ones from copies, the parameter values into the network, and the
    # append-only lists of the run cut back to their length. No action changes a Trainer in place
    # before it can still fail, so a snapshot costs little however long the run (a drag sets a value
    # many times a second).
    def _snapshot(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray], tuple[int, int, int]]:
        small = {k: copy.deepcopy(getattr(self, k)) for k in ("settings", "lesson", "runs", "start", "restarts")}
        return dict(self.__dict__), small, self._values(), (len(self.rows), len(self.losses), len(self.events))

    def _undo(
        self, snapshot: tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray], tuple[int, int, int]]
    ) -> None:
        fields, small, values, (rows, losses, events) = snapshot
        self.__dict__.clear()
        self.__dict__.update(fields)
        self.__dict__.update(small)
        self._set_values(values)
        del self.rows[rows:], self.losses[losses:], self.events[events:]

    def _step(self, n: int = 1) -> None:
        n = check("step", "n", n, Integer(low=1))
        if n > MAX_STEPS:
            raise ValueError(f"step: n must be at most {MAX_STEPS}, got {n}")
        trainer = self._trainer()
        self._refuse_if_stopped("step", trainer)
        self._train(lambda: _steps(trainer, n))

    def _run(self) -> None:
        trainer = self._trainer()
        self._refuse_if_stopped("run", trainer)
        self._train(trainer.run)

    def _reset(self) -> None:
        self._end_run()
        self._set_values(self.start)

    def _new_start(self, seed: int | None = None) -> None:
        seed = self.settings["seed"] + 1 if seed is None else check("new_start", "seed", seed, Integer(low=0))
        self.settings["seed"] = seed
        self._end_run()
        self._build_network(force=True)

    def _set_param(self, key: str, value: float) -> None:
        name, index = self._parse_key("set_param", key)
        value = check("set_param", "value", value, Number())
        if self.iteration and self.trainer is not None and self.trainer.stop_reason is not None:
            self._new_segment()  # the run had stopped: it goes on from the new value
        elif self.iteration:
            self.edited = True
        dict(self.net.named_parameters())[name].data[index] = value
        if not self.iteration:
            self.start = self._values()

    def _settings(self, **given: Any) -> None:
        unknown = sorted(set(given) - set(SETTINGS) - {"train", "hidden"})
        if unknown:
            raise ValueError(
                f"settings: unknown setting(s) {unknown}; the settings are {', '.join([*SETTINGS, 'train', 'hidden'])}"
            )
        new = dict(self.settings)
        for name, value in given.items():
            new[name] = self._checked_setting(name, value)
        changed = [k for k in given if new[k] != self.settings[k]]
        old, self.settings = self.settings, new
        if any(k in NETWORK for k in changed) or (new["loss"] == "cross-entropy") != (old["loss"] == "cross-entropy"):
            self._check_targets()
            self._end_run()
            self._build_network()
            return
        if "train" in changed:
            self._trained_names()  # the names must exist
        if any(k in SEGMENT for k in changed):
            self._check_targets()
            self._new_segment()
        elif any(k in LIVE for k in changed) and self.trainer is not None:
            self._tune(self.trainer.optimizer)
            self.edited = self.edited or bool(self.iteration)

    def _set_data(
        self, x: Any, y: Any, features: list[str] | None = None, target: str | None = None, source: str = "edited"
    ) -> None:
        xs, ys = _points(x, y)
        self.x, self.y = xs, ys
        if features is not None:
            features = [str(f) for f in features]
            if len(features) != xs.shape[1]:
                raise ValueError(f"set_data: {len(features)} feature names for {xs.shape[1]} columns of x")
            self.features = features
        elif len(self.features) != xs.shape[1]:
            self.features = [f"x{j + 1}" for j in range(xs.shape[1])] if xs.shape[1] > 1 else ["x"]
        self.target = str(target) if target is not None else self.target
        self.source = str(source)
        labels = [v for v in ys if isinstance(v, str)]
        switched = bool(labels) and self.settings["loss"] != "cross-entropy"
        if switched:
            was = LOSS_NAMES[self.settings["loss"]]
            self.settings["loss"] = "cross-entropy"  # class labels: the one loss that reads them
        self._check_targets()
        self._end_run()
        self._build_network()
        if switched:  # said on the page (a badge), not done behind the user's back
            self.events.append(
                {
                    "iteration": 0,
                    "kind": "note",
                    "message": f"the target holds class labels (such as {labels[0]!r}): the loss is now "
                    f"cross-entropy (was {was})",
                }
            )

    def _preset(self, name: str, noise: float | None = None, seed: int = 0) -> None:
        if noise is not None:
            noise = check("preset", "noise", noise, Number(low=0, high=1, high_open=False))
        seed = check("preset", "seed", seed, Integer(low=0))
        x, y = preset(name, noise, seed)
        features = ["Dosage" if name.startswith("dosage") else "x"]
        self._set_data(x.tolist(), y.tolist(), features, _target_name(name), f"preset:{name}")

    def _lesson(self, id: int, guide: bool = True) -> None:
        content = self.lesson_content(check("lesson", "id", id, Integer(low=1)))
        self._end_run()
        self.runs = []
        given = content.get("settings", {})
        unknown = sorted(set(given) - set(DEFAULTS) - {"lesson", "seed"})
        if unknown:
            raise ValueError(f"lesson {id}: unknown setting(s) {unknown}; the settings are {', '.join(DEFAULTS)}")
        self.settings = {**copy.deepcopy(DEFAULTS), **given, "lesson": id if guide else None}
        for name in SETTINGS:
            self.settings[name] = check(f"lesson {id}", name, self.settings[name], SETTINGS[name])
        self.settings["hidden"] = self._checked_setting("hidden", self.settings["hidden"])
        self.settings["seed"] = check(f"lesson {id}", "seed", self.settings["seed"], Integer(low=0))
        data = content.get("data", {"preset": "dosage"})
        if "preset" in data:
            self._preset(data["preset"], data.get("noise"), data.get("seed", 0))
        else:
            self._set_data(data["x"], data["y"], data.get("features"), data.get("target"), f"lesson:{id}")
        start = content.get("start", {})
        if "random" in start:
            self.settings["seed"] = check(f"lesson {id}", "start.random", start["random"], Integer(low=0))
        self._build_network(force=True)  # a fresh network whatever came before: a link may begin here
        if "random" not in start and isinstance(self.net, DosageNetwork):
            given = {**DosageNetwork.LESSON, **start.get("values", {})}
            unknown = sorted(set(given) - set(DosageNetwork.NAMES))
            if unknown:
                raise ValueError(f"lesson {id}: start.values names {unknown}; the parameters are {DosageNetwork.NAMES}")
            self._set_values({k: np.asarray(float(check(f"lesson {id}", k, v, Number()))) for k, v in given.items()})
            self.start = self._values()
        self.lesson = {
            "id": id,
            "step": 0,
            "steps": len(content["steps"]),
            "title": content.get("title"),
            "answer": None,
        }
        if not guide:
            self.lesson = None
        self._trained_names()
        self._open_step(content, 0)

    def _leave_lesson(self) -> None:
        self.lesson = None
        self.settings["lesson"] = None

    def _lesson_step(self, step: int) -> None:
        if self.lesson is None:
            raise ValueError("lesson_step: no lesson is open; open one with the lesson action first")
        step = check("lesson_step", "step", step, Integer(low=0))
        if step >= self.lesson["steps"]:
            raise ValueError(f"lesson_step: lesson {self.lesson['id']} has steps 0 to {self.lesson['steps'] - 1}")
        self.lesson = {**self.lesson, "step": step, "answer": None}
        self._open_step(self.lesson_content(self.lesson["id"]), step)

    def _answer(self, value: float) -> None:
        prompt = self._prompt()
        if prompt is None:
            raise ValueError("answer: this lesson step asks nothing")
        given = check("answer", "value", value, Number())
        expected = self._expected(prompt["answer"])
        tolerance = float(prompt.get("tolerance", 0.01))
        assert self.lesson is not None
        self.lesson["answer"] = {"given": given, "expected": expected, "correct": abs(given - expected) <= tolerance}

    def _restarts(self, n: int, seed: int | None = None) -> None:
        n = check("restarts", "n", n, Integer(low=2))
        if n > 50:
            raise ValueError(f"restarts: n must be at most 50, got {n}")
        seed = self.settings["seed"] if seed is None else check("restarts", "seed", seed, Integer(low=0))
        self._end_run()
        self.start = self._values()
        self.trainer = self._make_trainer(restarts=n, seed=seed)
        self._train(self.trainer.run)
        h = self.trainer.history
        assert h.restart_losses is not None
        self.restarts = {"n": n, "seed": seed, "losses": _clean(h.restart_losses), "best": h.best_restart}

    # ---- the run -------------------------------------------------------------------------------

    def _trainer(self) -> Trainer:
        if self.trainer is None:
            if not self.iteration:
                self.start = self._values()
            self.trainer = self._make_trainer()
            self.copied = 0
        return self.trainer

    def _make_trainer(self, **extra: Any) -> Trainer:
        x, y = self._arrays()
        s = self.settings
        return Trainer(
            self.net,
            x,
            y,
            loss=LOSS_FUNCTIONS[s["loss"]],
            optimizer=self._optimizer(),
            params=self._trained_names(),
            tol=s["tol"],
            max_iter=s["max_iter"],
            **extra,
        )

    def _optimizer(self) -> Optimizer:
        s = self.settings
        if s["optimizer"] == "momentum":
            return Momentum(lr=s["lr"], momentum=s["momentum"])
        if s["optimizer"] == "adam":
            return Adam(lr=s["lr"], betas=(s["beta1"], s["beta2"]))
        return GradientDescent(lr=s["lr"])

    def _tune(self, optimizer: Optimizer) -> None:
        """The live settings onto the running optimizer (its velocity or moments go on)."""
        s = self.settings
        optimizer.lr = s["lr"]
        if isinstance(optimizer, Momentum):
            optimizer.momentum = s["momentum"]
        if isinstance(optimizer, Adam):
            optimizer.betas = (s["beta1"], s["beta2"])

    def _refuse_if_stopped(self, action: str, trainer: Trainer) -> None:
        if trainer.stop_reason is not None:
            raise ValueError(
                f"{action}: the run has stopped ({trainer.stop_reason}); reset, or set a value or a setting, to go on"
            )

    def _train(self, go: Callable[[], Any]) -> None:
        """Run ``go`` (steps of the Trainer), then copy what its History gained and what it warned of."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                go()
            except DivergenceError:
                pass  # the History says so; the parameters are back at the best seen
        self._collect()
        for w in caught:
            text = str(w.message)
            kind = "warning"
            if issubclass(w.category, GradientHealthWarning):
                kind = "exploding" if text.startswith("exploding") else "vanishing"
            self.events.append({"iteration": self.iteration, "kind": kind, "message": text})
        h = self.trainer.history if self.trainer is not None else None
        if h is not None and h.stop_reason.startswith("diverged"):
            self.events.append({"iteration": self.iteration, "kind": "diverged", "message": h.stop_reason})

    def _collect(self) -> None:
        """The new iterations of the Trainer's History as rows of the lessons' table."""
        assert self.trainer is not None
        h = self.trainer.history
        for k in range(self.copied, h.n_iter):
            it = self.offset + k + 1
            self.losses.append(_clean(float(h.loss[k])))
            for name, trace in h.params.items():
                if not trace.full:
                    continue
                value, grad, step = (np.asarray(a[k]) for a in (trace.value, trace.derivative, trace.step))
                for index in np.ndindex(value.shape):
                    v, d, s = float(value[index]), float(grad[index]), float(step[index])
                    self.rows.append(_clean([it, float(h.loss[k]), _key(name, index), v, d, s, v - s]))
        self.copied = h.n_iter
        self.iteration = self.offset + h.n_iter

    def _new_segment(self) -> None:
        """The run goes on with a new Trainer from the current values (fresh optimizer state)."""
        if self.trainer is not None:
            self.offset = self.iteration
            self.trainer = None
            if self.iteration:
                self.edited = True

    def _end_run(self) -> None:
        """Keep this run's summary for comparison; the next step starts a new run."""
        if self.iteration:
            s = self.settings
            self.runs.append(
                {
                    "final_loss": self.losses[-1] if self.losses else None,
                    "iterations": self.iteration,
                    "stop_reason": self.trainer.stop_reason if self.trainer is not None else None,
                    "seed": s["seed"],
                    "optimizer": s["optimizer"],
                    "lr": s["lr"],
                }
            )
        self.trainer = None
        self.rows, self.losses, self.events = [], [], []
        self.iteration = self.offset = self.copied = 0
        self.edited = False
        self.restarts = None

    # ---- the network and the data ----------------------------------------------------------------

    def _wanted(self) -> tuple[str, list[int], str]:
        s = self.settings
        outputs = len(self._classes()) if s["loss"] == "cross-entropy" else 1
        sizes = [self.x.shape[1], *s["hidden"], outputs]
        lesson_like = sizes == [1, 2, 1] and s["activation"] == "softplus" and s["loss"] != "cross-entropy"
        return ("lesson" if lesson_like else "mlp"), sizes, s["activation"]

    def _build_network(self, force: bool = False) -> None:
        """A new network from ``seed`` when the architecture changed (or when ``force``)."""
        wanted = self._wanted()
        if wanted == self.arch and not force:
            return
        kind, sizes, activation = wanted
        seed = self.settings["seed"]
        self.net = DosageNetwork.random(seed) if kind == "lesson" else mlp(sizes, activation, seed=seed)
        self.arch = wanted
        names = dict(self.net.named_parameters())
        if self.settings["train"] is not None and not set(self.settings["train"]) <= set(names):
            self.settings["train"] = None
        self.start = self._values()

    def _classes(self) -> list[Any]:
        return sorted(set(self.y), key=lambda c: (isinstance(c, str), c))

    def _check_targets(self) -> None:
        if self.settings["loss"] == "cross-entropy":
            if len(self._classes()) < 2:
                raise ValueError("cross-entropy needs at least two classes in the target; the data has one")
        elif any(not isinstance(v, (int, float)) for v in self.y):
            bad = next(v for v in self.y if not isinstance(v, (int, float)))
            raise ValueError(
                f"the target holds class labels (such as {bad!r}); use the loss cross-entropy, or numbers for "
                f"{LOSS_NAMES[self.settings['loss']]}"
            )

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) as the Trainer gets them: y float numbers, or class indices for cross-entropy."""
        if self.settings["loss"] == "cross-entropy":
            position = {c: i for i, c in enumerate(self._classes())}
            return self.x, np.array([position[v] for v in self.y], dtype=np.intp)
        return self.x, np.array(self.y, dtype=np.float64)

    def _trained_names(self) -> list[str]:
        names = [n for n, _ in self.net.named_parameters()]
        train = self.settings["train"]
        if train is None:
            return names
        missing = [t for t in train if t not in names]
        if missing:
            raise ValueError(f"train: no parameter {missing[0]!r}; the parameters are {', '.join(names)}")
        return list(train)

    def _checked_setting(self, name: str, value: Any) -> Any:
        if name == "train":
            if value is None or value == "all":
                return None
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ValueError(f"settings: train must be a non-empty list of parameter names or 'all', got {value!r}")
            names = [n for n, _ in self.net.named_parameters()]
            missing = [t for t in value if t not in names]
            if missing:
                raise ValueError(f"settings: train names {missing[0]!r}; the parameters are {', '.join(names)}")
            return [n for n in names if n in value]
        if name == "hidden":
            value = check("settings", "hidden", value, Integers(low=1, min_length=1))
            if len(value) > MAX_LAYERS or max(value) > MAX_UNITS:
                raise ValueError(
                    f"settings: hidden must be at most {MAX_LAYERS} layers of at most {MAX_UNITS} units, got {value}"
                )
            return list(value)
        value = check("settings", name, value, SETTINGS[name])
        return float(value) if isinstance(SETTINGS[name], Number) else value

    def _values(self) -> dict[str, np.ndarray]:
        return {n: p.data.copy() for n, p in self.net.named_parameters()}

    def _set_values(self, values: dict[str, Any]) -> None:
        for n, p in self.net.named_parameters():
            if n in values:
                p.data[...] = values[n]

    def _parse_key(self, where: str, key: Any) -> tuple[str, tuple[int, ...]]:
        names = dict(self.net.named_parameters())
        match = _KEY.match(key) if isinstance(key, str) else None
        if match is None or match.group(1) not in names:
            raise ValueError(f"{where}: no parameter {key!r}; the parameters are {', '.join(names)}")
        shape = names[match.group(1)].shape
        index = tuple(int(i) for i in match.group(2).split(",")) if match.group(2) else ()
        if len(index) != len(shape) or any(i >= s for i, s in zip(index, shape)):
            raise ValueError(f"{where}: {key!r} is not an element of {match.group(1)}, which has shape {list(shape)}")
        return match.group(1), index

    def value(self, key: str) -> float:
        """The current value of one element (a name, or ``name[i,j]``)."""
        name, index = self._parse_key("value", key)
        return float(dict(self.net.named_parameters())[name].data[index])

    # ---- lessons ------------------------------------------------------------------------------

    def lesson_content(self, lesson_id: Any) -> dict[str, Any]:
        """The lesson with id ``lesson_id`` from this session's lessons; LookupError naming the ids there are."""
        for content in self.library:
            if content["id"] == lesson_id:
                return content
        ids = ", ".join(str(c["id"]) for c in self.library)
        raise LookupError(f"lesson: no lesson {lesson_id!r}; the lessons are {ids}")

    def _open_step(self, content: dict[str, Any], step: int) -> None:
        steps = content.get("steps", [])
        for action in steps[step].get("actions", []) if step < len(steps) else []:
            ACTIONS[action["action"]](self, **{k: v for k, v in action.items() if k != "action"})

    def _prompt(self) -> dict[str, Any] | None:
        if self.lesson is None:
            return None
        steps = self.lesson_content(self.lesson["id"]).get("steps", [])
        return steps[self.lesson["step"]].get("prompt") if steps else None

    def _expected(self, answer: dict[str, Any]) -> float:
        kind = answer.get("kind")
        if kind == "loss":
            return self.loss()
        name, index = self._parse_key("answer", answer.get("key"))
        if kind == "value":
            return self.value(answer["key"])
        grad = float(np.asarray(self._gradients()[name])[index])
        if kind == "derivative":
            return grad
        if kind == "next":
            return self.value(answer["key"]) - self.settings["lr"] * grad
        raise ValueError(f"answer: the lesson's prompt has an unknown answer kind {kind!r}")

    # ---- what the state and the views compute ------------------------------------------------------

    def _loss_tensor(self) -> Tensor:
        x, y = self._arrays()
        out = self.net(tensor(x))
        if self.settings["loss"] != "cross-entropy":
            y = y[:, None]
        return get_loss(LOSS_FUNCTIONS[self.settings["loss"]])(out, y)

    def loss(self) -> float:
        """The loss at the current values."""
        with no_grad(), np.errstate(all="ignore"):
            return float(self._loss_tensor().item())

    def _graph(self) -> Any:
        with np.errstate(all="ignore"):
            return graph(self._loss_tensor(), grads=True)

    def _gradients(self) -> dict[str, np.ndarray]:
        g = self._graph()
        return {n: g.node(p).grad for n, p in self.net.named_parameters()}

    def state(self) -> dict[str, Any]:
        """Everything the page shows, as JSON data (the schema is in docs/playground.md)."""
        grads = self._gradients()
        trained = set(self._trained_names())
        params, elements = [], []
        for name, p in self.net.named_parameters():
            params.append(
                {
                    "name": name,
                    "shape": list(p.shape),
                    "value": _clean(p.data),
                    "gradient": _clean(grads[name]),
                    "trained": name in trained,
                }
            )
            for index in np.ndindex(p.shape):
                elements.append(
                    {
                        "key": _key(name, index),
                        "name": name,
                        "index": list(index),
                        "value": _clean(p.data[index]),
                        "gradient": _clean(np.asarray(grads[name])[index]),
                        "trained": name in trained,
                    }
                )
        t = self.trainer
        stop = t.stop_reason if t is not None else None
        kind, sizes, activation = self.arch  # type: ignore[misc]
        return {
            "session": self.id,
            "settings": {**self.settings, "train": self._trained_names()},
            "network": {"kind": kind, "sizes": sizes, "activation": activation},
            "parameters": params,
            "elements": elements,
            "data": {
                "source": self.source,
                "features": self.features,
                "target": self.target,
                "x": _clean(self.x),
                "y": _clean(list(self.y)),
                "classes": self._classes() if self.settings["loss"] == "cross-entropy" else None,
                "rows": len(self.y),
            },
            "loss": _clean(self.loss()),
            "loss_name": LOSS_NAMES[self.settings["loss"]],
            "iteration": self.iteration,
            "stop_reason": stop,
            "converged": bool(stop is not None and t is not None and t.history.converged),
            "diverged": bool(stop is not None and stop.startswith("diverged")),
            "history": {
                "columns": ["iteration", "loss", "param", "value", "derivative", "step", "new"],
                **self.history_rows(max(0, len(self.rows) - SHOWN_ROWS), SHOWN_ROWS),
                "loss": self.losses,
            },
            "events": self.events,
            "runs": self.runs,
            "restarts": self.restarts,
            "lesson": self.lesson,
            "hidden_controls": self._hidden_controls(),
        }

    def history_rows(self, start: int = 0, count: int = MAX_ROWS_ANSWERED) -> dict[str, Any]:
        """Rows ``start`` to ``start + count`` of the lessons' table (the state shows the last SHOWN_ROWS)."""
        start = check("history", "from", start, Integer(low=0))
        count = min(check("history", "count", count, Integer(low=1)), MAX_ROWS_ANSWERED)
        return {"rows_from": start, "total_rows": len(self.rows), "rows": self.rows[start : start + count]}

    def _hidden_controls(self) -> list[str]:
        if self.lesson is None:
            return []
        steps = self.lesson_content(self.lesson["id"]).get("steps", [])
        return list(steps[self.lesson["step"]].get("hide", [])) if steps else []

    # ---- the link -------------------------------------------------------------------------------

    def _record(self, action: dict[str, Any]) -> None:
        log = self.log
        kind = action["action"]
        if kind in ANCHORS:
            log.clear()
        if kind == "answer":
            return  # a guess changes no number
        if log and kind == "step" and log[-1]["action"] == "step":
            log[-1] = {"action": "step", "n": log[-1].get("n", 1) + action.get("n", 1)}
            return
        if log and kind == "set_param" and log[-1]["action"] == "set_param" and log[-1].get("key") == action.get("key"):
            log[-1] = action
            return
        log.append(action)

    def link(self) -> dict[str, Any]:
        """The actions that rebuild this state in a fresh session: ``Session.restore(link)``."""
        return {"v": 1, "actions": copy.deepcopy(self.log)}

    @classmethod
    def restore(cls, link: Any, session_id: str = "default", lessons: list[dict[str, Any]] | None = None) -> Session:
        """A fresh session with the actions of ``link`` replayed (ValueError for a bad link)."""
        if not isinstance(link, dict) or link.get("v") != 1 or not isinstance(link.get("actions"), list):
            raise ValueError('restore: a link is {"v": 1, "actions": [...]}, got ' + _show(link))
        if len(link["actions"]) > MAX_ACTIONS:
            raise ValueError(f"restore: a link holds at most {MAX_ACTIONS} actions, got {len(link['actions'])}")
        try:
            return cls(link["actions"], session_id, lessons)
        except (ValueError, LookupError) as e:
            raise ValueError(f"restore: the link does not replay: {e}") from None


def _steps(trainer: Trainer, n: int) -> None:
    for _ in range(n):
        trainer.step()
        if trainer.stop_reason is not None:
            return


def _points(x: Any, y: Any) -> tuple[np.ndarray, list[Any]]:
    """Checked points: x as (rows, features) floats, y a list of numbers or labels of the same length."""
    if not isinstance(x, list) or not isinstance(y, list):
        raise ValueError("set_data: x and y must be lists (x: one number a row, or a list of numbers a row)")
    if not 1 <= len(x) <= MAX_ROWS:
        raise ValueError(f"set_data: need 1 to {MAX_ROWS} points, got {len(x)}")
    if len(y) != len(x):
        raise ValueError(f"set_data: x has {len(x)} rows but y has {len(y)}; they must match")
    try:
        xs = np.array(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("set_data: x must hold numbers, every row as long as the first") from None
    xs = xs[:, None] if xs.ndim == 1 else xs
    if xs.ndim != 2 or xs.shape[1] == 0 or not np.all(np.isfinite(xs)):
        raise ValueError(f"set_data: x must be finite numbers, one or more a row; got shape {list(xs.shape)}")
    ys: list[Any] = []
    for v in y:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ValueError(f"set_data: y must hold numbers or class labels (text), got {_show(v)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"set_data: y must hold finite numbers, got {v}")
        ys.append(float(v) if isinstance(v, int) else v)
    return xs, ys


def _target_name(preset_name: str) -> str:
    return "Effectiveness" if preset_name.startswith("dosage") else "y"


def _show(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _fields_message(e: TypeError) -> str:
    """'unexpected keyword argument' in the words of the API: the field that is not known, or missing."""
    text = str(e)
    found = re.search(r"argument '(\w+)'", text)
    if "unexpected" in text and found:
        return f"unknown field {found.group(1)!r}"
    if "missing" in text and found:
        return f"missing field {found.group(1)!r}"
    return text


ACTIONS: dict[str, Callable[..., None]] = {
    "step": Session._step,
    "run": Session._run,
    "reset": Session._reset,
    "new_start": Session._new_start,
    "set_param": Session._set_param,
    "settings": Session._settings,
    "set_data": Session._set_data,
    "preset": Session._preset,
    "lesson": Session._lesson,
    "leave_lesson": Session._leave_lesson,
    "lesson_step": Session._lesson_step,
    "answer": Session._answer,
    "restarts": Session._restarts,
}
