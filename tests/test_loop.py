"""The one training loop: Trainer.step() / run(), against fit, the lessons and a hand loop."""

import sys
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import dosage
from chainrule.history import History
from chainrule.nn import DosageNetwork, mlp
from chainrule.optim import Adam, GradientDescent, Momentum

LESSON = dict(w1=3.34, b1=-1.43, w2=-3.53, b2=0.57, w3=-1.22, w4=-2.30)
DOSES, OBSERVED = np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0])


def _softplus(z):
    return np.log1p(np.exp(z))


def _db3(b3):
    """dSSR/db3 = sum_i -2 (observed_i - predicted_i), written out from the lessons' formulas (no chainrule)."""
    p = LESSON
    predicted = p["w3"] * _softplus(DOSES * p["w1"] + p["b1"]) + p["w4"] * _softplus(DOSES * p["w2"] + p["b2"]) + b3
    return float(np.sum(-2 * (OBSERVED - predicted)))


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        return fn(*args, **kw)


def test_steps_follow_the_lessons_b3_path():
    # the lessons: b3 goes 0 -> 1.57 -> 2.19 -> 2.44 -> 2.54 with learning rate 0.1
    net = DosageNetwork.from_lesson(b3=0.0)
    x, y = dosage()
    trainer = cr.Trainer(net, x, y, params=["b3"])
    path = []
    for _ in range(4):
        trainer.step()
        path.append(round(net.b3.item(), 2))
    assert path == [1.57, 2.19, 2.44, 2.54]
    assert trainer.stop_reason is None and trainer.history.n_iter == 4
    history = trainer.run()
    assert trainer.stop_reason == history.stop_reason and history.converged
    assert history.n_iter == 10 and round(net.b3.item(), 3) == 2.609  # the lessons' 10 iterations
    with pytest.raises(RuntimeError, match="the run has ended"):
        trainer.step()


@pytest.mark.parametrize(
    "make",
    [
        lambda: GradientDescent(0.1),
        lambda: Momentum(0.05, momentum=0.9),
        lambda: Momentum(0.05, momentum=0.5, nesterov=True),
        lambda: Adam(0.05),
    ],
    ids=["gd", "momentum", "nesterov", "adam"],
)
@pytest.mark.parametrize("batch_size", [None, 7])
def test_n_eager_steps_are_fit_with_max_iter_n_and_tol_0_bit_for_bit(make, batch_size):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 2))
    y = np.sin(x[:, :1]) + x[:, 1:] ** 2
    fitted, stepped = mlp([2, 5, 1], activation="tanh", seed=3), mlp([2, 5, 1], activation="tanh", seed=3)
    history = _quiet(
        cr.fit, fitted, x, y, loss="mse", optimizer=make(), tol=0, max_iter=12, batch_size=batch_size, seed=4
    )
    trainer = cr.Trainer(stepped, x, y, loss="mse", optimizer=make(), tol=0, max_iter=12, batch_size=batch_size, seed=4)
    for _ in range(11):
        trainer.step()
    assert trainer.stop_reason is None
    with pytest.warns(cr.ConvergenceWarning):  # the twelfth reaches max_iter, as fit does
        trainer.step()
    assert trainer.history.loss == history.loss
    for a, b in zip(fitted.parameters(), stepped.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    for name in history.params:
        for got, want in zip(trainer.history.params[name].derivative, history.params[name].derivative):
            np.testing.assert_array_equal(got, want)
    assert trainer.stop_reason == history.stop_reason


def test_momentum_keeps_its_velocity_between_steps():
    # heavy ball by hand on b3 alone: v <- 0.9 v + g; b3 <- b3 - 0.01 v (v starts as the first g)
    net = DosageNetwork.from_lesson(b3=0.0)
    trainer = cr.Trainer(net, *dosage(), params=["b3"], optimizer=Momentum(0.01, momentum=0.9), tol=0)
    b3, v = 0.0, None
    for _ in range(6):
        trainer.step()
        g = _db3(b3)
        v = g if v is None else 0.9 * v + g
        b3 -= 0.01 * v
        assert net.b3.item() == pytest.approx(b3, rel=1e-12)


def test_a_new_learning_rate_and_a_dragged_parameter_take_effect_at_the_next_step():
    net = DosageNetwork.from_lesson(b3=0.0)
    trainer = cr.Trainer(net, *dosage(), params=["b3"], tol=0)
    trainer.step()  # b3 = 0 - 0.1 x (-15.66) = 1.566
    trainer.optimizer.lr = 0.01
    trainer.step()
    expected = 1.5655 - 0.01 * _db3(1.5655)  # dSSR/db3 at 1.5655 is -6.26 (lessons): b3 = 1.628
    assert net.b3.item() == pytest.approx(expected, abs=1e-3)
    net.b3.data[...] = 3.0  # a learner drags b3 to 3
    trainer.step()
    assert net.b3.item() == pytest.approx(3.0 - 0.01 * _db3(3.0), rel=1e-12)
    assert trainer.history.params["b3"].value[-1] == 3.0  # the History saw the dragged value


def test_compiled_steps_follow_the_eager_ones_and_settle_the_optimizer():
    # The written-out path computes exp/log with Python's math, the eager one with NumPy's (possibly SIMD)
    # routines: they may differ in the last bit, so compare to 1e-9, not bit for bit.
    x, y = dosage()
    eager, compiled = DosageNetwork.random(seed=2), DosageNetwork.random(seed=2)
    te = cr.Trainer(eager, x, y, optimizer=Adam(0.05), tol=0)
    tc = cr.Trainer(compiled, x, y, optimizer=Adam(0.05), tol=0, compile=True)
    for _ in range(30):
        te.step()
        tc.step()
    assert tc.history.engine == "python"
    np.testing.assert_allclose(tc.history.loss, te.history.loss, rtol=1e-9)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-9, atol=1e-12)
    assert tc.optimizer.t == te.optimizer.t == 30
    np.testing.assert_allclose(tc.optimizer.state[0]["m"], te.optimizer.state[0]["m"], rtol=1e-9, atol=1e-12)


