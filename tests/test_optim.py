"""chainrule.optim: one hand-worked step of each optimizer, and hyperparameter checks."""

import math
import re

import numpy as np
import pytest

from chainrule.nn import Parameter
from chainrule.optim import OPTIMIZERS, Adagrad, Adam, AdamW, GradientDescent, Momentum, Optimizer, RMSprop


def _param(value, grad):
    p = Parameter(np.array(value, dtype=float), name="p")
    p.grad = np.array(grad, dtype=float)
    return p


# ---- hand-worked steps ---------------------------------------------------------------


def test_gradient_descent_step_by_hand():
    p = _param([1.0, -2.0], [0.5, -4.0])
    opt = GradientDescent(lr=0.1, params=[p])
    opt.step()
    # step = lr * g = 0.1 * (0.5, -4) = (0.05, -0.4); new = (1 - 0.05, -2 + 0.4) = (0.95, -1.6)
    np.testing.assert_allclose(opt.step_sizes[0], [0.05, -0.4])
    np.testing.assert_allclose(p.data, [0.95, -1.6])


def test_gradient_descent_reproduces_the_lessons_first_step():
    b3 = _param(0.0, -15.7)  # the lesson's dSSR/db3 at b3 = 0
    opt = GradientDescent(lr=0.1, params=[b3])
    opt.step()
    # step size = -15.7 x 0.1 = -1.57; new b3 = 0 - (-1.57) = 1.57
    assert isinstance(opt.step_sizes[0], np.ndarray)
    assert opt.step_sizes[0] == pytest.approx(-1.57)
    assert b3.item() == pytest.approx(1.57)


def test_momentum_two_steps_by_hand():
    p = _param(1.0, 2.0)
    opt = Momentum(lr=0.1, momentum=0.9, params=[p])
    opt.step()
    # v = g = 2; step = 0.1 * 2 = 0.2; p = 1 - 0.2 = 0.8
    assert opt.step_sizes[0] == pytest.approx(0.2)
    assert p.item() == pytest.approx(0.8)
    p.grad = np.array(1.0)
    opt.step()
    # v = 0.9 * 2 + 1 = 2.8; step = 0.1 * 2.8 = 0.28; p = 0.8 - 0.28 = 0.52
    assert opt.step_sizes[0] == pytest.approx(0.28)
    assert p.item() == pytest.approx(0.52)


def test_nesterov_momentum_two_steps_by_hand():
    p = _param(1.0, 2.0)
    opt = Momentum(lr=0.1, momentum=0.9, nesterov=True, params=[p])
    opt.step()
    # v = 2; step = 0.1 * (g + 0.9 v) = 0.1 * (2 + 1.8) = 0.38; p = 1 - 0.38 = 0.62
    assert opt.step_sizes[0] == pytest.approx(0.38)
    assert p.item() == pytest.approx(0.62)
    p.grad = np.array(1.0)
    opt.step()
    # v = 0.9 * 2 + 1 = 2.8; step = 0.1 * (1 + 0.9 * 2.8) = 0.1 * 3.52 = 0.352; p = 0.62 - 0.352 = 0.268
    assert opt.step_sizes[0] == pytest.approx(0.352)
    assert p.item() == pytest.approx(0.268)


def test_adam_two_steps_by_hand():
    p = _param([1.0, 1.0], [2.0, -0.5])
    opt = Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-8, params=[p])
    opt.step()
    # t = 1: m = 0.1 g, v = 0.001 g^2; m_hat = m / 0.1 = g, v_hat = v / 0.001 = g^2
    # step = 0.1 * g / (|g| + 1e-8) = 0.1 * sign(g) (to 1e-9): (0.1, -0.1)
    np.testing.assert_allclose(opt.step_sizes[0], [0.1 * 2 / (2 + 1e-8), 0.1 * -0.5 / (0.5 + 1e-8)], rtol=1e-12)
    np.testing.assert_allclose(p.data, [0.9, 1.1], rtol=1e-7)
    p.grad = np.array([1.0, -0.5])
    opt.step()
    # first element, t = 2: m = 0.9 * 0.2 + 0.1 * 1 = 0.28;  v = 0.999 * 0.004 + 0.001 * 1 = 0.004996
    # m_hat = 0.28 / (1 - 0.81) = 0.28 / 0.19;  v_hat = 0.004996 / (1 - 0.998001) = 0.004996 / 0.001999
    # step = 0.1 * m_hat / (sqrt(v_hat) + 1e-8)
    step0 = 0.1 * (0.28 / 0.19) / (math.sqrt(0.004996 / 0.001999) + 1e-8)
    # second element: the same gradient twice, so m_hat = g and v_hat = g^2 again: step = -0.1 (to 1e-7)
    np.testing.assert_allclose(opt.step_sizes[0], [step0, -0.1], rtol=1e-7)
    assert step0 == pytest.approx(0.0932, abs=1e-4)  # 0.1 * 1.47368 / 1.58090
    np.testing.assert_allclose(p.data, [0.9 - step0, 1.2], rtol=1e-7)


