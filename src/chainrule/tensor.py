"""Tensor: an ndarray with a gradient and a record of the op that made it.

The engine is three pieces: :func:`apply` runs a primitive forward and records
it, :func:`_topo_order` orders the graph, and :meth:`Tensor.backward` walks it
in reverse, calling each primitive's VJP and accumulating. The primitives
themselves live in :mod:`chainrule.ops`. :func:`graph` is the public view of
the record, which the interpreters (trace, scalar, explain) read; this is the
only module that reads a Tensor's private slots.
"""

from __future__ import annotations

import itertools
import operator
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import AnomalyError
from .ops import REGISTRY, Op, unbroadcast

__all__ = [
    "AnomalyError",
    "Axis",
    "Graph",
    "Node",
    "Tensor",
    "TensorLike",
    "apply",
    "constant",
    "detect_anomaly",
    "graph",
    "is_anomaly_enabled",
    "is_grad_enabled",
    "named",
    "no_grad",
    "tensor",
    "tensor_from",
]

_FLOATS = (np.float32, np.float64)
_grad_enabled = True
_anomaly = False


class Tensor:
    """An n-dimensional array of float32 or float64 that can carry a gradient.

    Build one with :func:`chainrule.tensor`. Ops on tensors record the graph;
    :meth:`backward` fills ``.grad`` of every leaf tensor that requires grad.

    Example::

        >>> import chainrule as cr
        >>> w = cr.tensor(3.0, requires_grad=True)
        >>> loss = (2 * w - 1) ** 2
        >>> loss.backward()
        >>> w.grad    # d/dw (2w - 1)^2 = 4 (2w - 1) = 20 at w = 3
        array(20.)
    """

    __slots__ = ("data", "grad", "requires_grad", "name", "_op", "_args", "_kw", "_parents", "_seq", "_site")
    __array_ufunc__ = None  # ndarray <op> Tensor defers to Tensor's reflected operator
    data: np.ndarray
    grad: np.ndarray | None
    _op: Op | None
    _args: list
    _kw: dict
    _parents: tuple | None
    _seq: int

    def __init__(
        self, data: Any, requires_grad: bool = False, dtype: npt.DTypeLike | None = None, name: str | None = None
    ) -> None:
        self.data = _to_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._op = self._parents = None

    # ---- properties and conversions --------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def T(self) -> Tensor:
        return apply(_OPS["transpose"], self)

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an op."""
        return self._op is None

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        if self.data.size != 1:
            raise ValueError(
                f"item(): the tensor has shape {self.shape} ({self.data.size} elements); "
                "only a one-element tensor converts to a number"
            )
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def detach(self) -> Tensor:
        """A tensor sharing this data, cut from the graph (no gradient flows through it)."""
        return _new(self.data)

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        if copy:
            return self.data.astype(dtype or self.data.dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype != np.float64:
            extra += f", dtype={self.data.dtype}"
        if self.requires_grad:
            extra += ", requires_grad=True"
        if self.name:
            extra += f", name={self.name!r}"
        return f"tensor({body}{extra})"

    # ---- backward ----------------------------------------------------------------

    def backward(self, grad: TensorLike | None = None, retain_graph: bool = False) -> None:
        """Add d(self)/d(leaf) to ``.grad`` of every leaf that requires grad.

        ``grad`` is d(something)/d(self); leave it out for a one-element output
        (it is then 1). Gradients *accumulate* across calls, as in PyTorch: call
        ``zero_grad()`` or set ``.grad = None`` between steps. The graph is freed
        afterwards unless ``retain_graph=True``.
        """
        grads = {self: self._seed(grad)}
        borrowed: set[int] = set()  # ids of gradients that are another node's array or a view: a leaf must copy them
        order = _topo_order(self)
        for i, t in enumerate(order):
            if not retain_graph:
                order[i] = None  # a node (and its values) is freed as soon as backward is past it
            g = grads.pop(t, None)
            if g is None:
                continue
            if t._op is None:
                _accumulate(t, g, id(g) not in borrowed)
                continue
            for p, vjp in zip(t._parents, t._op.vjps):
                if p is not None and p.requires_grad:
                    _send(grads, borrowed, p, vjp(g, t.data, *t._args, **t._kw), g, t)
            if not retain_graph:
                t._args = t._kw = t._parents = None  # freed: a second backward raises

    def _seed(self, grad):
        """The gradient that starts backward: 1 for a one-element output, else the ``grad`` given."""
        if not self.requires_grad:
            raise ValueError(
                "backward(): this tensor does not require grad, so no graph leads to it; "
                "create the leaves with requires_grad=True"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward(): the output has shape {self.shape}; without grad= only a "
                    "one-element output can start backward (pass grad= of that shape, "
                    "or reduce it first, e.g. .sum())"
                )
            return np.ones(self.data.shape, self.data.dtype)
        grad = _to_array(grad.data if isinstance(grad, Tensor) else grad, self.data.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward(): grad has shape {grad.shape} but the output has shape {self.shape}")
        return grad

    # ---- operators ---------------------------------------------------------------

    def __add__(self, other: TensorLike) -> Tensor:
        return apply(_ADD, self, other)

    def __radd__(self, other: TensorLike) -> Tensor:
        return apply(_ADD, other, self)

    def __sub__(self, other: TensorLike) -> Tensor:
        return apply(_SUB, self, other)

    def __rsub__(self, other: TensorLike) -> Tensor:
        return apply(_SUB, other, self)

    def __mul__(self, other: TensorLike) -> Tensor:
        return apply(_MUL, self, other)

    def __rmul__(self, other: TensorLike) -> Tensor:
        return apply(_MUL, other, self)

    def __truediv__(self, other: TensorLike) -> Tensor:
        return apply(_DIV, self, other)

    def __rtruediv__(self, other: TensorLike) -> Tensor:
        return apply(_DIV, other, self)

    def __pow__(self, other: TensorLike) -> Tensor:
        return apply(_POW, self, other)

    def __rpow__(self, other: TensorLike) -> Tensor:
        return apply(_POW, other, self)

    def __matmul__(self, other: TensorLike) -> Tensor:
        return apply(_MATMUL, self, other)

    def __rmatmul__(self, other: TensorLike) -> Tensor:
        return apply(_MATMUL, other, self)

    def __neg__(self) -> Tensor:
        return apply(_NEG, self)

    def __getitem__(self, index: Any) -> Tensor:
        return apply(_OPS["getitem"], self, index=_index(index))

    # Comparisons give plain boolean arrays: they have no derivative.
    def __lt__(self, other: TensorLike) -> np.ndarray:
        return self.data < _data(other)

    def __le__(self, other: TensorLike) -> np.ndarray:
        return self.data <= _data(other)

    def __gt__(self, other: TensorLike) -> np.ndarray:
        return self.data > _data(other)

    def __ge__(self, other: TensorLike) -> np.ndarray:
        return self.data >= _data(other)

    __hash__ = object.__hash__

    # ---- methods (the same ops as chainrule.<name>) ---------------------------------

    def exp(self) -> Tensor:
        return apply(_OPS["exp"], self)

    def log(self) -> Tensor:
        return apply(_OPS["log"], self)

    def sqrt(self) -> Tensor:
        return apply(_OPS["sqrt"], self)

    def abs(self) -> Tensor:
        return apply(_OPS["abs"], self)

    def tanh(self) -> Tensor:
        return apply(_OPS["tanh"], self)

    def sigmoid(self) -> Tensor:
        return apply(_OPS["sigmoid"], self)

    def softplus(self) -> Tensor:
        return apply(_OPS["softplus"], self)

    def relu(self) -> Tensor:
        return apply(_OPS["relu"], self)

    # Composites are built here from apply and primitives (tinygrad style), so that the engine needs
    # nothing from chainrule.functional; functional's functions call these methods.
    def clip(self, lo: float | None = None, hi: float | None = None) -> Tensor:
        """x limited to [lo, hi]; the gradient passes where lo <= x <= hi."""
        try:
            lo, hi = (None if b is None else float(b) for b in (lo, hi))  # plain floats keep float32 float32
        except (TypeError, ValueError):
            raise TypeError(f"clip: lo and hi must be numbers or None, got lo={lo!r} and hi={hi!r}") from None
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"clip: lo must be <= hi, got lo={lo} and hi={hi}")
        return apply(_OPS["clip"], self, lo=lo, hi=hi)

    def sum(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (all axes when None)."""
        return apply(_OPS["sum"], self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Mean over ``axis``: the sum divided by the count, so its gradient is 1/count."""
        total = self.sum(axis, keepdims)  # checks the axis, naming the op and the shape
        count = self.data.size // total.data.size if self.data.size else 0
        return total * (1.0 / count) if count else total * np.nan

    def max(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Largest element over ``axis``; tied maxima share the gradient equally."""
        return apply(_OPS["max"], self, axis=axis, keepdims=keepdims)

    def logsumexp(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """log(sum(exp(x))) over ``axis``, shifted by the max so it never overflows."""
        return apply(_OPS["logsumexp"], self, axis=axis, keepdims=keepdims)

    def softmax(self, axis: int = -1) -> Tensor:
        """exp(x) / sum(exp(x)) over ``axis``, as exp(log_softmax(x))."""
        return self.log_softmax(axis).exp()

    def log_softmax(self, axis: int = -1) -> Tensor:
        """x - logsumexp(x) over ``axis``: log-probabilities from logits, stable."""
        return apply(_OPS["log_softmax"], self, axis=axis)

    def reshape(self, *shape: int | tuple[int, ...]) -> Tensor:
        """The same elements in a new shape: ``t.reshape(2, 3)`` or ``t.reshape((2, 3))``."""
        return apply(_OPS["reshape"], self, shape=shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes: int | tuple[int, ...] | None) -> Tensor:
        """Axes permuted (reversed when none are given)."""
        return apply(_OPS["transpose"], self, axes=axes[0] if len(axes) == 1 else (axes or None))


# What ops accept (a tensor, an array or a number) and what reductions take as an axis.
TensorLike = Tensor | np.ndarray | float
Axis = int | tuple[int, ...] | None


# ---- the engine -------------------------------------------------------------------

_OPS = REGISTRY
_ADD, _SUB, _MUL, _DIV, _POW, _MATMUL, _NEG = (
    REGISTRY[n] for n in ("add", "sub", "mul", "div", "pow", "matmul", "neg")
)


def _new(data):
    t = Tensor.__new__(Tensor)
    t.data = data
    t.grad = t.name = t._op = t._parents = None
    t.requires_grad = False
    return t


def apply(op: Op, *inputs: TensorLike, **kw: Any) -> Tensor:
    """Run primitive ``op`` on tensors/arrays/numbers and record it for backward.

    Non-tensor inputs are constants; they take the dtype of the first tensor, so
    float32 stays float32. Keyword arguments (axis, shape, ...) are passed to the
    forward and to the VJPs unchanged.
    """
    dtype = None
    track = constants = False
    for x in inputs:
        if isinstance(x, Tensor):
            if dtype is None:
                dtype = x.data.dtype
            track = track or x.requires_grad
        else:
            constants = True
    if constants:
        args = [x.data if isinstance(x, Tensor) else _const(x, dtype, op, i) for i, x in enumerate(inputs)]
    else:
        args = [x.data for x in inputs]  # type: ignore[union-attr]  # (no constants: every input is a Tensor)
    try:
        out = op.fwd(*args, **kw)
    except (ValueError, IndexError, TypeError) as e:
        raise _shape_error(op, args, kw, e) from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    t = _new(out)
    if _anomaly:
        t._site = _user_site()
        _check_finite(out, op, t, "forward")
    if track and _grad_enabled:
        t.requires_grad = True
        t._op, t._args, t._kw, t._seq = op, args, kw, next(_clock)
        # Constant tensors stay as parents (the explainer shows their names); backward skips them.
        t._parents = tuple([x if isinstance(x, Tensor) else None for x in inputs]) if constants else inputs
    return t


_clock = itertools.count()  # creation order of recorded nodes: a node is always newer than its inputs


def _topo_order(root):
    """The graph below ``root`` that needs gradients, each node before the nodes it came from.

    NOTE: no depth-first search is needed: a node is created after its inputs,
    so newest-first creation order is already a topological order.
    """
    nodes, leaves, stack, seen = [], [], [root], {root}
    while stack:
        t = stack.pop()
        if t._op is None:
            leaves.append(t)
            continue
        if t._parents is None:
            raise _freed("backward()", t)
        nodes.append(t)
        for p in t._parents:
            if p is not None and p.requires_grad and p not in seen:
                seen.add(p)
                stack.append(p)
    nodes.sort(key=_by_age, reverse=True)
    return nodes + leaves


_by_age = operator.attrgetter("_seq")


def _send(grads, borrowed, p, gi, g, t):
    """Add the gradient ``gi`` flowing to input ``p`` (summed back to p's shape) to what ``p`` has."""
    if gi.shape != p.data.shape:
        gi = unbroadcast(gi, p.data.shape)
    if _anomaly:
        _check_finite(gi, t._op, t, "backward")
    prev = grads.get(p)
    if prev is not None:
        grads[p] = prev + gi
        return
    grads[p] = gi
    if gi is g or gi.base is not None or type(gi) is not np.ndarray:
        borrowed.add(id(gi))


def _accumulate(t, g, owned=False):
    """Add ``g`` to ``t.grad``; the first gradient is stored as it is only when backward made it for ``t`` alone."""
    if g.dtype != t.data.dtype:
        g, owned = g.astype(t.data.dtype), True
    if t.grad is None:
        t.grad = g if owned else np.array(g, copy=True)
    else:
        t.grad += g


def _freed(who: str, t: Tensor) -> ValueError:
    assert t._op is not None
    return ValueError(
        f"{who}: the graph through op '{t._op.name}' was already freed by an earlier "
        "backward(); pass retain_graph=True to that backward() to keep it"
    )


# ---- the recorded graph, for interpreters -------------------------------------------


class Node:
    """One value of a recorded graph: a leaf (``op`` None) or a primitive applied to its inputs.

    ``inputs[i]`` is the Node of argument ``i``, or None where it was a constant;
    ``args`` are the arrays the op received (constants included) and ``kwargs`` its
    keyword arguments, so ``op.fwd(*args, **kwargs)`` gives ``value`` again.
    ``grad`` is d(output)/d(node), of the node's shape, once :meth:`Graph.compute_grads`
    ran (``graph(output, grads=True)``), else None. ``grad_points`` is the same before
    broadcasting was undone, where the node was broadcast (a bias added to every data
    point: one entry per point, summing to ``grad``), else None.
    """

    __slots__ = (
        "args",
        "grad",
        "grad_points",
        "index",
        "inputs",
        "kwargs",
        "name",
        "op",
        "requires_grad",
        "tensor",
        "value",
    )

    def __init__(
        self,
        index: int,
        tensor: Tensor,
        op: Op | None = None,
        inputs: tuple = (),
        args: tuple = (),
        kwargs: dict | None = None,
    ) -> None:
        self.index, self.tensor, self.op = index, tensor, op
        self.inputs: tuple[Node | None, ...] = inputs
        self.args: tuple[np.ndarray, ...] = args
        self.kwargs: dict = kwargs or {}
        self.value: np.ndarray = tensor.data
        self.name: str | None = tensor.name
        self.requires_grad: bool = tensor.requires_grad
        self.grad: np.ndarray | None = None
        self.grad_points: np.ndarray | None = None

    @property
    def is_leaf(self) -> bool:
        return self.op is None

    def expression(self) -> str:
        """``mul(%0, 2)``: the op applied to its inputs' indices and its constants (``leaf`` for a leaf)."""
        if self.op is None:
            return "leaf"
        operands = [f"%{n.index}" if n is not None else _constant_text(a) for n, a in zip(self.inputs, self.args)]
        operands += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.op.name}({', '.join(operands)})"

    def __repr__(self) -> str:
        return f"<Node %{self.index} = {self.expression()} {_node_notes(self)}>"


class Graph:
    """The graph recorded below a tensor, as :func:`graph` returns it.

    ``nodes`` are in topological order (each node after its inputs; leaves just
    before their first use), ``output`` is the last, ``leaves`` those without an op.
    Iterating gives the nodes; ``node(t)`` finds a tensor's node. ``grads_computed``
    says whether :meth:`compute_grads` filled every node's ``grad``.
    """

    def __init__(self, tensors: list[Tensor]) -> None:
        self.grads_computed = False
        self.nodes: list[Node] = []
        self._of: dict[Tensor, Node] = {}
        for t in tensors:
            self._of[t] = node = self._node(t)
            self.nodes.append(node)
        self.output: Node = self.nodes[-1]
        self.leaves: list[Node] = [n for n in self.nodes if n.op is None]

    def _node(self, t: Tensor) -> Node:
        if t._op is None:
            return Node(len(self.nodes), t)
        inputs = tuple(None if p is None else self._of[p] for p in t._parents or ())
        return Node(len(self.nodes), t, t._op, inputs, tuple(t._args), dict(t._kw))

    def compute_grads(self) -> Graph:
        """Fill ``grad`` (and ``grad_points``) of every node with d(output)/d(node); returns the graph.

        A reverse pass over the nodes with the registry's VJPs, like ``backward``,
        but keeping the gradient at every node, inner nodes and constant inputs
        included, and leaving the tensors' ``.grad`` alone (a read of the graph).
        A node no gradient reaches (the condition of ``where``) keeps None.
        """
        out = self.output
        if out.value.size != 1:
            raise ValueError(
                f"graph(grads=True): the output has shape {out.value.shape}; gradients need a "
                "one-element output (a loss), e.g. reduce it with .sum()"
            )
        grads: dict[int, np.ndarray] = {out.index: np.ones_like(out.value)}
        points: dict[int, np.ndarray | None] = {}
        for n in reversed(self.nodes):
            g = grads.pop(n.index, None)
            n.grad = None if g is None else np.array(g, dtype=n.value.dtype)  # its own array, never a view
            n.grad_points = points.pop(n.index, None)
            if g is None or n.op is None:
                continue
            for p, vjp in zip(n.inputs, n.op.vjps):  # type: ignore[arg-type]  # (_EachInput: by index, as backward)
                if p is not None and vjp is not None:
                    _gather(grads, points, p, np.asarray(vjp(g, n.value, *n.args, **n.kwargs)))
        self.grads_computed = True
        return self

    def node(self, tensor: Tensor) -> Node:
        """The node of ``tensor`` (KeyError when it is not in this graph)."""
        try:
            return self._of[tensor]
        except (KeyError, TypeError):
            raise KeyError(
                f"graph.node(): this tensor is not in the graph (got {type(tensor).__name__} "
                f"of shape {getattr(tensor, 'shape', None)})"
            ) from None

    def __contains__(self, tensor: object) -> bool:
        return isinstance(tensor, Tensor) and tensor in self._of

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        rows = [(f"%{n.index} = {n.expression()}", _node_notes(n)) for n in self.nodes]
        width = min(max(len(r[0]) for r in rows), 48)
        head = (
            f"Graph of {_count(len(self.nodes), 'node')} ({_count(len(self.leaves), 'leaf', 'leaves')}), "
            f"output %{self.output.index}"
        )
        return "\n".join([head, *(f"  {a.ljust(width)} {b}".rstrip() for a, b in rows)])


def _gather(grads, points, p, gi):
    """Add the gradient ``gi`` flowing to node ``p`` (summed back to its shape); keep it unsummed in ``points``."""
    if gi.shape != p.value.shape:
        if p.index not in points:
            points[p.index] = gi
        else:
            prev = points[p.index]
            points[p.index] = prev + gi if prev is not None and prev.shape == gi.shape else None
        gi = unbroadcast(gi, p.value.shape)
    prev = grads.get(p.index)
    grads[p.index] = gi if prev is None else prev + gi  # a new array: gi may be another node's gradient


def graph(output: Tensor, grads: bool = False) -> Graph:
    """The graph recorded below ``output``: every op and leaf it came from, for interpreters to read.

    The graph must still be there: call it before ``backward()``, or run
    backward with ``retain_graph=True`` (a ValueError says so otherwise).
    ``grads=True`` also fills every node's ``grad`` with d(output)/d(node)
    (:meth:`Graph.compute_grads`).

    Example::

        >>> import chainrule as cr
        >>> w = cr.tensor(3.0, requires_grad=True, name="w")
        >>> g = cr.graph((2 * w - 1) ** 2)
        >>> g
        Graph of 4 nodes (1 leaf), output %3
          %0 = leaf        () 'w' requires_grad
          %1 = mul(2, %0)  () requires_grad
          %2 = sub(%1, 1)  () requires_grad
          %3 = pow(%2, 2)  () requires_grad
        >>> [n.op.name for n in g if n.op], g.node(w).index, g.output.inputs
        (['mul', 'sub', 'pow'], 0, (<Node %2 = sub(%1, 1) () requires_grad>, None))
        >>> float(g.output.op.fwd(*g.output.args, **g.output.kwargs))    # the op again: (2 * 3 - 1)^2
        25.0
        >>> [float(n.grad) for n in graph((2 * w - 1) ** 2, grads=True)]   # d/d%2 = 2 (2w - 1) = 10, d/dw = 20
        [20.0, 10.0, 10.0, 1.0]
        >>> print(w.grad)    # a read of the graph: the tensor's .grad is untouched
        None
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"graph(): output must be a Tensor, got {type(output).__name__}")
    g = Graph(_recorded(output))
    return g.compute_grads() if grads else g


def _recorded(root: Tensor) -> list[Tensor]:
    """The tensors below ``root``: recorded nodes oldest first (creation order), each leaf before its first use."""
    found: list[Tensor] = []
    stack, seen = [root], {root}
    while stack:
        t = stack.pop()
        if t._op is None:
            continue
        if t._parents is None:
            raise _freed("graph()", t)
        found.append(t)
        for p in t._parents:
            if p is not None and p not in seen:
                seen.add(p)
                stack.append(p)
    found.sort(key=_by_age)
    order: list[Tensor] = []
    placed = set()
    for t in found:
        for p in t._parents or ():
            if p is not None and p._op is None and p not in placed:
                placed.add(p)
                order.append(p)
        order.append(t)
    return order or [root]


def _constant_text(a) -> str:
    """A constant as the graph's text shows it: its number when it has one element, else its shape."""
    return (
        f"{float(np.asarray(a).ravel()[0]):g}"
        if np.size(a) == 1 and np.asarray(a).dtype.kind in "biuf"
        else f"const{np.shape(a)}"
    )


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _node_notes(n: Node) -> str:
    """Shape, name and whether it requires grad: the right-hand column of a graph's text."""
    name = f" {n.name!r}" if n.name else ""
    return f"{n.value.shape}{name}{' requires_grad' if n.requires_grad else ''}"


# ---- conversions and checks ---------------------------------------------------------


def tensor(
    data: Any, requires_grad: bool = False, dtype: npt.DTypeLike | None = None, name: str | None = None
) -> Tensor:
    """A new tensor holding a copy of ``data``.

    Floats keep their precision (float32 arrays stay float32); numbers, lists and
    integer arrays become float64 unless ``dtype`` says otherwise.

    Example::

        >>> import chainrule as cr
        >>> cr.tensor([1, 2, 3])
        tensor([1., 2., 3.])
        >>> cr.tensor([1, 2], dtype="float32", requires_grad=True)
        tensor([1., 2.], dtype=float32, requires_grad=True)
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)


def named(t: Tensor, name: str) -> Tensor:
    """``t`` with its ``name`` set (explanations show it), returned for chaining."""
    t.name = name
    return t


def constant(data: Any, name: str) -> Tensor:
    """A named constant tensor over ``data`` (no copy): how models label their inputs for explanations."""
    t = _new(data if isinstance(data, np.ndarray) else np.asarray(data))
    t.name = name
    return t


def tensor_from(x: TensorLike) -> Tensor:
    """``x`` itself when it is a Tensor, else a constant tensor of it (a float ndarray is not copied)."""
    if isinstance(x, Tensor):
        return x
    if type(x) is np.ndarray and x.dtype in _FLOATS:
        return _new(x)
    return Tensor(x)


def _to_array(data, dtype=None):
    """User data as a float ndarray; floats keep their precision, everything else becomes float64."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None and np.dtype(dtype) not in _FLOATS:
        raise TypeError(f"tensor(): dtype must be float32 or float64, got {np.dtype(dtype)}")
    try:
        arr = np.array(data, dtype=None, copy=True)
    except (ValueError, TypeError) as e:
        raise TypeError(
            f"tensor(): expected a number, a (nested) list of numbers or an ndarray, got {type(data).__name__} ({e})"
        ) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"tensor(): expected numbers, got {type(data).__name__} with elements of dtype "
            f"{arr.dtype} (e.g. {_peek(data)})"
        )
    if dtype is None:
        dtype = arr.dtype if arr.dtype in _FLOATS else np.float64
    return arr.astype(dtype, copy=False)


