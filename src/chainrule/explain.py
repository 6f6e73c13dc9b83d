"""Chain-rule explanations: a derivative written out as its chain of local derivatives, with numbers.

:func:`explain` walks the recorded graph from a scalar loss down to one
parameter. Every path from the parameter to the loss is one term of the chain
rule; named nodes (``Predicted``, ``y1``, ...) split a path into factors, each
written with the op registry's derivative formulas and evaluated per data point.
The total is checked against what ``backward`` computes.

Example: the lessons' derivative of the SSR with respect to b3 at b3 = 0::

    >>> import chainrule as cr
    >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
    >>> x, y = cr.data.dosage()
    >>> e = cr.explain(cr.losses.ssr(net(x), y), net.b3)
    >>> print(e.chain)
    dSSR/db3 = sum_i dSSR/dPredicted_i x dPredicted_i/db3
    >>> round(e.total, 2)
    -15.66
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from .ops import REGISTRY, Op, unbroadcast
from .tensor import Graph, Node, Tensor, graph

MAX_PATHS = 6  # paths written out; the rest are added up in one line
MAX_WALKED = 200  # paths computed one by one; beyond, the rest is backward's total minus those
MAX_POINTS = 8  # data points listed; longer tables show the first and last
MAX_LABEL = 40  # longer expressions are replaced by the op's name and a number

# Ops whose Jacobian is diagonal: along them a derivative is one number per element. Every other op
# mixes elements (NOT_ELEMENTWISE); tests/test_rules.py checks that each op of the registry is in one.
ELEMENTWISE: set[Op] = {
    REGISTRY[n]
    for n in (
        "add",
        "sub",
        "mul",
        "div",
        "pow",
        "neg",
        "maximum",
        "minimum",
        "where",
        "exp",
        "log",
        "sqrt",
        "abs",
        "tanh",
        "softplus",
        "sigmoid",
        "relu",
        "clip",
    )
}
NOT_ELEMENTWISE: set[Op] = {
    REGISTRY[n]
    for n in (
        "sum",
        "max",
        "logsumexp",
        "log_softmax",
        "matmul",
        "linear",
        "softmax_cross_entropy",
        "reshape",
        "transpose",
        "getitem",
        "concatenate",
        "stack",
    )
}
# Labels of nodes: arithmetic written infix, every other op plainly as op(operands) (PLAIN).
INFIX: dict[Op, str] = {
    REGISTRY[n]: form
    for n, form in {
        "add": "{a} + {b}",
        "sub": "{a} - {b}",
        "mul": "{a} {b}",
        "div": "{a} / {b}",
        "pow": "{a}^{b}",
        "neg": "-{x}",
    }.items()
}
PLAIN: set[Op] = {
    REGISTRY[n]
    for n in (
        "matmul",
        "maximum",
        "minimum",
        "where",
        "exp",
        "log",
        "sqrt",
        "abs",
        "tanh",
        "softplus",
        "sigmoid",
        "relu",
        "clip",
        "sum",
        "max",
        "logsumexp",
        "log_softmax",
        "linear",
        "softmax_cross_entropy",
        "reshape",
        "transpose",
        "getitem",
        "concatenate",
        "stack",
    )
}


class Factor:
    """One link of a chain: d(upper)/d(lower), its formula and its values per data point (or None)."""

    def __init__(self, upper: str, lower: str, formula: str, values: np.ndarray | None) -> None:
        self.upper, self.lower, self.formula, self.values = upper, lower, formula, values

    @property
    def name(self) -> str:
        return f"d{self.upper}/d{self.lower}"


class Term:
    """One path from the parameter to the loss: its factors, per-point contributions and total."""

    def __init__(self, factors: list[Factor], per_point: np.ndarray | None, total: float, ops: list[str]) -> None:
        self.factors, self.per_point, self.total, self.ops = factors, per_point, total, ops


class Explanation:
    """The chain rule for d(loss)/d(param): ``chain``, ``terms``, ``total`` and ``gradient`` (backward's)."""

    def __init__(
        self,
        loss_label: str,
        param_label: str,
        terms: list[Term],
        hidden: list[Term],
        rest: tuple[int, float] | None,
        gradient: float,
        n_points: int | None,
    ) -> None:
        self.loss_label, self.param_label = loss_label, param_label
        self.terms, self.hidden, self.gradient, self.n_points = terms, hidden, gradient, n_points
        self.rest = rest  # (number, sum) of the paths beyond MAX_WALKED, or None
        walked = sum(t.total for t in terms) + sum(t.total for t in hidden)
        self.total = float(walked + (rest[1] if rest else 0.0))

    @property
    def chain(self) -> str:
        """The symbolic chain rule, one product per path, added (the first MAX_PATHS paths written out)."""
        sums = []
        for term in self.terms:
            product = " x ".join(f.name for f in term.factors)
            sums.append(f"sum_i {product}" if term.per_point is not None else product)
        more = len(self.hidden) + (self.rest[0] if self.rest else 0)
        if more:
            sums.append(f"... ({more} more paths)")
        return f"d{self.loss_label}/d{self.param_label} = " + " + ".join(sums)

    def text(self) -> str:
        return "\n".join(self._lines(markdown=False))

    def markdown(self) -> str:
        return "\n".join(self._lines(markdown=True))

    __str__ = text

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        return f"<Explanation {self.chain.split(' = ')[0]} = {self.total:.6g}>"

    def _lines(self, markdown):
        code = (lambda s: f"`{s}`") if markdown else (lambda s: s)
        out = [("**Chain rule**: " if markdown else "") + code(self.chain), ""]
        many = len(self.terms) + len(self.hidden) > 1
        for k, term in enumerate(self.terms, 1):
            if many:
                out += [f"{'### ' if markdown else ''}Path {k}: via {' -> '.join(term.ops)}", ""]
            out += [("- " if markdown else "  ") + code(f"{f.name} = {f.formula}") for f in term.factors]
            out += ["", *_table(term, markdown), ""]
        if self.hidden or self.rest:
            count = len(self.hidden) + (self.rest[0] if self.rest else 0)
            added = sum(t.total for t in self.hidden) + (self.rest[1] if self.rest else 0.0)
            out += [f"... and {count} more paths, adding {added:.6g}", ""]
        out.append(
            code(f"d{self.loss_label}/d{self.param_label} = {self.total:.6g}")
            + f"   (backward computes {self.gradient:.6g})"
        )
        return out


def _table(term, markdown):
    """Per data point: each factor's value (where it is one number per point), their product; then the sum."""
    if term.per_point is None:
        return [f"path total: {term.total:.6g}"]
    shown = [f for f in term.factors if f.values is not None]
    head = ["i", *(f.name for f in shown), "contribution" if len(shown) < len(term.factors) else "product"]
    n = len(term.per_point)
    half = MAX_POINTS // 2
    rows = []
    for i in range(n) if n <= MAX_POINTS else [*range(half), None, *range(n - half, n)]:
        if i is None:
            rows.append(["..."] + [""] * (len(head) - 1))
        else:
            rows.append([str(i + 1), *(f"{f.values[i]:.6g}" for f in shown), f"{term.per_point[i]:.6g}"])
    rows.append(["sum"] + [""] * len(shown) + [f"{term.total:.6g}"])
    if markdown:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    return ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head, *rows]]


