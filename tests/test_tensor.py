"""Tensor, apply and backward: the API contract, hand-worked chain rules, stability and errors."""

import math
import operator

import numpy as np
import pytest

import chainrule as cr
from chainrule.gradcheck import gradcheck


def _leaf(values, dtype=None):
    return cr.tensor(values, requires_grad=True, dtype=dtype)


# ---- construction ------------------------------------------------------------------------


@pytest.mark.parametrize("data", [1, 2.5, [1, 2, 3], [[1.0], [2.0]], np.arange(3), np.float64(2.0), True])
def test_tensor_is_float64_by_default(data):
    t = cr.tensor(data)
    assert t.dtype == np.float64
    assert isinstance(t.data, np.ndarray)
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float64))


def test_tensor_keeps_float32_arrays_and_honours_dtype():
    assert cr.tensor(np.ones(2, dtype=np.float32)).dtype == np.float32
    assert cr.tensor([1, 2], dtype="float32").dtype == np.float32
    assert cr.tensor(np.ones(2, dtype=np.float32), dtype=np.float64).dtype == np.float64


def test_tensor_rejects_a_non_float_dtype():
    with pytest.raises(TypeError, match="float32 or float64"):
        cr.tensor([1, 2], dtype="int64")


def test_tensor_copies_its_data():
    source = np.array([1.0, 2.0])
    t = cr.tensor(source)
    source[0] = 99.0
    assert t.data[0] == 1.0


def test_tensor_attributes():
    t = cr.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    assert t.shape == (1, 3) and t.ndim == 2 and t.size == 3 and t.dtype == np.float64
    assert t.requires_grad and t.is_leaf and t.grad is None
    assert not (t * 2).is_leaf
    assert cr.tensor(4.0).item() == 4.0 and type(cr.tensor(4.0).item()) is float
    assert cr.tensor([[4.0]]).item() == 4.0
    with pytest.raises(ValueError, match=r"item\(\).*\(1, 3\)"):
        t.item()
    assert "requires_grad=True" in repr(t)
    assert "float32" in repr(cr.tensor([1.0], dtype="float32"))


def test_detach_shares_data_and_stops_the_gradient():
    x = _leaf([1.0, 2.0])
    d = x.detach()
    assert d.data is x.data or np.shares_memory(d.data, x.data)
    assert not d.requires_grad and d.grad is None
    # d/dx of x * detach(x) is detach(x) = x, not 2x: the detached factor is a constant
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])


# ---- backward ------------------------------------------------------------------------------


def test_backward_on_non_scalar_needs_grad():
    x = _leaf([1.0, 2.0])
    y = x * 3
    with pytest.raises(ValueError, match=r"shape \(2,\).*grad="):
        y.backward()
    y.backward(grad=np.array([1.0, 10.0]))  # an explicit grad works: d(3x)/dx weighted
    np.testing.assert_array_equal(x.grad, [3.0, 30.0])


def test_backward_checks_grad_shape_and_requires_grad():
    x = _leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        (x * 3).backward(grad=np.ones(3))
    with pytest.raises(ValueError, match="requires_grad=True"):
        cr.tensor([1.0, 2.0]).sum().backward()


def test_gradients_accumulate_across_backward_calls():
    # Like PyTorch: two backward passes of 3x add up to 3 + 3 = 6 until .grad is reset.
    x = _leaf(2.0)
    (x * 3).backward()
    (x * 3).backward()
    assert x.grad == 6.0
    x.grad = None
    (x * 3).backward()
    assert x.grad == 3.0


def test_a_leaf_used_twice_sums_both_paths():
    # y = x * x + x: dy/dx = 2x + 1 = 7 at x = 3
    x = _leaf(3.0)
    (x * x + x).backward()
    assert x.grad == 7.0


def test_graph_is_freed_after_backward():
    x = _leaf(2.0)
    y = x * x
    y.backward()
    with pytest.raises(ValueError, match="retain_graph"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    # d(x^2)/dx = 2x = 4 at x = 2, twice: 8
    x = _leaf(2.0)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad == 8.0


def test_backward_of_a_leaf():
    x = _leaf(5.0)
    x.backward()
    assert x.grad == 1.0


def test_deep_chain_does_not_hit_the_recursion_limit():
    # y = x + 1 + 1 + ... (5000 times): dy/dx = 1
    x = _leaf(0.0)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.backward()
    assert y.item() == 5000.0 and x.grad == 1.0


def test_no_grad_records_nothing_and_restores():
    x = _leaf(2.0)
    assert cr.is_grad_enabled()
    with cr.no_grad():
        y = x * 3
        assert not cr.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert cr.is_grad_enabled() and (x * 3).requires_grad
    with pytest.raises(RuntimeError):
        with cr.no_grad():
            raise RuntimeError
    assert cr.is_grad_enabled()


def test_constants_get_no_gradient():
    x, c = _leaf([1.0, 2.0]), cr.tensor([3.0, 4.0])
    (x * c).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])
    assert c.grad is None


