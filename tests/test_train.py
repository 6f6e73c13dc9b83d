"""chainrule.fit and History: the lessons' gradient descent, stopping rules, input checks."""

import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import dosage
from chainrule.losses import ssr
from chainrule.nn import DosageNetwork, Linear, Parameter, mlp
from chainrule.optim import Adam, GradientDescent, Momentum

NAMES = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")
LESSON = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30, "b3": 2.61}


def lesson_gradients(p, x, observed):
    """dSSR/d(each parameter) by the lessons' chain rule (MISSION.md), in NumPy."""
    x1, x2 = x * p["w1"] + p["b1"], x * p["w2"] + p["b2"]
    y1, y2 = np.log1p(np.exp(x1)), np.log1p(np.exp(x2))
    s1, s2 = np.exp(x1) / (1 + np.exp(x1)), np.exp(x2) / (1 + np.exp(x2))
    d = -2 * (observed - (p["w3"] * y1 + p["w4"] * y2 + p["b3"]))
    return {
        "w1": np.sum(d * p["w3"] * s1 * x),
        "b1": np.sum(d * p["w3"] * s1),
        "w2": np.sum(d * p["w4"] * s2 * x),
        "b2": np.sum(d * p["w4"] * s2),
        "w3": np.sum(d * y1),
        "w4": np.sum(d * y2),
        "b3": np.sum(d),
    }


def numpy_descent(p, names, lr, tol, max_iter):
    """The lessons' gradient descent, independently: the values of ``names`` before each iteration."""
    x, y = dosage()
    p, values = dict(p), []
    for _ in range(max_iter):
        values.append({n: p[n] for n in names})
        g = lesson_gradients(p, x, y)
        steps = {n: g[n] * lr for n in names}  # step size = derivative x learning rate
        for n in names:
            p[n] -= steps[n]  # new value = old value - step size
        if all(abs(s) < tol for s in steps.values()):
            break
    return values, p


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        return cr.fit(*args, **kwargs)


def snapshot(model):
    return {name: p.data.tobytes() for name, p in model.named_parameters()}


# ---- the lessons: gradient descent on b3 ---------------------------------------------------


@pytest.fixture
def b3_run():
    net = DosageNetwork.from_lesson(b3=0.0)
    x, y = dosage()
    history = cr.fit(net, x, y, params=["b3"], optimizer=GradientDescent(lr=0.1), tol=0.001)
    return net, history


def test_first_steps_of_the_lesson(b3_run):
    _, history = b3_run
    trace = history.params["b3"]
    # b3: 0 -> 1.57 -> 2.19 -> 2.44 -> 2.54
    assert [round(float(v), 2) for v in trace.value[:5]] == [0.0, 1.57, 2.19, 2.44, 2.54]
    assert round(float(trace.derivative[0]), 2) == -15.66
    assert round(float(trace.derivative[1]), 2) == -6.26  # dSSR/db3 at b3 = 1.5655
    for v, d, s, new in zip(trace.value, trace.derivative, trace.step, trace.new_value):
        assert s == pytest.approx(d * 0.1, rel=1e-15)  # step size = derivative x learning rate
        assert new == pytest.approx(v - s, rel=1e-15)  # new value = old value - step size
    assert round(history.loss[0], 2) == 20.42  # loss[0]: the SSR before the first step


def test_b3_stops_at_2_609_after_10_iterations(b3_run):
    net, history = b3_run
    assert history.n_iter == 10
    assert round(net.b3.item(), 3) == 2.609
    assert history.converged
    assert "0.001" in history.stop_reason and "iteration 10" in history.stop_reason
    assert abs(history.params["b3"].step[-1]) < 0.001 <= abs(history.params["b3"].step[-2])
    x, y = dosage()
    final = ssr(net(x), y).item()
    assert final < 1e-3 and round(final, 2) != 0.46  # nearly 0, not the seed's 0.46


def test_b3_trajectory_matches_an_independent_numpy_descent(b3_run):
    net, history = b3_run
    values, final = numpy_descent({**LESSON, "b3": 0.0}, ["b3"], lr=0.1, tol=0.001, max_iter=1000)
    assert len(values) == history.n_iter == 10
    np.testing.assert_allclose(
        [float(v) for v in history.params["b3"].value], [v["b3"] for v in values], rtol=1e-12, atol=1e-14
    )
    assert net.b3.item() == pytest.approx(final["b3"], rel=1e-12)