def test_only_history_writes_a_history(monkeypatch):
    """Every assignment to a History's fields during training comes from chainrule.history itself."""
    writers = set()
    plain = object.__setattr__

    def watched(self, name, value):
        writers.add(sys._getframe(1).f_globals.get("__name__"))
        plain(self, name, value)

    monkeypatch.setattr(History, "__setattr__", watched)
    x, y = dosage()
    _quiet(cr.fit, DosageNetwork.random(seed=0), x, y, max_iter=50)
    _quiet(cr.fit, DosageNetwork.random(seed=0), x, y, max_iter=150, compile=True)
    _quiet(cr.fit, DosageNetwork.random(seed=0), x, y, max_iter=5, restarts=3, seed=1, callback=lambda h: False)
    _quiet(cr.fit, mlp([1, 3, 1], seed=0), x, y, loss="mse", max_iter=5, batch_size=2, seed=0, compile=True)
    with pytest.raises(cr.DivergenceError):
        _quiet(cr.fit, DosageNetwork.random(seed=0), x, y, optimizer=GradientDescent(1e6), max_iter=50)
    assert writers == {"chainrule.history"}


def test_trainer_checks_its_arguments_as_fit_does():
    with pytest.raises(ValueError, match=r"fit: tol must be None or a finite number >= 0, got -1"):
        cr.Trainer(DosageNetwork.random(seed=0), *dosage(), tol=-1)
    with pytest.raises(TypeError, match=r"fit: callback must be a function of the history, got int"):
        cr.Trainer(DosageNetwork.random(seed=0), *dosage(), callback=3)