def test_adam_with_default_hyperparameters():
    opt = Adam()
    assert (opt.lr, opt.betas, opt.eps) == (0.001, (0.9, 0.999), 1e-8)


# ---- bookkeeping -----------------------------------------------------------------------


def test_step_sizes_are_available_after_step_with_the_parameters_shapes():
    a, b = _param([[1.0, 2.0]], [[0.1, 0.2]]), _param(3.0, 1.0)
    for opt in (GradientDescent(0.5, params=[a, b]), Momentum(0.5, params=[a, b]), Adam(0.5, params=[a, b])):
        assert opt.step_sizes == [None, None]
        opt.step()
        assert [np.shape(s) for s in opt.step_sizes] == [(1, 2), ()]
        assert all(isinstance(s, np.ndarray) for s in opt.step_sizes)


def test_a_parameter_without_a_gradient_does_not_move():
    p, q = _param([1.0, 2.0], [1.0, 1.0]), Parameter([5.0, 6.0], name="q")
    opt = Momentum(lr=0.1, params=[p, q])
    opt.step()
    np.testing.assert_array_equal(q.data, [5.0, 6.0])
    np.testing.assert_array_equal(opt.step_sizes[1], [0.0, 0.0])


def test_zero_grad_and_attach_reset():
    p = _param(1.0, 2.0)
    opt = Momentum(lr=0.1, params=[p])
    opt.step()
    assert opt.state[0] and opt.t == 1
    opt.zero_grad()
    assert p.grad is None
    opt.attach([p])
    assert opt.state == [{}] and opt.t == 0 and opt.step_sizes == [None]


def test_float32_parameters_stay_float32():
    for cls in (GradientDescent, Momentum, Adam, AdamW, RMSprop, Adagrad):
        p = Parameter(np.ones(3, dtype=np.float32))
        p.grad = np.full(3, 0.5, dtype=np.float32)
        cls(lr=0.1, params=[p]).step()
        assert p.dtype == np.float32


def test_registry_and_repr():
    assert OPTIMIZERS == {
        "gd": GradientDescent,
        "momentum": Momentum,
        "adam": Adam,
        "adamw": AdamW,
        "rmsprop": RMSprop,
        "adagrad": Adagrad,
    }
    assert all(issubclass(cls, Optimizer) for cls in OPTIMIZERS.values())
    assert repr(GradientDescent(lr=0.1)) == "GradientDescent(lr=0.1)"
    assert repr(Momentum(lr=0.1, momentum=0.5)) == "Momentum(lr=0.1, momentum=0.5, nesterov=False)"
    assert repr(Adam(lr=0.01)) == "Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-08)"
    assert repr(AdamW(lr=0.01)) == "AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01)"
    assert repr(RMSprop()) == "RMSprop(lr=0.01, rho=0.99, eps=1e-08)"
    assert repr(Adagrad(weight_decay=0.1)) == "Adagrad(lr=0.01, eps=1e-10, weight_decay=0.1)"


# ---- the newer rules, by hand and against NumPy written out here ----------------------------------