def test_table_is_the_lessons_table(b3_run):
    _, history = b3_run
    lines = history.table("b3").splitlines()
    assert lines[0].split() == ["iteration", "old", "b3", "d", "loss/d", "b3", "step", "size", "new", "b3"]
    assert len(lines) == 2 + 10
    first = lines[2].split()
    assert first[0] == "1" and float(first[1]) == 0.0
    assert round(float(first[2]), 2) == -15.66 and round(float(first[3]), 2) == -1.57
    assert round(float(first[4]), 2) == 1.57
    assert history.table() == history.table("b3") == history.table(Parameter(0.0, name="b3"))
    with pytest.raises(ValueError, match="unknown parameter 'w9'"):
        history.table("w9")


def test_history_summary_and_repr(b3_run):
    _, history = b3_run
    assert history.final_loss == history.loss[-1] and len(history.loss) == 10
    assert history.best_iter == 10 and history.best_loss == min(history.loss)
    assert "10 iterations" in history.summary() and "every step size fell below" in history.summary()
    assert repr(history).startswith("History(n_iter=10, final_loss=")
    assert history.seconds > 0


def test_table_needs_an_index_for_a_vector_and_a_name_for_several():
    x, y = dosage()
    net = cr.nn.Sequential(Linear(1, 2, seed=0), cr.nn.SoftPlus(), Linear(2, 1, seed=1))
    history = quiet_fit(net, x, y, max_iter=3)
    with pytest.raises(ValueError, match="several parameters"):
        history.table()
    with pytest.raises(ValueError, match=r"shape \(2, 1\); pass index="):  # (out_features, in_features)
        history.table("0.weight")
    rows = history.table("0.weight", index=(1, 0)).splitlines()
    assert len(rows) == 2 + 3
    assert float(rows[2].split()[1]) == pytest.approx(history.params["0.weight"].value[0][1, 0], rel=1e-5)


# ---- the lessons: several parameters and all seven ---------------------------------------------


def test_w3_w4_b3_together_match_numpy_and_hold_the_others():
    x, y = dosage()
    net = DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0)
    assert round(ssr(net(x), y).item(), 2) == 1.40
    before = snapshot(net)
    history = quiet_fit(net, x, y, params=["w3", "w4", "b3"], optimizer=GradientDescent(lr=0.1), max_iter=50)
    start = {**LESSON, "w3": 0.36, "w4": 0.63, "b3": 0.0}
    values, final = numpy_descent(start, ["w3", "w4", "b3"], lr=0.1, tol=0.001, max_iter=50)
    for name in ("w3", "w4", "b3"):
        np.testing.assert_allclose(
            [float(v) for v in history.params[name].value], [v[name] for v in values], rtol=1e-10, atol=1e-12
        )
        assert getattr(net, name).item() == pytest.approx(final[name], rel=1e-10)
    after = snapshot(net)
    assert all(after[n] == before[n] for n in ("w1", "b1", "w2", "b2"))
    assert list(history.params) == ["w3", "w4", "b3"]


def test_all_seven_from_a_random_start_match_numpy():
    x, y = dosage()
    net = DosageNetwork.random(seed=2)
    start = {n: getattr(net, n).item() for n in NAMES}
    history = quiet_fit(net, x, y, optimizer=GradientDescent(lr=0.1), max_iter=30)
    values, final = numpy_descent(start, NAMES, lr=0.1, tol=0.001, max_iter=30)
    assert history.n_iter == len(values)
    for name in NAMES:
        np.testing.assert_allclose(
            [float(v) for v in history.params[name].value], [v[name] for v in values], rtol=1e-9, atol=1e-12
        )
        assert getattr(net, name).item() == pytest.approx(final[name], rel=1e-9, abs=1e-12)


