"""The training options of the one loop: penalty, sample weights, shuffling, validation, stopping rules,
against hand arithmetic, autograd, scikit-learn's formulas and repeated rows."""

import math
import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import chainrule as cr
from chainrule.data import dosage
from chainrule.engines import clip_gradients
from chainrule.losses import cross_entropy, mse, poisson, squared_error
from chainrule.nn import DosageNetwork, mlp
from chainrule.optim import Adam, GradientDescent
from chainrule.validation import r2, split

DOSES_X, DOSES_Y = dosage()


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        return fn(*args, **kw)


def _data(rows=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    return x, np.sin(x[:, :1]) + 0.5 * x[:, 1:]


def _values(model):
    return [p.data.copy() for p in model.parameters()]


# ---- alpha: scikit-learn's L2 penalty ----------------------------------------------------------


def _mlp_loss(flat, x, y, alpha):
    """The 2-3-1 tanh network's mse plus 0.5 alpha (||W0||^2 + ||W2||^2) / n, written for autograd."""
    w0, b0, w2, b2 = flat[:6].reshape(3, 2), flat[6:9], flat[9:12].reshape(1, 3), flat[12:13]
    out = anp.tanh(x @ w0.T + b0) @ w2.T + b2
    return anp.mean((y - out) ** 2) + 0.5 * alpha * (anp.sum(w0**2) + anp.sum(w2**2)) / len(x)


def test_alpha_adds_half_alpha_times_the_squared_weights_over_n_to_the_loss_and_its_gradient():
    x, y = _data()
    net = mlp([2, 3, 1], activation="tanh", seed=1)
    flat = np.concatenate([p.data.ravel() for p in net.parameters()])
    trainer = cr.Trainer(net, x, y, loss="mse", alpha=0.3, tol=0, optimizer=GradientDescent(0.1))
    first = trainer.step()
    assert first.loss == pytest.approx(_mlp_loss(flat, x, y, 0.3), rel=1e-12)
    want = autograd.grad(_mlp_loss)(flat, x, y, 0.3)
    np.testing.assert_allclose(np.concatenate([g.ravel() for g in first.grads]), want, rtol=1e-10, atol=1e-14)
    assert trainer.history.loss[0] == first.loss  # the History records the penalized loss


def test_alpha_on_the_lessons_network_covers_the_trained_ws_not_the_bs():
    # b3 alone has no penalty: the path of the lessons' b3 is the same with or without alpha
    x, y = dosage()
    plain, penalized = DosageNetwork.from_lesson(b3=0.0), DosageNetwork.from_lesson(b3=0.0)
    h0 = cr.fit(plain, x, y, params=["b3"])
    h1 = cr.fit(penalized, x, y, params=["b3"], alpha=1.0)
    assert penalized.b3.item() == plain.b3.item() and h1.loss == h0.loss
    # all of them trained: the loss gains 0.5 x 1 x (w1^2 + w2^2 + w3^2 + w4^2) / 3 rows, and dloss/dw1
    # gains 1 x w1 / 3
    t0 = cr.Trainer(DosageNetwork.from_lesson(b3=0.0), x, y, tol=0)
    t1 = cr.Trainer(DosageNetwork.from_lesson(b3=0.0), x, y, tol=0, alpha=1.0)
    a, b = t0.step(), t1.step()
    w = [3.34, -3.53, -1.22, -2.30]
    assert b.loss - a.loss == pytest.approx(0.5 * sum(v * v for v in w) / 3, rel=1e-12)
    assert b.grads[0] - a.grads[0] == pytest.approx(3.34 / 3, rel=1e-12)  # w1 comes first
    assert b.grads[1] == a.grads[1]  # b1: no penalty


# ---- sample_weight: integer weights are repeated rows -----------------------------------------


@pytest.mark.parametrize("loss", ["mse", "ssr", "squared_error", "cross_entropy"])
def test_integer_sample_weights_train_as_repeated_rows(loss):
    x, y = _data(rows=8)
    if loss == "cross_entropy":
        y = (x[:, 0] > 0).astype(int)
    weights = np.array([1, 2, 0, 3, 1, 1, 2, 1])
    out = 2 if loss == "cross_entropy" else 1
    weighted, repeated = mlp([2, 4, out], activation="tanh", seed=2), mlp([2, 4, out], activation="tanh", seed=2)
    kw = dict(loss=loss, tol=0, max_iter=5, optimizer=GradientDescent(0.05))
    hw = _quiet(cr.fit, weighted, x, y, sample_weight=weights, **kw)
    hr = _quiet(cr.fit, repeated, np.repeat(x, weights, axis=0), np.repeat(y, weights, axis=0), **kw)
    np.testing.assert_allclose(hw.loss, hr.loss, rtol=1e-12)
    for a, b in zip(weighted.parameters(), repeated.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-11, atol=1e-14)


def test_sample_weights_follow_scikit_learns_losses():
    from sklearn.neural_network._base import poisson_loss, squared_loss  # the independent formulas

    rng = np.random.default_rng(3)
    z, counts, w = rng.normal(size=(6, 2)), rng.poisson(2.0, size=(6, 2)).astype(float), rng.uniform(0, 2, 6)
    assert squared_error(cr.tensor(z), counts, sample_weight=w).item() == pytest.approx(
        squared_loss(counts, z, w), rel=1e-12
    )
    assert poisson(cr.tensor(z), counts, sample_weight=w).item() == pytest.approx(
        poisson_loss(counts, np.exp(z), w), rel=1e-12
    )
    assert poisson(cr.tensor(z), counts).item() == pytest.approx(poisson_loss(counts, np.exp(z)), rel=1e-12)


def test_poisson_gradient_is_e_to_the_z_minus_y_over_rows():
    z = cr.tensor([[0.5], [-1.0], [2.0]], requires_grad=True)
    y = np.array([[1.0], [0.0], [5.0]])
    poisson(z, y).backward()
    np.testing.assert_allclose(z.grad, (np.exp(z.data) - y) / 3, rtol=1e-12)


def test_weighted_cross_entropy_is_the_weighted_mean_of_the_rows_losses():
    logits, labels, w = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]), [1, 1, 0], np.array([2.0, 1.0, 0.5])
    rows = [math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(3.0)), math.log(2.0)]  # -log softmax[label]
    value = cross_entropy(cr.tensor(logits), labels, sample_weight=w).item()
    assert value == pytest.approx(np.dot(w, rows) / w.sum(), rel=1e-12)