def test_rmsprop_two_steps_by_hand():
    p = _param(1.0, 2.0)
    opt = RMSprop(lr=0.01, rho=0.9, eps=0.0, params=[p])
    opt.step()
    # v = 0.9 x 0 + 0.1 x 2^2 = 0.4; step = 0.01 x 2 / sqrt(0.4) = 0.0316228; p = 0.9683772
    assert opt.step_sizes[0] == pytest.approx(0.02 / math.sqrt(0.4), rel=1e-12)
    p.grad = np.array(1.0)
    opt.step()
    # v = 0.9 x 0.4 + 0.1 x 1 = 0.46; step = 0.01 x 1 / sqrt(0.46) = 0.0147442
    assert opt.step_sizes[0] == pytest.approx(0.01 / math.sqrt(0.46), rel=1e-12)
    assert p.item() == pytest.approx(1 - 0.02 / math.sqrt(0.4) - 0.01 / math.sqrt(0.46), rel=1e-12)


def test_adagrad_two_steps_by_hand():
    p = _param(1.0, 2.0)
    opt = Adagrad(lr=0.1, eps=0.0, params=[p])
    opt.step()
    # s = 0 + 2^2 = 4; step = 0.1 x 2 / sqrt(4) = 0.1; p = 0.9
    assert opt.step_sizes[0] == pytest.approx(0.1, rel=1e-12) and p.item() == pytest.approx(0.9, rel=1e-12)
    p.grad = np.array(1.0)
    opt.step()
    # s = 4 + 1 = 5; step = 0.1 x 1 / sqrt(5) = 0.0447214; p = 0.8552786
    assert opt.step_sizes[0] == pytest.approx(0.1 / math.sqrt(5), rel=1e-12)


def test_adamw_decays_the_parameter_outside_the_moments():
    p = _param(1.0, 0.5)
    opt = AdamW(lr=0.1, eps=0.0, weight_decay=0.1, params=[p])
    opt.step()
    # m = 0.1 x 0.5 = 0.05, v = 0.001 x 0.25 = 0.00025; m^ = 0.05 / 0.1 = 0.5, v^ = 0.00025 / 0.001 = 0.25
    # Adam's step = 0.1 x 0.5 / sqrt(0.25) = 0.1; the decay 0.1 x 0.1 x 1 = 0.01: step 0.11, p = 0.89
    assert opt.step_sizes[0] == pytest.approx(0.11, rel=1e-12) and p.item() == pytest.approx(0.89, rel=1e-12)
    # Adam's coupled weight decay puts 0.1 x 1 into the gradient: g = 0.6, and its first step is lr x sign(g)
    q = _param(1.0, 0.5)
    coupled = Adam(lr=0.1, eps=0.0, weight_decay=0.1, params=[q])
    coupled.step()
    assert coupled.step_sizes[0] == pytest.approx(0.1, rel=1e-12)
    np.testing.assert_allclose(coupled.state[0]["m"], 0.1 * 0.6, rtol=1e-12)


def test_weight_decay_adds_to_the_gradient_of_every_optimizer():
    p = _param(2.0, 1.0)
    GradientDescent(lr=0.1, weight_decay=0.5, params=[p]).step()
    # g = 1 + 0.5 x 2 = 2; step = 0.1 x 2 = 0.2; p = 1.8
    assert p.item() == pytest.approx(1.8, rel=1e-12)


def _numpy_reference(kind, p, grads, lr=0.01, wd=0.05):
    """Each rule written out with NumPy from the papers' formulas (no chainrule)."""
    p, state = p.copy(), {}
    for t, g in enumerate(grads, start=1):
        if kind == "rmsprop":
            g = g + wd * p
            state["v"] = 0.99 * state.get("v", 0.0) + 0.01 * g * g
            p = p - lr * g / (np.sqrt(state["v"]) + 1e-8)
        elif kind == "adagrad":
            g = g + wd * p
            state["s"] = state.get("s", 0.0) + g * g
            p = p - lr * g / (np.sqrt(state["s"]) + 1e-10)
        else:  # adamw
            state["m"] = 0.9 * state.get("m", 0.0) + 0.1 * g
            state["v"] = 0.999 * state.get("v", 0.0) + 0.001 * g * g
            m_hat, v_hat = state["m"] / (1 - 0.9**t), state["v"] / (1 - 0.999**t)
            p = p - lr * m_hat / (np.sqrt(v_hat) + 1e-8) - lr * wd * p
    return p


