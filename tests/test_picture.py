"""chainrule.picture: every node's gradient, the layout, the SVG and JSON, the backward pass step by step.

Gradients are checked against backward() at the leaves and against central
differences at every node (the node's value nudged, the ops after it re-run with
their own forwards); the lessons' numbers are recomputed here in NumPy from
MISSION.md's formulas.
"""

import json
import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

import chainrule as cr
from chainrule import animation, picture, plot
from chainrule.nn import DosageNetwork, mlp

matplotlib.use("Agg")

LESSON = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30, "b3": 0.0}
DOSAGE, OBSERVED = np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0])


def lessons_graph(grads=True, b3=0.0):
    net = DosageNetwork.from_lesson(b3=b3)
    x, y = cr.data.dosage()
    return net, cr.graph(cr.losses.ssr(net(x), y), grads=grads)


def small_mlp_graph():
    rng = np.random.default_rng(3)
    net = mlp([3, 4, 2], activation="tanh", seed=1)
    x, labels = rng.normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
    return net, cr.graph(cr.losses.cross_entropy(net(x), labels), grads=True)


def many_ops_graph():
    """Ops of every family: where, concatenate, getitem with repeats, max, logsumexp, stack, softmax."""
    x = cr.tensor([[1.0, -2.0, 3.0], [0.5, 0.2, -1.0]], requires_grad=True, name="x")
    w = cr.tensor([0.3, -0.1, 2.0], requires_grad=True, name="w")
    c = cr.concatenate([cr.where(x.data > 0, x * w, -x), x], axis=0)
    m = c[[0, 1, 1], :].max(axis=1) + cr.logsumexp(c, axis=0).sum() + cr.stack([w, w]).sum()
    loss = (m.softmax().log() ** 2).mean()
    return SimpleNamespace(parameters=lambda: [x, w]), cr.graph(loss, grads=True)


def tiny_graph():
    """One op on one parameter: the narrowest picture, where the header and the legend must still fit."""
    w = cr.tensor(3.0, requires_grad=True, name="w")
    return None, cr.graph(w * 2, grads=True)


def digits_graph():
    """The issue's large model: a 64-128-64-10 mlp on a digits-sized batch."""
    rng = np.random.default_rng(0)
    net = mlp([64, 128, 64, 10], seed=0)
    return net, cr.graph(cr.losses.cross_entropy(net(rng.random((40, 64))), rng.integers(0, 10, 40)), grads=True)


def replay(g, changed):
    """The output with some nodes' values replaced: every later op re-run with its own forward."""
    values = {}
    for n in g.nodes:
        if n.index in changed:
            values[n.index] = changed[n.index]
        elif n.op is None:
            values[n.index] = n.value
        else:
            args = [values[p.index] if p is not None else a for p, a in zip(n.inputs, n.args)]
            values[n.index] = n.op.fwd(*args, **n.kwargs)
    return float(values[g.output.index])


def central_differences(g, n, eps=1e-6):
    grad = np.zeros(n.value.shape)
    for j in np.ndindex(n.value.shape):
        up, down = n.value.astype(float).copy(), n.value.astype(float).copy()
        up[j] += eps
        down[j] -= eps
        grad[j] = (replay(g, {n.index: up}) - replay(g, {n.index: down})) / (2 * eps)
    return grad


@pytest.mark.parametrize("make", [lessons_graph, small_mlp_graph, many_ops_graph], ids=["lessons", "mlp", "ops"])
def test_every_nodes_gradient_agrees_with_backward_and_central_differences(make):
    net, g = make()
    for n in g.nodes:
        # float64, eps = 1e-6: truncation ~ eps^2 and rounding ~ 1e-16 / eps, far below the tolerance
        np.testing.assert_allclose(n.grad, central_differences(g, n), rtol=1e-6, atol=1e-7, err_msg=repr(n))
    g.output.tensor.backward(retain_graph=True)
    for p in net.parameters():
        np.testing.assert_allclose(g.node(p).grad, p.grad, rtol=1e-12, atol=1e-15)


def test_grads_are_a_read_of_the_graph_and_leave_the_tensors_alone():
    net, g = lessons_graph()
    assert all(p.grad is None for p in net.parameters())
    # b3 is added to each data point: its per-point parts are dSSR/dPredicted_i and sum to its gradient
    b3 = g.node(net.b3)
    assert b3.grad_points.shape == (3,) and b3.grad_points.sum() == pytest.approx(float(b3.grad))
    assert not lessons_graph(grads=False)[1].grads_computed


