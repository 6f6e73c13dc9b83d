"""Hyperparameter sweeps: a grid of fit's options times k folds, as independent tasks that resume.

:func:`sweep` trains every configuration of a grid (``"hidden=8,16;lr=0.01,0.001"``: every
combination) on each of ``folds`` k-fold splits of a data file, scores it on the held-out fold
(R^2 for regression, accuracy for ``loss="cross-entropy"``, whose folds are stratified), and
then trains the best configuration (the highest mean score) on all rows. The (configuration,
fold) tasks run here, in this process, on ``workers`` local processes or on a Dask
``scheduler`` (:mod:`chainrule.distribute`), and each result is appended to
``DIR/results.jsonl`` as it comes in (flushed and fsynced line by line). Run the same sweep
again and the tasks already in that file are not run again; a file of another sweep (another
data file, grid, folds, seed, ...) is refused. At the end the folder holds:

- ``results.jsonl``: a header line with what defines the sweep (the data file's SHA-256, the
  grid, the folds, the seed, ...), then one line per (configuration, fold): the configuration,
  the fold, the held-out score, the training loss, iterations, seconds, the chainrule version;
- ``scores.csv``: per configuration its mean and standard deviation (NumPy's, ddof=0, as
  scikit-learn's ``cv_results_``) of the folds' scores, its rank and each fold's score;
- ``scores.png``: each configuration's mean score with the folds' spread as error bars
  (needs matplotlib);
- ``model.json``: the best configuration trained on all rows, a model file for
  ``chainrule predict`` (written atomically).

The grid's keys are fit's options: ``hidden`` (``8``, or ``8x8`` for two layers),
``activation``, ``optimizer``, ``lr``, ``alpha``, ``weight_decay``, ``batch_size`` (a number
or ``all``), ``max_iter``, ``tol``, ``schedule`` and ``clip`` (``batch-size`` with a hyphen
too); a key left out takes fit's default, as ``chainrule fit`` has it.

Example: two hidden sizes on a small curve, 3 folds::

    >>> import os, tempfile
    >>> import numpy as np
    >>> from chainrule.sweep import sweep
    >>> folder = tempfile.TemporaryDirectory()
    >>> data = os.path.join(folder.name, "curve.csv")
    >>> x = np.linspace(-1, 1, 24)
    >>> np.savetxt(data, np.c_[x, x**2], delimiter=",", header="x,y", comments="")
    >>> out = os.path.join(folder.name, "sweep")
    >>> found = sweep(data, "y", "hidden=2,4;optimizer=adam;lr=0.05;max_iter=200", folds=3, out=out)
    >>> [row.config["hidden"] for row in found.table], len(found.table[0].scores)
    ([[2], [4]], 3)
    >>> found.best == max(found.table, key=lambda row: row.mean)
    True
    >>> sorted(os.listdir(out))
    ['model.json', 'results.jsonl', 'scores.csv', 'scores.png']
    >>> again = sweep(data, "y", "hidden=2,4;optimizer=adam;lr=0.05;max_iter=200", folds=3, out=out)
    >>> again.ran, again.table == found.table    # nothing left to run: the same table from the file
    (0, True)
    >>> folder.cleanup()
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from contextlib import contextmanager, nullcontext
from typing import IO, Any, NamedTuple

import numpy as np

from .checks import Integer, Number, OneOf, Rule, check
from .data import read_data
from .distribute import open_executor, run_tasks
from .history import format_table
from .loop import ARGUMENTS, Trainer
from .modelfile import Model, Scaling, atomic_open, save
from .nn import ACTIVATIONS, mlp
from .optim import LBFGS, OPTIMIZERS
from .schedules import SCHEDULES
from .train import DivergenceError
from .validation import accuracy, r2
from .version import __version__

__all__ = ["sweep", "parse_grid", "kfold", "Grid", "Setup", "ConfigScore", "SweepResult", "SweepInterrupted"]

FORMAT = "chainrule-sweep"
VERSION = 1
RESULTS, TABLE, PLOT, MODEL = "results.jsonl", "scores.csv", "scores.png", "model.json"
LOSS_NAMES = {"mse": "mse", "ssr": "ssr", "cross-entropy": "cross_entropy", "cross_entropy": "cross_entropy"}

# ---- the grid -----------------------------------------------------------------------------


class _Hidden(Rule):
    """Hidden layer sizes: a list of integers >= 1 (``8x8`` in a grid's text)."""

    allowed = "sizes such as 8 or 8x8 (integers >= 1, one per layer)"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list) and len(value) > 0 and all(Integer(low=1).accepts(v) for v in value)


