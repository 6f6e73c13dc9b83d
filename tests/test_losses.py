"""chainrule.losses: values by hand, gradients against independent formulas and autograd."""

import math
import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp as a_logsumexp

import chainrule as cr
from chainrule.losses import LOSSES, binary_cross_entropy, cross_entropy, get_loss, mse, ssr

# ---- values worked by hand ---------------------------------------------------------------


def test_ssr_and_mse_by_hand():
    predicted, observed = cr.tensor([1.0, 2.0, 0.5]), [0.0, 1.0, 1.0]
    # residuals -1, -1, 0.5: squares 1 + 1 + 0.25 = 2.25; mean 2.25 / 3 = 0.75
    assert ssr(predicted, observed).item() == pytest.approx(2.25)
    assert mse(predicted, observed).item() == pytest.approx(0.75)


def test_ssr_gradient_is_minus_two_residuals():
    predicted = cr.tensor([1.0, 2.0, 0.5], requires_grad=True)
    ssr(predicted, [0.0, 1.0, 1.0]).backward()
    # dSSR/dpredicted_i = -2 (observed_i - predicted_i) = -2 * (-1, -1, 0.5)
    np.testing.assert_allclose(predicted.grad, [2.0, 2.0, -1.0])


def test_mse_gradient_is_ssr_gradient_over_n():
    predicted = cr.tensor([[1.0], [2.0], [0.5], [4.0]], requires_grad=True)
    observed = np.array([[0.0], [1.0], [1.0], [4.0]])
    mse(predicted, observed).backward()
    np.testing.assert_allclose(predicted.grad, -2 * (observed - predicted.data) / 4)


def test_cross_entropy_by_hand():
    # softmax([0, 0]) = (1/2, 1/2): -log(1/2) = log 2
    assert cross_entropy(cr.tensor([[0.0, 0.0]]), [1]).item() == pytest.approx(math.log(2))
    # logits (1, 2, 3), label 2: -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2)
    assert cross_entropy(cr.tensor([[1.0, 2.0, 3.0]]), [2]).item() == pytest.approx(
        math.log(1 + math.exp(-1) + math.exp(-2))
    )
    # two rows, the mean of the rows' losses: (0, 0, 0) label 0 gives -log(1/3) = log 3
    two = cross_entropy(cr.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]), [0, 2])
    assert two.item() == pytest.approx((math.log(3) + math.log(1 + math.exp(-1) + math.exp(-2))) / 2)


