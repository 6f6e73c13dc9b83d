"""fit(compile=True) on tiny float64 graphs: the step written out as plain Python (chainrule.scalar).

The expected numbers come from the eager engine (compile=False), from NumPy loops
of the lessons' chain rule written here, or from arithmetic worked in comments.
"""

import re
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import dosage
from chainrule.losses import ssr
from chainrule.nn import DosageNetwork, Linear, Module, Parameter, Sequential, Sigmoid, mlp
from chainrule.optim import Adam, GradientDescent, Momentum
from chainrule.scalar import RECHECK, Unsupported, program_source
from chainrule.trace import CompileWarning
from chainrule.train import DivergenceError

# Written out against eager is Python's math against NumPy: not bit for bit. NumPy's SIMD loops (AVX-512)
# give exp and log1p 1 ulp away from math's on ~5% of inputs, sums may be added in another order, and a
# last-bit difference grows over the iterations. The allowance is absolute (derivatives and steps end near
# 0) and measured as the largest |written out - eager| beyond RTOL x |eager| over every comparison here:
# 6e-14 on an AVX-512 machine (the lessons' 1000 iterations; 0 without AVX-512), 2e-13 with NumPy's exp,
# log, log1p, tanh and logaddexp made 1 ulp off on every result, 2e-12 with them 4 ulp off. ATOL is five
# times the last. A softplus derivative wrong in its ninth digit moves the lessons' values by 8e-10, 76
# times ATOL: test_the_allowance_catches_a_derivative_wrong_in_its_ninth_digit.
RTOL, ATOL = 1e-12, 1e-11
START = (2.0, 0.0, -2.0, 0.0, 1.0, 1.0, 0.0)  # w1, b1, w2, b2, w3, w4, b3


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        yield


def _fit(make, x, y, compiled, **kw):
    """(model, history) of one run; a CompileWarning is an error (a silent fallback would prove nothing)."""
    model = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        return model, cr.fit(model, x, y, compile=compiled, **kw)


def _both(make, x, y, **kw):
    return [_fit(make, x, y, compiled, **kw) for compiled in (False, True)]


def _fields(history, name, field):
    return np.array([np.asarray(v, dtype=float) for v in getattr(history.params[name], field)])


def _close(runs, rtol=RTOL, atol=ATOL):
    """The compiled run's History and parameters against the eager run's, to rounding."""
    (a, ha), (b, hb) = runs
    _close_history(ha, hb, rtol, atol)
    for name, value in a.state_dict().items():
        np.testing.assert_allclose(b.state_dict()[name], value, rtol=rtol, atol=atol, err_msg=name)


def _close_history(ha, hb, rtol=RTOL, atol=ATOL):
    assert ha.engine == "eager"
    assert (hb.n_iter, hb.stop_reason, hb.converged, hb.best_iter) == (
        ha.n_iter,
        ha.stop_reason,
        ha.converged,
        ha.best_iter,
    )
    np.testing.assert_allclose(hb.loss, ha.loss, rtol=rtol, atol=atol)
    assert list(hb.params) == list(ha.params)
    for name in ha.params:
        for field in ("value", "derivative", "step"):
            np.testing.assert_allclose(
                _fields(hb, name, field), _fields(ha, name, field), rtol=rtol, atol=atol, err_msg=f"{name}: {field}"
            )


def _identical(runs):
    """Bit for bit: what the NumPy replay promises."""
    (a, ha), (b, hb) = runs
    assert (hb.n_iter, hb.stop_reason) == (ha.n_iter, ha.stop_reason)
    np.testing.assert_array_equal(hb.loss, ha.loss)
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[name], value)


def _same_words(messages, expected):
    """Messages (health events, errors) equal word for word, their decimal numbers to the digits printed.

    They print derivatives and losses to 3 or 6 digits, and a last-bit difference between Python's math
    and NumPy can round one the other way; counts and iterations (whole numbers) must match exactly.
    """
    number = re.compile(r"\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+")
    assert [number.sub("#", m) for m in messages] == [number.sub("#", m) for m in expected]
    got, want = ([float(v) for m in ms for v in number.findall(m)] for ms in (messages, expected))
    assert got == pytest.approx(want, rel=1e-2)


def _lessons_net():
    return DosageNetwork(*START)


def numpy_descent(start, lr, max_iter, skew=1.0):
    """The lessons' chain rule for all seven parameters, in NumPy: losses and values before each iteration.

    ``skew`` scales softplus' derivative: anything but 1 is a wrong derivative, which the tests must catch.
    """
    x, observed = dosage()
    p = dict(zip(DosageNetwork.NAMES, start))
    losses, values = [], []
    for _ in range(max_iter):
        x1, x2 = x * p["w1"] + p["b1"], x * p["w2"] + p["b2"]
        y1, y2 = np.log1p(np.exp(x1)), np.log1p(np.exp(x2))  # softplus
        s1, s2 = skew * np.exp(x1) / (1 + np.exp(x1)), np.exp(x2) / (1 + np.exp(x2))  # softplus'
        predicted = p["w3"] * y1 + p["w4"] * y2 + p["b3"]
        d = -2 * (observed - predicted)  # dSSR/dPredicted_i
        g = {
            "w1": np.sum(d * p["w3"] * s1 * x),
            "b1": np.sum(d * p["w3"] * s1),
            "w2": np.sum(d * p["w4"] * s2 * x),
            "b2": np.sum(d * p["w4"] * s2),
            "w3": np.sum(d * y1),
            "w4": np.sum(d * y2),
            "b3": np.sum(d),
        }
        losses.append(np.sum((observed - predicted) ** 2))
        values.append(dict(p))
        for name in p:
            p[name] -= g[name] * lr  # new = old - derivative x lr
    return np.array(losses), values, p


