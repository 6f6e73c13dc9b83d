"""Random compositions of ops against HIPS autograd: the same graph built twice, same values and gradients.

A seeded generator writes a small program (a list of steps, each making one node from
earlier ones), choosing ops whose inputs fit: broadcasting binary ops, batched and 1-D
matmul, reductions over random axes, softmax, reshape, transpose, indexing with
slices and repeated integer arrays, concatenate, stack, where, clip. The program runs
once with chainrule and once with ``autograd.numpy`` (an independent implementation);
the loss is sum_k sum(w_k * node_k) over every node, so every step is checked.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp as ag_logsumexp

import chainrule as cr

SEEDS = range(150)
STEPS = 8

# ---- the two implementations of every step -------------------------------------------------


def _ag_where(a, b, cond):
    # autograd's where does not undo broadcasting in its gradient (nor does its broadcast_to for
    # added leading axes): broadcast by adding zeros, whose gradient autograd does undo
    zeros = np.zeros(np.broadcast_shapes(np.shape(cond), np.shape(a), np.shape(b)))
    return anp.where(cond, a + zeros, b + zeros)


def _pos_axes(fn, extra=0):
    """fn with its axis/axes made non-negative: autograd's VJPs of transpose (and others) go wrong
    with negative ones. Only the reference is normalized; chainrule gets the negative axes."""

    def wrapped(*xs, axis=None, axes=None, **kw):
        ndim = np.ndim(xs[0]) + extra
        if axis is not None:
            kw["axis"] = tuple(a % ndim for a in axis) if isinstance(axis, tuple) else axis % ndim
        elif axes is not None:
            kw["axes"] = tuple(a % ndim for a in axes)
        return fn(*xs, **kw)

    return wrapped


def _ag_softmax(x, axis):
    return anp.exp(x - ag_logsumexp(x, axis=axis, keepdims=True))


BINARY_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}

# name -> (chainrule version, autograd version); every function takes nodes, then keyword params
IMPLEMENTATIONS = {
    "neg": (lambda x: -x, lambda x: -x),
    "exp": (cr.exp, anp.exp),
    "log": (cr.log, anp.log),
    "sqrt": (cr.sqrt, anp.sqrt),
    "abs": (cr.abs, anp.abs),
    "tanh": (cr.tanh, anp.tanh),
    "sigmoid": (cr.sigmoid, lambda x: 0.5 * (anp.tanh(x / 2) + 1)),
    "softplus": (cr.softplus, lambda x: anp.logaddexp(0.0, x)),
    "relu": (cr.relu, lambda x: anp.where(x > 0, x, 0.0)),  # relu'(0) = 0 on both sides
    "clip": (lambda x, lo, hi: cr.clip(x, lo, hi), lambda x, lo, hi: anp.clip(x, lo, hi)),
    "binary": (lambda a, b, op: BINARY_OPS[op](a, b), lambda a, b, op: BINARY_OPS[op](a, b)),
    # a Python number or an ndarray on either side of an operator
    "const": (
        lambda x, op, c, left: BINARY_OPS[op](c, x) if left else BINARY_OPS[op](x, c),
        lambda x, op, c, left: BINARY_OPS[op](c, x) if left else BINARY_OPS[op](x, c),
    ),
    "maximum": (cr.maximum, anp.maximum),
    "minimum": (cr.minimum, anp.minimum),
    "where": (lambda a, b, cond: cr.where(cond, a, b), _ag_where),
    "matmul": (lambda a, b: a @ b, lambda a, b: anp.matmul(a, b)),
    "sum": (cr.sum, _pos_axes(anp.sum)),
    "mean": (cr.mean, _pos_axes(anp.mean)),
    "max": (cr.max, _pos_axes(anp.max)),
    "logsumexp": (cr.logsumexp, _pos_axes(ag_logsumexp)),
    "softmax": (cr.softmax, _pos_axes(_ag_softmax)),
    "log_softmax": (cr.log_softmax, _pos_axes(lambda x, axis: x - ag_logsumexp(x, axis=axis, keepdims=True))),
    "reshape": (cr.reshape, anp.reshape),
    "transpose": (cr.transpose, _pos_axes(lambda x, axes=None: anp.transpose(x, axes))),
    "getitem": (lambda x, index: x[index], lambda x, index: x[index]),
    "concatenate": (
        lambda *xs, axis: cr.concatenate(xs, axis=axis),
        _pos_axes(lambda *xs, axis: anp.concatenate(xs, axis=axis)),
    ),
    "stack": (
        lambda *xs, axis: cr.stack(xs, axis=axis),
        _pos_axes(lambda *xs, axis: anp.stack(xs, axis=axis), extra=1),
    ),
}


def run(program, inputs, side):
    """The nodes of ``program``; side 0 is chainrule (inputs are tensors), 1 is autograd."""
    nodes, fresh = [], iter(inputs)
    for name, args, params in program:
        if name == "input":
            nodes.append(next(fresh))
        else:
            nodes.append(IMPLEMENTATIONS[name][side](*(nodes[i] for i in args), **params))
    return nodes


# ---- the generator ---------------------------------------------------------------------------


class Program:
    """A program under construction: steps, the value of every node (via autograd.numpy on arrays)."""

    def __init__(self, rng):
        self.rng, self.steps, self.values, self.inputs = rng, [], [], []

    def input(self, shape):
        value = self.rng.normal(size=shape)
        self.steps.append(("input", (), {}))
        self.values.append(value)
        self.inputs.append(value)
        return len(self.values) - 1

    def add(self, name, args, **params):
        """Append a step if its value is finite and moderate; return its node or None."""
        with np.errstate(all="ignore"):
            value = np.asarray(IMPLEMENTATIONS[name][1](*(self.values[i] for i in args), **params))
        if not np.all(np.isfinite(value)) or np.abs(value).max(initial=0) > 50:
            return None
        self.steps.append((name, tuple(args), params))
        self.values.append(value)
        return len(self.values) - 1

    def pick(self):
        """A node, the recent ones more likely, so that chains grow deep."""
        n = len(self.values)
        return int(n - 1 - min(self.rng.geometric(0.4) - 1, n - 1))

    def shape(self, i):
        return self.values[i].shape

    def positive(self, i):
        """A node with values > 0.1 made from node i (itself, or softplus(i) + 0.1)."""
        if self.values[i].min(initial=1) > 0.1:
            return i
        j = self.add("softplus", [i])
        return None if j is None else self.add("const", [j], op="add", c=0.1, left=bool(self.rng.integers(2)))

    def partner(self, i):
        """A node whose shape broadcasts with node i's: an existing one, or a fresh input."""
        fits = [j for j in range(len(self.values)) if _broadcasts(self.shape(i), self.shape(j))]
        if fits and self.rng.random() < 0.6:
            return int(self.rng.choice(fits))
        return self.input(_broadcastable_shape(self.rng, self.shape(i)))


