"""ONNX export: a trained model with its scaling and class labels, to run wherever onnxruntime runs.

The counterpart of :func:`chainrule.modelfile.save` for serving elsewhere:
:func:`to_onnx` writes a :class:`~chainrule.modelfile.Model` (or a model
file) as one ONNX graph that computes what ``Model.predict`` and
``Model.predict_proba`` compute. It sits above ``modelfile`` (it imports it,
never the other way) and needs the optional ``onnx`` package
(``pip install "chainrule[export]"``), imported only when a model is exported.

The graph takes one input, ``input``, of shape (rows, features) in the
model's feature order (any number of rows), and computes:

1. ``x = (input - feature_mean) / feature_std`` if the model keeps a scaling;
2. per Linear layer ``x = x @ weight^T + bias`` (Gemm, the weight as stored),
   then the activation, except after the last layer;
3. regression: ``prediction = x[:, 0] * target_std + target_mean`` (rows,);
   classification: ``label = classes[argmax(x, axis=1)]`` (rows,), text or
   numbers as the model's labels are, and ``probabilities = softmax(x, axis=1)``
   (rows, classes).

Numbers are float64 (the model's dtype) unless ``dtype="float32"`` is asked.
The feature names, target and task are kept in the ONNX metadata.

Example::

    >>> import os, tempfile
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from chainrule import export, modelfile
    >>> from chainrule.nn import mlp
    >>> model = modelfile.Model(mlp([2, 4, 3], "tanh", seed=0), features=["a", "b"], classes=["x", "y", "z"])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "model.onnx")
    >>> export.to_onnx(model, path)
    >>> session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> [o.name for o in session.get_outputs()]
    ['label', 'probabilities']
    >>> x = np.array([[0.5, 1.0], [2.0, -3.0]])
    >>> label, probabilities = session.run(None, {"input": x})
    >>> bool(np.all(label == model.predict(x))), bool(np.allclose(probabilities, model.predict_proba(x)))
    (True, True)
    >>> folder.cleanup()
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Any

import numpy as np

from .checks import Instance, OneOf, check
from .modelfile import DTYPES, Model, atomic_open, load
from .nn import DosageNetwork, Module, mlp
from .version import __version__

OPSET = 17  # the ONNX operator set: onnxruntime has run it since 1.13
IR_VERSION = 8  # the file format version that goes with opset 17 (newer readers read it too)
MAX_BYTES = 2_000_000_000  # one ONNX file is one protobuf message, which cannot pass 2 GiB
INPUT = "input"


def to_onnx(model_or_path: Model | Module | str | os.PathLike, path: str | os.PathLike, dtype: Any = None) -> None:
    """Write ``model_or_path`` to ``path`` as an ONNX model, atomically (complete or not at all).

    ``model_or_path`` is a :class:`~chainrule.modelfile.Model`, the path of a
    model file, a network made by :func:`chainrule.nn.mlp` or the lessons'
    :class:`~chainrule.nn.DosageNetwork`. ``dtype`` is ``"float64"`` or
    ``"float32"`` (default: the model's). The graph is checked by
    ``onnx.checker`` before it is written; see the module docstring for what it
    computes.
    """
    check("to_onnx", "path", path, Instance((str, os.PathLike), "a file name (str or os.PathLike)"))
    if isinstance(model_or_path, (str, os.PathLike)) and _same_file(model_or_path, path):
        raise ValueError(f"to_onnx: path {os.fspath(path)} is the model file itself; choose another name")
    proto = onnx_model(_as_model(model_or_path), dtype)
    with atomic_open(path, "wb") as f:
        f.write(proto.SerializeToString())


def onnx_model(model: Model, dtype: Any = None) -> Any:
    """The checked ``onnx.ModelProto`` that :func:`to_onnx` writes, without writing it.

    Example::

        >>> from chainrule.export import onnx_model
        >>> from chainrule.modelfile import Model
        >>> from chainrule.nn import mlp
        >>> proto = onnx_model(Model(mlp([3, 2, 1], "relu", seed=0)), dtype="float32")
        >>> [node.op_type for node in proto.graph.node]
        ['Gemm', 'Relu', 'Gemm', 'Squeeze']
    """
    onnx = _onnx()
    if not isinstance(model, Model):
        raise TypeError(f"onnx_model: model must be a chainrule Model, got {type(model).__name__}")
    dtype = np.dtype(_dtype(model, dtype))
    _check_size(model, dtype)
    graph = _Graph(onnx, dtype)
    x = graph.scale(INPUT, model.scaling)
    x = graph.layers(x, model)
    outputs = graph.regression(x, model.scaling) if model.classes is None else graph.classification(x, model.classes)
    proto = graph.model(model, outputs)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "chainrule[export]"') from None
    return onnx


def _as_model(obj):
    """A Model from a Model, a model file's path, an mlp or the lessons' DosageNetwork."""
    if isinstance(obj, Model):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return load(obj)
    if isinstance(obj, DosageNetwork):
        return Model(_dosage_mlp(obj), features=["dosage"], target="effectiveness")
    if isinstance(obj, Module):
        try:
            return Model(obj)  # any other network: ValueError unless chainrule.nn.mlp made it
        except ValueError:
            layers = ", ".join(type(m).__name__ for m in getattr(obj, "layers", [obj]))
            raise ValueError(
                "to_onnx: exports networks made by chainrule.nn.mlp (Linear layers with biases, one activation "
                f"between them), got {type(obj).__name__} of {layers}"
            ) from None
    raise TypeError(f"to_onnx: model_or_path must be a Model, a model file or a network, got {type(obj).__name__}")


def _dosage_mlp(net):
    """The lessons' network as the mlp([1, 2, 1], "softplus") that computes the same numbers."""
    p = {name: getattr(net, name).data for name in DosageNetwork.NAMES}
    dtype = p["w1"].dtype
    equivalent = mlp([1, 2, 1], "softplus", seed=0, dtype=dtype)
    equivalent.load_state_dict(
        {
            "0.weight": np.array([[p["w1"]], [p["w2"]]], dtype=dtype),  # the two hidden nodes
            "0.bias": np.array([p["b1"], p["b2"]], dtype=dtype),
            "2.weight": np.array([[p["w3"], p["w4"]]], dtype=dtype),
            "2.bias": np.array([p["b3"]], dtype=dtype),
        }
    )
    return equivalent


def _dtype(model, dtype):
    if dtype is None:
        return model.network.parameters()[0].dtype.name
    name = np.dtype(dtype).name if isinstance(dtype, (type, np.dtype)) else dtype  # np.float32 or "float32"
    return check("to_onnx", "dtype", name, OneOf(list(DTYPES)))


def _check_size(model, dtype):
    count = sum(p.data.size for p in model.network.parameters())
    if count * dtype.itemsize > MAX_BYTES:
        raise ValueError(
            f"to_onnx: {count} {dtype.name} parameters take {count * dtype.itemsize / 1e9:.3g} GB, more than one "
            f"ONNX file holds ({MAX_BYTES / 1e9:.3g} GB); try dtype='float32'"
        )


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


# ---- the graph ------------------------------------------------------------------------------


class _Graph:
    """Nodes and constants added one by one; each method returns the name of the value it made."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, dtype
        self.nodes, self.constants = [], []

    def node(self, op, inputs, out=None, **attributes):
        out = out or f"{op.lower()}{len(self.nodes)}"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], **attributes))
        return out

    def constant(self, name, values, dtype=None):
        array = np.asarray(values, dtype=dtype or self.dtype)
        self.constants.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def scale(self, x, scaling):
        if scaling is None:
            return x
        x = self.node("Sub", [x, self.constant("feature_mean", scaling.feature_mean)])
        return self.node("Div", [x, self.constant("feature_std", scaling.feature_std)])

    def layers(self, x, model):
        linears = model.network.layers[::2]
        for i, layer in enumerate(linears):
            w = self.constant(f"{2 * i}.weight", layer.weight.data)  # (out, in), as stored: Gemm transposes it
            b = self.constant(f"{2 * i}.bias", layer.bias.data)
            x = self.node("Gemm", [x, w, b], transB=1)
            if i < len(linears) - 1:
                x = self.activation(x, model.activation)
        return x

    def activation(self, x, name):
        if name not in ACTIVATIONS:
            raise ValueError(f"to_onnx: activation {name!r} has no ONNX form; exported are {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[name](self, x)

    def regression(self, x, scaling):
        if scaling is not None and scaling.target_mean is not None:
            x = self.node("Mul", [x, self.constant("target_std", [scaling.target_std])])
            x = self.node("Add", [x, self.constant("target_mean", [scaling.target_mean])])
        self.node("Squeeze", [x, self.constant("column", [1], np.int64)], out="prediction")
        return [self.output("prediction", self.dtype, ["rows"])]

    def classification(self, x, classes):
        labels, kind = _labels(classes)
        index = self.node("ArgMax", [x], axis=1, keepdims=0)  # the first of equal logits, as numpy's argmax
        self.node("Gather", [self.constant("classes", labels, kind), index], out="label", axis=0)
        self.node("Softmax", [x], out="probabilities", axis=1)
        return [self.output("label", kind, ["rows"]), self.output("probabilities", self.dtype, ["rows", len(classes)])]

    def output(self, name, dtype, shape):
        return self.onnx.helper.make_tensor_value_info(name, _element_type(self.onnx, dtype), shape)

    def model(self, model, outputs):
        helper = self.onnx.helper
        n_features = model.sizes[0]
        inputs = [helper.make_tensor_value_info(INPUT, _element_type(self.onnx, self.dtype), ["rows", n_features])]
        graph = helper.make_graph(self.nodes, "chainrule", inputs, outputs, self.constants)
        proto = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="chainrule",
            producer_version=__version__,
            doc_string=f"{model!r}; input columns in order: {', '.join(model.features)}",
        )
        helper.set_model_props(proto, _metadata(model))
        return proto


def _softplus(graph, x):
    # NOTE: onnxruntime has no float64 Softplus kernel, and log(1 + e^x) overflows for large x; so, in
    # either dtype: softplus(x) = max(x, 0) + log(1 + e^-|x|), e^-|x| in (0, 1] (chainrule: logaddexp(0, x))
    e = graph.node("Exp", [graph.node("Neg", [graph.node("Abs", [x])])])
    one = "one" if any(c.name == "one" for c in graph.constants) else graph.constant("one", 1.0)
    return graph.node("Add", [graph.node("Relu", [x]), graph.node("Log", [graph.node("Add", [e, one])])])


# The activations between the Linear layers, keyed by chainrule.nn.ACTIVATIONS' names
ACTIVATIONS = {
    "softplus": _softplus,
    "relu": lambda graph, x: graph.node("Relu", [x]),
    "sigmoid": lambda graph, x: graph.node("Sigmoid", [x]),
    "tanh": lambda graph, x: graph.node("Tanh", [x]),
    "identity": lambda graph, x: x,
}


def _labels(classes):
    """(the labels as a numpy array, its dtype): text, int64 for integers, float64 for other numbers."""
    if all(isinstance(c, str) for c in classes):
        return np.array(classes, dtype=object), np.dtype(object)
    if not all(isinstance(c, numbers.Real) and not isinstance(c, bool) for c in classes):
        raise ValueError(f"to_onnx: class labels must be all text or all numbers, got {classes}")
    if all(isinstance(c, numbers.Integral) for c in classes):
        if not all(-(2**63) <= int(c) < 2**63 for c in classes):
            raise ValueError(f"to_onnx: integer class labels must fit in int64 for ONNX, got {classes}")
        return np.array([int(c) for c in classes], dtype=np.int64), np.dtype(np.int64)
    return np.array([float(c) for c in classes], dtype=np.float64), np.dtype(np.float64)


def _element_type(onnx, dtype):
    return onnx.helper.np_dtype_to_tensor_dtype(dtype) if dtype != np.dtype(object) else onnx.TensorProto.STRING


def _metadata(model):
    """What the model file's preprocessing says, as ONNX metadata (text values)."""
    return {
        "features": json.dumps(model.features),
        "target": json.dumps(model.target),
        "task": model.task,
        "classes": json.dumps(model.classes, default=lambda v: v.item()),  # numpy numbers as Python's
        "activation": model.activation,
        "sizes": json.dumps(model.sizes),
    }
