"""gradcheck: True for right gradients, a GradcheckError that says where for wrong ones."""

import re

import numpy as np
import pytest

import chainrule as cr
from chainrule.gradcheck import GradcheckError, gradcheck


def _leaf(values, dtype=None):
    return cr.tensor(values, requires_grad=True, dtype=dtype)


@pytest.mark.parametrize(
    "fn, inputs",
    [
        (lambda x: (x * x).sum(), [[1.0, -2.0, 3.0]]),
        (lambda x: cr.softplus(x) * x, [[-1.0, 0.0, 2.0]]),
        (lambda a, b: a @ b, [np.arange(6.0).reshape(2, 3), np.ones((3, 2))]),
        (lambda a, b: cr.log_softmax(a * b, axis=0), [[[1.0, 2.0], [0.5, -1.0]], [[2.0], [-3.0]]]),
        (lambda x: cr.mean((2 * x - 1) ** 2), [3.0]),
    ],
)
def test_right_gradients_pass(fn, inputs):
    assert gradcheck(fn, *[_leaf(v) for v in inputs]) is True


def test_detached_factor_is_caught_with_input_element_and_both_values():
    # f(x) = detach(x) * x: the true derivative of x^2 is 2x, backward gives detach(x) = x.
    x = _leaf([1.0, 2.0, 3.0])
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: t.detach() * t, x)
    err = info.value
    assert err.input == 0 and err.index == (0,)
    # For element 0 the check weights output 0 by v_0 (a fixed random vector): the numerical
    # derivative is v_0 * 2 * 1 and backward gives v_0 * 1, so numerical = 2 * analytical.
    assert err.numerical == pytest.approx(2 * err.analytical, rel=1e-6)
    assert err.analytical != 0
    message = str(err)
    for text in ("input 0", "element (0,)", f"{err.numerical:.10g}", f"{err.analytical:.10g}"):
        assert text in message


def test_scalar_output_gives_the_plain_derivatives():
    # f(x) = sum(detach(x) * x) at x = [1, 2]: numerical d/dx_0 = 2 * 1 = 2, backward gives 1.
    x = _leaf([1.0, 2.0])
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: (t.detach() * t).sum(), x)
    assert info.value.index == (0,)
    assert info.value.numerical == pytest.approx(2.0, rel=1e-8)
    assert info.value.analytical == 1.0


def test_the_wrong_input_and_element_are_named():
    # f(a, b) = a * b with b's gradient cut at element (1, 0) only: input 1, element (1, 0)
    a, b = _leaf([[1.0, 2.0], [3.0, 4.0]]), _leaf([[5.0, 6.0], [7.0, 8.0]])
    mask = np.array([[1.0, 1.0], [0.0, 1.0]])

    def fn(a, b):
        half_detached = b * mask + b.detach() * (1 - mask)
        return a * half_detached

    with pytest.raises(GradcheckError) as info:
        gradcheck(fn, a, b)
    assert (info.value.input, info.value.index) == (1, (1, 0))
    assert info.value.analytical == 0.0


def test_every_output_element_takes_part():
    # Only the last output element has a wrong gradient; a check on out[0] alone would miss it.
    x = _leaf([1.0, 2.0, 3.0])
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: cr.stack([t[0] * t[0], t[1] * t[1], t[2].detach() * t[2]]), x)
    assert info.value.index == (2,)


def test_a_fully_detached_output_is_reported_not_crashed():
    # f(x) = 2 detach(x): backward reaches no input (gradient 0), the true slope is 2.
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: t.detach() * 2, _leaf([1.0, 2.0]))
    assert info.value.analytical == 0.0 and info.value.numerical != 0.0
    # A constant function has gradient 0 both ways, and passes.
    assert gradcheck(lambda t: cr.tensor(1.0) + 0 * t.detach(), _leaf([1.0]))


def test_float32_and_array_inputs_are_checked_in_float64():
    # float32 inputs are promoted: the check's differences need float64 precision.
    assert gradcheck(lambda x: cr.tanh(x).sum(), _leaf([0.1, 0.2], dtype="float32"))
    # Plain float arrays are checked too; integer arrays and numbers pass through untouched.
    seen = []

    def fn(x, k, c):
        seen.append((type(x), k.dtype, c))
        return (x**2).sum() * c

    assert gradcheck(fn, np.array([1.0, 2.0]), np.array([1, 2]), 3.0)
    assert seen[0] == (cr.Tensor, np.dtype(int), 3.0)


def test_inputs_are_left_unchanged():
    x = _leaf([1.0, 2.0])
    before = x.data.copy()
    gradcheck(lambda t: (t * t).sum(), x)
    np.testing.assert_array_equal(x.data, before)
    assert x.grad is None


@pytest.mark.parametrize(
    "kw, name, allowed",
    [
        ({"eps": 0}, "eps", "> 0"),
        ({"eps": -1e-6}, "eps", "> 0"),
        ({"eps": "1e-6"}, "eps", "> 0"),
        ({"eps": float("nan")}, "eps", "> 0"),
        ({"atol": -1.0}, "atol", ">= 0"),
        ({"atol": None}, "atol", ">= 0"),
        ({"rtol": -0.1}, "rtol", ">= 0"),
        ({"rtol": float("inf")}, "rtol", ">= 0"),
    ],
)
def test_bad_settings_raise_value_error(kw, name, allowed):
    value = kw[name]
    with pytest.raises(
        ValueError, match=re.escape(f"gradcheck: {name} must be a finite number {allowed}, got {value!r}")
    ):
        gradcheck(lambda x: x * 2, _leaf([1.0]), **kw)


def test_fn_must_be_callable():
    with pytest.raises(TypeError, match=re.escape("gradcheck: fn must be a function of the inputs, got 'x * 2'")):
        gradcheck("x * 2", _leaf([1.0]))


def test_no_checked_input_raises_value_error():
    with pytest.raises(ValueError, match="no input to check"):
        gradcheck(lambda x: x * 2, cr.tensor([1.0]))


def test_fn_must_return_a_tensor():
    with pytest.raises(TypeError, match="must return a Tensor, got float"):
        gradcheck(lambda x: 1.0, _leaf([1.0]))


def test_tolerances_are_used():
    # d/dx (detach(x) * x) at x = 1: numerical 2, backward 1; |2 - 1| = 1 passes only with atol >= 1
    x = _leaf(1.0)
    assert gradcheck(lambda t: t.detach() * t, x, atol=1.01, rtol=0)
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: t.detach() * t, x, atol=0.99, rtol=0)