def test_a_bad_sample_weight_is_refused_in_one_line():
    x, y = _data(rows=4)
    with pytest.raises(ValueError, match=r"fit: sample_weight must have shape \(4,\)"):
        cr.fit(mlp([2, 1], seed=0), x, y, sample_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="sample_weight must be finite numbers >= 0"):
        cr.fit(mlp([2, 1], seed=0), x, y, sample_weight=[1.0, -1.0, 1.0, 1.0])


def test_a_mini_batch_whose_weights_are_all_zero_is_skipped_not_a_crash_mid_training():
    # review finding 4: batch_size=1 and row 0 weighing 0: the weighted mean of that batch is 0 / 0
    x, y = _data(rows=20)
    w = np.ones(20)
    w[0] = 0.0
    net, alone = mlp([2, 3, 1], "tanh", seed=0), mlp([2, 3, 1], "tanh", seed=0)
    kw = dict(loss="mse", batch_size=1, shuffle=False, max_iter=3, tol=0)
    _quiet(cr.fit, net, x, y, sample_weight=w, **kw)
    _quiet(cr.fit, alone, x[1:], y[1:], **kw)  # the same steps: the batch of weight 0 takes none
    for a, b in zip(net.parameters(), alone.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-15)


def test_held_out_or_training_rows_of_zero_weight_are_refused_before_training():
    # review finding 4: with validation=0.2 of 20 rows the 4 held-out rows drawn from seed 2 all weigh 0 here
    x, y = _data(rows=20)
    _, held = split(20, 0.2, seed=2)
    w = np.ones(20)
    w[held] = 0.0
    net = mlp([2, 1], seed=0)
    before = _values(net)
    with pytest.raises(ValueError, match=r"the sample weights of the 4 held-out rows \(validation=0.2, seed=2\)"):
        cr.fit(net, x, y, sample_weight=w, validation=0.2, seed=2)
    with pytest.raises(ValueError, match="the sample weights of the 16 training rows"):
        cr.fit(net, x, y, sample_weight=1.0 - w, validation=0.2, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(before, _values(net)))


# ---- shuffle ----------------------------------------------------------------------------------


def test_shuffle_false_takes_the_batches_in_row_order():
    # one Linear p = w x + b, mse, batches of 2 rows in order, gradient descent by hand:
    # d mse/dw = mean(2 (p - y) x), d mse/db = mean(2 (p - y))
    x, y = np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([[1.0], [3.0], [2.0], [5.0]])
    net = mlp([1, 1], seed=0)
    w, b = float(net[0].weight.item()), float(net[0].bias.item())
    _quiet(cr.fit, net, x, y, loss="mse", tol=0, max_iter=2, batch_size=2, shuffle=False, seed=7)
    for _ in range(2):
        for rows in ([0, 1], [2, 3]):
            r = w * x[rows, 0] + b - y[rows, 0]
            w, b = w - 0.1 * np.mean(2 * r * x[rows, 0]), b - 0.1 * np.mean(2 * r)
    assert net[0].weight.item() == pytest.approx(w, rel=1e-12)
    assert net[0].bias.item() == pytest.approx(b, rel=1e-12)


def test_shuffle_as_a_function_takes_each_epochs_rows_in_its_order():
    # the same Linear p = w x + b and mse as above; the function gives epoch 1 the rows 3,0 | 2,1 and
    # epoch 2 the rows 1,2 | 0,3; gradient descent by hand over those batches
    x, y = np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([[1.0], [3.0], [2.0], [5.0]])
    orders = [[3, 0, 2, 1], [1, 2, 0, 3]]
    asked = []

    def order(n):
        asked.append(n)
        return np.array(orders[len(asked) - 1])

    net = mlp([1, 1], seed=0)
    w, b = float(net[0].weight.item()), float(net[0].bias.item())
    _quiet(cr.fit, net, x, y, loss="mse", tol=0, max_iter=2, batch_size=2, shuffle=order, seed=7)
    assert asked == [4, 4]  # once an epoch, with the number of rows
    for epoch in orders:
        for rows in (epoch[:2], epoch[2:]):
            r = w * x[rows, 0] + b - y[rows, 0]
            w, b = w - 0.1 * np.mean(2 * r * x[rows, 0]), b - 0.1 * np.mean(2 * r)
    assert net[0].weight.item() == pytest.approx(w, rel=1e-12)
    assert net[0].bias.item() == pytest.approx(b, rel=1e-12)


