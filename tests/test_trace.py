"""fit(..., compile=True): a recorded step replayed as NumPy calls gives the eager path's numbers.

Bit for bit where the replay runs (the same NumPy calls in the same order). The lessons' tiny float64
network on the full batch is written out as Python arithmetic instead (engine "python",
chainrule.scalar), which calls Python's math where eager calls NumPy: those runs agree to rounding.
"""

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.nn import DosageNetwork, Module, Parameter, mlp
from chainrule.optim import Adam, GradientDescent
from chainrule.trace import CompileWarning, Tape


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        yield


def _both(make, x, y, **kw):
    """Train two copies, eagerly and compiled; return both (model, history)."""
    runs = []
    for compiled in (False, True):
        model = make()
        with warnings.catch_warnings():
            warnings.simplefilter("error", CompileWarning)  # a silent fallback would make this test vacuous
            runs.append((model, cr.fit(model, x, y, compile=compiled, **kw)))
    return runs


# The written-out path against eager: NumPy's SIMD exp and log1p (AVX-512) differ from Python's math in
# the last bit on some inputs, and that grows over the iterations. The allowance, and how it was measured:
# RTOL and ATOL in tests/test_scalar.py.
RTOL, ATOL = 1e-12, 1e-11


def _same(runs):
    """Bit for bit: what the NumPy replay promises."""
    (a, ha), (b, hb) = runs
    assert hb.engine == "numpy"
    assert ha.n_iter == hb.n_iter and ha.stop_reason == hb.stop_reason
    np.testing.assert_array_equal(ha.loss, hb.loss)
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[name], value)


def _close(runs):
    """To rounding: the written-out path (Python's math) against eager (NumPy)."""
    (a, ha), (b, hb) = runs
    assert hb.engine == "python"
    assert ha.n_iter == hb.n_iter and ha.stop_reason == hb.stop_reason
    np.testing.assert_allclose(hb.loss, ha.loss, rtol=RTOL, atol=ATOL)
    for name, value in a.state_dict().items():
        np.testing.assert_allclose(b.state_dict()[name], value, rtol=RTOL, atol=ATOL, err_msg=name)


def test_the_lessons_b3_run_is_the_same_compiled():
    x, y = cr.data.dosage()
    runs = _both(lambda: DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"])
    _close(runs)
    assert runs[1][1].n_iter == 10 and round(runs[1][0].b3.item(), 3) == 2.609  # MISSION.md


@pytest.mark.parametrize("batch_size", [None, 2], ids=["full-batch-written-out", "mini-batches-replayed"])
def test_all_seven_parameters_for_1000_iterations_are_the_same_compiled(batch_size):
    x, y = cr.data.dosage()
    runs = _both(
        lambda: DosageNetwork(2.0, 0.0, -2.0, 0.0, 1.0, 1.0, 0.0),
        x,
        y,
        tol=0,
        max_iter=1000,
        batch_size=batch_size,
        seed=0,
    )
    (_close if batch_size is None else _same)(runs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_classifier_with_mini_batches_and_a_short_last_batch_is_the_same_compiled(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(dtype)  # 50 = 3 batches of 16 and one of 2
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    runs = _both(
        lambda: mlp([4, 8, 3], activation="relu", seed=1, dtype=dtype),
        x,
        labels,
        loss="cross_entropy",
        optimizer=Adam(0.01),
        batch_size=16,
        seed=2,
        max_iter=5,
        tol=0,
    )
    _same(runs)
    assert runs[1][0].parameters()[0].dtype == dtype


def test_a_regression_mlp_with_frozen_layers_is_the_same_compiled():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(20, 2))
    y = np.sin(3 * x[:, 0]) * x[:, 1]
    _same(
        _both(
            lambda: mlp([2, 6, 6, 1], activation="tanh", seed=4),
            x,
            y,
            loss="mse",
            params=["2.weight", "2.bias", "4.weight"],
            optimizer=GradientDescent(0.3),
            max_iter=40,
            tol=0,
        )
    )


class _PeekingModel(Module):
    """Scales its input by the batch's mean computed in NumPy: a constant the graph never sees."""

    def __init__(self):
        self.w = Parameter(0.5)

    def forward(self, x):
        x = cr.tensor(x) if not isinstance(x, cr.Tensor) else x
        return x * self.w * float(np.mean(x.data))


def test_a_model_that_builds_constants_from_its_data_falls_back_to_eager_with_a_warning():
    x = np.arange(1.0, 13.0)
    y = 2 * x
    eager = _PeekingModel()
    cr.fit(eager, x, y, loss="mse", batch_size=4, seed=0, max_iter=3, tol=0)
    compiled = _PeekingModel()
    with pytest.warns(CompileWarning, match="differs from the eager one"):
        cr.fit(compiled, x, y, loss="mse", batch_size=4, seed=0, max_iter=3, tol=0, compile=True)
    assert compiled.w.item() == eager.w.item()  # the fallback trained exactly as eager did


def test_the_tape_reads_as_straight_line_numpy_calls():
    x, y = cr.data.dosage()
    net = DosageNetwork.from_lesson()
    xt, yt = cr.tensor(x[:, None]), y[:, None]
    tape = Tape(cr.losses.ssr(net(xt), yt), net.parameters(), xt.data, yt)
    lines = tape.source.splitlines()
    assert lines[0] == "def step(params, x, y):"
    assert not any(line.lstrip().startswith(("for ", "while ", "if ")) for line in lines)
    # 13 recorded ops forward: 10 in the network, 3 in the SSR; one VJP call per gradient edge back.
    assert sum(" = F" in line or "asarray(F" in line for line in lines) == 13