def _const(x, dtype, op, i):
    """A non-tensor input of an op as an array of the tensors' dtype."""
    if isinstance(x, (float, int)) and not isinstance(x, bool):
        return np.asarray(x, dtype=dtype or np.float64)
    if isinstance(x, np.ndarray) and x.dtype.kind == "b":
        return x  # masks (the condition of where) stay boolean
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        arr = np.asarray(None)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{op.name}: input {i} must be a Tensor, a number or a numeric array, got {type(x).__name__} {_peek(x)}"
        )
    if arr.dtype.kind == "b":
        return arr
    return arr.astype(dtype or np.float64, copy=False)


def _peek(x):
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _index(index):
    """An index with tensors replaced by arrays and boolean masks by the positions they select."""
    if isinstance(index, tuple):
        return tuple(_data(i) for i in index)
    index = _data(index)
    if isinstance(index, list):
        index = np.asarray(index)
    if isinstance(index, np.ndarray) and index.dtype.kind == "b":
        return index.nonzero()
    return index


def _shape_error(op, args, kw, err):
    shapes = " and ".join(str(np.shape(a)) for a in args)
    where = f" with {', '.join(f'{k}={v!r}' for k, v in kw.items())}" if kw else ""
    if isinstance(err, TypeError):
        return TypeError(f"{op.name}: bad argument for inputs of shapes {shapes}{where}: {err}")
    cls = IndexError if isinstance(err, IndexError) and not isinstance(err, ValueError) else ValueError
    return cls(f"{op.name}: cannot apply to shapes {shapes}{where}: {err}")