class _BatchSize(Rule):
    """A mini-batch size >= 1, or None for all rows at once (``all`` in a grid's text)."""

    allowed = "an integer >= 1 or 'all'"

    def accepts(self, value: Any) -> bool:
        return value is None or Integer(low=1).accepts(value)


# What each key of a grid may be, in fit's words (the key of fit's keyword; the command line's hyphens
# are read as underscores). The hidden activations are fit's: every one of nn's but the identity.
KEYS: dict[str, Rule] = {
    "hidden": _Hidden(),
    "activation": OneOf(tuple(name for name in ACTIVATIONS if name != "identity")),
    "optimizer": OneOf((*OPTIMIZERS, "lbfgs")),
    "lr": Number(low=0, low_open=True),
    "alpha": ARGUMENTS["alpha"],
    "weight_decay": Number(low=0),
    "batch_size": _BatchSize(),
    "max_iter": ARGUMENTS["max_iter"],
    "tol": Number(low=0),
    "schedule": OneOf(tuple(SCHEDULES)),
    "clip": Number(low=0, low_open=True),
}
INTEGER_KEYS = ("max_iter",)
NUMBER_KEYS = ("lr", "alpha", "weight_decay", "tol", "clip")


class Grid(NamedTuple):
    """The keys of a grid and each key's values, in the order given; its configurations are every combination."""

    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    def configs(self) -> list[dict[str, Any]]:
        """Every combination, the last key varying fastest, as dicts of fit's keywords."""
        return [dict(zip(self.keys, combo)) for combo in itertools.product(*self.values)]

    def as_json(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in zip(self.keys, self.values)}


def parse_grid(grid: str | Mapping[str, Any] | Grid, name: str = "sweep: grid") -> Grid:
    """A :class:`Grid` from text (``"hidden=8,8x8;lr=0.01,0.001"``) or a dict of lists (``{"lr": [0.1]}``).

    A mistake is one ValueError naming the key and the value (``name`` starts the message: the
    command line says ``--grid``)::

        >>> parse_grid("hidden=8,16x16;lr=0.1").configs()
        [{'hidden': [8], 'lr': 0.1}, {'hidden': [16, 16], 'lr': 0.1}]
        >>> parse_grid("lr=0.1,fast")
        Traceback (most recent call last):
        ...
        ValueError: sweep: grid lr must be a finite number > 0, got 'fast'
    """
    if isinstance(grid, Grid):
        return grid
    items: list[tuple[str, list[Any]]]
    if isinstance(grid, str):
        items = _grid_items(grid, name)
    elif isinstance(grid, Mapping):
        items = [(str(k), [v] if isinstance(v, (str, int, float)) or v is None else list(v)) for k, v in grid.items()]
    else:
        raise TypeError(f"{name} must be text such as 'hidden=8,16;lr=0.01' or a dict of lists, got {grid!r}")
    if not items:
        raise ValueError(f"{name} is empty: give KEY=VALUES separated by semicolons, e.g. 'hidden=8,16;lr=0.01,0.001'")
    keys: list[str] = []
    values: list[tuple[Any, ...]] = []
    for given, raw in items:
        key = given.strip().replace("-", "_")
        if key not in KEYS:
            shown = ",".join(map(str, raw))
            raise ValueError(f"{name} {given}={shown}: unknown key {given!r}; the keys are {', '.join(KEYS)}")
        if key in keys:
            raise ValueError(f"{name} {given} is given twice; give each key once with all its values")
        if not raw:
            raise ValueError(f"{name} {given} has no values; give them separated by commas, e.g. {given}=8,16")
        parsed = [_value(key, v, f"{name} {given}") for v in raw]
        for i, v in enumerate(parsed):
            if v in parsed[:i]:
                raise ValueError(f"{name} {given}={_show(key, v)} is given twice; give each value once")
        keys.append(key)
        values.append(tuple(parsed))
    grid_ = Grid(tuple(keys), tuple(values))
    _no_lbfgs_rate(grid_, name)
    return grid_


def _grid_items(text: str, name: str) -> list[tuple[str, list[str]]]:
    items = []
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, rest = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{name} {part.strip()!r} is not KEY=VALUES (e.g. hidden=8,16 or lr=0.01,0.001)")
        items.append((key.strip(), [] if not rest.strip() else [v.strip() for v in rest.split(",")]))
    return items


def _value(key: str, value: Any, name: str) -> Any:
    """One grid value, read from text where it is text, checked by the key's rule."""
    rule = KEYS[key]
    if isinstance(value, str):
        value = _from_text(key, value)
    if key == "hidden" and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [int(value)]
    elif key == "hidden" and isinstance(value, tuple):
        value = list(value)
    if key in NUMBER_KEYS and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = float(value)  # (alpha=0 and alpha=0.0 are one configuration)
    return check(None, name, value, rule)


