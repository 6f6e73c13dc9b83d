"""chainrule.nn: Module, Parameter, Linear, Sequential and the lessons' DosageNetwork.

The lessons' numbers are checked against MISSION.md's reference table and
against the chain-rule formulas of the lessons, written out here in NumPy.
"""

import re

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import dosage
from chainrule.losses import ssr
from chainrule.nn import (
    DosageNetwork,
    Identity,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    SoftPlus,
    Tanh,
    mlp,
)

NAMES = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")
LESSON = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30, "b3": 2.61}


# ---- the lessons' formulas, independently in NumPy ------------------------------------


def softplus(x):
    return np.log1p(np.exp(x))


def softplus_prime(x):
    return np.exp(x) / (1 + np.exp(x))


def lesson_forward(p, x):
    x1, x2 = x * p["w1"] + p["b1"], x * p["w2"] + p["b2"]
    return p["w3"] * softplus(x1) + p["w4"] * softplus(x2) + p["b3"], x1, x2


def lesson_gradients(p, x, observed):
    """dSSR/d(each parameter) by MISSION.md's chain rule, summed over the data points."""
    predicted, x1, x2 = lesson_forward(p, x)
    d = -2 * (observed - predicted)  # dSSR/dPredicted_i
    return {
        "b3": np.sum(d * 1),
        "w3": np.sum(d * softplus(x1)),
        "w4": np.sum(d * softplus(x2)),
        "w1": np.sum(d * p["w3"] * softplus_prime(x1) * x),
        "b1": np.sum(d * p["w3"] * softplus_prime(x1) * 1),
        "w2": np.sum(d * p["w4"] * softplus_prime(x2) * x),
        "b2": np.sum(d * p["w4"] * softplus_prime(x2) * 1),
    }


def backward_gradients(net, x, y):
    net.zero_grad()
    ssr(net(x), y).backward()
    return {n: getattr(net, n).grad.item() for n in NAMES}


# ---- MISSION.md's reference table -----------------------------------------------------


@pytest.mark.parametrize("b3, expected", [(0, 20.42), (1, 7.77), (2, 1.11), (3, 0.46)])
def test_ssr_against_b3_matches_the_lessons(b3, expected):
    x, y = dosage()
    assert round(ssr(DosageNetwork.from_lesson(b3=float(b3))(x), y).item(), 2) == expected


def test_dssr_db3_at_zero_is_minus_15_66():
    x, y = dosage()
    grads = backward_gradients(DosageNetwork.from_lesson(b3=0.0), x, y)
    assert round(grads["b3"], 2) == -15.66  # the lesson rounds it to -15.7
    assert round(grads["b3"], 1) == -15.7


def test_dssr_db3_after_the_first_step_is_minus_6_26():
    x, y = dosage()
    grads = backward_gradients(DosageNetwork.from_lesson(b3=1.5655), x, y)
    assert round(grads["b3"], 2) == -6.26


def test_ssr_at_the_optimized_b3_is_nearly_zero_not_0_46():
    # Seed 000 says the SSR is about 0.46 at b3 = 2.61; that is the SSR at b3 = 3.
    x, y = dosage()
    value = ssr(DosageNetwork.from_lesson()(x), y).item()
    assert value == pytest.approx(6e-5, abs=1e-5)
    assert round(value, 2) != 0.46
    assert value < 1e-3


def test_ssr_at_the_second_lessons_start_is_1_40():
    x, y = dosage()
    net = DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0)
    assert round(ssr(net(x), y).item(), 2) == 1.40