# ---- building an explanation ----------------------------------------------------------------


def explain(loss: Tensor, param: Tensor, index: int | tuple[int, ...] | None = None) -> Explanation:
    """Explain d(loss)/d(param) as the chain rule over the recorded graph, with numbers.

    ``loss`` is a one-element Tensor whose graph is still there (explain before
    ``backward()``, or backward with ``retain_graph=True``). ``param`` is a
    Tensor in that graph; for a tensor with several elements, ``index`` picks
    one (default: the element with the largest derivative). Name intermediate
    tensors (``t.name = "hidden"``) to split the chain at them.

    Returns an :class:`Explanation`: ``print`` it for the terminal, ``.markdown()``
    for notebooks and docs; ``.total`` equals ``.gradient``, the value backward gives.
    """
    g, target = _graph_of(loss, param)
    gradient = _backward_gradient(loss, g, param)
    index = _pick(param, index, gradient)
    labels = _Labels(_n_points(g))
    count, paths = _paths(g, target)
    terms = [_term(path, target, index, labels) for path in itertools.islice(paths, MAX_WALKED)]
    rest = None
    if count > len(terms):  # too many to walk: the rest is what backward found beyond the walked paths
        rest = (count - len(terms), float(gradient[index]) - sum(t.total for t in terms))
    return Explanation(
        labels(g.output),
        labels(target) + _suffix(index),
        terms[:MAX_PATHS],
        terms[MAX_PATHS:],
        rest,
        float(gradient[index]),
        labels.n,
    )


def _graph_of(loss, param):
    """The loss's graph and the parameter's node in it, or the error saying why there is none."""
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise ValueError(f"explain: loss must be a one-element Tensor, got {_describe(loss)}")
    if not isinstance(param, Tensor):
        raise TypeError(f"explain: param must be a Tensor (a Parameter of the model), got {type(param).__name__}")
    if not loss.requires_grad:
        raise ValueError("explain: the loss does not depend on anything that requires grad")
    try:
        g = graph(loss)
    except ValueError as e:
        raise ValueError(
            f"explain: the loss's graph is gone ({e}); call explain before backward(), "
            "or run backward(retain_graph=True)"
        ) from None
    if param not in g or not g.node(param).requires_grad:
        raise ValueError(
            f"explain: {param.name or 'the parameter'} does not affect this loss "
            "(it is not in the loss's graph, or does not require grad)"
        )
    return g, g.node(param)