def _from_text(key: str, text: str) -> Any:
    """The value ``text`` stands for under ``key``, or the text itself when it stands for none (the check says so)."""
    try:
        if key == "hidden":
            return [int(v) for v in text.lower().split("x")]
        if key == "batch_size":
            return None if text.lower() in ("all", "none") else int(text)
        if key in INTEGER_KEYS:
            return int(text)
        if key in NUMBER_KEYS:
            return float(text)
    except ValueError:
        return text
    return text


def _no_lbfgs_rate(grid: Grid, name: str) -> None:
    """lbfgs takes no learning rate and no weight decay (fit refuses them): one line before any work."""
    if "lbfgs" not in dict(zip(grid.keys, grid.values)).get("optimizer", ()):
        return
    for key in ("lr", "weight_decay"):
        if key in grid.keys:
            raise ValueError(
                f"{name} optimizer=lbfgs takes no {key} (scipy's line search sets each step's length), but the grid "
                f"gives {key}={','.join(_show(key, v) for v in grid.values[grid.keys.index(key)])}; sweep lbfgs in "
                "a grid of its own"
            )


def _show(key: str, value: Any) -> str:
    """A value as the grid's text writes it: 8x8, all, 0.001."""
    if key == "hidden":
        return "x".join(map(str, value))
    if value is None:
        return "all"
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else str(int(value))
    return str(value)


def describe(config: Mapping[str, Any]) -> str:
    """A configuration in one short line: ``hidden=8x8 lr=0.01``."""
    return " ".join(f"{k}={_show(k, v)}" for k, v in config.items())


def _identity(config: Mapping[str, Any], fold: int | None) -> str:
    return json.dumps([sorted(config.items()), fold])


# ---- the folds ----------------------------------------------------------------------------


def kfold(rows: int, folds: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Each row's fold, 0 to ``folds - 1``: rows drawn in a random order from ``seed`` and dealt out in turn.

    With ``labels`` (classification) the folds are stratified as :func:`chainrule.validation.split`
    holds rows out: each class's rows are shuffled on their own (the classes in sorted order,
    from one generator), and the classes one after another are dealt round the folds, so every
    fold holds each class's share to within a row and the folds' sizes differ by at most one::

        >>> kfold(7, 3, seed=0).tolist().count(0), kfold(7, 3, seed=0).tolist().count(2)
        (3, 2)
        >>> y = np.array([0, 0, 0, 1, 1, 1])
        >>> [sorted(y[kfold(6, 3, seed=0, labels=y) == k].tolist()) for k in range(3)]
        [[0, 1], [0, 1], [0, 1]]
    """
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(rows)
    else:
        classes, inverse = np.unique(labels, return_inverse=True)
        order = np.concatenate([rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))])
    fold = np.empty(rows, dtype=np.int64)
    fold[order] = np.arange(rows) % folds
    return fold


# ---- one task -------------------------------------------------------------------------------


class Setup(NamedTuple):
    """What every task of a sweep shares: the rows, each row's fold, and the options that are not swept."""

    x: np.ndarray
    y: np.ndarray  # numbers (regression) or class indices into ``classes``
    fold_of_row: np.ndarray
    features: list[str]
    target: str
    classes: list[Any] | None
    loss: str  # the library's name: mse, ssr, cross_entropy
    standardize: bool
    seed: int
    restarts: int | None


def _trainer(setup: Setup, config: Mapping[str, Any], rows: np.ndarray) -> tuple[Model, Trainer]:
    """A Model and its Trainer for ``config`` on ``rows``, as ``chainrule fit`` builds them from its options."""
    s = {"hidden": [2], "activation": "softplus", "optimizer": "gd", "alpha": 0.0, "weight_decay": 0.0,
         "batch_size": None, "max_iter": 1000, "tol": None, "schedule": None, "clip": None, **config}  # fmt: skip
    x, y = setup.x[rows], setup.y[rows]
    classify = setup.classes is not None
    sizes = [x.shape[1], *s["hidden"], len(setup.classes) if setup.classes is not None else 1]
    scaling = Scaling.fit(x, None if classify else y) if setup.standardize else None
    model = Model(mlp(sizes, s["activation"], seed=setup.seed), setup.features, setup.target, setup.classes,
                  scaling, loss=setup.loss)  # fmt: skip
    if s["optimizer"] == "lbfgs":
        optimizer: Any = LBFGS()
    else:  # fit's defaults: lr 0.1, and adamw's decoupled decay 0.01 unless one is given
        decay = s["weight_decay"] if s["weight_decay"] or s["optimizer"] != "adamw" else 0.01
        optimizer = OPTIMIZERS[s["optimizer"]](lr=s.get("lr", 0.1), weight_decay=decay)
    trainer = Trainer(model.network, model.network_inputs(x), model.network_targets(y), loss=setup.loss,
                      optimizer=optimizer, tol=s["tol"], max_iter=s["max_iter"], batch_size=s["batch_size"],
                      seed=setup.seed, monitor=False, restarts=setup.restarts, compile=True, alpha=s["alpha"],
                      schedule=s["schedule"], clip=s["clip"])  # fmt: skip
    return model, trainer