def test_dosage_data_is_the_lessons():
    x, y = dosage()
    np.testing.assert_array_equal(x, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(y, [0.0, 1.0, 0.0])
    assert dosage().inputs is not dosage().inputs  # a fresh copy each call: safe to modify


# ---- backward against the lessons' chain rule -----------------------------------------


def test_backward_matches_the_lessons_chain_rule_at_the_lessons_values():
    x, y = dosage()
    got = backward_gradients(DosageNetwork.from_lesson(b3=0.0), x, y)
    want = lesson_gradients({**LESSON, "b3": 0.0}, x, y)
    for name in NAMES:
        assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("seed", range(5))
def test_backward_matches_the_lessons_chain_rule_at_random_values(seed):
    rng = np.random.default_rng(seed)
    p = dict(zip(NAMES, rng.normal(0, 2, 7)))
    x, y = rng.uniform(-1, 2, 6), rng.normal(size=6)
    got = backward_gradients(DosageNetwork(**p), x, y)
    want = lesson_gradients(p, x, y)
    for name in NAMES:
        assert got[name] == pytest.approx(want[name], rel=1e-10, abs=1e-12), name


def test_forward_matches_the_lessons_formula_and_curves_add_up():
    x, y = dosage()
    net = DosageNetwork.from_lesson()
    want, x1, x2 = lesson_forward(LESSON, x)
    np.testing.assert_allclose(net(x).data, want, rtol=1e-13)
    curves = net.curves(x)
    np.testing.assert_allclose(curves["blue"].data, LESSON["w3"] * softplus(x1), rtol=1e-13)
    np.testing.assert_allclose(curves["orange"].data, LESSON["w4"] * softplus(x2), rtol=1e-13)
    np.testing.assert_allclose(curves["green"].data, want, rtol=1e-13)


def test_dosage_network_accepts_a_column_and_rejects_several_features():
    net = DosageNetwork.from_lesson()
    x = np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(net(x[:, None]).data.ravel(), net(x).data)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        net(np.zeros((3, 2)))


def _sequential_from_lesson(p):
    seq = Sequential(Linear(1, 2), SoftPlus(), Linear(2, 1))
    # Linear.weight is (in_features, out_features): the hidden layer's is [[w1, w2]].
    # Linear weights are (out_features, in_features), as in PyTorch.
    seq.load_state_dict(
        {
            "0.weight": [[p["w1"]], [p["w2"]]],
            "0.bias": [p["b1"], p["b2"]],
            "2.weight": [[p["w3"], p["w4"]]],
            "2.bias": [p["b3"]],
        }
    )
    return seq


@pytest.mark.parametrize("b3", [0.0, 2.61])
def test_sequential_with_the_lessons_values_is_the_dosage_network(b3):
    x, y = dosage()
    p = {**LESSON, "b3": b3}
    seq, net = _sequential_from_lesson(p), DosageNetwork(**p)
    col = x[:, None]
    np.testing.assert_allclose(seq(col).data.ravel(), net(x).data, rtol=1e-13)
    np.testing.assert_allclose(seq(col).data.ravel(), lesson_forward(p, x)[0], rtol=1e-13)

    ssr(seq(col), y[:, None]).backward()
    want = backward_gradients(net, x, y)
    w0, b0, w2, b2 = (q.grad for q in seq.parameters())
    got = {"w1": w0[0, 0], "w2": w0[1, 0], "b1": b0[0], "b2": b0[1], "w3": w2[0, 0], "w4": w2[0, 1], "b3": b2[0]}
    for name in NAMES:
        assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name
    if b3 == 0.0:
        assert round(got["b3"], 2) == -15.66


# ---- Module ----------------------------------------------------------------------------


class TwoLayers(Module):
    def __init__(self):
        self.hidden = Linear(3, 4, seed=0)
        self.act = Tanh()
        self.out = Linear(4, 2, seed=1)
        self.scale = Parameter(1.5)

    def forward(self, x):
        return self.out(self.act(self.hidden(x))) * self.scale


def test_named_parameters_are_dotted_paths_in_definition_order():
    net = Sequential(Linear(1, 2, seed=0), Sequential(Linear(2, 3, seed=1), ReLU()), Linear(3, 1, seed=2))
    assert [n for n, _ in net.named_parameters()] == [
        "0.weight",
        "0.bias",
        "1.0.weight",
        "1.0.bias",
        "2.weight",
        "2.bias",
    ]
    assert [n for n, _ in TwoLayers().named_parameters()] == [
        "scale",
        "hidden.weight",
        "hidden.bias",
        "out.weight",
        "out.bias",
    ]
    assert [n for n, _ in DosageNetwork.from_lesson().named_parameters()] == list(NAMES)


def test_parameters_lists_each_parameter_once_even_when_shared():
    shared = Linear(2, 2, seed=0)
    net = Sequential(shared, ReLU(), shared)
    assert len(net.parameters()) == 2
    assert net.parameters()[0] is shared.weight
    assert all(isinstance(p, Parameter) and p.requires_grad for p in TwoLayers().parameters())
    assert [n for n, _ in Linear(2, 2, bias=False).named_parameters()] == ["weight"]


def test_parameters_take_their_attribute_names():
    lin = Linear(2, 3, seed=0)
    assert (lin.weight.name, lin.bias.name) == ("weight", "bias")
    assert [getattr(DosageNetwork.from_lesson(), n).name for n in NAMES] == list(NAMES)
    assert Parameter(1.0, name="given").name == "given"
    assert repr(Parameter(2.61, name="b3")) == "Parameter(b3=2.61)"
    assert "shape (3, 2)" in repr(lin.weight)  # (out_features, in_features)


def test_zero_grad_forgets_every_gradient():
    net = TwoLayers()
    net(np.ones((5, 3))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip_copies_values():
    a, b = TwoLayers(), TwoLayers()
    for p in b.parameters():
        p.data[...] = 0.0
    state = a.state_dict()
    assert list(state) == [n for n, _ in a.named_parameters()]
    b.load_state_dict(state)
    x = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_array_equal(a(x).data, b(x).data)
    state["scale"][...] = 99.0  # a copy: changing it leaves both models alone
    assert a.scale.item() == 1.5 and b.scale.item() == 1.5
    b.hidden.weight.data[0, 0] = 7.0  # loaded by value, not shared
    assert a.hidden.weight.data[0, 0] != 7.0


def test_load_state_dict_rejects_missing_and_unexpected_keys():
    lin = Linear(2, 2, seed=0)
    with pytest.raises(ValueError, match=r"missing \['bias'\]"):
        lin.load_state_dict({"weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        lin.load_state_dict({**lin.state_dict(), "extra": np.zeros(1)})


def test_load_state_dict_rejects_a_shape_mismatch_naming_both_shapes():
    lin = Linear(2, 2, seed=0)
    with pytest.raises(ValueError, match=r"'weight'.*\(2, 2\).*\(2, 3\)"):
        lin.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(2)})


def test_load_state_dict_changes_nothing_when_it_fails():
    lin = Linear(2, 2, seed=0)
    before = lin.state_dict()
    with pytest.raises(ValueError):
        lin.load_state_dict({"weight": np.full((2, 2), 5.0), "bias": np.zeros(3)})
    for name, value in lin.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_repr_is_readable():
    assert repr(mlp([1, 2, 1], activation="softplus", seed=0)) == (
        "Sequential(\n"
        "  (0): Linear(in_features=1, out_features=2, bias=True)\n"
        "  (1): SoftPlus()\n"
        "  (2): Linear(in_features=2, out_features=1, bias=True)\n"
        ")"
    )
    assert repr(DosageNetwork.from_lesson()) == (
        "DosageNetwork(w1=3.34, b1=-1.43, w2=-3.53, b2=0.57, w3=-1.22, w4=-2.3, b3=2.61)"
    )
    assert "(hidden): Linear(in_features=3, out_features=4, bias=True)" in repr(TwoLayers())


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="layer 1"):
        Sequential(Linear(1, 1), np.tanh)


# ---- Linear ---------------------------------------------------------------------------


def test_linear_computes_x_at_weight_plus_bias():
    lin = Linear(3, 2, seed=0)
    lin.bias.data[...] = [0.5, -1.0]
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(lin(x).data, x @ lin.weight.data.T + [0.5, -1.0])
    assert lin.weight.shape == (2, 3) and lin.bias.shape == (2,)  # (out_features, in_features)
    np.testing.assert_array_equal(Linear(3, 2, seed=0).bias.data, [0.0, 0.0])
    with pytest.raises(ValueError, match="3 features.*\\(2, 4\\)"):
        lin(np.zeros((2, 4)))


def test_linear_seeding_is_reproducible():
    np.testing.assert_array_equal(Linear(4, 3, seed=7).weight.data, Linear(4, 3, seed=7).weight.data)
    assert not np.array_equal(Linear(4, 3, seed=7).weight.data, Linear(4, 3, seed=8).weight.data)
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(Linear(4, 3, seed=g1).weight.data, Linear(4, 3, seed=g2).weight.data)
    np.testing.assert_array_equal(
        mlp([2, 5, 1], seed=1).state_dict()["2.weight"], mlp([2, 5, 1], seed=1).state_dict()["2.weight"]
    )


def test_linear_init_scale_is_one_over_sqrt_in_features():
    assert "1/in_features" in Linear.__doc__  # documented: N(0, 1/in_features)
    w = Linear(400, 300, seed=0).weight.data  # 120,000 draws
    # The sample std of 120,000 normals is within 1% of the true std with overwhelming probability.
    assert w.std() == pytest.approx(1 / np.sqrt(400), rel=0.01)
    assert abs(w.mean()) < 5 * (1 / np.sqrt(400)) / np.sqrt(w.size)


@pytest.mark.parametrize(
    "bad, error",
    [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError), ("3", TypeError), (None, TypeError)],
)
def test_linear_rejects_bad_sizes(bad, error):
    with pytest.raises(error, match=re.escape(f"Linear: in_features must be an integer >= 1, got {bad!r}")):
        Linear(bad, 2)
    with pytest.raises(error, match=re.escape(f"Linear: out_features must be an integer >= 1, got {bad!r}")):
        Linear(2, bad)