def _describe(x):
    return f"a Tensor of shape {x.shape}" if isinstance(x, Tensor) else type(x).__name__


def _pick(param, index, gradient):
    if param.ndim == 0:
        return () if index is None else _check_index(param, index)
    if index is None:
        return np.unravel_index(int(np.argmax(np.abs(gradient))), param.shape)
    return _check_index(param, index)


def _check_index(param, index):
    index = tuple(np.atleast_1d(index).tolist())
    if len(index) != param.ndim or any(
        isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n for i, n in zip(index, param.shape)
    ):
        raise ValueError(f"explain: index {index} is not an element of a parameter of shape {param.shape}")
    return index


def _suffix(index):
    return "" if index == () else "[" + ", ".join(map(str, index)) + "]"


def _backward_gradient(loss, g: Graph, param):
    """d(loss)/d(param) from backward itself, leaving every .grad as it was."""
    leaves = [n.tensor for n in g.leaves if n.requires_grad]
    saved = [t.grad for t in leaves]
    for t in leaves:
        t.grad = None
    try:
        loss.backward(retain_graph=True)
        return np.array(param.grad if param.grad is not None else np.zeros_like(param.data))
    finally:
        for t, grad in zip(leaves, saved):
            t.grad = grad


def _paths(g: Graph, target: Node):
    """How many paths lead from the loss down to the parameter, and a generator of them as edge lists."""
    count = {target: 1}
    for n in g:  # inputs before the nodes that use them
        if n.op is not None:
            k = sum(count.get(p, 0) for p in n.inputs if p is not None)
            if k:
                count[n] = k

    def walk():
        stack = [(g.output, [])]
        while stack:
            n, edges = stack.pop()
            if n is target:
                yield edges
                continue
            for i, p in reversed(list(enumerate(n.inputs))):
                if p is not None and p in count:
                    stack.append((p, edges + [(n, i)]))

    return count.get(g.output, 0), walk()


def _term(path, target, index, labels):
    """One path: the factors between named nodes, their values per data point, the contribution."""
    elementwise = all(n.op in ELEMENTWISE for n, _ in path[1:])
    ops = [n.op.name for n, _ in reversed(path)]
    groups, current = [], []
    for n, i in path:
        if current and labels.is_station(n):
            groups.append(current)
            current = []
        current.append((n, i))
    groups.append(current)
    factors = []
    for group in groups:
        upper = labels(group[0][0], sub=True)
        lower_node = group[-1][0].inputs[group[-1][1]]
        lower = labels(lower_node, sub=True) + (_suffix(index) if lower_node is target else "")
        formula = _formula([_local(n, i, labels) for n, i in group])
        factors.append(Factor(upper, lower, formula, None))
    contributions = _contributions(path, target, index, labels.n)
    if elementwise and contributions is not None:
        _fill_values(factors, groups, target, index, labels.n)
    total = float(np.sum(contributions)) if contributions is not None else _path_total(path, index)
    return Term(factors, contributions, total, ops)


def _vjp(n: Node, i, g):
    """The gradient of input ``i`` of node ``n`` for gradient ``g`` at its output (the op's own VJP)."""
    assert n.op is not None
    return n.op.vjps[i](g, n.value, *n.args, **n.kwargs)


def _fill_values(factors, groups, target, index, n):
    """Values of each factor per data point: the diagonal of its (elementwise) Jacobian."""
    for factor, group in zip(factors, groups):
        d = np.ones(())
        for node, i in group:
            local = _vjp(node, i, np.ones_like(node.value))
            d = d * local if d.ndim or local.ndim else d * local
            d = _to_points(d, n)
            if d is None:
                return
        parent = group[-1][0].inputs[group[-1][1]]
        if parent is target and target.value.ndim and d.ndim > 1:
            d = d[(slice(None),) + index[-(d.ndim - 1) :]] if d.ndim - 1 <= len(index) else None
            if d is None:
                return
        factor.values = np.broadcast_to(d, (n,)) if d.ndim <= 1 else None


def _to_points(d, n):
    """An array with the data points along axis 0, flattened to (n,) where it is one value per point."""
    if d.ndim == 0 or n is None:
        return d
    if d.shape[0] == n and d.size == n:
        return d.reshape(n)
    return d if d.shape[0] == n else None