def _train(setup: Setup, config: Mapping[str, Any], rows: np.ndarray) -> tuple[Model, Any]:
    """(the trained Model, its History), or (the Model, None) when training diverged."""
    model, trainer = _trainer(setup, config, rows)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # (not converging in max_iter is what a sweep looks at, not a warning)
        try:
            history = trainer.run()
        except DivergenceError:
            return model, None
    if trainer.population_interrupted:  # Ctrl-C stopped the random starts: no result to save
        raise KeyboardInterrupt
    return model, history


def score(model: Model, x: np.ndarray, y: np.ndarray) -> float:
    """The held-out score: accuracy of the predicted classes (class indices ``y``), or R^2 in the target's units."""
    if model.classes is not None:
        return accuracy(model.outputs(x).argmax(axis=1), y)
    return r2(model.predict(x), y)


def run_fold(setup: Setup, config: dict[str, Any], fold: int) -> dict[str, Any]:
    """One task: train ``config`` on every fold but ``fold`` and score it on ``fold``: the result line's numbers."""
    start = time.perf_counter()
    held = setup.fold_of_row == fold
    model, history = _train(setup, config, np.flatnonzero(~held))
    line: dict[str, Any] = {"config": config, "fold": fold}
    if history is None:
        line.update(score=None, train_loss=None, n_iter=None, converged=False, stop_reason="diverged")
    else:
        trained = model.evaluate(setup.x[~held], setup.y[~held] if setup.classes is None else
                                 [setup.classes[i] for i in setup.y[~held]]).loss  # fmt: skip
        line.update(
            score=_finite(score(model, setup.x[held], setup.y[held])),
            train_loss=_finite(trained),
            n_iter=history.n_iter,
            converged=bool(history.converged),
            stop_reason=history.stop_reason,
        )
    line.update(seconds=time.perf_counter() - start, version=__version__)
    return line


def run_all(setup: Setup, config: dict[str, Any]) -> Model:
    """The final task: ``config`` trained on all rows, with its training record."""
    start = time.perf_counter()
    model, history = _train(setup, config, np.arange(len(setup.x)))
    if history is None:
        raise ValueError(f"training {describe(config)} on all {len(setup.x)} rows diverged; no model written")
    labels = setup.y if setup.classes is None else [setup.classes[i] for i in setup.y]
    model.training = {
        "rows": len(setup.x), "seed": setup.seed, "restarts": setup.restarts, **config,
        "n_iter": history.n_iter, "stop_reason": history.stop_reason,
        "final_loss": model.evaluate(setup.x, labels).loss, "seconds": time.perf_counter() - start,
    }  # fmt: skip
    return model


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# ---- the results file ---------------------------------------------------------------------


