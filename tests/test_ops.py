"""The primitive registry: one gradient check per op, properties on random shapes, hand-worked values.

Layer 1 of the test suite (STYLE.md, 12): every op in ``chainrule.ops.REGISTRY``
has an entry in ``CASES`` and is checked against central differences; an op
registered without a case fails ``test_every_op_has_a_gradcheck_case``.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chainrule as cr
from chainrule.gradcheck import GradcheckError, gradcheck
from chainrule.ops import REGISTRY, unbroadcast
from chainrule.tensor import apply

SETTINGS = settings(max_examples=50, deadline=None)


# ---- inputs for the gradient checks ------------------------------------------------------


def _t(rng, *shape, low=-2.0, high=2.0):
    """A float64 leaf that requires grad, uniform in [low, high)."""
    return cr.tensor(rng.uniform(low, high, size=shape), requires_grad=True)


def _pos(rng, *shape):
    """Positive values, for log, sqrt and the base of pow."""
    return _t(rng, *shape, low=0.5, high=2.0)


def _away(rng, *shape, points=(0.0,), margin=0.1):
    """Values at least ``margin`` from every point where the op has a kink (relu, abs, clip)."""
    x = rng.uniform(-2.0, 2.0, size=shape)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin) * 2
    return cr.tensor(x, requires_grad=True)


def _probabilities(rng, *shape):
    """Target rows that sum to 1 (soft labels; the loss is differentiable in them too)."""
    p = rng.uniform(0.1, 1.0, size=shape)
    return cr.tensor(p / p.sum(axis=-1, keepdims=True), requires_grad=True)


def _distinct(rng, *shape):
    """Values 0.25 apart in random order: no ties for max, however the axes are reduced."""
    n = int(np.prod(shape))
    return cr.tensor(0.25 * rng.permutation(n).reshape(shape) - 1.0, requires_grad=True)


def _apart(rng, shape_a, shape_b):
    """Two inputs whose broadcast elements differ by at least 0.01 (maximum/minimum away from ties)."""
    a, b = rng.uniform(-2, 2, size=shape_a), rng.uniform(-2, 2, size=shape_b)
    assert np.abs(a - b).min() > 1e-2, "the seed gave a near tie; pick another"
    return cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)


# Each entry: op name -> function(rng) giving a list of (inputs, keyword arguments) for
# ``apply(REGISTRY[name], *inputs, **kw)``. Shapes cover broadcasting and 0-d; values stay away
# from the points where an op is not differentiable.
CASES = {
    # elementwise arithmetic
    "add": lambda r: [((_t(r, 3, 1), _t(r, 4)), {}), ((_t(r, 2, 3), _t(r)), {}), ((_t(r), _t(r)), {})],
    "sub": lambda r: [((_t(r, 3, 1), _t(r, 1, 4)), {}), ((_t(r, 2, 1, 3), _t(r, 3)), {})],
    "mul": lambda r: [((_t(r, 3, 1), _t(r, 4)), {}), ((_t(r, 2, 3), _t(r, 2, 1)), {})],
    "div": lambda r: [((_t(r, 3, 1), _pos(r, 4)), {}), ((_t(r, 2, 3), _t(r, 1, 3, low=-2.0, high=-0.5)), {})],
    "pow": lambda r: [((_pos(r, 3, 1), _t(r, 4)), {}), ((_pos(r, 2, 3), _t(r)), {})],
    "neg": lambda r: [((_t(r, 2, 3),), {})],
    "maximum": lambda r: [(_apart(r, (3, 1), (4,)), {}), (_apart(r, (2, 3), ()), {})],
    "minimum": lambda r: [(_apart(r, (3, 1), (4,)), {}), (_apart(r, (2, 3), ()), {})],
    "where": lambda r: [
        ((r.uniform(size=(3, 1)) > 0.5, _t(r, 3, 4), _t(r, 4)), {}),
        ((np.array([True, False, True]), _t(r, 2, 3), _t(r)), {}),
    ],
    # elementwise functions
    "exp": lambda r: [((_t(r, 2, 3),), {}), ((_t(r),), {})],
    "log": lambda r: [((_pos(r, 2, 3),), {})],
    "sqrt": lambda r: [((_pos(r, 2, 3),), {})],
    "abs": lambda r: [((_away(r, 2, 3),), {})],
    "tanh": lambda r: [((_t(r, 2, 3),), {})],
    "softplus": lambda r: [((_t(r, 2, 3, low=-5, high=5),), {})],
    "sigmoid": lambda r: [((_t(r, 2, 3, low=-5, high=5),), {})],
    "relu": lambda r: [((_away(r, 2, 3),), {})],
    "clip": lambda r: [
        ((_away(r, 3, 4, points=(-0.5, 0.5)),), {"lo": -0.5, "hi": 0.5}),
        ((_away(r, 3, 4, points=(0.0,)),), {"lo": 0.0}),
        ((_away(r, 3, 4, points=(1.0,)),), {"hi": 1.0}),
    ],
    # reductions
    "sum": lambda r: [
        ((_t(r, 2, 3, 4),), {}),
        ((_t(r, 2, 3, 4),), {"axis": 1}),
        ((_t(r, 2, 3, 4),), {"axis": (0, 2), "keepdims": True}),
        ((_t(r, 2, 3),), {"axis": -1}),
        ((_t(r),), {}),
    ],
    "max": lambda r: [
        ((_distinct(r, 2, 3, 4),), {}),
        ((_distinct(r, 2, 3, 4),), {"axis": 1}),
        ((_distinct(r, 2, 3, 4),), {"axis": (0, -1), "keepdims": True}),
        ((_t(r),), {}),
    ],
    "logsumexp": lambda r: [
        ((_t(r, 2, 3, 4),), {}),
        ((_t(r, 2, 3, 4),), {"axis": -1}),
        ((_t(r, 2, 3, 4),), {"axis": (0, 1), "keepdims": True}),
    ],
    "log_softmax": lambda r: [((_t(r, 2, 3, 4),), {}), ((_t(r, 3, 4),), {"axis": 0}), ((_t(r, 5),), {})],
    # linear algebra
    "matmul": lambda r: [
        ((_t(r, 2, 3), _t(r, 3, 4)), {}),
        ((_t(r, 3), _t(r, 3)), {}),
        ((_t(r, 3), _t(r, 2, 3, 4)), {}),
        ((_t(r, 2, 4, 3), _t(r, 3)), {}),
        ((_t(r, 2, 1, 3, 4), _t(r, 5, 4, 2)), {}),
    ],
    # fused primitives
    "linear": lambda r: [
        ((_t(r, 5, 3), _t(r, 4, 3), _t(r, 4)), {}),
        ((_t(r, 3), _t(r, 2, 3), _t(r, 2)), {}),
        ((_t(r, 5, 3), _t(r, 2, 4, 3), _t(r, 2, 1, 4)), {}),
    ],
    "softmax_cross_entropy": lambda r: [
        ((_t(r, 5, 3), _probabilities(r, 5, 3)), {}),
        ((_t(r, 2, 4, 3), _probabilities(r, 2, 4, 3)), {}),
    ],
    # shape and indexing
    "reshape": lambda r: [
        ((_t(r, 2, 3),), {"shape": (3, 2)}),
        ((_t(r, 2, 3),), {"shape": (-1,)}),
        ((_t(r),), {"shape": (1, 1)}),
    ],
    "transpose": lambda r: [
        ((_t(r, 2, 3),), {}),
        ((_t(r, 2, 3, 4),), {"axes": (1, 0, 2)}),
        ((_t(r, 2, 3, 4),), {"axes": (-1, 0, 1)}),
    ],
    "getitem": lambda r: [
        ((_t(r, 4, 3),), {"index": slice(1, None, 2)}),
        ((_t(r, 4, 3),), {"index": np.array([0, 2, 0, 0])}),
        ((_t(r, 4, 3),), {"index": (slice(None, None, -1), np.array([2, 2, 1]))}),
        ((_t(r, 4, 3),), {"index": (np.array([3, 3]), np.array([1, 1]))}),
        ((_t(r, 4, 3),), {"index": (Ellipsis, None, 1)}),
        ((_t(r, 4, 3),), {"index": (-1, 0)}),
    ],
    "concatenate": lambda r: [
        ((_t(r, 2, 3), _t(r, 1, 3), _t(r, 4, 3)), {"axis": 0}),
        ((_t(r, 2, 3), _t(r, 2, 1)), {"axis": -1}),
    ],
    "stack": lambda r: [
        ((_t(r, 2, 3), _t(r, 2, 3)), {"axis": 0}),
        ((_t(r, 2, 3), _t(r, 2, 3), _t(r, 2, 3)), {"axis": -1}),
        ((_t(r), _t(r)), {"axis": 0}),
    ],
}


def _cases(name, seed=0):
    return CASES[name](np.random.default_rng(seed))


def _gradcheck_case(op, inputs, kw):
    return gradcheck(lambda *xs: apply(op, *xs, **kw), *inputs)


def test_every_op_has_a_gradcheck_case():
    missing, stale = set(REGISTRY) - set(CASES), set(CASES) - set(REGISTRY)
    assert not missing, f"ops registered without a gradient-check case in CASES: {sorted(missing)}"
    assert not stale, f"CASES names ops that are not registered: {sorted(stale)}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_gradient_matches_finite_differences(name):
    assert name in CASES, f"op {name!r} has no gradient-check case: add one to CASES"
    op = REGISTRY[name]
    for inputs, kw in _cases(name):
        out = apply(op, *inputs, **kw)
        assert cr.graph(out).output.op is op  # the case really exercises this op
        assert _gradcheck_case(op, inputs, kw)


class _Scaled:
    """An op's VJPs, each multiplied by 1.1: a wrong derivative the gradient check must catch."""

    def __init__(self, vjps):
        self.vjps = vjps

    def __getitem__(self, i):
        vjp = self.vjps[i]
        return None if vjp is None else (lambda *a, **kw: 1.1 * vjp(*a, **kw))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_gradcheck_cases_catch_a_wrong_derivative(name, monkeypatch):
    # The check above could pass vacuously (e.g. a case whose gradient is all zeros); here a
    # deliberately wrong VJP must make every case fail.
    op = REGISTRY[name]
    monkeypatch.setattr(op, "vjps", _Scaled(op.vjps))
    for inputs, kw in _cases(name):
        with pytest.raises(GradcheckError):
            _gradcheck_case(op, inputs, kw)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_keeps_float32(name):
    op = REGISTRY[name]
    for inputs, kw in _cases(name):
        xs = [cr.tensor(x.data, dtype="float32", requires_grad=True) if isinstance(x, cr.Tensor) else x for x in inputs]
        out = apply(op, *xs, **kw)
        assert out.dtype == np.float32
        (out * 1.5).sum().backward()
        for x in xs:
            if isinstance(x, cr.Tensor):
                assert x.grad is not None and x.grad.dtype == np.float32, name


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_documents_f_and_its_derivatives(name):
    op = REGISTRY[name]
    assert op.name == name
    assert op.formula.startswith(f"{name}("), f"{name}: the formula should read f(x) = ..., got {op.formula!r}"
    for inputs, _ in _cases(name)[:1]:
        for i, x in enumerate(inputs):
            differentiable = isinstance(x, cr.Tensor)
            assert (op.vjps[i] is not None) == differentiable, f"{name}: input {i}"
            if differentiable:
                deriv = op.derivs[min(i, len(op.derivs) - 1)]  # variadic ops share one formula
                assert deriv and deriv.startswith("d/d"), f"{name}: input {i} has no derivative formula"