# ---- float32 -------------------------------------------------------------------------------

MIXED = [
    lambda x: x + 1,
    lambda x: 1 - x,
    lambda x: x * 2.5,
    lambda x: 2.5 / (x + 3),
    lambda x: x**2,
    lambda x: 2.0**x,
    lambda x: x + np.ones(3),
    lambda x: np.ones(3) * x,
    lambda x: x @ np.ones(3),
    lambda x: np.ones((2, 3)) @ x,
    lambda x: cr.maximum(x, 0.5),
    lambda x: cr.where(x > 0, x, 0.0),
    lambda x: x.clip(-0.5, 0.5),
    lambda x: x.mean(),
    lambda x: cr.softmax(x),
    lambda x: x[[0, 0]],
    lambda x: cr.concatenate([x, np.ones(2)]),
    lambda x: cr.stack([x, np.ones(3)]),
    lambda x: x + np.float64(1.5),
    lambda x: x * np.arange(3),
]


@pytest.mark.parametrize("fn", MIXED, ids=range(len(MIXED)))
def test_float32_stays_float32_with_numbers_and_float64_arrays(fn):
    x = _leaf([0.1, -0.2, 0.3], dtype="float32")
    y = fn(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


# ---- operators with numbers and arrays on either side -----------------------------------------

OPERATORS = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("other", [2.0, 3, np.array([0.5, 2.0]), [0.5, 2.0]], ids=["float", "int", "array", "list"])
def test_operators_take_numbers_and_arrays_on_either_side(op, other):
    x_values = np.array([1.5, 2.5])
    for left in (True, False):
        x = _leaf(x_values)
        if not left and isinstance(other, list):
            continue  # list <op> Tensor: only through the reflected operator for + and *, tested below
        y = op(x, other) if left else op(other, x)
        expected = (
            op(x_values, np.asarray(other, dtype=float)) if left else op(np.asarray(other, dtype=float), x_values)
        )
        np.testing.assert_allclose(y.data, expected, rtol=1e-15)
        fn = (lambda t: op(t, other)) if left else (lambda t: op(other, t))
        assert gradcheck(fn, x)


def test_list_on_the_left():
    x = _leaf([1.0, 2.0])
    np.testing.assert_array_equal(([3.0, 4.0] + x).data, [4.0, 6.0])
    np.testing.assert_array_equal(([3.0, 4.0] * x).data, [3.0, 8.0])


def test_matmul_with_arrays_on_either_side():
    w, v = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1.0, -1.0])
    x = _leaf([1.0, 2.0])
    np.testing.assert_array_equal((w @ x).data, [5.0, 11.0])
    np.testing.assert_array_equal((x @ w).data, [7.0, 10.0])
    # d/dx (v . (w x)) = w^T v = [1 - 3, 2 - 4]
    (v @ (w @ x)).backward()
    np.testing.assert_array_equal(x.grad, [-2.0, -2.0])


def test_ndarray_on_the_left_gives_a_tensor():
    x = _leaf([1.0, 2.0])
    for y in (np.ones(2) + x, np.ones(2) - x, np.ones(2) * x, np.ones(2) / x, np.ones(2) ** x):
        assert isinstance(y, cr.Tensor) and y.requires_grad


def test_comparisons_give_boolean_arrays():
    x = cr.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(x > 2, [False, False, True])
    np.testing.assert_array_equal(x <= cr.tensor(2.0), [True, True, False])
    np.testing.assert_array_equal(2 < x, [False, False, True])