def test_one_stopping_rule_serves_the_loop_and_every_start_of_the_restarts(monkeypatch):
    from chainrule.stopping import StoppingRule

    x, y = dosage()
    history = cr.fit(DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"], restarts=4, seed=0)
    assert history.converged and history.n_iter < 1000 and (history.restart_iterations < 1000).all()
    monkeypatch.setattr(StoppingRule, "converged", lambda self, largest: largest < 0)  # never
    with pytest.warns(cr.ConvergenceWarning):
        history = cr.fit(DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"], restarts=4, seed=0, max_iter=50)
    assert not history.converged and history.n_iter == 50 and (history.restart_iterations == 50).all()


def test_converging_at_iteration_1_warns_that_the_learning_rate_may_be_too_small():
    x, y = dosage()
    with pytest.warns(cr.loop.FirstIterationWarning, match=r"converged at iteration 1: .* may be too small for"):
        history = cr.fit(DosageNetwork.random(seed=0), x, y, optimizer=GradientDescent(lr=1e-300))
    assert history.converged and history.n_iter == 1


def test_the_lessons_converge_later_and_do_not_warn():
    x, y = dosage()
    with warnings.catch_warnings():
        warnings.simplefilter("error", cr.loop.FirstIterationWarning)
        history = cr.fit(DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"])
    assert history.converged and history.n_iter > 1


# ---- set_data: new rows, the run going on -------------------------------------------------------


def _adam_by_hand(w, b, datasets, lr=0.1, b1=0.9, b2=0.999, eps=1e-8):
    """p = w x + b, mse over the whole batch, Adam with one set of moments across the data sets:
    d mse/dw = mean(2 (p - y) x), d mse/db = mean(2 (p - y)); m = b1 m + (1 - b1) g,
    v = b2 v + (1 - b2) g^2, step = lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)."""
    theta, m, v, t = np.array([w, b]), np.zeros(2), np.zeros(2), 0
    for x, y in datasets:
        t += 1
        r = theta[0] * x + theta[1] - y
        g = np.array([np.mean(2 * r * x), np.mean(2 * r)])
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return theta


@pytest.mark.parametrize("compile", [False, True])
def test_set_data_keeps_adams_moments_and_step_count(compile):
    a = (np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 4.0]))
    b = (np.array([1.0, 3.0]), np.array([2.0, 7.0]))
    net = mlp([1, 1], seed=0)
    w, b0 = float(net[0].weight.item()), float(net[0].bias.item())
    trainer = cr.Trainer(net, a[0][:, None], a[1][:, None], loss="mse", optimizer=Adam(lr=0.1), compile=compile, tol=0)
    trainer.step()
    trainer.step()
    trainer.set_data(b[0][:, None], b[1][:, None])
    trainer.step()
    expected = _adam_by_hand(w, b0, [a, a, b])
    assert net[0].weight.item() == pytest.approx(expected[0], rel=1e-12)
    assert net[0].bias.item() == pytest.approx(expected[1], rel=1e-12)
    assert trainer.history.n_iter == 3 and trainer.optimizer.t == 3


def test_set_data_with_the_same_rows_changes_nothing_the_shuffles_go_on():
    x = np.linspace(-1, 1, 12).reshape(6, 2)
    y = np.sin(x[:, :1])
    kw = dict(loss="mse", optimizer=Momentum(lr=0.1, momentum=0.9), batch_size=2, seed=3, tol=0)
    one, two = mlp([2, 3, 1], seed=0), mlp([2, 3, 1], seed=0)
    t1 = cr.Trainer(one, x, y, **kw)
    kw["optimizer"] = Momentum(lr=0.1, momentum=0.9)
    t2 = cr.Trainer(two, x, y, **kw)
    for _ in range(3):
        t1.step()
        t2.set_data(x, y)
        t2.step()
    assert t1.history.loss == t2.history.loss
    for p, q in zip(one.parameters(), two.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_set_data_sample_weight_of_2_counts_a_row_twice():
    x, y = np.array([[0.0], [1.0], [2.0]]), np.array([[1.0], [2.0], [5.0]])
    weighted, repeated = mlp([1, 1], seed=0), mlp([1, 1], seed=0)
    t1 = cr.Trainer(weighted, x, y, loss="mse", tol=0)
    t2 = cr.Trainer(repeated, x, y, loss="mse", tol=0)
    t1.step()
    t2.step()
    t1.set_data(x, y, sample_weight=[1.0, 2.0, 1.0])
    t2.set_data(x[[0, 1, 1, 2]], y[[0, 1, 1, 2]])
    t1.step()
    t2.step()
    for p, q in zip(weighted.parameters(), repeated.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12)


def test_set_data_refuses_other_features_a_held_fraction_and_an_ended_run():
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6.0).reshape(6, 1)
    trainer = cr.Trainer(mlp([2, 1], seed=0), x, y, loss="mse", max_iter=1)
    with pytest.raises(
        ValueError, match=r"Trainer.set_data\(\): the new rows have shape \(3,\), the first ones \(2,\)"
    ):
        trainer.set_data(np.ones((4, 3)), np.ones((4, 1)))
    _quiet(trainer.run)
    with pytest.raises(RuntimeError, match=r"Trainer.set_data\(\): the run has ended"):
        trainer.set_data(x, y)
    held = cr.Trainer(mlp([2, 1], seed=0), x, y, loss="mse", validation=0.5, seed=0)
    with pytest.raises(ValueError, match="validation=fraction held out rows of the first data"):
        held.set_data(x, y)


def test_the_rows_seen_go_on_across_set_data_and_may_be_handed_in():
    # invscaling's rate before each epoch: lr0 / (rows seen + 1) ** 0.5 (scikit-learn's t_)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 1)), rng.normal(size=(10, 1))
    options = dict(loss="mse", schedule="invscaling", tol=0)
    trainer = cr.Trainer(cr.nn.mlp([1, 1], seed=0), x, y, optimizer=cr.optim.GradientDescent(0.5), **options)
    trainer.step()
    trainer.step()
    trainer.set_data(x[:4], y[:4])  # 4 rows a step from here on
    trainer.step()
    trainer.step()
    assert trainer.seen == 10 + 10 + 4 + 4
    assert trainer.history.learning_rates == pytest.approx([0.5, 0.5 / 11**0.5, 0.5 / 21**0.5, 0.5 / 25**0.5])
    carried = cr.Trainer(cr.nn.mlp([1, 1], seed=0), x, y, optimizer=cr.optim.GradientDescent(0.5), **options)
    carried.seen = 99  # an earlier run saw 99 rows: the first rate is lr0 / 100 ** 0.5
    carried.step()
    assert carried.history.learning_rates == pytest.approx([0.05]) and carried.seen == 109


def test_a_run_carried_on_with_the_count_stops_where_one_run_would():
    # Gradient descent on the whole batch has no state and no draws: N epochs in one run, or k in one
    # and the rest in a second that is handed the first's best loss and count, are the same epochs.
    x, y = np.linspace(-1, 1, 12)[:, None], np.sin(3 * np.linspace(-1, 1, 12))[:, None]
    options = dict(loss="mse", stopping="improvement", n_iter_no_change=3, tol=1e-3, max_iter=500)
    whole = cr.Trainer(mlp([1, 4, 1], activation="tanh", seed=2), x, y, optimizer=GradientDescent(0.3), **options)
    whole.run()
    assert 10 < whole.history.n_iter < 500  # it stopped at a plateau, not at max_iter
    net = mlp([1, 4, 1], activation="tanh", seed=2)
    first = cr.Trainer(net, x, y, optimizer=GradientDescent(0.3), **options)
    for _ in range(7):
        first.step()
    second = cr.Trainer(net, x, y, optimizer=GradientDescent(0.3), **options)
    second.carry_on(first.count.best, first.count.count)
    second.run()
    assert 7 + second.history.n_iter == whole.history.n_iter
    assert (second.count.best, second.count.count) == (whole.count.best, whole.count.count)
    assert first.history.loss + second.history.loss == whole.history.loss


def test_early_stopping_carried_on_puts_back_the_earlier_best_when_no_epoch_beats_it():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 1))
    net = mlp([2, 3, 1], seed=0)
    earlier = [p.data + 1.0 for p in net.parameters()]
    trainer = cr.Trainer(
        net, x, y, loss="mse", validation=(x[:5], y[:5]), stopping="early", n_iter_no_change=2, max_iter=100
    )
    # R^2 is at most 1, so a best score of 2.0 is never reached: the count goes 2, 3 > 2 at epoch 2
    trainer.carry_on(2.0, 1, earlier)
    trainer.run()
    assert trainer.history.n_iter == 2 and "earlier run" in trainer.history.stop_reason
    for p, e in zip(net.parameters(), earlier):
        np.testing.assert_array_equal(p.data, e)
    with pytest.raises(ValueError, match="one array per trained parameter"):
        cr.Trainer(net, x, y, loss="mse").carry_on(0.0, 0, earlier[:1])