class _OneBatch:
    """A batch source: each epoch one batch, (x, y)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter([(self.x, self.y)])


def test_shuffle_a_function_that_is_no_permutation_or_with_a_source_or_restarts_is_refused():
    x, y = np.arange(8.0).reshape(4, 2), np.arange(4.0).reshape(4, 1)
    for bad, said in (
        (lambda n: np.array([0, 1, 1, 3]), "repeated or missing rows"),
        (lambda n: np.arange(n - 1), r"shape \(3,\)"),
        (lambda n: np.arange(n) + 0.0, "dtype float64"),
        (lambda n: np.array([0, 1, 2, 4]), "repeated or missing rows"),
    ):
        with pytest.raises(ValueError, match="fit: shuffle's function must return a permutation of the 4 row "):
            _quiet(cr.fit, mlp([2, 1], seed=0), x, y, loss="mse", batch_size=2, shuffle=bad, max_iter=1)
        with pytest.raises(ValueError, match=said):
            _quiet(cr.fit, mlp([2, 1], seed=0), x, y, loss="mse", batch_size=2, shuffle=bad, max_iter=1)
    with pytest.raises(ValueError, match="fit: shuffle as a function orders the rows of arrays"):
        cr.fit(mlp([2, 1], seed=0), _OneBatch(x, y), loss="mse", shuffle=np.random.default_rng(0).permutation)
    with pytest.raises(ValueError, match="shuffle as a function"):
        cr.fit(mlp([2, 1], seed=0), x, y, loss="mse", restarts=2, shuffle=np.random.default_rng(0).permutation)


# ---- validation -------------------------------------------------------------------------------


def test_a_validation_split_is_reproducible_with_a_seed_and_stratified():
    labels = np.array([0] * 30 + [1] * 15 + [2] * 5)
    a, b = split(50, 0.2, seed=4, labels=labels), split(50, 0.2, seed=4, labels=labels)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(split(50, 0.2, seed=5, labels=labels)[1], a[1])
    # scikit-learn's stratified split holds out the same count of each class (6, 3, 1 of 10)
    from sklearn.model_selection import train_test_split

    _, theirs = train_test_split(np.arange(50), test_size=0.2, stratify=labels, random_state=0)
    assert np.bincount(labels[a[1]]).tolist() == np.bincount(labels[theirs]).tolist() == [6, 3, 1]
    assert sorted(np.concatenate(a).tolist()) == list(range(50))  # every row in exactly one part


def test_validation_scores_per_epoch_are_r2_and_accuracy():
    from sklearn.metrics import accuracy_score, r2_score

    x, y = _data(rows=20)
    net = mlp([2, 4, 1], activation="tanh", seed=0)
    h = _quiet(cr.fit, net, x[:15], y[:15], loss="mse", tol=0, max_iter=3, validation=(x[15:], y[15:]))
    assert len(h.validation_score) == len(h.validation_loss) == 3
    with cr.no_grad():
        predicted = net(cr.tensor(x[15:])).data
    assert h.validation_score[-1] == pytest.approx(r2_score(y[15:], predicted), rel=1e-12)
    assert h.validation_loss[-1] == pytest.approx(np.mean((y[15:] - predicted) ** 2), rel=1e-12)
    labels = (x[:, 0] + x[:, 1] > 0).astype(int)
    clf = mlp([2, 4, 2], activation="tanh", seed=0)
    h = _quiet(cr.fit, clf, x, labels, loss="cross_entropy", tol=0, max_iter=3, validation=0.25, seed=1)
    _, held = split(20, 0.25, seed=1, labels=labels)
    with cr.no_grad():
        guessed = np.argmax(clf(cr.tensor(x[held])).data, axis=1)
    assert h.validation_score[-1] == accuracy_score(labels[held], guessed)
    assert h.best_validation_score == max(h.validation_score)


def test_validation_forwards_the_held_out_rows_a_training_batch_at_a_time():
    # review finding 5: 4000 held-out rows through a 512-wide layer at once are 4000 x 512 x 8 B = 16 MB of
    # activations (twice: before and after tanh); batches of 50 rows make 50 x 512 x 8 B = 0.2 MB at a time
    import tracemalloc

    rng = np.random.default_rng(0)
    x, x_val = rng.normal(size=(200, 5)), rng.normal(size=(4000, 5))
    net = mlp([5, 512, 1], "tanh", seed=0)
    tracemalloc.start()
    try:
        h = _quiet(cr.fit, net, x, x[:, :1], loss="mse", batch_size=50, max_iter=1, validation=(x_val, x_val[:, :1]),
                   monitor=False)  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6, peak
    with cr.no_grad():  # and the same score as all rows at once
        assert h.validation_score[0] == pytest.approx(r2(net(x_val).data, x_val[:, :1]), rel=1e-12)


def test_early_stopping_restores_the_parameters_of_the_best_validation_score():
    x, y = _data(rows=30, seed=5)
    x_val, y_val = x[20:] + 0.3, y[20:]  # shifted inputs: the validation score peaks and falls back
    net = mlp([2, 8, 1], activation="tanh", seed=3)
    h = _quiet(
        cr.fit, net, x[:20], y[:20], loss="mse", optimizer=Adam(0.05), tol=1e-3, max_iter=400,
        validation=(x_val, y_val), stopping="early", n_iter_no_change=5,
    )  # fmt: skip
    best = h.best_validation_iter
    assert h.stopping == "early" and best < h.n_iter and "were put back" in h.stop_reason
    # the same run cut at the best epoch ends with the same parameters, bit for bit
    again = mlp([2, 8, 1], activation="tanh", seed=3)
    _quiet(cr.fit, again, x[:20], y[:20], loss="mse", optimizer=Adam(0.05), tol=0, max_iter=best)
    for a, b in zip(net.parameters(), again.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    # and it stopped where scikit-learn's count says: more than 5 epochs after the best without gaining tol
    scores, count, top, stop = h.validation_score, 0, -math.inf, None
    for k, s in enumerate(scores, start=1):
        count = count + 1 if s < top + 1e-3 else 0
        top = max(top, s)
        if count > 5:
            stop = k
            break
    assert h.n_iter == stop


def test_early_stopping_needs_validation_data():
    x, y = _data(rows=6)
    with pytest.raises(ValueError, match="stopping='early' needs validation data"):
        cr.fit(mlp([2, 1], seed=0), x, y, stopping="early")
    with pytest.raises(ValueError, match=r"fit: validation must be a number in \(0, 1\), got 1.5"):
        cr.fit(mlp([2, 1], seed=0), x, y, validation=1.5)
    with pytest.raises(ValueError, match=r"fit: stopping must be one of 'steps', 'improvement', 'early'"):
        cr.fit(mlp([2, 1], seed=0), x, y, stopping="patience")


def test_early_stopping_with_one_held_out_row_is_refused_as_scikit_learn_refuses_it():
    # review finding 1: 10% of 10 rows is 1 row, whose R^2 is not defined; the run kept iteration 1's weights
    from sklearn.metrics import r2_score
    from sklearn.neural_network import MLPRegressor

    x = np.linspace(0, 1, 10)[:, None]
    with pytest.raises(ValueError, match=r"validation=0.1 holds out 1 of 10 rows; the validation set is too small"):
        cr.fit(mlp([1, 8, 1], "tanh", seed=0), x, np.sin(3 * x), loss="mse", validation=0.1, stopping="early", seed=0)
    with pytest.raises(ValueError, match="The validation set is too small"):  # scikit-learn's own rule, as ours
        MLPRegressor(early_stopping=True, validation_fraction=0.1, random_state=0).fit(x, np.sin(3 * x).ravel())
    with pytest.raises(ValueError, match="validation data has 1 row; the validation set is too small"):
        cr.fit(mlp([1, 1], seed=0), x, np.sin(3 * x), validation=(x[:1], x[:1]))
    assert math.isnan(r2(np.array([[1.0]]), np.array([[2.0]])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns that R^2 of one sample is not well-defined
        assert math.isnan(r2_score([2.0], [1.0]))
    h = _quiet(cr.fit, mlp([1, 8, 1], "tanh", seed=0), x, np.sin(3 * x), loss="mse", validation=0.2, max_iter=3)
    assert len(h.validation_score) == 3  # 2 rows held out: allowed


# ---- stopping rules ---------------------------------------------------------------------------


def test_the_improvement_rule_stops_at_the_epoch_scikit_learns_count_says():
    x, y = _data(rows=16)
    h = _quiet(
        cr.fit, mlp([2, 4, 1], activation="tanh", seed=0), x, y, loss="mse", optimizer=GradientDescent(0.05),
        stopping="improvement", tol=1e-3, n_iter_no_change=3, max_iter=2000,
    )  # fmt: skip
    # scikit-learn's _update_no_improvement_count, written out: count epochs with loss > best - tol
    count, best, stop = 0, math.inf, None
    for k, loss in enumerate(h.loss, start=1):
        count = count + 1 if loss > best - 1e-3 else 0
        best = min(best, loss)
        if count > 3:
            stop = k
            break
    assert h.converged and h.n_iter == stop < 2000
    assert "did not improve by tol = 0.001 for 4 epochs" in h.stop_reason


def test_adam_stopped_at_once_by_the_lessons_rule_warns_and_says_why():
    # Adam's first step is lr x m / sqrt(v) = lr x sign(g) (bias-corrected): 0.001 < tol = 0.01 everywhere
    x, y = _data(rows=16)
    with pytest.warns(cr.PrematureStopWarning, match=r"iteration 1 while the loss was still falling.*Adam's steps"):
        h = cr.fit(mlp([2, 4, 1], seed=0), x, y, loss="mse", optimizer=Adam(0.001), tol=0.01)
    assert h.n_iter == 1
    with warnings.catch_warnings():  # the lessons' own run converges late, with the loss levelled off
        warnings.simplefilter("error", cr.PrematureStopWarning)
        cr.fit(DosageNetwork.from_lesson(b3=0.0), *dosage(), params=["b3"])


def test_a_decaying_schedule_stopped_by_the_lessons_rule_warns_that_the_rate_shrank_the_steps():
    # review finding 2. The lessons' b3 with Step(every=1, gamma=0.1): dSSR/db3 = 6 b3 - 15.66 (three rows).
    # lr 0.1: step -1.566 (b3 1.566); lr 0.01: 0.01 x -6.26 = -0.0626 (b3 1.629); lr 0.001: -0.00589
    # (b3 1.634); lr 1e-4: 1e-4 x -5.85 = -0.000585 < tol 0.001: "converged" at iteration 4, b3 far from 2.61.
    # At the first rate that last step would have been 0.1 x 5.85 = 0.585.
    net = DosageNetwork.from_lesson(b3=0.0)
    with pytest.warns(cr.PrematureStopWarning, match=r"the steps shrank because the schedule lowered the rate"):
        h = cr.fit(net, *dosage(), params=["b3"], schedule=cr.schedules.Step(every=1, gamma=0.1))
    assert h.n_iter == 4 and net.b3.item() == pytest.approx(1.634, abs=1e-3)
    with warnings.catch_warnings():  # a schedule that keeps the rate: the lessons' run, no warning
        warnings.simplefilter("error", cr.PrematureStopWarning)
        cr.fit(DosageNetwork.from_lesson(b3=0.0), *dosage(), params=["b3"], schedule="constant")


def test_best_loss_is_the_lowest_training_loss():
    x, y = _data(rows=10)
    h = _quiet(cr.fit, mlp([2, 3, 1], seed=0), x, y, loss="mse", tol=0, max_iter=20)
    assert h.best_loss == min(h.loss)


# ---- what the other paths do with the options ---------------------------------------------------


def test_compile_with_the_options_runs_the_numpy_replay_or_eagerly():
    x, y = dosage()
    h = _quiet(cr.fit, DosageNetwork.random(seed=0), x, y, max_iter=5, compile=True, alpha=0.1)
    assert h.engine == "numpy"
    with pytest.warns(cr.trace.CompileWarning, match="reads no sample weights of this loss"):  # poisson's
        h = _quiet(cr.fit, DosageNetwork.random(seed=0), x, y, loss="poisson", max_iter=5, compile=True,
                   sample_weight=[1, 2, 1])  # fmt: skip
    assert h.engine == "eager"
    eager, replayed = DosageNetwork.random(seed=0), DosageNetwork.random(seed=0)
    he = _quiet(cr.fit, eager, x, y, max_iter=20, tol=0, alpha=0.1, clip=1.0)
    hr = _quiet(cr.fit, replayed, x, y, max_iter=20, tol=0, alpha=0.1, clip=1.0, compile=True)
    np.testing.assert_allclose(hr.loss, he.loss, rtol=1e-12)


def test_restarts_refuse_the_options_they_do_not_know():
    x, y = dosage()
    with pytest.raises(ValueError, match="cannot be combined with alpha, stopping='improvement'"):
        cr.fit(DosageNetwork.random(seed=0), x, y, restarts=3, alpha=0.1, stopping="improvement")


def test_squared_error_is_half_the_mse():
    p, o = cr.tensor([[1.0], [3.0]]), [[0.0], [0.0]]
    assert squared_error(p, o).item() == 0.5 * mse(p, o).item() == 2.5  # 0.5 x (1 + 9) / 2


# ---- schedules ----------------------------------------------------------------------------------


def _rates(schedule, epochs=6, rows=10, **kw):
    x, y = _data(rows=rows)
    h = _quiet(cr.fit, mlp([2, 3, 1], seed=0), x, y, loss="mse", tol=0, max_iter=epochs, schedule=schedule, **kw)
    return h.learning_rates


def test_schedules_set_each_epochs_rate_by_their_formulas():
    from chainrule.schedules import Constant, Cosine, InvScaling, Step

    lr0, n = 0.1, 10  # GradientDescent(0.1) is fit's default; 10 rows an epoch
    assert _rates(Constant()) == [lr0] * 6
    # scikit-learn's invscaling: lr0 / (t + 1)^power_t, t = rows seen before the epoch: 0, 10, 20, ...
    assert _rates("invscaling") == pytest.approx([lr0 / (k * n + 1) ** 0.5 for k in range(6)], rel=1e-15)
    assert _rates(InvScaling(power_t=0.25)) == pytest.approx([lr0 / (k * n + 1) ** 0.25 for k in range(6)])
    # Step(every=2, gamma=0.5): 0.1, 0.1, 0.05, 0.05, 0.025, 0.025
    assert _rates(Step(every=2, gamma=0.5)) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=1e-15)
    # Cosine(period=4, min_lr=0.02): 0.02 + 0.08 (1 + cos(pi k / 4)) / 2 for k <= 4, then 0.02
    want = [0.02 + 0.08 * (1 + math.cos(math.pi * min(k, 4) / 4)) / 2 for k in range(6)]
    assert _rates(Cosine(period=4, min_lr=0.02)) == pytest.approx(want, rel=1e-12)


def test_the_adaptive_schedule_divides_the_rate_by_5_at_each_plateau_and_stops_at_its_floor():
    x, y = dosage()
    h = _quiet(
        cr.fit, DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"], schedule="adaptive",
        stopping="improvement", tol=1e-3, n_iter_no_change=2, max_iter=500,
    )  # fmt: skip
    rates = sorted(set(h.learning_rates), reverse=True)
    assert rates == pytest.approx([0.1 / 5**k for k in range(len(rates))], rel=1e-12)
    assert rates[-1] <= 1e-6 and "learning rate at its floor" in h.stop_reason
    # each drop comes after more than n_iter_no_change epochs without gaining tol (scikit-learn's count)
    count, best = 0, math.inf
    for k, loss in enumerate(h.loss[:-1]):
        count = count + 1 if loss > best - 1e-3 else 0
        best = min(best, loss)
        expected = h.learning_rates[k] / 5 if count > 2 else h.learning_rates[k]
        if count > 2:
            count = 0
        assert h.learning_rates[k + 1] == pytest.approx(expected, rel=1e-12)


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match=r"schedule must be None, a chainrule.schedules.Schedule or one of"):
        _rates("cyclic")


def test_minor_option_checks_huge_weights_cosine_above_the_rate_and_shuffle_no_are_refused_in_one_line():
    # review finding 16: 50 weights of 1e308 sum to inf ("overflow encountered in reduce" leaked); Cosine's
    # min_lr above the rate made the rate rise; shuffle="no" was taken as True
    x, y = _data(rows=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="sample_weight must be .* a positive, finite sum, got a sum of inf"):
            cr.fit(mlp([2, 1], seed=0), x, y, sample_weight=np.full(50, 1e308))
    net = mlp([2, 1], seed=0)
    before = _values(net)
    with pytest.raises(ValueError, match="Cosine: min_lr=5 is above the starting learning rate 0.1"):
        cr.fit(net, x, y, schedule=cr.schedules.Cosine(10, min_lr=5))
    assert all(np.array_equal(a, b) for a, b in zip(before, _values(net)))  # refused before the first step
    with pytest.raises(ValueError, match="fit: shuffle must be one of True, False, got 'no'"):
        cr.fit(net, x, y, shuffle="no", batch_size=10)


def test_a_rate_set_by_hand_between_steps_is_where_the_schedule_goes_on_from():
    # review finding 16: with a schedule, trainer.optimizer.lr = ... was overwritten at the next epoch.
    # Step(every=1, gamma=0.5) from 0.1: epochs at 0.1, 0.05; set 0.01 by hand; then 0.01 x 0.5 = 0.005
    x, y = _data(rows=8)
    trainer = cr.Trainer(mlp([2, 1], seed=0), x, y, loss="mse", schedule=cr.schedules.Step(1, 0.5), tol=0)
    trainer.step()
    trainer.step()
    trainer.optimizer.lr = 0.01
    trainer.step()
    trainer.step()
    assert trainer.history.learning_rates == pytest.approx([0.1, 0.05, 0.01, 0.005], rel=1e-12)


def test_the_early_stopping_reason_says_a_gain_below_tol_still_makes_the_best():
    # review finding 16: "did not improve by tol for 11 epochs ... iteration 36 (the best)" read as a contradiction
    x, y = _data(rows=40)
    h = _quiet(cr.fit, mlp([2, 4, 1], "tanh", seed=0), x, y, loss="mse", optimizer=Adam(0.01), validation=0.25,
               stopping="early", n_iter_no_change=3, tol=0.5, seed=0)  # fmt: skip
    assert "the highest validation score" in h.stop_reason and "even where it rose by less than tol" in h.stop_reason


# ---- clipping ---------------------------------------------------------------------------------


def test_clipping_scales_the_gradients_to_the_global_norm_given():
    x, y = _data(rows=10)
    net = mlp([2, 3, 1], activation="tanh", seed=0)
    before = _values(net)
    trainer = cr.Trainer(net, x, y, loss="ssr", optimizer=GradientDescent(1.0), clip=0.5, tol=0)
    first = trainer.step()
    raw = math.sqrt(sum(float(np.sum(g * g)) for g in first.grads))  # the History keeps the derivatives
    moved = math.sqrt(sum(float(np.sum((b - a.data) ** 2)) for b, a in zip(before, net.parameters())))
    # with lr = 1 each step is the clipped gradient: its global norm is the clip, 0.5, its direction the gradient's
    assert raw > 0.5 and moved == pytest.approx(0.5, rel=1e-12)
    np.testing.assert_allclose(before[0] - net[0].weight.data, first.grads[0] * 0.5 / raw, rtol=1e-12)
    small = cr.Trainer(mlp([2, 3, 1], activation="tanh", seed=0), x, y, loss="ssr", clip=1e6, tol=0).step()
    np.testing.assert_array_equal(np.concatenate([s.ravel() for s in small.steps]),
                                  np.concatenate([0.1 * g.ravel() for g in small.grads]))  # fmt: skip


def test_clipping_huge_finite_gradients_scales_them_instead_of_zeroing_them():
    # review finding 9: sqrt(sum(g * g)) of two derivatives of 1e300 overflowed to inf and scaled them to 0
    a, b = cr.nn.Parameter(np.array([1.0, 2.0])), cr.nn.Parameter(3.0)
    a.grad, b.grad = np.array([1e300, -1e300]), np.array(0.0)
    norm = clip_gradients([a, b], 1.0)
    assert norm == pytest.approx(math.sqrt(2) * 1e300, rel=1e-12)  # sqrt(2 x 1e600), by hand
    np.testing.assert_allclose(a.grad, [1 / math.sqrt(2), -1 / math.sqrt(2)], rtol=1e-12)
    # the reviewer's run: alpha=1e308 makes each weight's derivative huge; it no longer "converges" at once
    x, y = _data(rows=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = cr.fit(mlp([2, 2, 1], seed=0), x, y, loss="mse", alpha=1e308, clip=1.0, max_iter=5)
    assert not h.converged and h.n_iter == 5


def test_clipping_an_infinite_norm_is_a_divergence():
    # two finite derivatives of 1.5e308: their norm, 2.1e308, is beyond float range (review finding 9)
    net = cr.nn.Linear(1, 2)
    net.weight.data[...] = 1e-3

    def steep(out, y):
        return (out * 1.5e308).sum()  # d/dweight = 1.5e308 x the input 1, in each of the two weights

    with pytest.raises(cr.DivergenceError, match="global norm is inf"):
        cr.fit(net, np.ones((1, 1)), np.zeros((1, 2)), loss=steep, params=["weight"], clip=1.0, monitor=False)
    np.testing.assert_array_equal(net.weight.data, 1e-3)  # put back


# ---- L-BFGS -----------------------------------------------------------------------------------


def _lessons_ssr(flat):
    """The lessons' SSR in (w1, b1, w2, b2, w3, w4, b3), written for autograd (no chainrule)."""
    w1, b1, w2, b2, w3, w4, b3 = flat
    d, o = np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0])
    softplus = lambda z: anp.logaddexp(0.0, z)  # noqa: E731
    return anp.sum((o - (w3 * softplus(d * w1 + b1) + w4 * softplus(d * w2 + b2) + b3)) ** 2)