def test_methods_match_functions():
    x = cr.tensor(np.arange(6.0).reshape(2, 3) / 6)
    pairs = [
        (x.exp(), cr.exp(x)),
        (x.tanh(), cr.tanh(x)),
        (x.sum(axis=0), cr.sum(x, 0)),
        (x.max(axis=1, keepdims=True), cr.max(x, 1, True)),
        (x.T, cr.transpose(x)),
        (x.reshape(3, 2), cr.reshape(x, (3, 2))),
        (x.transpose(1, 0), cr.transpose(x, (1, 0))),
        (x.log_softmax(), cr.log_softmax(x)),
        (x.logsumexp(axis=1), cr.logsumexp(x, 1)),
        (-x, cr.neg(x)),
        (x.relu(), cr.relu(x)),
        (x.softplus(), cr.softplus(x)),
    ]
    for method, function in pairs:
        np.testing.assert_array_equal(method.data, function.data)


# ---- hand-worked chain rules -----------------------------------------------------------------


def test_square_of_linear_by_hand():
    # loss = (2w - 1)^2 at w = 3: (6 - 1)^2 = 25; d/dw = 2 (2w - 1) * 2 = 4 * 5 = 20
    w = _leaf(3.0)
    loss = (2 * w - 1) ** 2
    loss.backward()
    assert loss.item() == 25.0 and w.grad == 20.0


def test_ssr_of_a_shifted_line_by_hand():
    # Toy model: predicted_i = x_i + b3 with dosages x = [0, 0.5, 1], observed [0, 1, 0], b3 = 0.
    # residuals = observed - predicted = [0 - 0, 1 - 0.5, 0 - 1] = [0, 0.5, -1]
    # SSR = 0^2 + 0.5^2 + 1^2 = 1.25
    # dSSR/db3 = sum_i -2 (observed_i - predicted_i) = -2 (0 + 0.5 - 1) = 1
    x, observed = cr.tensor([0.0, 0.5, 1.0]), cr.tensor([0.0, 1.0, 0.0])
    b3 = _leaf(0.0)
    ssr = ((observed - (x + b3)) ** 2).sum()
    ssr.backward()
    assert ssr.item() == 1.25 and b3.grad == 1.0
    # One gradient-descent step with learning rate 0.1: b3 = 0 - 0.1 * 1 = -0.1, and then
    # residuals [0.1, 0.6, -0.9] give SSR = 0.01 + 0.36 + 0.81 = 1.18 (smaller, as it should be)
    with cr.no_grad():
        b3 = _leaf(b3.item() - 0.1 * b3.grad.item())
    ssr = ((observed - (x + b3)) ** 2).sum()
    assert b3.item() == -0.1 and ssr.item() == pytest.approx(1.18, rel=1e-14)


def test_ssr_with_mean_and_a_slope_by_hand():
    # predicted_i = w x_i with x = [1, 2], observed = [2, 3], w = 1: residuals [1, 1]
    # MSE = (1 + 1) / 2 = 1; dMSE/dw = mean(-2 x_i r_i) = (-2 * 1 * 1 - 2 * 2 * 1) / 2 = -3
    w = _leaf(1.0)
    mse = cr.mean((cr.tensor([2.0, 3.0]) - w * cr.tensor([1.0, 2.0])) ** 2)
    mse.backward()
    assert mse.item() == 1.0 and w.grad == -3.0


def _softplus(v):
    return math.log1p(math.exp(v))


def test_lessons_dosage_network_dssr_db3_against_plain_python():
    # The lessons' network: two SoftPlus units, weights from the StatQuest example, b3 = 0.
    # Reference: plain floats and the math module, independent of chainrule.
    w1, b1, w2, b2, w3, w4 = 3.34, -1.43, -3.53, 0.57, -1.22, -2.30
    dosages, observed = [0.0, 0.5, 1.0], [0.0, 1.0, 0.0]
    predicted = [w3 * _softplus(w1 * d + b1) + w4 * _softplus(w2 * d + b2) for d in dosages]
    expected = sum(-2 * (o - p) for o, p in zip(observed, predicted))
    assert expected == pytest.approx(-15.7, abs=0.1)  # the lessons' rounded -15.7

    x, y = cr.tensor(dosages), cr.tensor(observed)
    b3 = _leaf(0.0)
    pred = cr.softplus(x * w1 + b1) * w3 + cr.softplus(x * w2 + b2) * w4 + b3
    ((y - pred) ** 2).sum().backward()
    assert b3.grad == pytest.approx(expected, rel=1e-12)


def test_sigmoid_composite_matches_primitive():
    # 1 / (1 + e^-x) built from primitives has the same value and slope as the sigmoid primitive:
    # at x = 0, 1/2 and 1/4
    x = _leaf(0.0)
    y = 1 / (1 + cr.exp(-x))
    y.backward()
    assert y.item() == 0.5 and x.grad == 0.25


