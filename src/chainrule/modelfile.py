"""Model files: save a trained network with what it needs to be used, load it back, predict.

A model file is JSON (see docs/model-format.md): the architecture, every
parameter as base64 of its little-endian bytes (bit for bit), the
preprocessing (feature and target names, standardization, class labels) and
a record of the training. Loading never executes code; it checks everything
and raises a ValueError that names what is wrong.

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
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, NamedTuple

import numpy as np

from .checks import Integers, Number, OneOf, check
from .data import CSVData, read_csv
from .losses import LOSSES, get_loss
from .nn import ACTIVATIONS, Linear, Module, Sequential, mlp
from .tensor import no_grad, tensor
from .version import __version__

FORMAT = "chainrule-model"
VERSION = 1
DTYPES = ("float64", "float32")
TASKS = ("regression", "classification")


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
        """Means and standard deviations of the columns of ``x`` (and of ``y``); a std of 0 becomes 1."""
        x = np.asarray(x, dtype=np.float64)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0  # a constant column stays constant (0) instead of dividing by zero
        if y is None:
            return cls(mean.tolist(), std.tolist())
        y = np.asarray(y, dtype=np.float64)
        return cls(mean.tolist(), std.tolist(), float(y.mean()), float(y.std()) or 1.0)


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
        self.loss = loss or ("cross_entropy" if self.classes else "ssr")
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
        """The network's raw outputs (rows, outputs): regression values on the trained scale, or logits."""
        dtype = self.network.parameters()[0].dtype
        with no_grad():
            return self.network(tensor(self.network_inputs(data), dtype=dtype)).data

    def predict(self, data: Any) -> np.ndarray:
        """Predictions per row: numbers (regression) or class labels (classification)."""
        out = self.outputs(data)
        if self.classes is not None:  # numbers stay Python ints and floats, as in the file
            labels = np.array(self.classes, dtype=None if isinstance(self.classes[0], str) else object)
            return labels[out.argmax(axis=1)]
        if self.scaling is not None and self.scaling.target_mean is not None:
            return out[:, 0] * self.scaling.target_std + self.scaling.target_mean
        return out[:, 0]

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities (rows, classes), the softmax of the logits, in the order of ``classes``."""
        if self.classes is None:
            raise ValueError("predict_proba: this model does regression; probabilities need a classifier")
        z = self.outputs(data)
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
        """Read a CSV file's feature columns (and the target column) by this model's names."""
        if with_target and self.target is None:
            raise ValueError("this model names no target column, so a CSV file cannot give the targets")
        return read_csv(path, target=self.target if with_target else None, features=self.features)

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
                f"{self.features}, got shape {x.shape}"
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
        raise ValueError(f"evaluate: label {e.args[0]!r} is not one of the model's classes {classes}") from None


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
        raise ValueError(f"Model: features must be {n_in} distinct names (the network's inputs), got {model.features}")
    if model.classes is None and n_out != 1:
        raise ValueError(f"Model: a regression network has 1 output, got {n_out}; a classifier needs classes")
    if model.classes is not None and (len(model.classes) != n_out or n_out < 2):
        raise ValueError(
            f"Model: a classifier needs one network output per class (at least 2); the network "
            f"has {n_out} outputs for the classes {model.classes}"
        )
    check("Model", "loss", model.loss, OneOf(sorted(LOSSES)))


# ---- writing ----------------------------------------------------------------------------


def save(path: str | os.PathLike, model: Model | Module, **info: Any) -> None:
    """Write ``model`` to ``path`` as a chainrule model file, atomically.

    ``model`` is a :class:`Model`, or a network made by :func:`chainrule.nn.mlp`
    with the Model's other arguments as keywords (``features=``, ``target=``,
    ``classes=``, ``scaling=``, ``loss=``, ``training=``). The file appears
    complete or not at all: it is written to a temporary file in the same
    directory and then renamed.
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
    """The model file's content as a dict (see docs/model-format.md)."""
    s = model.scaling
    return {
        "format": FORMAT,
        "version": VERSION,
        "written_by": f"chainrule {__version__}",
        "architecture": {"kind": "mlp", "sizes": model.sizes, "activation": model.activation, "task": model.task},
        "parameters": {name: _encode(p.data) for name, p in model.network.named_parameters()},
        "preprocessing": {
            "features": model.features,
            "target": model.target,
            "classes": model.classes,
            "feature_mean": s and s.feature_mean,
            "feature_std": s and s.feature_std,
            "target_mean": s and s.target_mean,
            "target_std": s and s.target_std,
        },
        "training": {"loss": model.loss, **model.training},
    }


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
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with open(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:  # type: ignore[call-overload]
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes it private; give it a normal file's mode
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- reading ----------------------------------------------------------------------------


def load(path: str | os.PathLike) -> Model:
    """Read a model file written by :func:`save` into a :class:`Model`.

    Never executes code from the file. Checks the format name and version, the
    architecture, every parameter's name, shape, dtype and values, and the
    preprocessing; a ValueError names the file and what is wrong.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a chainrule model file (not text: a model file is JSON)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a chainrule model file (not JSON: {e})") from None
    try:
        return from_dict(content)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _no_constant(name):
    raise ValueError(f"{name} is not allowed in a model file")


def from_dict(content: Any) -> Model:
    """A :class:`Model` from a model file's content (a dict), checked as :func:`load` describes."""
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"not a chainrule model file (format {found!r}, expected {FORMAT!r})")
    if content.get("version") != VERSION:
        raise ValueError(
            f"model file version {content.get('version')!r} is not supported; this chainrule reads version {VERSION}"
        )
    for key in ("architecture", "parameters", "preprocessing", "training"):
        _need(content, key, dict, "the model file")
    sizes, activation, task = _architecture(content["architecture"])
    network = _network(content["parameters"], sizes, activation)
    pre = content["preprocessing"]
    classes = pre.get("classes")
    if (task == "classification") != (classes is not None):
        raise ValueError(f"architecture.task is {task!r} but preprocessing.classes is {classes!r}")
    training = dict(content["training"])
    loss = training.pop("loss", None)
    return Model(
        network,
        features=_strings(pre, "features"),
        target=_target(pre),
        classes=_classes(classes),
        scaling=_scaling(pre, sizes[0], task),
        loss=loss,
        training=training,
    )


