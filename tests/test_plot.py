"""chainrule.plot: each figure inspected artist by artist, against the lessons and hand NumPy; save.

The expected curves are recomputed here in NumPy from MISSION.md's formulas; the
descent path is checked against the lessons' first steps (0 -> 1.57 -> 2.19 -> 2.44
-> 2.54, stopping at 2.609 after 10 iterations).
"""

import os
import re
import stat
import warnings

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.contour import QuadContourSet
from matplotlib.figure import Figure
from matplotlib.image import imread

import chainrule as cr
from chainrule import animation, plot
from chainrule.data import dosage
from chainrule.nn import DosageNetwork, mlp
from chainrule.train import History

matplotlib.use("Agg")

NAMES = ("w1", "b1", "w2", "b2", "w3", "w4", "b3")
DPI = 110


def softplus(x):
    return np.log(1 + np.exp(x))


def lesson_curves(p, x):
    """MISSION.md: blue = w3 softplus(x w1 + b1), orange = w4 softplus(x w2 + b2), green = sum + b3."""
    blue = p["w3"] * softplus(x * p["w1"] + p["b1"])
    orange = p["w4"] * softplus(x * p["w2"] + p["b2"])
    return blue, orange, blue + orange + p["b3"]


def ssr_at(p, x, observed, **override):
    """SSR = sum_i (Observed_i - Predicted_i)^2 with some parameters replaced (arrays broadcast)."""
    q = {**p, **override}
    shape = np.broadcast(*[np.asarray(v) for v in q.values()]).shape
    q = {k: np.broadcast_to(np.asarray(v, float), shape)[..., None] for k, v in q.items()}
    _, _, predicted = lesson_curves(q, x)
    return np.sum((observed - predicted) ** 2, axis=-1)


def values_of(net):
    return {n: getattr(net, n).item() for n in NAMES}


def descent_path(history, name):
    """The values before each iteration, then the final one."""
    trace = history.params[name]
    return [float(v) for v in trace.value] + [float(trace.new_value[-1])]


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        return cr.fit(*args, **kwargs)


@pytest.fixture(scope="module")
def b3_history():
    """The lessons' descent on b3 alone from b3 = 0 (learning rate 0.1, tol 0.001)."""
    x, y = dosage()
    return cr.fit(DosageNetwork.from_lesson(b3=0.0), x, y, params=["b3"])


@pytest.fixture(scope="module")
def w3_b3_history():
    """w3 and b3 from MISSION.md's other start (w3 = 0.36, w4 = 0.63, b3 = 0: SSR 1.40)."""
    x, y = dosage()
    net = DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0)
    return quiet_fit(net, x, y, params=["w3", "b3"], max_iter=40)


# ---- squiggle ----------------------------------------------------------------------------------


def test_squiggle_draws_the_lessons_three_curves_and_the_data():
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    before = net.state_dict()
    fig = plot.squiggle(net, x, y)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    blue, orange, green = ax.lines
    assert [to_hex(line.get_color()) for line in ax.lines] == [
        to_hex("tab:blue"),
        to_hex("tab:orange"),
        to_hex("tab:green"),
    ]
    xs = blue.get_xdata()
    # the grid runs 5% past the data on each side: -0.05 .. 1.05
    assert xs[0] == pytest.approx(-0.05) and xs[-1] == pytest.approx(1.05) and len(xs) == 200
    hand = lesson_curves(values_of(net), xs)
    for line, expected in zip((blue, orange, green), hand):
        np.testing.assert_array_equal(line.get_xdata(), xs)
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12, atol=1e-12)
    # the data: one scatter of the lessons' 3 points
    [points] = ax.collections
    np.testing.assert_array_equal(np.asarray(points.get_offsets()), [[0.0, 0.0], [0.5, 1.0], [1.0, 0.0]])
    # at the optimized values the squiggle passes near the data (SSR ~ 6e-5)
    assert np.max(np.abs(lesson_curves(values_of(net), x)[2] - y)) < 0.01
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())