@pytest.mark.parametrize(
    "sizes, error",
    [([1], ValueError), ([1, 0, 1], ValueError), ([1, 2.0, 1], TypeError), ("121", TypeError), (3, TypeError)],
)
def test_mlp_rejects_bad_sizes(sizes, error):
    with pytest.raises(
        error, match=re.escape(f"mlp: sizes must be a sequence of at least 2 integers >= 1, got {sizes!r}")
    ):
        mlp(sizes)


def test_mlp_takes_sizes_as_a_tuple_a_range_or_an_array():
    for sizes in ((2, 3, 1), range(2, 4), np.array([2, 3])):
        assert mlp(sizes, seed=0)[0].in_features == 2


def test_linear_float32_stays_float32():
    lin = Linear(2, 3, seed=0, dtype=np.float32)
    assert lin.weight.dtype == np.float32 and lin.bias.dtype == np.float32
    out = lin(np.ones((4, 2), dtype=np.float32))
    assert out.dtype == np.float32
    out.sum().backward()
    assert lin.weight.grad.dtype == np.float32


@pytest.mark.parametrize(
    "module, fn",
    [
        (SoftPlus(), lambda x: np.log1p(np.exp(x))),
        (ReLU(), lambda x: np.maximum(x, 0)),
        (Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
        (Tanh(), np.tanh),
        (Identity(), lambda x: x),
    ],
)
def test_activations_compute_their_formula(module, fn):
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(module(cr.tensor(x)).data, fn(x), rtol=1e-12, atol=1e-15)
    assert module.parameters() == []


def test_mlp_builds_linear_layers_with_activations_between():
    net = mlp([3, 5, 4, 2], activation="tanh", seed=0)
    assert [type(m).__name__ for m in net.layers] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert net(np.zeros((7, 3))).shape == (7, 2)
    with pytest.raises(ValueError, match=r"mlp: activation must be one of 'identity', .*'tanh', got 'swish'"):
        mlp([1, 1], activation="swish")


# ---- DosageNetwork constructors ----------------------------------------------------------


def test_from_lesson_uses_the_lessons_values_and_overrides():
    net = DosageNetwork.from_lesson()
    assert {n: getattr(net, n).item() for n in NAMES} == LESSON
    net = DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0)
    assert {n: getattr(net, n).item() for n in NAMES} == {**LESSON, "w3": 0.36, "w4": 0.63, "b3": 0.0}
    assert DosageNetwork.from_lesson(dtype=np.float32).w1.dtype == np.float32


