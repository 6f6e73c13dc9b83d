"""chainrule.explain: the chain rule written out, checked against backward and independent gradients.

Three layers, as elsewhere: the lessons' derivatives worked by hand (MISSION.md's chain
rule in NumPy, the lessons' -15.66); random networks against HIPS autograd; and the
contract (paths, readability of large graphs, formats, errors, no side effects).
"""

import importlib
import re

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp as ag_logsumexp

import chainrule as cr
from chainrule import losses
from chainrule.data import dosage
from chainrule.nn import DosageNetwork, Linear, Parameter, Sequential, Tanh, mlp

explain_module = importlib.import_module("chainrule.explain")  # cr.explain is the function
MAX_PATHS, MAX_POINTS = explain_module.MAX_PATHS, explain_module.MAX_POINTS

NAMES = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")


def close(a, b, rel=1e-12, scale=None):
    """|a - b| <= rel * max(|b|, scale): relative, with a floor for derivatives that are (nearly) 0."""
    return abs(a - b) <= rel * max(abs(b), scale if scale is not None else 0.0, 1e-300)


# ---- the lessons' chain rule, by hand in NumPy (MISSION.md) ----------------------------------------


def softplus(x):
    return np.log(1 + np.exp(x))


def sigmoid(x):  # softplus'(x) = e^x / (1 + e^x), written the other way round
    return 1 / (1 + np.exp(-x))


def lesson_pieces(p, x, observed):
    """Every per-point quantity of the lessons' forward pass and dSSR/dPredicted_i."""
    x1, x2 = x * p["w1"] + p["b1"], x * p["w2"] + p["b2"]
    y1, y2 = softplus(x1), softplus(x2)
    predicted = p["w3"] * y1 + p["w4"] * y2 + p["b3"]
    return {
        "x1": x1,
        "x2": x2,
        "y1": y1,
        "y2": y2,
        "predicted": predicted,
        "d": -2 * (observed - predicted),
    }  # dSSR/dPredicted_i = -2 (Observed_i - Predicted_i)


def lesson_gradients(p, x, observed):
    """dSSR/d(each parameter), summed over the data points, as MISSION.md writes them."""
    q = lesson_pieces(p, x, observed)
    d, s1, s2 = q["d"], sigmoid(q["x1"]), sigmoid(q["x2"])
    return {
        "b3": np.sum(d * 1),
        "w3": np.sum(d * q["y1"]),
        "w4": np.sum(d * q["y2"]),
        "w1": np.sum(d * p["w3"] * s1 * x),
        "b1": np.sum(d * p["w3"] * s1 * 1),
        "w2": np.sum(d * p["w4"] * s2 * x),
        "b2": np.sum(d * p["w4"] * s2 * 1),
    }


def values_of(net):
    return {n: getattr(net, n).item() for n in NAMES}


def backward_grads(loss, params):
    """Each parameter's .grad from a fresh backward (graph kept), the grads put back afterwards."""
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    loss.backward(retain_graph=True)
    out = [np.array(p.grad) for p in params]
    for p, g in zip(params, saved):
        p.grad = g
    return out


def dosage_cases():
    rng = np.random.default_rng(7)
    xr = rng.uniform(0, 1, 9)
    yr = rng.uniform(-1, 1, 9)
    return [
        pytest.param(DosageNetwork.from_lesson(), *dosage(), id="lesson"),
        pytest.param(DosageNetwork.from_lesson(b3=0.0), *dosage(), id="lesson-b3=0"),
        pytest.param(DosageNetwork.random(seed=3), xr, yr, id="random-net-random-batch"),
        pytest.param(DosageNetwork.random(seed=11), *dosage(), id="random-net-dosage"),
    ]


