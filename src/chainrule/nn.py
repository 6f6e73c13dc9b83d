"""Building blocks: Module, Parameter, Linear, activations, Sequential, the lessons' network.

Example::

    >>> import chainrule as cr
    >>> from chainrule.nn import Linear, Sequential, SoftPlus
    >>> net = Sequential(Linear(1, 2, seed=0), SoftPlus(), Linear(2, 1, seed=1))
    >>> [name for name, _ in net.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']
    >>> net(cr.tensor([[0.0], [0.5], [1.0]])).shape
    (3, 1)
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from collections.abc import Sequence as _Sequence
from typing import Any

import numpy as np

from . import functional as F
from .checks import Instance, Integer, Integers, OneOf, Typed, check
from .ops import REGISTRY
from .tensor import Tensor, apply, constant, tensor_from
from .tensor import named as _named

_LINEAR = REGISTRY["linear"]
_SIZE = Typed(Integer(low=1))  # a layer's width: TypeError for 2.0, ValueError for 0
_SIZES = Typed(Integers(low=1, min_length=2))  # mlp's widths, inputs to outputs
_NUMBER = Instance((numbers.Real,), "a number")
_INIT = OneOf(("lecun", "glorot", "glorot_sigmoid"))


class Parameter(Tensor):
    """A tensor that a model learns: it requires grad and carries a name.

    Example::

        >>> from chainrule.nn import Parameter
        >>> Parameter(2.61, name="b3")
        Parameter(b3=2.61)
    """

    __slots__ = ()

    def __init__(self, data: Any, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=True, dtype=dtype, name=name)

    def __repr__(self) -> str:
        value = self.data.item() if self.data.size == 1 else f"array of shape {self.shape}"
        dtype = "" if self.dtype == np.float64 else f", dtype={self.dtype}"
        return f"Parameter({self.name or 'unnamed'}={value}{dtype})"


class Module:
    """Base of every model: parameters are found in attributes, recursively.

    Subclasses set Parameters and Modules as attributes and define ``forward``.
    Names are dotted paths (``"0.weight"``); a Parameter assigned to an
    attribute takes that attribute's name if it has none.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter) and value.name is None:
            value.name = name
        elif isinstance(value, Module):
            value._prefix_names(name)
        object.__setattr__(self, name, value)

    def _prefix_names(self, prefix: str) -> None:
        """Give this module's parameters their dotted names as seen from a parent ("0.weight")."""
        for name, p in self.named_parameters():
            p.name = f"{prefix}.{name}"

    def forward(self, x: Any) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define forward(x)")

    def __call__(self, x: Any) -> Tensor:
        return self.forward(x)

    def children(self) -> list[tuple[str, Module]]:
        """(name, module) pairs of the direct sub-modules."""
        return [(k, v) for k, v in vars(self).items() if isinstance(v, Module)]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs, each parameter once, in definition order."""
        seen = set()
        for name, p in self._walk(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _walk(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for k, v in vars(self).items():
            if isinstance(v, Parameter):
                yield prefix + k, v
        for k, m in self.children():
            yield from m._walk(f"{prefix}{k}.")

    def parameters(self) -> list[Parameter]:
        """Every Parameter of the model, each once."""
        return [p for _, p in self.named_parameters()]

    def reset_parameters(self, rng: Any = None) -> None:
        """Draw fresh starting values (each layer's own initialization) from ``rng`` (a seed or Generator)."""
        rng = _rng(rng)
        if any(isinstance(v, Parameter) for v in vars(self).values()):
            raise NotImplementedError(
                f"{type(self).__name__} has parameters of its own: define "
                "reset_parameters(rng) to draw them (fit(..., restarts=N) needs it)"
            )
        for _, child in self.children():
            child.reset_parameters(rng)

    def zero_grad(self) -> None:
        """Forget the accumulated gradients (set every ``.grad`` to None)."""
        for p in self.parameters():
            p.grad = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """{dotted name: copy of the values} for every parameter."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy values into the parameters; names and shapes must match exactly."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"load_state_dict: {type(self).__name__} missing {missing}, unexpected {unexpected}")
        values = {name: np.asarray(state[name]) for name in own}
        for name, value in values.items():
            if value.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: '{name}' must hold numbers, got {value.dtype} ({state[name]!r:.40})")
        for name, p in own.items():  # check every shape first: a failed load changes nothing
            if values[name].shape != p.shape:
                raise ValueError(
                    f"load_state_dict: '{name}' has shape {p.shape} in the model but {values[name].shape} in the state"
                )
        for name, p in own.items():
            p.data[...] = values[name]

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        kids = self.children()
        if not kids:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in kids]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"

    def _repr_html_(self) -> str:
        """The notebook display: the architecture (the repr) and each parameter's shape and count."""
        import html  # NOTE: here, not at the top: the display is the only user (keeps this hunk in one place)

        rows = [(name, " x ".join(map(str, p.shape)) or "scalar", p.size) for name, p in self.named_parameters()]
        rows.append(("total", "", sum(size for *_, size in rows)))
        body = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{shape}</td><td style='text-align:right'>{size:,}</td></tr>"
            for name, shape, size in rows
        )
        head = "<tr><th>parameter</th><th>shape</th><th>numbers</th></tr>"
        return f"<div><pre>{html.escape(repr(self))}</pre><table>{head}{body}</table></div>"


