"""The ``chainrule`` command: ``demo`` walks through the lessons; ``fit``, ``predict``,
``evaluate`` and ``plot`` work on your own CSV or Parquet data (``--stream`` past memory); ``export``
writes ONNX; ``playground`` serves the lessons in the browser.

Each command is one ``_<name>_command(sub)`` function that adds its parser and
sets ``run`` to the function doing the work. A user's mistake (a ValueError,
TypeError or OSError) becomes one line on stderr, ``chainrule: error: ...``,
and exit status 2, with no output file written.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import json
import os
import re
import signal
import sys
import threading
import time
import warnings

import numpy as np

from .checks import Integer, Integers, Number, check
from .data import PARQUET_SUFFIXES, FileBlocks, dosage, read_data, stream
from .demo import run as run_demo
from .distribute import open_executor
from .explain import explain
from .export import to_onnx
from .loop import ARGUMENTS, Trainer, held_out_rows
from .losses import get_loss, ssr
from .modelfile import DTYPES, MAX_PARAMETERS, MIN_STD, ROWS_AT_ONCE, Model, Scaling, atomic_open, load, save
from .nn import DosageNetwork, mlp
from .optim import LBFGS, OPTIMIZERS
from .partitions import (
    cell_text,
    not_finite,
    partition_tasks,
    predicted_cells,
    prediction_columns,
    prediction_header,
    run_partitions,
)
from .restarts import MAX_ELEMENTS, population_elements
from .schedules import SCHEDULES
from .streams import SHUFFLE_BUFFER, Moments, chunked
from .sweep import SweepInterrupted, parse_grid, show, sweep
from .tensor import tensor
from .train import ConvergenceWarning, DivergenceError
from .validation import r2

EXAMPLES = """examples:
  chainrule demo
  chainrule explain --param w1
  chainrule fit data.csv --target y --out model.json
  chainrule predict model.json new.csv --out predictions.csv
  chainrule evaluate model.json test.csv
  chainrule plot model.json data.csv --out fit.png
  chainrule export model.json --out model.onnx
  chainrule playground"""

FIT_EXAMPLE = """examples:
  chainrule fit dosage.csv --target effect --out model.json
  chainrule fit houses.csv --target price --features area,rooms --hidden 16,16 \\
      --activation relu --optimizer adam --lr 0.01 --standardize --out houses.json
  chainrule fit flowers.csv --target species --loss cross-entropy --hidden 8 --out flowers.json
  chainrule fit houses.csv --target price --hidden 16 --optimizer adam --lr 0.01 --alpha 1e-4 \\
      --early-stopping --validation-fraction 0.2 --standardize --out houses.json
  chainrule fit dosage.csv --target effect --optimizer lbfgs --out model.json
  chainrule fit dosage.csv --target effect --restarts 1000 --workers 2 --out model.json

