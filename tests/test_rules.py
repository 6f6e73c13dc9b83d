"""Every interpreter's rule table against the op registry, and the written-out rules against NumPy's.

Three interpreters read the recorded graph: the NumPy replay (chainrule.trace), the written-out
Python (chainrule.scalar) and the explainer (chainrule.explain). Each either has a rule for an op
or declines it explicitly; adding an op to the registry without saying what each one does with it
fails here, naming the op and the table. The scalar templates are then evaluated with Python
floats and compared with the op's NumPy forward and VJPs, and the optimizers' written-out updates
with optim.py's.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim, scalar, trace
from chainrule.ops import REGISTRY

explain = importlib.import_module("chainrule.explain")  # cr.explain is the function

OPS = sorted(REGISTRY)


def _exactly_one(op, tables):
    """The names of the tables holding ``op``, when that is not exactly one of them."""
    holding = [name for name, table in tables.items() if op in table]
    return [] if len(holding) == 1 else [f"in {holding or 'none'} of {sorted(tables)}"]


def missing_rules(op):
    """What each interpreter fails to say about ``op``: a list of problems, empty when all is well."""
    problems = [
        f"scalar: {p}"
        for p in _exactly_one(
            op,
            {
                "FORWARD": scalar.FORWARD,
                "STRUCTURAL": scalar.STRUCTURAL,
                "SUMS": scalar.SUMS,
                "MATRIX": scalar.MATRIX,
                "DECLINED": scalar.DECLINED,
            },
        )
    ]
    if (op in scalar.FORWARD) != (op in scalar.BACKWARD):
        problems.append("scalar: FORWARD and BACKWARD must cover the same ops")
    problems += [
        f"explain: {p}"
        for p in _exactly_one(op, {"ELEMENTWISE": explain.ELEMENTWISE, "NOT_ELEMENTWISE": explain.NOT_ELEMENTWISE})
    ]
    problems += [f"explain labels: {p}" for p in _exactly_one(op, {"INFIX": explain.INFIX, "PLAIN": explain.PLAIN})]
    # The NumPy replay calls each op's own forward and VJPs: it takes every op that has them.
    if op in trace.DECLINED or not callable(op.fwd) or op.vjps is None:
        problems.append("trace: the replay needs the op's fwd and vjps")
    return problems


@pytest.mark.parametrize("name", OPS)
def test_every_interpreter_has_a_rule_or_declines_the_op(name):
    assert missing_rules(REGISTRY[name]) == []


def test_the_tables_hold_only_registered_ops():
    ops = set(REGISTRY.values())
    for table in (
        scalar.FORWARD,
        scalar.BACKWARD,
        scalar.STRUCTURAL,
        scalar.SUMS,
        scalar.MATRIX,
        scalar.DECLINED,
        explain.ELEMENTWISE,
        explain.NOT_ELEMENTWISE,
        explain.INFIX,
        explain.PLAIN,
    ):
        assert set(table) <= ops


@pytest.mark.parametrize(
    "module, table, name, expected",
    [
        (scalar, "FORWARD", "exp", "scalar"),
        (scalar, "DECLINED", "max", "scalar"),
        (scalar, "BACKWARD", "mul", "FORWARD and BACKWARD"),
        (explain, "ELEMENTWISE", "tanh", "explain"),
        (explain, "INFIX", "add", "explain labels"),
        (explain, "PLAIN", "sum", "explain labels"),
    ],
)
def test_the_check_reports_a_rule_taken_away(monkeypatch, module, table, name, expected):
    """The check has teeth: with one rule removed, it names the op's interpreter."""
    op, entries = REGISTRY[name], getattr(module, table)
    assert op in entries
    monkeypatch.setattr(
        module,
        table,
        {k: entries[k] for k in entries if k is not op}
        if isinstance(entries, dict)
        else {k for k in entries if k is not op},
    )
    assert any(expected in p for p in missing_rules(op))


def test_the_check_reports_a_replay_that_declines(monkeypatch):
    monkeypatch.setattr(trace, "DECLINED", frozenset({REGISTRY["getitem"]}))
    assert any("trace" in p for p in missing_rules(REGISTRY["getitem"]))


# ---- the written-out forms against the ops' NumPy forward and VJPs ---------------------------------
# NOTE: compared to rtol 1e-12, not bit for bit: Python's math.exp/log and NumPy's SIMD exp/log may
# differ in the last bit (on some CPUs they do), and a template may group a product differently.

RTOL = 1e-12
POSITIVE = {"log", "sqrt", "pow"}  # ops whose first input must be positive here
NAMES = ("a", "b")


def _draws(name, arity, seed=0):
    """A few random inputs (Python floats) for an op, inside its domain, plus relu's and abs's kink at 0."""
    rng = np.random.default_rng(seed)
    low = 0.25 if name in POSITIVE else -3.0
    draws = [tuple(float(v) for v in rng.uniform(low, 3.0, arity)) for _ in range(6)]
    return draws + ([(0.0,)] if name in ("relu", "abs") else [])


