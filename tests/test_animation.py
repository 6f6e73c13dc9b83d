"""Animations: frames from a History, GIF / MP4 / HTML written atomically, the offline player."""

import json
import re
import shutil
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

import chainrule as cr
from chainrule import animation, plot
from chainrule.animation import Animation, frame_iterations
from chainrule.history import History
from chainrule.optim import GradientDescent

X, Y = cr.data.dosage()


def _numbered(k):
    """A small frame that differs from every other one (GIF writers merge identical frames)."""
    fig = Figure(figsize=(1.6, 1.2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, k])
    ax.set_title(str(k))
    return fig


@pytest.fixture(scope="module")
def b3_run():
    net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
    history = cr.fit(net, X, Y, params=["b3"], optimizer=GradientDescent(lr=0.1), tol=0.001)
    return net, history


def _halving(n):
    """A History whose step at iteration i is 0.5**i: the distance travelled is nearly all early."""
    h = History([("b", ())], tol=0.0)
    for i in range(1, n + 1):
        h.record(i, 1.0, 0.5**i, [np.float64(0)], [np.float64(0)], [np.float64(0.5**i)])
    return h


# ---- choosing frames --------------------------------------------------------------------------


def test_frames_are_the_number_asked_first_and_last_included():
    h = _halving(1000)
    for frames in (2, 7, 60, 120):
        its = frame_iterations(h, frames)
        assert len(its) == frames and its[0] == 1 and its[-1] == 1000
        assert all(a < b for a, b in zip(its, its[1:]))


def test_frames_by_hand():
    # share(i) = (D(i) + (i - 1) / 99 + ln(i) / ln(100)) / 3 with D(i) the distance before iteration i over
    # the whole (1 - 2**-99): D = 0, .5, .75, .875, ..., 1 - 2**-(i - 1). Targets 0, .25, .5, .75, 1:
    #   .25: i = 2 gives (.5 + .0101 + .1505) / 3 = .2202, i = 3 gives (.75 + .0202 + .2386) / 3 = .3363
    #   .5:  i = 7 gives (.9844 + .0606 + .4225) / 3 = .4892, i = 8 gives (.9922 + .0707 + .4515) / 3 = .5048
    #   .75: i = 43 gives (1 + .4242 + .8167) / 3 = .7470, i = 44 gives (1 + .4343 + .8217) / 3 = .7520
    assert frame_iterations(_halving(100), 5) == [1, 3, 8, 44, 100]


def test_short_runs_get_every_iteration_and_one_frame_is_the_last():
    assert frame_iterations(_halving(5), 60) == [1, 2, 3, 4, 5]
    assert frame_iterations(_halving(5), 1) == [5]


def test_early_fast_steps_get_their_own_frames(b3_run):
    _, history = b3_run  # the lesson: 10 iterations, steps 1.57, 0.63, 0.25, ... (MISSION.md)
    its = frame_iterations(history, 5)
    assert its[:2] == [1, 2] and its[-1] == 10 and len(its) == 5


# ---- what the frames show ---------------------------------------------------------------------


def test_loss_step_titles_carry_the_lessons_numbers(b3_run):
    net, history = b3_run
    movie = animation.loss_step(net, X, Y, "b3", history, frames=10, dpi=20)
    # The lesson at b3 = 0: SSR 20.42, dSSR/db3 = -15.66, step size -15.66 x 0.1 = -1.566.
    assert movie.figure(0).axes[0].get_title() == "iteration 1 of 10: SSR 20.42, step size -1.566"
    assert movie.figure(9).axes[0].get_title().startswith("iteration 10 of 10: SSR ")


def test_squiggle_frame_is_the_network_at_that_iteration(b3_run):
    net, history = b3_run
    before = net.state_dict()
    fig = animation.squiggle(net, X, Y, history, frames=3, dpi=20).figure(1)
    i = frame_iterations(history, 3)[1]
    b3 = float(history.params["b3"].value[i - 1])
    green = next(line for line in fig.axes[0].lines if line.get_label().startswith("green"))
    xs = green.get_xdata()
    # The lessons' network in NumPy by hand, the optimized values but b3 (MISSION.md).
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    expected = -1.22 * softplus(3.34 * xs - 1.43) - 2.30 * softplus(-3.53 * xs + 0.57) + b3
    np.testing.assert_allclose(green.get_ydata(), expected, rtol=1e-12, atol=1e-12)
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())  # the model is restored