def test_squiggle_of_a_one_hidden_layer_sequential():
    net = mlp([1, 3, 1], activation="softplus", seed=0)
    x, y = dosage()
    before = net.state_dict()
    fig = plot.squiggle(net, x, y)
    ax = fig.axes[0]
    assert len(ax.lines) == 3 + 1  # a dashed curve per hidden node, then the sum
    *nodes, total = ax.lines
    assert all(line.get_linestyle() == "--" for line in nodes)
    # by hand: node j's curve is softplus(x W0[j, 0] + b0[j]) W1[0, j] (weights are (out, in));
    # the output adds them and b1
    W0, b0, W1, b1 = (p.data for p in net.parameters())
    xs = total.get_xdata()
    for j, line in enumerate(nodes):
        np.testing.assert_allclose(line.get_ydata(), softplus(xs * W0[j, 0] + b0[j]) * W1[0, j], rtol=1e-12)
    np.testing.assert_allclose(total.get_ydata(), sum(n.get_ydata() for n in nodes) + b1[0], rtol=1e-12)
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())


# ---- loss_curve ---------------------------------------------------------------------------------------


def test_loss_curve_pink_curve_and_the_lessons_descent_steps(b3_history):
    net = DosageNetwork.from_lesson(b3=0.0)
    x, y = dosage()
    before = net.state_dict()
    fig = plot.loss_curve(net, x, y, "b3", history=b3_history)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    curve, steps = ax.lines
    assert to_hex(curve.get_color()) == to_hex("tab:pink")
    p = values_of(net)
    np.testing.assert_allclose(curve.get_ydata(), ssr_at(p, x, y, b3=curve.get_xdata()), rtol=1e-12)
    path = descent_path(b3_history, "b3")
    np.testing.assert_array_equal(steps.get_xdata(), path)
    # the lessons' steps: b3 0 -> 1.57 -> 2.19 -> 2.44 -> 2.54 ..., stopping at 2.609 after 10 iterations
    assert np.round(steps.get_xdata()[:5], 2).tolist() == [0.0, 1.57, 2.19, 2.44, 2.54]
    assert len(path) == 10 + 1 and round(path[-1], 3) == 2.609
    np.testing.assert_allclose(steps.get_ydata(), ssr_at(p, x, y, b3=np.array(path)), rtol=1e-12)
    assert round(steps.get_ydata()[0], 2) == 20.42  # SSR at b3 = 0
    # the curve covers the whole path
    assert curve.get_xdata().min() < min(path) and curve.get_xdata().max() > max(path)
    assert ax.get_xlabel() == "b3" and ax.get_ylabel() == "SSR"
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())


def test_loss_curve_at_given_values_without_history():
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    values = np.array([0.0, 1.0, 2.0, 3.0])
    fig = plot.loss_curve(net, x, y, net.b3, values=values)  # a Parameter works as well as its name
    [curve] = fig.axes[0].lines
    # MISSION.md: SSR at b3 = 0, 1, 2, 3 is 20.42, 7.77, 1.11, 0.46
    assert np.round(curve.get_ydata(), 2).tolist() == [20.42, 7.77, 1.11, 0.46]
    assert net.b3.item() == 2.61


# ---- landscape -------------------------------------------------------------------------------------------