# ---- the lessons' network ----------------------------------------------------------------


def test_the_lessons_network_is_written_out_and_matches_eager():
    x, y = dosage()
    runs = _both(_lessons_net, x, y, loss="ssr", optimizer=GradientDescent(0.1), tol=0, max_iter=1000)
    assert runs[1][1].engine == "python"
    assert runs[1][1].n_iter == 1000 and runs[1][1].stop_reason.startswith("reached max_iter = 1000")
    _close(runs)
    # Both end near 0 (2.9e-9 and 6.9e-15), where the allowance is absolute: the largest last step is
    # within it, and the best loss is the loss of the best iteration (the same in both, checked above).
    assert runs[1][1].largest_step == pytest.approx(runs[0][1].largest_step, rel=RTOL, abs=ATOL)
    assert runs[1][1].best_loss == runs[1][1].loss[runs[1][1].best_iter - 1]


def test_the_lessons_network_matches_a_numpy_loop_of_the_chain_rule():
    x, y = dosage()
    net, history = _fit(_lessons_net, x, y, True, optimizer=GradientDescent(0.1), tol=0, max_iter=1000)
    losses, values, final = numpy_descent(START, lr=0.1, max_iter=1000)
    assert history.engine == "python"
    # The loss falls to ~7e-15, where the residuals cancel: compare it with an absolute allowance there.
    np.testing.assert_allclose(history.loss, losses, rtol=RTOL, atol=ATOL)
    for name in DosageNetwork.NAMES:
        np.testing.assert_allclose(
            _fields(history, name, "value"), [v[name] for v in values], rtol=RTOL, atol=ATOL, err_msg=name
        )
        assert getattr(net, name).item() == pytest.approx(final[name], rel=RTOL, abs=ATOL)


def test_the_allowance_catches_a_derivative_wrong_in_its_ninth_digit():
    x, y = dosage()
    _, history = _fit(_lessons_net, x, y, True, optimizer=GradientDescent(0.1), tol=0, max_iter=1000)
    _, values, _ = numpy_descent(START, lr=0.1, max_iter=1000, skew=1 + 1e-9)
    for name in ("w1", "b1", "w3"):  # the parameters the wrong derivative reaches first
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(_fields(history, name, "value"), [v[name] for v in values], rtol=RTOL, atol=ATOL)


def test_the_lessons_b3_run_written_out():
    net, history = _fit(lambda: DosageNetwork.from_lesson(b3=0.0), *dosage(), True, params=["b3"])
    frozen = {n: getattr(DosageNetwork.from_lesson(), n).data.tobytes() for n in DosageNetwork.NAMES if n != "b3"}
    assert history.engine == "python"
    trace = history.params["b3"]
    # MISSION.md: b3 0 -> 1.57 -> 2.19 -> 2.44 -> 2.54; dSSR/db3 = -15.66 at 0; SSR 20.42 at 0;
    # stops after 10 iterations at 2.609
    assert [round(float(v), 2) for v in trace.value[:5]] == [0.0, 1.57, 2.19, 2.44, 2.54]
    assert round(float(trace.derivative[0]), 2) == -15.66 and round(history.loss[0], 2) == 20.42
    assert history.n_iter == 10 and history.converged and round(net.b3.item(), 3) == 2.609
    assert {n: getattr(net, n).data.tobytes() for n in frozen} == frozen


class _Slope(Module):
    """predicted = w x: one parameter."""

    def __init__(self, w=0.0):
        self.w = Parameter(w)

    def forward(self, x):
        return x * self.w


def test_a_one_parameter_model_by_hand():
    # Dosage data x = (0, 0.5, 1), y = (0, 1, 0): SSR = (1 - 0.5 w)^2 + w^2, dSSR/dw = 2.5 w - 1.
    # lr 0.1: step = 0.25 w - 0.1, new w = 0.75 w + 0.1, so w_n = 0.4 (1 - 0.75^n) and the step
    # of iteration n + 1 is -0.1 x 0.75^n. It falls below 0.001 first for n = 17 (0.75^16 = 0.01002,
    # 0.75^17 = 0.0075): 18 iterations, ending at w_18.
    net, history = _fit(_Slope, *dosage(), True, optimizer=GradientDescent(0.1), tol=0.001)
    assert history.engine == "python"
    assert history.n_iter == 18 and history.converged
    assert history.loss[0] == 1.0 and float(history.params["w"].derivative[0]) == -1.0
    np.testing.assert_allclose(
        _fields(history, "w", "value"), [0.4 * (1 - 0.75**n) for n in range(18)], rtol=1e-13, atol=1e-16
    )
    np.testing.assert_allclose(_fields(history, "w", "step"), [-0.1 * 0.75**n for n in range(18)], rtol=1e-12)
    assert net.w.item() == pytest.approx(0.4 * (1 - 0.75**18), rel=1e-13)