class _Results:
    """``results.jsonl``: the header line, then one result a line, each flushed and fsynced as it is written."""

    def __init__(self, path: str, header: dict[str, Any], tasks: set[str]) -> None:
        self.path, self.header = path, header
        self.found: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.good = self._read(header, tasks) if os.path.exists(path) else 0
        self.file: IO[bytes] | None = None

    def begin(self) -> None:
        """Open the file to append to: cut back to its whole lines, or new with the header."""
        self.file = open(self.path, "r+b" if self.good else "wb")  # noqa: SIM115 (closed by close())
        if self.good:
            self.file.truncate(self.good)  # a line cut short by a kill goes; the next line starts clean
            self.file.seek(self.good)
        else:
            self.write(self.header)
            _sync_folder(os.path.dirname(self.path))

    def _read(self, header: dict[str, Any], tasks: set[str]) -> int:
        """The results found (into ``found``) and the byte length of the file's complete lines (0: start over)."""
        with open(self.path, "rb") as f:
            content = f.read()
        if not content:  # created by a run killed before it wrote the header: start over
            return 0
        lines = content.split(b"\n")
        complete, good = lines[:-1], 0
        if not complete and not lines[-1].startswith(b'{"format": "%s"' % FORMAT.encode()):
            raise ValueError(f"{self.path} is not a chainrule sweep's results file; give another --out folder")
        if lines[-1]:  # no newline at the end: the last line was being written when the run stopped
            self.notes.append(f"{self.path}: its last line was cut short (a run stopped while writing it); ignored")
        if not complete:
            return 0
        try:
            recorded = json.loads(complete[0])
        except ValueError:
            raise ValueError(f"{self.path} line 1 is not a sweep's header; give another --out folder") from None
        _same_sweep(self.path, recorded, header)
        good = len(complete[0]) + 1
        for number, raw in enumerate(complete[1:], start=2):
            try:
                line = json.loads(raw)
                key = _identity(line["config"], line["fold"])
            except (ValueError, KeyError, TypeError):
                if number == len(complete) and not lines[-1]:  # the last line, garbled as it was cut: ignored
                    self.notes.append(f"{self.path}: line {number} is not a whole result (cut short); ignored")
                    break
                raise ValueError(f"{self.path} line {number} is not a result line of a sweep: {_clip(raw)}") from None
            if key not in tasks:
                raise ValueError(f"{self.path} line {number} is not a task of this sweep: {_clip(raw)}")
            self.found.setdefault(key, line)
            good += len(raw) + 1
        return good

    def write(self, record: dict[str, Any]) -> None:
        assert self.file is not None, "begin() opens the file"
        self.file.write(json.dumps(record, allow_nan=False).encode("utf-8") + b"\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _same_sweep(path: str, recorded: Any, header: dict[str, Any]) -> None:
    """One line when the file's header is not this sweep's, naming the first thing that differs."""
    if not isinstance(recorded, dict) or recorded.get("format") != FORMAT:
        raise ValueError(f"{path} is not a chainrule sweep's results file; give another --out folder")
    for key, value in header.items():
        if key in ("format", "written_by", "data"):  # (the data file is known by its bytes, not its name)
            continue
        if recorded.get(key) != value:
            what = "data file (its SHA-256)" if key == "data_sha256" else key
            raise ValueError(
                f"{path} holds a sweep of another {what} ({_clip(json.dumps(recorded.get(key)))} there, "
                f"{_clip(json.dumps(value))} now); give another --out folder, or remove the file to start over"
            )


def _clip(text: Any, most: int = 80) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return text if len(text) <= most else text[: most - 3] + "..."


def _sync_folder(folder: str) -> None:
    """fsync a folder, so a file just created in it survives a crash (where the system allows it)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- the sweep --------------------------------------------------------------------------------


class ConfigScore(NamedTuple):
    """One configuration's scores: ``scores[k]`` on fold k (None where training diverged), their mean and
    std (NaN if any fold has none), and its ``rank`` (1 is the best; ties share the better rank)."""

    config: dict[str, Any]
    scores: list[float | None]
    mean: float
    std: float
    rank: int


class SweepResult(NamedTuple):
    """What :func:`sweep` found: the ``table`` (a :class:`ConfigScore` per configuration, in the grid's
    order), the ``best`` row, the files it wrote, and how many tasks it ``ran`` (the others came from
    the results file)."""

    table: list[ConfigScore]
    best: ConfigScore
    results: str
    scores_csv: str
    plot: str | None
    model: str
    ran: int
    kind: str  # "R^2" or "accuracy"


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep: ``saved`` of ``total`` results are in the file ``results``; running the
    sweep again resumes from there."""

    def __init__(self, saved: int, total: int, results: str) -> None:
        super().__init__(f"{saved} of {total} results saved in {results}")
        self.saved, self.total, self.results = saved, total, results


def sweep(
    data: str | os.PathLike,
    target: str,
    grid: str | Mapping[str, Any] | Grid,
    *,
    out: str | os.PathLike,
    folds: int = 5,
    features: Sequence[str] | None = None,
    loss: str = "mse",
    standardize: bool = False,
    restarts: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    scheduler: str | None = None,
    executor: Executor | None = None,
    progress: bool = False,
    notes: Callable[[str], Any] | None = None,
    plot: bool = True,
) -> SweepResult:
    """Train every configuration of ``grid`` on ``folds`` k-fold splits of the file ``data``; see the module.

    - ``data``: a CSV or Parquet file; ``target``: the column to predict; ``features``: the input
      columns (default: every other column).
    - ``grid``: text ``"hidden=8,16;lr=0.01,0.001;alpha=0,1e-4"`` or a dict of lists
      (:func:`parse_grid`).
    - ``loss``: "mse" (default), "ssr" or "cross-entropy" (a classifier; folds stratified, scored by
      accuracy; else R^2). ``standardize``: scale as ``chainrule fit --standardize`` does, from
      each fold's training rows. ``restarts``: every task trains that many random starts.
    - ``seed``: draws the folds, and is each training's seed (its initial weights and shuffling).
    - ``out``: the folder of the four files (created if missing). A results file there of the same
      sweep is resumed; of another sweep, refused.
    - Tasks run here, unless ``workers`` (local processes), ``scheduler`` (a Dask scheduler's
      address) or ``executor`` (any :class:`concurrent.futures.Executor`, left open) say otherwise.
    - ``progress``: a progress bar on stderr (tasks done, the best mean score so far);
      ``notes(text)``: called with what was found on resuming (a cut-short line ignored, ...);
      ``plot=False``: no ``scores.png``.

    Ctrl-C raises :class:`SweepInterrupted` (a KeyboardInterrupt) saying how many results are saved.
    """
    grid = parse_grid(grid)
    folds = check("sweep", "folds", folds, Integer(low=2))
    seed = check("sweep", "seed", seed, Integer(low=0))
    restarts = check("sweep", "restarts", restarts, ARGUMENTS["restarts"])
    loss_name = check("sweep", "loss", loss, OneOf(tuple(LOSS_NAMES)))
    chosen = [workers is not None, scheduler is not None, executor is not None]
    if sum(chosen) > 1:
        raise ValueError("sweep: give at most one of workers, scheduler and executor")
    if workers is not None:
        check("sweep", "workers", workers, Integer(low=1))
    setup, header = _prepare(os.fspath(data), target, features, grid, folds, LOSS_NAMES[loss_name], standardize,
                             restarts, seed)  # fmt: skip
    configs = grid.configs()
    _check_configs(setup, configs)
    folder = os.fspath(out)
    made = _folder(folder)
    tasks = [(c, k) for c in configs for k in range(folds)]
    keys = [_identity(c, k) for c, k in tasks]
    results = _Results(os.path.join(folder, RESULTS), header, set(keys))
    for note in results.notes:
        (notes or _warn)(note)
    todo = [i for i, key in enumerate(keys) if key not in results.found]
    if results.found and notes is not None:
        notes(f"resuming: {len(results.found)} of {len(tasks)} results found in {results.path}, {len(todo)} to run")
    bar = _Bar(len(tasks), folds, "accuracy" if setup.classes is not None else "R^2") if progress else None
    if bar is not None:
        for line in results.found.values():
            bar.add(line)
    try:
        with _executor(workers, scheduler, executor) as pool, bar or nullcontext():
            results.begin()  # (once the executor is there: a scheduler out of reach leaves no file behind)

            def done(_: int, line: dict[str, Any]) -> None:
                with _whole():  # a Ctrl-C waits for the line and the count: the message then says what is on disk
                    results.write(line)
                    results.found[_identity(line["config"], line["fold"])] = line
                if bar is not None:
                    bar.add(line)

            inline = isinstance(pool, _InProcess)
            for batch in [[i] for i in todo] if inline else [todo]:  # here: one at a time, each saved as it ends
                run_tasks(pool, run_fold, [(setup, *tasks[i]) for i in batch], star=True, on_done=done)
            table = _table(configs, results.found, folds)
            best = _best(table)
            model = run_tasks(pool, run_all, [(setup, best.config)], star=True)[0] if best else None
        return _write(folder, table, best, model, setup, header, len(todo), results.path, plot)
    except KeyboardInterrupt:
        raise SweepInterrupted(len(results.found), len(tasks), results.path) from None
    finally:
        results.close()
        if made and not os.listdir(folder):  # a run that wrote nothing (a scheduler out of reach) leaves no folder
            os.rmdir(folder)


def _prepare(data, target, features, grid, folds, loss, standardize, restarts, seed) -> tuple[Setup, dict]:
    """The tasks' shared Setup and the results file's header, from the data file and the options."""
    table = read_data(data, target=target, features=features)
    x, y, classes = table.for_training(loss == "cross_entropy")
    if len(x) < 2 * folds:
        raise ValueError(
            f"sweep: {folds} folds of {len(x)} rows leave fewer than 2 rows in a fold (R^2 needs 2); give fewer "
            f"folds (at most {len(x) // 2})"
        )
    fold_of_row = kfold(len(x), folds, seed, y if classes is not None else None)
    setup = Setup(x, y, fold_of_row, list(table.features), target, classes, loss, bool(standardize), seed, restarts)
    header = {
        "format": FORMAT, "version": VERSION, "written_by": f"chainrule {__version__}",
        "data": os.path.basename(data), "data_sha256": _sha256(data), "target": target,
        "features": setup.features, "loss": loss, "standardize": setup.standardize, "grid": grid.as_json(),
        "folds": folds, "seed": seed, "restarts": restarts,
    }  # fmt: skip
    return setup, header


def _folder(folder: str) -> bool:
    """Check ``folder`` and the files a sweep writes in it; make it if missing (returns whether it did)."""
    if not folder:
        raise ValueError("sweep: out is empty; give the folder to write the results in")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"sweep: cannot write in {folder}: it is not a folder")
    made = not os.path.exists(folder)
    os.makedirs(folder, exist_ok=True)
    for name in (RESULTS, TABLE, PLOT, MODEL):
        path = os.path.join(folder, name)
        if os.path.exists(path) and not os.path.isfile(path):
            raise ValueError(f"sweep: cannot write {path}: it is not a regular file")
    return made