def test_lbfgs_is_scipy_called_directly_on_the_same_function():
    from scipy.optimize import minimize

    net = DosageNetwork.random(seed=3)
    start = np.array([p.item() for p in net.parameters()])
    h = cr.fit(net, *dosage(), optimizer=cr.optim.LBFGS(tol=1e-9, max_iter=200))
    want = minimize(
        autograd.value_and_grad(_lessons_ssr), start, jac=True, method="L-BFGS-B",
        options={"gtol": 1e-9, "maxiter": 200, "maxfun": 15000, "maxcor": 10},
    )  # fmt: skip
    np.testing.assert_allclose([p.item() for p in net.parameters()], want.x, atol=1e-8)
    assert h.n_iter == want.nit and h.converged == (want.status == 0)
    # each row's loss is taken at that row's old values (before scipy's step), as in the lessons' table
    last = np.array([float(trace.value[-1]) for trace in h.params.values()])
    assert h.final_loss == pytest.approx(_lessons_ssr(last), rel=1e-12)


def test_lbfgs_without_a_tol_uses_scikit_learns_gradient_tolerance_not_the_lessons_step_threshold():
    # review finding 3: fit's 0.001 (a step-size threshold) was handed to scipy as gtol; scikit-learn hands it 1e-4
    from scipy.optimize import minimize

    start = np.array([p.item() for p in DosageNetwork.random(seed=0).parameters()])
    for tol, gtol in ((None, 1e-4), (1e-6, 1e-6)):
        net = DosageNetwork.random(seed=0)
        h = cr.fit(net, *dosage(), optimizer=cr.optim.LBFGS(), tol=tol)
        want = minimize(
            autograd.value_and_grad(_lessons_ssr), start, jac=True, method="L-BFGS-B",
            options={"gtol": gtol, "maxiter": 1000, "maxfun": 15000, "maxcor": 10},
        )  # fmt: skip
        assert h.n_iter == want.nit and h.tol == gtol
        np.testing.assert_allclose([p.item() for p in net.parameters()], want.x, atol=1e-8)