# ---- optimizers: the same steps and the same state afterwards ----------------------------------

OPTIMIZERS = {
    "momentum": lambda: Momentum(0.01, momentum=0.9),
    "nesterov": lambda: Momentum(0.01, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(0.05),
    "adam-eps-hat": lambda: Adam(0.05, eps=1e-2, eps_hat=True),  # (an eps large enough to change the steps)
}


def _state(opt):
    """The optimizer's per-parameter state as plain arrays (Adam's scratch buffer is not state)."""
    return [{k: np.array(v, dtype=float) for k, v in s.items() if k != "scratch"} for s in opt.state]


def _continue(net, opt, steps):
    """A few more steps by hand, through the optimizer's own step(): its state must be the right one."""
    x, y = dosage()
    for _ in range(steps):
        for p in opt.params:
            p.grad = None
        ssr(net(x), y).backward()
        opt.step()


@pytest.mark.parametrize("trained", [None, ["b3"]], ids=["all-seven", "b3-only"])
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_optimizers_written_out_match_eager_and_leave_the_same_state(kind, trained):
    x, y = dosage()
    runs = {}
    for compiled in (False, True):
        net, opt = _lessons_net(), OPTIMIZERS[kind]()
        run = runs[compiled] = {"histories": [], "optimizer": [], "values": []}
        for max_iter in (150, 120):  # fit twice: the second fit starts where the first ended
            run["histories"].append(
                cr.fit(net, x, y, optimizer=opt, params=trained, tol=0, max_iter=max_iter, compile=compiled)
            )
            run["optimizer"].append((opt.t, _state(opt), [np.array(s, dtype=float) for s in opt.step_sizes]))
            run["values"].append(net.state_dict())
        _continue(net, opt, steps=30)
        run["t"], run["values"] = opt.t, run["values"] + [net.state_dict()]
    eager, written = runs[False], runs[True]
    assert [h.engine for h in written["histories"]] == ["python", "python"]
    for he, hw in zip(eager["histories"], written["histories"]):
        _close_history(he, hw)
    for (t_e, state_e, steps_e), (t_w, state_w, steps_w), t in zip(
        eager["optimizer"], written["optimizer"], (150, 120)
    ):
        assert t_w == t_e == t
        assert [sorted(s) for s in state_w] == [sorted(s) for s in state_e]
        for se, sw in zip(state_e, state_w):
            for key in se:
                np.testing.assert_allclose(sw[key], se[key], rtol=RTOL, atol=ATOL, err_msg=key)
        for se, sw in zip(steps_e, steps_w):
            np.testing.assert_allclose(sw, se, rtol=RTOL, atol=ATOL)
    assert written["t"] == eager["t"] == 150  # 120 + 30 steps by hand
    for ve, vw in zip(eager["values"], written["values"]):  # after each fit, and after the steps by hand
        for name in ve:
            np.testing.assert_allclose(vw[name], ve[name], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("kind", ["gd", *sorted(OPTIMIZERS)])
def test_tol_stops_at_the_same_iteration_as_eager(kind):
    make_opt = OPTIMIZERS.get(kind, lambda: GradientDescent(0.1))
    runs = _both(_lessons_net, *dosage(), optimizer=make_opt(), tol=0.001, max_iter=1000)
    (_, eager), (_, written) = runs
    assert written.engine == "python"
    assert eager.converged and eager.n_iter < 1000  # the test is about stopping early
    _close(runs)


# ---- chosen parameters, small MLPs -----------------------------------------------------------


@pytest.mark.parametrize("by", ["names", "parameters"])
def test_a_subset_of_parameters_trains_and_the_rest_stay_bit_for_bit(by):
    x, y = dosage()

    def make():
        return DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0)

    def chosen(net):
        return ["w3", "w4", "b3"] if by == "names" else [net.w3, net.w4, net.b3]

    runs = []
    for compiled in (False, True):
        net = make()
        before = {n: getattr(net, n).data.tobytes() for n in ("w1", "b1", "w2", "b2")}
        history = cr.fit(net, x, y, params=chosen(net), tol=0.0001, max_iter=400, compile=compiled)
        assert {n: getattr(net, n).data.tobytes() for n in before} == before
        runs.append((net, history))
    assert runs[1][1].engine == "python" and list(runs[1][1].params) == ["w3", "w4", "b3"]
    assert round(runs[1][1].loss[0], 2) == 1.40  # MISSION.md: SSR = 1.40 at w3 = 0.36, w4 = 0.63, b3 = 0
    _close(runs)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "softplus"])