def _check_configs(setup: Setup, configs: list[dict[str, Any]]) -> None:
    """Each configuration's Trainer built (not run) on fold 0's training rows: what fit refuses, refused now."""
    rows = np.flatnonzero(setup.fold_of_row != 0)
    for config in configs:
        try:
            _trainer(setup, config, rows)
        except (ValueError, TypeError) as e:
            raise type(e)(f"sweep: the grid's {describe(config)}: {e}") from None


@contextmanager
def _whole() -> Iterator[None]:
    """Ctrl-C held back until the block has run (in the main thread; elsewhere signals do not arrive)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


class _InProcess(Executor):
    """Runs each task here, at once, when it is submitted (a Ctrl-C in it stops the sweep there)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # (KeyboardInterrupt goes on up)
            future.set_exception(e)
        return future


@contextmanager
def _executor(workers: int | None, scheduler: str | None, executor: Executor | None) -> Iterator[Executor]:
    if executor is not None:
        yield executor
    elif workers is None and scheduler is None:
        yield _InProcess()
    else:
        with open_executor(workers=workers, scheduler=scheduler) as pool:
            yield pool


def _table(configs: list[dict[str, Any]], found: dict[str, dict[str, Any]], folds: int) -> list[ConfigScore]:
    rows = []
    for config in configs:
        scores = [found[_identity(config, k)]["score"] for k in range(folds)]
        values = np.array([math.nan if s is None else s for s in scores])
        rows.append((config, scores, float(values.mean()), float(values.std())))
    means = [m for _, _, m, _ in rows]
    return [ConfigScore(c, s, m, sd, _rank(m, means)) for c, s, m, sd in rows]