def test_binary_cross_entropy_by_hand():
    # sigmoid(0) = 1/2 whatever the target: -log(1/2) = log 2
    assert binary_cross_entropy(cr.tensor([0.0]), [1.0]).item() == pytest.approx(math.log(2))
    assert binary_cross_entropy(cr.tensor([0.0]), [0.0]).item() == pytest.approx(math.log(2))
    # z = 2, t = 1: -log sigmoid(2) = log(1 + e^-2); z = -1, t = 0: -log(1 - sigmoid(-1)) = log(1 + e^-1)
    value = binary_cross_entropy(cr.tensor([2.0, -1.0]), [1.0, 0.0]).item()
    assert value == pytest.approx((math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2)


# ---- stability for huge logits -----------------------------------------------------------------


def test_cross_entropy_is_stable_for_huge_logits():
    logits = cr.tensor([[1e4, 0.0], [0.0, 1e4]], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        right = cross_entropy(logits, [0, 1])
        wrong = cross_entropy(cr.tensor([[1e4, 0.0]]), [1])
        right.backward()
    assert right.item() == pytest.approx(0.0, abs=1e-12)  # log(1 + e^-1e4) = 0
    assert wrong.item() == pytest.approx(1e4)  # -log(e^0 / (e^1e4 + 1)) = 1e4
    # softmax - onehot is (1, 0) - (1, 0) = 0 for rows already right
    np.testing.assert_allclose(logits.grad, np.zeros((2, 2)), atol=1e-12)


def test_binary_cross_entropy_is_stable_for_huge_logits():
    z = cr.tensor([1e4, -1e4, 1e4, -1e4], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = binary_cross_entropy(z, [1.0, 0.0, 0.0, 1.0])
        loss.backward()
    # right, right, wrong by 1e4, wrong by 1e4: mean (0 + 0 + 1e4 + 1e4) / 4 = 5e3
    assert loss.item() == pytest.approx(5e3)
    # d/dz = (sigmoid(z) - t) / n = (0, 0, 1, -1) / 4
    np.testing.assert_allclose(z.grad, [0.0, 0.0, 0.25, -0.25], atol=1e-12)


# ---- gradients against independent implementations -------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n(seed):
    rng = np.random.default_rng(seed)
    n, k = 7, 4
    z = rng.normal(0, 3, (n, k))
    labels = rng.integers(0, k, n)
    logits = cr.tensor(z, requires_grad=True)
    loss = cross_entropy(logits, labels)
    loss.backward()
    softmax = np.exp(z - z.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    onehot = np.eye(k)[labels]
    np.testing.assert_allclose(logits.grad, (softmax - onehot) / n, rtol=1e-10, atol=1e-14)
    assert loss.item() == pytest.approx(-np.mean(np.log(softmax[np.arange(n), labels])), rel=1e-12)


def _autograd_losses(labels=None):
    def a_ce(z):
        return -anp.mean((z - a_logsumexp(z, axis=1, keepdims=True))[anp.arange(len(labels)), labels])

    return {
        "ssr": lambda p, t: anp.sum((t - p) ** 2),
        "mse": lambda p, t: anp.mean((t - p) ** 2),
        "binary_cross_entropy": lambda z, t: anp.mean(anp.logaddexp(0.0, z) - z * t),
        "cross_entropy": lambda z, _: a_ce(z),
    }


@pytest.mark.parametrize("name", ["ssr", "mse", "binary_cross_entropy", "cross_entropy"])
@pytest.mark.parametrize("seed", range(3))
def test_loss_values_and_gradients_match_autograd(name, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (6, 3))
    if name == "cross_entropy":
        target = rng.integers(0, 3, 6)
    elif name == "binary_cross_entropy":
        target = rng.integers(0, 2, (6, 3)).astype(float)
    else:
        target = rng.normal(size=(6, 3))
    reference = _autograd_losses(target if name == "cross_entropy" else None)[name]
    t = cr.tensor(z, requires_grad=True)
    loss = get_loss(name)(t, target)
    loss.backward()
    assert loss.item() == pytest.approx(reference(z, target), rel=1e-12)
    np.testing.assert_allclose(t.grad, autograd.grad(reference)(z, target), rtol=1e-10, atol=1e-14)


def test_losses_give_gradients_to_a_tensor_target_too():
    predicted = cr.tensor([1.0, 2.0])
    observed = cr.tensor([0.0, 0.0], requires_grad=True)
    ssr(predicted, observed).backward()
    np.testing.assert_allclose(observed.grad, [-2.0, -4.0])  # d/do (o - p)^2 = 2 (o - p)


def test_float32_losses_stay_float32():
    z = cr.tensor(np.zeros((3, 2), dtype=np.float32), requires_grad=True)
    for loss in (
        ssr(z, np.ones((3, 2))),
        mse(z, np.ones((3, 2))),
        binary_cross_entropy(z, np.ones((3, 2))),
        cross_entropy(z, [0, 1, 1]),
    ):
        assert loss.dtype == np.float32


# ---- shapes and labels --------------------------------------------------------------------


@pytest.mark.parametrize("fn", [ssr, mse, binary_cross_entropy])
def test_a_shape_mismatch_is_an_error_not_a_broadcast(fn):
    # (3,) against (3, 1) would silently broadcast to (3, 3) in NumPy.
    with pytest.raises(ValueError, match=rf"{fn.__name__}.*\(3,\).*\(3, 1\)"):
        fn(cr.tensor([1.0, 2.0, 3.0]), np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"\(3, 1\).*\(3,\)"):
        fn(cr.tensor(np.ones((3, 1))), [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "labels, match",
    [
        ([2], r"\[0, 2\).*2"),  # out of range above
        ([-1], r"\[0, 2\).*-1"),  # out of range below
        ([[1]], r"shape \(1,\)"),  # wrong shape
    ],
)
def test_cross_entropy_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        cross_entropy(cr.tensor([[0.0, 0.0]]), labels)


@pytest.mark.parametrize("labels", [[0.5], ["a"], [math.nan]])
def test_cross_entropy_rejects_labels_that_are_not_class_indices(labels):
    with pytest.raises((TypeError, ValueError), match="integer class indices"):
        cross_entropy(cr.tensor([[0.0, 0.0]]), labels)


def test_cross_entropy_accepts_whole_number_float_labels_and_rejects_1d_logits():
    assert cross_entropy(cr.tensor([[0.0, 0.0]]), [1.0]).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match=r"\(n, classes\).*\(2,\)"):
        cross_entropy(cr.tensor([0.0, 0.0]), [1])


# ---- by name -------------------------------------------------------------------------------


def test_losses_by_name():
    for name in ("ssr", "mse", "cross_entropy", "binary_cross_entropy"):
        assert get_loss(name) is LOSSES[name]
        assert get_loss(name).__name__ == name
    assert get_loss(ssr) is ssr
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*'ssr'"):
        get_loss("hinge")


@pytest.mark.parametrize("name", ["ssr", "mse", "cross_entropy", "binary_cross_entropy"])
def test_losses_by_name_in_fit(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2))
    if name == "cross_entropy":
        net, y = cr.nn.Linear(2, 3, seed=0), rng.integers(0, 3, 8)
    elif name == "binary_cross_entropy":
        net, y = cr.nn.Linear(2, 1, seed=0), rng.integers(0, 2, (8, 1)).astype(float)
    else:
        net, y = cr.nn.Linear(2, 1, seed=0), rng.normal(size=(8, 1))
    first = get_loss(name)(net(x), y).item()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        history = cr.fit(net, x, y, loss=name, optimizer=cr.optim.GradientDescent(lr=0.05), max_iter=5)
    assert history.loss[0] == pytest.approx(first, rel=1e-12)  # the same loss, computed inside fit
    assert history.loss[-1] < history.loss[0]