def lesson_numbers():
    """MISSION.md, by hand: Predicted_i = w3 softplus(Input_i w1 + b1) + w4 softplus(Input_i w2 + b2) + b3."""
    p, softplus = LESSON, lambda v: np.log(1 + np.exp(v))
    predicted = p["w3"] * softplus(DOSAGE * p["w1"] + p["b1"]) + p["w4"] * softplus(DOSAGE * p["w2"] + p["b2"])
    d_predicted = -2 * (OBSERVED - predicted)  # dSSR/dPredicted_i = -2 (Observed_i - Predicted_i)
    return predicted, d_predicted  # about -2.604, -1.609, -2.615 and -5.207, -5.218, -5.230 (sum -15.655)


@pytest.mark.parametrize("level", picture.LEVELS)
def test_the_picture_shows_the_lessons_numbers(level):
    _, d_predicted = lesson_numbers()
    text = " ".join(t.text for t in picture.scene(lessons_graph()[1], level).labels)
    per_point = ", ".join(f"{v:.4g}" for v in d_predicted)  # dSSR/dPredicted at each point
    assert f"{d_predicted.sum():.4g}" == "-15.66"  # dSSR/db3 at b3 = 0 (the lesson: -15.7)
    if level == "neuron":
        assert f"dSSR/dPredicted_i {per_point}" in text and f"dSSR/db3 = -15.66 = sum of {per_point}" in text
    else:  # the box of Predicted, and the box of b3 (a leaf: its parts are one per point)
        assert f"grad  {per_point}; sum -15.66" in text and f"grad  -15.66 = sum of {per_point}" in text


def test_before_the_gradients_the_picture_says_so_instead_of_zeros():
    _, g = lessons_graph(grads=False)
    for level in picture.LEVELS:
        s = picture.scene(g, level)
        assert picture.NOT_COMPUTED in [t.text for t in s.labels]
        assert not any("grad" in t.text or "dSSR/" in t.text for t in s.labels if t.text != picture.NOT_COMPUTED)
    with pytest.raises(ValueError, match="gradients not computed"):
        g.backward_steps()


@pytest.mark.parametrize("level", picture.LEVELS)
def test_the_same_graph_draws_the_same_svg(level):
    first = lessons_graph()[1]
    assert first.svg(level) == first.svg(level) == lessons_graph()[1].svg(level)
    _, a = digits_graph()
    assert a.svg() == digits_graph()[1].svg()