Ctrl-C stops training at the end of the current iteration and saves the best
model seen so far; among --restarts it stops the random starts within an
iteration and saves the start with the lowest loss as it stood then (with
--workers or --scheduler: the best start of the shards that had finished,
at its final values). A Ctrl-C
while the model file is being written lets the write finish first."""

LOSSES = {"ssr": "ssr", "mse": "mse", "cross-entropy": "cross_entropy"}
ACTIVATIONS = ("softplus", "relu", "sigmoid", "tanh")
IMAGE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


class _Help(argparse.HelpFormatter):
    """Wraps descriptions to the terminal; keeps the examples (the epilog) line for line."""

    def _fill_text(self, text, width, indent):
        if text.startswith(("example", "Example")):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse with its mistakes in one line, like chainrule's own (not the usage block first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _parser():
    parser = _Parser(
        prog="chainrule",
        description="Neural networks trained by backpropagation, with every derivative shown.",
        epilog=EXAMPLES,
        formatter_class=_Help,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _demo_command,
        _explain_command,
        _fit_command,
        _sweep_command,
        _predict_command,
        _evaluate_command,
        _plot_command,
        _export_command,
        _playground_command,
    ):
        add(sub)
    return parser


# The files this command has written in full: what a Ctrl-C's message names when it comes after them.
_WRITTEN: list[str] = []


@contextlib.contextmanager
def _writing(path, mode="w"):
    """``atomic_open``, the path noted in _WRITTEN once the file is in place."""
    with atomic_open(path, mode) as f:
        yield f
    _WRITTEN.append(os.fspath(path))


def main(argv: list[str] | None = None) -> int:
    _WRITTEN.clear()
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            _parser().print_help()
            return 2
        return args.run(args)
    except KeyboardInterrupt:  # outside training, where Ctrl-C means "stop and save"
        done = f"{', '.join(_WRITTEN)} written in full first" if _WRITTEN else "nothing written"
        print(f"\nchainrule: interrupted; {done}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`chainrule predict ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError, ImportError) as e:  # ImportError: pyarrow for a Parquet file
        print(f"chainrule: error: {_message(e)}", file=sys.stderr)
        return 2
    except MemoryError as e:  # beyond the estimates (another process took the memory, a lower ulimit)
        print(
            f"chainrule: error: out of memory ({_message(e)}); nothing written: use smaller --hidden sizes, fewer "
            "--restarts or a smaller --batch-size",
            file=sys.stderr,
        )
        return 2


def _message(e):
    """One line: what went wrong, where."""
    if isinstance(e, OSError) and e.filename:
        name = os.fsdecode(e.filename)
        return f"{name if name.isprintable() else repr(name)}: {' '.join(str(e.strerror or e).split())}"
    return " ".join(str(e).split()) or type(e).__name__


# ---- demo ---------------------------------------------------------------------------------


def _demo_command(sub):
    demo = sub.add_parser(
        "demo",
        help="reproduce the three lessons with the true numbers",
        description="Walk through the lessons: SSR against b3, gradient descent on b3, "
        "on w3, w4, b3 together, and on all seven parameters; then draw the "
        "lessons' pictures and animations into a folder.",
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="seed of the random start for the all-parameter fit (default 0)"
    )
    demo.add_argument(
        "--out",
        default="chainrule-demo",
        metavar="FOLDER",
        help="folder for the pictures (default chainrule-demo); --out '' draws none",
    )
    demo.add_argument(
        "--no-animations",
        dest="animations",
        action="store_false",
        help="draw the still pictures only, not the lessons' GIF animations",
    )
    demo.set_defaults(run=_demo)


def _demo(args):
    check(None, "--seed", args.seed, Integer(low=0))
    try:
        run_demo(seed=args.seed, out=args.out, animations=args.animations)
    except KeyboardInterrupt:  # each picture is written whole: those done before Ctrl-C stay
        if args.out and os.path.isdir(args.out) and os.listdir(args.out):
            print(f"\nchainrule: interrupted; the pictures written before it are in {args.out}", file=sys.stderr)
            return 130
        raise
    return 0


# ---- explain ------------------------------------------------------------------------------


def _explain_command(sub):
    p = sub.add_parser(
        "explain",
        help="write one derivative out as the chain rule, with numbers",
        description="Explain dLOSS/dPARAM as the chain rule: the chain of local derivatives, each factor's "
        "value per data point, and the total, which is the number backward computes. Without "
        "--model it is the lessons' network on the dosage data, starting as in the first lesson "
        "(the lessons' optimized values with b3 = 0; change any with --set). With --model and "
        "--data it is a saved model's loss on a CSV file.",
        epilog="examples:\n  chainrule explain --param b3\n  chainrule explain --param w1 --set b3=2.61"
        "\n  chainrule explain --param w3 --set w3=0.36 --set w4=0.63 --markdown"
        "\n  chainrule explain --model model.json --data data.csv --param 0.weight --index 0,1",
        formatter_class=_Help,
    )
    p.add_argument(
        "--param",
        default="b3",
        help="the parameter: w1, b1, w2, b2, w3, w4 or b3 for the lessons' network (default b3); a "
        "dotted name such as 0.weight for a saved model",
    )
    p.add_argument(
        "--index",
        metavar="I,J",
        help="the element of a matrix parameter (default: the one with the largest derivative)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a lessons' parameter value, e.g. --set b3=2.61 (repeatable; default: the lessons' values, b3 = 0)",
    )
    p.add_argument("--model", metavar="MODEL", help="a model file written by chainrule fit (needs --data)")
    p.add_argument("--data", metavar="DATA.csv", help="rows with the model's feature and target columns")
    p.add_argument("--markdown", action="store_true", help="print Markdown (for notebooks and docs)")
    p.set_defaults(run=_explain)


def _explain(args):
    if (args.model is None) != (args.data is None):
        raise ValueError("--model and --data go together: a saved model is explained on rows of a CSV file")
    loss, params, where = _saved_model_loss(args) if args.model else _lesson_loss(args)
    if args.param not in params:
        raise ValueError(f"--param {args.param!r} is not a parameter here; choose one of {list(params)}")
    index = None if args.index is None else tuple(_integers("--index", args.index, low=0, example="0,1"))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a finite loss may still have inf links
        e = explain(loss, params[args.param], index=index)
    print(f"{where}\n")
    print(e.markdown() if args.markdown else e.text())
    return 0


def _lesson_loss(args):
    values = {"b3": 0.0}
    for item in args.set:
        name, sep, value = item.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--set takes NAME=VALUE with a number, got {item!r}") from None
        if not sep:
            raise ValueError(f"--set takes NAME=VALUE, got {item!r}")
    net = DosageNetwork.from_lesson(**values)
    x, y = dosage()
    where = f"The lessons' network at {net.extra_repr()}, on dosages 0, 0.5, 1 -> observed 0, 1, 0"
    return ssr(net(x), y), dict(net.named_parameters()), where


def _saved_model_loss(args):
    if args.set:
        raise ValueError("--set changes the lessons' network; with --model the saved values are explained")
    model = load(args.model)
    data = model.read_csv(args.data, with_target=True)
    if model.classes is not None:
        targets = data.target_indices(model.classes)
    else:
        targets = np.asarray(model.network_targets(data.target_numbers()), dtype=np.float64)[:, None]
    dtype = model.network.parameters()[0].dtype
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a non-finite loss is named below
        outputs = model.network(tensor(model.network_inputs(data), dtype=dtype))
        loss = get_loss(model.loss)(outputs, targets.astype(dtype) if model.classes is None else targets)
    if not np.isfinite(loss.item()):
        raise ValueError(
            f"the {model.loss} loss of {args.model} on {args.data} is {loss.item()}: its numbers overflow, "
            "so there is no chain rule to show (are the data in the units the model was trained on?)"
        )
    network = f"{'-'.join(map(str, model.sizes))} network, {model.loss}"
    where = f"{args.model} ({network}) on the {len(targets)} rows of {args.data}"
    return loss, dict(model.network.named_parameters()), where


# ---- fit ------------------------------------------------------------------------------------


def _fit_command(sub):
    p = sub.add_parser(
        "fit",
        help="train a network on a CSV or Parquet file and save it to a model file",
        description="Train a multilayer perceptron on the columns of a CSV file (header line "
        "first) to predict one column, and write the trained model to a file. "
        "Regression by default; --loss cross-entropy makes a classifier.",
        epilog=FIT_EXAMPLE,
        formatter_class=_Help,
    )
    p.add_argument(
        "data",
        metavar="DATA.csv",
        help="the training data: a CSV file with a header line, or a Parquet file (.parquet, .pq)",
    )
    p.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    p.add_argument(
        "--features", metavar="A,B,C", help="the input columns, comma-separated (default: every column but the target)"
    )
    p.add_argument(
        "--hidden",
        default="2",
        metavar="SIZES",
        help="hidden layer sizes, comma-separated: 2 is the lessons' network, 16,16 two layers of 16 (default 2)",
    )
    p.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default="softplus",
        help="activation of the hidden layers (default softplus, the lessons')",
    )
    p.add_argument(
        "--loss",
        choices=list(LOSSES),
        default="mse",
        help="mse (mean squared error) or ssr (sum of squared residuals, the lessons') for numbers; "
        "cross-entropy treats the target as class labels, numbers or text (default mse: "
        "unlike the SSR, its derivatives do not grow with the number of rows)",
    )
    p.add_argument(
        "--optimizer",
        choices=(*OPTIMIZERS, "lbfgs"),
        default="gd",
        help="gd (gradient descent, the lessons'), momentum, adam, adamw, rmsprop, adagrad, or lbfgs "
        "(scipy's L-BFGS-B on all rows at once; --lr does not apply, --tol is its gradient tolerance) "
        "(default gd)",
    )
    p.add_argument("--lr", type=float, help="learning rate, > 0 (default 0.1; lbfgs takes none)")
    p.add_argument(
        "--tol",
        type=float,
        help="stop when every step size of an iteration is below this (default 0.001); with "
        "--stopping improvement or --early-stopping: the least improvement that counts; with --optimizer "
        "lbfgs: the gradient tolerance (default 1e-4, scikit-learn's)",
    )
    p.add_argument(
        "--alpha", type=float, default=0.0, help="L2 penalty on the weights, scikit-learn's alpha (default 0)"
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        metavar="W",
        help="the optimizer's weight decay (adamw: decoupled, default 0.01; others: added to the gradient, default 0)",
    )
    p.add_argument(
        "--schedule",
        choices=tuple(SCHEDULES),
        help="learning-rate schedule: constant, invscaling (lr / (rows seen + 1)^0.5) or adaptive "
        "(lr / 5 when the loss stops improving) (default: none, the rate stays)",
    )
    p.add_argument("--clip", type=float, metavar="NORM", help="clip the gradients' global norm to NORM (default: none)")
    p.add_argument(
        "--stopping",
        choices=("steps", "improvement"),
        default="steps",
        help="steps: every step size below --tol (the lessons'); improvement: the loss has not improved "
        "by --tol for more than --n-iter-no-change iterations (scikit-learn's) (default steps)",
    )
    p.add_argument(
        "--early-stopping",
        action="store_true",
        help="hold out --validation-fraction of the rows and stop when their score has not improved by "
        "--tol for more than --n-iter-no-change iterations; the best parameters are kept",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        metavar="F",
        help="hold out this fraction of the rows (stratified for a classifier, drawn from --seed) and "
        "report the score on them each iteration (default 0.1 with --early-stopping, else none)",
    )
    p.add_argument(
        "--n-iter-no-change",
        type=int,
        default=10,
        metavar="N",
        help="iterations without improvement that --stopping improvement and --early-stopping wait (default 10)",
    )
    p.add_argument("--max-iter", type=int, default=1000, help="stop after this many iterations (default 1000)")
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="train on shuffled mini-batches of N rows; an iteration is then a pass over the data "
        "(default: all rows at once)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the shuffling (default 0)")
    p.add_argument(
        "--restarts",
        type=int,
        metavar="N",
        help="train N random starts at once (one vectorized run) and keep the best: a guard "
        "against poor local minima (default: one start)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="K",
        help="with --restarts: train the starts in shards on K local processes, at most the cores (the same result as "
        "without)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --restarts: train the starts in shards on the workers of a running Dask scheduler, e.g. "
        "tcp://127.0.0.1:8786 (needs pip install chainrule[dask]; the same result as without)",
    )
    p.add_argument(
        "--standardize",
        action="store_true",
        help="scale each feature (and a numeric target) to mean 0 and standard deviation 1 "
        "before training; the model file keeps the scaling, so predictions come out in "
        "the original units (the loss shown while training is on the scaled target)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="read the file a block at a time, each epoch a new pass, in constant memory (needs --batch-size; "
        "--standardize takes one pass first): for files bigger than memory",
    )
    p.add_argument(
        "--shuffle-buffer",
        type=int,
        default=SHUFFLE_BUFFER,
        metavar="N",
        help=f"with --stream: rows mixed at a time (default {SHUFFLE_BUFFER:,}); a batch mixes rows only from "
        "about N rows around it, so shuffle a sorted file once first",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but warnings and errors")
    p.add_argument("--out", required=True, metavar="MODEL", help="the model file to write (JSON)")
    p.set_defaults(run=_fit)


def _fit(args):

    hidden, features = _hyperparameters(args)
    _check_out(args.out, args.data)
    optimizer = _optimizer(args)
    _combinations(args)
    _check_spread(args)
    if args.stream:
        return _fit_stream(args, hidden, features, optimizer)
    classify = args.loss == "cross-entropy"
    data = read_data(args.data, target=args.target, features=features)
    x, y, classes = data.for_training(classify)
    if classify:
        _check_labels(data, y, classes)
    sizes = [x.shape[1], *hidden, len(classes) if classify else 1]
    _check_size(args, sizes, len(x))
    scaling = None
    if args.standardize:  # from the training rows only: the held-out rows' values do not shape the scaling
        fraction, _ = _validation(args)
        rows = slice(None)
        if fraction is not None:
            try:
                rows = held_out_rows(y, fraction, args.seed, get_loss(LOSSES[args.loss]))[0]
            except ValueError as e:
                raise ValueError(_in_flags(str(e))) from None
        scaling = _scaling(data, x, None if classify else y, rows)
    network = mlp(sizes, args.activation, seed=args.seed)
    model = Model(network, data.features, args.target, classes, scaling, loss=LOSSES[args.loss])
    _say(
        args,
        f"fitting {args.target!r} from {', '.join(data.features)} ({len(data)} rows): network "
        f"{'-'.join(map(str, model.sizes))} ({args.activation}), {args.loss}, {args.optimizer}"
        + ("" if args.optimizer == "lbfgs" else f" lr {args.lr:g}"),
    )
    with _Deferred() as ctrl_c:  # Ctrl-C held back from the end of training (see _Progress) on
        with _executor(args) as executor:
            if args.restarts:
                where = "at once (no progress shown)"
                if executor is not None:
                    where = f"in shards on {_where(args)}"
                _say(args, f"training {args.restarts} random starts {where}, then the best one again alone ...")
            history, interrupted, held = _train(model, x, y, optimizer, args, executor=executor, then=ctrl_c)
        if history is None:
            return 2
        if interrupted and history.restart_losses is None and args.restarts:  # Ctrl-C before any shard finished
            print(f"chainrule: {history.stop_reason}; nothing written", file=sys.stderr)
            return 130
        model.training = _record(model, data, history, interrupted, args, _trained_rows(model, x, y, held))
        save(args.out, model)
        return _saved(args, model, history, ctrl_c)


def _saved(args, model, history, ctrl_c):
    """The summary after the model file is written (Ctrl-C still held back); one held back since training
    ended is said, exit 130."""
    _WRITTEN.append(os.fspath(args.out))
    _summary(args, model, history)
    if ctrl_c.pressed:
        print(f"chainrule: Ctrl-C after training: {args.out} was written in full first", file=sys.stderr)
        return 130
    return 0


def _fit_stream(args, hidden, features, optimizer):
    """fit --stream: mini-batch epochs over the file read a block at a time (the standardization in one pass
    first), the final loss in one more pass; memory stays flat whatever the file's rows."""
    whole = [
        flag
        for flag, on in (
            ("--restarts", args.restarts),
            ("--optimizer lbfgs", args.optimizer == "lbfgs"),
            ("--early-stopping", args.early_stopping),
            ("--validation-fraction", args.validation_fraction is not None),
        )
        if on
    ]
    if whole:
        raise ValueError(f"--stream reads a batch at a time; {', '.join(whole)} needs all rows at once: leave it out")
    if args.batch_size is None:
        raise ValueError("--stream trains on mini-batches: give --batch-size (e.g. 256)")
    check(None, "--shuffle-buffer", args.shuffle_buffer, Integer(low=0))
    classes = None
    if args.loss == "cross-entropy":  # one pass finds the labels (and counts the rows)
        finder = FileBlocks(args.data, args.target, features, labels=True)
        classes = finder.found_classes()
        _check_labels(finder, range(finder.rows), classes)
    source = stream(args.data, args.target, features, batch_size=args.batch_size,
                    shuffle_buffer=args.shuffle_buffer, seed=args.seed, classes=classes)  # fmt: skip
    names = source.blocks.features
    sizes = [len(names), *hidden, len(classes) if classes else 1]
    _check_size(args, sizes, args.batch_size)
    scaling = None
    if args.standardize:
        scaling = _streamed_scaling(source)
        source = source.scaled(*scaling)
    model = Model(mlp(sizes, args.activation, seed=args.seed), names, args.target, classes, scaling,
                  loss=LOSSES[args.loss])  # fmt: skip
    rows = f"{source.rows} rows" if source.rows is not None else "rows read as they stream"
    _say(
        args,
        f"streaming {args.target!r} from {', '.join(names)} ({rows}, batches of {args.batch_size}, a shuffle buffer "
        f"of {args.shuffle_buffer}): network {'-'.join(map(str, model.sizes))} ({args.activation}), {args.loss}, "
        f"{args.optimizer} lr {args.lr:g}",
    )
    with _Deferred() as ctrl_c:  # Ctrl-C held back from the end of training (see _Progress) on
        history, interrupted, _ = _train(model, None, None, optimizer, args, source, then=ctrl_c)  # no rows held out
        if history is None:
            return 2
        model.training = _record(model, _Streamed(source.blocks, model), history, interrupted, args)
        save(args.out, model)
        return _saved(args, model, history, ctrl_c)