def _rng(seed: Any) -> Any:
    """A numpy Generator from a seed; a Generator, or a legacy RandomState (scikit-learn's), as it is."""
    return seed if isinstance(seed, (np.random.Generator, np.random.RandomState)) else np.random.default_rng(seed)


def _lecun(rng: Any, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray | None]:
    """weight ~ N(0, 1/in_features), drawn as (out, in); bias = 0."""
    return rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_out, n_in)), None


def _glorot(factor: float) -> Any:
    def draw(rng: Any, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray | None]:
        # NOTE: drawn as (in, out) then transposed, weights before biases: scikit-learn's order, so the
        # same RandomState gives the same starting network as sklearn.neural_network's MLP.
        bound = np.sqrt(factor / (n_in + n_out))
        weight = rng.uniform(-bound, bound, (n_in, n_out)).T
        return weight, rng.uniform(-bound, bound, n_out)

    return draw


# How a Linear layer draws its starting values: (rng, in_features, out_features) -> (weight, bias or None = 0).
INITS = {
    "lecun": _lecun,  # N(0, 1/in_features) weights, zero biases (each unit's input starts with variance ~1)
    "glorot": _glorot(6.0),  # Glorot & Bengio (2010) uniform, for weights and biases, as scikit-learn's MLP
    "glorot_sigmoid": _glorot(2.0),  # scikit-learn's bound for activation="logistic": sqrt(2 / (in + out))
}