def test_landscape_path_grows_frame_by_frame():
    pair = cr.nn.DosageNetwork.from_lesson(w3=0.36, w4=0.63)
    history = cr.fit(pair, X, Y, params=["w3", "w4"])
    movie = animation.landscape(pair, X, Y, ("w3", "w4"), history, frames=4, dpi=20, grid=8)
    its = frame_iterations(history, 4)
    for k, i in enumerate(its):
        path = next(line for line in movie.figure(k).axes[0].lines if line.get_label() == "descent path")
        assert len(path.get_xdata()) == i
        assert path.get_xdata()[0] == 0.36 and path.get_ydata()[0] == 0.63


# ---- the files --------------------------------------------------------------------------------


def test_gif_has_the_frames_asked_for(tmp_path):
    path = tmp_path / "run.gif"
    animation.write(_numbered, path, n=5, fps=4, dpi=30)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5


def test_a_history_gif_has_its_frames(tmp_path, b3_run):
    net, history = b3_run
    animation.loss_step(net, X, Y, "b3", history, frames=4, dpi=20).save(tmp_path / "b3.gif")
    with Image.open(tmp_path / "b3.gif") as gif:
        assert gif.n_frames == 4


def test_the_backward_pass_movie_has_a_frame_per_node(tmp_path):
    w = cr.tensor(3.0, requires_grad=True, name="w")
    g = cr.graph((2 * w - 1) ** 2, grads=True)  # nodes: w, 2w, 2w - 1, its square
    path = animation.backward(g, dpi=20).save(tmp_path / "backward.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 4
    # The last step reaches the leaf: d/dw = 2 (2w - 1) x 2 = 2 x 5 x 2 = 20 at w = 3.
    assert g.node(w).grad == 20.0 and "20" in str(g.backward_steps())


def test_the_backward_movie_frames_equal_full_drawings_of_each_step():
    net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
    g = cr.graph(cr.losses.ssr(net(X), Y), grads=True)
    movie = animation.backward(g, level="neuron", dpi=50)  # one figure, text rendered once in layers
    frames = list(movie.images())
    assert len(frames) == 22
    for k in (0, 5, 21):  # a new figure of step k, rendered whole
        fig = plot.draw_backward_step(g, k, "neuron")
        fig.set_dpi(50)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        full = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
        assert full.shape == frames[k].shape
        assert np.abs(full - frames[k]).max() <= 2  # the layers' blending rounds by a level or two of 255
    assert not np.array_equal(frames[0], frames[5])


def test_mp4_reads_back_with_the_frames_asked_for(tmp_path):
    path = tmp_path / "run.mp4"
    Animation([_numbered(k) for k in range(6)], fps=5, dpi=25).save(path)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = list(reader)
    assert len(frames) == 6
    assert meta["size"] == (40, 30)  # 1.6 x 1.2 inches at 25 dpi


def test_player_is_offline_and_holds_every_frame(tmp_path):
    path = tmp_path / "run.html"
    Animation(_numbered, 4, dpi=20).save(path)
    page = path.read_text()
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""\s(src|href)=["'](?!data:)""", page)  # every src is an inline image
    frames = json.loads(re.search(r"var frames = (\[.*?\])", page).group(1))
    assert len(frames) == 4 and all(f.startswith("data:image/png;base64,") for f in frames)
    assert frames[0] != frames[1]
    assert page.count("<script") == 1 and "<script src" not in page
    for control in ('data-do="play"', 'data-do="prev"', 'data-do="next"', 'type="range"'):
        assert control in page
    again = Animation(_numbered, 4, dpi=20)._repr_html_()  # the notebook's display: the same player ...
    assert json.loads(re.search(r"var frames = (\[.*?\])", again).group(1)) == frames
    ids = re.findall(r'id="(chainrule-player-[\w-]+)"', page + again)
    assert len(ids) == 2 and ids[0] != ids[1]  # ... with an id of its own, so two on one page work apart


def test_a_failing_frame_leaves_nothing_and_keeps_the_old_file(tmp_path):
    def broken(k):
        if k == 2:
            raise RuntimeError("frame 2 failed")
        return _numbered(k)

    for suffix in (".gif", ".mp4", ".html"):
        with pytest.raises(RuntimeError, match="frame 2"):
            animation.write(broken, tmp_path / f"new{suffix}", n=4, dpi=20)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.gif").write_bytes(b"the old one")
    with pytest.raises(RuntimeError):
        animation.write(broken, tmp_path / "old.gif", n=4, dpi=20)
    assert [p.name for p in tmp_path.iterdir()] == ["old.gif"] and (tmp_path / "old.gif").read_bytes() == b"the old one"


# ---- mistakes ---------------------------------------------------------------------------------


def test_unknown_suffix_is_refused_before_any_frame_is_drawn(tmp_path):
    drawn = []
    with pytest.raises(ValueError, match=r"must end in \.gif, \.mp4, \.html, got '.*run\.avi'"):
        animation.write(lambda k: drawn.append(k) or _numbered(k), tmp_path / "run.avi", n=3)
    assert drawn == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((_numbered, 0), ValueError, "Animation: n must be an integer >= 1, got 0"),
        ((_numbered, 10**6), ValueError, "Animation: n must be at most MAX_FRAMES = 2000, got 1000000"),
        ((_numbered,), TypeError, "Animation: give n"),
        (("frames", 3), TypeError, "Animation: draw must be a function"),
        (([_numbered(0)], 2), ValueError, "at most the 1 figures given"),
    ],
)
def test_bad_animation_arguments(args, error, message):
    with pytest.raises(error, match=re.escape(message)):
        Animation(*args)