def _rank(mean: float, means: list[float]) -> int:
    """1 + the number of configurations with a higher mean (NaN ranks last)."""
    if math.isnan(mean):
        return 1 + sum(not math.isnan(m) for m in means)
    return 1 + sum(m > mean for m in means if not math.isnan(m))


def _best(table: list[ConfigScore]) -> ConfigScore | None:
    """The highest mean score (the first in the grid's order among equals); None if no mean is a number."""
    scored = [row for row in table if not math.isnan(row.mean)]
    return max(scored, key=lambda row: row.mean) if scored else None


def _write(folder, table, best, model, setup, header, ran, results, plot) -> SweepResult:
    """The table (CSV), the plot and the best model: each written atomically."""
    kind = "accuracy" if setup.classes is not None else "R^2"
    csv_path = os.path.join(folder, TABLE)
    with atomic_open(csv_path) as f:
        _write_csv(f, table)
    plot_path, png = None, None
    try:
        png = _plot(table, kind) if plot else None
    except ImportError:
        _warn(f"no {PLOT}: drawing it needs matplotlib (pip install matplotlib)")
    if png is not None:
        plot_path = os.path.join(folder, PLOT)
        with atomic_open(plot_path, "wb") as f:
            f.write(png)
    if best is None:
        raise ValueError(
            f"sweep: every configuration diverged on at least one fold, so none has a mean score; the table is in "
            f"{csv_path}, and no model was written (try smaller learning rates, or standardize)"
        )
    model.training = {"data": header["data"], "loss": setup.loss, "sweep": {
        "folds": header["folds"], "score": kind, "mean": best.mean, "std": best.std, "results": RESULTS},
        **{k: v for k, v in model.training.items() if k != "loss"}}  # fmt: skip
    model_path = os.path.join(folder, MODEL)
    save(model_path, model)
    return SweepResult(table, best, results, csv_path, plot_path, model_path, ran, kind)


def _write_csv(f: IO[str], table: list[ConfigScore]) -> None:
    keys = list(table[0].config)
    folds = len(table[0].scores)
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow([*keys, "mean_score", "std_score", "rank", *(f"fold{k + 1}" for k in range(folds))])
    for row in table:
        writer.writerow(
            [*(_show(k, v) for k, v in row.config.items()), repr(row.mean), repr(row.std), row.rank,
             *("" if s is None else repr(s) for s in row.scores)]
        )  # fmt: skip