def test_landscape_has_contours_and_the_descent_path(w3_b3_history):
    net = DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0)
    x, y = dosage()
    before = net.state_dict()
    fig = plot.landscape(net, x, y, ["w3", "b3"], history=w3_b3_history, grid=30)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]  # fig.axes[1] is the colorbar
    assert len(fig.axes) == 2
    contours = [c for c in ax.collections if isinstance(c, QuadContourSet)]
    assert len(contours) == 1
    levels = contours[0].levels
    path_w3, path_b3 = descent_path(w3_b3_history, "w3"), descent_path(w3_b3_history, "b3")
    line = next(ln for ln in ax.lines if ln.get_label() == "descent path")
    np.testing.assert_array_equal(line.get_xdata(), path_w3)
    np.testing.assert_array_equal(line.get_ydata(), path_b3)
    # MISSION.md: SSR 1.40 at the start (w3 = 0.36, w4 = 0.63, b3 = 0); the levels span the start's SSR
    start = ssr_at(values_of(net), x, y, w3=path_w3[0], b3=path_b3[0])
    assert round(float(start), 2) == 1.40
    assert levels.min() <= start <= levels.max()
    # the levels come from the SSR over the plotted grid: its extremes, by hand
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    W, B = np.meshgrid(np.linspace(x0, x1, 30), np.linspace(y0, y1, 30))
    z = ssr_at(values_of(net), x, y, w3=W, b3=B)
    assert levels.min() == pytest.approx(z.min(), rel=1e-9) and levels.max() == pytest.approx(z.max(), rel=1e-9)
    assert ax.get_xlabel() == "w3" and ax.get_ylabel() == "b3"
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())


def test_landscape_without_history_and_restores_parameters_after_an_error():
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    before = net.state_dict()
    fig = plot.landscape(net, x, y, ["w1", "b1"], grid=10)
    assert any(isinstance(c, QuadContourSet) for c in fig.axes[0].collections)
    assert not fig.axes[0].lines  # no path without a history
    calls = []

    def failing_loss(predicted, observed):
        calls.append(1)
        if len(calls) == 15:  # in the middle of the second row of the grid
            raise RuntimeError("boom")
        return cr.losses.ssr(predicted, observed)

    with pytest.raises(RuntimeError, match="boom"):
        plot.landscape(net, x, y, ["w1", "b1"], loss=failing_loss, grid=10)
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())


# ---- training_curve -----------------------------------------------------------------------------------------


def test_training_curve_is_log_when_the_loss_spans_decades(b3_history):
    fig = plot.training_curve(b3_history)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    [line] = ax.lines
    np.testing.assert_array_equal(line.get_ydata(), b3_history.loss)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, b3_history.n_iter + 1))
    # SSR from 20.42 (b3 = 0) down to about 1e-4: more than five decades
    assert b3_history.loss[0] / b3_history.loss[-1] > 1e5
    assert ax.get_yscale() == "log"


def test_training_curve_is_linear_when_the_loss_changes_little(w3_b3_history):
    loss = np.asarray(w3_b3_history.loss)
    assert loss.max() / loss.min() < 10
    assert plot.training_curve(w3_b3_history).axes[0].get_yscale() == "linear"


@pytest.mark.parametrize("losses, scale", [([1000.0, 50.0, 0.9], "log"), ([10.0, 5.0, 1.0], "linear")])
def test_training_curve_scale_from_the_span(losses, scale):
    h = History([("b3", ())], tol=0.001)
    h.loss = list(losses)
    assert plot.training_curve(h).axes[0].get_yscale() == scale


# ---- gradients ------------------------------------------------------------------------------------------------


def test_gradients_two_log_axes_one_line_per_parameter(w3_b3_history, b3_history):
    fig = plot.gradients(w3_b3_history)
    assert isinstance(fig, Figure)
    top, bottom = fig.axes
    assert top.get_yscale() == bottom.get_yscale() == "log"
    for ax, attr in ((top, "derivative"), (bottom, "step")):
        lines = {ln.get_label(): ln for ln in ax.lines if ln.get_label() in ("w3", "b3")}
        assert set(lines) == {"w3", "b3"}
        for name, line in lines.items():
            expected = np.abs([float(v) for v in getattr(w3_b3_history.params[name], attr)])
            np.testing.assert_allclose(line.get_ydata(), np.maximum(expected, 1e-300), rtol=1e-12)
    tol_line = [ln for ln in bottom.lines if ln.get_label().startswith("tol")]
    assert len(tol_line) == 1 and tol_line[0].get_ydata()[0] == 0.001
    # the lessons' first derivative on b3 at b3 = 0 is -15.66, its step 0.1 x 15.66 = 1.5655
    b3_top = plot.gradients(b3_history).axes[0].lines[0]
    assert round(b3_top.get_ydata()[0], 2) == 15.66
    b3_bottom = plot.gradients(b3_history).axes[1].lines[0]
    assert b3_bottom.get_ydata()[0] == pytest.approx(1.5655, abs=1e-4)