class Linear(Module):
    """y = x @ weight^T + bias, with ``weight`` of shape (out_features, in_features), as in PyTorch.

    ``init`` says how the starting values are drawn through ``seed`` (an int, a
    numpy Generator or a RandomState):

    - ``"lecun"`` (the default): weights from N(0, 1/in_features) (LeCun normal:
      each unit's input starts with variance about 1), biases 0;
    - ``"glorot"``: weights and biases uniform in [-b, b], b = sqrt(6 / (in + out))
      (Glorot & Bengio, 2010), scikit-learn's MLP initialization;
    - ``"glorot_sigmoid"``: the same with b = sqrt(2 / (in + out)), scikit-learn's
      bound for logistic units.

    Example::

        >>> from chainrule.nn import Linear
        >>> Linear(3, 2, seed=0)
        Linear(in_features=3, out_features=2, bias=True)
        >>> lin = Linear(4, 2, seed=0, init="glorot")   # b = sqrt(6 / 6) = 1
        >>> bool(abs(lin.weight.data).max() <= 1 and lin.bias.data.any())
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        seed: Any = None,
        dtype: Any = np.float64,
        init: str = "lecun",
    ) -> None:
        self.in_features = check("Linear", "in_features", in_features, _SIZE)
        self.out_features = check("Linear", "out_features", out_features, _SIZE)
        self.init = check("Linear", "init", init, _INIT)
        self.weight = Parameter(np.zeros((out_features, in_features)), dtype=dtype)
        self.bias = Parameter(np.zeros(out_features), dtype=dtype) if bias else None
        self.reset_parameters(seed)

    def reset_parameters(self, rng: Any = None) -> None:
        """Fresh starting values by the layer's ``init`` (default: weight ~ N(0, 1/in_features), bias = 0)."""
        weight, bias = INITS[self.init](_rng(rng), self.in_features, self.out_features)
        self.weight.data[...] = weight
        if self.bias is not None:
            self.bias.data[...] = 0.0 if bias is None else bias

    def forward(self, x: Any) -> Tensor:
        x = tensor_from(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: expected inputs with {self.in_features} features in the last dimension, got shape {x.shape}"
            )
        if self.bias is None:
            return x @ self.weight.T
        return apply(_LINEAR, x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _input(x: Any) -> Tensor:
    """Model input as a tensor; a constant one is labelled "Input" for explanations."""
    x = tensor_from(x)
    return constant(x.data, "Input") if not x.requires_grad and x.name is None else x


class _Activation(Module):
    fn: Any = None

    def forward(self, x: Any) -> Tensor:
        return type(self).fn(x)


class SoftPlus(_Activation):
    """softplus(x) = log(1 + e^x), the lessons' activation."""

    fn = staticmethod(F.softplus)


class ReLU(_Activation):
    """relu(x) = max(x, 0)."""

    fn = staticmethod(F.relu)


class Sigmoid(_Activation):
    """sigmoid(x) = 1 / (1 + e^-x)."""

    fn = staticmethod(F.sigmoid)


class Tanh(_Activation):
    """tanh(x)."""

    fn = staticmethod(F.tanh)


class Identity(_Activation):
    """x unchanged."""

    fn = staticmethod(tensor_from)


ACTIVATIONS = {"softplus": SoftPlus, "relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "identity": Identity}


class Sequential(Module):
    """Modules applied one after another; parameters are named by position ("0.weight")."""

    def __init__(self, *layers: Module) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {i} must be a Module, got {type(layer).__name__}")
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            layer._prefix_names(str(i))

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), m) for i, m in enumerate(self.layers)]

    def forward(self, x: Any) -> Tensor:
        x = _input(x)
        for i, layer in enumerate(self.layers):
            out = layer(x)
            if out is not x and out.name is None:
                out.name = f"{type(layer).__name__.lower()}{i}"  # a readable node for explanations
            x = out
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)


def mlp(
    sizes: _Sequence[int], activation: str = "relu", seed: Any = None, dtype: Any = np.float64, init: str = "lecun"
) -> Sequential:
    """A multilayer perceptron: Linear layers of ``sizes`` with ``activation`` between them.

    ``init`` is each layer's (see :class:`Linear`); ``init="glorot"`` with
    ``activation="sigmoid"`` uses the bound sqrt(2 / (in + out)) in every layer, as
    scikit-learn's MLP does for logistic units.

    Example::

        >>> from chainrule.nn import mlp
        >>> mlp([1, 2, 1], activation="softplus", seed=0)
        Sequential(
          (0): Linear(in_features=1, out_features=2, bias=True)
          (1): SoftPlus()
          (2): Linear(in_features=2, out_features=1, bias=True)
        )
    """
    check("mlp", "activation", activation, OneOf(sorted(ACTIVATIONS)))
    init = check("mlp", "init", init, _INIT)
    if init == "glorot" and activation == "sigmoid":
        init = "glorot_sigmoid"
    sizes = check("mlp", "sizes", sizes.tolist() if isinstance(sizes, np.ndarray) else sizes, _SIZES)
    rng = _rng(seed)
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, seed=rng, dtype=dtype, init=init))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)