def _streamed_scaling(source):
    """Scaling from one streaming pass (a std below MIN_STD becomes 1, as Scaling.fit has it), checked finite."""
    stats = source.statistics()
    columns = [*zip(source.blocks.features, stats.feature_mean, stats.feature_std)]
    if stats.target_mean is not None:  # (class indices are not scaled)
        columns.append((source.blocks.target, stats.target_mean, stats.target_std))
    for name, mean, std in columns:
        if not (np.isfinite(mean) and np.isfinite(std)):
            raise ValueError(
                f"--standardize cannot scale column {name!r}: its mean or standard deviation is not a finite "
                f"number (mean {mean:.3g}, std {std:.3g}); rescale the column first or leave out --standardize"
            )
    feature_std = np.where(stats.feature_std < MIN_STD, 1.0, stats.feature_std)
    target_std = None if stats.target_std is None else stats.target_std if stats.target_std >= MIN_STD else 1.0
    return Scaling(stats.feature_mean.tolist(), feature_std.tolist(), stats.target_mean, target_std)


class _Streamed:
    """What fit's record reads of a streamed file: its path, its rows and the model's loss on them, counted in
    one more pass."""

    def __init__(self, blocks, model):
        self.path, self.rows, self.final = blocks.path, 0, 0.0
        loss_fn = get_loss(model.loss)
        mean = getattr(loss_fn, "reduction", "mean") == "mean"
        for x, y in chunked(blocks(), ROWS_AT_ONCE):  # as Model.evaluate computes it, ROWS_AT_ONCE rows at a time
            if model.classes is not None:
                value = loss_fn(model.outputs(x), y).item()
            else:
                predicted = model.predict(x)
                value = loss_fn(predicted, y.astype(predicted.dtype)).item()
            self.final += value * len(x) if mean else value
            self.rows += len(x)
        self.final = self.final / self.rows if mean else self.final

    def __len__(self):
        return self.rows

    def loss(self, model):
        """The model's loss on the file's rows, in the target's units (a mean loss: the blocks' by their rows)."""
        return self.final


class _Deferred:
    """Holds Ctrl-C back from the end of training until the model file is written (``pressed`` says whether
    it came); main thread only.

    Training's own handler (:class:`_Progress`) hands over to it as training ends (``take_over``), so that
    no moment between the last iteration and the write lets a Ctrl-C throw the finished model away; leaving
    the context puts the handler back. A second Ctrl-C while it holds aborts (the write, if it has begun,
    leaves no file).
    """

    def __init__(self):
        self.pressed, self.previous, self.holding = False, None, False

    def take_over(self, previous):
        """Hold Ctrl-C from now on; ``previous``: the handler to put back at the end."""
        if not self.holding and threading.current_thread() is threading.main_thread():
            self.previous, self.holding = previous, True
            signal.signal(signal.SIGINT, self._press)

    def release(self):
        if self.holding:
            signal.signal(signal.SIGINT, self.previous)
            self.holding = False

    def __enter__(self):
        return self

    def _press(self, signum, frame):
        if self.pressed:  # asked twice: stop now
            self.release()
            raise KeyboardInterrupt
        self.pressed = True

    def __exit__(self, *exc):
        self.release()