# ---- numerical stability ---------------------------------------------------------------------


def test_softplus_and_sigmoid_at_plus_minus_1000():
    # softplus(x) -> x for large x (slope 1) and -> 0 for very negative x (slope 0);
    # sigmoid -> 1 and 0, with slope sigmoid (1 - sigmoid) -> 0 both ways.
    with cr.detect_anomaly():  # no intermediate overflow either
        x = _leaf([-1000.0, 1000.0])
        cr.softplus(x).sum().backward()
        np.testing.assert_array_equal(cr.softplus(x).data, [0.0, 1000.0])
        np.testing.assert_array_equal(x.grad, [0.0, 1.0])
        x.grad = None
        cr.sigmoid(x).sum().backward()
        np.testing.assert_array_equal(cr.sigmoid(x).data, [0.0, 1.0])
        np.testing.assert_array_equal(x.grad, [0.0, 0.0])


@pytest.mark.parametrize(
    "fn", [cr.softplus, cr.sigmoid, cr.logsumexp, cr.softmax, cr.log_softmax, cr.tanh], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_stable_ops_never_overflow(fn, dtype):
    # Not even in an intermediate step that happens to give the right limit (1 / (1 + e^1000) = 0)
    x = _leaf([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = fn(x)
        (y * np.arange(1.0, y.size + 1).reshape(y.shape)).sum().backward()
    assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(x.grad))


def test_softplus_and_sigmoid_float32_at_plus_minus_1000():
    # float32 overflows e^x already at x = 89; the stable forms must not
    x = _leaf([-1000.0, 1000.0], dtype="float32")
    with cr.detect_anomaly():
        y = cr.softplus(x) + cr.sigmoid(x)
        y.sum().backward()
    # softplus + sigmoid -> [0 + 0, 1000 + 1]; slopes [0 + 0, 1 + 0]
    np.testing.assert_array_equal(y.data, np.array([0.0, 1001.0], dtype=np.float32))
    np.testing.assert_array_equal(x.grad, np.array([0.0, 1.0], dtype=np.float32))


def test_logsumexp_and_softmax_at_large_logits():
    with cr.detect_anomaly():
        # logsumexp([1000, 1000]) = 1000 + log(e^0 + e^0) = 1000 + log 2; slopes 1/2 each
        x = _leaf([1000.0, 1000.0])
        out = cr.logsumexp(x)
        out.backward()
        assert out.item() == pytest.approx(1000 + math.log(2), rel=1e-15)
        np.testing.assert_allclose(x.grad, [0.5, 0.5], rtol=1e-12)  # e^(x - out): 1000's ulp is 1e-13
        # softmax([1000, 0]) = [1, e^-1000] = [1, 0]; log_softmax = [0, -1000]
        z = _leaf([1000.0, 0.0])
        np.testing.assert_array_equal(cr.softmax(z).data, [1.0, 0.0])
        np.testing.assert_array_equal(cr.log_softmax(z).data, [0.0, -1000.0])
        # d/dz of log_softmax(z)[1] = [0 - 1, 1 - 0]
        cr.log_softmax(z)[1].backward()
        np.testing.assert_array_equal(z.grad, [-1.0, 1.0])
        # Very negative logits too: logsumexp([-1000, -1000]) = -1000 + log 2
        assert cr.logsumexp(cr.tensor([-1000.0, -1000.0])).item() == pytest.approx(-1000 + math.log(2))


# ---- choices at non-differentiable points -----------------------------------------------------


def _grads(fn, *values):
    xs = [_leaf(v) for v in values]
    fn(*xs).sum().backward()
    return [x.grad for x in xs]


def test_relu_and_abs_have_slope_zero_at_zero():
    assert _grads(cr.relu, [0.0]) == [[0.0]]
    assert _grads(cr.abs, [0.0]) == [[0.0]]


def test_maximum_and_minimum_ties_share_half_each():
    ga, gb = _grads(cr.maximum, [1.0, 2.0], [1.0, 0.0])
    np.testing.assert_array_equal(ga, [0.5, 1.0])
    np.testing.assert_array_equal(gb, [0.5, 0.0])
    ga, gb = _grads(cr.minimum, [1.0, 2.0], [1.0, 0.0])
    np.testing.assert_array_equal(ga, [0.5, 0.0])
    np.testing.assert_array_equal(gb, [0.5, 1.0])
    # A broadcast scalar 3 against [3, 3, 1]: half of each tie plus all of the element it wins,
    # 1/2 + 1/2 + 1 = 2
    ga, gb = _grads(cr.maximum, [3.0, 3.0, 1.0], 3.0)
    np.testing.assert_array_equal(ga, [0.5, 0.5, 0.0])
    assert gb == 2.0


def test_max_ties_share_equally():
    # three tied maxima of 3: each gets 1/3; per row with axis=1: [1/2, 1/2, 0] and [0, 0, 1]
    (g,) = _grads(cr.max, [3.0, 1.0, 3.0, 3.0])
    np.testing.assert_allclose(g, [1 / 3, 0.0, 1 / 3, 1 / 3], rtol=1e-15)
    (g,) = _grads(lambda x: cr.max(x, axis=1), [[2.0, 2.0, 1.0], [0.0, 1.0, 5.0]])
    np.testing.assert_array_equal(g, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])


def test_clip_passes_the_gradient_at_its_bounds():
    # clip to [0, 1]: inside and at the bounds slope 1, outside slope 0
    (g,) = _grads(lambda x: cr.clip(x, 0.0, 1.0), [-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0, 1.0, 0.0])
    (g,) = _grads(lambda x: cr.clip(x, lo=0.0), [-1.0, 0.0, 5.0])
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0])