@pytest.mark.parametrize("level", picture.LEVELS)
def test_the_svg_is_well_formed_and_fetches_nothing(level):
    text = lessons_graph()[1].svg(level)
    root = ET.fromstring(text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    rest = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not any(s in rest for s in ("http", "href", "url(", "<script", "<image", "@import"))
    assert lessons_graph()[1]._repr_svg_() == lessons_graph()[1].svg()


@pytest.mark.parametrize("level", picture.LEVELS)
def test_to_json_round_trips_and_matches_the_picture(level):
    _, g = lessons_graph()
    data = g.to_json(level)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["schema"] == "chainrule-graph/1" and data["grads_computed"] and data["loss"] == "SSR"
    ids = {n["id"] for n in data["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in data["edges"])
    kinds = {n["label"]: n["kind"] for n in data["nodes"]}
    assert kinds["SSR"] == "loss" and kinds["Input"] == "data"
    if level == "ops":
        assert len(data["nodes"]) == len(g) and kinds["b3"] == "parameter"
        b3 = next(n for n in data["nodes"] if n["label"] == "b3")
        assert b3["gradient"]["values"] == pytest.approx(lesson_numbers()[1].sum())
        assert b3["gradient_points"]["values"] == pytest.approx(list(lesson_numbers()[1]))
    else:
        w1 = next(e for e in data["edges"] if e["target"] == "top")["params"][0]
        assert w1["name"] == "w1" and w1["value"]["values"] == 3.34


def test_numbers_that_are_not_finite_become_null_in_json():
    x = cr.tensor([0.0, 1.0], requires_grad=True, name="x")
    with np.errstate(divide="ignore"):
        g = cr.graph(cr.log(x).sum(), grads=True)  # log 0 = -inf, d/dx = 1/x = inf at 0
        data = g.to_json()
    node = next(n for n in data["nodes"] if n["label"] == "x")
    assert node["gradient"]["values"] == [None, 1.0] and node["shape"] == [2]
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_large_parameters_are_grouped_in_their_layer_by_shape_and_norm():
    net, g = digits_graph()
    data = g.to_json()
    layer = next(n for n in data["nodes"] if n["label"] == "linear0")
    assert [p["name"] for p in layer["params"]] == ["0.weight", "0.bias"]
    assert layer["params"][0]["value"]["values"] is None  # 8192 elements: only shape and norm
    assert layer["params"][0]["value"]["norm"] == pytest.approx(np.linalg.norm(net.layers[0].weight.data))
    assert any(line.startswith("0.weight shape (128, 64), norm ") for line in layer["lines"])
    assert len(data["nodes"]) == 8  # Input, 3 linear, 2 relu, Target, the loss


def in_box(label, box):
    x0, y0, x1, y1 = label.extent()
    return box.x <= x0 and x1 <= box.x + box.w and box.y <= y0 and y1 <= box.y + box.h


@pytest.mark.parametrize(
    ("make", "level", "step"),
    [
        (lessons_graph, "ops", None),
        (lessons_graph, "neuron", None),
        (lessons_graph, "ops", 5),
        (many_ops_graph, "ops", None),
        (tiny_graph, "ops", None),
        (tiny_graph, "ops", 1),
        (digits_graph, "ops", None),
        (digits_graph, "ops", 4),
    ],
)
def test_no_two_texts_overlap_and_each_stays_in_the_picture(make, level, step):
    s = picture.scene(make()[1], level, step)
    assert picture.overlaps(s) == []
    for t in s.labels:
        x0, y0, x1, y1 = t.extent()
        assert 0 <= x0 and x1 <= s.width and 0 <= y0 and y1 <= s.height, t.text
    for b in s.view.boxes:  # each box's lines inside it (the first line is its title)
        first = next(t for t in s.labels if t.text == b.lines[0].text)
        assert in_box(first, s.boxes[b.id]), b.lines[0].text


@pytest.mark.parametrize(("make", "level"), [(lessons_graph, "neuron"), (lessons_graph, "ops"), (digits_graph, "ops")])
def test_matplotlib_draws_the_text_where_the_layout_put_it_without_overlaps(make, level):
    g = make()[1]
    fig = plot.graph(g, level=level)
    renderer = FigureCanvasAgg(fig).get_renderer()
    texts = fig.axes[0].texts
    boxes = [t.get_window_extent(renderer) for t in texts]  # as drawn, in pixels
    assert len(boxes) == len(picture.scene(g, level).labels)
    pairs = [(i, j) for i in range(len(boxes)) for j in range(i)]
    clashes = [(texts[i].get_text(), texts[j].get_text()) for i, j in pairs if boxes[i].overlaps(boxes[j])]
    assert clashes == []


def test_the_backward_pass_node_by_node():
    net, g = lessons_graph()
    steps = g.backward_steps()
    assert [s.node for s in steps] == [n for n in reversed(g.nodes)]  # every node gets a gradient here
    seen = set()
    for s in steps:
        assert all(i.user.index in seen for i in s.incoming)  # its users' gradients came first
        seen.add(s.node.index)
        if s.incoming:
            np.testing.assert_allclose(sum(i.product for i in s.incoming), s.node.grad, rtol=1e-12)
    b3 = next(s for s in steps if s.node.name == "b3")
    np.testing.assert_allclose(b3.incoming[0].upstream, lesson_numbers()[1], rtol=1e-12)
    np.testing.assert_allclose(b3.incoming[0].local, [1, 1, 1])  # d(a + b)/db = 1 at each point
    table = steps.table()
    assert "-15.66" in table and "(start)" in table and table.count("\n") > len(g)


def test_backward_frames_are_figures_of_one_size():
    _, g = lessons_graph()
    first, last = plot.draw_backward_step(g, 0), plot.draw_backward_step(g, len(g.backward_steps()) - 1)
    assert isinstance(first, Figure) and tuple(first.get_size_inches()) == tuple(last.get_size_inches())
    texts = [t.get_text() for t in last.axes[0].texts]
    assert any(t.startswith(f"step {len(g)} of {len(g)}: dSSR/dInput") for t in texts)
    frames = plot.backward_frames(g)
    assert isinstance(next(frames), Figure)
    last = len(g) - 1  # 22 nodes, steps 0 .. 21
    for k in (len(g), -1, 1.5, "1", True):
        with pytest.raises(ValueError, match=rf"^draw_backward_step: k must be an integer in \[0, {last}\], got"):
            plot.draw_backward_step(g, k)
    with pytest.raises(ValueError, match=r"^backward step: k must be an integer in \[0, 21\], got 22$"):
        plot.graph(g, step=22)


def test_animation_takes_the_generator_of_backward_frames_as_the_readme_says(tmp_path):
    w = cr.tensor(3.0, requires_grad=True, name="w")
    g = cr.graph((2 * w - 1) ** 2, grads=True)
    movie = animation.Animation(plot.backward_frames(g), dpi=20)
    assert len(movie) == 4 and len(list(movie.images())) == 4 == len(list(movie.images()))  # kept: drawn twice
    with pytest.raises(TypeError, match=r"^Animation: draw must be .* got a list of \['int'\]$"):
        animation.Animation(iter([1, 2]))


def test_plot_graph_takes_a_tensor_and_saves_png_and_svg(tmp_path):
    net = DosageNetwork.from_lesson(b3=0.0)
    loss = cr.losses.ssr(net(cr.data.dosage()[0]), cr.data.dosage()[1])
    fig = plot.graph(loss)
    assert any("-15.66" in t.get_text() for t in fig.axes[0].texts)
    for name in ("g.png", "g.svg"):
        plot.save(fig, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000
    g = cr.graph(loss, grads=True)
    plot.save_graph(g, tmp_path / "own.svg", level="neuron")
    assert (tmp_path / "own.svg").read_text() == g.svg("neuron")  # our SVG, not matplotlib's
    with pytest.raises(ValueError, match="must end in .png or .svg"):
        plot.save_graph(g, tmp_path / "g.pdf")
    assert net.b3.grad is None


def test_bad_levels_and_graphs_say_what_was_wrong():
    _, g = small_mlp_graph()
    with pytest.raises(ValueError, match="level='neuron' draws the lessons' DosageNetwork"):
        g.svg("neuron")
    with pytest.raises(ValueError, match="level must be one of"):
        g.svg("neurons")
    with pytest.raises(TypeError, match="plot.graph: expected a graph"):
        plot.graph("SSR")
    with pytest.raises(ValueError, match="one-element output"):
        cr.graph(cr.tensor([1.0, 2.0], requires_grad=True) * 2, grads=True)


def chain_graph(n):
    """The reviewer's graph of 2n ops: t = a; t = t + a * i, for i < n (a picture ~200 n points wide)."""
    a = cr.tensor(1.0, requires_grad=True, name="a")
    t = a
    for i in range(n):
        t = t + a * float(i)
    return cr.graph(t, grads=True)


def test_a_picture_beyond_the_size_limit_is_refused_in_one_line_before_any_canvas():
    g = chain_graph(100)  # 201 boxes: about 19,800 x 8,900 points, 1.6 GB as a 110-dpi PNG
    for draw in (g.svg, lambda: plot.graph(g), lambda: plot.save_graph(g, "never.png")):
        with pytest.raises(ValueError, match=r"^picture: the graph's picture would be \d+ x \d+ points \(201 boxes\)"):
            draw()
    s = picture.scene(chain_graph(5), "ops")  # a small one is drawn as before
    assert s.width <= picture.MAX_SIDE and s.width * s.height <= picture.MAX_AREA
    assert len(g.to_json()["nodes"]) == 201  # data has no canvas: not limited
    with pytest.raises(ValueError, match="^picture: the graph's picture would be") as caught:
        animation.backward(g)
    assert "\n" not in str(caught.value)


def _crossings(fig, dpi):
    """Texts that cross the border of a box (a rectangle patch), as matplotlib renders them at ``dpi``."""
    fig.set_dpi(dpi)
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    rects = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, FancyBboxPatch)]
    found = []
    for t in ax.texts:
        e = t.get_window_extent(renderer)
        for r in rects:
            meets = r.x0 < e.x1 and e.x0 < r.x1 and r.y0 < e.y1 and e.y0 < r.y1
            inside = r.x0 <= e.x0 and e.x1 <= r.x1 and r.y0 <= e.y0 and e.y1 <= r.y1
            if meets and not inside:
                found.append(t.get_text())
    return found


@pytest.mark.parametrize("dpi", [50, 110])  # the demo's GIF and plot.save's PNG
@pytest.mark.parametrize(("make", "level", "step"), [(lessons_graph, "neuron", None), (lessons_graph, "ops", 3)])
def test_rendered_text_stays_inside_its_box_at_the_dpi_of_gifs_and_pngs(make, level, step, dpi):
    # at 50 dpi Agg rounds each 11-point character to 5 pixels, 0.654 of the size, not the font's 0.602
    assert _crossings(plot.graph(make()[1], level, step), dpi) == []


def test_neuron_level_steps_name_nodes_by_what_the_picture_draws():
    g = lessons_graph()[1]
    captions = [t.text for k in range(len(g.backward_steps())) for t in picture.scene(g, "neuron", k).labels]
    assert not [c for c in captions if re.search(r"%\d", c)]  # no box is called %12 in this picture
    assert any(c.startswith("step 10 of 22: dSSR/d(y1×w3) = dSSR/d(y1×w3 + y2×w4) x") for c in captions)
    assert any("dSSR/d(Observed - Predicted) = dSSR/d((Observed - Predicted)^2)" in c for c in captions)
    ops = [t.text for t in picture.scene(g, "ops", 9).labels]  # the ops picture draws %12: it keeps the name
    assert any(c.startswith("step 10 of 22: dSSR/d%12 = dSSR/d%15 x d%15/d%12") for c in ops)