def test_lbfgs_lands_on_the_lessons_b3_in_two_iterations_and_refuses_what_does_not_apply():
    net = DosageNetwork.from_lesson(b3=0.0)
    h = cr.fit(net, *dosage(), params=["b3"], optimizer=cr.optim.LBFGS(tol=1e-8))
    # the SSR in b3 is a parabola with its minimum where sum(observed - predicted) = 0: b3 = 2.6092 (lessons: 2.61)
    assert h.n_iter == 2 and net.b3.item() == pytest.approx(2.6092, abs=1e-4) and h.converged
    assert h.params["b3"].value[0] == 0.0 and h.loss[0] == pytest.approx(20.4, abs=0.05)  # the lessons' start
    with pytest.raises(ValueError, match="cannot be combined with batch_size=2, schedule"):
        cr.fit(net, *dosage(), optimizer=cr.optim.LBFGS(), batch_size=2, schedule="invscaling")
    with pytest.raises(TypeError, match="scipy runs the whole minimization"):
        cr.optim.LBFGS(params=[net.b3]).step()


def test_lbfgs_refuses_the_improvement_rule_and_trainer_step_and_its_divergence_names_no_learning_rate():
    # review finding 13: stopping="improvement" was silently ignored; Trainer.step() ran the whole minimization
    with pytest.raises(ValueError, match="cannot be combined with stopping='improvement'"):
        cr.fit(DosageNetwork.random(seed=0), *dosage(), optimizer=cr.optim.LBFGS(), stopping="improvement")
    trainer = cr.Trainer(DosageNetwork.random(seed=0), *dosage(), optimizer=cr.optim.LBFGS())
    with pytest.raises(TypeError, match=r"runs the whole minimization in one scipy call.*use run\(\)"):
        trainer.step()
    assert trainer.run().converged  # run() is the way
    # a start whose loss overflows at once: the message names no learning rate (L-BFGS has none)
    net = DosageNetwork.from_lesson()
    net.w3.data[...] = 1e308
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(cr.DivergenceError, match="L-BFGS takes no learning rate") as caught:
            cr.fit(net, *dosage(), optimizer=cr.optim.LBFGS(), monitor=False)
    assert "smaller learning rate" not in str(caught.value)


