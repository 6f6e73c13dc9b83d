"""fit(..., restarts=N): N starts trained at once equal N separate runs from the same starts."""

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.nn import DosageNetwork, mlp
from chainrule.optim import Adam, GradientDescent, Momentum


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        warnings.simplefilter("ignore", cr.GradientHealthWarning)
        yield


def _separate_runs(make, n, start_seed, x, y, **kw):
    """The reference: start k is reset_parameters drawn from SeedSequence(start_seed, spawn_key=(k,)), trained alone."""
    results = []
    for k in range(n):
        model = make()
        model.reset_parameters(np.random.default_rng(np.random.SeedSequence(start_seed, spawn_key=(k,))))
        history = cr.fit(model, x, y, **kw)
        with cr.no_grad():
            loss = cr.losses.get_loss(kw.get("loss", "ssr"))(
                model(cr.tensor(np.asarray(x).reshape(len(x), -1))), _targets(y, kw.get("loss", "ssr"))
            ).item()
        results.append((loss, history.n_iter, history.converged, model.state_dict()))
    return results


def _targets(y, loss):
    y = np.asarray(y)
    return y if loss == "cross_entropy" or y.ndim == 2 else y[:, None]


def test_the_lessons_network_from_six_starts_equals_six_separate_runs():
    x, y = cr.data.dosage()
    reference = _separate_runs(lambda: DosageNetwork.random(seed=0), 6, 11, x, y, max_iter=300)
    net = DosageNetwork.random(seed=0)
    history = cr.fit(net, x, y, restarts=6, seed=11, max_iter=300)
    losses = [r[0] for r in reference]
    np.testing.assert_allclose(history.restart_losses, losses, rtol=1e-10, atol=1e-14)
    assert list(history.restart_iterations) == [r[1] for r in reference]
    assert list(history.restart_converged) == [r[2] for r in reference]
    best = int(np.argmin(losses))
    assert history.best_restart == best
    for name, value in reference[best][3].items():  # the model ends where the best run ends
        np.testing.assert_allclose(net.state_dict()[name], value, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "loss, optimizer",
    [
        ("mse", lambda: Momentum(0.05)),
        ("ssr", lambda: Adam(0.01)),
        ("mse", lambda: cr.optim.RMSprop(0.01, weight_decay=0.01)),
        ("mse", lambda: cr.optim.AdamW(0.01)),
        ("ssr", lambda: cr.optim.Adagrad(0.05)),
    ],
    ids=["momentum", "adam", "rmsprop", "adamw", "adagrad"],
)
def test_an_mlp_regression_with_restarts_equals_separate_runs(loss, optimizer):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(12, 2))
    y = np.sin(2 * x[:, 0]) + x[:, 1] ** 2
    make = lambda: mlp([2, 4, 1], activation="tanh", seed=0)  # noqa: E731
    reference = _separate_runs(make, 3, 5, x, y, loss=loss, optimizer=optimizer(), max_iter=60, tol=1e-5)
    history = cr.fit(make(), x, y, loss=loss, optimizer=optimizer(), restarts=3, seed=5, max_iter=60, tol=1e-5)
    np.testing.assert_allclose(history.restart_losses, [r[0] for r in reference], rtol=1e-9)


def test_a_classifier_with_mini_batches_and_restarts_equals_separate_runs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 0] > 1)
    make = lambda: mlp([2, 5, 3], activation="relu", seed=0)  # noqa: E731
    kw = dict(loss="cross_entropy", optimizer=GradientDescent(0.2), max_iter=15, batch_size=8, seed=3)
    reference = _separate_runs(make, 3, 3, x, y, **kw)
    history = cr.fit(make(), x, y, restarts=3, **kw)
    np.testing.assert_allclose(history.restart_losses, [r[0] for r in reference], rtol=1e-9)


def test_restarts_find_the_fit_a_single_poor_start_misses():
    # Seed 0's start ends on the SSR 0.667 plateau (the demo shows it); among 20 starts one fits.
    x, y = cr.data.dosage()
    single = DosageNetwork.random(seed=0)
    cr.fit(single, x, y)
    assert cr.losses.ssr(single(x), y).item() > 0.5
    net = DosageNetwork.random(seed=0)
    history = cr.fit(net, x, y, restarts=20, seed=0)
    assert history.restart_losses.shape == (20,)
    assert cr.losses.ssr(net(x), y).item() < 0.01
    assert history.restart_losses.min() < 0.01