def test_clip_rejects_lo_above_hi():
    with pytest.raises(ValueError, match="lo=2.*hi=1"):
        cr.clip(cr.tensor([1.0]), 2.0, 1.0)


# ---- errors: shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, op, shapes",
    [
        (lambda: cr.tensor(np.ones((2, 3))) + cr.tensor(np.ones(4)), "add", ["(2, 3)", "(4,)"]),
        (lambda: cr.tensor(np.ones((2, 3))) * np.ones((3, 2)), "mul", ["(2, 3)", "(3, 2)"]),
        (lambda: cr.tensor(np.ones((2, 3))) @ cr.tensor(np.ones((4, 5))), "matmul", ["(2, 3)", "(4, 5)"]),
        (lambda: cr.reshape(cr.tensor(np.ones((2, 3))), (4, 2)), "reshape", ["(2, 3)", "(4, 2)"]),
        (
            lambda: cr.concatenate([cr.tensor(np.ones((2, 3))), cr.tensor(np.ones((2, 4)))]),
            "concatenate",
            ["(2, 3)", "(2, 4)"],
        ),
    ],
)
def test_shape_errors_name_the_op_and_the_shapes(fn, op, shapes):
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    assert message.startswith(op)
    for shape in shapes:
        assert shape in message


def test_index_errors_stay_index_errors():
    with pytest.raises(IndexError, match="getitem"):
        cr.tensor([1.0, 2.0])[5]


# ---- errors: anomalies ---------------------------------------------------------------------------


def test_detect_anomaly_names_the_op_of_a_forward_nan():
    x = _leaf([1.0, -1.0])
    with cr.detect_anomaly():
        with pytest.raises(cr.AnomalyError, match=r"'log' produced nan in its forward") as info:
            cr.log(x)
    assert "test_tensor.py" in str(info.value)  # and the user's line that created the op
    assert isinstance(info.value, FloatingPointError)


def test_detect_anomaly_names_the_op_of_a_backward_inf():
    # sqrt'(0) = 1 / (2 sqrt(0)) = inf
    x = _leaf([0.0, 4.0])
    with cr.detect_anomaly():
        y = cr.sqrt(x).sum()
        with pytest.raises(cr.AnomalyError, match=r"'sqrt' produced inf in its backward"):
            y.backward()