# ---- unbroadcast -------------------------------------------------------------------------


def _unbroadcast_ref(g, shape):
    """Independent reference: each element of g is added to the input element it was copied from."""
    source = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), g.shape)
    return np.bincount(source.ravel(), weights=g.ravel(), minlength=int(np.prod(shape))).reshape(shape)


def test_unbroadcast_by_hand():
    g = np.arange(24.0).reshape(2, 3, 4)
    # To (3, 1): sum over the added axis 0 and the stretched axis 2.
    # Row 0: (0+1+2+3) + (12+13+14+15) = 6 + 54 = 60; row 1: 22 + 70 = 92; row 2: 38 + 86 = 124.
    np.testing.assert_array_equal(unbroadcast(g, (3, 1)), [[60.0], [92.0], [124.0]])
    # To (): everything, 0 + 1 + ... + 23 = 23 * 24 / 2 = 276.
    assert unbroadcast(g, ()) == 276.0
    assert unbroadcast(g, (2, 3, 4)) is g


@SETTINGS
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3), st.data())
def test_unbroadcast_matches_reference(shapes, data):
    small, _ = shapes.input_shapes
    g = data.draw(hnp.arrays(np.float64, shapes.result_shape, elements=st.floats(-10, 10)))
    out = unbroadcast(g, small)
    assert out.shape == small
    np.testing.assert_allclose(out, _unbroadcast_ref(g, small), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "big, small",
    [
        ((1000, 3, 1), (1000, 1, 1)),
        ((200, 5, 4), (200, 1, 4)),
        ((7, 100, 3, 2), (100, 1, 1)),
        ((600, 9), (600, 1)),
        ((2, 600, 3), ()),
    ],
)
def test_unbroadcast_of_a_population_matches_reference(big, small):
    # sizes of 512 and more with a short stretched axis take the slice-by-slice plan (or, over 8, the reduce)
    g = np.random.default_rng(0).normal(size=big)
    np.testing.assert_allclose(unbroadcast(g, small), _unbroadcast_ref(g, small), rtol=1e-12, atol=1e-12)