def test_bad_fps_and_frames():
    with pytest.raises(ValueError, match=re.escape("Animation: fps must be a number in [0.1, 60], got 0")):
        Animation(_numbered, 2, fps=0)
    with pytest.raises(TypeError, match="draw\\(1\\) must return a matplotlib Figure, got str"):
        list(Animation(lambda k: _numbered(k) if k == 0 else "no", 2, dpi=20).images())
    sizes = lambda k: Figure(figsize=(1 + k, 1))  # noqa: E731
    with pytest.raises(ValueError, match="frame 1 is 40x20 pixels but frame 0 is 20x20"):
        list(Animation(sizes, 2, dpi=20).images())


def test_bad_history_arguments(b3_run):
    net, history = b3_run
    with pytest.raises(ValueError, match=r"'w3' was not trained in this history: \['b3'\]"):
        animation.loss_step(net, X, Y, "w3", history)
    with pytest.raises(ValueError, match="needs exactly two parameters"):
        animation.landscape(net, X, Y, ("b3",), history)
    with pytest.raises(TypeError, match="history must be the History fit returned, got dict"):
        animation.squiggle(net, X, Y, {})
    with pytest.raises(ValueError, match="no iterations to animate"):
        animation.squiggle(net, X, Y, History([("b3", ())], tol=0.001))
    with pytest.raises(ValueError, match="frames must be an integer >= 1, got 0"):
        animation.squiggle(net, X, Y, history, frames=0)
    other = cr.nn.mlp([1, 2, 1])
    with pytest.raises(ValueError, match="the history trained 'b3', which the model lacks"):
        animation.squiggle(other, X, Y, history)


