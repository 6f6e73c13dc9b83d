"""Model files: save a trained network with what it needs to be used, load it back, predict.

A model file is JSON (see docs/model-format.md): the architecture, every
parameter as base64 of its little-endian bytes (bit for bit), the
preprocessing (feature and target names, standardization, class labels) and
a record of the training. Loading never executes code; it checks everything
and raises a ValueError that names what is wrong. To run a model outside
chainrule, :func:`chainrule.export.to_onnx` (``chainrule export``) is the
counterpart of :func:`save` that writes it as ONNX.

Example::

    >>> import os, tempfile
    >>> import numpy as np
    >>> from chainrule import modelfile
    >>> from chainrule.nn import mlp
    >>> net = mlp([2, 3, 1], activation="tanh", seed=0)
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "model.json")
    >>> modelfile.save(path, net, features=["height", "width"], target="weight")
    >>> model = modelfile.load(path)
    >>> model
    Model(features=['height', 'width'], target='weight', sizes=[2, 3, 1], activation='tanh', task='regression')
    >>> x = np.array([[0.5, 1.0], [2.0, 3.0]])
    >>> bool(np.all(model.predict(x) == net(x).data[:, 0]))     # bit for bit
    True
    >>> folder.cleanup()
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import reprlib
import stat
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, NamedTuple

import numpy as np

from .checks import Integers, Number
from .data import CSVData, listing, read_data
from .losses import LOSSES, get_loss
from .nn import ACTIVATIONS, Linear, Module, Sequential, mlp
from .tensor import no_grad, tensor
from .version import __version__

FORMAT = "chainrule-model"
VERSION = 1
DTYPES = ("float64", "float32")
TASKS = ("regression", "classification")
TASK_LOSSES = {"regression": ("mse", "ssr"), "classification": ("cross-entropy", "cross_entropy")}

# Limits on what a file may claim, checked before anything is read or allocated (raise them to load more)
MAX_FILE_BYTES = 1 << 30  # 1 GiB: a model file of float64 parameters holds about 10.7 bytes per parameter
MAX_PARAMETERS = 50_000_000  # numbers in all parameters together
# The largest magnitude of a parameter: no training gives one near it (a run diverges long before), so
# beyond it the file is damaged or made by hand; refused when written and when read
MAX_MAGNITUDE = 1e100
MAX_DEPTH = 100  # levels of nested JSON arrays and objects (a model file nests 4)
# JSON values (numbers, strings, arrays, ...) in the whole file, counted from its commas and brackets before
# it is parsed: a parsed value costs 30 to 100 bytes, and the parameters are base64 text (one value each).
MAX_VALUES = 1_000_000
MIN_STD = 1e-150  # the least standard deviation: dividing by less can overflow to inf
ROWS_AT_ONCE = 65_536  # rows the network sees at a time when predicting or evaluating


# ---- the model -------------------------------------------------------------------------


class Scaling(NamedTuple):
    """Standardization: features (and a regression target) as (value - mean) / std.

    Example::

        >>> from chainrule.modelfile import Scaling
        >>> s = Scaling.fit([[1.0], [3.0]], [10.0, 20.0])
        >>> s.feature_mean, s.feature_std, s.target_mean, s.target_std
        ([2.0], [1.0], 15.0, 5.0)
    """

    feature_mean: list
    feature_std: list
    target_mean: float | None = None
    target_std: float | None = None

    @classmethod
    def fit(cls, x: Any, y: Any = None) -> Scaling:
        """Means and standard deviations of the columns of ``x`` (and of ``y``); a std below MIN_STD becomes 1."""
        x = np.asarray(x, dtype=np.float64)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std < MIN_STD] = 1.0  # a constant column stays constant (0) instead of dividing by (almost) zero
        if y is None:
            return cls(mean.tolist(), std.tolist())
        y = np.asarray(y, dtype=np.float64)
        t_std = float(y.std())
        return cls(mean.tolist(), std.tolist(), float(y.mean()), t_std if t_std >= MIN_STD else 1.0)


class Evaluation(NamedTuple):
    """What :meth:`Model.evaluate` measured: ``loss`` (named ``loss_name``), ``accuracy`` (classifiers), ``rows``."""

    loss_name: str
    loss: float
    accuracy: float | None
    rows: int


class Model:
    """A trained network with its feature names, target name, scaling and class labels.

    ``network`` is a :func:`chainrule.nn.mlp`; ``classes`` (the labels, for a
    classifier whose network has one output per class) or None (regression, one
    output); ``scaling`` a :class:`Scaling` or None; ``loss`` the loss it was
    trained with; ``training`` a dict recording the training (free-form JSON).
    Predict from a 2-D array (rows, features), a :class:`~chainrule.data.CSVData`
    or the path of a CSV file with the feature columns.
    """

    def __init__(
        self,
        network: Module,
        features: Iterable[str] | None = None,
        target: str | None = None,
        classes: Iterable[Any] | None = None,
        scaling: Scaling | Sequence[Any] | None = None,
        loss: str | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        self.network = network
        self.sizes, self.activation = architecture(network)
        self.features = list(features) if features is not None else [f"x{i + 1}" for i in range(self.sizes[0])]
        self.target = target
        self.classes = None if classes is None else list(classes)
        self.scaling = None if scaling is None else Scaling(*scaling)
        self.loss = loss if loss is not None else ("cross_entropy" if self.classes is not None else "ssr")
        self.training = dict(training or {})
        _check_model(self)

    @property
    def task(self) -> str:
        return "classification" if self.classes is not None else "regression"

    def network_inputs(self, data: Any) -> np.ndarray:
        """What the network sees: the features of ``data`` as (rows, features), standardized if the model is."""
        x = self._inputs(data)
        if self.scaling is None:
            return x
        return (x - np.asarray(self.scaling.feature_mean)) / np.asarray(self.scaling.feature_std)

    def network_targets(self, y: Any) -> Any:
        """What the network is trained on: class indices as given, regression targets standardized if the model is."""
        if self.classes is not None or self.scaling is None or self.scaling.target_mean is None:
            return y
        # (a Scaling with a target_mean has a target_std: Scaling.fit and the file's checks give both)
        return (np.asarray(y, dtype=np.float64) - self.scaling.target_mean) / self.scaling.target_std  # type: ignore[operator]

    def outputs(self, data: Any) -> np.ndarray:
        """The network's raw outputs (rows, outputs): regression values on the trained scale, or logits.

        Computed ``ROWS_AT_ONCE`` rows at a time, so the hidden layers' values of a big file are never
        all in memory at once (each row's outputs are the same either way).
        """
        dtype = self.network.parameters()[0].dtype
        x = self.network_inputs(data)
        with no_grad():
            parts = [
                self.network(tensor(x[i : i + ROWS_AT_ONCE], dtype=dtype)).data
                for i in range(0, max(len(x), 1), ROWS_AT_ONCE)
            ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def predict(self, data: Any) -> np.ndarray:
        """Predictions per row: numbers (regression) or class labels (classification)."""
        return self.predictions_from(self.outputs(data))

    def predictions_from(self, out: np.ndarray) -> np.ndarray:
        """:meth:`predict` from the network's outputs already computed (:meth:`outputs`)."""
        if self.classes is not None:  # numbers stay Python ints and floats, as in the file
            labels = np.array(self.classes, dtype=None if isinstance(self.classes[0], str) else object)
            return labels[out.argmax(axis=1)]
        if self.scaling is not None and self.scaling.target_mean is not None:
            return out[:, 0] * self.scaling.target_std + self.scaling.target_mean
        return out[:, 0]

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities (rows, classes), the softmax of the logits, in the order of ``classes``."""
        return self.probabilities_from(self.outputs(data))

    def probabilities_from(self, z: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` from the network's outputs (the logits) already computed."""
        if self.classes is None:
            raise ValueError("predict_proba: this model does regression; probabilities need a classifier")
        e = np.exp(z - z.max(axis=1, keepdims=True))  # shifted so that exp cannot overflow
        return e / e.sum(axis=1, keepdims=True)

    def evaluate(self, data: Any, y: Any = None) -> Evaluation:
        """The loss (and accuracy for a classifier) on ``data``: a CSVData or CSV path with the
        target column, or an array of inputs with the targets ``y`` (numbers, or class labels)."""
        if isinstance(data, (str, os.PathLike)):
            data = self.read_csv(data, with_target=True)
        if isinstance(data, CSVData):
            y = data.target_indices(self.classes) if self.classes is not None else data.target_numbers()
        elif y is None:
            raise ValueError("evaluate: pass the targets y with an array of inputs")
        elif self.classes is not None:
            y = _indices(y, self.classes)
        return self._measure(data, np.asarray(y))

    def _measure(self, data, y):
        if self.classes is None:
            predicted = self.predict(data)
            loss = get_loss(self.loss)(predicted, y.astype(predicted.dtype)).item()
            return Evaluation(self.loss, loss, None, len(y))
        logits = self.outputs(data)
        loss = get_loss(self.loss)(logits, y).item()
        return Evaluation(self.loss, loss, float(np.mean(logits.argmax(axis=1) == y)), len(y))

    def read_csv(self, path: str | os.PathLike, with_target: bool = False) -> CSVData:
        """Read a CSV (or Parquet: :func:`~chainrule.data.read_data`) file's feature columns (and the target
        column) by this model's names."""
        if with_target and self.target is None:
            raise ValueError("this model names no target column, so a CSV file cannot give the targets")
        return read_data(path, target=self.target if with_target else None, features=self.features)

    def save(self, path: str | os.PathLike) -> None:
        """Write this model to ``path`` (atomically); see :func:`save`."""
        save(path, self)

    def _inputs(self, data):
        if isinstance(data, (str, os.PathLike)):
            data = self.read_csv(data)
        x = np.asarray(data.x if isinstance(data, CSVData) else data, dtype=np.float64)
        if x.ndim == 1 and self.sizes[0] == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(
                f"predict: expected inputs of shape (rows, {self.sizes[0]}) for the features "
                f"{listing(self.features)}, got shape {x.shape}"
            )
        return x

    def __repr__(self) -> str:
        return (
            f"Model(features={self.features}, target={self.target!r}, sizes={self.sizes}, "
            f"activation={self.activation!r}, task={self.task!r})"
        )


def _indices(labels, classes):
    position = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([position[c.item() if hasattr(c, "item") else c] for c in labels], dtype=np.intp)
    except KeyError as e:
        raise ValueError(
            f"evaluate: label {e.args[0]!r} is not one of the model's classes {listing(classes)}"
        ) from None


def architecture(network: Module) -> tuple[list[int], str]:
    """``(sizes, activation)`` of a network made by :func:`chainrule.nn.mlp`; ValueError for any other."""
    layers = network.layers if isinstance(network, Sequential) else None
    if not layers or not isinstance(layers[0], Linear) or len(layers) % 2 == 0:
        raise ValueError(f"model files hold networks made by chainrule.nn.mlp, got {type(network).__name__}")
    linears, activations = layers[::2], layers[1::2]
    names = {type(a).__name__ for a in activations}
    by_class = {cls.__name__: name for name, cls in ACTIVATIONS.items()}
    if (
        not all(isinstance(layer, Linear) and layer.bias is not None for layer in linears)
        or len(names) > 1
        or not names <= set(by_class)
    ):
        raise ValueError(
            "model files hold networks made by chainrule.nn.mlp: Linear layers with biases "
            f"and one activation between them; got {network!r}"
        )
    # (the layers in linears are Linears: checked above)
    sizes = [linears[0].in_features] + [layer.out_features for layer in linears]  # type: ignore[attr-defined]
    return sizes, by_class[names.pop()] if names else "identity"


def _check_model(model):
    n_in, n_out = model.sizes[0], model.sizes[-1]
    if len(model.features) != n_in or len(set(model.features)) != n_in:
        raise ValueError(
            f"Model: features must be {n_in} distinct names (the network's inputs), got {len(model.features)} "
            f"({len(set(model.features))} distinct): {listing(model.features)}"
        )
    if model.classes is None and n_out != 1:
        raise ValueError(f"Model: a regression network has 1 output, got {n_out}; a classifier needs classes")
    if model.classes is not None and (len(model.classes) != n_out or n_out < 2):
        raise ValueError(
            f"Model: a classifier needs one network output per class (at least 2); the network "
            f"has {n_out} outputs for the {len(model.classes)} classes {listing(model.classes)}"
        )
    _check_loss("Model: loss", model.loss, model.task)


# ---- writing ----------------------------------------------------------------------------


def save(path: str | os.PathLike, model: Model | Module, **info: Any) -> None:
    """Write ``model`` to ``path`` as a chainrule model file, atomically.

    ``model`` is a :class:`Model`, or a network made by :func:`chainrule.nn.mlp`
    with the Model's other arguments as keywords (``features=``, ``target=``,
    ``classes=``, ``scaling=``, ``loss=``, ``training=``). The file appears
    complete or not at all: it is written to a temporary file in the same
    directory and then renamed. (For onnxruntime and other ONNX runtimes:
    :func:`chainrule.export.to_onnx`.)
    """
    if not isinstance(model, Model):
        if not isinstance(model, Module):
            raise TypeError(f"save: model must be a chainrule Model or nn.Module, got {type(model).__name__}")
        model = Model(model, **info)
    elif info:
        raise TypeError(f"save: {sorted(info)} are given by the Model itself; pass them to Model(...)")
    text = json.dumps(to_dict(model), indent=1, allow_nan=False)
    with atomic_open(path, "w") as f:
        f.write(text + "\n")


def to_dict(model: Model) -> dict[str, Any]:
    """The model file's content as a dict (see docs/model-format.md).

    The same model gives the same dict: nothing depends on the clock. A
    ``seconds`` entry in ``model.training`` (a run's wall-clock time) is left
    out, so that training twice with the same seed writes the same file.
    """
    s = model.scaling
    record = {k: v for k, v in model.training.items() if k not in _UNSAVED}
    return {
        "format": FORMAT,
        "version": VERSION,
        "written_by": f"chainrule {__version__}",
        "architecture": {"kind": "mlp", "sizes": model.sizes, "activation": model.activation, "task": model.task},
        "parameters": {
            name: _encode(_checked_values(f"cannot save the model: parameters.{name}", p.data))
            for name, p in model.network.named_parameters()
        },
        "preprocessing": {
            "features": model.features,
            "target": model.target,
            "classes": model.classes,
            "feature_mean": s and s.feature_mean,
            "feature_std": s and s.feature_std,
            "target_mean": s and s.target_mean,
            "target_std": s and s.target_std,
        },
        "training": {"loss": model.loss, **record},
    }


_UNSAVED = ("loss", "seconds")  # loss: written first, from model.loss; seconds: the clock


def _encode(a):
    return {
        "shape": list(a.shape),
        "dtype": a.dtype.name,
        "data": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii"),
    }


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was,
    so readers never see half a file. ``mode`` is "w" (text) or "wb".

    Only regular files are written: an existing directory, FIFO, socket or
    device at ``path`` is refused (ValueError) before anything is written. A
    symbolic link is written through: its target gets the new content and the
    link stays a link. An existing file keeps its permission bits; a new one
    gets a normal file's mode (0o666 less the umask). The temporary file has
    one name per output, ``.<name>.chainrule-tmp`` in the same directory, so
    one left behind by a killed process is replaced by the next write.

    Example::

        >>> import os, tempfile
        >>> from chainrule.modelfile import atomic_open
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "out.txt")
        >>> with atomic_open(path) as f:
        ...     _ = f.write("all or nothing")
        >>> open(path).read()
        'all or nothing'
        >>> folder.cleanup()
    """
    given = os.fspath(path)
    path = os.path.realpath(given)  # through symlinks: the link stays, its target is replaced
    mode_bits = _writable_mode(path, given)
    temp = _temp_path(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)  # left by a write that was killed; O_EXCL below then never follows a link planted there
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with open(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:  # type: ignore[call-overload]
            yield f
            f.flush()
            os.fchmod(f.fileno(), mode_bits)
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise


def _temp_path(path: str | os.PathLike) -> str:
    """The temporary file :func:`atomic_open` writes before renaming it to ``path``: ``.<name>.chainrule-tmp``."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{name}.chainrule-tmp")