def _broadcasts(a, b):
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _broadcastable_shape(rng, shape):
    """A shape that broadcasts with ``shape``: one leading axis added or some dropped, some sides set to 1."""
    if rng.random() < 0.2:
        shape = (int(rng.integers(1, 3)),) + tuple(shape)
    else:
        shape = shape[rng.integers(len(shape) + 1) :]
    return tuple(1 if rng.random() < 0.3 else n for n in shape)


def _axis(rng, ndim):
    """None, an int (maybe negative) or a non-empty tuple of axes."""
    kind = rng.integers(3) if ndim else 0
    if kind == 0:
        return None
    if kind == 1:
        return int(rng.integers(-ndim, ndim))
    k = int(rng.integers(1, ndim + 1))
    return tuple(int(a) for a in rng.choice(ndim, size=k, replace=False))


def _index(rng, shape):
    """A random index: slices (negative steps too), integer arrays with repeats, ints, None, Ellipsis."""
    n = shape[0]
    kind = rng.integers(6 if len(shape) >= 2 else 4)
    if kind == 0:
        step = int(rng.choice([1, 2, -1, -2]))
        start = int(rng.integers(-n, n))
        return slice(start, None, step)  # never empty: starts on an element
    if kind == 1:
        return rng.integers(-n, n, size=int(rng.integers(1, 5)))  # repeats likely
    if kind == 2:
        return int(rng.integers(-n, n))
    if kind == 3:
        return (Ellipsis, None) if len(shape) == 1 else (None, Ellipsis, int(rng.integers(shape[-1])))
    if kind == 4:
        return (slice(None), rng.integers(0, shape[1], size=3))
    rows = rng.integers(0, n, size=4)
    return (rows, rng.integers(0, shape[1], size=4))


def _new_shape(rng, shape):
    """A random shape of the same size: flattened, split in two, or with a size-1 axis added."""
    size = int(np.prod(shape))
    kind = rng.integers(3)
    if kind == 0:
        return (-1,)
    if kind == 1:
        d = int(rng.choice([d for d in range(1, size + 1) if size % d == 0]))
        return (d, -1)
    return (1,) + tuple(shape)


