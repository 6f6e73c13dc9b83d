"""Batch prediction over partitions: many Parquet or CSV files, one output file each, on any executor.

A data set too big for one file comes as partitions: a directory or a glob of
Parquet and CSV files with the same columns. :func:`predict_partitions` writes
each partition's predictions to ``out_dir`` under the partition's own name, in
its own format (what ``chainrule predict PART --out DIR/PART`` writes: a CSV
partition's rows as they are, then the prediction columns; a Parquet
partition's columns as they are, then the predictions). Each partition is an
independent task (:class:`Partition`, picklable: the model file's bytes and two
paths) for :func:`chainrule.distribute.run_tasks`, so it runs in this process,
on local processes or on a Dask cluster, with the same numbers: a partition is
read a block at a time and the network sees the same ``ROWS_AT_ONCE`` rows at a
time as :meth:`~chainrule.modelfile.Model.predict` on the whole partition.

Before anything is written every partition's header (CSV) or schema (Parquet)
is checked against the model's feature columns, here; a mistake found later (a
bad cell in the middle of a file) stops the run naming the partition, and an
output is always written atomically (a whole file or none).

:func:`predict_frame` is the piece for ``dask.dataframe``'s ``map_partitions``
(see docs/scaling.md).

Example: two CSV partitions of a model of ``y = 2 x``::

    >>> import os, tempfile
    >>> import numpy as np
    >>> from chainrule import modelfile
    >>> from chainrule.nn import mlp
    >>> from chainrule.partitions import predict_partitions
    >>> folder = tempfile.TemporaryDirectory()
    >>> net = mlp([1, 1], seed=0)
    >>> net.parameters()[0].data[:] = 2.0; net.parameters()[1].data[:] = 0.0
    >>> model_path = os.path.join(folder.name, "model.json")
    >>> modelfile.save(model_path, net, features=["x"], target="y")
    >>> parts = []
    >>> for k in range(2):
    ...     parts.append(os.path.join(folder.name, f"part-{k}.csv"))
    ...     with open(parts[-1], "w") as f:
    ...         _ = f.write(f"x,name\\n{k},a\\n{k + 0.5},b\\n")
    >>> out = os.path.join(folder.name, "predicted")
    >>> [w.rows for w in predict_partitions(model_path, parts, out)]
    [2, 2]
    >>> print(open(os.path.join(out, "part-1.csv")).read(), end="")
    x,name,predicted_y
    1,a,2.0
    1.5,b,3.0
    >>> folder.cleanup()
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, NamedTuple

import numpy as np

from .data import PARQUET_SUFFIXES, FileBlocks
from .distribute import run_tasks
from .modelfile import ROWS_AT_ONCE, Model, atomic_open, load
from .streams import chunked

__all__ = [
    "Partition",
    "Written",
    "cell_text",
    "find_partitions",
    "not_finite",
    "partition_tasks",
    "predict_frame",
    "predict_partition",
    "predict_partitions",
    "predicted_cells",
    "prediction_columns",
    "prediction_header",
    "run_partitions",
]

DATA_SUFFIXES = (".csv", *PARQUET_SUFFIXES)  # the files of a directory that are partitions
_PARQUET_BATCH = 65_536  # rows of a Parquet partition copied to the output at a time


class Partition(NamedTuple):
    """One task: predict ``source`` with the model whose file holds ``model`` (bytes) into ``out``."""

    model: bytes
    source: str
    out: str
    proba: bool = False


class Written(NamedTuple):
    """What a task wrote: ``rows`` predicted from ``source`` into ``out``."""

    source: str
    out: str
    rows: int


# ---- the partitions and their outputs -----------------------------------------------------------


def find_partitions(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The partition files of ``data``: a directory (its ``.csv``, ``.parquet`` and ``.pq`` files, not
    its subdirectories), a glob such as ``"parts/*.parquet"``, a file, or a list of these; sorted by
    name within each, each file once. A ValueError when nothing matches."""
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    found: dict[str, None] = {}
    for item in (os.fspath(i) for i in items):
        if os.path.isdir(item):
            names = sorted(n for n in os.listdir(item) if n.lower().endswith(DATA_SUFFIXES) and n[0] not in "._")
            matched = [p for p in (os.path.join(item, n) for n in names) if os.path.isfile(p)]
            what = f"the directory {item} holds no .csv, .parquet or .pq files"
        elif os.path.exists(item) or not glob.has_magic(item):
            matched, what = [item], ""
        else:
            matched = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            what = f"{item} matches no files"
        if not matched:
            raise ValueError(f"no partitions to predict: {what}")
        found.update(dict.fromkeys(matched))
    return list(found)