@pytest.mark.parametrize("loss, weighted", [("mse", False), ("mse", True), ("cross_entropy", False)])
def test_lbfgs_with_compile_replays_the_eager_evaluations_bit_for_bit(loss, weighted):
    # compile=True hands scipy the NumPy replay's loss and gradient (the same NumPy calls in the same order as
    # the eager step): every iteration, the History and the end are the eager run's, to the bit (with sample
    # weights, to rounding)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    y = rng.integers(0, 3, 30) if loss == "cross_entropy" else rng.normal(size=(30, 2))
    w = rng.uniform(0.5, 2.0, 30) if weighted else None
    runs = []
    for compile in (False, True):
        net = cr.nn.mlp([3, 6, 3 if loss == "cross_entropy" else 2], "relu", seed=0)
        kw = dict(loss=loss, alpha=0.1, sample_weight=w, monitor=False, compile=compile)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cr.ConvergenceWarning)
            h = cr.fit(net, x, y, optimizer=cr.optim.LBFGS(max_iter=25), **kw)
        runs.append((h, [p.data.copy() for p in net.parameters()]))
    (eager, eager_values), (replayed, replayed_values) = runs
    assert (eager.engine, replayed.engine) == ("eager", "numpy")
    assert eager.n_iter == replayed.n_iter > 5
    if not weighted:
        assert eager.loss == replayed.loss
        for a, b in zip(eager_values, replayed_values):
            np.testing.assert_array_equal(a, b)
    else:  # the replay reads the weights as the targets' last column (sliced in the graph): the same terms,
        # a weighted mean of another shape, so agreement to rounding rather than to the bit
        np.testing.assert_allclose(replayed.loss, eager.loss, rtol=1e-10)
        for a, b in zip(eager_values, replayed_values):
            np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-12)


def test_lbfgs_reaching_max_iter_warns():
    with pytest.warns(cr.ConvergenceWarning, match="L-BFGS-B .* stopped after 3 iterations"):
        h = cr.fit(DosageNetwork.random(seed=0), *dosage(), optimizer=cr.optim.LBFGS(max_iter=3))
    assert h.n_iter == 3 and not h.converged