def test_a_small_mlp_is_written_out_for_each_activation(activation):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(5, 1))
    y = np.sin(x[:, 0])
    runs = _both(
        lambda: mlp([1, 3, 1], activation=activation, seed=3),
        x,
        y,
        loss="mse",
        optimizer=GradientDescent(0.2),
        tol=0,
        max_iter=300,
    )
    assert runs[1][1].engine == "python"
    assert runs[1][1].loss[-1] < runs[1][1].loss[0] / 2  # it learned something
    _close(runs)


def test_a_trained_parameter_the_loss_does_not_use_stays_put():
    class Spare(Module):
        def __init__(self):
            self.w, self.unused = Parameter(0.0), Parameter(0.7)

        def forward(self, x):
            return x * self.w

    runs = _both(Spare, *dosage(), optimizer=Adam(0.05), tol=0, max_iter=50)
    assert runs[1][1].engine == "python"
    assert runs[1][0].unused.item() == 0.7
    _close(runs)


# ---- callbacks -----------------------------------------------------------------------------


def test_the_callback_sees_every_iteration_and_can_stop_training():
    x, y = dosage()
    seen = {}
    for compiled in (False, True):
        net = _lessons_net()
        calls = seen[compiled] = []

        def callback(history, net=net, calls=calls):
            calls.append((history.n_iter, len(history.loss), net.b3.item(), float(history.params["b3"].value[-1])))
            return history.n_iter == 7

        history = cr.fit(net, x, y, tol=0, max_iter=1000, callback=callback, compile=compiled)
        assert history.n_iter == 7 and history.stop_reason == "stopped by the callback at iteration 7"
        assert not history.converged
        assert history.engine == ("python" if compiled else "eager")
    assert [c[:2] for c in seen[True]] == [(k, k) for k in range(1, 8)]  # once per iteration, n_iter + 1 each
    np.testing.assert_allclose(np.array(seen[True])[:, 2:], np.array(seen[False])[:, 2:], rtol=RTOL, atol=ATOL)


def test_a_callback_stopping_at_the_converging_iteration_reports_convergence_as_eager_does():
    x, y = dosage()
    runs = []
    for compiled in (False, True):
        net = DosageNetwork.from_lesson(b3=0.0)
        history = cr.fit(net, x, y, params=["b3"], callback=lambda h: h.n_iter == 10, compile=compiled)
        runs.append(history)
    assert runs[0].converged and runs[0].n_iter == 10  # the lessons' run converges at iteration 10
    assert (runs[1].stop_reason, runs[1].converged) == (runs[0].stop_reason, runs[0].converged)


def test_a_callback_that_lowers_the_learning_rate_is_obeyed():
    x, y = dosage()
    steps = []
    for compiled in (False, True):
        net, opt = DosageNetwork.from_lesson(b3=0.0), GradientDescent(0.1)

        def callback(history, opt=opt):
            if history.n_iter == 2:
                opt.lr = 0.01

        history = cr.fit(
            net, x, y, params=["b3"], optimizer=opt, tol=0, max_iter=5, callback=callback, compile=compiled
        )
        steps.append(_fields(history, "b3", "step"))
    # iteration 3 onwards: step = derivative x 0.01
    np.testing.assert_allclose(steps[1], steps[0], rtol=RTOL, atol=ATOL)


def test_a_callback_that_sets_a_parameter_is_obeyed():
    x, y = dosage()
    ends = []
    for compiled in (False, True):
        net = DosageNetwork.from_lesson(b3=0.0)

        def callback(history, net=net):
            if history.n_iter == 2:
                net.b3.data[...] = 5.0

        history = cr.fit(net, x, y, params=["b3"], tol=0, max_iter=5, callback=callback, compile=compiled)
        ends.append((float(history.params["b3"].value[2]), net.b3.item()))
    assert ends[0][0] == 5.0  # eager: iteration 3 starts from the value the callback set
    assert ends[1] == pytest.approx(ends[0], rel=RTOL)


# ---- the gradient monitor -----------------------------------------------------------------


def _sigmoid_chain():
    """Eight 1 x 1 Linear layers, each followed by a sigmoid: the first layers' derivatives vanish."""
    layers = []
    for i in range(8):
        layers += [Linear(1, 1, seed=i), Sigmoid()]
    return Sequential(*layers, Linear(1, 1, seed=99))


def test_the_gradient_monitor_flags_the_same_events_as_eager():
    x, y = dosage()
    runs = []
    for compiled in (False, True):
        # patience 150 > one block of iterations: a run of small derivatives is counted across blocks
        monitor = cr.GradientMonitor(vanishing=1e-2, patience=150)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, history = _fit(_sigmoid_chain, x, y, compiled, tol=0, max_iter=300, monitor=monitor)
        health = [w for w in caught if w.category is cr.GradientHealthWarning]
        assert [str(w.message) for w in health] == history.health_events
        assert all(w.filename == __file__ for w in health)  # the warning points at the caller
        runs.append(history)
    eager, written = runs
    assert written.engine == "python"
    assert len(eager.health_events) >= 3 and all("vanishing" in e for e in eager.health_events)
    assert any("iteration 150:" in e for e in eager.health_events)  # in the second block of iterations
    assert any("iteration 170:" in e for e in eager.health_events)  # later in it
    _same_words(written.health_events, eager.health_events)