def _writable_mode(path, given):
    """The permission bits the new file gets; ValueError if ``path`` exists and is not a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return 0o666 & ~_umask()
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{given} exists and is {_kind(st.st_mode)}; chainrule writes regular files only")
    return stat.S_IMODE(st.st_mode)


def _kind(st_mode):
    for test, words in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(st_mode):
            return words
    return "not a regular file"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- reading ----------------------------------------------------------------------------


def load(path: str | os.PathLike) -> Model:
    """Read a model file written by :func:`save` into a :class:`Model`.

    Never executes code from the file. Checks the file's size (at most
    :data:`MAX_FILE_BYTES`) before reading it and its nesting (at most
    :data:`MAX_DEPTH`) as it parses, then everything :func:`from_dict` checks; a ValueError names
    the file, the field and what it holds.
    """
    path = os.fspath(path)
    try:
        content = _read(path)
    except ValueError as e:  # "<path> is not a chainrule model file (...)"
        raise ValueError(f"{path} {e}") from None
    try:
        return from_dict(content)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _read(path):
    """The JSON content of ``path``: its size checked before reading, its nesting while and after parsing."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"is {_kind(st.st_mode)}, not a model file (a regular file)")
    _check_size(st.st_size)
    with open(path, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)  # no more, even if the file grew since os.stat
    _check_size(len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("is not a chainrule model file (not text: a model file is UTF-8 JSON)") from None
    _check_values(raw)
    try:
        content = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:  # NOTE: json.loads recurses once per level of nesting
        raise _too_deep() from None
    except json.JSONDecodeError as e:
        raise ValueError(f"is not a chainrule model file (not JSON: {e})") from None
    except ValueError as e:  # NaN, 1e999, or an integer of more digits than Python converts
        raise ValueError(f"is not a chainrule model file ({e})") from None
    if isinstance(content, (dict, list)):
        _check_depth(content)
    return content


def _check_size(size):
    if size > MAX_FILE_BYTES:
        raise ValueError(
            f"is {size} bytes, more than MAX_FILE_BYTES = {MAX_FILE_BYTES} "
            "(raise chainrule.modelfile.MAX_FILE_BYTES to read bigger files)"
        )


def _check_values(raw):
    """ValueError if the text holds more than MAX_VALUES JSON values (an upper bound, counted without parsing)."""
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{") + 1
    if values > MAX_VALUES:
        raise ValueError(
            f"is not a chainrule model file (it holds up to {values} JSON values, more than MAX_VALUES = "
            f"{MAX_VALUES}; its parameters are base64 text) (raise chainrule.modelfile.MAX_VALUES to read it)"
        )


def _check_depth(content):
    """ValueError if arrays and objects nest deeper than MAX_DEPTH; walked without recursion."""
    level = [(content, 1)]
    while level:
        value, depth = level.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        children = value.values() if isinstance(value, dict) else value
        level.extend((v, depth + 1) for v in children if isinstance(v, (dict, list)))


def _too_deep():
    return ValueError(
        f"is not a chainrule model file (JSON nested deeper than MAX_DEPTH = {MAX_DEPTH} levels; a model file nests 4)"
    )


def _no_constant(name):
    raise ValueError(f"{name} is not allowed in a model file")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number (too large for a float)")
    return value


def from_dict(content: Any) -> Model:
    """A :class:`Model` from a model file's content (a dict), checked as :func:`load` describes.

    Every size the content claims is checked against the others and against
    the data present before anything is allocated; a ValueError names the
    field (e.g. ``parameters.0.weight.shape``), what it must be and what it holds.
    """
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"not a chainrule model file (format {_show(found)}, expected {FORMAT!r})")
    version = content.get("version")
    if type(version) is not int or version != VERSION:
        raise ValueError(
            f"model file version {_show(version)} is not supported; this chainrule reads version {VERSION} (an integer)"
        )
    for key in ("architecture", "parameters", "preprocessing", "training"):
        _need(content, key, dict)
    sizes, activation, task = _architecture(content["architecture"])
    network = _network(content["parameters"], sizes, activation)
    pre = content["preprocessing"]
    classes = pre.get("classes")
    if (task == "classification") != (classes is not None):
        raise ValueError(f"architecture.task is {task!r} but preprocessing.classes is {_show(classes)}")
    training = dict(content["training"])
    loss = training.pop("loss", None)
    if loss is not None:
        _check_loss("training.loss", loss, task)
    return Model(
        network,
        features=_strings(pre, "features"),
        target=_target(pre),
        classes=_classes(classes),
        scaling=_scaling(pre, sizes[0], task),
        loss=loss,
        training=training,
    )


_WORDS = {dict: "an object", list: "a list", str: "a string"}


def _need(obj, key, kind, where=""):
    """``obj[key]``, which must be present and a ``kind``; the error names the field's path."""
    path = f"{where}.{key}" if where else key
    if key not in obj:
        raise ValueError(f"{path} is missing")
    if not isinstance(obj[key], kind):
        raise ValueError(f"{path} must be {_WORDS[kind]}, got {_show(obj[key])}")
    return obj[key]


def _one_of(path, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{path} must be one of {', '.join(map(repr, options))}, got {_show(value)}")
    return value


def _check_loss(path, loss, task):
    """``loss`` must be a known loss that fits ``task`` (cross-entropy for classifiers, ssr or mse otherwise)."""
    _one_of(path, loss, sorted(LOSSES))
    if loss not in TASK_LOSSES[task]:
        raise ValueError(f"{path} must be one of {', '.join(map(repr, TASK_LOSSES[task]))} for {task}, got {loss!r}")


def _architecture(arch):
    if arch.get("kind") != "mlp":
        raise ValueError(f"architecture.kind must be 'mlp', got {_show(arch.get('kind'))}")
    sizes = _need(arch, "sizes", list, "architecture")
    rule = Integers(low=1, min_length=2)
    if not rule.accepts(sizes):
        raise ValueError(f"architecture.sizes must be {rule.allowed}, got {_show(sizes)}")
    count = sum(n_out * n_in + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"architecture.sizes {_show(sizes)} means {count} parameters, more than MAX_PARAMETERS = "
            f"{MAX_PARAMETERS} (raise chainrule.modelfile.MAX_PARAMETERS to load bigger models)"
        )
    activation = _one_of("architecture.activation", arch.get("activation"), sorted(ACTIVATIONS))
    task = _one_of("architecture.task", arch.get("task"), list(TASKS))
    return sizes, activation, task


def _shapes(sizes):
    """The parameter names and shapes ``mlp(sizes)`` has, without building it (building allocates)."""
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"{2 * i}.weight"], shapes[f"{2 * i}.bias"] = [n_out, n_in], [n_out]
    return shapes


def _network(parameters, sizes, activation):
    """The mlp of ``sizes`` with every parameter checked and copied in; nothing is allocated before."""
    shapes = _shapes(sizes)
    if set(parameters) != set(shapes):
        missing = [n for n in shapes if n not in parameters]
        unexpected = sorted(map(str, set(parameters) - set(shapes)))
        raise ValueError(
            f"parameters for architecture.sizes {_show(sizes)} are {_show(list(shapes))}: "
            f"missing {_show(missing)}, unexpected {_show(unexpected)}"
        )
    entries = {name: _entry(name, parameters[name], shape) for name, shape in shapes.items()}
    dtype = entries["0.weight"][0]
    for name, (d, _) in entries.items():
        if d != dtype:
            raise ValueError(f"parameters.{name}.dtype is {d!r} but parameters.0.weight.dtype is {dtype!r}: one dtype")
    values = {name: _decode(name, data, shapes[name], dtype) for name, (_, data) in entries.items()}
    network = mlp(sizes, activation, seed=0, dtype=dtype)
    network.load_state_dict(values)
    return network


def _entry(name, entry, shape):
    """(dtype, data) of one parameter, its declared shape checked against the architecture's."""
    where = f"parameters.{name}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object with shape, dtype and data, got {_show(entry)}")
    declared = _need(entry, "shape", list, where)
    if not all(type(n) is int for n in declared) or declared != shape:
        raise ValueError(f"{where}.shape is {_show(declared)}, the architecture needs {shape}")
    if "dtype" not in entry:
        raise ValueError(f"{where}.dtype is missing")
    dtype = _one_of(f"{where}.dtype", entry["dtype"], sorted(DTYPES))
    return dtype, _need(entry, "data", str, where)