@pytest.mark.parametrize(
    "kw",
    [
        dict(schedule="invscaling"),
        dict(schedule="adaptive", stopping="improvement", tol=1e-4, n_iter_no_change=3),
        dict(validation=(DOSES_X, DOSES_Y + 0.1), stopping="early", tol=1e-6),
    ],
    ids=["invscaling", "adaptive", "early"],
)
def test_the_written_out_path_runs_schedules_validation_and_stopping_rules_as_eager(kw):
    x, y = dosage()
    eager, written = DosageNetwork.random(seed=2), DosageNetwork.random(seed=2)
    he = _quiet(cr.fit, eager, x, y, optimizer=Adam(0.05), max_iter=300, **kw)
    hw = _quiet(cr.fit, written, x, y, optimizer=Adam(0.05), max_iter=300, compile=True, **kw)
    assert hw.engine == "python" and hw.n_iter == he.n_iter and hw.stop_reason == he.stop_reason
    np.testing.assert_allclose(hw.loss, he.loss, rtol=1e-9)  # Python's math against NumPy's: to rounding
    np.testing.assert_allclose(hw.learning_rates, he.learning_rates, rtol=1e-12)
    for a, b in zip(eager.parameters(), written.parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-9, atol=1e-12)


def test_sample_weight_needs_a_built_in_loss():
    x, y = _data(rows=4)
    with pytest.raises(TypeError, match="sample_weight needs one of the built-in losses"):
        cr.fit(mlp([2, 1], seed=0), x, y, loss=lambda p, t: ((p - t) ** 2).sum(), sample_weight=[1, 1, 1, 1])