def test_frozen_parameters_stay_fixed_across_restarts():
    x, y = cr.data.dosage()
    net = DosageNetwork.from_lesson(b3=0.0)
    before = {n: net.state_dict()[n].tobytes() for n in DosageNetwork.NAMES if n != "b3"}
    history = cr.fit(net, x, y, params=["b3"], restarts=4, seed=0)
    # reset_parameters draws b3 = 0 every time, so the four starts are one: the lessons' b3 run.
    np.testing.assert_allclose(history.restart_losses, history.restart_losses[0])
    assert round(net.b3.item(), 3) == 2.609
    assert {n: net.state_dict()[n].tobytes() for n in before} == before


def test_a_diverging_start_does_not_stop_the_others():
    x, y = cr.data.dosage()
    history = cr.fit(
        DosageNetwork.random(seed=0), x, y, restarts=5, seed=2, optimizer=GradientDescent(lr=3.0), max_iter=50
    )
    assert history.restart_losses.shape == (5,)
    assert not np.isnan(history.restart_losses).any()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_restarts_raise(bad):
    x, y = cr.data.dosage()
    with pytest.raises(ValueError, match="restarts"):
        cr.fit(DosageNetwork.random(seed=0), x, y, restarts=bad)


def test_a_custom_loss_is_refused_with_restarts():
    x, y = cr.data.dosage()
    with pytest.raises(ValueError, match="built-in losses"):
        cr.fit(DosageNetwork.random(seed=0), x, y, restarts=2, loss=lambda p, t: ((p - t) ** 2).sum())