def _decode(name, data, shape, dtype):
    """The values of base64 ``data``, its length checked against ``shape`` before decoding."""
    where = f"parameters.{name}"
    need = math.prod(shape) * np.dtype(dtype).itemsize
    if len(data) % 4:
        raise ValueError(f"{where}.data is not valid base64 (its length {len(data)} is not a multiple of 4)")
    holds = len(data) // 4 * 3 - (2 if data.endswith("==") else 1 if data.endswith("=") else 0)
    if holds != need:
        raise ValueError(f"{where}.data holds {holds} bytes, shape {shape} of {dtype} needs {need}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise ValueError(f"{where}.data is not valid base64") from None
    if len(raw) != need:
        raise ValueError(f"{where}.data holds {len(raw)} bytes, shape {shape} of {dtype} needs {need}")
    values = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)
    return _checked_values(where, values)


def _checked_values(where, values):
    """``values`` when every one is finite and at most MAX_MAGNITUDE in size, else a ValueError naming ``where``."""
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ValueError(f"{where} contains NaN or inf ({bad} of {values.size} values); parameters must be finite")
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    if largest > MAX_MAGNITUDE:
        raise ValueError(
            f"{where} holds a value of magnitude {largest:.3g}, beyond chainrule.modelfile.MAX_MAGNITUDE = "
            f"{MAX_MAGNITUDE:g}: no training gives such a parameter (a damaged or hand-made model?)"
        )
    return values