def _check_labels(data, y, classes):
    """Cross-entropy on a numeric target that is not labels (fractions, or a distinct value on most rows)."""
    numbers = [c for c in classes if isinstance(c, float)]
    many = len(classes) > max(20, len(y) // 2)
    if numbers or (many and all(isinstance(c, (int, float)) for c in classes)):
        example = numbers[0] if numbers else classes[-1]
        raise ValueError(
            f"--loss cross-entropy treats {data.target!r} as class labels, but it holds continuous numbers "
            f"({len(classes)} distinct values on {len(y)} rows, e.g. {example!r}); use --loss mse for a regression"
        )


def _check_size(args, sizes, rows):
    """One line, before anything is allocated, when the network (times --restarts) would pass MAX_ELEMENTS, or
    would be a model file too big to load (modelfile.MAX_PARAMETERS)."""
    parameters = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    if parameters > MAX_PARAMETERS:
        raise ValueError(
            f"a {'-'.join(map(str, sizes))} network has {parameters:,} parameters, more than a model file may hold "
            f"(chainrule.modelfile.MAX_PARAMETERS = {MAX_PARAMETERS:,}); use smaller --hidden sizes"
        )
    batch = min(args.batch_size or rows, rows)
    need = population_elements(parameters, batch, max(sizes), args.restarts)
    if need > MAX_ELEMENTS:
        starts = f" x {args.restarts} --restarts" if args.restarts else ""
        raise ValueError(
            f"a {'-'.join(map(str, sizes))} network{starts} on {batch} rows needs about {need:.3g} float64 numbers "
            f"({need * 8 / 1e9:.3g} GB), more than the limit of {MAX_ELEMENTS:.3g} (chainrule.restarts.MAX_ELEMENTS); "
            "use smaller --hidden sizes, fewer --restarts or a smaller --batch-size"
        )


def _scaling(data, x, y, rows=slice(None)):
    """Scaling.fit on ``rows``, checked now: every mean, std and scaled value (of every row) finite, or a
    ValueError naming the column."""
    with np.errstate(all="ignore"):
        scaling = Scaling.fit(x[rows], None if y is None else y[rows])
        columns = [
            (name, x[:, j], scaling.feature_mean[j], scaling.feature_std[j]) for j, name in enumerate(data.features)
        ]
        if y is not None:
            columns.append((data.target, y, scaling.target_mean, scaling.target_std))
        for name, values, mean, std in columns:
            if not (np.isfinite(mean) and np.isfinite(std) and np.all(np.isfinite((values - mean) / std))):
                raise ValueError(
                    f"--standardize cannot scale column {name!r}: its mean or standard deviation is not a finite "
                    f"number (mean {mean:.3g}, std {std:.3g}; values up to {np.max(np.abs(values)):.3g}); "
                    "rescale the column first or leave out --standardize"
                )
    return scaling


# (option, attribute, what it must be), checked before any data is read; an option not given (None) is
# left to fit's default
# NOTE: every shard or task beyond the cores would start a local process of its own (1000 restarts on
# --workers 100 start 62), each paying its start-up for no speed: at most the cores (2 on a smaller machine).
LOCAL_WORKERS = Integer(low=1, high=max(2, os.cpu_count() or 1))
LIMITS = (
    ("--lr", "lr", Number(low=0, low_open=True)),
    ("--tol", "tol", Number(low=0)),
    ("--max-iter", "max_iter", Integer(low=1)),
    ("--batch-size", "batch_size", Integer(low=1)),
    ("--restarts", "restarts", Integer(low=1)),
    ("--workers", "workers", LOCAL_WORKERS),
    ("--seed", "seed", Integer(low=0)),
    ("--alpha", "alpha", ARGUMENTS["alpha"]),
    ("--weight-decay", "weight_decay", Number(low=0)),
    ("--clip", "clip", Number(low=0, low_open=True)),
    ("--validation-fraction", "validation_fraction", ARGUMENTS["validation"]),
    ("--n-iter-no-change", "n_iter_no_change", ARGUMENTS["n_iter_no_change"]),
)


def _optimizer(args):
    """The optimizer the options name (lbfgs takes no learning rate; adamw decays by 0.01 unless told)."""
    if args.optimizer == "lbfgs":
        if args.weight_decay:
            raise ValueError("--weight-decay does not apply to --optimizer lbfgs; use --alpha for an L2 penalty")
        if args.lr is not None:
            raise ValueError("--lr does not apply to --optimizer lbfgs: scipy's line search sets each step's length")
        if args.stopping != "steps":
            raise ValueError(
                f"--stopping {args.stopping} does not apply to --optimizer lbfgs: scipy's own test stops it"
            )
        return LBFGS()
    if args.lr is None:  # (the default, set here: lbfgs is told apart from an --lr given)
        args.lr = 0.1
    decay = args.weight_decay if args.weight_decay or args.optimizer != "adamw" else 0.01
    return OPTIMIZERS[args.optimizer](lr=args.lr, weight_decay=decay)


def _combinations(args):
    """What --optimizer lbfgs and --restarts do not take, refused in flag names before anything is read or
    printed (fit refuses the same keywords: a test ties the two)."""
    given = [
        flag
        for flag, on in (
            ("--early-stopping", args.early_stopping),
            ("--validation-fraction", args.validation_fraction is not None),
            ("--schedule", args.schedule is not None),
            ("--clip", args.clip is not None),
            ("--stopping improvement", args.stopping == "improvement"),
        )
        if on
    ]
    if args.optimizer == "lbfgs" and (given or args.restarts):
        given += ["--restarts"] if args.restarts else []
        raise ValueError(
            f"--optimizer lbfgs minimizes the loss of all rows and stops by scipy's own test; it cannot be "
            f"combined with {', '.join(given)}"
        )
    given += ["--alpha"] if args.alpha else []
    if args.restarts and given:
        raise ValueError(
            f"--restarts trains its starts with the lessons' rule and plain steps; it cannot be combined with "
            f"{', '.join(given)} (train one start at a time instead)"
        )


SCHEDULER_TIMEOUT = 10  # seconds to reach a --scheduler before giving up
ADDRESS = re.compile(r"((tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})")


def _check_spread(args):
    """--workers and --scheduler spread --restarts: one of them, with --restarts, a well-formed address."""
    if args.workers is not None and args.scheduler is not None:
        raise ValueError("--workers (local processes) and --scheduler (a Dask cluster): give one of them, not both")
    flag = "--workers" if args.workers is not None else "--scheduler" if args.scheduler is not None else None
    if flag is not None and not args.restarts:
        raise ValueError(f"{flag} spreads the random starts of --restarts over workers; give --restarts N too")
    if args.scheduler is not None:
        match = ADDRESS.fullmatch(args.scheduler)
        if match is None or not 0 < int(match.group(4)) < 65536:
            raise ValueError(
                f"--scheduler must be a Dask scheduler's address such as tcp://127.0.0.1:8786, got {args.scheduler!r}"
            )


def _where(args):
    if args.workers is not None:
        return f"{args.workers} local process" + ("es" if args.workers > 1 else "")
    return f"the Dask scheduler {args.scheduler}"


@contextlib.contextmanager
def _executor(args):
    """The executor --workers or --scheduler asks for (None: the starts train here), shut down afterwards."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    with open_executor(args.workers, args.scheduler, timeout=SCHEDULER_TIMEOUT) as executor:
        yield executor


def _validation(args):
    """fit's validation and stopping from --early-stopping, --validation-fraction and --stopping."""
    fraction = args.validation_fraction
    if args.early_stopping:
        if args.stopping != "steps":
            raise ValueError("--early-stopping is a stopping rule of its own; leave out --stopping")
        return (0.1 if fraction is None else fraction), "early"
    return fraction, args.stopping


def _hyperparameters(args: argparse.Namespace) -> tuple[list[int], list[str] | None]:
    """(hidden sizes, feature names) from their text; every number checked, naming the option."""
    hidden = _integers("--hidden", args.hidden)
    features = None if args.features is None else [f.strip() for f in args.features.split(",")]
    if features is not None and not all(features):
        raise ValueError(f"--features must be column names separated by commas, got {args.features!r}")
    for flag, name, rule in LIMITS:
        if getattr(args, name) is not None:
            check(None, flag, getattr(args, name), rule)  # "--lr must be a finite number > 0, got 0.0"
    return hidden, features


def _integers(flag: str, text: str, low: int = 1, example: str = "2 or 16,16") -> list[int]:
    """Comma-separated integers >= ``low``, or a ValueError naming the option and what was given."""
    rule = Integers(low=low, min_length=1)
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not rule.accepts(values):
        raise ValueError(f"{flag} must be {rule.items} separated by commas (e.g. {example}), got {text!r}")
    return values


def _check_out(path, *inputs):
    """Fail now, not after training, when ``path`` cannot be written or is one of the ``inputs``."""
    if not os.fspath(path):
        raise ValueError("--out is empty; give the name of the file to write")
    for given in inputs:
        if _same_file(path, given):
            raise ValueError(f"--out {path} is the input file {given}; choose another name for the output")
    target = os.path.realpath(path)  # (the file is written through a symlink, to its target)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        via = f" (a symbolic link to {target})" if os.path.islink(path) else ""
        raise ValueError(f"cannot write {path}{via}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {path}: no permission to write in {folder}")
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path}: it is a directory")
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO, socket or device (symlinks are followed)
        raise ValueError(f"cannot write {path}: it is not a regular file; chainrule writes regular files only")


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def _train(model, x, y, optimizer, args, source=None, executor=None, then=None):
    """Run fit with progress, Ctrl-C and warnings handled: (History, interrupted, the held-out rows' indices
    or None), or (None, False, None) after a divergence. After Ctrl-C the network holds the best parameters
    seen. ``source``: a batch source (--stream) in place of x and y; ``executor``: where the random starts
    train (None: here); ``then``: a _Deferred that holds Ctrl-C from the moment training ends."""

    validation, stopping = _validation(args)
    progress = _Progress(args.max_iter, args.quiet, population=bool(args.restarts), then=then)
    with progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer = Trainer(
                model.network,
                *((source,) if source is not None else (model.network_inputs(x), model.network_targets(y))),
                loss=model.loss,
                optimizer=optimizer,
                tol=args.tol,
                max_iter=args.max_iter,
                batch_size=args.batch_size,
                seed=args.seed,
                callback=progress,
                restarts=args.restarts,
                compile=source is None or model.classes is None,  # (a stream of labels: eagerly)
                alpha=args.alpha,
                schedule=args.schedule,
                clip=args.clip,
                validation=validation,
                stopping=stopping,
                n_iter_no_change=args.n_iter_no_change,
                executor=executor,
            )  # an mlp replays exactly: the same numbers, faster
            trainer.on_shard = progress.shard
            progress.trainer = trainer
            history = trainer.run()
        except DivergenceError as e:
            print(
                f"chainrule: error: training diverged: {e.history.stop_reason}. Nothing was written; "
                f"{_divergence_hint(args, len(x) if source is None else source.rows or 0)}",
                file=sys.stderr,
            )
            return None, False, None
        except ValueError as e:  # fit's words for what the flags set
            raise ValueError(_in_flags(str(e))) from None
        progress.finish(history)
    _warn(caught, history, args.optimizer == "lbfgs")
    if trainer.population_interrupted:  # the model holds the best start where Ctrl-C found it
        return history, True, trainer.held_rows
    if progress.interrupted:
        model.network.load_state_dict(history.best_state)
    return history, progress.interrupted, trainer.held_rows


def _warn(caught, history, lbfgs=False):
    """Each warning as one line, not Python's two-line dump with the source file."""
    for w in caught:
        text = (
            f"did not converge: {history.stop_reason}; raise --max-iter" + ("" if lbfgs else " or --lr")
            if issubclass(w.category, ConvergenceWarning)
            else _in_flags(str(w.message).splitlines()[0])
        )
        print(f"chainrule: warning: {text}", file=sys.stderr)


# fit's keywords in the library's messages, as the command line's flags
FLAGS = (
    ("fit: validation=", "--validation-fraction "),
    ("stopping='improvement'", "--stopping improvement"),
    ("stopping='early'", "--early-stopping"),
    ("a smaller tol", "a smaller --tol"),
    ("or tol=0", "or --tol 0"),
)


def _in_flags(text):
    for keyword, flag in FLAGS:
        text = text.replace(keyword, flag)
    return text