@pytest.mark.parametrize("net, x, y", dosage_cases())
def test_lesson_network_totals_equal_backward_and_the_hand_chain_rule(net, x, y):
    loss = losses.ssr(net(x), y)
    params = [getattr(net, n) for n in NAMES]
    grads = backward_grads(loss, params)
    hand = lesson_gradients(values_of(net), x, y)
    for name, p, g in zip(NAMES, params, grads):
        e = cr.explain(loss, p)
        assert close(e.gradient, float(g)), name  # .gradient is what backward gives
        assert close(e.total, float(g)), name  # the written-out chain adds up to it
        assert close(e.total, float(hand[name]), rel=1e-10), name  # and to MISSION.md's formula
        assert len(e.terms) == 1 and not e.hidden  # one path per parameter in this net
        term = e.terms[0]
        assert term.per_point is not None and len(term.per_point) == len(x)
        assert close(float(np.sum(term.per_point)), term.total)
        # every factor is one number per data point here; their product is the point's contribution
        product = np.prod([f.values for f in term.factors], axis=0)
        np.testing.assert_allclose(product, term.per_point, rtol=1e-12, atol=1e-14)


# ---- the lessons' explanation of dSSR/db3 at b3 = 0, and of w1 --------------------------------------


@pytest.fixture
def lesson_b3_0():
    net = DosageNetwork.from_lesson(b3=0.0)
    x, y = dosage()
    return net, x, y, losses.ssr(net(x), y)