@pytest.mark.parametrize("kind", ["rmsprop", "adagrad", "adamw"])
@pytest.mark.parametrize("packed", [False, True])
def test_the_new_rules_follow_numpy_written_out_from_the_papers(kind, packed):
    rng = np.random.default_rng(0)
    start, grads = rng.normal(size=6), [rng.normal(size=6) for _ in range(5)]
    params = [Parameter(start[:4].copy()), Parameter(start[4:].copy())] if packed else [Parameter(start.copy())]
    opt = OPTIMIZERS[kind](lr=0.01, weight_decay=0.05, params=params)
    for g in grads:
        for p, piece in zip(params, np.split(g, [4]) if packed else [g]):
            p.grad = piece.copy()
        opt.step()
    got = np.concatenate([p.data for p in params])
    np.testing.assert_allclose(got, _numpy_reference(kind, start, grads), rtol=1e-12, atol=1e-15)


# ---- invalid hyperparameters -------------------------------------------------------------------


def _raises(fn, name, allowed, value):
    """The error names the parameter, the allowed range and the value received."""
    with pytest.raises(ValueError, match=re.escape(f"{name} must be {allowed}, got {value!r}")):
        fn()


@pytest.mark.parametrize("cls", [GradientDescent, Momentum, Adam])
@pytest.mark.parametrize("lr", [0, 0.0, -0.1, math.nan, math.inf, "0.1", None, True])
def test_invalid_learning_rates(cls, lr):
    _raises(lambda: cls(lr=lr), f"{cls.__name__}: lr", "a finite number > 0", lr)


@pytest.mark.parametrize("momentum", [1, 1.0, -0.1, 1.5, math.nan])
def test_invalid_momentum(momentum):
    _raises(lambda: Momentum(lr=0.1, momentum=momentum), "Momentum: momentum", "a number in [0, 1)", momentum)


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        Momentum(lr=0.1, momentum=0.0, nesterov=True)
    assert Momentum(lr=0.1, momentum=0.0).momentum == 0.0  # plain gradient descent is allowed


@pytest.mark.parametrize(
    "betas, which, value",
    [
        ((1.0, 0.999), "betas[0]", 1.0),
        ((-0.1, 0.999), "betas[0]", -0.1),
        ((0.9, 1.0), "betas[1]", 1.0),
        ((0.9, 1.2), "betas[1]", 1.2),
        ((0.9, math.nan), "betas[1]", math.nan),
    ],
)
def test_invalid_betas(betas, which, value):
    _raises(lambda: Adam(betas=betas), f"Adam: {which}", "a number in [0, 1)", value)


@pytest.mark.parametrize("betas", [(0.9,), (0.9, 0.99, 0.999), 0.9])
def test_betas_must_be_a_pair(betas):
    with pytest.raises(ValueError, match="betas must be a pair"):
        Adam(betas=betas)


@pytest.mark.parametrize("eps", [-1e-8, math.nan, math.inf])
def test_invalid_eps(eps):
    _raises(lambda: Adam(eps=eps), "Adam: eps", "a finite number >= 0", eps)


def test_boundary_hyperparameters_are_accepted():
    assert Adam(lr=1e-12, betas=(0.0, 0.0), eps=0.0).eps == 0.0
    assert Momentum(lr=5, momentum=0.999).lr == 5.0


# ---- parameters packed into one buffer ------------------------------------------------------


@pytest.mark.parametrize("make", [lambda ps: Momentum(0.1, params=ps), lambda ps: Adam(0.1, params=ps)])
def test_packing_changes_nothing_even_when_a_gradient_is_missing(make):
    # Reference: each parameter with its own optimizer (never packed). A step without b's gradient
    # must leave b and its state alone in both.
    def run(packed):
        a, b = Parameter(1.0, name="a"), Parameter(1.0, name="b")
        opts = [make([a, b])] if packed else [make([a]), make([b])]
        for has_b in (True, False, True):
            a.grad, b.grad = np.array(1.0), (np.array(1.0) if has_b else None)
            for opt in opts:
                opt.step()
        return a.item(), b.item()

    assert run(packed=True) == run(packed=False)


def test_a_parameter_given_a_new_array_is_still_optimized():
    a, b = Parameter(1.0, name="a"), Parameter(2.0, name="b")
    opt = GradientDescent(0.5, params=[a, b])
    a.data = np.array(10.0)  # as a user might reset a value
    a.grad, b.grad = np.array(2.0), np.array(2.0)
    opt.step()
    assert (a.item(), b.item()) == (9.0, 1.0)  # 10 - 0.5 x 2 and 2 - 0.5 x 2