def _divergence_hint(args, rows):
    if args.optimizer == "lbfgs":
        return "lbfgs takes no --lr: try --standardize, a larger --alpha or another --seed"
    hint = f"try a smaller --lr (it was {args.lr:g})"
    if args.loss == "ssr" and rows > 3:  # the SSR and its derivatives grow with the number of rows
        hint += f", e.g. {args.lr / rows:.2g}, or --loss mse, whose size does not grow with the {rows} rows"
    return hint + ("" if args.standardize else "; --standardize helps when columns have large values")


def _trained_rows(model, x, y, held):
    """(the rows trained on, their targets as labels for a classifier, how many were held out)."""
    kept = np.arange(len(x)) if held is None else np.setdiff1d(np.arange(len(x)), held)
    targets = y[kept] if model.classes is None else [model.classes[i] for i in y[kept]]
    return x[kept], targets, 0 if held is None else len(held)


def _record(model, data, history, interrupted, args, trained=None):
    """The model file's training section (final_loss: the saved model's loss on the rows it trained on).

    ``trained`` is (rows, targets, held out) of a file read whole; a streamed file (``_Streamed``) counts its
    rows and the loss in a pass of its own."""
    x, y, held_out = trained if trained is not None else (None, None, 0)
    return {
        "data": os.path.basename(data.path),
        "rows": len(x) if x is not None else len(data),
        "held_out_rows": held_out,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "tol": history.tol,
        "max_iter": args.max_iter,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "restarts": args.restarts,
        "alpha": args.alpha,
        "weight_decay": _optimizer(args).weight_decay,
        "schedule": args.schedule,
        "clip": args.clip,
        "stopping": history.stopping,
        "n_iter_no_change": args.n_iter_no_change,
        "validation_fraction": _validation(args)[0],
        **_validation_record(history),
        "n_iter": history.n_iter,
        "stop_reason": history.stop_reason,
        "interrupted": bool(interrupted),
        "final_loss": model.evaluate(x, y).loss if trained is not None else data.loss(model),
    }  # no wall-clock time (it is printed): two runs with the same seed write the same bytes


def _validation_record(history):
    """The held-out rows' scores for the model file: the last and the best (None without validation)."""
    if not history.validation_score:
        return {"validation_score": None, "best_validation_score": None}
    last, best = history.validation_score[-1], history.best_validation_score
    return {"validation_score": _finite(last), "best_validation_score": None if best is None else _finite(best)}


def _finite(value):
    return float(value) if np.isfinite(value) else None


def _summary(args, model, history):
    t = model.training
    spread = args.workers is not None or args.scheduler is not None
    if history.restart_losses is not None and history.n_iter == 0 and t["interrupted"] and spread:
        _say(args, f"{history.stop_reason}; saved it")
    elif getattr(history, "restart_losses", None) is not None and history.n_iter == 0 and t["interrupted"]:
        _say(
            args,
            f"interrupted while training the random starts: saved start {history.best_restart + 1} of "
            f"{len(history.restart_losses)} (the lowest loss, "
            f"{history.restart_losses[history.best_restart]:.6g}) as it was after "
            f"{int(history.restart_iterations[history.best_restart])} iterations, where its loss was lowest",
        )
    elif t["interrupted"]:
        _say(
            args,
            f"interrupted at iteration {history.n_iter}: saved the best model seen, from iteration {history.best_iter}",
        )
    else:
        _say(args, f"stopped: {history.stop_reason}")
    if getattr(history, "restart_losses", None) is not None:
        losses = history.restart_losses
        trained = losses[~np.isnan(losses)]  # (after Ctrl-C on workers: the starts of the finished shards)
        _say(
            args,
            f"restarts: kept start {history.best_restart + 1} of {len(losses)}; final losses from "
            f"{trained.min():.6g} to {trained.max():.6g} (median {np.median(trained):.6g})"
            + ("" if len(trained) == len(losses) else f" over the {len(trained)} finished starts"),
        )
    held = f" ({t['held_out_rows']} held out for validation)" if t["held_out_rows"] else ""
    _say(args, f"final loss: {model.loss} {t['final_loss']:.6g} on the {t['rows']} training rows{held}")
    if history.validation_score:
        kind = "accuracy" if model.classes is not None else "R^2"
        _say(
            args,
            f"validation {kind}: {history.validation_score[-1]:.6g} at the last iteration, best "
            f"{_number(history.best_validation_score)} at iteration {history.best_validation_iter}",
        )
    if history.n_iter == 0 and t["interrupted"]:  # only the random starts ran
        _say(args, f"time: {history.seconds:.3g} s for the random starts")
    else:
        _say(args, f"time: {history.seconds:.3g} s for {history.n_iter} iterations")
    _say(args, f"wrote {args.out}")


def _say(args, text):
    if not args.quiet:
        print(text, flush=True)


class _Progress:
    """fit's callback: shows the progress and, after Ctrl-C, asks fit to stop.

    A rich progress bar when stdout is a terminal (and rich is installed), a
    plain line every tenth of ``max_iter`` otherwise, nothing when quiet. While
    it is active, Ctrl-C sets a flag instead of raising KeyboardInterrupt (but
    raises it while the random starts of ``--restarts`` train, which stop on
    it); a second Ctrl-C aborts at once.
    """

    def __init__(self, max_iter, quiet, population=False, then=None):
        self.max_iter, self.quiet, self.then = max_iter, quiet, then
        self.population = population  # until the first iteration is shown, Ctrl-C stops the random starts
        self.every = max(1, max_iter // 10)
        self.interrupted = self.told = False
        self.bar = self.previous = self.trainer = None
        self.shown = 0.0

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self.previous = signal.signal(signal.SIGINT, self._interrupt)
        if not self.quiet and sys.stdout.isatty():
            self.bar = _rich_bar(self.max_iter)
        return self

    def __exit__(self, kind, *exc):
        if self.bar is not None:
            self.bar.stop()
        if self.previous is not None:
            if self.then is not None and kind is None:  # training ended: from here Ctrl-C waits for the write
                self.then.take_over(self.previous)
            else:
                signal.signal(signal.SIGINT, self.previous)

    def _interrupt(self, signum, frame):
        self.interrupted = True
        signal.signal(signal.SIGINT, self.previous)  # (a second Ctrl-C aborts at once)
        done = self.trainer is not None and self.trainer.history.restart_losses is not None
        if self.population and not done:  # the random starts show no iterations: they stop on KeyboardInterrupt
            if self.trainer is not None:  # (and after the batch, should this KeyboardInterrupt be swallowed)
                self.trainer.interrupt()
            raise KeyboardInterrupt
        # (the starts are done, the best one trains alone: it stops at its first iteration, as any run)

    def shard(self, done, total, best):
        """A shard of the random starts finished (--workers, --scheduler): one line on stderr."""
        if not self.quiet:
            print(f"random starts: shard {done}/{total} done, best loss so far {best:.6g}", file=sys.stderr, flush=True)

    def __call__(self, history):
        self.population = False
        self.show(history)
        if self.interrupted and not self.told:
            self.told = True
            print(f"\nCtrl-C: stopping after iteration {history.n_iter}", file=sys.stderr, flush=True)
        return self.interrupted

    def show(self, history, force=False):
        if self.quiet:
            return
        n, loss, step = history.n_iter, history.final_loss, history.largest_step
        if self.bar is not None:
            if force or time.monotonic() - self.shown > 0.05:  # redrawing every iteration costs more than one
                self.shown = time.monotonic()
                self.bar.update(self.bar.task_ids[0], completed=n, loss=f"{loss:.6g}", step=f"{step:.3g}")
        elif n % self.every == 0:
            print(f"iteration {n}/{self.max_iter}  loss {loss:.6g}  largest step {step:.3g}", flush=True)

    def finish(self, history):
        if self.bar is not None:
            self.show(history, force=True)


def _rich_bar(total):
    """A started rich Progress with one task, or None without rich."""
    try:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        return None
    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("iteration {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("largest step {task.fields[step]}"),
        TimeElapsedColumn(),
    )
    bar.add_task("fit", total=total, loss="-", step="-")
    bar.start()
    return bar


# ---- sweep ----------------------------------------------------------------------------------


def _sweep_command(sub):
    p = sub.add_parser(
        "sweep",
        help="train a grid of fit's options on k folds, resumable; keep the best model",
        description="Train every combination of the grid on each of k folds of the data (stratified for a "
        "classifier), score it on the held-out fold (R^2, or accuracy with --loss cross-entropy), and train the "
        "best combination on all rows. Each result is appended to OUT/results.jsonl as it finishes; run the "
        "same command again to resume. Writes OUT/scores.csv, OUT/scores.png and OUT/model.json.",
        epilog="\n".join(
            (
                "examples:",
                "  chainrule sweep houses.csv --target price \\",
                "      --grid 'hidden=8,16,32;lr=0.01,0.001;alpha=0,1e-4' --folds 5 --out houses-sweep",
                "  chainrule sweep flowers.csv --target species --loss cross-entropy \\",
                "      --grid 'hidden=8,8x8;optimizer=adam;lr=0.01' --workers 2 --out flowers-sweep",
                "",
                "grid keys (fit's options; a key left out takes fit's default): hidden (8, or 8x8 for two",
                "layers), activation, optimizer, lr, alpha, weight-decay, batch-size (a number or all),",
                "max-iter, tol, schedule, clip. Ctrl-C stops; what finished is saved, and the same command",
                "resumes.",
            )
        ),
        formatter_class=_Help,
    )
    p.add_argument("data", metavar="DATA.csv", help="the data: a CSV file with a header line, or a Parquet file")
    p.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    p.add_argument(
        "--features", metavar="A,B,C", help="the input columns, comma-separated (default: every column but the target)"
    )
    p.add_argument(
        "--grid",
        required=True,
        metavar="KEY=V,V;KEY=V",
        help="the options to sweep and their values, e.g. 'hidden=8,16,32;lr=0.01,0.001;alpha=0,1e-4'",
    )
    p.add_argument("--folds", type=int, default=5, metavar="K", help="k of the k-fold split, >= 2 (default 5)")
    p.add_argument(
        "--loss",
        choices=list(LOSSES),
        default="mse",
        help="as fit's: mse or ssr (scored by R^2), or cross-entropy (a classifier scored by accuracy) (default mse)",
    )
    p.add_argument(
        "--standardize", action="store_true", help="as fit's, the scaling taken from each fold's training rows"
    )
    p.add_argument("--restarts", type=int, metavar="N", help="train N random starts in every task, keep the best")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and of every training (default 0)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, metavar="K", help="run the tasks on K local processes (at most the cores)"
    )
    where.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="run the tasks on a running Dask scheduler (chainrule[dask])"
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but notes, warnings and errors")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder of the results (created if missing)")
    p.set_defaults(run=_sweep)