def _need(obj, key, kind, where):
    if key not in obj:
        raise ValueError(f"{where} has no {key!r}")
    if not isinstance(obj[key], kind):
        raise ValueError(f"{where}: {key!r} must be {kind.__name__}, got {obj[key]!r}")
    return obj[key]


def _architecture(arch):
    if arch.get("kind") != "mlp":
        raise ValueError(f"architecture.kind must be 'mlp', got {arch.get('kind')!r}")
    sizes = _need(arch, "sizes", list, "architecture")
    check(None, "architecture.sizes", sizes, Integers(low=1, min_length=2))
    activation = check(None, "architecture.activation", arch.get("activation"), OneOf(sorted(ACTIVATIONS)))
    task = check(None, "architecture.task", arch.get("task"), OneOf(list(TASKS)))
    return sizes, activation, task


def _network(parameters, sizes, activation):
    """The mlp of ``sizes`` with every parameter checked and copied in."""
    for name, entry in parameters.items():
        if not isinstance(entry, dict):
            raise ValueError(f"parameter {name!r} must be an object with shape, dtype and data, got {entry!r}")
    dtypes = {p.get("dtype") for p in parameters.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 else None
    if dtype not in DTYPES:
        raise ValueError(f"parameters must all have one dtype of {list(DTYPES)}, got {sorted(map(str, dtypes))}")
    network = mlp(sizes, activation, seed=0, dtype=dtype)
    expected = dict(network.named_parameters())
    if set(parameters) != set(expected):
        raise ValueError(f"the parameters for sizes {sizes} are {list(expected)}, the file has {list(parameters)}")
    network.load_state_dict({name: _decode(name, parameters[name], p.shape, dtype) for name, p in expected.items()})
    return network


def _decode(name, entry, shape, dtype):
    if entry.get("shape") != list(shape):
        raise ValueError(f"parameter {name!r} has shape {entry.get('shape')!r}, the architecture needs {list(shape)}")
    try:
        raw = base64.b64decode(_need(entry, "data", str, f"parameter {name!r}"), validate=True)
    except ValueError:
        raise ValueError(f"parameter {name!r}: data is not valid base64") from None
    little = np.dtype(dtype).newbyteorder("<")
    if len(raw) != math.prod(shape) * little.itemsize:
        raise ValueError(
            f"parameter {name!r}: data holds {len(raw)} bytes, shape {list(shape)} of {dtype} "
            f"needs {math.prod(shape) * little.itemsize}"
        )
    values = np.frombuffer(raw, dtype=little).reshape(shape).astype(dtype)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"parameter {name!r} contains NaN or inf")
    return values


def _strings(pre, key):
    names = _need(pre, key, list, "preprocessing")
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"preprocessing.{key} must be a list of names, got {names!r}")
    return names


def _target(pre):
    target = pre.get("target")
    if target is not None and not isinstance(target, str):
        raise ValueError(f"preprocessing.target must be a column name or null, got {target!r}")
    return target


def _classes(classes):
    if classes is None:
        return None
    ok = isinstance(classes, list) and (
        all(isinstance(c, str) for c in classes)
        or all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes)
    )
    if not ok or len(set(classes)) != len(classes):
        raise ValueError(f"preprocessing.classes must be distinct labels, all text or all numbers, got {classes!r}")
    return classes


def _scaling(pre, n_features, task):
    """A Scaling from the preprocessing section, or None; every number checked."""
    mean, std = pre.get("feature_mean"), pre.get("feature_std")
    if mean is None and std is None:
        return None
    for key, values in (("feature_mean", mean), ("feature_std", std)):
        if not isinstance(values, list) or len(values) != n_features or not all(map(_finite, values)):
            raise ValueError(f"preprocessing.{key} must be {n_features} finite numbers, got {values!r}")
    t_mean, t_std = pre.get("target_mean"), pre.get("target_std")
    if (
        task == "regression"
        and not (t_mean is None and t_std is None)
        and not (_finite(t_mean) and _finite(t_std) and t_std > 0)
    ):
        raise ValueError(
            f"preprocessing.target_mean/target_std must be finite numbers (std > 0) or both null, "
            f"got {t_mean!r}, {t_std!r}"
        )
    if not all(s > 0 for s in std):
        raise ValueError(f"preprocessing.feature_std must be positive, got {std!r}")
    return Scaling(mean, std, t_mean, t_std)


def _finite(v):
    return _FINITE.accepts(v)


_FINITE = Number()