# ---- divergence and math errors --------------------------------------------------------------


def _diverge(make, x, y, compiled, **kw):
    """(the DivergenceError, the model, the health events warned) of a run that must diverge."""
    model = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", cr.GradientHealthWarning)
        with pytest.raises(cr.DivergenceError) as info:
            cr.fit(model, x, y, compile=compiled, tol=0, max_iter=1000, **kw)
    return info.value, model, [str(w.message) for w in caught if w.category is cr.GradientHealthWarning]


def _same_divergence(runs, engine):
    (ea, a, wa), (eb, b, wb) = runs
    assert type(eb) is type(ea) is DivergenceError is cr.DivergenceError
    assert (eb.iteration, eb.parameter) == (ea.iteration, ea.parameter)
    _same_words([str(eb)], [str(ea)])
    for name, value in a.state_dict().items():  # restored to the same (best) values, to rounding (see ATOL)
        np.testing.assert_allclose(b.state_dict()[name], value, rtol=RTOL, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(eb.history.loss, ea.history.loss, rtol=RTOL, atol=ATOL)
    assert wa == ea.history.health_events and wb == eb.history.health_events
    _same_words(eb.history.health_events, ea.history.health_events)
    if engine is not None:
        assert eb.history.engine == engine


@pytest.mark.parametrize(
    "make_opt",
    [lambda: GradientDescent(100.0), lambda: Momentum(1.0, momentum=0.9)],
    ids=["gd-lr-100", "momentum-lr-1"],
)
def test_divergence_is_reported_as_eager_reports_it(make_opt):
    x, y = dosage()
    runs = [_diverge(_lessons_net, x, y, compiled, optimizer=make_opt()) for compiled in (False, True)]
    error = runs[0][0]
    assert error.iteration > 1 and "diverged at iteration" in str(error)
    assert any(e.startswith("exploding") for e in error.history.health_events)
    _same_divergence(runs, engine=None)


def test_the_history_of_a_divergence_on_the_scalar_path_names_its_engine():
    error, *_ = _diverge(_lessons_net, *dosage(), True, optimizer=GradientDescent(100.0))
    assert error.history.engine == "python"


class _TwoSlopes(Module):
    def __init__(self):
        self.a, self.b = Parameter(0.0), Parameter(0.0)

    def forward(self, x):
        return x * self.a + x * self.b


def test_finite_steps_whose_sum_overflows_are_not_a_divergence():
    # loss = a + b at x = 1, so both derivatives are 1 and both steps are lr = 1e308 (finite); their
    # sum is inf. Eager takes the step, and the loss at a = b = -1e308 is -inf: it diverges at iteration 2.
    x, y = np.array([1.0]), np.array([0.0])
    runs = [
        _diverge(_TwoSlopes, x, y, compiled, loss=lambda p, t: p.sum(), optimizer=GradientDescent(1e308))
        for compiled in (False, True)
    ]
    assert runs[0][0].iteration == 2
    _same_divergence(runs, engine=None)


class _Log(Module):
    """predicted = log(x w + 1): a log of a negative number once x w < -1."""

    def __init__(self, w):
        self.w = Parameter(w)

    def forward(self, x):
        return cr.log(x * self.w + 1.0)


class _Exp(Module):
    """predicted = e^(x w): math.exp raises OverflowError beyond 709.78, NumPy's gives inf."""

    def __init__(self, w):
        self.w = Parameter(w)

    def forward(self, x):
        return cr.exp(x * self.w)


@pytest.mark.parametrize(
    "make, y, lr, engine, iteration, first_loss",
    [
        # x = (1, 2). At w = -1: log(1 - 1) = log 0 and log(1 - 2) = log -1 at iteration 1, nothing written out
        (lambda: _Log(-1.0), [-3.0, -3.0], 0.1, "numpy", 1, None),
        # At w = 1: SSR = (3 + log 2)^2 + (3 + log 3)^2 and
        # dSSR/dw = -2 [(-3 - log 2) / 2 + (-3 - log 3) x 2 / 3] = 9.16, so w = 1 - 0.3 x 9.16 = -1.75:
        # log(1 - 1.75) is a log of a negative number at iteration 2
        (lambda: _Log(1.0), [-3.0, -3.0], 0.3, "python+numpy", 2, (3 + np.log(2)) ** 2 + (3 + np.log(3)) ** 2),
        # At w = 0: SSR = 2 x 99^2 = 19602, dSSR/dw = -2 x 99 x (1 + 2) = -594; lr 0.6 makes w = 356.4,
        # and e^(2 x 356.4) overflows at iteration 2
        (lambda: _Exp(0.0), [100.0, 100.0], 0.6, "python+numpy", 2, 19602.0),
    ],
    ids=["log-at-once", "log-later", "exp-overflow"],
)
def test_a_math_error_in_python_hands_the_iteration_to_numpy(make, y, lr, engine, iteration, first_loss):
    x = np.array([1.0, 2.0])
    with np.errstate(divide="ignore"):
        runs = [_diverge(make, x, np.array(y), compiled, optimizer=GradientDescent(lr)) for compiled in (False, True)]
    assert runs[0][0].iteration == iteration
    _same_divergence(runs, engine=engine)
    if first_loss is not None:
        assert runs[1][0].history.loss == [pytest.approx(first_loss, rel=1e-14)]  # iteration 1, written out


# ---- a graph that changes with the parameters' values ------------------------------------------


class _Kinked(Module):
    """predicted = w x while w < 1, else w x / 2: a Python ``if`` on a parameter's value."""

    def __init__(self):
        self.w = Parameter(0.0)

    def forward(self, x):
        return x * self.w if self.w.item() < 1 else x * self.w * 0.5


def test_a_branch_on_a_parameter_value_is_caught_by_the_next_check():
    x, _ = dosage()
    y = 2 * x
    eager = _Kinked()
    cr.fit(eager, x, y, optimizer=Momentum(0.1, momentum=0.5), tol=0, max_iter=300)
    model = _Kinked()
    with pytest.warns(CompileWarning, match="differs from the eager one"):
        history = cr.fit(model, x, y, optimizer=Momentum(0.1, momentum=0.5), tol=0, max_iter=300, compile=True)
    assert history.engine == "python+numpy"
    # SSR = sum_i (2 x_i - c w x_i)^2 with c = 1 (w < 1) or 1/2; sum_i x_i^2 = 1.25, so
    # dSSR/dw = -2.5 c (2 - c w): the minimum is at w = 2 on the first branch, w = 4 on the second.
    values = _fields(history, "w", "value")
    c = np.where(values < 1, 1.0, 0.5)
    true_loss = 1.25 * (2 - c * values) ** 2
    wrong = np.flatnonzero(~np.isclose(history.loss, true_loss, rtol=1e-12, atol=1e-15)) + 1
    assert len(wrong) > 0 and wrong.max() <= RECHECK  # the old graph, until the next check at most
    assert eager.w.item() == pytest.approx(4.0) and model.w.item() == pytest.approx(4.0)
    # Independently, what that means: iterations 1..RECHECK on the graph recorded at the start (c = 1),
    # then the model's own branch, with the momentum carried over (v <- 0.5 v + g; step = 0.1 v).
    w, v, expected = 0.0, None, []
    for it in range(1, 301):
        expected.append(w)
        c = 1.0 if it <= RECHECK or w < 1 else 0.5
        g = -2.5 * c * (2 - c * w)
        v = g if v is None else 0.5 * v + g
        w -= 0.1 * v
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-15)