def _sweep(args):
    grid = parse_grid(args.grid, name="--grid")
    features = None if args.features is None else [f.strip() for f in args.features.split(",")]
    if features is not None and not all(features):
        raise ValueError(f"--features must be column names separated by commas, got {args.features!r}")
    for flag, value, rule in (
        ("--folds", args.folds, Integer(low=2)),
        ("--restarts", args.restarts, Integer(low=1)),
        ("--seed", args.seed, Integer(low=0)),
        ("--workers", args.workers, LOCAL_WORKERS),
    ):
        if value is not None:
            check(None, flag, value, rule)

    def note(text):
        print(f"chainrule: note: {text}", file=sys.stderr, flush=True)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *_, **__: print(f"chainrule: warning: {message}", file=sys.stderr)
            result = sweep(
                args.data,
                args.target,
                grid,
                out=args.out,
                folds=args.folds,
                features=features,
                loss=args.loss,
                standardize=args.standardize,
                restarts=args.restarts,
                seed=args.seed,
                workers=args.workers,
                scheduler=args.scheduler,
                progress=not args.quiet,
                notes=note,
            )
    except SweepInterrupted as e:
        print(
            f"\nchainrule: interrupted: {e.saved} of {e.total} results are saved in {e.results}; run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return 130
    _WRITTEN.append(os.fspath(args.out))  # (the results, scores and model: a Ctrl-C from here on says so)
    if not args.quiet:
        show(result)
    return 0


# ---- predict, evaluate ------------------------------------------------------------------------


def _predict_command(sub):
    p = sub.add_parser(
        "predict",
        help="add the model's predictions to the rows of a CSV or Parquet file (or of many: partitions)",
        description="Write the rows of DATA.csv with the model's prediction as a new last "
        "column (for a classifier: the predicted label). The file needs the "
        "model's feature columns; other columns are copied as they are. Given a directory, a glob "
        "or several files (partitions), or --workers or --scheduler, each partition's predictions go "
        "to its own file of the same name in --out DIR, in its own format, predicted in this process, "
        "on K local processes or on a Dask cluster (the same numbers each way).",
        epilog="examples:\n  chainrule predict model.json new.csv --out predictions.csv\n"
        "  chainrule predict model.json 'parts/*.parquet' --out predicted/ --workers 2\n"
        "  chainrule predict model.json parts/ --out predicted/ --scheduler tcp://10.0.0.1:8786",
        formatter_class=_Help,
    )
    p.add_argument("model", metavar="MODEL", help="a model file written by chainrule fit")
    p.add_argument(
        "data",
        metavar="DATA.csv",
        nargs="+",
        help="rows to predict, with the model's feature columns (CSV, or Parquet: .parquet, .pq); or "
        "partitions: a directory of .csv/.parquet/.pq files, a glob (quoted) or several files",
    )
    p.add_argument(
        "--out",
        metavar="PREDICTIONS.csv",
        help="the CSV file to write (default: print to stdout); a name ending .parquet or .pq writes Parquet "
        "(from a Parquet input: its columns as they are, then the predictions); for partitions, the "
        "directory to write one file a partition into (made if missing; a file there is replaced)",
    )
    p.add_argument(
        "--proba", action="store_true", help="classifiers: also write one column per class with its probability"
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="read the file a block at a time and write each block's predictions as they come, in constant "
        "memory (CSV output; to --out atomically: the whole file or none); partitions are always read so",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, metavar="K", help="predict the partitions on K local processes (1 to the cores)"
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="predict the partitions on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT; "
        "its workers must see the same files; needs chainrule[dask])",
    )
    p.add_argument(
        "--quiet", action="store_true", help="partitions: print no progress and no summary, only warnings and errors"
    )
    p.set_defaults(run=_predict)


def _predict(args):
    if _partitioned(args):
        return _predict_partitions(args)
    args.data = args.data[0]
    if args.out:
        _check_out(args.out, args.model, args.data)
    model = load(args.model)
    if args.proba and model.classes is None:
        raise ValueError(f"--proba needs a classifier; {args.model} does regression")
    parquet_out = bool(args.out) and args.out.lower().endswith(PARQUET_SUFFIXES)
    if args.stream:
        return _predict_stream(args, model, parquet_out)
    if parquet_out and not args.data.lower().endswith(PARQUET_SUFFIXES):
        raise ValueError(f"--out {args.out} is Parquet, but Parquet predictions need a Parquet input; use --out .csv")
    data = model.read_csv(args.data)
    header, columns = _prediction_columns(model, data, args.proba)
    if parquet_out:
        return _write_parquet(args.out, data.path, header, columns)
    # the input's rows are read again as they are written: a generator, never all in memory
    rows = (cells + [cell_text(c[i]) for c in columns] for i, cells in enumerate(data.rows))
    return _write_rows(args.out, data.columns + header, rows)


def _partitioned(args):
    """Partitions (one output file each) rather than one file: a directory, a glob, several files, or workers."""
    (first, *more), given = args.data, args.workers is not None or args.scheduler is not None
    return given or bool(more) or os.path.isdir(first) or (glob.has_magic(first) and not os.path.exists(first))


def _predict_partitions(args):
    """predict over partitions: each checked first, then predicted here or on the workers, with progress."""
    if not args.out:
        raise ValueError("predicting partitions writes one file each: give the directory to write them to, --out DIR")
    if args.workers is not None:
        check(None, "--workers", args.workers, LOCAL_WORKERS)
    tasks = partition_tasks(args.model, args.data, args.out, args.proba)  # all checked before any connection
    progress = _PartitionProgress(len(tasks), args.quiet)
    try:
        if args.workers is None and args.scheduler is None:
            written = run_partitions(tasks, on_done=progress)
        else:
            with open_executor(workers=args.workers, scheduler=args.scheduler) as executor:
                written = run_partitions(tasks, executor, on_done=progress)
    except KeyboardInterrupt:  # the partitions done are on disk, each whole: say which, not "nothing written"
        progress.close()  # (the bar off the terminal first)
        print(
            f"\nchainrule: interrupted: {progress.done} of {len(tasks)} partitions were written to {args.out} "
            "(each in full); the others were not",
            file=sys.stderr,
        )
        return 130
    finally:
        progress.close()
    _WRITTEN.append(os.fspath(args.out))
    rows = sum(w.rows for w in written)
    if not args.quiet:
        print(f"wrote {len(written)} partition{'s' * (len(written) != 1)} ({rows} rows) to {args.out}", file=sys.stderr)
    return 0


class _PartitionProgress:
    """on_done for predict_partitions: a rich bar on a terminal's stderr (partitions, rows), else a line each
    (nothing when quiet)."""

    def __init__(self, total, quiet=False):
        self.total, self.done, self.rows, self.quiet = total, 0, 0, quiet
        self.bar = _partition_bar(total) if sys.stderr.isatty() and not quiet else None

    def __call__(self, i, written):
        self.done, self.rows = self.done + 1, self.rows + written.rows
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], completed=self.done, rows=self.rows)
        else:
            name = os.path.basename(written.source)
            rows = f"{written.rows} row{'s' * (written.rows != 1)}"
            print(f"partition {self.done}/{self.total}: {name}, {rows} ({self.rows} in all)", file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _partition_bar(total):
    """A started rich Progress for the partitions, on stderr, or None without rich."""
    try:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        return None
    bar = Progress(
        TextColumn("predicting"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} partitions"),
        TextColumn("{task.fields[rows]} rows"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    bar.add_task("predict", total=total, rows=0)
    bar.start()
    return bar


def _predict_stream(args, model, parquet_out):
    """predict --stream: the rows read again as each block of ROWS_AT_ONCE rows' predictions is written."""
    if parquet_out:
        raise ValueError(f"--stream writes CSV predictions; --out {args.out} is Parquet: use a name ending .csv")
    blocks = FileBlocks(args.data, None, model.features)
    header = prediction_header(model, args.proba)
    rows = (cells + made for cells, made in zip(blocks.rows_text(), predicted_cells(model, blocks, args.proba)))
    return _write_rows(args.out, blocks.columns + header, rows)


def _write_rows(out, header, rows):
    """The predictions as CSV: to stdout, or to ``out`` atomically (a whole file or none). Returns exit 0."""
    if not out:
        _write_csv(sys.stdout, header, rows)
        return 0
    with _writing(out) as f:
        _write_csv(f, header, rows)
    return 0


def _prediction_columns(model, data, proba):
    """(names, value columns) to append: the prediction, then the class probabilities if asked."""
    outputs, columns = prediction_columns(model, data, proba)  # (an overflow is reported below, in one line)
    names = [f"predicted_{model.target or 'value'}"]
    if proba:
        names += [f"probability_{label}" for label in model.classes]
    bad = not_finite(model, outputs, columns[0])
    if bad.any():
        raise ValueError(
            f"{data.path}: the model's output is not a finite number (nan or inf) on {int(bad.sum())} of "
            f"{len(data)} rows, first on data row {int(np.argmax(bad)) + 1}; are the values far outside the "
            "training data's?"
        )
    return names, columns


def _write_parquet(out, path, header, columns):
    """The input Parquet file's columns as they are, then the prediction columns, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for name, values in zip(header, columns):
        table = table.append_column(name, pa.array(np.asarray(values).tolist()))
    with _writing(out, "wb") as f:
        pq.write_table(table, f)
    return 0


def _write_csv(f, header, rows):
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def _evaluate_command(sub):
    p = sub.add_parser(
        "evaluate",
        help="print a model's loss and scores on a CSV or Parquet file",
        description="Print the model's loss on the rows of DATA.csv; for regression R^2 (and the "
        "mean absolute and root mean squared errors), for a classifier the accuracy, each "
        "class's precision, recall and F1, and the confusion matrix. The file needs the feature "
        "columns and the target column.",
        epilog="examples:\n  chainrule evaluate model.json test.csv\n  chainrule evaluate model.json test.csv --json",
        formatter_class=_Help,
    )
    p.add_argument("model", metavar="MODEL", help="a model file written by chainrule fit")
    p.add_argument(
        "data", metavar="DATA.csv", help="rows with the feature columns and the target column (CSV, or Parquet)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead (for programs)")
    p.add_argument("--stream", action="store_true", help="read the file a block at a time, in constant memory")
    p.set_defaults(run=_evaluate)


def _evaluate(args):

    model = load(args.model)
    if args.stream:
        return _evaluate_stream(args, model)
    data = model.read_csv(args.data, with_target=True)
    with np.errstate(all="ignore"):  # an output that overflows is reported below, in one line
        outputs = model.outputs(data)
        result = model.evaluate(data)
        scores = _classifier_scores(model, data) if model.classes is not None else _regression_scores(model, data)
    bad = ~np.all(np.isfinite(np.asarray(outputs, dtype=np.float64).reshape(len(data), -1)), axis=1)
    if bad.any():
        raise ValueError(
            f"{data.path}: the model's output is not a finite number (nan or inf) on {int(bad.sum())} of "
            f"{len(data)} rows, first on data row {int(np.argmax(bad)) + 1}; are the values far outside the "
            "training data's?"
        )
    if args.json:
        report = {"loss": result.loss_name, "loss_value": _finite(result.loss), "rows": result.rows, **scores}
        print(json.dumps(report, indent=2))
        return 0
    print(f"loss: {result.loss_name} {result.loss:.6g} on {result.rows} row{'s' if result.rows != 1 else ''}")
    for line in _score_lines(model, scores, result.rows):
        print(line)
    return 0


def _evaluate_stream(args, model):
    """evaluate --stream: the loss, R^2, MAE and RMSE summed a block at a time (R^2's total sum of squares
    by Chan's merge: no pass over the observed values' mean first); a classifier's confusion matrix."""
    if model.target is None:
        raise ValueError("this model names no target column, so a CSV file cannot give the targets")
    if model.classes is not None:
        return _evaluate_classes(args, model)
    blocks = FileBlocks(args.data, model.target, model.features)
    loss_fn, observed = get_loss(model.loss), Moments(1)
    mean = getattr(loss_fn, "reduction", "mean") == "mean"
    loss = absolute = squared = 0.0
    with np.errstate(all="ignore"):
        for x, y in chunked(blocks(), ROWS_AT_ONCE):
            predicted = np.asarray(model.predict(x), dtype=np.float64)
            value = loss_fn(predicted, y).item()
            loss += value * len(x) if mean else value
            error = predicted - y
            absolute, squared = absolute + float(np.sum(np.abs(error))), squared + float(np.dot(error, error))
            observed.add(y[:, None])
    rows = observed.n
    loss = loss / rows if mean else loss
    total = float(observed.m2[0])
    r2_value = 1 - squared / total if total > 0 else (1.0 if squared == 0 else 0.0)  # as validation.r2
    scores = {"r2": _finite(r2_value), "mae": _finite(absolute / rows), "rmse": _finite(np.sqrt(squared / rows))}
    if args.json:
        print(json.dumps({"loss": model.loss, "loss_value": _finite(loss), "rows": rows, **scores}, indent=2))
        return 0
    print(f"loss: {model.loss} {loss:.6g} on {rows} rows")
    for line in _score_lines(model, scores, rows):
        print(line)
    return 0


def _evaluate_classes(args, model):
    """evaluate --stream for a classifier: the loss and the confusion matrix added up a block at a time."""
    blocks = FileBlocks(args.data, model.target, model.features, classes=model.classes)
    loss_fn, k = get_loss(model.loss), len(model.classes)
    matrix, loss = np.zeros((k, k), dtype=np.int64), 0.0
    with np.errstate(all="ignore"):
        for x, y in chunked(blocks(), ROWS_AT_ONCE):
            logits = model.outputs(x)
            loss += loss_fn(logits, y).item() * len(x)  # (cross-entropy is a mean)
            np.add.at(matrix, (y, logits.argmax(axis=1)), 1)
    rows = int(matrix.sum())
    scores = _matrix_scores(model, matrix)
    if args.json:
        report = {"loss": model.loss, "loss_value": _finite(loss / rows), "rows": rows, **scores}
        print(json.dumps(report, indent=2))
        return 0
    print(f"loss: {model.loss} {loss / rows:.6g} on {rows} rows")
    for line in _score_lines(model, scores, rows):
        print(line)
    return 0


def _regression_scores(model, data):
    """R^2, MAE and RMSE of the predictions (in the target's units)."""
    observed, predicted = data.target_numbers(), np.asarray(model.predict(data), dtype=np.float64)
    error = predicted - observed
    return {
        "r2": _finite(r2(predicted[:, None], observed[:, None])),
        "mae": _finite(np.mean(np.abs(error))),
        "rmse": _finite(_rms(error)),
    }


def _rms(error):
    """sqrt(mean(e^2)) with the squares taken of e / max|e|: errors of 1e200 do not overflow to inf."""
    top = float(np.max(np.abs(error))) if error.size else 0.0
    if top == 0 or not np.isfinite(top):
        return top
    return top * float(np.sqrt(np.mean(np.square(error / top))))


def _classifier_scores(model, data):
    """Accuracy; per class precision, recall, F1 and support; the confusion matrix (rows: observed)."""
    observed = data.target_indices(model.classes)
    predicted = model.outputs(data).argmax(axis=1)
    k = len(model.classes)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (observed, predicted), 1)
    return _matrix_scores(model, matrix)


def _matrix_scores(model, matrix):
    """_classifier_scores' numbers from the confusion matrix (rows: observed)."""
    right, said, there = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.where(said > 0, right / np.maximum(said, 1), 0.0)  # 0 where a class is never predicted
    recall = np.where(there > 0, right / np.maximum(there, 1), 0.0)
    both = precision + recall
    f1 = np.where(both > 0, 2 * precision * recall / np.where(both > 0, both, 1.0), 0.0)
    per_class = [
        {"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for c, p, r, f, n in zip(model.classes, precision, recall, f1, there)
    ]
    return {
        "accuracy": float(right.sum() / max(int(matrix.sum()), 1)),
        "classes": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def _score_lines(model, scores, rows):
    if model.classes is None:
        return [
            f"R^2: {_number(scores['r2'])}" if rows > 1 else "R^2: not defined for 1 row",
            f"mean absolute error: {_number(scores['mae'])}; root mean squared error: {_number(scores['rmse'])}",
        ]
    right = round(scores["accuracy"] * rows)
    names = [str(c["class"]) for c in scores["classes"]]
    width = max(9, *(len(n) for n in names))
    lines = [f"accuracy: {scores['accuracy']:.2%} ({right} of {rows} rows)", ""]
    lines.append(f"{'class':>{width}}  precision  recall     f1  support")
    for name, c in zip(names, scores["classes"]):
        lines.append(f"{name:>{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:5.3f}  {c['support']:7d}")
    cell = max(5, *(len(n) for n in names), *(len(str(v)) for row in scores["confusion_matrix"] for v in row))
    lines += ["", "confusion matrix (rows: observed, columns: predicted):"]
    lines.append(" " * width + "  " + "  ".join(f"{n:>{cell}}" for n in names))
    for name, row in zip(names, scores["confusion_matrix"]):
        lines.append(f"{name:>{width}}  " + "  ".join(f"{v:>{cell}}" for v in row))
    return lines


def _number(value):
    return "nan" if value is None else f"{value:.6g}"


# ---- plot -------------------------------------------------------------------------------------


def _plot_command(sub):
    p = sub.add_parser(
        "plot",
        help="draw the fitted model against the data",
        description="Draw the model against DATA.csv: with one feature, the fitted curve "
        "over the data points (a classifier: each class's probability); with "
        "more, predicted against observed with the diagonal (a classifier: the "
        "table of observed against predicted classes). Values drawn must be within ±1e300.",
        epilog="example:\n  chainrule plot model.json data.csv --out fit.png",
        formatter_class=_Help,
    )
    p.add_argument("model", metavar="MODEL", help="a model file written by chainrule fit")
    p.add_argument(
        "data", metavar="DATA.csv", help="rows with the feature columns and the target column (CSV, or Parquet)"
    )
    p.add_argument("--out", required=True, metavar="FIG.png", help="the image to write: .png, .svg or .pdf")
    p.set_defaults(run=_plot)


def _plot(args):
    import io

    ext = os.path.splitext(args.out)[1].lower()
    if ext not in IMAGE_FORMATS:
        raise ValueError(f"--out must end in one of {', '.join(IMAGE_FORMATS)}, got {args.out!r}")
    _check_out(args.out, args.model, args.data)
    model = load(args.model)
    data = model.read_csv(args.data, with_target=True)
    # NOTE: values near the float limits overflow inside matplotlib (spans, margins, ticks): the values drawn are
    # checked first (_drawable), and whatever still overflows is one line, not a warning or a traceback.
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            figure = _figure(model, data)
            buffer = io.BytesIO()
            figure.savefig(buffer, format=IMAGE_FORMATS[ext])
    except (OverflowError, FloatingPointError) as e:
        raise ValueError(f"plot: the values of {args.data} cannot be drawn ({e})") from None
    with _writing(args.out, "wb") as f:
        f.write(buffer.getvalue())
    print(f"wrote {args.out}")
    return 0


MAX_DRAWN = 1e300  # matplotlib computes spans and margins of the values it draws: beyond this they overflow


def _drawable(what, values):
    """``values`` (drawn on an axis), or a ValueError saying which is not finite or beyond MAX_DRAWN."""
    values = np.asarray(values, float)
    bad = ~np.isfinite(values) | (np.abs(values) > MAX_DRAWN)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"plot: {what} at row {row + 1} is {values[row]:g}; only finite values within ±{MAX_DRAWN:g} can be drawn"
        )
    return values


def _figure(model, data):
    """A matplotlib Figure (Agg canvas, no pyplot: nothing global changes) of the model against the data."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    one = len(model.features) == 1
    draw = {(False, True): _curve, (False, False): _diagonal, (True, True): _class_curves, (True, False): _class_table}[
        (model.classes is not None, one)
    ]
    draw(ax, model, data)
    return figure


def _grid(data):
    """300 inputs spanning the one feature's range, 5% beyond each end."""
    import numpy as np

    x = _drawable("the feature", data.x[:, 0])
    lo, hi = x.min(), x.max()
    pad = 0.05 * (hi - lo or 1.0)
    return np.linspace(lo - pad, hi + pad, 300)[:, None]


def _curve(ax, model, data):
    xs = _grid(data)
    observed = _drawable(f"the target {model.target}", data.target_numbers())
    ax.scatter(data.x[:, 0], observed, color="tab:blue", label="observed", zorder=3)
    ax.plot(xs[:, 0], _drawable("the fitted curve", model.predict(xs)), color="tab:green", label="fitted")
    ax.set(xlabel=model.features[0], ylabel=model.target, title=f"{model.target} against {model.features[0]}")
    ax.legend()


def _diagonal(ax, model, data):
    observed = _drawable(f"the target {model.target}", data.target_numbers())
    predicted = _drawable(f"the predicted {model.target}", model.predict(data))
    lo, hi = min(observed.min(), predicted.min()), max(observed.max(), predicted.max())
    ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", label="predicted = observed")
    ax.scatter(observed, predicted, color="tab:blue", zorder=3)
    ax.set(
        xlabel=f"observed {model.target}",
        ylabel=f"predicted {model.target}",
        title=f"{model.target}: predicted against observed ({len(data)} rows)",
    )
    ax.legend()


def _class_curves(ax, model, data):
    xs, observed = _grid(data), data.target_indices(model.classes)
    p = model.predict_proba(xs)
    for k, label in enumerate(model.classes):
        (line,) = ax.plot(xs[:, 0], p[:, k], label=f"P({label})")
        rows = observed == k  # each observed row as a tick at the top (its class's colour)
        ax.scatter(data.x[rows, 0], [1.03] * int(rows.sum()), marker="|", s=200, color=line.get_color())
    ax.set(
        xlabel=model.features[0],
        ylabel="probability",
        ylim=(-0.02, 1.08),
        title=f"{model.target}: class probabilities (ticks: observed rows)",
    )
    ax.legend()


def _class_table(ax, model, data):
    import numpy as np

    k = len(model.classes)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (data.target_indices(model.classes), model.outputs(data).argmax(axis=1)), 1)
    ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > counts.max() / 2 else "black")
    ticks = list(range(k))
    ax.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=model.classes,
        yticklabels=model.classes,
        xlabel=f"predicted {model.target}",
        ylabel=f"observed {model.target}",
        title=f"{model.target}: observed against predicted ({len(data)} rows)",
    )