def test_without_detect_anomaly_nan_and_inf_pass_silently():
    x = _leaf([0.0, -1.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        y = cr.sqrt(x)
        assert np.isnan(y.data[1])
        y[0].backward()
    assert x.grad[0] == np.inf


def test_detect_anomaly_is_off_again_after_the_block():
    with cr.detect_anomaly():
        pass
    with np.errstate(invalid="ignore"):
        assert np.isnan(cr.log(cr.tensor(-1.0)).item())


# ---- errors: types -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["abc", ["a", "b"], None, {"a": 1}, [1.0, [2.0, 3.0]], 1 + 2j])
def test_tensor_of_non_numbers_raises_type_error(data):
    with pytest.raises(TypeError, match="expected"):
        cr.tensor(data)


@pytest.mark.parametrize(
    "fn, op",
    [
        (lambda x: x + "s", "add"),
        (lambda x: "s" + x, "add"),
        (lambda x: x * ["a"], "mul"),
        (lambda x: x - None, "sub"),
        (lambda x: x @ "m", "matmul"),
        (lambda x: cr.maximum(x, "a"), "maximum"),
    ],
)
def test_operands_of_the_wrong_type_raise_type_error(fn, op):
    with pytest.raises(TypeError, match=rf"^{op}: input \d must be a Tensor, a number or a numeric array"):
        fn(cr.tensor([1.0]))


def test_concatenate_wants_a_sequence():
    with pytest.raises(TypeError, match="list or tuple"):
        cr.concatenate(cr.tensor([1.0]))
    with pytest.raises(ValueError, match="at least one"):
        cr.stack([])


def test_backward_lets_go_of_each_node_once_past_it():
    # While exp's derivative is computed, the product node after it (already done) must be freed.
    import weakref

    from chainrule.ops import REGISTRY

    x = cr.tensor([1.0, 2.0], requires_grad=True)
    a = cr.exp(x)
    b = a * 3.0
    c = b.sum()
    gone = weakref.ref(b.data)
    del a, b
    seen, op = [], REGISTRY["exp"]
    original = op.vjps

    def watching(g, out, x):
        seen.append(gone() is None)
        return original[0](g, out, x)

    op.vjps = (watching,)
    try:
        c.backward()
    finally:
        op.vjps = original
    assert seen == [True]
    np.testing.assert_allclose(x.grad, 3.0 * np.exp([1.0, 2.0]))  # d(3 e^x)/dx = 3 e^x


# ---- graph(output): the public view of the record ------------------------------------------------


def test_the_graph_lists_leaves_and_nodes_inputs_first():
    x = cr.tensor([1.0, 2.0], name="x")  # a named constant: a leaf that needs no grad
    w = cr.tensor(0.5, requires_grad=True, name="w")
    loss = ((x * w + 1.0) ** 2).sum()
    g = cr.graph(loss)
    assert [n.op.name if n.op else n.name for n in g] == ["x", "w", "mul", "add", "pow", "sum"]
    assert [n.index for n in g] == list(range(len(g))) and g.output is g.nodes[-1]
    assert [n.name for n in g.leaves] == ["x", "w"] and g.node(w).requires_grad and not g.node(x).requires_grad
    add = g.nodes[3]
    assert add.inputs == (g.nodes[2], None) and add.args[1] == 1.0  # the constant 1.0: no node, its array
    assert add.args[0] is g.nodes[2].value  # the arrays the op received, as they are
    assert g.output.kwargs == {"axis": None, "keepdims": False} and g.output.tensor is loss
    for n in g:
        if n.op:  # each node's op gives its value again from its args and kwargs
            np.testing.assert_array_equal(n.op.fwd(*n.args, **n.kwargs), n.value)
    assert all(n.grad is None for n in g) and w in g and cr.tensor(1.0) not in g


def test_the_graph_of_a_leaf_is_the_leaf_and_an_unknown_tensor_is_a_key_error():
    w = cr.tensor(2.0, requires_grad=True)
    g = cr.graph(w)
    assert len(g) == 1 and g.output.op is None and g.leaves == [g.output]
    with pytest.raises(KeyError, match="not in the graph"):
        g.node(cr.tensor(1.0))
    with pytest.raises(TypeError, match="must be a Tensor"):
        cr.graph(np.ones(2))


def test_the_graph_reads_as_text():
    w = cr.tensor(3.0, requires_grad=True, name="w")
    text = repr(cr.graph(cr.exp(w * 2)))
    assert text.splitlines()[0] == "Graph of 3 nodes (1 leaf), output %2"
    assert "%1 = mul(%0, 2)" in text and "%2 = exp(%1)" in text and "'w' requires_grad" in text


def test_a_graph_freed_by_backward_says_to_retain_it():
    w = cr.tensor(3.0, requires_grad=True)
    loss = (w * w).sum()
    loss.backward()
    with pytest.raises(ValueError, match=r"graph\(\): .* already freed .* retain_graph=True"):
        cr.graph(loss)
    kept = (w * w).sum()
    kept.backward(retain_graph=True)
    assert len(cr.graph(kept)) == 3


def test_anomaly_error_lives_in_errors_and_is_re_exported():
    import importlib

    from chainrule import errors

    tensor_module = importlib.import_module("chainrule.tensor")  # cr.tensor is the function
    assert cr.AnomalyError is tensor_module.AnomalyError is errors.AnomalyError