# ---- properties on random shapes: binary ops ------------------------------------------------


# op -> (forward, d/da, d/db), written independently of chainrule.ops
def _tie_share(wins, ties):
    return np.where(ties, 0.5, np.where(wins, 1.0, 0.0))


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: np.ones_like(a * b), lambda a, b: np.ones_like(a * b)),
    "sub": (lambda a, b: a - b, lambda a, b: np.ones_like(a * b), lambda a, b: -np.ones_like(a * b)),
    "mul": (lambda a, b: a * b, lambda a, b: b + 0 * a, lambda a, b: a + 0 * b),
    "div": (lambda a, b: a * (1 / b), lambda a, b: 1 / b + 0 * a, lambda a, b: -a / (b * b)),
    "pow": (
        lambda a, b: np.exp(b * np.log(a)),
        lambda a, b: b * np.exp((b - 1) * np.log(a)),
        lambda a, b: np.exp(b * np.log(a)) * np.log(a),
    ),
    "maximum": (
        lambda a, b: np.where(a >= b, a, b),
        lambda a, b: _tie_share(a > b, a == b),
        lambda a, b: _tie_share(b > a, a == b),
    ),
    "minimum": (
        lambda a, b: np.where(a <= b, a, b),
        lambda a, b: _tie_share(a < b, a == b),
        lambda a, b: _tie_share(b < a, a == b),
    ),
}