def test_compiled_restarts_with_mini_batches_read_each_batch_s_targets():
    # The population's targets are spread over the starts before the step: a replayed step must see
    # every batch's own targets, so compiled and eager restarts end alike.
    x = np.linspace(-1, 1, 8)[:, None]
    y = (x[:, 0] > 0).astype(float)
    runs = [
        cr.fit(
            mlp([1, 4, 1], activation="tanh", seed=0),
            x,
            y,
            loss="mse",
            restarts=3,
            batch_size=1,
            seed=2,
            max_iter=50,
            tol=0,
            compile=c,
        ).restart_losses
        for c in (False, True)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_restarts_of_only_an_output_bias_broadcast_over_the_population():
    # Only 2.bias gets the population axis: its (3, 1, 1) values widen the linear layer's (8, 1) output.
    x = np.linspace(-1, 1, 8)[:, None]
    history = cr.fit(mlp([1, 3, 1], activation="tanh", seed=0), x, x[:, 0] ** 2, restarts=3, params=["2.bias"])
    assert history.restart_losses.shape == (3,)
    np.testing.assert_allclose(history.restart_losses, history.restart_losses[0])  # a bias starts at 0 each time


@pytest.mark.parametrize("batch_size", [None, 2])
def test_a_start_that_blows_up_is_kept_at_its_values_before_the_blow_up_also_with_tol_0(batch_size):
    # The reviewer's case: at lr 5 most starts diverge. Each frozen start keeps the values it had before
    # the iteration that blew up, so its loss is finite there, whatever tol is.
    x, y = cr.data.dosage()
    runs = [
        cr.fit(
            DosageNetwork.random(seed=0),
            x,
            y,
            restarts=40,
            seed=3,
            optimizer=GradientDescent(lr=5.0),
            max_iter=30,
            tol=tol,
            batch_size=batch_size,
        )
        for tol in (0.0, 1e-12)
    ]
    for h in runs:
        assert np.isfinite(h.restart_losses).sum() > 20
        assert h.best_restart == int(np.argmin(h.restart_losses))
    np.testing.assert_array_equal(runs[0].restart_losses, runs[1].restart_losses)


# ---- before anything is drawn; and Ctrl-C ---------------------------------------------------------


def test_a_population_too_big_for_max_elements_is_refused_before_a_start_is_drawn(monkeypatch):
    x, y = cr.data.dosage()
    drawn = []
    monkeypatch.setattr(cr.restarts, "draw_starts", lambda *a: drawn.append(a))
    # 11 copies of 7 parameters + 3 rows x widest 1 = 80 numbers a start: 10**7 starts are 8e8 > MAX_ELEMENTS = 2e8
    with pytest.raises(
        ValueError, match=r"restarts=10000000 would hold about 8e\+08 float64 numbers .*restarts.MAX_ELEMENTS = 2e\+08"
    ):
        cr.fit(DosageNetwork.random(seed=0), x, y, restarts=10**7)
    assert drawn == []
    assert cr.restarts.population_elements(7, 3, 1, 10**7) == 8 * 10**8


def test_ctrl_c_among_the_starts_stops_them_and_keeps_the_best_where_it_got_to(monkeypatch):
    x, y = cr.data.dosage()
    largest, calls = cr.restarts._largest_per_start, []

    def ctrl_c_in_iteration_4(steps, n):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return largest(steps, n)

    monkeypatch.setattr(cr.restarts, "_largest_per_start", ctrl_c_in_iteration_4)
    net = DosageNetwork.random(seed=0)
    trainer = cr.Trainer(net, x, y, restarts=5, seed=1)
    history = trainer.run()
    assert trainer.population_interrupted and "interrupted (Ctrl-C)" in history.stop_reason
    # the losses fall for these 3 iterations: each start's lowest is where it got to
    assert "where its loss was lowest" in history.stop_reason and "after 3 iterations" in history.stop_reason
    assert history.n_iter == 0 and list(history.restart_iterations) == [3] * 5
    best = history.best_restart
    with cr.no_grad():
        loss = cr.losses.ssr(net(cr.tensor(x.reshape(-1, 1))), cr.tensor(y.reshape(-1, 1))).item()
    assert loss == pytest.approx(history.restart_losses[best]) and loss == history.restart_losses.min()

    # the same starts trained 3 iterations without Ctrl-C reach the same values
    monkeypatch.setattr(cr.restarts, "_largest_per_start", largest)
    again = DosageNetwork.random(seed=0)
    cr.fit(again, x, y, restarts=5, seed=1, max_iter=3, tol=0)  # the best start again alone, 3 iterations
    for name, value in net.state_dict().items():
        np.testing.assert_allclose(value, again.state_dict()[name], rtol=1e-9, atol=1e-12)


def test_ctrl_c_leaves_the_starts_that_had_stopped_as_they_stopped():
    # Starts that converged before the Ctrl-C keep their iteration counts and values: the same as in the run
    # without Ctrl-C (the independent reference); only those still training go back to their lowest loss.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 1))
    y = 2 * x + 1

    def run(ctrl_c_at=None):
        net, opt = cr.nn.mlp([1, 3, 1], seed=0), cr.optim.GradientDescent(lr=0.05)
        if ctrl_c_at is not None:
            steps, step = [0], opt.step

            def counted():
                steps[0] += 1
                if steps[0] == ctrl_c_at:
                    raise KeyboardInterrupt
                return step()

            opt.step = counted
        trainer = cr.Trainer(net, x, y, loss="mse", optimizer=opt, max_iter=400, tol=0.02, restarts=6, seed=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return trainer.run()

    whole, cut = run(), run(ctrl_c_at=44)
    stopped = whole.restart_iterations < 43  # converged before the Ctrl-C in iteration 44
    assert stopped.sum() >= 3 and not stopped.all() and whole.restart_converged[stopped].all()
    assert (cut.restart_iterations[stopped] == whole.restart_iterations[stopped]).all()
    assert (cut.restart_converged[stopped]).all() and (cut.restart_iterations[~stopped] == 43).all()
    np.testing.assert_allclose(cut.restart_losses[stopped], whole.restart_losses[stopped], rtol=1e-12)


def test_an_interrupt_whose_keyboard_interrupt_was_lost_still_stops_the_starts(monkeypatch):
    # A Ctrl-C handler's KeyboardInterrupt can be swallowed (raised inside a finalizer or an import's
    # callback); the handler also calls trainer.interrupt(), which the starts look at before every batch.
    # Here the interrupt comes in iteration 4 with no exception at all: iteration 5 does not begin.
    x, y = cr.data.dosage()
    largest, calls = cr.restarts._largest_per_start, []
    net = DosageNetwork.random(seed=0)
    trainer = cr.Trainer(net, x, y, restarts=5, seed=1)

    def lost_ctrl_c_in_iteration_4(steps, n):
        calls.append(1)
        if len(calls) == 4:
            trainer.interrupt()
        return largest(steps, n)

    monkeypatch.setattr(cr.restarts, "_largest_per_start", lost_ctrl_c_in_iteration_4)
    history = trainer.run()
    assert len(calls) == 4 and trainer.population_interrupted and "interrupted (Ctrl-C)" in history.stop_reason
    assert "after 4 iterations" in history.stop_reason and list(history.restart_iterations) == [4] * 5
    resumed = cr.Trainer(DosageNetwork.random(seed=0), x, y, restarts=5, seed=1, max_iter=6, tol=0)
    resumed.interrupt()  # asked before the run: the starts stop at their first batch ...
    assert "interrupted (Ctrl-C)" in resumed.run().stop_reason
    resumed.resume(6)  # ... and the request is spent: the starts of the resumed run go on
    assert "interrupted" not in resumed.run().stop_reason
    monkeypatch.setattr(cr.restarts, "_largest_per_start", largest)
    again = DosageNetwork.random(seed=0)
    cr.fit(again, x, y, restarts=5, seed=1, max_iter=4, tol=0)  # the best start again alone, 4 iterations
    for name, value in net.state_dict().items():
        np.testing.assert_allclose(value, again.state_dict()[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("compiled", [False, True])
def test_ctrl_c_among_the_starts_keeps_each_start_where_its_loss_was_lowest_not_where_it_got_to(monkeypatch, compiled):
    # With momentum 0.9 the lessons' network overshoots: each start's SSR falls, then rises again.
    # Each start's loss before any step (drawn as the population draws it) and after m = 1 .. 20 steps,
    # from runs of m iterations without Ctrl-C (each start ends at its values):
    x, y = cr.data.dosage()

    def population(max_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cr.ConvergenceWarning)
            net = DosageNetwork.random(seed=0)
            h = cr.fit(net, x, y, restarts=5, seed=1, max_iter=max_iter, tol=0, optimizer=Momentum(0.05, 0.9))
        return net, h

    def initial(k):
        net = DosageNetwork.random(seed=0)
        net.reset_parameters(cr.restarts.start_rng(1, k))
        return cr.losses.ssr(net(x), y).item()

    after = np.array([[initial(k) for k in range(5)]] + [population(m)[1].restart_losses for m in range(1, 21)])
    steps, start = np.unravel_index(np.argmin(after), after.shape)  # (steps, start): the lowest of all
    assert 0 < steps < 20 and (after.argmin(axis=0) < 20).all()  # no start is lowest where it got to

    largest, calls = cr.restarts._largest_per_start, []

    def ctrl_c_in_iteration_21(step_sizes, n):
        calls.append(1)
        if len(calls) == 21:  # 20 whole iterations: values after 0 .. 20 steps were seen
            raise KeyboardInterrupt
        return largest(step_sizes, n)

    monkeypatch.setattr(cr.restarts, "_largest_per_start", ctrl_c_in_iteration_21)
    net = DosageNetwork.random(seed=0)
    trainer = cr.Trainer(net, x, y, restarts=5, seed=1, tol=1e-12, optimizer=Momentum(0.05, 0.9), compile=compiled)
    history = trainer.run()
    assert trainer.population_interrupted and history.best_restart == start
    assert f"kept start {start + 1} where its loss was lowest" in history.stop_reason
    # each start is kept at its own lowest, after as many steps as that took
    np.testing.assert_allclose(history.restart_losses, after.min(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(history.restart_iterations, after.argmin(axis=0))
    # and the model holds the best start's values after that many steps
    monkeypatch.setattr(cr.restarts, "_largest_per_start", largest)
    again, _ = population(int(steps))
    for name, value in net.state_dict().items():
        np.testing.assert_allclose(value, again.state_dict()[name], rtol=1e-9, atol=1e-12)