def _strings(pre, key):
    names = _need(pre, key, list, "preprocessing")
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"preprocessing.{key} must be a list of names, got {_show(names)}")
    return names


def _target(pre):
    target = pre.get("target")
    if target is not None and not isinstance(target, str):
        raise ValueError(f"preprocessing.target must be a column name or null, got {_show(target)}")
    return target


def _classes(classes):
    if classes is None:
        return None
    ok = isinstance(classes, list) and (all(isinstance(c, str) for c in classes) or all(map(_finite, classes)))
    if not ok or len(set(classes)) != len(classes):
        raise ValueError(
            f"preprocessing.classes must be distinct labels, all text or all finite numbers, got {_show(classes)}"
        )
    return classes


def _scaling(pre, n_features, task):
    """A Scaling from the preprocessing section, or None; every number checked."""
    mean, std, t_mean, t_std = (pre.get(k) for k in ("feature_mean", "feature_std", "target_mean", "target_std"))
    if mean is None and std is None:
        if not (t_mean is None and t_std is None):
            raise ValueError("preprocessing.target_mean/target_std must be null when feature_mean/feature_std are")
        return None
    mean = _numbers("preprocessing.feature_mean", mean, n_features)
    std = _numbers("preprocessing.feature_std", std, n_features, floor=MIN_STD)
    if t_mean is None and t_std is None:
        return Scaling(mean, std)
    if task == "classification":
        raise ValueError(
            f"preprocessing.target_mean/target_std must be null for a classifier, got {_show(t_mean)}, {_show(t_std)}"
        )
    if not (_finite(t_mean) and _finite(t_std) and t_std >= MIN_STD):
        raise ValueError(
            f"preprocessing.target_mean/target_std must be finite numbers (std >= MIN_STD = {MIN_STD:g}) "
            f"or both null, got {_show(t_mean)}, {_show(t_std)}"
        )
    return Scaling(mean, std, float(t_mean), float(t_std))


def _numbers(path, values, n, floor=-math.inf):
    """``values`` as ``n`` floats, each finite and >= ``floor``; the error names the first bad one."""
    if not isinstance(values, list) or len(values) != n:
        raise ValueError(f"{path} must be {n} finite numbers (one per feature), got {_show(values)}")
    for i, v in enumerate(values):
        if not (_finite(v) and v >= floor):
            least = "" if floor == -math.inf else f" >= MIN_STD = {floor:g}"
            raise ValueError(f"{path}.{i} must be a finite number{least}, got {_show(v)}")
    return [float(v) for v in values]


def _finite(v):
    try:
        return _FINITE.accepts(v)
    except OverflowError:  # an int too large for a float
        return False


_FINITE = Number()
_REPR = reprlib.Repr()
_REPR.maxlist = _REPR.maxdict = 8
_REPR.maxstring = _REPR.maxother = 60


def _show(value):
    """A short, one-line repr of a value read from a file (which may be huge or deeply nested)."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int of more digits than Python converts to text
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else "<a value>"