# ---- export -----------------------------------------------------------------------------------


def _export_command(sub):
    p = sub.add_parser(
        "export",
        help="write a model file as ONNX, to serve it with onnxruntime",
        description="Write MODEL as an ONNX graph that computes what chainrule predict does: the "
        "scaling kept in the model file, the network, and the prediction (regression) or the "
        "label and the class probabilities (classification). Its input 'input' takes rows of the "
        "feature columns in the model's order. Needs the onnx package (chainrule[export]).",
        epilog="examples:\n  chainrule export model.json --out model.onnx"
        "\n  chainrule export model.json --out model32.onnx --dtype float32",
        formatter_class=_Help,
    )
    p.add_argument("model", metavar="MODEL", help="a model file written by chainrule fit")
    p.add_argument("--out", required=True, metavar="MODEL.onnx", help="the ONNX file to write")
    p.add_argument("--dtype", choices=DTYPES, help="the graph's numbers (default: the model's, float64 from fit)")
    p.set_defaults(run=_export)


def _export(args):
    _check_out(args.out, args.model)
    model = load(args.model)
    try:
        to_onnx(model, args.out, dtype=args.dtype)
    except ImportError as e:  # onnx is an optional dependency
        print(f"chainrule: error: {e}", file=sys.stderr)
        return 2
    _WRITTEN.append(os.fspath(args.out))
    outputs = "prediction" if model.classes is None else "label, probabilities"
    print(f"wrote {args.out}: input 'input' takes rows of {', '.join(model.features)}; outputs: {outputs}")
    return 0