# A stand-in for the browser's few DOM pieces the player touches, to run its script under Node.js.
PLAYER_CHECK = """
const parts = {};
for (const q of ["img", "input", "span", "[data-do=play]", "[data-do=prev]", "[data-do=next]"]) parts[q] = {value: "0"};
global.document = {getElementById: (id) => (id === ID ? {querySelector: (q) => parts[q]} : null)};
const timers = [];
global.setInterval = (f) => timers.push(f);
global.clearInterval = (t) => { if (t) timers[t - 1] = null; };
SCRIPT
const seen = [];
const look = () => seen.push(
  [Number(parts.input.value), parts.span.textContent, parts.img.src === FRAMES[parts.input.value]]);
parts["[data-do=next]"].onclick(); look();
parts["[data-do=prev]"].onclick(); parts["[data-do=prev]"].onclick(); look();
parts["[data-do=play]"].onclick(); timers[0](); look();
parts["[data-do=play]"].onclick(); seen.push(timers[0] === null);
parts.input.value = "1"; parts.input.oninput(); look();
console.log(JSON.stringify(seen));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the player's script")
def test_the_players_buttons_and_slider_step_through_the_frames(tmp_path):
    page = Animation(_numbered, 3, dpi=10).to_html()
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    frames = re.search(r"var frames = (\[.*?\])", page).group(1)
    player_id = re.search(r'id="(chainrule-player-[\w-]+)"', page).group(1)
    check = PLAYER_CHECK.replace("SCRIPT", script).replace("ID", json.dumps(player_id)).replace("FRAMES", frames)
    (tmp_path / "check.js").write_text(check)
    done = subprocess.run(["node", str(tmp_path / "check.js")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # next: frame 2; prev twice: back past the first to the last; play and one tick: wraps to the first;
    # pause stops the timer; the slider shows the frame it points at.
    assert json.loads(done.stdout) == [
        [1, "2 / 3", True],
        [2, "3 / 3", True],
        [0, "1 / 3", True],
        True,
        [1, "2 / 3", True],
    ]


def test_loss_step_of_a_one_element_bias_in_a_sequential():
    net = cr.nn.mlp([1, 2, 1], activation="softplus", seed=0)
    with pytest.warns(cr.ConvergenceWarning):  # five iterations, on purpose
        history = cr.fit(net, X, Y, params=["2.bias"], max_iter=5, tol=0.0, monitor=False)
    fig = animation.loss_step(net, X, Y, "2.bias", history, frames=2, dpi=20).figure(1)
    point = next(line for line in fig.axes[0].lines if line.get_label() == "2.bias now")
    # the last iteration's old value and the loss there (the History's record)
    assert point.get_xdata()[0] == history.params["2.bias"].value[-1][0]
    assert point.get_ydata()[0] == history.loss[-1]


def test_blitted_frames_equal_a_full_drawing_of_the_same_frame(b3_run):
    # The History movies draw the still parts once and only the moving artists per frame; a full draw of
    # each frame's figure must give the same pixels (the landscape's start marker may sit under the path).
    net, history = b3_run
    pair = cr.nn.DosageNetwork.from_lesson(w3=0.36, w4=0.63)
    pair_history = cr.fit(pair, X, Y, params=["w3", "w4"])
    movies = [
        animation.squiggle(net, X, Y, history, frames=3, dpi=30),
        animation.loss_step(net, X, Y, "b3", history, frames=3, dpi=30),
        animation.landscape(pair, X, Y, ("w3", "w4"), pair_history, frames=3, dpi=30, grid=8),
    ]
    for movie in movies:
        for k, image in enumerate(list(movie.images())):
            canvas = movie.figure(k).canvas
            canvas.draw()
            full = np.array(canvas.buffer_rgba())[..., :3]
            assert full.shape == image.shape
            assert (np.abs(full.astype(int) - image).max(axis=2) > 0).mean() < 1e-3


def test_dpi_and_frame_size_have_upper_limits_checked_before_rendering():
    with pytest.raises(ValueError, match=r"^Animation: dpi must be an integer in \[10, 300\], got 500$"):
        Animation(_numbered, 2, dpi=500)
    huge = Animation(lambda k: Figure(figsize=(200, 200)), 2, dpi=300)  # 60,000 x 60,000 pixels a frame
    with pytest.raises(ValueError, match=r"^Animation: a frame would be 60000 x 60000 pixels at dpi 300"):
        next(huge.images())