def test_from_lesson_rejects_an_unknown_name():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['b4'\].*'w1'"):
        DosageNetwork.from_lesson(b4=1.0)


def test_dosage_network_rejects_non_numbers():
    with pytest.raises(TypeError, match=re.escape("DosageNetwork: w1 must be a number, got [1.0, 2.0]")):
        DosageNetwork(w1=[1.0, 2.0], b1=0, w2=0, b2=0, w3=0, w4=0, b3=0)
    for bad in ("1", True, None, np.array([1.0])):
        with pytest.raises(TypeError, match="DosageNetwork: b3 must be a number, got "):
            DosageNetwork(w1=0, b1=0, w2=0, b2=0, w3=0, w4=0, b3=bad)
    net = DosageNetwork(w1=np.float32(1.5), b1=np.array(2), w2=cr.tensor(0.5), b2=0, w3=0, w4=0, b3=0)
    assert (net.w1.item(), net.b1.item(), net.w2.item()) == (1.5, 2.0, 0.5)


def test_random_start_is_standard_normal_weights_and_zero_biases():
    nets = [DosageNetwork.random(seed=s) for s in range(500)]
    for net in nets[:20]:
        assert (net.b1.item(), net.b2.item(), net.b3.item()) == (0.0, 0.0, 0.0)
    weights = np.array([[getattr(net, n).item() for n in ("w1", "w2", "w3", "w4")] for net in nets]).ravel()
    # 2,000 draws from N(0, 1): mean within 4 standard errors (4 / sqrt(2000) = 0.09), std within 6%.
    assert abs(weights.mean()) < 0.09
    assert weights.std() == pytest.approx(1.0, rel=0.06)
    assert len(np.unique(weights)) == weights.size


def test_random_start_is_reproducible_by_seed():
    a, b, c = DosageNetwork.random(seed=3), DosageNetwork.random(seed=3), DosageNetwork.random(seed=4)
    assert a.state_dict().keys() == b.state_dict().keys()
    for name in NAMES:
        assert getattr(a, name).item() == getattr(b, name).item()
    assert any(getattr(a, n).item() != getattr(c, n).item() for n in ("w1", "w2", "w3", "w4"))