def test_gradients_of_matrix_parameters_show_norms():
    net = mlp([1, 3, 1], activation="softplus", seed=1)
    x, y = dosage()
    h = quiet_fit(net, x, y, max_iter=5)
    top, bottom = plot.gradients(h).axes
    assert [ln.get_label() for ln in top.lines] == [n for n, _ in net.named_parameters()]
    for line, trace in zip(top.lines, h.params.values()):
        norms = [np.sqrt(np.sum(np.asarray(g) ** 2)) for g in trace.derivative]
        np.testing.assert_allclose(line.get_ydata(), np.maximum(norms, 1e-300), rtol=1e-12)
        assert len(line.get_xdata()) == 5


# ---- bad parameter names ----------------------------------------------------------------------------------------


def test_bad_parameter_names_raise():
    net = DosageNetwork.from_lesson()
    x, y = dosage()
    with pytest.raises(ValueError, match="w9"):
        plot.loss_curve(net, x, y, "w9")
    with pytest.raises(ValueError, match="nope"):
        plot.landscape(net, x, y, ["w3", "nope"])
    with pytest.raises(ValueError, match="exactly two"):
        plot.landscape(net, x, y, ["w3"])
    with pytest.raises(ValueError, match="exactly two"):
        plot.landscape(net, x, y, ["w1", "w2", "w3"])
    m = mlp([1, 2, 1], seed=0)
    with pytest.raises(ValueError, match="one-element"):
        plot.loss_curve(m, x, y, "0.weight")  # a (1, 2) matrix cannot be one axis


# ---- save ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def squiggle_fig():
    return plot.squiggle(DosageNetwork.from_lesson(), *dosage())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_save_png_has_the_figure_size_times_110_dpi(tmp_path, squiggle_fig):
    path = tmp_path / "squiggle.png"
    assert plot.save(squiggle_fig, path) == path
    assert os.listdir(tmp_path) == ["squiggle.png"]  # nothing else left behind
    assert path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 6.4 x 4.4 inches at 110 dpi = 704 x 484 pixels
    assert imread(path).shape[:2] == (484, 704)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()


def test_save_png_of_the_gradients_figure(tmp_path, b3_history):
    path = tmp_path / "gradients.png"
    plot.save(plot.gradients(b3_history), str(path))  # a str works as well as a Path
    # 7.5 x 6.0 inches at 110 dpi = 825 x 660 pixels
    assert imread(path).shape[:2] == (660, 825)
    assert os.listdir(tmp_path) == ["gradients.png"]


def test_save_svg(tmp_path, squiggle_fig):
    path = tmp_path / "squiggle.svg"
    plot.save(squiggle_fig, path)
    text = path.read_text()
    assert "<svg" in text and text.rstrip().endswith("</svg>")
    assert path.stat().st_size > 10_000
    assert os.listdir(tmp_path) == ["squiggle.svg"]