# ---- frozen parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("params", [["b3"], "b3", ["w3", "w4"], "objects"])
@pytest.mark.parametrize("optimizer", [GradientDescent(lr=0.1), Momentum(lr=0.05), Adam(lr=0.05)])
def test_frozen_parameters_are_unchanged_bit_for_bit(params, optimizer):
    x, y = dosage()
    net = DosageNetwork.random(seed=1)
    if params == "objects":
        params = [net.w1, net.b2]
    names = [getattr(p, "name", p) for p in ([params] if isinstance(params, str) else params)]
    before = snapshot(net)
    history = quiet_fit(net, x, y, params=params, optimizer=optimizer, max_iter=20)
    after = snapshot(net)
    assert list(history.params) == names
    for name in NAMES:
        if name in names:
            assert after[name] != before[name], name
        else:
            assert after[name] == before[name], name
    assert all(p.requires_grad for p in net.parameters())  # frozen ones are trainable again afterwards


def test_frozen_parameters_in_a_sequential():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))
    net = mlp([3, 4, 1], activation="tanh", seed=0)
    before = snapshot(net)
    quiet_fit(net, x, y, loss="mse", params=[net[2].weight, "2.bias"], optimizer=Adam(lr=0.01), max_iter=10)
    after = snapshot(net)
    assert after["0.weight"] == before["0.weight"] and after["0.bias"] == before["0.bias"]
    assert after["2.weight"] != before["2.weight"] and after["2.bias"] != before["2.bias"]


# ---- stopping rules -----------------------------------------------------------------------------


def test_max_iter_warns_and_says_so():
    x, y = dosage()
    net = DosageNetwork.from_lesson(b3=0.0)
    with pytest.warns(cr.ConvergenceWarning, match="max_iter = 3"):
        history = cr.fit(net, x, y, params=["b3"], max_iter=3)
    assert history.n_iter == 3 and len(history.loss) == 3
    assert not history.converged
    assert "max_iter = 3" in history.stop_reason
    assert round(net.b3.item(), 2) == 2.44  # three steps: 0 -> 1.57 -> 2.19 -> 2.44