def _user_site():
    """File and line of the first caller outside chainrule, for anomaly messages."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("chainrule."):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "?"


def _check_finite(arr, op, t, phase):
    if not np.all(np.isfinite(arr)):
        bad = "nan" if np.isnan(arr).any() else "inf"
        site = getattr(t, "_site", None)
        site = f" (op created at {site})" if site else ""
        raise AnomalyError(f"detect_anomaly: op '{op.name}' produced {bad} in its {phase}{site}")


# ---- modes --------------------------------------------------------------------------


@contextmanager
def no_grad() -> Iterator[None]:
    """Run ops without recording the graph (evaluation, parameter updates).

    Example::

        >>> import chainrule as cr
        >>> w = cr.tensor(2.0, requires_grad=True)
        >>> with cr.no_grad():
        ...     y = w * 3
        >>> y.requires_grad
        False
    """
    global _grad_enabled
    before, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = before


@contextmanager
def detect_anomaly() -> Iterator[None]:
    """Raise :class:`AnomalyError` at the first op whose forward or backward gives NaN or inf.

    The message names the op and the line of your code that created it. Slower:
    use it to hunt a NaN, not for training.

    Example::

        >>> import chainrule as cr
        >>> x = cr.tensor([1.0, -1.0], requires_grad=True)
        >>> with cr.detect_anomaly():
        ...     cr.log(x)     # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        chainrule.errors.AnomalyError: detect_anomaly: op 'log' produced nan in its forward ...
    """
    global _anomaly
    before, _anomaly = _anomaly, True
    try:
        with np.errstate(all="ignore"):
            yield
    finally:
        _anomaly = before


def is_grad_enabled() -> bool:
    return _grad_enabled


def is_anomaly_enabled() -> bool:
    return _anomaly