def _tasks(raw: bytes, model: Model, paths: Sequence[str], out_dir: str, proba: bool) -> list[Partition]:
    """One checked task a partition: every header or schema read and every output name checked first."""
    if proba and model.classes is None:
        raise ValueError("proba=True (--proba) needs a classifier; the model does regression")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"cannot write the predictions into {out_dir}: it exists and is not a directory")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write the predictions into {out_dir}: the directory {parent} does not exist")
    tasks: list[Partition] = []
    outs: dict[str, str] = {}
    for path in paths:
        source = os.path.abspath(path)
        out = os.path.join(os.path.abspath(out_dir), os.path.basename(source))
        if out in outs:
            raise ValueError(f"the partitions {outs[out]} and {path} would both be written to {out}; rename one")
        outs[out] = path
        if os.path.exists(out) and os.path.samefile(out, source):
            raise ValueError(f"{path}: its output {out} is the partition itself; choose another output directory")
        if os.path.exists(out) and not stat.S_ISREG(os.stat(out).st_mode):
            raise ValueError(f"{path}: its output {out} exists and is not a regular file")
        _check_partition(path, model)
        tasks.append(Partition(raw, source, out, proba))
    return tasks


def _check_partition(path: str, model: Model) -> None:
    """The partition's columns (and that it has data rows), without reading its data."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file" if not os.path.exists(path) else f"{path} is not a regular file")
    blocks = FileBlocks(path, None, model.features)
    with open(path, "rb") as f:
        if blocks.parquet:
            import pyarrow.parquet as pq  # (FileBlocks has just read this file's schema with it)

            empty = pq.ParquetFile(f).metadata.num_rows == 0
        else:
            f.seek(blocks.offset)
            empty = not any(chunk.strip() for chunk in iter(lambda: f.read(1 << 16), b""))
    if empty:
        raise ValueError(f"{path} has no data rows")


# ---- one partition (what a worker runs) ----------------------------------------------------------

_MODELS: dict[str, Model] = {}  # this process's model, by the SHA-256 of its file: loaded once per worker


def _model(raw: bytes, name: str | None = None) -> Model:
    """The model a file's bytes hold (through :func:`~chainrule.modelfile.load`, with all its checks)."""
    key = hashlib.sha256(raw).hexdigest()
    model = _MODELS.get(key)
    if model is None:
        fd, path = tempfile.mkstemp(suffix=".json", prefix="chainrule-model-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            model = load(path)
        except ValueError as e:
            raise ValueError(str(e).replace(path, name or "the model file")) from None
        finally:
            os.unlink(path)
        _MODELS.clear()
        _MODELS[key] = model
    return model


def predict_partition(task: Partition) -> Written:
    """Write one partition's predictions (a task for :func:`~chainrule.distribute.run_tasks`).

    A ValueError names the partition (the first bad cell's line or row, or the first row whose output is
    not finite); the output is then left as it was."""
    model = _model(task.model)
    try:
        blocks = FileBlocks(task.source, None, model.features)
        rows = _write_parquet(task, model, blocks) if blocks.parquet else _write_csv(task, model, blocks)
    except ValueError as e:
        if task.source in str(e):
            raise
        raise ValueError(f"{task.source}: {e}") from None
    return Written(task.source, task.out, rows)


def prediction_header(model: Model, proba: bool) -> list[str]:
    """The names of the columns a prediction adds: ``predicted_<target>``, then ``probability_<class>``."""
    header = [f"predicted_{model.target or 'value'}"]
    if proba:
        header += [f"probability_{label}" for label in model.classes or ()]
    return header


def _predicted_columns(model: Model, blocks: FileBlocks, proba: bool) -> Iterator[list[np.ndarray]]:
    """Each ROWS_AT_ONCE rows' prediction columns (as Model.outputs splits a whole file: the same numbers);
    a ValueError at the first row whose output is not finite."""
    start = 0
    for x, _ in chunked(blocks(), ROWS_AT_ONCE):
        outputs, columns = prediction_columns(model, x, proba)
        bad = not_finite(model, outputs, columns[0])
        if bad.any():
            raise ValueError(
                f"{blocks.path}: the model's output is not a finite number (nan or inf) on data row "
                f"{start + int(np.argmax(bad)) + 1}; are the values far outside the training data's?"
            )
        yield columns
        start += len(x)


def prediction_columns(model: Model, x: Any, proba: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """(the network's outputs, [the predictions, then each class's probability if ``proba``]) from one
    forward pass; overflows are not warned of (:func:`not_finite` finds the rows, the caller says so)."""
    with np.errstate(all="ignore"):
        outputs = model.outputs(x)
        columns = [model.predictions_from(outputs)]
        if proba:
            p = model.probabilities_from(outputs)
            columns += [p[:, k] for k in range(p.shape[1])]
    return outputs, columns


def not_finite(model: Model, outputs: Any, predicted: Any) -> np.ndarray:
    """Per row, True where the network's outputs (or a regression's prediction) are not finite."""
    bad = ~np.all(np.isfinite(np.asarray(outputs, dtype=np.float64).reshape(len(predicted), -1)), axis=1)
    if model.classes is None:
        bad |= ~np.isfinite(np.asarray(predicted, dtype=np.float64))
    return bad


def predicted_cells(model: Model, blocks: FileBlocks, proba: bool) -> Iterator[list[str]]:
    """Each row's prediction cells (and probabilities) as CSV text, ROWS_AT_ONCE rows at a time."""
    for columns in _predicted_columns(model, blocks, proba):
        yield from ([cell_text(c[i]) for c in columns] for i in range(len(columns[0])))


def cell_text(value: Any) -> str:
    """A CSV cell: floats written exactly (shortest repr that reads back the same)."""
    return repr(float(value)) if isinstance(value, float) else str(value)


def _write_csv(task: Partition, model: Model, blocks: FileBlocks) -> int:
    """The partition's rows as they are, then the predictions, as CSV into ``task.out`` (atomically)."""
    count = 0
    with atomic_open(task.out) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(blocks.columns + prediction_header(model, task.proba))
        for cells, made in zip(blocks.rows_text(), predicted_cells(model, blocks, task.proba)):
            writer.writerow(cells + made)
            count += 1
    return count


def _write_parquet(task: Partition, model: Model, blocks: FileBlocks) -> int:
    """The partition's columns as they are, then the prediction columns, as Parquet into ``task.out``
    (atomically), a batch of rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    header = prediction_header(model, task.proba)
    labels = pa.float64() if model.classes is None else pa.array(list(model.classes)).type
    types = [labels] + [pa.float64()] * (len(header) - 1)
    pending = _Rows(_predicted_columns(model, blocks, task.proba))
    with open(task.source, "rb") as source:
        parquet = pq.ParquetFile(source)
        schema = parquet.schema_arrow
        for name, kind in zip(header, types):
            schema = schema.append(pa.field(name, kind))
        with atomic_open(task.out, "wb") as f, pq.ParquetWriter(f, schema) as writer:
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH):
                made = [pa.array(c.tolist(), type=k) for c, k in zip(pending.take(batch.num_rows), types)]
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns + made, schema=schema))
    return pending.given


class _Rows:
    """Prediction columns that come ROWS_AT_ONCE rows at a time, given out in any number of rows."""

    def __init__(self, blocks: Iterator[list[np.ndarray]]) -> None:
        self.blocks, self.given = blocks, 0
        self.held: list[np.ndarray] = []

    def take(self, n: int) -> list[np.ndarray]:
        parts: list[list[np.ndarray]] = []
        while n:
            if not self.held or len(self.held[0]) == 0:
                self.held = next(self.blocks)
            k = min(n, len(self.held[0]))
            parts.append([c[:k] for c in self.held])
            self.held = [c[k:] for c in self.held]
            n, self.given = n - k, self.given + k
        return [np.concatenate(cs) for cs in zip(*parts)]


# ---- all of them -------------------------------------------------------------------------------


def predict_partitions(
    model_path: str | os.PathLike,
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    executor: Executor | None = None,
    *,
    proba: bool = False,
    on_done: Callable[[int, Written], Any] | None = None,
) -> list[Written]:
    """Predict every partition in ``paths`` with the model file ``model_path``, one output each in ``out_dir``.

    ``paths``: what :func:`find_partitions` takes (a directory, a glob, files). ``out_dir`` is made if it
    does not exist (its parent must); an output already there is replaced, atomically, as
    ``chainrule predict --out`` replaces its file. ``executor``: None runs the partitions here, one after
    another; else any :class:`concurrent.futures.Executor`
    (:func:`chainrule.distribute.open_executor`), each worker given the model file's bytes (read once,
    here: every partition gets the same model) and the partitions' absolute paths, which it must be able
    to open (a shared file system). ``proba``: a classifier's probabilities too. ``on_done(i, written)``
    is called here as partition ``i`` is written. Returns a :class:`Written` a partition, in order.
    The same as ``run_partitions(partition_tasks(model_path, paths, out_dir, proba), executor, on_done)``.
    """
    return run_partitions(partition_tasks(model_path, paths, out_dir, proba), executor, on_done)


def partition_tasks(
    model_path: str | os.PathLike,
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    proba: bool = False,
) -> list[Partition]:
    """The tasks of :func:`predict_partitions`, every partition's columns and output checked; nothing written
    (so a command can check everything before it connects to a scheduler)."""
    model_path = os.fspath(model_path)
    with open(model_path, "rb") as f:
        raw = f.read()
    return _tasks(raw, _model(raw, model_path), find_partitions(paths), os.fspath(out_dir), proba)


def run_partitions(
    tasks: Sequence[Partition],
    executor: Executor | None = None,
    on_done: Callable[[int, Written], Any] | None = None,
) -> list[Written]:
    """Run the tasks of :func:`partition_tasks` here (``executor`` None) or on ``executor``, their output
    directories made first; ``on_done(i, written)`` as each finishes."""
    for folder in dict.fromkeys(os.path.dirname(task.out) for task in tasks):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
    if executor is not None:
        return run_tasks(executor, predict_partition, tasks, on_done=on_done)
    written = []
    for i, task in enumerate(tasks):
        written.append(predict_partition(task))
        if on_done is not None:
            on_done(i, written[-1])
    return written


# ---- dask.dataframe ----------------------------------------------------------------------------


def predict_frame(frame: Any, model: Model | str | os.PathLike, proba: bool = False) -> Any:
    """A pandas DataFrame with the model's prediction columns added (named as ``chainrule predict`` names
    them): the function for ``dask.dataframe``'s ``map_partitions``.

    ``model``: a :class:`~chainrule.modelfile.Model`, or the path of its file (loaded once per process,
    its bytes read on each call). The feature columns are taken by the model's names as float64; a
    missing one or a cell that is not a finite number (a null, NaN) is a ValueError.

    Example::

        >>> import pandas as pd
        >>> from chainrule.modelfile import Model
        >>> from chainrule.nn import mlp
        >>> net = mlp([1, 1], seed=0)
        >>> net.parameters()[0].data[:] = 2.0; net.parameters()[1].data[:] = 1.0
        >>> predict_frame(pd.DataFrame({"x": [0.0, 1.5]}), Model(net, ["x"], "y"))
             x  predicted_y
        0  0.0          1.0
        1  1.5          4.0
    """
    if not isinstance(model, Model):
        with open(model, "rb") as f:
            model = _model(f.read(), os.fspath(model))
    missing = [name for name in model.features if name not in frame.columns]
    if missing:
        raise ValueError(f"predict_frame: the frame has no column {missing[0]!r} (the model's features: "
                         f"{model.features}; the frame's columns: {list(frame.columns)})")  # fmt: skip
    x = frame[model.features].to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        row, column = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"predict_frame: row {frame.index[row]}, column {model.features[column]!r}: {float(x[row, column])!r} is "
            "not a finite number"
        )
    header = prediction_header(model, proba)
    columns = [model.predict(x)]
    if proba:
        p = model.predict_proba(x)
        columns += [p[:, k] for k in range(p.shape[1])]
    return frame.assign(**dict(zip(header, columns)))