def _matmul_operand(rng, shape, right):
    """A shape that can multiply ``shape`` from the right (or left), 1-D and batched ones included."""
    n = int(rng.integers(1, 4))
    batch = _broadcastable_shape(rng, shape[:-2]) if len(shape) > 2 else (2,) * int(rng.integers(1, 3))
    inner = shape[-1] if right else shape[-2] if len(shape) >= 2 else shape[0]
    options = [(inner,), (inner, n) if right else (n, inner), batch + ((inner, n) if right else (n, inner))]
    return options[rng.integers(len(options))]


def _step(p):
    """Add one random step to program p (or nothing, if the random choice does not fit)."""
    rng, i = p.rng, p.pick()
    x, shape = p.values[i], p.shape(i)
    kind = rng.choice(
        [
            "unary",
            "positive",
            "clip",
            "binary",
            "const",
            "minmax",
            "where",
            "matmul",
            "reduce",
            "softmax",
            "reshape",
            "transpose",
            "getitem",
            "join",
        ],
        p=[0.14, 0.06, 0.04, 0.13, 0.07, 0.06, 0.04, 0.1, 0.1, 0.05, 0.04, 0.04, 0.08, 0.05],
    )
    if kind == "unary":
        name = rng.choice(["neg", "abs", "tanh", "sigmoid", "softplus", "relu", "exp"])
        if name == "exp" and x.max(initial=0) > 3:
            name = "tanh"
        return p.add(str(name), [i])
    if kind == "positive":
        j = p.positive(i)
        name = rng.choice(["log", "sqrt", "pow"])
        if j is None:
            return None
        if name == "pow":
            return p.add("const", [j], op="pow", c=float(rng.choice([0.5, 1.5, 2.0, 3.0])), left=False)
        return p.add(str(name), [j])
    if kind == "clip":
        lo, hi = np.sort(rng.uniform(x.min(initial=0) - 0.5, x.max(initial=0) + 0.5, size=2))
        lo, hi = (float(lo), None) if rng.random() < 0.2 else (float(lo), float(hi))
        if np.any(x == lo) or np.any(x == hi):
            return None  # autograd's clip has slope 0 exactly at a bound, chainrule's 1
        return p.add("clip", [i], lo=lo, hi=hi)
    if kind == "binary":
        op = str(rng.choice(["add", "sub", "mul", "div", "pow"]))
        j = p.partner(i)
        if op == "div" and np.abs(p.values[j]).min(initial=1) < 0.2:
            j = p.positive(j)
        if op == "pow":
            i = p.positive(i)
            if i is None or np.abs(p.values[j]).max(initial=0) > 3:
                return None
        return None if j is None else p.add("binary", [i, j], op=op)
    if kind == "const":
        op = str(rng.choice(["add", "sub", "mul", "div"]))
        left = bool(rng.integers(2))
        c = (
            float(rng.uniform(0.5, 2))
            if rng.random() < 0.5
            else rng.uniform(0.5, 2, size=_broadcastable_shape(rng, shape))
        )
        if op == "div" and left and np.abs(x).min(initial=1) < 0.2:
            return None
        return p.add("const", [i], op=op, c=c, left=left)
    if kind == "minmax":
        j = p.partner(i) if rng.random() < 0.8 else i  # maximum(x, x): ties everywhere
        return p.add(str(rng.choice(["maximum", "minimum"])), [i, j])
    if kind == "where":
        j = p.partner(i)
        out_shape = np.broadcast_shapes(shape, p.shape(j))
        cond = rng.random(_broadcastable_shape(rng, out_shape)) < 0.5
        return p.add("where", [i, j], cond=cond)
    if kind == "matmul":
        if not shape:
            return None
        right = bool(rng.integers(2))
        j = p.input(_matmul_operand(rng, shape, right))
        return p.add("matmul", [i, j] if right else [j, i])
    if kind == "reduce":
        name = str(rng.choice(["sum", "mean", "max", "logsumexp"]))
        keepdims = bool(shape) and bool(rng.integers(2))  # scipy's logsumexp makes () with keepdims (1,)
        return p.add(name, [i], axis=_axis(rng, len(shape)), keepdims=keepdims)
    if kind == "softmax":
        if not shape:
            return None
        return p.add(str(rng.choice(["softmax", "log_softmax"])), [i], axis=int(rng.integers(-len(shape), len(shape))))
    if kind == "reshape":
        return p.add("reshape", [i], shape=_new_shape(rng, shape))
    if kind == "transpose":
        if len(shape) < 2:
            return None
        axes = (
            None
            if rng.random() < 0.3
            else tuple(int(a) - len(shape) * int(rng.integers(2)) for a in rng.permutation(len(shape)))
        )
        return p.add("transpose", [i], axes=axes)
    if kind == "getitem":
        return p.add("getitem", [i], index=_index(rng, shape)) if shape else None
    # join: concatenate along an existing axis, or stack along a new one
    if not shape or rng.random() < 0.4:
        axis = int(rng.integers(-len(shape) - 1, len(shape) + 1))
        others = [j for j in range(len(p.values)) if p.shape(j) == shape]
        js = [int(rng.choice(others)) for _ in range(int(rng.integers(1, 3)))]
        return p.add("stack", [i, *js], axis=axis)
    axis = int(rng.integers(-len(shape), len(shape)))
    other = list(shape)
    other[axis] = int(rng.integers(1, 4))
    j = p.input(tuple(other))
    return p.add("concatenate", [i, j, i] if rng.random() < 0.3 else [i, j], axis=axis)


