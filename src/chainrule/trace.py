"""Trace once, replay many times: a training step as a flat list of NumPy calls.

``fit(..., compile=True)`` records the graph of one forward pass (model and
loss) and replays it on later iterations: each primitive's forward, then its
VJPs in reverse, read from a fixed table of array slots. No Tensor objects, no
graph walking, no per-op checks: the same NumPy calls as the eager path, in the
same order, so the numbers are the same.

(A tiny float64 model trained on the whole data at once is written out as plain
Python arithmetic instead, see :mod:`chainrule.scalar`.)

It applies when the model does the same ops on every batch of a given shape
and everything that varies reaches the graph through the parameters, the inputs
or the targets. It is spot-checked: the first replay of every shape, and every
``RECHECK``-th after it, is compared with an eager step; on any difference that
shape falls back to eager training with a :class:`CompileWarning` saying why.
A model whose ops change between checks (a branch on a parameter's value, say)
can train up to ``RECHECK`` replayed steps on the old graph before the check
sees it: do not compile such a model.

Example: the same numbers as the eager engine, in a fraction of the time::

    >>> import warnings
    >>> import numpy as np
    >>> import chainrule as cr
    >>> x = np.linspace(-1, 1, 40)[:, None]; y = x ** 2
    >>> eager, compiled = (cr.nn.mlp([1, 8, 1], seed=0) for _ in range(2))
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", cr.ConvergenceWarning)
    ...     h1 = cr.fit(eager, x, y, loss="mse", batch_size=10, seed=0, max_iter=20)
    ...     h2 = cr.fit(compiled, x, y, loss="mse", batch_size=10, seed=0, max_iter=20, compile=True)
    >>> h2.engine, h1.loss == h2.loss
    ('numpy', True)
    >>> all(np.array_equal(a.data, b.data) for a, b in zip(eager.parameters(), compiled.parameters()))
    True
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CompileWarning, outside_stacklevel
from .ops import UNBROADCAST_NAMES, unbroadcast_lines
from .tensor import Tensor, graph, is_anomaly_enabled, is_grad_enabled

if TYPE_CHECKING:
    from .nn import Module, Parameter

__all__ = ["DECLINED", "RECHECK", "CompileWarning", "CompiledStep", "Tape"]

# A replayed shape is compared with an eager step on its first replay and every RECHECK-th after.
RECHECK = 100

# The ops the replay declines: none. It calls each op's own forward and VJPs from the registry
# (Op.fwd, Op.vjps), so every op in the registry is replayed as the eager engine runs it.
DECLINED: frozenset = frozenset()


class Tape:
    """One recorded step, turned into a Python function of straight-line NumPy calls.

    Variables: ``v0 .. v{P-1}`` the parameters, ``v{P}`` the inputs, ``v{P+1}``
    the targets, ``v{k}`` each node's output and ``C{k}`` each constant; ``g{k}``
    is the gradient of ``v{k}``. The generated source is kept in ``source``.
    """

    names: dict[str, Any]  # the generated function's globals: ops, their keyword arguments, constants
    slot: dict[int, int]  # id(array) -> its variable or constant number
    shapes: list[tuple[int, ...]]
    variables: set[int]

    def __init__(self, loss: Tensor, params: Sequence[Tensor], x: np.ndarray, y: np.ndarray) -> None:
        nodes = [n for n in graph(loss) if n.op is not None]  # creation order: the eager forward's
        self.names = {"ones_like": np.ones_like, "zeros_like": np.zeros_like, **UNBROADCAST_NAMES}
        self.slot, self.shapes, self.variables = {}, [], set()
        for a in [p.data for p in params] + [x, y]:
            self._variable(a)
        needs = {id(p.data) for p in params}  # arrays whose gradient is wanted or flows to a parameter
        forward, backward_steps = [], []
        for j, n in enumerate(nodes):
            assert n.op is not None  # (nodes holds recorded ops only)
            args = ", ".join(self._name(a) for a in n.args) + (f", **K{j}" if n.kwargs else "")
            self.names[f"F{j}"], self.names[f"K{j}"] = n.op.fwd, n.kwargs
            out = self._variable(n.value)
            call = f"F{j}({args})"
            forward.append(f"    v{out} = {'asarray(' + call + ')' if n.value.ndim == 0 else call}")
            edges = [i for i, a in enumerate(n.args) if id(a) in needs and n.op.vjps[i] is not None]
            if edges:
                needs.add(id(n.value))
                backward_steps.append((j, n, out, args, edges))
        self.source = self._source(len(params), forward, backward_steps, self.slot[id(loss.data)])
        exec(compile(self.source, "<chainrule trace>", "exec"), self.names)  # our own generated code
        self.run_step = self.names["step"]

    def _variable(self, array):
        self.slot[id(array)] = k = len(self.shapes)
        self.shapes.append(array.shape)
        self.variables.add(k)
        return k

    def _name(self, array):
        """The variable holding ``array``, or a new constant fixed at its recorded value.

        NOTE: arrays are matched by identity, so an op that received a parameter's
        own ``.data`` (``x * w.data``, meant as a constant) is replayed with the
        current values; the eager check then sees the difference and falls back.
        """
        if id(array) not in self.slot:
            self.slot[id(array)] = k = len(self.shapes)
            self.shapes.append(np.shape(array))
            self.names[f"C{k}"] = array
        k = self.slot[id(array)]
        return f"v{k}" if k in self.variables else f"C{k}"

    def _source(self, n, forward, backward_steps, loss):
        lines = [
            "def step(params, x, y):",
            *(f"    v{k} = params[{k}].data" for k in range(n)),
            f"    v{n} = x",
            f"    v{n + 1} = y",
            *forward,
            f"    g{loss} = ones_like(v{loss})",
        ]
        has = {loss}
        for j, node, out, args, edges in reversed(backward_steps):
            if out not in has:
                continue
            for i in edges:
                src = self.slot[id(node.args[i])]
                self.names[f"V{j}_{i}"] = node.op.vjps[i]
                value = f"V{j}_{i}(g{out}, v{out}, {args})"
                probe = node.op.vjps[i](np.ones_like(node.value), node.value, *node.args, **node.kwargs)
                if np.shape(probe) != self.shapes[src]:  # broadcasting stretched this input: sum it back
                    lines.append(f"    r = {value}")
                    lines += ["    " + line for line in unbroadcast_lines("r", np.shape(probe), self.shapes[src])]
                    value = "r"
                lines.append(f"    g{src} = g{src} + {value}" if src in has else f"    g{src} = {value}")
                has.add(src)
        self.graded = [k in has for k in range(n)]  # parameters the loss reaches
        grads = ", ".join(f"g{k}" if k in has else f"zeros_like(v{k})" for k in range(n))
        lines = _freed_early(lines, {f"v{loss}", *(f"g{k}" for k in range(n)), *(f"v{k}" for k in range(n))})
        return "\n".join([*lines, f"    return v{loss}, [{grads}]"]) + "\n"

    def run(self, params: Sequence[Tensor], x: np.ndarray, y: np.ndarray) -> tuple[Any, list[np.ndarray]]:
        """Forward and backward on new parameter values and data: (loss, gradients).

        A loss of more than one element (the random starts' vector of losses) comes back as its
        array, its gradient seeded with ones (the gradient of its sum).

        NOTE: a pass-through VJP can hand one array to two parameters; fit never
        adds into these in place, and gives every ``.grad`` its own copy when it ends.
        """
        loss, grads = self.run_step(params, x, y)
        return loss.item() if loss.ndim == 0 else loss, [
            g if type(g) is np.ndarray and g.dtype == p.data.dtype else np.asarray(g, dtype=p.data.dtype)
            for p, g in zip(params, grads)
        ]


_LOCAL = re.compile(r"\b([vgr]\d*|_s)\b")


def _freed_early(lines, keep):
    """``del`` each local after the line that uses it last (but those in ``keep``): as eager's backward
    lets go of each value once past it, so the replay's peak memory is the eager step's."""
    last = {}
    for i, line in enumerate(lines):
        for name in _LOCAL.findall(line):
            last[name] = i
    after = {}
    for name, i in last.items():
        if name not in keep:
            after.setdefault(i, []).append(name)
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i in after:
            out.append("    del " + ", ".join(sorted(after[i])))
    return out


class CompiledStep:
    """Forward and backward of ``loss_fn(model(x), y)``, replayed per input shape, checked on first use."""

    tapes: dict[tuple, Tape | None]
    replays: dict[tuple, int]

    def __init__(
        self,
        model: Module,
        loss_fn: Callable[..., Tensor],
        params: Sequence[Parameter],
        eager: Callable[..., tuple[Any, list[np.ndarray]]],
    ) -> None:
        self.model, self.loss_fn, self.params, self.eager = model, loss_fn, params, eager
        self.tapes = {}  # shape -> Tape, or None where replay was refused
        self.replays = {}  # shape -> how many steps were replayed

    def __call__(
        self, model: Module, x: Tensor, y: np.ndarray, loss_fn: Callable[..., Tensor], params: Sequence[Parameter]
    ) -> tuple[Any, list[np.ndarray]]:
        """The step for fit's loop (same signature as the eager one; model, loss and params are fixed)."""
        key = (x.shape, y.shape)
        if is_anomaly_enabled():  # anomaly mode checks every op as it runs: only the eager path does
            return self.eager(self.model, x, y, self.loss_fn, self.params)
        if key not in self.tapes:
            return self._record(key, x, y)
        tape = self.tapes[key]
        if tape is None:
            return self.eager(self.model, x, y, self.loss_fn, self.params)
        self.replays[key] = self.replays.get(key, 0) + 1
        if self.replays[key] % RECHECK == 1:  # the first replay, then every RECHECK-th one
            return self._check(key, tape, x, y)
        loss, grads = tape.run(self.params, x.data, y)
        for p, g, graded in zip(self.params, grads, tape.graded):
            p.grad = g if graded else None  # as eager: no gradient where the loss does not reach
        return loss, grads

    def _record(self, key, x, y):
        """An eager step whose graph becomes the tape for this shape."""
        for p in self.params:
            p.grad = None
        out = self.loss_fn(self.model(x), y)
        try:
            self.tapes[key] = Tape(out, self.params, x.data, y) if is_grad_enabled() else None
        except Exception as e:  # noqa: BLE001  (anything the tape cannot hold means: stay eager)
            self._refuse(key, f"the graph could not be recorded ({e})")
        if out.data.ndim == 0:
            out.backward()
            value: Any = out.item()
        else:  # a vector of losses (one a random start): the gradient of their sum
            out.backward(np.ones_like(out.data))
            value = out.data
        return value, [p.grad if p.grad is not None else np.zeros_like(p.data) for p in self.params]

    def _check(self, key, tape, x, y):
        """The first replay of a shape against an eager step on the same data and parameters."""
        replayed = tape.run(self.params, x.data, y)  # reads the parameters, changes nothing
        loss, grads = self.eager(self.model, x, y, self.loss_fn, self.params)
        same = np.allclose(replayed[0], loss, rtol=1e-12, atol=0) and all(
            np.allclose(a, b, rtol=1e-12, atol=1e-300) for a, b in zip(replayed[1], grads)
        )
        if not same:
            self._refuse(
                key,
                "a replayed step differs from the eager one: the model does different work per "
                "batch, or builds constants from its data or parameters outside the graph",
            )
        return loss, grads

    def _refuse(self, key, why):
        self.tapes[key] = None
        warnings.warn(
            f"fit(compile=True): {why}; training eagerly for inputs of shape {key[0]}",
            CompileWarning,
            stacklevel=outside_stacklevel(),
        )