_SMALL = st.floats(-3, 3, allow_nan=False).map(lambda v: round(v, 1))  # rounded: ties happen
_HALVES = st.integers(-6, 6).map(lambda v: v / 2)  # a coarse grid: ties are common
_WEIGHTS = st.floats(0.5, 2.0)  # never 0, so every element's gradient counts


def _operands(name):
    if name == "div":
        return _SMALL, st.floats(0.5, 3).flatmap(lambda v: st.sampled_from([v, -v]))
    if name == "pow":
        return st.floats(0.5, 3), st.floats(-2, 2)
    return _SMALL, _SMALL


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3), st.data())
def test_binary_op_value_and_gradient(name, shapes, data):
    fwd, da, db = BINARY[name]
    ea, eb = _operands(name)
    a = data.draw(hnp.arrays(np.float64, shapes.input_shapes[0], elements=ea), label="a")
    b = data.draw(hnp.arrays(np.float64, shapes.input_shapes[1], elements=eb), label="b")
    w = data.draw(hnp.arrays(np.float64, shapes.result_shape, elements=_WEIGHTS), label="w")
    ta, tb = cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)
    out = getattr(cr, name)(ta, tb)
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.data, fwd(a, b), rtol=1e-12, atol=1e-12)
    (out * w).sum().backward()
    np.testing.assert_allclose(ta.grad, _unbroadcast_ref(w * da(a, b), a.shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tb.grad, _unbroadcast_ref(w * db(a, b), b.shape), rtol=1e-10, atol=1e-12)


# ---- properties on random shapes: reductions ---------------------------------------------------


def _grouped(x, axes):
    """x with the reduced axes moved last and flattened into one: reductions become ``axis=-1``."""
    kept = [i for i in range(x.ndim) if i not in axes]
    moved = np.transpose(x, kept + list(axes))
    return moved.reshape(moved.shape[: len(kept)] + (-1,)), kept


def _ungrouped(y, x_shape, axes, kept):
    order = kept + list(axes)
    y = y.reshape([x_shape[i] for i in order])
    return np.transpose(y, np.argsort(order))


def _lse_last(v):
    m = v.max(axis=-1, keepdims=True)
    return m[..., 0] + np.log(np.exp(v - m).sum(axis=-1))


# op -> (value over the last axis, local derivative over the last axis), independent of chainrule.ops
REDUCTIONS = {
    "sum": (lambda v: v.sum(-1), lambda v: np.ones_like(v)),
    "mean": (lambda v: v.sum(-1) / v.shape[-1], lambda v: np.full_like(v, 1 / v.shape[-1])),
    "max": (
        lambda v: v.max(-1),
        lambda v: (v == v.max(-1, keepdims=True)) / (v == v.max(-1, keepdims=True)).sum(-1, keepdims=True),
    ),
    "logsumexp": (_lse_last, lambda v: np.exp(v - _lse_last(v)[..., None])),
}


@st.composite
def _axis_args(draw, ndim):
    kind = draw(st.sampled_from(["none", "int", "tuple"] if ndim else ["none", "tuple"]))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        axis = draw(hnp.valid_tuple_axes(ndim))
    return axis, draw(st.booleans())


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@SETTINGS
@given(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3), st.data())
def test_reduction_value_and_gradient(name, shape, data):
    value, local = REDUCTIONS[name]
    x = data.draw(hnp.arrays(np.float64, shape, elements=_HALVES), label="x")
    axis, keepdims = data.draw(_axis_args(len(shape)), label="axis, keepdims")
    axes = tuple(range(x.ndim)) if axis is None else tuple(sorted(a % x.ndim for a in np.atleast_1d(axis)))
    grouped, kept = _grouped(x, axes)
    expected = value(grouped)
    if keepdims:
        expected = expected.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    w = data.draw(hnp.arrays(np.float64, expected.shape, elements=_WEIGHTS), label="w")

    tx = cr.tensor(x, requires_grad=True)
    out = getattr(cr, name)(tx, axis=axis, keepdims=keepdims)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    (out * w).sum().backward()
    expected_grad = _ungrouped(w.reshape(grouped.shape[:-1] + (1,)) * local(grouped), shape, axes, kept)
    np.testing.assert_allclose(tx.grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@SETTINGS
@given(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), st.data())
def test_softmax_value_and_gradient(name, shape, data):
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-20, 20)), label="x")
    w = data.draw(hnp.arrays(np.float64, shape, elements=_WEIGHTS), label="w")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    s = e / e.sum(axis=axis, keepdims=True)
    if name == "softmax":
        # d/dx_j sum_i w_i s_i = s_j (w_j - sum_i w_i s_i)
        expected, grad = s, s * (w - (w * s).sum(axis=axis, keepdims=True))
    else:
        # d/dx_j sum_i w_i (x_i - lse) = w_j - s_j sum_i w_i
        expected, grad = np.log(s), w - s * w.sum(axis=axis, keepdims=True)
    tx = cr.tensor(x, requires_grad=True)
    out = getattr(cr, name)(tx, axis=axis)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    (out * w).sum().backward()
    np.testing.assert_allclose(tx.grad, grad, rtol=1e-9, atol=1e-12)