def _contributions(path, target, index, n):
    """Each data point's share of this path's derivative (None when the path has no data axis)."""
    if n is None:
        return None
    g = _adjoint(path[:-1])
    node, i = path[-1]
    if node.value.ndim == 0 or node.value.shape[0] != n or (g.ndim and g.shape[0] not in (1, n)):
        return None
    g = np.broadcast_to(g, node.value.shape)
    out = np.empty(n)
    for k in range(n):
        masked = np.zeros_like(g)
        masked[k] = g[k]
        out[k] = unbroadcast(_vjp(node, i, masked), target.value.shape)[index]
    return out


def _adjoint(edges):
    """d(loss)/d(node) along these edges only, starting from 1 at the loss."""
    g = np.ones(())
    for n, i in edges:
        g = unbroadcast(_vjp(n, i, np.broadcast_to(g, n.value.shape)), n.inputs[i].value.shape)
    return g


def _path_total(path, index):
    return float(_adjoint(path)[index])


# ---- formulas -----------------------------------------------------------------------------------


def _local(n: Node, i, labels):
    """The registry's derivative formula of ``n``'s op with respect to input ``i``, names filled in."""
    op = n.op
    assert op is not None
    text = op.derivs[i] if op.derivs[i] else "?"
    text = text.split(" = ")[1] if " = " in text else text  # the first form: e^x / (1 + e^x) = sigmoid(x)
    names = _arg_names(op)
    values = [labels.operand(n, k) for k in range(len(n.args))]
    for name, value in zip(names, values):
        text = re.sub(rf"\b{name}\b", value.replace("\\", r"\\"), text)
    return _simplify(text)


def _arg_names(op):
    inside = op.formula.split("(", 1)[1].split(")", 1)[0]
    return [a.strip() for a in inside.split(",")]


def _simplify(text):
    """Fold the arithmetic a substituted formula leaves behind: 2 - 1, ^1, 1 x ..."""
    text = re.sub(r"\((-?\d+(?:\.\d+)?) - 1\)", lambda m: _num(float(m.group(1)) - 1), text)
    text = re.sub(r"\^1\b(?!\.)", "", text)
    return text


def _num(v):
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _formula(parts):
    """Multiply local derivatives: numbers fold into one coefficient, the rest stays as text."""
    coef, rest = 1.0, []
    for p in parts:
        m = re.fullmatch(r"(-?\d+(?:\.\d+)?)(?: \* (.+))?", p)
        if m:
            coef *= float(m.group(1))
            if m.group(2):
                rest.append(m.group(2))
        else:
            rest.append(p)
    body = " x ".join(rest)
    if not body:
        return _num(coef)
    return body if coef == 1 else ("-" + body if coef == -1 else f"{_num(coef)} {body}")


class _Labels:
    """Readable names: a node's own name, else an expression of its inputs, else op#k."""

    def __init__(self, n):
        self.n = n
        self.cache = {}
        self.count = {}

    def is_station(self, n: Node) -> bool:
        return bool(n.name)

    def __call__(self, n: Node, sub=False):
        key = (n, sub)
        if key not in self.cache:
            self.cache[key] = self._make(n, sub)
        return self.cache[key]

    def _make(self, n, sub):
        i = "_i" if sub and self._per_point(n.value) else ""
        if n.name:
            return n.name + i
        if n.op is None:
            return "param" if n.requires_grad else _value(n.value) or self._numbered("c")
        parts = [self.operand(n, k) for k in range(len(n.args))]
        names = _arg_names(n.op)
        if n.op in INFIX and len(parts) == len(names):
            text = INFIX[n.op].format(**dict(zip(names, parts)))
        else:  # PLAIN
            text = f"{n.op.name}({', '.join(parts)})"
        return f"({text})" if len(text) <= MAX_LABEL else self._numbered(n.op.name)

    def operand(self, n: Node, k):
        p = n.inputs[k] if n.inputs else None
        if p is not None:
            return self(p, sub=True)
        return _value(n.args[k]) or self._numbered("c")

    def _per_point(self, a):
        return self.n is not None and np.ndim(a) >= 1 and np.shape(a)[0] == self.n

    def _numbered(self, prefix):
        self.count[prefix] = self.count.get(prefix, 0) + 1
        return f"{prefix}#{self.count[prefix]}"


def _value(a):
    """A short constant written as a number ('2'), or None."""
    a = np.asarray(a)
    return _num(float(a)) if a.size == 1 and a.dtype.kind in "iuf" else None


def _n_points(g: Graph):
    """The number of data points: the most common leading size of the constant (data) inputs."""
    sizes = [
        np.shape(a)[0]
        for n in g
        if n.op is not None
        for a, p in zip(n.args, n.inputs)
        if (p is None or not p.requires_grad) and np.ndim(a) >= 1
    ]
    return max(set(sizes), key=sizes.count) if sizes else None