def test_tol_zero_never_stops_early():
    x, y = dosage()
    with pytest.warns(cr.ConvergenceWarning):  # max_iter reached: the warning the issue asks for
        history = cr.fit(DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"], tol=0, max_iter=15)
    assert history.n_iter == 15 and not history.converged
    assert "tol = 0" in history.stop_reason


def test_divergence_on_the_lessons_network_with_a_huge_learning_rate():
    x, y = dosage()
    net = DosageNetwork.from_lesson(b3=0.0)
    with pytest.raises(cr.DivergenceError) as info:
        cr.fit(net, x, y, optimizer=GradientDescent(lr=100))
    err = info.value
    assert err.iteration > 1 and err.parameter in NAMES
    assert f"iteration {err.iteration}" in str(err) and f"'{err.parameter}'" in str(err)
    assert "diverged" in err.history.stop_reason
    history = err.history
    assert history.best_loss == min(history.loss) == history.loss[history.best_iter - 1]
    for name in NAMES:  # restored to the best seen
        assert getattr(net, name).data == history.params[name].value[history.best_iter - 1], name
    assert ssr(net(x), y).item() == pytest.approx(history.best_loss, rel=1e-12)
    assert all(np.isfinite(p.data).all() for p in net.parameters())


def test_divergence_restores_the_best_parameters_seen_mid_run():
    # SSR of y = x @ w with x rows e1 and 10 e2: curvature 2 along w[0], 200 along w[1].
    # lr = 0.02 shrinks the w[0] error by 1 - 0.04 per step but multiplies the w[1] error by
    # 1 - 4 = -3, so the loss falls (w[0] dominates) and then blows up (w[1] from 1e-10).
    x = np.array([[1.0, 0.0], [0.0, 10.0]])
    y = np.array([[10.0], [0.0]])
    net = Linear(2, 1, bias=False)
    net.weight.data[...] = [[0.0, 1e-11]]  # (out_features, in_features) = (1, 2)
    with pytest.raises(cr.DivergenceError) as info:
        cr.fit(net, x, y, optimizer=GradientDescent(lr=0.02), max_iter=10_000)
    history = info.value.history
    assert info.value.parameter == "weight"
    assert 1 < history.best_iter < info.value.iteration
    assert history.loss[history.best_iter - 1] == history.best_loss == min(history.loss)
    np.testing.assert_array_equal(net.weight.data, history.params["weight"].value[history.best_iter - 1])
    assert ssr(net(x), y).item() == pytest.approx(history.best_loss, rel=1e-12)


def test_divergence_at_the_first_step_keeps_the_starting_values():
    x, y = dosage()
    net = DosageNetwork.from_lesson(b3=0.0)
    before = snapshot(net)
    with pytest.raises(cr.DivergenceError) as info:
        cr.fit(net, x, y, optimizer=GradientDescent(lr=1e308))  # the first step overflows to inf
    assert info.value.iteration == 1
    assert snapshot(net) == before
    assert all(p.requires_grad for p in net.parameters())


# ---- invalid input -----------------------------------------------------------------------------


def _net():
    return DosageNetwork.from_lesson(b3=0.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=[0.0, 0.5, 1.0], y=[0.0, 1.0]), ValueError, "x has 3 rows but y has 2"),
        (dict(x=[], y=[]), ValueError, "empty"),
        (dict(x=[0.0, math.nan, 1.0]), ValueError, r"x contains NaN or inf \(first at index \(1,\)\)"),
        (dict(y=[0.0, 1.0, math.nan]), ValueError, r"y contains NaN or inf \(first at index \(2,\)\)"),
        (dict(x=[0.0, math.inf, 1.0]), ValueError, "x contains NaN or inf"),
        (dict(x=["a", "b", "c"]), TypeError, "x must hold numbers"),
        (dict(x=np.zeros((3, 1, 1))), ValueError, r"x must be 1-D .* or 2-D .*\(3, 1, 1\)"),
        (dict(x=1.0), ValueError, "x must be an array of rows"),
        (dict(tol=-0.1), ValueError, "tol must be None or a finite number >= 0, got -0.1"),
        (dict(tol=math.nan), ValueError, "tol must be None or a finite number >= 0, got nan"),
        (dict(max_iter=0), ValueError, "max_iter must be an integer >= 1, got 0"),
        (dict(max_iter=2.5), ValueError, "max_iter must be an integer >= 1, got 2.5"),
        (dict(max_iter=10.0), ValueError, "max_iter must be an integer >= 1, got 10.0"),
        (dict(max_iter=True), ValueError, "max_iter must be an integer >= 1, got True"),
        (dict(batch_size=0), ValueError, "batch_size must be None or an integer >= 1, got 0"),
        (dict(batch_size=1.5), ValueError, "batch_size must be None or an integer >= 1, got 1.5"),
        (dict(batch_size="2"), ValueError, "batch_size must be None or an integer >= 1, got '2'"),
        (dict(params=["b4"]), ValueError, r"'b4', which is not a parameter of DosageNetwork; it has \['w1'"),
        (dict(params=[]), ValueError, "params is empty"),
        (dict(params=[Parameter(1.0, name="b3")]), ValueError, "not a parameter of this model"),
        (dict(params=[3]), TypeError, "params must be parameter names or Parameters, got int"),
        (dict(loss="hinge"), ValueError, "unknown loss 'hinge'"),
        (dict(optimizer="adam"), TypeError, "optimizer must be a chainrule.optim.Optimizer, got str"),
        (dict(optimizer=GradientDescent), TypeError, "optimizer must be a chainrule.optim.Optimizer, got type"),
    ],
)
def test_invalid_input_is_rejected_with_a_helpful_message(kwargs, error, match):
    x, y = dosage()
    kwargs = {"x": x, "y": y, **kwargs}
    net = _net()
    before = snapshot(net)
    with pytest.raises(error, match=match):
        cr.fit(net, **kwargs)
    assert snapshot(net) == before
    assert all(p.requires_grad for p in net.parameters())


def test_model_must_be_a_module():
    x, y = dosage()
    with pytest.raises(TypeError, match="model must be a chainrule.nn.Module, got function"):
        cr.fit(lambda t: t, x, y)


# ---- data forms and dtypes ---------------------------------------------------------------------


def test_lists_1d_and_column_inputs_give_the_same_fit():
    results = []
    for x, y in [
        ([0, 0.5, 1], [0, 1, 0]),
        (np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0])),
        (np.array([[0.0], [0.5], [1.0]]), np.array([[0.0], [1.0], [0.0]])),
        (cr.tensor([0.0, 0.5, 1.0]), cr.tensor([0.0, 1.0, 0.0])),
    ]:
        net = _net()
        history = cr.fit(net, x, y, params="b3")
        results.append((history.n_iter, net.b3.item()))
    assert results == [(10, results[0][1])] * 4
    assert round(results[0][1], 3) == 2.609