@pytest.mark.parametrize("kind", ["adamw", "rmsprop", "adagrad"])
@pytest.mark.parametrize("batch_size", [None, 7])
def test_n_eager_steps_with_the_options_are_fit_with_max_iter_n_bit_for_bit(kind, batch_size):
    x, y = _data(rows=20)
    kw = dict(
        loss="squared_error", tol=0, max_iter=8, batch_size=batch_size, seed=4, alpha=0.01, clip=0.5,
        schedule=cr.schedules.Cosine(period=5), validation=0.2, sample_weight=np.arange(1.0, 21.0),
    )  # fmt: skip
    fitted, stepped = mlp([2, 5, 1], activation="tanh", seed=3), mlp([2, 5, 1], activation="tanh", seed=3)
    history = _quiet(cr.fit, fitted, x, y, optimizer=cr.optim.OPTIMIZERS[kind](lr=0.05, weight_decay=0.01), **kw)
    trainer = cr.Trainer(stepped, x, y, optimizer=cr.optim.OPTIMIZERS[kind](lr=0.05, weight_decay=0.01), **kw)
    for _ in range(8):
        _quiet(trainer.step)
    assert trainer.history.loss == history.loss and trainer.history.validation_score == history.validation_score
    for a, b in zip(fitted.parameters(), stepped.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_a_binary_label_is_stratified():
    x = np.random.default_rng(0).normal(size=(40, 2))
    one = (x[:, :1] > 1.0).astype(float)
    positives = int(one.sum())  # 8 of 40 here: half of them held out with validation=0.5, whatever the seed
    for seed in range(5):
        trainer = cr.Trainer(mlp([2, 1], seed=0), x, one, loss="binary_cross_entropy", validation=0.5, seed=seed)
        assert int(trainer.held[1].sum()) == positives // 2 and len(trainer.held[1]) == 20


# ---- against scikit-learn's own MLP --------------------------------------------------------------


def _sklearn_from(net, x, y, sample_weight=None, **kw):
    """scikit-learn's MLPRegressor trained full batch by SGD from the weights of our 2-3-1 tanh ``net``."""
    from sklearn.neural_network import MLPRegressor

    w0, b0, w2, b2 = (p.data.copy() for p in net.parameters())
    kw = {"solver": "sgd", "momentum": 0, **kw}
    sk = MLPRegressor(
        hidden_layer_sizes=(3,), activation="tanh", batch_size=len(x), shuffle=False, max_iter=1,
        warm_start=True, random_state=0, **kw,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(x, y)  # (to build its arrays: then its start is set to ours and its counters to zero)
        sk.coefs_, sk.intercepts_ = [w0.T.copy(), w2.T.copy()], [b0, b2]
        sk.loss_curve_, sk.best_loss_, sk._no_improvement_count, sk.n_iter_, sk.t_ = [], np.inf, 0, 0, 0
        sk.validation_scores_, sk.best_validation_score_ = [], -np.inf
        sk._optimizer, sk._random_state = None, np.random.RandomState(0)  # its split: random_state=0's
        sk.set_params(max_iter=400)
        sk.fit(x, y, sample_weight=sample_weight)
    return sk


@pytest.mark.parametrize("schedule", [None, "invscaling", "adaptive"])
@pytest.mark.parametrize("weighted", [False, True])
def test_alpha_schedules_and_the_improvement_rule_follow_scikit_learns_mlp(schedule, weighted):
    x, y = _data(rows=30)
    w = np.random.default_rng(1).uniform(0.5, 2.0, 30) if weighted else None
    net = mlp([2, 3, 1], activation="tanh", seed=1)
    lr = 0.5 if schedule == "invscaling" else 0.1
    sk = _sklearn_from(
        net, x, y[:, 0], w, alpha=0.3, learning_rate_init=lr, tol=1e-3, n_iter_no_change=3,
        learning_rate=schedule or "constant", power_t=0.5,
    )  # fmt: skip
    h = _quiet(
        cr.fit, net, x, y, loss="squared_error", alpha=0.3, optimizer=GradientDescent(lr), stopping="improvement",
        tol=1e-3, n_iter_no_change=3, max_iter=400, schedule=schedule, sample_weight=w,
    )  # fmt: skip
    assert h.n_iter == sk.n_iter_ < 400
    np.testing.assert_allclose(h.loss, sk.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(net[0].weight.data.T, sk.coefs_[0], rtol=1e-10, atol=1e-13)


def test_early_stopping_follows_scikit_learns_mlp_on_its_own_split():
    from sklearn.model_selection import train_test_split

    x, y = _data(rows=40, seed=5)
    net = mlp([2, 3, 1], activation="tanh", seed=1)
    sk = _sklearn_from(
        net, x, y[:, 0], alpha=0.01, learning_rate_init=0.1, tol=1e-4, n_iter_no_change=4, early_stopping=True,
        validation_fraction=0.25,
    )  # fmt: skip
    train, held = train_test_split(np.arange(40), test_size=0.25, random_state=0)  # the rows it held out
    h = _quiet(
        cr.fit, net, x[train], y[train], loss="squared_error", alpha=0.01, optimizer=GradientDescent(0.1),
        stopping="early", validation=(x[held], y[held]), tol=1e-4, n_iter_no_change=4, max_iter=400,
    )  # fmt: skip
    assert h.n_iter == sk.n_iter_ < 400
    np.testing.assert_allclose(h.validation_score, sk.validation_scores_, rtol=1e-12)
    assert h.best_validation_score == pytest.approx(sk.best_validation_score_, rel=1e-12)
    # both put back the parameters of the best epoch
    np.testing.assert_allclose(net[0].weight.data.T, sk.coefs_[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net[2].bias.data, sk.intercepts_[1], rtol=1e-10, atol=1e-13)


def test_adam_follows_scikit_learns_adam_to_its_placement_of_eps():
    # scikit-learn adds eps to sqrt(v) after folding both bias corrections into the rate (the paper's
    # "efficient version", eps-hat); ours adds it to sqrt(v-hat): the steps differ by about eps / sqrt(v)
    x, y = _data(rows=30)
    net = mlp([2, 3, 1], activation="tanh", seed=1)
    sk = _sklearn_from(
        net, x, y[:, 0], solver="adam", learning_rate_init=0.01, alpha=0.01, tol=1e-4, n_iter_no_change=5
    )
    h = _quiet(
        cr.fit, net, x, y, loss="squared_error", alpha=0.01, optimizer=Adam(0.01), stopping="improvement",
        tol=1e-4, n_iter_no_change=5, max_iter=400,
    )  # fmt: skip
    assert h.n_iter == sk.n_iter_ < 400
    np.testing.assert_allclose(h.loss, sk.loss_curve_, rtol=1e-5)


# ---- scikit-learn's MLP losses: each row summed over its outputs, a mean over rows ----------------


def test_squared_error_by_row_and_binary_log_loss_follow_scikit_learns_formulas_with_and_without_weights():
    from chainrule.losses import binary_log_loss, squared_error_by_row

    rng = np.random.default_rng(3)
    z, y, t = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.integers(0, 2, size=(6, 3)).astype(float)
    w = np.array([1.0, 0.0, 2.0, 0.5, 3.0, 1.0])
    p = 1 / (1 + np.exp(-z))
    for weights in (None, w):
        share = (np.ones(6) / 6 if weights is None else weights / weights.sum())[:, None]
        # scikit-learn's squared_loss gradient convention: 0.5 sum_j (y - z)^2 per row, rows averaged
        zt = cr.tensor(z, requires_grad=True)
        loss = squared_error_by_row(zt, y, sample_weight=weights)
        loss.backward()
        assert loss.item() == pytest.approx(float(np.sum(share * 0.5 * (y - z) ** 2)), rel=1e-12)
        np.testing.assert_allclose(zt.grad, share * (z - y), rtol=1e-12)
        # scikit-learn's binary_log_loss: -(xlogy(t, p) + xlogy(1 - t, 1 - p)) summed over labels, rows averaged
        zt = cr.tensor(z, requires_grad=True)
        loss = binary_log_loss(zt, t, sample_weight=weights)
        loss.backward()
        want = -np.sum(share * (t * np.log(p) + (1 - t) * np.log(1 - p)))
        assert loss.item() == pytest.approx(float(want), rel=1e-12)
        np.testing.assert_allclose(zt.grad, share * (p - t), rtol=1e-12)
    # one output: the per-row sum is the element itself, so the means agree with squared_error's
    one = cr.tensor(z[:, :1])
    assert squared_error_by_row(one, y[:, :1]).item() == pytest.approx(squared_error(one, y[:, :1]).item(), rel=1e-15)


@pytest.mark.parametrize("kind", ["squared_error_by_row", "binary_log_loss"])
def test_the_loop_with_scikit_learns_losses_gives_the_estimators_loss_and_gradient(kind):
    pytest.importorskip("sklearn")
    from chainrule.sklearn import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 3))
    y = rng.normal(size=(20, 2)) if kind == "squared_error_by_row" else rng.integers(0, 2, size=(20, 2))
    w = rng.uniform(0.2, 2.0, size=20)
    kind_of = MLPRegressor if kind == "squared_error_by_row" else MLPClassifier
    est = kind_of(hidden_layer_sizes=(4,), alpha=0.3, max_iter=1)
    _quiet(est.fit, x, y)
    packed = np.concatenate([c.ravel() for c in est.coefs_] + [b.ravel() for b in est.intercepts_])
    want_loss, want_grad = est._loss_grad_lbfgs(packed, x, y, w)  # the estimator's own objective
    net = est.model_  # (its parameters now stand at packed)
    trainer = cr.Trainer(
        net, x, y.astype(float), loss=kind, alpha=0.3, sample_weight=w, tol=0, optimizer=GradientDescent(1e-9)
    )
    first = trainer.step()
    assert first.loss == pytest.approx(want_loss, rel=1e-12)
    grads = dict(zip([n for n, _ in net.named_parameters()], first.grads))
    coefs = [grads[f"{2 * i}.weight"].T.ravel() for i in range(2)]
    np.testing.assert_allclose(np.concatenate(coefs + [grads["0.bias"], grads["2.bias"]]), want_grad, rtol=1e-10)


@pytest.mark.parametrize(
    "loss", ["ssr", "mse", "squared_error", "squared_error_by_row", "cross_entropy", "binary_log_loss"]
)
def test_the_numpy_replay_reads_sample_weights_as_data_with_the_eager_numbers(loss):
    # each batch's weights ride as the targets' last column, so one recorded graph replays for every batch
    rng = np.random.default_rng(6)
    x = rng.normal(size=(30, 3))
    y = {"cross_entropy": rng.integers(0, 3, size=30), "binary_log_loss": rng.integers(0, 2, size=(30, 2))}.get(
        loss, rng.normal(size=(30, 2))
    )
    w = rng.uniform(0.0, 2.0, size=30)
    w[:6] = 0.0  # the first batch of the unshuffled order weighs nothing: no step, in both
    outputs = 3 if loss == "cross_entropy" else 2
    runs = []
    for compile in (False, True):
        net = mlp([3, 4, outputs], activation="tanh", seed=0)
        options = dict(loss=loss, sample_weight=w, batch_size=6, alpha=0.05, tol=0, max_iter=12, compile=compile)
        with warnings.catch_warnings():
            warnings.simplefilter("error", cr.trace.CompileWarning)  # no replay declined
            h = _quiet(cr.fit, net, x, y.astype(float) if loss != "cross_entropy" else y, shuffle=False, **options)
        runs.append((h, [p.data for p in net.parameters()]))
    (he, pe), (hr, pr) = runs
    assert hr.engine == "numpy" and he.engine == "eager"
    np.testing.assert_allclose(hr.loss, he.loss, rtol=1e-12)
    for a, b in zip(pe, pr):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14)