# ---- large parameters: not packed, steps applied and let go -----------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda ps: GradientDescent(0.5, params=ps), lambda ps: Momentum(0.5, params=ps), lambda ps: Adam(0.5, params=ps)],
)
def test_a_large_parameter_keeps_no_step_but_moves_as_a_small_one_does(make):
    from chainrule import optim

    rng = np.random.default_rng(0)
    n = optim.KEEP_LIMIT + 5  # more than one piece of the in-place update
    big, twin = Parameter(rng.normal(size=(n,))), Parameter(np.zeros(n))
    twin.data[...] = big.data
    g = rng.normal(size=(n,))
    kept = make([twin])
    kept.keep_limit = math.inf  # the reference: the same rule with its step kept
    opt = make([big])
    for _ in range(2):
        big.grad, twin.grad = g.copy(), g.copy()
        opt.step()
        kept.step()
    assert opt.step_sizes == [None] and kept.step_sizes[0].shape == (n,)
    np.testing.assert_array_equal(big.data, twin.data)
    assert opt.largest_step() == kept.largest_step() == np.max(np.abs(kept.step_sizes[0]))


def test_gradient_descent_on_a_large_parameter_by_hand():
    from chainrule import optim

    n = optim.KEEP_LIMIT + 3
    p = Parameter(np.full((n,), 1.0))
    p.grad = np.arange(n, dtype=float)
    opt = GradientDescent(0.5, params=[p])
    opt.step()
    # new = 1 - 0.5 k for element k; the largest step is 0.5 (n - 1)
    np.testing.assert_array_equal(p.data, 1.0 - 0.5 * np.arange(n))
    assert opt.largest_step() == 0.5 * (n - 1)
    p.grad[7] = np.nan
    opt.step()
    assert math.isnan(opt.largest_step())


def test_parameters_beyond_the_pack_limit_are_not_packed():
    from chainrule import optim

    small = [Parameter(np.zeros(3)), Parameter(np.zeros(4))]
    large = [Parameter(np.zeros(optim.PACK_LIMIT)), Parameter(np.zeros(2))]
    GradientDescent(0.1, params=small)
    GradientDescent(0.1, params=large)
    assert small[0].data.base is small[1].data.base is not None
    assert large[0].data.base is None and large[1].data.base is None


# ---- restore: carry on from steps taken elsewhere ------------------------------------------


def _flat_state(opt):
    """The optimizer's state, each entry flat in parameter order (as restore takes it)."""
    if len(opt.state) == 1 and len(opt.params) > 1:  # packed: already one flat buffer per entry
        return {k: v.copy() for k, v in opt.state[0].items()}
    keys = opt.state[0].keys()
    return {k: np.concatenate([s[k].ravel() for s in opt.state]) for k in keys}


@pytest.mark.parametrize("make", [lambda ps: Adam(lr=0.1, params=ps), lambda ps: Momentum(lr=0.1, params=ps)])
@pytest.mark.parametrize("dtypes", [(np.float64, np.float64), (np.float64, np.float32)])  # packed, and not
def test_restore_stands_as_after_the_steps_it_is_given(make, dtypes):
    def params():
        return [Parameter(np.array([1.0, -2.0], dtype=dtypes[0])), Parameter(np.array([[0.5]], dtype=dtypes[1]))]

    def grads(ps, k):
        for p in ps:
            p.grad = np.full(p.shape, 0.3 * k - 0.4, dtype=p.dtype)

    ran, restored = params(), params()
    first = make(ran)
    for k in range(3):
        grads(ran, k)
        first.step()
    for p, q in zip(restored, ran):
        p.data[...] = q.data
    second = make(restored)
    second.restore(first.t, np.concatenate([s.ravel() for s in first.step_sizes]), _flat_state(first))
    assert second.t == 3 and second.largest_step() == first.largest_step()
    for opt, ps in ((first, ran), (second, restored)):
        grads(ps, 3)
        opt.step()
    for p, q in zip(restored, ran):
        np.testing.assert_array_equal(p.data, q.data)