def make_program(seed):
    rng = np.random.default_rng(seed)
    p = Program(rng)
    base = tuple(int(n) for n in rng.integers(1, 4, size=rng.integers(1, 4)))
    p.input(base)
    p.input(_broadcastable_shape(rng, base))
    if rng.random() < 0.3:
        p.input(())
    made = 0
    while made < STEPS:
        if _step(p) is not None:
            made += 1
    weights = [rng.normal(size=v.shape) for v in p.values]
    return p, weights


# ---- the comparison ---------------------------------------------------------------------------


def _describe(program):
    return "\n".join(f"  {k}: {name}{list(args)} {params}" for k, (name, args, params) in enumerate(program.steps))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_program_matches_autograd(seed):
    p, weights = make_program(seed)
    program = p.steps

    def ag_loss(inputs):
        nodes = run(program, inputs, 1)
        return sum(anp.sum(n * w) for n, w in zip(nodes, weights))

    leaves = [cr.tensor(v, requires_grad=True) for v in p.inputs]
    nodes = run(program, leaves, 0)
    loss = sum(((n * w).sum() for n, w in zip(nodes, weights)), cr.tensor(0.0))
    loss.backward()

    where = f"seed {seed}, program:\n{_describe(p)}"
    for k, (node, value) in enumerate(zip(nodes, p.values)):
        assert node.shape == value.shape, f"node {k} shape; {where}"
        np.testing.assert_allclose(node.data, value, rtol=1e-7, atol=1e-12, err_msg=f"node {k} value; {where}")
    np.testing.assert_allclose(loss.item(), ag_loss(p.inputs), rtol=1e-7, err_msg=where)
    expected = autograd.grad(ag_loss)(p.inputs)
    for k, (leaf, want) in enumerate(zip(leaves, expected)):
        got = np.zeros_like(want) if leaf.grad is None else leaf.grad
        np.testing.assert_allclose(
            got,
            want,
            rtol=1e-7,
            atol=1e-9 * (1 + np.abs(want).max(initial=0)),
            err_msg=f"gradient of input {k}; {where}",
        )


def test_programs_cover_every_kind_of_step():
    # The generator must actually produce what this file claims to test.
    seen, indexes, matmul_ranks = set(), set(), set()
    for seed in SEEDS:
        p, _ = make_program(seed)
        for name, args, params in p.steps:
            seen.add(params.get("op", name) if name in ("binary",) else name)
            if name == "getitem":
                index = params["index"]
                parts = index if isinstance(index, tuple) else (index,)
                indexes.update(type(part).__name__ for part in parts)
                if any(isinstance(q, np.ndarray) and len(np.unique(q)) < len(q) for q in parts):
                    indexes.add("repeated")
            if name == "matmul":
                matmul_ranks.add(tuple(p.values[a].ndim for a in args))
    wanted = {
        "neg",
        "exp",
        "log",
        "sqrt",
        "abs",
        "tanh",
        "sigmoid",
        "softplus",
        "relu",
        "clip",
        "add",
        "sub",
        "mul",
        "div",
        "pow",
        "const",
        "maximum",
        "minimum",
        "where",
        "matmul",
        "sum",
        "mean",
        "max",
        "logsumexp",
        "softmax",
        "log_softmax",
        "reshape",
        "transpose",
        "getitem",
        "concatenate",
        "stack",
    }
    assert wanted <= seen, sorted(wanted - seen)
    assert {"slice", "ndarray", "int", "ellipsis", "NoneType", "repeated"} <= indexes, indexes
    assert {(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 2)} <= matmul_ranks, matmul_ranks