# ---- what is not written out ------------------------------------------------------------------


class _Affine(Module):
    def __init__(self, wrap):
        self.w, self.b, self.wrap = Parameter(0.5), Parameter(0.1), wrap

    def forward(self, x):
        return self.wrap(x, x * self.w + self.b)


NOT_WRITTEN_OUT = {
    "maximum": lambda x, z: cr.maximum(z, 0.2),
    "where": lambda x, z: cr.where(x.data > 0.25, z, 0.3),
    "clip": lambda x, z: cr.clip(z, -0.5, 0.4),
}


@pytest.mark.parametrize("op", sorted(NOT_WRITTEN_OUT))
def test_an_op_the_scalar_path_does_not_write_out_replays_numpy_bit_for_bit(op):
    def make():
        return _Affine(NOT_WRITTEN_OUT[op])

    x, y = dosage()
    with pytest.raises(Unsupported):
        program_source(make(), x, y)
    runs = _both(make, x, y, optimizer=GradientDescent(0.1), tol=0, max_iter=200)
    assert runs[1][1].engine == "numpy"
    _identical(runs)


def test_a_classifier_with_cross_entropy_replays_numpy_bit_for_bit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 2))
    labels = np.array([0, 1, 2, 0, 1, 2])
    runs = _both(
        lambda: mlp([2, 3, 3], activation="tanh", seed=2),
        x,
        labels,
        loss="cross_entropy",
        optimizer=GradientDescent(0.5),
        tol=0,
        max_iter=50,
    )
    assert runs[1][1].engine == "numpy"
    _identical(runs)


def test_a_step_longer_than_max_operations_replays_numpy():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(20, 1))
    # the second layer alone is 20 rows x 16 outputs x 16 products: far beyond MAX_OPERATIONS
    runs = _both(
        lambda: mlp([1, 16, 16, 1], activation="tanh", seed=0), x, np.sin(3 * x[:, 0]), loss="mse", tol=0, max_iter=20
    )
    assert runs[1][1].engine == "numpy"
    _identical(runs)


def test_float32_parameters_are_not_written_out():
    runs = _both(lambda: DosageNetwork.from_lesson(b3=0.0, dtype=np.float32), *dosage(), params=["b3"])
    assert runs[1][1].engine == "numpy"
    assert runs[1][0].b3.dtype == np.float32
    _identical(runs)