@pytest.mark.parametrize("name", ["figure.pdf", "figure.jpg", "figure", "figure.png.txt"])
def test_save_rejects_other_extensions(tmp_path, squiggle_fig, name):
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plot.save(squiggle_fig, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_save_leaves_nothing_behind_when_savefig_fails(tmp_path, squiggle_fig, monkeypatch):
    def broken(f, **kwargs):
        f.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(squiggle_fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plot.save(squiggle_fig, tmp_path / "new.png")
    assert os.listdir(tmp_path) == []
    # an existing file is left exactly as it was
    old = tmp_path / "old.svg"
    old.write_text("previous picture")
    with pytest.raises(OSError, match="disk full"):
        plot.save(squiggle_fig, old)
    assert os.listdir(tmp_path) == ["old.svg"] and old.read_text() == "previous picture"


def test_save_overwrites_an_existing_file(tmp_path, squiggle_fig):
    path = tmp_path / "twice.png"
    path.write_bytes(b"old")
    plot.save(squiggle_fig, path)
    assert imread(path).shape[:2] == (484, 704)
    assert os.listdir(tmp_path) == ["twice.png"]


@pytest.mark.parametrize(
    ("sizes", "x_columns", "y_columns", "said"),
    [
        ([2, 3, 1], 2, 1, r"this model has 2 inputs and 1 output, x has shape \(10, 2\) and y \(10, 1\)$"),
        ([1, 3, 2], 1, 2, r"this model has 1 input and 2 outputs, x has shape \(10, 1\) and y \(10, 2\)$"),
        ([1, 3, 1], 2, 1, r"\(a curve against the data\); x has shape \(10, 2\) and y \(10, 1\)$"),
    ],
)
def test_squiggle_of_more_inputs_or_outputs_says_so_in_one_line(sizes, x_columns, y_columns, said):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, x_columns)), rng.normal(size=(10, y_columns))
    net = cr.nn.mlp(sizes, seed=0)
    with pytest.raises(ValueError, match=r"^squiggle: needs one input and one output.*" + said):
        plot.squiggle(net, x, y)
    if sizes[0] == x_columns:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cr.ConvergenceWarning)  # two iterations, on purpose
            history = cr.fit(net, x, y, loss="mse", max_iter=2, tol=0.0, monitor=False)
        with pytest.raises(ValueError, match=r"^squiggle: needs one input and one output.*" + said):
            animation.squiggle(net, x, y, history)


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        ("1e308,1e308,1\n0,0,0\n", r"the predicted y at row 1 is 1\.\d+e\+308"),  # was an OverflowError traceback
        ("0,0,1e308\n1,1,-1e308\n", r"the target y at row 1 is 1e\+308"),
    ],
)
def test_the_plot_command_on_overflowing_data_says_so_in_one_line(tmp_path, capsys, rows, said):
    from chainrule.cli import main

    (tmp_path / "train.csv").write_text("a,b,y\n0,0,0\n0.5,1,1\n1,0,0\n1,1,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(tmp_path / "train.csv"), "--target", "y", "--out", str(tmp_path / "m.json")]) == 0
    (tmp_path / "big.csv").write_text("a,b,y\n" + rows)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks either
        code = main(["plot", str(tmp_path / "m.json"), str(tmp_path / "big.csv"), "--out", str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    assert code == 2 and re.fullmatch(
        r"chainrule: error: plot: " + said + r"; only finite values within ±1e\+300 can be drawn\n", err
    )
    assert not (tmp_path / "f.png").exists()


def test_loss_curve_path_of_a_one_element_parameter_of_shape_1():
    """A Sequential's output bias has shape (1,): its descent path is drawn like b3's."""
    net = cr.nn.mlp([1, 3, 1], seed=0)
    x = np.linspace(0, 1, 10)[:, None]
    y = np.sin(3 * x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)  # five iterations on purpose
        history = cr.fit(net, x, y, loss="mse", params=["2.bias"], max_iter=5, tol=0)
    fig = plot.loss_curve(net, x, y, "2.bias", history=history, loss="mse")
    path = history.params["2.bias"]
    expected = [float(v[0]) for v in path.value] + [float(path.new_value[-1][0])]  # 5 old values and the last new
    drawn = [line for line in fig.axes[0].lines if len(line.get_xdata()) == len(expected)]
    assert drawn and np.allclose(drawn[0].get_xdata(), expected)