def test_validation_rows_may_carry_sample_weights_and_a_scorer_gives_the_score():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(16, 2)), rng.normal(size=(16, 1))
    x_val, y_val, w_val = rng.normal(size=(6, 2)), rng.normal(size=(6, 1)), rng.uniform(0.5, 2.0, size=6)
    net = mlp([2, 3, 1], seed=1)
    trainer = cr.Trainer(net, x, y, loss="mse", validation=(x_val, y_val, w_val), tol=0)
    trainer.step()
    p = net(cr.tensor(x_val)).data
    # the weighted mse and scikit-learn's weighted R^2, written out: 1 - sum w (y - p)^2 / sum w (y - ybar_w)^2
    sse = np.sum(w_val[:, None] * (y_val - p) ** 2)
    ybar = np.sum(w_val[:, None] * y_val) / w_val.sum()
    assert trainer.history.validation_loss[0] == pytest.approx(sse / w_val.sum(), rel=1e-12)
    assert trainer.history.validation_score[0] == pytest.approx(
        1 - sse / np.sum(w_val[:, None] * (y_val - ybar) ** 2), rel=1e-12
    )
    # a scorer of (outputs, y_val, w_val); early stopping watches it: a constant score improves once,
    # then counts 1, 2, 3 > n_iter_no_change = 2 at epoch 4
    seen = []
    stopped = cr.Trainer(
        mlp([2, 3, 1], seed=1), x, y, loss="mse", validation=(x_val, y_val, w_val), stopping="early", n_iter_no_change=2
    )
    stopped.scorer = lambda out, yv, wv: seen.append((out.shape, yv is y_val or np.array_equal(yv, y_val), wv)) or 0.5
    stopped.run()
    assert stopped.history.n_iter == 4 and stopped.history.validation_score == [0.5] * 4
    assert seen[0][:2] == ((6, 1), True)
    np.testing.assert_array_equal(seen[0][2], w_val)
    with pytest.raises(ValueError, match="a triple"):
        cr.Trainer(net, x, y, validation=(x_val, y_val, w_val, w_val))