def test_anomaly_mode_checks_every_op_so_nothing_is_written_out():
    x, y = dosage()
    with cr.detect_anomaly():
        runs = _both(_lessons_net, x, y, tol=0, max_iter=30)
    assert runs[1][1].engine in ("eager", "numpy")
    _identical(runs)
    messages = []
    for compiled in (False, True):
        with cr.detect_anomaly(), pytest.raises(cr.AnomalyError) as info:
            cr.fit(_Log(-1.0), np.array([1.0, 2.0]), np.array([-3.0, -3.0]), compile=compiled)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "op 'log'" in messages[0]


# ---- the generated source -------------------------------------------------------------------------


def test_program_source_is_plain_python_for_the_lessons_network():
    x, y = dosage()
    source = program_source(DosageNetwork.from_lesson(), x, y)
    lines = source.splitlines()
    assert lines[0] == "def run(n, P, X, Y, S, t, H, L, V, D, Z):"
    assert "    lr, mom, b1, b2, c1, c2, eps = H" in lines  # hyperparameters are read on every call
    assert "    for it in range(n):" in lines
    assert "np." not in source and "numpy" not in source
    # softplus written out per data point (3 points x 2 hidden nodes), stable both ways
    assert source.count("log1p(exp(") == 2 * 6
    # gradient descent on all seven parameters: step = derivative x lr; new = old - step
    for k in range(7):
        assert f"        p{k}_0 = p{k}_0 - s{k}" in lines
        assert any(line.strip().startswith(f"s{k} = ") and line.endswith(" * lr") for line in lines)
    assert "< 0.001:" in source and "'converged'" in source  # the lessons' stopping rule
    assert "'diverged'" in source and "except (ArithmeticError, ValueError):" in source
    compile(source, "<test>", "exec")


def test_program_source_for_each_optimizer():
    x, y = dosage()
    net = DosageNetwork.from_lesson()
    assert "'converged'" not in program_source(net, x, y, tol=0)  # tol = 0: no step can be small enough
    adam = program_source(net, x, y, optimizer=Adam(0.05, betas=(0.8, 0.99)))
    assert "sqrt(1 - b2 ** (t + 1))" in adam and "m0 * b1" in adam and "v0 * b2" in adam
    heavy = program_source(net, x, y, optimizer=Momentum(0.1, momentum=0.9))
    nesterov = program_source(net, x, y, optimizer=Momentum(0.1, momentum=0.9, nesterov=True))
    assert "s0 = lr * u0" in heavy and "s0 = lr * (g" in nesterov and "+ mom * u0)" in nesterov
    single = program_source(_Slope(), x, y)
    assert "(p0_0,) = P" in single and "if abs(s0) < 0.001:" in single