def template_mismatches(op, seed=0):
    """Inputs where a FORWARD or BACKWARD template of ``op`` disagrees with op.fwd / op.vjps beyond RTOL."""
    forward, backward = scalar.FORWARD[op], scalar.BACKWARD[op]
    arity, bad = len(backward), []
    for values in _draws(op.name, arity, seed):
        env = dict(zip(NAMES, values))
        arrays = [np.asarray(v) for v in values]
        out = np.asarray(op.fwd(*arrays))
        got = eval(forward(*NAMES[:arity]), dict(scalar.NAMESPACE), env)  # our own template text
        bad += [("forward", values, got, float(out))] if not _close(got, out) else []
        g = 0.7
        for i, rule in enumerate(backward):
            expr = rule("g", "o", *NAMES[:arity])
            got = eval(expr, dict(scalar.NAMESPACE), {**env, "g": g, "o": float(out)})
            want = op.vjps[i](np.asarray(g), out, *arrays)
            bad += [(f"d/d{NAMES[i]}", values, got, float(want))] if not _close(got, want) else []
    return bad


def _close(got, want):
    return bool(np.isclose(got, want, rtol=RTOL, atol=0) or (math.isnan(got) and np.isnan(want)))


@pytest.mark.parametrize("name", sorted(op.name for op in scalar.FORWARD))
def test_each_written_out_template_computes_what_the_op_computes(name):
    assert template_mismatches(REGISTRY[name]) == []


def test_the_square_is_written_out_as_a_product():
    # pow(a, 2.0) is written a * a (NumPy squares by multiplying): 1.5^2 = 2.25 either way
    assert scalar.FORWARD[REGISTRY["pow"]]("a", "2.0") == "a * a"
    assert eval("a * a", {}, {"a": 1.5}) == float(np.power(np.asarray(1.5), np.asarray(2.0))) == 2.25


def test_the_template_check_has_teeth(monkeypatch):
    """A derivative scaled by 1.1 is caught, as the gradient checks catch it in test_ops.py."""
    op = REGISTRY["tanh"]
    backward = dict(scalar.BACKWARD)
    backward[op] = (lambda g, o, a: f"1.1 * {g} * (1 - {o} * {o})",)
    monkeypatch.setattr(scalar, "BACKWARD", backward)
    assert [m[0] for m in template_mismatches(op)] == ["d/da"] * 6


# ---- the optimizers: optim.py's NumPy update against the written-out one -----------------------------

OPTIMIZERS = [
    lambda: optim.GradientDescent(lr=0.1),
    lambda: optim.Momentum(lr=0.1, momentum=0.9),
    lambda: optim.Momentum(lr=0.05, momentum=0.8, nesterov=True),
    lambda: optim.Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-8),
]


def _numpy_steps(make, values, grads):
    """The step sizes optim.py takes for each gradient in turn, on one flat parameter vector."""
    p = cr.nn.Parameter(np.array(values))
    opt = make()
    opt.attach([p])
    steps = []
    for g in grads:
        p.grad = np.array(g)
        opt.step()
        steps.append(np.array(opt.step_sizes[0]))
    return steps


def _written_out_steps(make, values, grads):
    """The step sizes of scalar's written-out update (the lines the compiled loop runs), step by step."""
    opt = make()
    P = [f"p{e}" for e in range(len(values))]
    G = [f"g{e}" for e in range(len(values))]
    state, update, assign = scalar._update_rules(opt, P, G)
    env = dict(scalar.NAMESPACE, t=0, **{s: 0.0 for s in state})  # the state starts at zero, as fit's does
    env.update(zip(scalar.HYPERPARAMETERS.split(", "), scalar.hyperparameters(opt)))
    steps = []
    for g in grads:
        env.update(zip(G, (float(v) for v in g)))
        for line in update + assign:
            exec(line, env)  # our own generated lines
        steps.append(np.array([env[f"s{e}"] for e in range(len(values))]))
        env["t"] += 1
    return steps


@pytest.mark.parametrize("k", range(len(OPTIMIZERS)))
def test_each_optimizer_updates_the_same_in_numpy_and_written_out(k):
    rng = np.random.default_rng(k)
    values, grads = rng.normal(size=5), rng.normal(size=(6, 5))
    for a, b in zip(_numpy_steps(OPTIMIZERS[k], values, grads), _written_out_steps(OPTIMIZERS[k], values, grads)):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=0)


def test_the_optimizer_comparison_has_teeth(monkeypatch):
    """A momentum rule that forgot its velocity after the first step is caught."""
    monkeypatch.setattr(optim.Momentum, "update", lambda self, g, state: self.lr * g)
    rng = np.random.default_rng(0)
    values, grads = rng.normal(size=5), rng.normal(size=(6, 5))
    a = _numpy_steps(OPTIMIZERS[1], values, grads)
    b = _written_out_steps(OPTIMIZERS[1], values, grads)
    assert np.allclose(a[0], b[0], rtol=1e-12) and not np.allclose(a[1], b[1], rtol=1e-12)