def test_dssr_db3_at_b3_0_reads_like_the_lesson(lesson_b3_0):
    net, x, y, loss = lesson_b3_0
    e = cr.explain(loss, net.b3)
    assert e.chain == "dSSR/db3 = sum_i dSSR/dPredicted_i x dPredicted_i/db3"
    [term] = e.terms
    assert [(f.upper, f.lower, f.formula) for f in term.factors] == [
        ("SSR", "Predicted_i", "-2 (Observed_i - Predicted_i)"),
        ("Predicted_i", "b3", "1"),
    ]
    # Per data point, by hand: Predicted_i = w3 y1_i + w4 y2_i + 0 at the dosages 0, 0.5, 1
    q = lesson_pieces(values_of(net), x, y)
    np.testing.assert_allclose(term.factors[0].values, q["d"], rtol=1e-13)
    np.testing.assert_array_equal(term.factors[1].values, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(term.per_point, q["d"] * 1, rtol=1e-13)
    assert close(float(np.sum(term.per_point)), e.total)
    # MISSION.md: dSSR/db3 at b3 = 0 is -15.66 (the lesson rounds to -15.7)
    assert round(e.total, 2) == -15.66
    text = e.text()
    shown = float(re.search(r"^dSSR/db3 = (-?[0-9.]+)", text, re.M).group(1))
    assert round(shown, 2) == -15.66 and round(shown, 1) == -15.7
    assert "-15.66" in f"{shown:.2f}"
    # the table lists each data point's dSSR/dPredicted_i (hand-computed values, printed as the table does)
    for i, v in enumerate(q["d"], 1):
        assert re.search(rf"^\s+{i}\s+{re.escape(f'{v:.6g}')}\s+1\s+{re.escape(f'{v:.6g}')}$", text, re.M)
    assert "dSSR/dPredicted_i = -2 (Observed_i - Predicted_i)" in text
    assert "dPredicted_i/db3 = 1" in text
    assert str(e) == text


@pytest.mark.parametrize(
    "name, hidden, weight, uses_input",
    [
        ("w1", ("y1", "x1"), "w3", True),
        ("b1", ("y1", "x1"), "w3", False),
        ("w2", ("y2", "x2"), "w4", True),
        ("b2", ("y2", "x2"), "w4", False),
    ],
)
def test_first_layer_chain_goes_through_predicted_y_and_x(lesson_b3_0, name, hidden, weight, uses_input):
    net, x, y, loss = lesson_b3_0
    y_node, x_node = hidden
    e = cr.explain(loss, getattr(net, name))
    assert e.chain == (
        f"dSSR/d{name} = sum_i dSSR/dPredicted_i x dPredicted_i/d{y_node}_i"
        f" x d{y_node}_i/d{x_node}_i x d{x_node}_i/d{name}"
    )
    [term] = e.terms
    assert [f.formula for f in term.factors] == [
        "-2 (Observed_i - Predicted_i)",
        weight,
        f"e^{x_node}_i / (1 + e^{x_node}_i)",
        "Input_i" if uses_input else "1",
    ]
    # the same four factors by hand, per data point
    p = values_of(net)
    q = lesson_pieces(p, x, y)
    hand = [q["d"], np.full(3, p[weight]), sigmoid(q[x_node]), x if uses_input else np.ones(3)]
    for f, h in zip(term.factors, hand):
        np.testing.assert_allclose(f.values, h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(term.per_point, np.prod(hand, axis=0), rtol=1e-12, atol=1e-15)
    assert close(e.total, float(np.sum(np.prod(hand, axis=0))), rel=1e-12)
    assert close(e.total, float(lesson_gradients(p, x, y)[name]), rel=1e-12)


def test_output_weights_chain_has_the_hidden_value_as_factor(lesson_b3_0):
    net, x, y, loss = lesson_b3_0
    q = lesson_pieces(values_of(net), x, y)
    for name, node in (("w3", "y1"), ("w4", "y2")):
        e = cr.explain(loss, getattr(net, name))
        assert e.chain == f"dSSR/d{name} = sum_i dSSR/dPredicted_i x dPredicted_i/d{name}"
        assert [f.formula for f in e.terms[0].factors] == ["-2 (Observed_i - Predicted_i)", f"{node}_i"]
        np.testing.assert_allclose(e.terms[0].factors[1].values, q[node], rtol=1e-13)


# ---- random networks against HIPS autograd ------------------------------------------------------------


AG_ACTIVATIONS = {
    "softplus": lambda z: anp.logaddexp(0.0, z),
    "relu": lambda z: anp.maximum(z, 0.0),
    "tanh": anp.tanh,
    "sigmoid": lambda z: 0.5 * (anp.tanh(z / 2) + 1),  # = 1 / (1 + e^-z)
}


def ag_loss(name, out, target):
    if name == "ssr":
        return anp.sum((target - out) ** 2)
    if name == "mse":
        return anp.mean((target - out) ** 2)
    if name == "cross_entropy":
        logp = out - ag_logsumexp(out, axis=1, keepdims=True)
        return -anp.mean(logp[np.arange(len(target)), target])
    return anp.mean(anp.logaddexp(0.0, out) - out * target)  # binary cross-entropy from logits


def ag_gradients(values, x, target, activation, loss_name):
    """The same MLP and loss written in autograd.numpy: every parameter's gradient."""

    def f(ps):
        h = x
        for k in range(0, len(ps), 2):
            h = anp.dot(h, ps[k].T) + ps[k + 1]  # Linear weights are (out_features, in_features)
            if k + 2 < len(ps):
                h = AG_ACTIVATIONS[activation](h)
        return ag_loss(loss_name, h, target)

    return autograd.grad(f)(list(values))


def targets(rng, loss_name, n, out):
    if loss_name == "cross_entropy":
        return rng.integers(0, out, n)
    if loss_name == "binary_cross_entropy":
        return rng.integers(0, 2, (n, out)).astype(float)
    return rng.normal(size=(n, out))


MLP_CASES = [
    ([2, 4, 3, 1], "softplus", "ssr"),
    ([3, 5, 2], "relu", "cross_entropy"),
    ([2, 4, 3, 1], "tanh", "binary_cross_entropy"),
    ([3, 5, 2], "sigmoid", "mse"),
    ([2, 4, 3, 1], "relu", "mse"),
    ([3, 5, 2], "tanh", "cross_entropy"),
    ([3, 5, 2], "softplus", "binary_cross_entropy"),
    ([2, 4, 3, 1], "sigmoid", "ssr"),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sizes, activation, loss_name", MLP_CASES)
def test_random_mlp_totals_equal_backward_and_autograd(sizes, activation, loss_name, seed):
    rng = np.random.default_rng(100 + seed)
    net = mlp(sizes, activation=activation, seed=seed)
    n = 7
    x = rng.normal(size=(n, sizes[0]))
    t = targets(rng, loss_name, n, sizes[-1])
    loss = losses.get_loss(loss_name)(net(x), t)
    names, params = zip(*net.named_parameters())
    grads = backward_grads(loss, params)
    reference = ag_gradients([p.data for p in params], x, t, activation, loss_name)
    for name, p, g, ref in zip(names, params, grads, reference):
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-13 * np.abs(ref).max())
        scale = float(np.abs(g).max())
        # the default index is an element with the largest |derivative| (autograd's); with two classes
        # the output layer's columns tie (softmax' rows add to 0), so compare |values|, not positions
        e = cr.explain(loss, p)
        best = tuple(
            int(i) for i in re.fullmatch(rf"{re.escape(name)}\[([\d, ]+)\]", e.param_label).group(1).split(",")
        )
        assert close(abs(float(ref[best])), float(np.abs(ref).max()), rel=1e-12)
        assert close(e.total, float(g[best]), scale=scale)
        assert close(e.gradient, float(g[best]), scale=scale)
        # every element, by explicit index
        for index in np.ndindex(p.shape):
            e = cr.explain(loss, p, index)
            assert close(e.gradient, float(g[index]), scale=scale), (name, index)
            assert close(e.total, float(g[index]), scale=scale), (name, index)
            assert close(e.total, float(ref[index]), rel=1e-9, scale=scale), (name, index)
            for term in e.terms:
                if term.per_point is not None:
                    assert len(term.per_point) == n
                    assert close(float(np.sum(term.per_point)), term.total, scale=scale)


def test_index_forms_agree():
    net = mlp([3, 5, 2], activation="tanh", seed=4)
    x = np.random.default_rng(4).normal(size=(6, 3))
    loss = losses.ssr(net(x), np.zeros((6, 2)))
    w = net[0].weight
    [g] = backward_grads(loss, [w])
    for index in [(3, 2), [3, 2], np.array([3, 2]), (np.int64(3), np.int64(2))]:  # w is (5, 3)
        e = cr.explain(loss, w, index)
        assert e.param_label == "0.weight[3, 2]"
        assert close(e.total, float(g[3, 2]), scale=float(np.abs(g).max()))
    b = net[0].bias
    [gb] = backward_grads(loss, [b])
    assert close(cr.explain(loss, b, 4).total, float(gb[4]))
    assert close(cr.explain(loss, b, (4,)).total, float(gb[4]))


def test_one_element_vector_parameter():
    # a (1,)-shaped bias (the output bias of an mlp ending in 1) is explained as element [0]
    net = mlp([2, 3, 1], activation="softplus", seed=2)
    x = np.random.default_rng(2).normal(size=(5, 2))
    y = np.ones((5, 1))
    loss = losses.ssr(net(x), y)
    b = net[2].bias
    [g] = backward_grads(loss, [b])
    # by hand: dSSR/db = sum_i -2 (y_i - out_i) x 1
    out = net(x).data
    hand = float(np.sum(-2 * (y - out)))
    for index in (None, 0, (0,)):
        e = cr.explain(loss, b, index)
        assert e.param_label == "2.bias[0]"
        assert close(e.total, float(g[0])) and close(e.total, hand, rel=1e-12)


# ---- several paths -------------------------------------------------------------------------------------


def test_parameter_used_twice_gives_one_term_per_path():
    w = cr.tensor(1.5, requires_grad=True, name="w")
    x = cr.tensor([1.0, 2.0, 3.0], name="x")
    loss = (w * x + w**2).sum()
    loss.name = "L"
    e = cr.explain(loss, w)
    # d/dw sum_i (w x_i + w^2) = sum_i x_i + 3 (2 w) = 6 + 9 = 15, one path each
    assert len(e.terms) == 2 and not e.hidden
    by_op = {("mul" if "mul" in t.ops else "pow"): t for t in e.terms}
    assert set(by_op) == {"mul", "pow"}
    assert by_op["mul"].total == pytest.approx(6.0, rel=1e-15)
    assert by_op["pow"].total == pytest.approx(9.0, rel=1e-15)
    np.testing.assert_allclose(by_op["mul"].per_point, [1.0, 2.0, 3.0])  # x_i for each point
    assert e.total == pytest.approx(15.0, rel=1e-15) and e.gradient == pytest.approx(15.0, rel=1e-15)
    assert e.chain.count("dL/dw") == 3 and " + " in e.chain.split(" = ", 1)[1]
    assert e.text().count("Path ") == 2


def test_shared_layer_gives_two_paths_that_add_to_autograd():
    lin = Linear(2, 2, seed=5)
    net = Sequential(lin, Tanh(), lin)  # the same weights used twice
    x = np.random.default_rng(5).normal(size=(4, 2))
    y = np.random.default_rng(6).normal(size=(4, 2))
    loss = losses.ssr(net(x), y)
    W, b = lin.weight, lin.bias

    def f(W_, b_):
        return anp.sum((y - (anp.dot(anp.tanh(anp.dot(x, W_.T) + b_), W_.T) + b_)) ** 2)

    ref_W, ref_b = autograd.grad(f, (0, 1))(W.data, b.data)
    for p, ref in ((W, ref_W), (b, ref_b)):
        scale = float(np.abs(ref).max())
        for index in np.ndindex(p.shape):
            e = cr.explain(loss, p, index)
            assert len(e.terms) == 2, index
            assert close(sum(t.total for t in e.terms), e.total)
            assert close(e.total, float(ref[index]), rel=1e-10, scale=scale)
            assert close(e.total, e.gradient, scale=scale)


def _ten_uses(n_points=5):
    """w used in 10 places: L = sum_i sum_k (w k) x_i, so dL/dw = sum_k k sum_i x_i."""
    w = cr.tensor(0.7, requires_grad=True, name="w")
    x = np.linspace(0, 1, n_points)
    total = (w * 1.0) * x
    for k in range(2, 11):
        total = total + (w * float(k)) * x
    loss = total.sum()
    loss.name = "L"
    return w, x, loss


def test_many_paths_show_at_most_max_paths_and_a_summary_line():
    w, x, loss = _ten_uses()
    e = cr.explain(loss, w)
    assert len(e.terms) == MAX_PATHS and len(e.terms) + len(e.hidden) == 10
    # each path k contributes k sum_i x_i = 2.5 k (x = 0, 0.25, 0.5, 0.75, 1)
    assert sorted(t.total for t in e.terms + e.hidden) == pytest.approx([2.5 * k for k in range(1, 11)])
    assert e.total == pytest.approx(2.5 * 55, rel=1e-14)  # 137.5
    assert e.gradient == pytest.approx(137.5, rel=1e-14)
    text = e.text()
    assert len(re.findall(r"^Path \d+:", text, re.M)) == MAX_PATHS
    hidden_sum = sum(t.total for t in e.hidden)
    m = re.search(rf"^\.\.\. and {10 - MAX_PATHS} more paths, adding (\S+)$", text, re.M)
    assert m and float(m.group(1)) == pytest.approx(hidden_sum, rel=1e-5)
    assert hidden_sum + sum(t.total for t in e.terms) == pytest.approx(137.5, rel=1e-14)
    md = e.markdown()
    assert len(re.findall(r"^### Path \d+:", md, re.M)) == MAX_PATHS
    assert f"... and {10 - MAX_PATHS} more paths" in md


# ---- large batches stay readable ------------------------------------------------------------------------


def _dosage_batch(n):
    x = np.linspace(0, 1, n)
    y = np.sin(3 * x)
    net = DosageNetwork.from_lesson()
    return net, x, y, losses.ssr(net(x), y)


def test_a_batch_of_200_points_prints_the_first_and_last_rows():
    net, x, y, loss = _dosage_batch(200)
    e = cr.explain(loss, net.w2)
    assert close(e.total, float(lesson_gradients(values_of(net), x, y)["w2"]), rel=1e-11)
    assert len(e.terms[0].per_point) == 200
    lines = e.text().splitlines()
    first = [ln.split()[0] for ln in lines if ln.strip() and ln.split()[0].isdigit()]
    half = MAX_POINTS // 2
    assert first == [str(i) for i in [*range(1, half + 1), *range(201 - half, 201)]]
    assert any(ln.strip() == "..." for ln in lines)
    assert any(ln.split()[:1] == ["sum"] for ln in lines)
    # the number of lines does not grow with the data
    net_big, _, _, loss_big = _dosage_batch(2000)
    big = cr.explain(loss_big, net_big.w2).text().splitlines()
    assert len(big) == len(lines) < 30
    md = e.markdown().splitlines()
    assert sum(ln.startswith("|") for ln in md) == 2 + MAX_POINTS + 1 + 1  # head, rule, rows, "...", sum


# ---- formats ----------------------------------------------------------------------------------------------


def test_markdown_is_a_table_with_the_chain_in_backticks(lesson_b3_0):
    net, x, y, loss = lesson_b3_0
    e = cr.explain(loss, net.w1)
    md = e.markdown()
    assert f"`{e.chain}`" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert rows[0].strip("|").split("|")[0].strip() == "i"
    assert re.fullmatch(r"\|(---\|)+", rows[1])
    cells = [r.count("|") for r in rows]
    assert len(set(cells)) == 1 and cells[0] - 1 == 2 + len(e.terms[0].factors)  # i, factors, product
    assert len(rows) == 2 + 3 + 1  # head, rule, 3 points, sum
    assert e._repr_markdown_() == md
    assert repr(e).startswith("<Explanation dSSR/dw1 = ")


# ---- no side effects, and errors ---------------------------------------------------------------------------


def test_explain_leaves_every_grad_as_it_was():
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    loss = losses.ssr(net(x), y)
    net.w1.grad = np.array(7.0)
    net.b3.grad = np.array(-1.5)
    before = {n: (None if p.grad is None else p.grad.copy()) for n, p in net.named_parameters()}
    for name in NAMES:
        cr.explain(loss, getattr(net, name))
    after = {n: p.grad for n, p in net.named_parameters()}
    for name in NAMES:
        if before[name] is None:
            assert after[name] is None, name
        else:
            np.testing.assert_array_equal(after[name], before[name])
    # and the same for matrices, after a real backward that kept the graph
    mnet = mlp([2, 4, 1], seed=0)
    mloss = losses.mse(mnet(np.ones((3, 2))), np.zeros((3, 1)))
    mloss.backward(retain_graph=True)
    saved = [p.grad.copy() for p in mnet.parameters()]
    for p in mnet.parameters():
        cr.explain(mloss, p)
    for p, g in zip(mnet.parameters(), saved):
        np.testing.assert_array_equal(p.grad, g)


def test_explain_after_backward_with_retain_graph_works():
    net = DosageNetwork.from_lesson(b3=0.0)
    x, y = dosage()
    loss = losses.ssr(net(x), y)
    loss.backward(retain_graph=True)
    e = cr.explain(loss, net.b3)
    assert close(e.total, float(net.b3.grad)) and round(e.total, 2) == -15.66


def test_explain_after_backward_without_retain_graph_raises():
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    loss = losses.ssr(net(x), y)
    loss.backward()
    with pytest.raises(ValueError, match="retain_graph=True"):
        cr.explain(loss, net.w1)


def test_parameter_not_in_the_graph_raises():
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    loss = losses.ssr(net(x), y)
    stranger = Parameter(1.0, name="w9")
    with pytest.raises(ValueError, match="w9"):
        cr.explain(loss, stranger)


def test_non_scalar_loss_raises():
    net = DosageNetwork.from_lesson()
    x, _ = dosage()
    with pytest.raises(ValueError, match="one-element"):
        cr.explain(net(x), net.w1)  # shape (3,): the predictions, not a loss
    with pytest.raises(ValueError, match="one-element"):
        cr.explain(3.0, net.w1)


def test_loss_without_grad_raises():
    with pytest.raises(ValueError, match="requires grad"):
        cr.explain(cr.tensor(1.0), cr.tensor(2.0))


def test_param_that_is_not_a_tensor_raises_type_error():
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    with pytest.raises(TypeError, match="param"):
        cr.explain(losses.ssr(net(x), y), "w1")


@pytest.mark.parametrize("index", [(3, 0), (0, 5), (-1, 0), (0,), (0, 0, 0), (0, 1.5), ("a", "b")])
def test_bad_index_raises(index):
    net = mlp([2, 3, 1], seed=0)  # 0.weight is (3, 2): (out_features, in_features)
    loss = losses.ssr(net(np.ones((4, 2))), np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"index .* shape \(3, 2\)"):
        cr.explain(loss, net[0].weight, index)


@pytest.mark.parametrize("index", [5, (0,), 1.0])
def test_index_on_a_scalar_parameter_raises(index):
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    with pytest.raises(ValueError, match=r"index .* shape \(\)"):
        cr.explain(losses.ssr(net(x), y), net.b3, index)