def test_on_plateau_is_told_each_lowered_rate_and_the_stop():
    # at lr = 1e-5 each epoch lowers the loss by far less than tol = 0.001: the first epoch sets the best,
    # then with n_iter_no_change = 1 the count reaches 2 > 1 every 2 epochs: a plateau at epochs 3, 5, 7
    x, y = np.zeros((4, 1)), np.ones((4, 1))
    told = []
    trainer = cr.Trainer(
        mlp([1, 1], seed=0), x, y, loss="mse", optimizer=GradientDescent(1e-5), schedule="adaptive",
        stopping="improvement", n_iter_no_change=1, max_iter=100,
    )  # fmt: skip
    trainer.on_plateau = told.append  # 1e-5 / 5 = 2e-6, / 5 = 4e-7 (<= 1e-6: the next plateau stops the run)
    trainer.run()
    assert told[:2] == pytest.approx([2e-6, 4e-7]) and told[2:] == [None]
    assert trainer.history.n_iter == 7


@pytest.mark.parametrize(
    "options",
    [
        dict(batch_size=5, seed=3, alpha=0.1, validation=0.25, stopping="early", n_iter_no_change=3),
        dict(compile=True, batch_size=4, seed=1),
        dict(),  # the whole batch
        dict(optimizer=cr.optim.LBFGS()),
    ],
    ids=["mini-batches", "compiled", "whole", "lbfgs"],
)
def test_sparse_inputs_train_as_the_same_rows_made_dense(options):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 4)) * (rng.random((20, 4)) < 0.4)  # mostly zeros
    y = x @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.1
    runs = []
    for rows in (x, scipy_sparse.csr_matrix(x)):
        net = mlp([4, 3, 1], activation="tanh", seed=0)
        opts = dict(options)
        if "optimizer" in opts:
            opts["optimizer"] = cr.optim.LBFGS()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = cr.fit(net, rows, y, loss="mse", max_iter=15, tol=0, **opts)
        runs.append((h.loss, h.validation_score, [p.data for p in net.parameters()]))
    (la, va, pa), (lb, vb, pb) = runs
    assert la == lb and va == vb
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a, b)


def test_n_iter_no_change_may_be_infinite_and_a_run_may_be_resumed():
    # tol = 1e9: every epoch after the first (which improves on inf) counts, and with n_iter_no_change = inf
    # the count never plateaus: the run goes to max_iter with a count of max_iter - 1 (scikit-learn's rule).
    net = mlp([1, 1], seed=0)
    x, y = [[0.0], [1.0]], [[1.0], [3.0]]
    trainer = cr.Trainer(
        net, x, y, loss="mse", stopping="improvement", tol=1e9, n_iter_no_change=float("inf"), max_iter=6
    )
    _quiet(trainer.run)
    assert trainer.history.n_iter == 6 and trainer.count.count == 5
    trainer.resume(2)  # two more: the same as a run of 8
    _quiet(trainer.run)
    whole = cr.Trainer(
        mlp([1, 1], seed=0),
        x,
        y,
        loss="mse",
        stopping="improvement",
        tol=1e9,
        n_iter_no_change=float("inf"),
        max_iter=8,
    )
    _quiet(whole.run)
    assert trainer.history.loss == whole.history.loss and trainer.count.count == whole.count.count == 7
    with pytest.raises(ValueError, match="n_iter_no_change"):
        cr.Trainer(net, x, y, n_iter_no_change=0.5)