# ---- playground ---------------------------------------------------------------------------

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _playground_command(sub):
    p = sub.add_parser(
        "playground",
        help="step backpropagation in the browser: the lessons' network, or your own data",
        description="Start a local web page where you step gradient descent on the lessons' network, "
        "set any weight and watch the squiggle and the loss move, read each derivative as its chain "
        "rule, and do the same on your own data. It listens on 127.0.0.1 only unless --host says "
        "otherwise; Ctrl-C stops it. Needs FastAPI and uvicorn (pip install chainrule[playground]).",
        epilog="examples:\n  chainrule playground\n  chainrule playground --port 8000 --no-browser"
        "\n  chainrule playground --data dosage.csv --target effect\n  chainrule playground --lessons my-lessons/",
        formatter_class=_Help,
    )
    p.add_argument("--port", type=int, default=8765, help="the port to listen on, 0 for any free one (default 8765)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: this computer only); another address lets "
        "other machines in, with no password",
    )
    p.add_argument(
        "--open", dest="open_browser", action="store_true", default=True, help="open the page in the browser (default)"
    )
    p.add_argument("--no-browser", dest="open_browser", action="store_false", help="only print the page's address")
    p.add_argument("--data", metavar="DATA.csv", help="a CSV file (header line first) to start every session with")
    p.add_argument("--target", metavar="COLUMN", help="the column of --data to predict (default: its last column)")
    p.add_argument(
        "--lessons",
        metavar="FOLDER",
        help="a folder of lesson files (JSON, see docs/playground.md) to offer beside the three lessons",
    )
    p.set_defaults(run=_playground)


def _playground(args):
    check(None, "--port", args.port, Integer(low=0))
    if args.port > 65535:
        raise ValueError(f"--port must be at most 65535, got {args.port}")
    if args.target is not None and args.data is None:
        raise ValueError("--target names a column of --data; give --data DATA.csv too")
    try:
        from .playground.server import serve
    except ImportError as e:  # FastAPI and uvicorn are an optional dependency
        print(
            f"chainrule: error: the playground needs FastAPI and uvicorn ({e.name or e} is missing): "
            "pip install chainrule[playground]",
            file=sys.stderr,
        )
        return 2
    if args.host not in LOOPBACK_HOSTS:
        print(f"chainrule: warning: listening on {args.host}: other machines can reach the playground", file=sys.stderr)
    return serve(args.host, args.port, args.open_browser, args.data, args.target, args.lessons)


if __name__ == "__main__":
    sys.exit(main())