def test_a_callback_sees_the_optimizer_count_and_leaves_the_same_state_as_eager():
    # a schedule reads opt.t in the callback: lr = 0.05 / (1 + t / 10), with Adam on all seven parameters
    x, y = dosage()
    runs = []
    for compiled in (False, True):
        net, opt, seen = _lessons_net(), Adam(0.05), []

        def schedule(history, opt=opt, seen=seen):
            seen.append(opt.t)
            opt.lr = 0.05 / (1 + opt.t / 10)

        history = cr.fit(net, x, y, optimizer=opt, tol=0, max_iter=40, callback=schedule, compile=compiled)
        runs.append((net, opt, seen, history))
    (net_e, opt_e, seen_e, h_e), (net_c, opt_c, seen_c, h_c) = runs
    assert h_c.engine == "python" and seen_e == seen_c == list(range(1, 41))
    np.testing.assert_allclose(h_c.loss, h_e.loss, rtol=RTOL, atol=ATOL)
    for key in ("m", "v"):
        np.testing.assert_allclose(opt_c.state[0][key], opt_e.state[0][key], rtol=RTOL, atol=ATOL)
    for a, b in zip(net_c.parameters(), net_e.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(a.grad, b.grad, rtol=RTOL, atol=ATOL)


# ---- found in review ---------------------------------------------------------------------------


class _Spare(Module):
    """predicted = x w; ``unused`` is trained but the loss never reaches it."""

    def __init__(self):
        self.w, self.unused = Parameter(0.5), Parameter(1.0)

    def forward(self, x):
        return x * self.w


@pytest.mark.parametrize("batch_size", [None, 2])
def test_a_trained_parameter_without_a_gradient(batch_size):
    # full batch: written out; mini-batches: the NumPy replay (its tape must keep the parameter it zeroes)
    x, y = dosage()
    runs = _both(_Spare, x, y, loss="ssr", tol=0, max_iter=5, batch_size=batch_size, seed=0)
    assert runs[1][1].engine == ("python" if batch_size is None else "numpy")
    _close(runs)
    assert runs[1][0].unused.item() == 1.0 and runs[1][0].unused.grad is None and runs[0][0].unused.grad is None


def test_derivative_norms_of_scalar_parameters_are_never_negative():
    x, y = dosage()
    h = cr.fit(_lessons_net(), x, y, tol=0, max_iter=50, compile=True)
    assert h.engine == "python"
    for trace in h.params.values():
        assert min(trace.grad_norm) >= 0 and min(trace.step_norm) >= 0
        # |derivative|, worked from the recorded derivative itself
        np.testing.assert_array_equal(trace.grad_norm, np.abs(_fields(h, trace.name, "derivative")))


def test_a_projection_in_the_callback_holds_on_the_last_iteration():
    x, y = dosage()
    ends = []
    for compiled in (False, True):
        net = DosageNetwork.from_lesson(b3=0.0)

        def clamp(history, net=net):
            net.b3.data[...] = min(net.b3.item(), 1.0)

        h = cr.fit(net, x, y, params=["b3"], tol=0, max_iter=5, callback=clamp, compile=compiled)
        ends.append(net.b3.item())
    assert ends == [1.0, 1.0] and h.engine == "python"


class _ReluNet(Module):
    """predicted = tanh(relu(x1 w - x2 w)): a huge w makes the pre-activation inf - inf = NaN."""

    def __init__(self):
        self.w = Parameter(2.0)

    def forward(self, x):
        return cr.tanh(cr.relu(x[:, :1] * self.w - x[:, 1:] * self.w))


def test_a_nan_inside_relu_is_a_divergence_as_in_eager():
    # x w - x w with x = 1e308 and w = 2: inf - inf = NaN before the relu; NumPy's maximum keeps the NaN
    x, y = np.array([[1e308, 1e308]]), np.array([0.2])
    errors = []
    for compiled in (False, True):
        with pytest.raises(DivergenceError) as caught:
            cr.fit(_ReluNet(), x, y, loss="mse", tol=0, max_iter=5, compile=compiled)
        errors.append((caught.value.iteration, caught.value.parameter, caught.value.history.engine))
    assert errors == [(1, "w", "eager"), (1, "w", "python")]


def test_the_engine_says_eager_when_the_replay_declines():
    x, y = np.linspace(-1, 1, 40)[:, None], np.linspace(-1, 1, 40) ** 2

    class Peeking(Module):  # scales by the batch's mean, computed outside the graph
        def __init__(self):
            self.w = Parameter(0.5)

        def forward(self, x):
            return x * self.w * float(np.mean(x.data))

    with pytest.warns(CompileWarning):
        h = cr.fit(Peeking(), x, y, loss="mse", batch_size=10, seed=0, tol=0, max_iter=3, compile=True)
    assert h.engine == "eager"


def test_a_callback_that_raises_leaves_the_optimizer_as_eager_does():
    x, y = dosage()
    states = []
    for compiled in (False, True):
        net, opt = _lessons_net(), Adam(0.05)

        def interrupt(history):
            if history.n_iter == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            cr.fit(net, x, y, optimizer=opt, tol=0, max_iter=10, callback=interrupt, compile=compiled)
        states.append((opt.t, opt.state[0]["m"].copy(), [p.data.copy() for p in net.parameters()]))
    assert states[0][0] == states[1][0] == 3
    np.testing.assert_allclose(states[1][1], states[0][1], rtol=RTOL, atol=ATOL)
    for a, b in zip(states[1][2], states[0][2]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def test_a_one_element_vector_keeps_its_shape_in_the_history_with_a_callback():
    x, y = dosage()
    h = cr.fit(mlp([1, 2, 1], seed=0), x, y, loss="mse", tol=0, max_iter=3, callback=lambda h: False, compile=True)
    assert h.engine == "python"
    assert [np.shape(v) for v in h.params["2.bias"].value] == [(1,)] * 3


class _Shapes(Module):
    """Sums over an axis (kept and not), reshapes, a transpose, a matmul, sqrt, sigmoid and a trained exponent."""

    def __init__(self):
        rng = np.random.default_rng(5)
        self.a = Parameter(rng.normal(size=(2, 3)))
        self.k = Parameter(1.5)

    def forward(self, x):  # x: (4, 2)
        h = cr.sigmoid(cr.matmul(x, self.a))  # (4, 3)
        col = cr.sum(h, axis=0, keepdims=True)  # (1, 3)
        row = cr.sum(cr.transpose(h), axis=0)  # (4,)
        back = cr.reshape(cr.sqrt(h * h + 1.0), (3, 4))  # (3, 4)
        mix = cr.sum(back, axis=1) ** self.k  # (3,): a trained exponent
        return cr.reshape(row, (4, 1)) + cr.sum(col * mix) / 10.0


def test_axes_reshapes_and_a_matmul_written_out_match_eager():
    x = np.linspace(-1, 1, 8).reshape(4, 2)
    y = np.array([0.5, -0.25, 1.0, 0.0])
    runs = _both(_Shapes, x, y, loss="mse", optimizer=GradientDescent(0.05), tol=0, max_iter=30)
    assert runs[1][1].engine == "python"
    _close(runs, rtol=1e-11, atol=1e-13)
