"""Tiny graphs as plain Python arithmetic: the lessons' network trained without NumPy calls.

A NumPy call costs about half a microsecond however small its arrays; a Python
float operation costs a few tens of nanoseconds. For a network the size of the
lessons' (7 parameters, 3 data points) the whole training step is a few hundred
float operations, so ``fit(..., compile=True)`` writes it out element by element
as Python source: forward, backward and the optimizer's update, inside the loop
over iterations, recording the History as it goes.

It applies to full-batch float64 training of graphs of at most ``MAX_OPERATIONS``
float operations a step (beyond that, NumPy's calls on whole arrays are the
faster), built from the ops in ``FORWARD`` (elementwise
arithmetic and functions, sums, linear layers, reshapes and transposes), with
:class:`~chainrule.optim.GradientDescent`, :class:`~chainrule.optim.Momentum`
or :class:`~chainrule.optim.Adam`. Anything else trains through the NumPy
replay of :mod:`chainrule.trace`.

The numbers agree with the eager engine to rounding (long sums and matrix
products are added in another order; not promised bit for bit): every 100
iterations an eager step is taken beside the written-out one, which must match
it to 1e-9 (relative), else training goes on with
the NumPy replay and a :class:`~chainrule.trace.CompileWarning`. A math error
(an overflow, a log of 0) hands the iteration to the NumPy path, which reports
it as the eager engine does.

Example: the lessons' network, every parameter, compiled::

    >>> import chainrule as cr
    >>> x, y = cr.data.dosage()
    >>> net = cr.nn.DosageNetwork.random(seed=3)
    >>> from chainrule.scalar import program_source
    >>> "exp(" in program_source(net, x, y)     # softplus, written out per data point
    True
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import training_arrays
from .losses import get_loss
from .ops import REGISTRY, Op
from .optim import Adam, GradientDescent, Momentum, Optimizer
from .tensor import Node, Tensor, graph, tensor_from

if TYPE_CHECKING:
    from .nn import Module

# The largest array (in elements) and the longest step (in float operations) that are written out.
# (The operation count is the real limit; the element cap only stops a huge array early.)
# NOTE: about 2000 operations (40-100 us a step) is where replaying NumPy calls starts to win.
MAX_ELEMENTS = 1024
MAX_OPERATIONS = 2000
_OPERATION = re.compile(r" [-+*/] |\(")


class Unsupported(Exception):
    """This graph, optimizer or data cannot be written out as scalar code (the reason is the message)."""


# ---- one element of each op ----------------------------------------------------------------
# Operands are always names or float literals (atoms), so no template needs parentheses around them.
# The formulas are the registry's (chainrule.ops), operation for operation; the tables are keyed by the
# registry's Op (tests/test_rules.py evaluates every template against the op's NumPy forward and VJPs).


def _softplus(z):
    # log(1 + e^z) as NumPy's logaddexp(0, z) computes it: no overflow either way
    return f"({z} + log1p(exp(-{z})) if {z} > 0 else log1p(exp({z})))"


FORWARD: dict[Op, Any] = {
    REGISTRY[name]: rule
    for name, rule in {
        "add": lambda a, b: f"{a} + {b}",
        "sub": lambda a, b: f"{a} - {b}",
        "mul": lambda a, b: f"{a} * {b}",
        "div": lambda a, b: f"{a} / {b}",
        "pow": lambda a, b: f"{a} * {a}" if b == "2.0" else f"pow({a}, {b})",  # NumPy squares by multiplying
        "neg": lambda a: f"-{a}",
        "exp": lambda a: f"exp({a})",
        "log": lambda a: f"log({a})",
        "sqrt": lambda a: f"sqrt({a})",
        "abs": lambda a: f"abs({a})",
        "tanh": lambda a: f"tanh({a})",
        "softplus": _softplus,
        "sigmoid": lambda a: f"exp(-{_softplus('(-' + a + ')')})",
        "relu": lambda a: f"({a} if not {a} <= 0 else 0.0)",  # NaN stays NaN, as in NumPy's maximum
    }.items()
}

# VJP of one output element (gradient g, value o) for each input element.
BACKWARD: dict[Op, Any] = {
    REGISTRY[name]: rules
    for name, rules in {
        "add": (lambda g, o, a, b: g, lambda g, o, a, b: g),
        "sub": (lambda g, o, a, b: g, lambda g, o, a, b: f"-{g}"),
        "mul": (lambda g, o, a, b: f"{g} * {b}", lambda g, o, a, b: f"{g} * {a}"),
        "div": (lambda g, o, a, b: f"{g} / {b}", lambda g, o, a, b: f"-{g} * {o} / {b}"),
        "pow": (
            lambda g, o, a, b: f"{g} * {b} * pow({a}, {b} - 1)",
            lambda g, o, a, b: f"{g} * {o} * log({a} if {a} != 0 else 1.0)",
        ),
        "neg": (lambda g, o, a: f"-{g}",),
        "exp": (lambda g, o, a: f"{g} * {o}",),
        "log": (lambda g, o, a: f"{g} / {a}",),
        "sqrt": (lambda g, o, a: f"{g} / (2 * {o})",),
        "abs": (lambda g, o, a: f"{g} * (1.0 if {a} > 0 else -1.0 if {a} < 0 else 0.0 if {a} == 0 else nan)",),
        "tanh": (lambda g, o, a: f"{g} * (1 - {o} * {o})",),
        "softplus": (lambda g, o, a: f"{g} * exp({a} - {o})",),
        "sigmoid": (lambda g, o, a: f"{g} * {o} * (1 - {o})",),
        "relu": (lambda g, o, a: f"{g} * (1.0 if {o} > 0 else 0.0 if {o} == 0 else nan)",),  # g sign(relu(a))
    }.items()
}

# Ops that only move elements: replayed on an array of indices, they say where each output element comes from.
STRUCTURAL = {REGISTRY["reshape"], REGISTRY["transpose"]}
SUMS = {REGISTRY["sum"]}
_LINEAR = REGISTRY["linear"]
MATRIX = {_LINEAR, REGISTRY["matmul"]}
# Ops that are not written out (a graph using one trains through the NumPy replay instead): each op in the
# registry is in exactly one of FORWARD (with BACKWARD), STRUCTURAL, SUMS, MATRIX or DECLINED.
DECLINED = {
    REGISTRY[name]
    for name in (
        "maximum",
        "minimum",
        "where",
        "clip",
        "max",
        "logsumexp",
        "log_softmax",
        "softmax_cross_entropy",
        "getitem",
        "concatenate",
        "stack",
    )
}
NAMESPACE = {
    "exp": math.exp,
    "log": math.log,
    "log1p": math.log1p,
    "sqrt": math.sqrt,
    "tanh": math.tanh,
    "pow": math.pow,
    "inf": math.inf,
    "nan": math.nan,
}


def _literal(v):
    v = float(v)
    return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))


class _Writer:
    """Lines of the step, each a new local name."""

    def __init__(self):
        self.lines, self.count, self.operations = [], 0, 0

    def let(self, expr, prefix="t"):
        self.count += 1
        self.operations += len(_OPERATION.findall(expr)) + 1
        if self.operations > MAX_OPERATIONS:
            raise Unsupported(f"the step takes more than {MAX_OPERATIONS} float operations")
        name = f"{prefix}{self.count}"
        self.lines.append(f"{name} = {expr}")
        return name


class Step:
    """Forward and backward of one recorded graph, as scalar source lines.

    ``params[k]`` holds the element names of parameter k (an object array of its
    shape); ``loss`` is the loss's name; ``grads[k]`` the names (or "0.0") of
    parameter k's gradient, flat in C order; ``lines`` the source.
    """

    def __init__(self, loss: Tensor, params: Sequence[Tensor], x: np.ndarray, y: np.ndarray) -> None:
        if loss.data.size != 1:
            raise Unsupported("the loss is not a single number")
        for a in [p.data for p in params] + [x, y]:
            if a.dtype != np.float64:
                raise Unsupported(f"float64 only (got {a.dtype})")
            if a.size > MAX_ELEMENTS:
                raise Unsupported(f"an array has {a.size} elements (at most {MAX_ELEMENTS} are written out)")
        self.w = _Writer()
        self.values = {}  # id(array) -> object array of element names
        self.params = [self._inputs(p.data, f"p{k}_") for k, p in enumerate(params)]
        self.x, self.y = self._inputs(x, "x_"), self._inputs(y, "y_")
        nodes = [n for n in graph(loss) if n.op is not None]
        for n in nodes:
            self.values[id(n.value)] = self._forward(n)
        self.loss = self.values[id(loss.data)].flat[0]
        self.grads = self._backward(nodes, loss, params)
        self.lines = self.w.lines

    def _inputs(self, array, prefix):
        names = np.array([f"{prefix}{i}" for i in range(array.size)], dtype=object).reshape(array.shape)
        self.values[id(array)] = names
        return names

    def _names(self, a):
        """Element names of an op's argument: a variable's, or literals of a constant."""
        if id(a) in self.values:
            return self.values[id(a)]
        a = np.asarray(a)
        if a.dtype.kind not in "fiub" or a.size > MAX_ELEMENTS:
            raise Unsupported(f"a constant of dtype {a.dtype} and shape {a.shape}")
        names = np.array([_literal(v) for v in a.ravel()], dtype=object).reshape(a.shape)
        self.values[id(a)] = names
        return names

    def _forward(self, n: Node):
        op, args = n.op, [self._names(a) for a in n.args]
        assert op is not None
        if op in FORWARD:
            rule = FORWARD[op]
            out = np.empty(n.value.shape, dtype=object)
            for j, operands in enumerate(zip(*(np.broadcast_to(a, out.shape).flat for a in args))):
                out.flat[j] = self.w.let(rule(*operands))
            return out
        if op in STRUCTURAL:
            return op.fwd(args[0], **n.kwargs)
        if op in SUMS:
            return self._sum(n, args[0])
        if op in MATRIX:
            return self._matrix(n, args)
        raise Unsupported(f"op '{op.name}' is not written out")

    def _sum(self, n, a):
        out = np.empty(n.value.shape, dtype=object)
        for j, group in enumerate(self._groups(n, a.shape)):
            terms = [a.flat[i] for i in group]
            out.flat[j] = self.w.let(_added(terms)) if terms else "0.0"
        return out

    @staticmethod
    def _groups(n, shape):
        """For each output element of a sum, the flat indices of the input elements it adds."""
        index = np.arange(int(np.prod(shape))).reshape(shape)
        axis = n.kwargs.get("axis")  # (keepdims only adds axes of 1: the same flat order of outputs)
        axes = (
            tuple(range(len(shape)))
            if axis is None
            else tuple(a % len(shape) for a in ((axis,) if np.ndim(axis) == 0 else axis))
        )
        moved = np.moveaxis(index, axes, tuple(range(len(shape) - len(axes), len(shape))))
        return moved.reshape(-1, int(np.prod([shape[a] for a in axes], dtype=int)))

    def _matrix(self, n, args):
        a, w = args[0], args[1]
        if a.ndim != 2 or w.ndim != 2:
            raise Unsupported(f"'{n.op.name}' of {a.ndim}-D by {w.ndim}-D arrays")
        wt = w.T if n.op is _LINEAR else w  # linear: x @ w^T + b
        bias = None
        if n.op is _LINEAR:
            bias = np.broadcast_to(args[2], n.value.shape)
        out = np.empty(n.value.shape, dtype=object)
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                terms = " + ".join(f"{a[i, k]} * {wt[k, j]}" for k in range(a.shape[1]))
                out[i, j] = self.w.let(terms if bias is None else f"{terms} + {bias[i, j]}")
        return out

    # ---- backward: contributions per input element, added up once all are in -----------------

    def _backward(self, nodes, loss, params):
        wanted = {id(p.data) for p in params}
        for n in nodes:  # which arrays lead to a parameter
            if any(id(a) in wanted for a in n.args):
                wanted.add(id(n.value))
        parts = {id(loss.data): [["1.0"]]}  # id(array) -> per flat element, list of contributions
        for n in reversed(nodes):
            if id(n.value) not in parts:
                continue
            g = self._total(parts.pop(id(n.value)), n.value.shape)
            for i, a in enumerate(n.args):
                if id(a) in wanted:
                    into = parts.setdefault(id(a), [[] for _ in range(np.size(a))])
                    self._vjp(n, i, g, into)
        out = []
        for p in params:
            total = parts.get(id(p.data))
            out.append(self._total(total, p.shape).ravel().tolist() if total else ["0.0"] * p.size)
        return out

    def _total(self, contributions, shape):
        names = np.empty(len(contributions), dtype=object)
        for j, terms in enumerate(contributions):
            names[j] = (
                None
                if not terms
                else terms[0]
                if len(terms) == 1 and _atom(terms[0])
                else self.w.let(_added(terms), "g")
            )
        return names.reshape(shape)

    def _vjp(self, n, i, g, into):
        op, args = n.op, [self._names(a) for a in n.args]
        out = self.values[id(n.value)]
        source = np.arange(np.size(n.args[i])).reshape(np.shape(n.args[i]))
        if op in BACKWARD:
            rule = BACKWARD[op][i]
            spread = [np.broadcast_to(a, out.shape) for a in args]
            where = np.broadcast_to(source, out.shape)
            for j in range(out.size):
                if g.flat[j] is not None:
                    into[where.flat[j]].append(rule(g.flat[j], out.flat[j], *(a.flat[j] for a in spread)))
        elif op in STRUCTURAL:
            where = op.fwd(source, **n.kwargs)
            for j in range(out.size):
                if g.flat[j] is not None:
                    into[where.flat[j]].append(g.flat[j])
        elif op in SUMS:
            for j, group in enumerate(self._groups(n, source.shape)):
                if g.flat[j] is not None:
                    for k in group:
                        into[k].append(g.flat[j])
        else:  # linear, matmul
            self._matrix_vjp(n, i, g, args, into)

    @staticmethod
    def _matrix_vjp(node, i, g, args, into):
        a, w = args[0], args[1]
        linear = node.op is _LINEAR
        n, m = g.shape
        for r in range(n):
            for c in range(m):
                gc = g[r, c]
                if gc is None:
                    continue
                if i == 0:  # d/da[r, k] += g[r, c] w^T[k, c]
                    for k in range(a.shape[1]):
                        into[r * a.shape[1] + k].append(f"{gc} * {w[c, k] if linear else w[k, c]}")
                elif i == 1:  # linear: d/dw[c, k] += g[r, c] a[r, k]; matmul: d/dw[k, c] += a[r, k] g[r, c]
                    for k in range(a.shape[1]):
                        into[(c * a.shape[1] + k) if linear else (k * m + c)].append(f"{gc} * {a[r, k]}")
                else:  # the bias, broadcast over rows
                    b = np.broadcast_to(np.arange(np.size(node.args[2])).reshape(np.shape(node.args[2])), g.shape)
                    into[b[r, c]].append(gc)


def _added(terms):
    """A sum, left to right (NumPy's order for fewer than 8 terms; longer sums may differ by rounding)."""
    return " + ".join(terms)


def _atom(expr):
    return expr.replace("_", "").replace(".", "").isalnum() or _is_number(expr)


def _is_number(expr):
    try:
        float(expr)
    except ValueError:
        return False
    return True


# ---- the loop: step, optimizer update, History records -------------------------------------------


def _update_rules(optimizer, P, G):
    """(state names, lines computing the steps s{e} and new state, state assignments) per element.

    The hyperparameters are the program's arguments (``hyperparameters``), read again on every call:
    a callback may change them between iterations.
    """
    kind = type(optimizer)
    steps = [f"s{e}" for e in range(len(P))]
    if kind is GradientDescent:
        return [], [f"{s} = {g} * lr" for s, g in zip(steps, G)], []
    if kind is Momentum:
        v = [f"velocity{e}" for e in range(len(P))]
        lines = [f"u{e} = (mom * {v[e]} + {g} if t else {g})" for e, g in enumerate(G)]
        lines += [
            f"{s} = lr * ({g} + mom * u{e})" if optimizer.nesterov else f"{s} = lr * u{e}"
            for e, (s, g) in enumerate(zip(steps, G))
        ]
        return v, lines, [f"{v[e]} = u{e}" for e in range(len(P))]
    if kind is Adam:
        m, v = [f"m{e}" for e in range(len(P))], [f"v{e}" for e in range(len(P))]
        shift = "shift = eps" if optimizer.eps_hat else "shift = eps * root"  # (see Adam's eps_hat)
        lines = ["root = sqrt(1 - b2 ** (t + 1))", "scale = lr * root / (1 - b1 ** (t + 1))", shift]
        for e, g in enumerate(G):
            lines += [
                f"m_{e} = {m[e]} * b1 + {g} * c1",
                f"v_{e} = {v[e]} * b2 + {g} * {g} * c2",
                f"s{e} = m_{e} / (sqrt(v_{e}) + shift) * scale",
            ]
        return m + v, lines, [f"{m[e]} = m_{e}; {v[e]} = v_{e}" for e in range(len(P))]
    raise Unsupported(f"optimizer {kind.__name__} (GradientDescent, Momentum and Adam are written out)")


HYPERPARAMETERS = "lr, mom, b1, b2, c1, c2, eps"


def hyperparameters(optimizer: Optimizer) -> tuple[float, ...]:
    """The optimizer's numbers as the program reads them (unused ones are 0)."""
    b1, b2 = getattr(optimizer, "betas", (0.0, 0.0))
    return (optimizer.lr, getattr(optimizer, "momentum", 0.0), b1, b2, 1 - b1, 1 - b2, getattr(optimizer, "eps", 0.0))


def _tuple(names):
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


class Program:
    """``run(n, P, X, Y, S, t, H, L, V, D, Z)``: up to n iterations from parameter values P and optimizer
    state S after t steps, with hyperparameters H (see :func:`hyperparameters`); appends each
    iteration's loss to L and its old values, gradients and steps (tuples, parameters flat in
    order) to V, D, Z. Returns (iterations done, why it stopped,
    values, state, t, extra): why is "ran", "converged", "diverged" (extra: that iteration's loss,
    gradients and steps; nothing applied) or "error" (a math error; nothing of that iteration applied).
    """

    def __init__(self, step: Step, optimizer: Optimizer, tol: float) -> None:
        P = [n for names in step.params for n in names.ravel()]
        G = [g for grads in step.grads for g in grads]
        state, update, assign = _update_rules(optimizer, P, G)
        steps = [f"s{e}" for e in range(len(P))]
        given = ["x_" + str(i) for i in range(step.x.size)], ["y_" + str(i) for i in range(step.y.size)]
        back = f"{_tuple(P)}, {_tuple(state)}, t"
        body = [*step.lines, *update]
        src = [
            "def run(n, P, X, Y, S, t, H, L, V, D, Z):",
            f"    {_tuple(P)} = P",
            f"    {HYPERPARAMETERS} = H",
            *(f"    {_tuple(g)} = {a}" for g, a in zip(given, "XY") if g),
            *([f"    {_tuple(state)} = S"] if state else []),
            "    for it in range(n):",
            "        try:",
            *("            " + line for line in body),
            "        except (ArithmeticError, ValueError):",
            f"            return it, 'error', {back}, None",
            # x - x is 0 for a finite x and NaN for NaN or inf: no sum of large finite steps overflows
            f"        check = {' + '.join(f'({v} - {v})' for v in [step.loss, *steps])}",
            "        if check != 0.0:",
            f"            return it, 'diverged', {back}, ({step.loss}, {_tuple(G)}, {_tuple(steps)})",
            f"        L.append({step.loss}); V.append({_tuple(P)}); D.append({_tuple(G)}); Z.append({_tuple(steps)})",
            *(f"        {p} = {p} - {s}" for p, s in zip(P, steps)),
            *("        " + a for a in assign),
            "        t = t + 1",
        ]
        if tol > 0:
            largest = f"max({', '.join(f'abs({s})' for s in steps)})" if len(steps) > 1 else f"abs({steps[0]})"
            src += [f"        if {largest} < {_literal(tol)}:", f"            return it + 1, 'converged', {back}, None"]
        src.append(f"    return n, 'ran', {back}, None")
        self.source = "\n".join(src) + "\n"
        namespace: dict[str, Any] = dict(NAMESPACE)
        exec(compile(self.source, "<chainrule scalar step>", "exec"), namespace)  # our own generated code
        self.run = namespace["run"]
        self.n_state = len(state) // max(len(P), 1)
        self.graded = [any(g != "0.0" for g in grads) for grads in step.grads]  # reached by the loss


def program_source(
    model: Module,
    x: Any,
    y: Any,
    loss: str | Callable[..., Tensor] = "ssr",
    optimizer: Optimizer | None = None,
    tol: float = 0.001,
) -> str:
    """The Python source ``fit(model, x, y, compile=True)`` runs for a tiny float64 model (for reading)."""
    params = list(model.parameters())
    x, y = training_arrays(x, y, params[0].dtype, False)
    out = get_loss(loss)(model(tensor_from(x)), y)
    optimizer = optimizer or GradientDescent(lr=0.1)
    return Program(Step(out, params, x, y), optimizer, tol).source


# How often (in iterations) the written-out path is checked against an eager step, and how many
# iterations one call of the program runs when nobody asks to see each one (the gradient monitor
# looks at a block's iterations when it ends).
RECHECK = 100
BLOCK = 100