def test_float32_models_stay_float32():
    x, y = dosage()
    net = DosageNetwork.from_lesson(b3=0.0, dtype=np.float32)
    history = cr.fit(net, x, y, params=["b3"])
    assert all(p.dtype == np.float32 for p in net.parameters())
    trace = history.params["b3"]
    assert {np.asarray(a).dtype for a in trace.value + trace.derivative + trace.step} == {np.dtype(np.float32)}
    assert net.b3.item() == pytest.approx(2.609, abs=5e-4)

    seq = mlp([2, 3, 1], seed=0, dtype=np.float32)
    quiet_fit(seq, np.ones((4, 2)), np.zeros(4), optimizer=Adam(lr=0.01), max_iter=3, batch_size=2, seed=0)
    assert all(p.dtype == np.float32 for p in seq.parameters())


# ---- mini-batches ----------------------------------------------------------------------------


def _batch_run(seed):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (10, 1))
    y = np.sin(3 * x)
    net = mlp([1, 4, 1], activation="tanh", seed=0)
    opt = GradientDescent(lr=0.05)
    with pytest.warns(cr.ConvergenceWarning):
        history = cr.fit(net, x, y, loss="mse", optimizer=opt, batch_size=3, seed=seed, max_iter=5)
    return net, history, opt


def test_batches_are_reproducible_by_seed_and_max_iter_counts_epochs():
    a, ha, opt = _batch_run(seed=0)
    b, hb, _ = _batch_run(seed=0)
    c, _, _ = _batch_run(seed=1)
    assert snapshot(a) == snapshot(b)
    assert ha.loss == hb.loss
    assert snapshot(a) != snapshot(c)
    assert ha.n_iter == len(ha.loss) == 5  # 5 epochs ...
    assert opt.t == 5 * 4  # ... of ceil(10 / 3) = 4 updates each
    # With batches, the recorded step is the whole epoch's change: new value = old value - step.
    trace = ha.params["0.weight"]
    np.testing.assert_allclose(trace.value[1], trace.value[0] - trace.step[0], rtol=1e-12)


def test_a_batch_size_of_at_least_n_is_full_batch():
    x, y = dosage()
    a, b = _net(), _net()
    ha = cr.fit(a, x, y, params=["b3"])
    hb = cr.fit(b, x, y, params=["b3"], batch_size=10, seed=0)
    assert a.b3.item() == b.b3.item() and ha.n_iter == hb.n_iter == 10


# ---- classification ------------------------------------------------------------------------


def test_cross_entropy_fit_separates_three_blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    labels = np.repeat(np.arange(3), 30)
    x = centers[labels] + rng.normal(0, 0.7, (90, 2))
    net = mlp([2, 8, 3], activation="tanh", seed=0)
    history = quiet_fit(net, x, labels, loss="cross_entropy", optimizer=Adam(lr=0.05), max_iter=150)
    accuracy = np.mean(np.argmax(net(x).data, axis=1) == labels)
    assert accuracy >= 0.95
    assert history.loss[0] == pytest.approx(math.log(3), rel=0.5)  # about chance at the start
    assert history.loss[-1] < 0.2


def test_binary_cross_entropy_fit_separates_two_blobs():
    rng = np.random.default_rng(1)
    t = np.repeat([0.0, 1.0], 25)
    x = np.where(t[:, None] == 1, 2.0, -2.0) + rng.normal(0, 0.8, (50, 2))
    net = Linear(2, 1, seed=0)
    quiet_fit(net, x, t, loss="binary_cross_entropy", optimizer=GradientDescent(lr=0.5), max_iter=100)
    assert np.mean((net(x).data[:, 0] > 0) == (t == 1)) >= 0.95


# ---- gradient health -------------------------------------------------------------------------


def _health_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, cr.GradientHealthWarning)]


def test_the_lessons_runs_raise_no_gradient_health_warning():
    x, y = cr.data.dosage()
    with warnings.catch_warnings():
        warnings.simplefilter("error", cr.GradientHealthWarning)
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        cr.fit(cr.nn.DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"])
        for lr in (0.01, 0.1):
            cr.fit(
                cr.nn.DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0),
                x,
                y,
                params=["w3", "w4", "b3"],
                optimizer=cr.optim.GradientDescent(lr),
            )
        for seed in range(5):
            cr.fit(cr.nn.DosageNetwork.random(seed=seed), x, y)