# ---- matmul on shapes NumPy promotes or broadcasts ------------------------------------------------


def _matmul_ref(a, b, g):
    """Value and gradients of sum(g * (a @ b)) with einsum on explicitly promoted, broadcast operands."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    A = np.broadcast_to(a2, batch + a2.shape[-2:])
    B = np.broadcast_to(b2, batch + b2.shape[-2:])
    out = np.einsum("...ik,...kj->...ij", A, B)
    g2 = g.reshape(out.shape)
    ga = _unbroadcast_ref(np.einsum("...ij,...kj->...ik", g2, B), a2.shape).reshape(a.shape)
    gb = _unbroadcast_ref(np.einsum("...ik,...ij->...kj", A, g2), b2.shape).reshape(b.shape)
    return out, ga, gb


MATMUL_SHAPES = [
    ((3,), (3,)),
    ((3,), (3, 2)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((3,), (5, 3, 2)),
    ((5, 2, 3), (3,)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((5, 1, 2, 3), (4, 3, 2)),
    ((1, 2, 3), (4, 1, 3, 2)),
]


@pytest.mark.parametrize("shape_a, shape_b", MATMUL_SHAPES)
def test_matmul_value_and_gradient(shape_a, shape_b):
    rng = np.random.default_rng(len(shape_a) * 10 + len(shape_b))
    a, b = rng.normal(size=shape_a), rng.normal(size=shape_b)
    expected_shape = np.matmul(a, b).shape
    g = rng.normal(size=expected_shape)
    value, ga, gb = _matmul_ref(a, b, g)
    ta, tb = cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)
    out = ta @ tb
    assert out.shape == expected_shape
    np.testing.assert_allclose(out.data, value.reshape(expected_shape), rtol=1e-12)
    (out * g).sum().backward()
    np.testing.assert_allclose(ta.grad, ga, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tb.grad, gb, rtol=1e-10, atol=1e-12)


# ---- hand-worked values and derivatives -------------------------------------------------------------


def _value_and_grads(name, *values, **kw):
    xs = [cr.tensor(v, requires_grad=True) for v in values]
    out = getattr(cr, name)(*xs, **kw)
    out.sum().backward()
    return out.data, [x.grad for x in xs]


def test_softplus_at_zero_by_hand():
    # softplus(0) = log(1 + e^0) = log 2; d/dx = e^0 / (1 + e^0) = 1/2
    value, (grad,) = _value_and_grads("softplus", 0.0)
    assert value == pytest.approx(math.log(2), rel=1e-15)
    assert grad == pytest.approx(0.5, rel=1e-15)


def test_sigmoid_at_zero_by_hand():
    # sigmoid(0) = 1 / (1 + e^0) = 1/2; d/dx = 1/2 (1 - 1/2) = 1/4
    value, (grad,) = _value_and_grads("sigmoid", 0.0)
    assert value == pytest.approx(0.5, rel=1e-15)
    assert grad == pytest.approx(0.25, rel=1e-15)


def test_sigmoid_at_log_3_by_hand():
    # sigmoid(ln 3) = 1 / (1 + 1/3) = 3/4; d/dx = 3/4 * 1/4 = 3/16
    value, (grad,) = _value_and_grads("sigmoid", math.log(3))
    assert value == pytest.approx(0.75, rel=1e-14)
    assert grad == pytest.approx(3 / 16, rel=1e-14)


def test_elementwise_functions_by_hand():
    # tanh(0) = 0, tanh'(0) = 1 - 0^2 = 1
    assert _value_and_grads("tanh", 0.0) == (0.0, [1.0])
    # sqrt(4) = 2, sqrt'(4) = 1 / (2 * 2) = 1/4
    assert _value_and_grads("sqrt", 4.0) == (2.0, [0.25])
    # log(2): d/dx = 1/2
    value, (grad,) = _value_and_grads("log", 2.0)
    assert (value, grad) == (pytest.approx(math.log(2), rel=1e-15), 0.5)
    # exp(1) = e, and so is its derivative
    value, (grad,) = _value_and_grads("exp", 1.0)
    assert value == pytest.approx(math.e) and grad == pytest.approx(math.e)
    # relu(-3) = 0 with slope 0; relu(2) = 2 with slope 1; abs(-3) = 3 with slope -1
    value, (grad,) = _value_and_grads("relu", [-3.0, 2.0])
    np.testing.assert_array_equal(value, [0.0, 2.0])
    np.testing.assert_array_equal(grad, [0.0, 1.0])
    value, (grad,) = _value_and_grads("abs", [-3.0, 2.0])
    np.testing.assert_array_equal(value, [3.0, 2.0])
    np.testing.assert_array_equal(grad, [-1.0, 1.0])


def test_div_and_pow_by_hand():
    # 3 / 2 = 1.5; d/da = 1/2; d/db = -3 / 2^2 = -3/4
    value, (ga, gb) = _value_and_grads("div", 3.0, 2.0)
    assert (value, ga, gb) == (1.5, 0.5, -0.75)
    # 2^3 = 8; d/da = 3 * 2^2 = 12; d/db = 2^3 ln 2 = 8 ln 2
    value, (ga, gb) = _value_and_grads("pow", 2.0, 3.0)
    assert (value, ga) == (8.0, 12.0)
    assert gb == pytest.approx(8 * math.log(2), rel=1e-15)


def test_pow_with_zero_base_by_hand():
    # 0^2 = 0; d/da = 2 * 0^1 = 0; d/db = 0^2 * ln 0 is taken as 0 (the limit of a^b ln a as a -> 0+)
    value, (ga, gb) = _value_and_grads("pow", 0.0, 2.0)
    assert (value, ga, gb) == (0.0, 0.0, 0.0)


def test_matmul_by_hand():
    # [1 2] @ [[3], [4]] = 1*3 + 2*4 = 11; d/da = b^T = [3 4]; d/db = a^T = [[1], [2]]
    value, (ga, gb) = _value_and_grads("matmul", [[1.0, 2.0]], [[3.0], [4.0]])
    np.testing.assert_array_equal(value, [[11.0]])
    np.testing.assert_array_equal(ga, [[3.0, 4.0]])
    np.testing.assert_array_equal(gb, [[1.0], [2.0]])
    # Vector @ vector: the same sum 11, gradients the other vector.
    value, (ga, gb) = _value_and_grads("matmul", [1.0, 2.0], [3.0, 4.0])
    assert value == 11.0
    np.testing.assert_array_equal(ga, [3.0, 4.0])
    np.testing.assert_array_equal(gb, [1.0, 2.0])


def test_reductions_by_hand():
    # mean([1, 2, 3, 6]) = 12 / 4 = 3, each element's slope 1/4
    value, (grad,) = _value_and_grads("mean", [1.0, 2.0, 3.0, 6.0])
    assert value == 3.0
    np.testing.assert_array_equal(grad, [0.25] * 4)
    # logsumexp([0, ln 3]) = ln(1 + 3) = ln 4; slopes e^x / 4 = [1/4, 3/4]
    value, (grad,) = _value_and_grads("logsumexp", [0.0, math.log(3)])
    assert value == pytest.approx(math.log(4), rel=1e-15)
    np.testing.assert_allclose(grad, [0.25, 0.75], rtol=1e-15)
    # sum over axis 0 of [[1, 2], [3, 4]] = [4, 6]
    value, (grad,) = _value_and_grads("sum", [[1.0, 2.0], [3.0, 4.0]], axis=0)
    np.testing.assert_array_equal(value, [4.0, 6.0])
    np.testing.assert_array_equal(grad, np.ones((2, 2)))


def test_log_softmax_by_hand():
    # log_softmax([0, 0]) = [0 - ln(e^0 + e^0)] * 2 = [-ln 2, -ln 2].
    # Of its first output only: d/dx_j = [j = 0] - softmax_j = [1 - 1/2, 0 - 1/2].
    x = cr.tensor([0.0, 0.0], requires_grad=True)
    out = cr.log_softmax(x)
    np.testing.assert_allclose(out.data, [-math.log(2)] * 2, rtol=1e-15)
    out[0].backward()
    np.testing.assert_array_equal(x.grad, [0.5, -0.5])


def test_getitem_repeated_index_adds_by_hand():
    # x[[0, 0, 2]] takes x_0 twice, so the sum's slope is 2 for x_0, 0 for x_1, 1 for x_2
    x = cr.tensor([5.0, 6.0, 7.0], requires_grad=True)
    out = x[[0, 0, 2]]
    np.testing.assert_array_equal(out.data, [5.0, 5.0, 7.0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 1.0])


def test_boolean_mask_by_hand():
    # x[x > 0] keeps 2 and 3; the sum's slopes are 1 there, 0 for the dropped -1
    x = cr.tensor([2.0, -1.0, 3.0], requires_grad=True)
    out = x[x > 0]
    np.testing.assert_array_equal(out.data, [2.0, 3.0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])


def test_concatenate_and_stack_by_hand():
    # concatenate([a, b]) * [1, 2, 3]: a gets the first two weights, b the last one
    a, b = cr.tensor([1.0, 2.0], requires_grad=True), cr.tensor([3.0], requires_grad=True)
    (cr.concatenate([a, b]) * np.array([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 2.0])
    np.testing.assert_array_equal(b.grad, [3.0])
    # stack([a, a]) uses a twice: weights [[1, 2], [3, 4]] give a.grad = [1 + 3, 2 + 4] = [4, 6]
    a.grad = None
    (cr.stack([a, a]) * np.array([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    np.testing.assert_array_equal(a.grad, [4.0, 6.0])


def test_concatenate_with_axis_none_flattens_by_hand():
    # As in NumPy: [[1, 2]] and [3] flattened and joined to [1, 2, 3]; weights [1, 2, 3] give
    # a.grad = [[1, 2]], b.grad = [3]
    a, b = cr.tensor([[1.0, 2.0]], requires_grad=True), cr.tensor([3.0], requires_grad=True)
    out = cr.concatenate([a, b], axis=None)
    np.testing.assert_array_equal(out.data, [1.0, 2.0, 3.0])
    (out * np.array([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(a.grad, [[1.0, 2.0]])
    np.testing.assert_array_equal(b.grad, [3.0])


@pytest.mark.parametrize("gap", [20.0, 100.0, 600.0])
def test_log_softmax_keeps_the_precision_of_rows_far_below_the_others(gap):
    # Row [0, -25]: log p_0 = -log(1 + e^-25), about -1.4e-11, whatever the other rows hold.
    got = cr.log_softmax(cr.tensor([[0.0, -25.0], [gap, 0.0]])).data[0, 0]
    assert got == pytest.approx(-math.log1p(math.exp(-25.0)), rel=1e-12)