def _plot(table: list[ConfigScore], kind: str) -> bytes:
    """A PNG: one row per configuration, its mean score (a dot), the folds' std (error bars) and each fold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # an optional dependency
    from matplotlib.figure import Figure

    n = len(table)
    figure = Figure(figsize=(7.0, 1.2 + 0.32 * n), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    where = np.arange(n)[::-1]  # the grid's first configuration on top
    means = np.array([row.mean for row in table])
    stds = np.array([row.std for row in table])
    best = int(np.nanargmax(means)) if np.isfinite(means).any() else None
    scores = np.array([[np.nan if s is None else s for s in row.scores] for row in table])
    ax.plot(scores.ravel(), np.repeat(where - 0.25, scores.shape[1]), ".", color="0.55", markersize=4,
            label="each fold")  # fmt: skip
    ax.errorbar(means, where, xerr=stds, fmt="o", color="#1f77b4", capsize=3, label="mean ± std of the folds")
    if best is not None:
        ax.plot(means[best], where[best], "*", color="#d62728", markersize=14, label="best", zorder=3)
    first = table[0].config  # the keys of one value label the axis once; the others label each configuration
    fixed = [k for k in first if all(row.config[k] == first[k] for row in table)] if n > 1 else []
    labels = [describe({k: v for k, v in row.config.items() if k not in fixed}) for row in table]
    ax.set_yticks(where, labels, fontsize=8)
    ax.set_ylim(-0.7, n - 0.4)
    ax.set_xlabel(f"{kind} on the held-out fold" + (f"  ({describe({k: first[k] for k in fixed})})" if fixed else ""))
    ax.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=3, fontsize=8, frameon=False)
    buffer = io.BytesIO()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _warn(text: str) -> None:
    warnings.warn(text, RuntimeWarning, stacklevel=3)


# ---- what the command line shows ------------------------------------------------------------------


class _Bar:
    """Progress on stderr: a rich bar on a terminal (tasks done / total, the best mean score so far), a
    plain line every tenth of the tasks otherwise."""

    def __init__(self, total: int, folds: int, kind: str) -> None:
        self.total, self.folds, self.kind = total, folds, kind
        self.done = 0
        self.scores: dict[str, list[float | None]] = {}
        self.every = max(1, total // 10)
        self.bar: Any = None

    def __enter__(self) -> _Bar:
        if sys.stderr.isatty():
            try:
                from rich.console import Console  # an optional dependency
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:
                return self
            self.bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("best mean {task.fields[kind]} {task.fields[best]}"), TimeElapsedColumn(),
                                console=Console(stderr=True))  # fmt: skip
            self.bar.add_task("sweep", total=self.total, completed=self.done, kind=self.kind, best=self.best())
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def add(self, line: dict[str, Any]) -> None:
        self.done += 1
        self.scores.setdefault(json.dumps(sorted(line["config"].items())), []).append(line["score"])
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], completed=self.done, best=self.best())
        elif self.done % self.every == 0 or self.done == self.total:
            print(f"sweep: {self.done}/{self.total} tasks, best mean {self.kind} {self.best()}", file=sys.stderr,
                  flush=True)  # fmt: skip

    def best(self) -> str:
        """The best mean over the configurations whose every fold is in."""
        means = [sum(s) / len(s) for s in self.scores.values() if len(s) == self.folds and None not in s]  # type: ignore[arg-type]
        return f"{max(means):.4g}" if means else "-"


def show(result: SweepResult) -> None:
    """Print the table (rich when installed, plain otherwise), the best configuration first in bold."""
    keys = list(result.table[0].config)
    head = ["rank", *keys, f"mean {result.kind}", "std"]
    rows = [[str(r.rank), *(_show(k, v) for k, v in r.config.items()), f"{r.mean:.4g}", f"{r.std:.3g}"]
            for r in sorted(result.table, key=lambda r: (r.rank, result.table.index(r)))]  # fmt: skip
    title = f"{len(result.table)} configurations x {len(result.best.scores)} folds"
    try:
        from rich.console import Console  # an optional dependency
        from rich.table import Table
    except ImportError:
        print(f"{title}\n{format_table(head, rows)}")
    else:
        table = Table(title=title)
        for h in head:
            table.add_column(h, justify="left" if h in keys and h != "hidden" else "right")
        for i, r in enumerate(rows):
            table.add_row(*r, style="bold" if i == 0 else None)
        Console().print(table)
    print(f"best: {describe(result.best.config)} (mean {result.kind} {result.best.mean:.4g})")
    print(f"wrote {result.model}, {result.scores_csv}" + (f", {result.plot}" if result.plot else ""))