def test_a_deep_sigmoid_chain_is_flagged_as_vanishing_once_per_parameter():
    # Each sigmoid multiplies the gradient by at most sigmoid' <= 1/4, so through 12 of them the first
    # layer's derivative is below 0.25**11 ~ 2.4e-7 of the last layer's: far under the 1e-4 ratio.
    layers = []
    for i in range(12):
        layers += [cr.nn.Linear(1, 1, seed=i), cr.nn.Sigmoid()]
    net = cr.nn.Sequential(*layers, cr.nn.Linear(1, 1, seed=99))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        history = cr.fit(net, np.linspace(-1, 1, 8), np.linspace(0, 1, 8), loss="mse", max_iter=30)
    messages = _health_warnings(record)
    first = [m for m in messages if "'0.weight'" in m]
    assert len(first) == 1 and "vanishing" in first[0]
    assert len(messages) == len(set(messages))
    assert not any("'24.weight'" in m for m in messages)  # the last layer is the yardstick, never flagged
    assert "vanishing gradient" in history.health()


def test_a_huge_learning_rate_is_flagged_as_exploding_before_it_diverges():
    x, y = cr.data.dosage()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(cr.DivergenceError) as info:
            cr.fit(cr.nn.DosageNetwork.from_lesson(), x, y, optimizer=cr.optim.GradientDescent(lr=100))
    exploding = [m for m in _health_warnings(record) if "exploding" in m]
    assert exploding and all(any(f"'{n}'" in m for n in cr.nn.DosageNetwork.NAMES) for m in exploding)
    assert "exploding gradient" in info.value.history.health()


def test_the_monitor_can_be_turned_off_or_tuned():
    x, y = cr.data.dosage()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(cr.DivergenceError):
            cr.fit(cr.nn.DosageNetwork.from_lesson(), x, y, optimizer=cr.optim.GradientDescent(lr=100), monitor=False)
    assert not _health_warnings(record)
    # An exploding threshold of 1 flags the lessons' b3 run at once: |dSSR/db3| = 15.66 at b3 = 0.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cr.fit(cr.nn.DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"], monitor=cr.GradientMonitor(exploding=1.0))
    assert any("'b3'" in m and "exploding" in m for m in _health_warnings(record))


@pytest.mark.parametrize("kwargs", [{"vanishing": -1}, {"exploding": float("nan")}, {"patience": 0}, {"patience": 2.5}])
def test_bad_monitor_settings_raise(kwargs):
    with pytest.raises(ValueError):
        cr.GradientMonitor(**kwargs)


def test_the_history_keeps_its_derivatives_when_backward_runs_again_after_fit():
    x, y = dosage()
    net = DosageNetwork.from_lesson(b3=0.0)
    history = cr.fit(net, x, y, params=["b3"])
    last = float(history.params["b3"].derivative[-1])
    ssr(net(x), y).backward()  # accumulates into net.b3.grad
    assert float(history.params["b3"].derivative[-1]) == last


def test_a_mini_batch_epoch_loss_weighs_each_batch_by_its_rows():
    # With a learning rate of 1e-300 nothing moves, so the epoch's running MSE must equal the MSE of
    # the whole data: 10 rows in batches of 4, 4 and 2, each batch's mean weighed by its rows / 10.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=10), rng.normal(size=10)
    net = mlp([1, 3, 1], activation="tanh", seed=0)
    with cr.no_grad():
        whole = cr.losses.mse(net(x[:, None]), y[:, None]).item()
    with pytest.warns(cr.ConvergenceWarning):  # one epoch asked for, with tol=0
        history = cr.fit(
            net, x, y, loss="mse", optimizer=GradientDescent(1e-300), batch_size=4, seed=0, max_iter=1, tol=0
        )
    assert history.loss[0] == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize("seed", ["a", -1, 1.5, True])
def test_bad_seed_raises(seed):
    x, y = dosage()
    with pytest.raises(ValueError, match="seed"):
        cr.fit(DosageNetwork.from_lesson(), x, y, seed=seed)