class DosageNetwork(Module):
    """The lessons' network: one input, two SoftPlus hidden nodes, one output.

    predicted = w3 * softplus(x * w1 + b1) + w4 * softplus(x * w2 + b2) + b3

    The top node scaled by w3 is the lessons' blue curve, the bottom node scaled
    by w4 the orange curve, and their sum plus b3 the green squiggle.

    Example::

        >>> from chainrule.nn import DosageNetwork
        >>> net = DosageNetwork.from_lesson(b3=0.0)
        >>> net.b3
        Parameter(b3=0.0)
        >>> net([0.0, 0.5, 1.0]).data.round(2)
        array([-2.6 , -1.61, -2.61])
    """

    NAMES = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")
    w1: Parameter
    b1: Parameter
    w2: Parameter
    b2: Parameter
    w3: Parameter
    w4: Parameter
    b3: Parameter
    LESSON = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30, "b3": 2.61}

    def __init__(self, w1: Any, b1: Any, w2: Any, b2: Any, w3: Any, w4: Any, b3: Any, dtype: Any = np.float64) -> None:
        for name, value in zip(self.NAMES, (w1, b1, w2, b2, w3, w4, b3)):
            value = value.data if isinstance(value, Tensor) else value
            number = value.item() if isinstance(value, np.ndarray) and value.shape == () else value
            check("DosageNetwork", name, number, _NUMBER)
            setattr(self, name, Parameter(np.asarray(value), name=name, dtype=dtype))

    @classmethod
    def from_lesson(cls, dtype: Any = np.float64, **overrides: Any) -> DosageNetwork:
        """The lessons' optimized values, with any of them overridden (``from_lesson(b3=0.0)``)."""
        unknown = sorted(set(overrides) - set(cls.NAMES))
        if unknown:
            raise ValueError(
                f"DosageNetwork.from_lesson: unknown parameter(s) {unknown}; the parameters are {list(cls.NAMES)}"
            )
        return cls(**{**cls.LESSON, **overrides}, dtype=dtype)

    @classmethod
    def random(cls, seed: Any = None, dtype: Any = np.float64) -> DosageNetwork:
        """Weights from a standard normal, biases 0, as the lessons start."""
        net = cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, dtype=dtype)
        net.reset_parameters(seed)
        return net

    def reset_parameters(self, rng: Any = None) -> None:
        """w1, w2, w3, w4 from a standard normal (in that order), the biases 0."""
        for name, value in zip(("w1", "w2", "w3", "w4"), _rng(rng).standard_normal(4)):
            getattr(self, name).data[...] = value
        for name in ("b1", "b2", "b3"):
            getattr(self, name).data[...] = 0.0

    def curves(self, x: Any) -> dict[str, Tensor]:
        """The lessons' pieces at inputs ``x``: blue (w3 * top node), orange (w4 * bottom node), green."""
        x = self._check(x)
        blue = F.softplus(x * self.w1 + self.b1) * self.w3
        orange = F.softplus(x * self.w2 + self.b2) * self.w4
        return {"blue": blue, "orange": orange, "green": blue + orange + self.b3}

    def forward(self, x: Any) -> Tensor:
        x = self._check(x)
        # Named as in the lessons, so explanations read dSSR/dPredicted_i x dPredicted_i/dy1_i ...
        x1 = _named(x * self.w1 + self.b1, "x1")
        y1 = _named(F.softplus(x1), "y1")
        x2 = _named(x * self.w2 + self.b2, "x2")
        y2 = _named(F.softplus(x2), "y2")
        return _named(y1 * self.w3 + y2 * self.w4 + self.b3, "Predicted")

    def _check(self, x: Any) -> Tensor:
        x = _input(x)
        if x.ndim == 2 and x.shape[1] != 1 or x.ndim > 2:
            raise ValueError(f"DosageNetwork: takes one input feature (shape (n,) or (n, 1)), got shape {x.shape}")
        return x

    def extra_repr(self) -> str:
        return ", ".join(f"{n}={getattr(self, n).item():.4g}" for n in self.NAMES)
