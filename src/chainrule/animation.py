"""Animations of gradient descent: the squiggle moving, the point stepping down the loss, the path.

Any run can be animated from its :class:`~chainrule.history.History`, which
keeps every trained parameter's old value, derivative and step per iteration:
:func:`squiggle`, :func:`loss_step` and :func:`landscape` pick the frames
(:func:`frame_iterations`: at most ``frames`` of them, denser where the
parameters move fast, always the first and the last iteration), draw each with
the pictures of :mod:`chainrule.plot` and title it with the iteration, the loss
and the step size. Each returns an :class:`Animation`, which draws its frames
only when written: ``.save("run.gif")`` (Pillow), ``.save("run.mp4")`` (the
ffmpeg carried by the ``imageio-ffmpeg`` wheel) or ``.save("run.html")`` (a
player of its own, offline: no script, icon or font is fetched). In a notebook
an Animation shows itself as that player.

Any function ``draw(k) -> Figure`` (or Figures: a list, a generator) becomes an animation:
``Animation(draw, n)`` or :func:`write` (the backward pass node by node, say).

This module sits beside :mod:`chainrule.plot` and imports it; ``plot`` does not
import this module.

Example::

    >>> import os, tempfile
    >>> import chainrule as cr
    >>> from chainrule import animation
    >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
    >>> x, y = cr.data.dosage()
    >>> h = cr.fit(net, x, y, params=["b3"])        # the lesson: 10 iterations
    >>> frame_iterations(h, frames=4)
    [1, 2, 5, 10]
    >>> movie = animation.loss_step(net, x, y, "b3", h, frames=4, dpi=30)
    >>> len(movie), movie.figure(0).axes[0].get_title()
    (4, 'iteration 1 of 10: SSR 20.42, step size -1.566')
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = movie.save(os.path.join(folder.name, "b3.gif"))
    >>> folder.cleanup()
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import picture, plot
from .checks import Integer, Number, check
from .history import History
from .modelfile import atomic_open
from .nn import Module

__all__ = [
    "Animation",
    "FORMATS",
    "MAX_DPI",
    "MAX_FRAMES",
    "MAX_PIXELS",
    "backward",
    "frame_iterations",
    "landscape",
    "loss_step",
    "squiggle",
    "write",
]

FORMATS = (".gif", ".mp4", ".html")
MAX_FRAMES = 2000  # more frames than this is a mistake (a movie of hours), refused before drawing any
MAX_DPI = 300  # frames are for screens: 300 dpi is print quality
MAX_PIXELS = 25_000_000  # pixels a frame: 100 MB of RGBA, refused before the canvas is made
_FRAMES, _DPI, _FPS = Integer(low=1), Integer(low=10, high=MAX_DPI), Number(low=0.1, high=60, high_open=False)
_PLAYERS = itertools.count(1)  # numbers the HTML players made in this process
_HOLD = 1.5  # seconds the last frame stays on screen before a GIF loops


class Animation:
    """``n`` frames drawn by ``draw(k)`` (k = 0 .. n - 1), each a matplotlib Figure, drawn when needed.

    ``draw`` may also be Figures: a list, or any iterable such as the generator
    :func:`chainrule.plot.backward_frames` (read once and kept; ``n`` is their number).
    ``fps`` frames per second, ``dpi`` the resolution the frames are rendered at
    (at most ``MAX_DPI``; a frame of more than ``MAX_PIXELS`` pixels is refused before
    it is rendered).
    ``draw`` may return a new Figure each time or the same one changed; later
    frames keep frame 0's axes positions (nothing jumps, and the layout is
    computed once).

    Example::

        >>> from matplotlib.figure import Figure
        >>> from chainrule.animation import Animation
        >>> def draw(k):
        ...     fig = Figure(figsize=(2, 2))
        ...     fig.add_subplot().plot([0, 1], [0, k])
        ...     return fig
        >>> movie = Animation(draw, 3, fps=2, dpi=20)
        >>> len(movie), [a.shape for a in movie.images()]
        (3, [(40, 40, 3), (40, 40, 3), (40, 40, 3)])
        >>> "https://" in movie.to_html()
        False
    """

    def __init__(
        self, draw: Callable[[int], Figure] | Iterable[Figure], n: int | None = None, fps: float = 8, dpi: int = 72
    ) -> None:
        if callable(draw):
            if n is None:
                raise TypeError("Animation: give n, the number of frames, with a frame function draw(k)")
            self._draw = draw
        elif isinstance(draw, Iterable) and not isinstance(draw, (str, bytes, Figure)):
            figures = list(draw)  # a generator too (plot.backward_frames): kept, to draw more than once
            if not all(isinstance(f, Figure) for f in figures):
                kinds = sorted({type(f).__name__ for f in figures if not isinstance(f, Figure)})
                raise TypeError(
                    f"Animation: draw must be a function draw(k) -> Figure or Figures, got a list of {kinds}"
                )
            n = len(figures) if n is None else n
            if n > len(figures):
                raise ValueError(f"Animation: n must be at most the {len(figures)} figures given, got {n}")
            self._draw = figures.__getitem__
        else:
            raise TypeError(
                f"Animation: draw must be a function draw(k) -> Figure or a list of Figures, got {draw!r:.60}"
            )
        self.n = _frames("Animation", "n", n)
        self.fps = check("Animation", "fps", fps, _FPS)
        self.dpi = check("Animation", "dpi", dpi, _DPI)

    def __len__(self) -> int:
        return self.n

    def figure(self, k: int) -> Figure:
        """Frame ``k`` as a Figure."""
        if not 0 <= check("Animation.figure", "k", k, Integer(low=0)) < self.n:
            raise ValueError(f"Animation.figure: k must be below the {self.n} frames, got {k}")
        fig = self._draw(k)
        if not isinstance(fig, Figure):
            raise TypeError(f"Animation: draw({k}) must return a matplotlib Figure, got {type(fig).__name__}")
        return fig

    def images(self) -> Iterator[np.ndarray]:
        """Each frame rendered: an (height, width, 3) uint8 RGB array; every frame the size of the first."""
        size, layout = None, None
        for k in range(self.n):
            fig = self.figure(k)
            if layout is None:
                image = _render(fig, self.dpi)
                layout = [ax.get_position() for ax in fig.axes]
            else:
                image = _render(_keep_layout(fig, layout), self.dpi)
            if size is not None and image.shape != size:
                raise ValueError(
                    f"Animation: frame {k} is {image.shape[1]}x{image.shape[0]} pixels but frame 0 is "
                    f"{size[1]}x{size[0]}: draw every frame at the same figure size"
                )
            size = image.shape
            yield image

    def save(self, path: str | os.PathLike) -> str | os.PathLike:
        """Write the animation to ``path``: .gif, .mp4 or .html by its suffix, atomically. Returns ``path``."""
        ext = _format(path)
        with atomic_open(path, "wb") as f:
            {".gif": _write_gif, ".mp4": _write_mp4, ".html": _write_html}[ext](self, f)
        return path

    def to_html(self) -> str:
        """A self-contained player (frames as inline PNGs, a few lines of script): play, pause, step, slider."""
        return _player([_png(image) for image in self.images()], self.fps)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return f"Animation(n={self.n}, fps={self.fps:g}, dpi={self.dpi})"


def write(
    draw: Callable[[int], Figure] | Iterable[Figure],
    path: str | os.PathLike,
    n: int | None = None,
    fps: float = 8,
    dpi: int = 72,
) -> str | os.PathLike:
    """Write the frames ``draw(0) .. draw(n - 1)`` (or a list of Figures) to ``path`` (.gif, .mp4, .html).

    The suffix is checked before any frame is drawn; the file appears whole or not at all.

    Example::

        >>> import os, tempfile
        >>> from matplotlib.figure import Figure
        >>> from chainrule import animation
        >>> def draw(k):
        ...     fig = Figure(figsize=(2, 1.5))
        ...     fig.add_subplot().bar(["a", "b"], [k, 3 - k])
        ...     return fig
        >>> folder = tempfile.TemporaryDirectory()
        >>> animation.write(draw, os.path.join(folder.name, "bars.gif"), n=4, dpi=20)[-8:]
        'bars.gif'
        >>> animation.write(draw, "bars.png", n=4)
        Traceback (most recent call last):
        ...
        ValueError: animation: the file must end in .gif, .mp4, .html, got 'bars.png'
        >>> folder.cleanup()
    """
    _format(path)  # before drawing anything
    return Animation(draw, n, fps=fps, dpi=dpi).save(path)


def _frames(owner, name, n):
    if check(owner, name, n, _FRAMES) > MAX_FRAMES:
        raise ValueError(f"{owner}: {name} must be at most MAX_FRAMES = {MAX_FRAMES}, got {n}")
    return n


def _format(path):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"animation: the file must end in {', '.join(FORMATS)}, got {os.fspath(path)!r}")
    return ext


# ---- rendering and the three formats ----------------------------------------------------------


def _pixels(fig, dpi):
    """Refuse a frame of more than MAX_PIXELS pixels at ``dpi``, before a canvas is allocated."""
    width, height = fig.get_size_inches() * dpi
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"Animation: a frame would be {width:.0f} x {height:.0f} pixels at dpi {dpi}, above MAX_PIXELS = "
            f"{MAX_PIXELS:,}; use a smaller dpi or figure"
        )


def _render(fig, dpi):
    _pixels(fig, dpi)
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    return np.array(canvas.buffer_rgba())[..., :3]


def _keep_layout(fig, layout):
    """Frame 0's axes positions for a later frame (same axes): nothing jumps, and no layout is recomputed."""
    if fig.get_layout_engine() is not None and len(fig.axes) == len(layout):
        fig.set_layout_engine("none")
        for ax, position in zip(fig.axes, layout):
            ax.set_position(position)
    return fig


def _durations(n, fps):
    """Milliseconds per frame; the last one held a moment so the loop's restart is seen."""
    each = round(1000 / fps)
    return [each] * (n - 1) + [max(each, round(1000 * _HOLD))]


def _write_gif(movie, f):
    from PIL import Image

    # NOTE: one palette per frame (256 colours are plenty for line drawings); Pillow merges a frame
    # identical to the one before it into one longer frame.
    frames = [Image.fromarray(image).quantize(colors=256) for image in movie.images()]
    frames[0].save(
        f, format="GIF", save_all=True, append_images=frames[1:], duration=_durations(len(frames), movie.fps), loop=0
    )


def _write_mp4(movie, f):
    try:
        import imageio_ffmpeg  # the `demo` extra: a wheel carrying its own ffmpeg binary
    except ImportError:
        raise ImportError("animation: writing .mp4 needs imageio-ffmpeg (pip install 'chainrule[demo]')") from None

    images = movie.images()
    first = _even(next(images))
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "frames.mp4")  # ffmpeg seeks back into an MP4: a real file, then copied
        writer = imageio_ffmpeg.write_frames(
            out,
            (first.shape[1], first.shape[0]),
            fps=movie.fps,
            macro_block_size=2,
            ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart"],
        )
        try:
            writer.send(None)
            writer.send(first)
            for image in images:
                writer.send(_even(image))
        finally:
            writer.close()  # ffmpeg finishes (or, after an error, is stopped) before the folder goes
        with open(out, "rb") as done:
            f.write(done.read())


def _even(image):
    """Pad with white to even width and height (the yuv420p pixels of an MP4 come in 2x2 blocks)."""
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
    return np.ascontiguousarray(image)


def _write_html(movie, f):
    page = "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>chainrule animation</title></head>\n"
    f.write((page + f"<body>\n{movie.to_html()}\n</body></html>\n").encode("utf-8"))


def _png(image):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


_PLAYER = """<div id="{id}" style="display:inline-block;font-family:sans-serif">
<img src="{first}" alt="frame 1 of {n}" style="max-width:100%;display:block">
<div style="margin-top:4px">
<button data-do="prev" title="previous frame">&#9664;&#9646;</button>
<button data-do="play" title="play or pause">&#9654; play</button>
<button data-do="next" title="next frame">&#9646;&#9654;</button>
<input type="range" min="0" max="{last}" value="0" style="vertical-align:middle;width:50%">
<span>1 / {n}</span>
</div>
<script>
(function () {{
  var frames = {frames}, root = document.getElementById("{id}"), k = 0, timer = null;
  var img = root.querySelector("img"), slider = root.querySelector("input"), label = root.querySelector("span");
  var play = root.querySelector("[data-do=play]");
  function show(j) {{
    k = (j + frames.length) % frames.length;
    img.src = frames[k]; slider.value = k; label.textContent = (k + 1) + " / " + frames.length;
  }}
  function stop() {{ clearInterval(timer); timer = null; play.innerHTML = "&#9654; play"; }}
  play.onclick = function () {{
    if (timer) {{ stop(); return; }}
    play.innerHTML = "&#10074;&#10074; pause";
    timer = setInterval(function () {{ show(k + 1); }}, {interval});
  }};
  root.querySelector("[data-do=prev]").onclick = function () {{ stop(); show(k - 1); }};
  root.querySelector("[data-do=next]").onclick = function () {{ stop(); show(k + 1); }};
  slider.oninput = function () {{ stop(); show(parseInt(slider.value, 10)); }};
}})();
</script>
</div>"""


def _player(pngs, fps):
    uris = ["data:image/png;base64," + base64.b64encode(p).decode("ascii") for p in pngs]
    # The frames' digest, and a count: the same movie shown twice in a notebook gets two players.
    digest = hashlib.sha1(b"".join(pngs)).hexdigest()[:12]
    return _PLAYER.format(
        id=f"chainrule-player-{digest}-{next(_PLAYERS)}",
        first=html.escape(uris[0]),
        n=len(uris),
        last=len(uris) - 1,
        frames=json.dumps(uris),
        interval=round(1000 / fps),
    )


# ---- frames from a History --------------------------------------------------------------------


def frame_iterations(history: History, frames: int = 60) -> list[int]:
    """At most ``frames`` iterations (1-based) of ``history`` to draw, always the first and the last.

    Spaced evenly in a mix, a third each, of the iteration, its logarithm and
    the distance the parameters have travelled: the first steps (usually the
    largest) get frames of their own, so does a sudden move late in the run,
    and a long slow tail is still seen moving.

    Example::

        >>> import numpy as np
        >>> from chainrule.history import History
        >>> h = History([("b", ())], tol=0.0)
        >>> for i in range(1, 101):           # steps halving: the first ones carry the distance
        ...     h.record(i, 1.0, 0.5**i, [np.float64(0)], [np.float64(0)], [np.float64(0.5**i)])
        >>> frame_iterations(h, frames=5)
        [1, 3, 8, 44, 100]
    """
    _frames("frame_iterations", "frames", frames)
    n = history.n_iter
    if n < 1:
        raise ValueError("frame_iterations: the history has no iterations to animate (train first)")
    m = min(frames, n)
    if m == n:
        return list(range(1, n + 1))
    if m == 1:
        return [n]
    moved = np.sqrt(sum(np.square(np.nan_to_num(t.step_norm, nan=0.0, posinf=0.0)) for t in history.params.values()))
    where = np.concatenate([[0.0], np.cumsum(moved)[:-1]])  # distance travelled at the start of each iteration
    travelled = where / where[-1] if where[-1] > 0 else np.zeros(n)
    share = (travelled + np.arange(n) / (n - 1) + np.log(np.arange(1, n + 1)) / np.log(n)) / 3
    wanted = np.searchsorted(share, np.linspace(0, 1, m) - 1e-12)
    picks: list[int] = []
    for j, w in enumerate(wanted.tolist()):  # distinct and increasing, ending at the last iteration
        low = picks[-1] + 1 if picks else 0
        picks.append(min(max(w, low), n - m + j))
    return [p + 1 for p in picks]


def _traces(owner, model, history):
    """The History's traces of ``model``'s parameters, checked: some iterations, full values, known names."""
    if not isinstance(history, History):
        raise TypeError(f"{owner}: history must be the History fit returned, got {type(history).__name__}")
    if history.n_iter < 1:
        raise ValueError(f"{owner}: the history has no iterations to animate (train first)")
    named = dict(model.named_parameters())
    for name, trace in history.params.items():
        if name not in named:
            raise ValueError(f"{owner}: the history trained {name!r}, which the model lacks; it has {list(named)}")
        if not trace.full:
            raise ValueError(f"{owner}: '{name}' was too large to keep its values per iteration (only norms)")
    return named


@contextlib.contextmanager
def _at(model, history, i):
    """The model with its trained parameters at their values of iteration ``i``; restored afterwards."""
    named = dict(model.named_parameters())
    keep = {name: named[name].data.copy() for name in history.params}
    try:
        for name, trace in history.params.items():
            named[name].data[...] = trace.value[i - 1]
        yield model
    finally:
        for name, value in keep.items():
            named[name].data[...] = value


def _title(history, i, loss, name=None):
    """'iteration i of n: SSR ..., step size ...': the step of ``name``, or the largest of any parameter."""
    if name is not None:
        what, step = "step size", float(np.ravel(history.params[name].step[i - 1])[0])
    else:
        steps = np.concatenate([np.ravel(t.step[i - 1]) for t in history.params.values()])
        what = "largest step size" if steps.size > 1 else "step size"
        step = float(steps[np.argmax(np.abs(steps))])
    return f"iteration {i} of {history.n_iter}: {_loss_name(loss)} {history.loss[i - 1]:.4g}, {what} {step:.4g}"


def _loss_name(loss):
    return loss.upper() if isinstance(loss, str) else getattr(loss, "__name__", "loss")


def _moving_limits(figures):
    """Each figure's first axes' lines' y data, and the union of their y limits: one frame for the movie."""
    data, lows, highs = [], [], []
    for fig in figures:
        ax = fig.axes[0]
        data.append([line.get_ydata() for line in ax.lines])
        low, high = ax.get_ylim()
        lows.append(low)
        highs.append(high)
    return data, (min(lows), max(highs))


def backward(g: Any, level: str = "ops", fps: float = 1.5, dpi: int = 50) -> Animation:
    """The backward pass lighting up the graph node by node, output first: one frame per step of
    ``g.backward_steps()`` (:func:`chainrule.plot.draw_backward_step`), each with its incoming gradient
    x local derivative = gradient written underneath. ``g`` is ``cr.graph(loss, grads=True)`` (or the
    loss itself). The figure is drawn once; each frame changes only its colours and texts.

    Example::

        >>> import chainrule as cr
        >>> from chainrule import animation
        >>> w = cr.tensor(3.0, requires_grad=True, name="w")
        >>> movie = animation.backward(cr.graph((2 * w - 1) ** 2, grads=True), dpi=20)
        >>> len(movie)            # pow, sub, mul and the leaf w: d/dw = 2 (2w - 1) x 2 = 20
        4
    """
    g = plot._graph_of(g)
    fig = plot.draw_backward_step(g, 0, level)  # drawn once (a picture too large is refused here)
    scenes = [picture.scene(g, level, k) for k in range(len(g.backward_steps()))]
    return _Backward(fig, scenes, lambda k: plot.draw_backward_step(g, k, level, fig=fig), fps=fps, dpi=dpi)


def squiggle(
    model: Module,
    x: Any,
    y: Any,
    history: History,
    loss: Any = "ssr",
    frames: int = 60,
    fps: float = 8,
    dpi: int = 72,
) -> Animation:
    """The squiggle moving as gradient descent trains: the curves of :func:`chainrule.plot.squiggle`
    at the parameters of each chosen iteration, on axes that stay still (``loss`` names the
    History's loss in the titles)."""
    _traces("animation.squiggle", model, history)
    its = frame_iterations(history, _frames("animation.squiggle", "frames", frames))

    def drawn(i):
        with _at(model, history, i):
            return plot.squiggle(model, x, y)

    curves, ylim = _moving_limits(drawn(i) for i in its)
    fig = drawn(its[0])
    ax = fig.axes[0]
    ax.set_ylim(ylim)
    lines = list(ax.lines)

    def update(k):
        for line, values in zip(lines, curves[k]):
            line.set_ydata(values)
        ax.set_title(_title(history, its[k], loss))

    return _Moving(fig, [*lines, *ax.collections, ax.title], update, len(its), fps=fps, dpi=dpi)  # the data on top


def loss_step(
    model: Module,
    x: Any,
    y: Any,
    param: Any,
    history: History,
    loss: Any = "ssr",
    frames: int = 60,
    fps: float = 8,
    dpi: int = 72,
) -> Animation:
    """The point stepping down the loss against one parameter (:func:`chainrule.plot.loss_curve`):
    at each chosen iteration the point, its tangent (slope = the derivative), the step to the next
    value and the path so far. The other parameters are held at that iteration's values (the curve
    moves when they are trained too)."""
    named = _traces("animation.loss_step", model, history)
    name = getattr(param, "name", param)
    if name not in history.params:
        raise ValueError(f"animation.loss_step: {name!r} was not trained in this history: {list(history.params)}")
    if named[name].size != 1:
        raise ValueError(f"animation.loss_step: '{name}' has shape {named[name].shape}; needs a one-element parameter")
    its = frame_iterations(history, _frames("animation.loss_step", "frames", frames))
    trace = history.params[name]
    path = [float(np.ravel(v)[0]) for v in [*trace.value, trace.new_value[-1]]]  # a (1,) bias too
    pad = max(1.0, 0.15 * (max(path) - min(path)))
    values = np.linspace(min(path) - pad, max(path) + pad, 200)

    def drawn(i):
        with _at(model, history, i):
            return plot.loss_curve(model, x, y, name, values=values, loss=loss)

    curves, ylim = _moving_limits(drawn(i) for i in its)
    fig = drawn(its[0])
    ax = fig.axes[0]
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ylim)
    moving, show = _step_artists(ax, history, trace, path, values[-1] - values[0])

    def update(k):
        ax.lines[0].set_ydata(curves[k][0])
        show(its[k])
        ax.set_title(_title(history, its[k], loss, name))

    return _Moving(fig, [ax.lines[0], *moving, ax.title], update, len(its), fps=fps, dpi=dpi)


def _step_artists(ax, history, trace, path, width):
    """The path so far, the point, its tangent and the step (new value = old value - step size), and a
    function moving them to iteration i. The legend is drawn once: its labels do not change."""
    (done,) = ax.plot([], [], color=plot.DATA, marker="o", markersize=3, linewidth=0.8, label="steps so far")
    (tangent,) = ax.plot([], [], color=plot.BLUE, label="tangent: its slope is the derivative")
    (point,) = ax.plot([], [], "o", color="red", markersize=7, zorder=4, label=f"{trace.name} now")
    arrow = ax.annotate("", xy=(0, 0), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": plot.GREEN, "lw": 2})
    ax.plot([], [], color=plot.GREEN, linewidth=2, label="the step: new value = old - step size")
    value = ax.annotate("", xy=(0, 0), xytext=(8, -16), textcoords="offset points", fontsize="small")
    ax.legend(fontsize="small", loc="upper right")
    half = 0.12 * width

    def show(i):
        old, here = path[i - 1], history.loss[i - 1]
        slope, step = (float(np.ravel(a)[0]) for a in (trace.derivative[i - 1], trace.step[i - 1]))
        done.set_data(path[:i], history.loss[:i])
        tangent.set_data([old - half, old + half], [here - slope * half, here + slope * half])
        point.set_data([old], [here])
        arrow.xy, arrow.xyann = (old - step, here), (old, here)
        value.xy = (old, here)
        value.set_text(f"{trace.name} = {old:.4g}, slope {slope:.3g}")

    return [done, tangent, point, arrow, value], show


def landscape(
    model: Module,
    x: Any,
    y: Any,
    params: Any,
    history: History,
    loss: Any = "ssr",
    frames: int = 60,
    fps: float = 8,
    dpi: int = 72,
    grid: int = 40,
) -> Animation:
    """The path over the loss landscape of two parameters (:func:`chainrule.plot.landscape`), drawn
    up to each chosen iteration. The contours are computed once, with the other parameters at the
    model's current values."""
    _traces("animation.landscape", model, history)
    if len(params) != 2:
        raise ValueError(f"animation.landscape: needs exactly two parameters, got {list(params)}")
    names = [getattr(p, "name", p) for p in params]
    missing = [n for n in names if n not in history.params]
    if missing:
        raise ValueError(f"animation.landscape: {missing} not trained in this history; trained: {list(history.params)}")
    its = frame_iterations(history, _frames("animation.landscape", "frames", frames))
    fig = plot.landscape(model, x, y, names, history=history, loss=loss, grid=grid)
    ax = fig.axes[0]
    for line in list(ax.lines):  # keep the contours; the path is drawn frame by frame
        line.remove()
    p, q = ([float(np.ravel(v)[0]) for v in history.params[n].value] for n in names)
    (line,) = ax.plot([], [], color="white", marker=".", markersize=3, linewidth=1.2, label="descent path")
    ax.plot(p[0], q[0], "o", color=plot.PINK, label="start")
    (now,) = ax.plot([], [], "*", color="red", markersize=12, label="now")
    ax.legend(fontsize="small", loc="upper right")

    def update(k):
        i = its[k]
        line.set_data(p[:i], q[:i])
        now.set_data([p[i - 1]], [q[i - 1]])
        ax.set_title(_title(history, i, loss), fontsize="medium")

    return _Moving(fig, [line, now, ax.title], update, len(its), fps=fps, dpi=dpi)


class _Moving(Animation):
    """One figure whose few ``moving`` artists ``update(k)`` changes for frame k. Rendered by blitting:
    the figure is drawn once without them (ticks, labels, legend, contours: the costly text and
    fills), and each frame draws only the moving artists over that background."""

    def __init__(self, fig, moving, update, n, fps, dpi):
        self._fig, self._update = fig, update
        self._moving = sorted(moving, key=lambda artist: artist.get_zorder())  # drawn in the usual order
        super().__init__(self._frame, n, fps=fps, dpi=dpi)

    def _frame(self, k):
        self._update(k)
        return self._fig

    def images(self) -> Iterator[np.ndarray]:
        _pixels(self._fig, self.dpi)
        fig, canvas = self._fig, FigureCanvasAgg(self._fig)
        fig.set_dpi(self.dpi)
        self._update(0)
        for artist in self._moving:
            artist.set_animated(True)  # left out of a full draw
        try:
            canvas.draw()
            fig.set_layout_engine("none")  # the layout of that draw holds for every frame
            background = canvas.copy_from_bbox(fig.bbox)
            for k in range(self.n):
                self._update(k)
                canvas.restore_region(background)
                for artist in self._moving:
                    fig.draw_artist(artist)
                yield np.array(canvas.buffer_rgba())[..., :3]
        finally:
            for artist in self._moving:
                artist.set_animated(False)


class _Backward(Animation):
    """The frames of the backward pass, rendered cheaply: text is what costs (Agg lays out and renders
    every glyph), and most of it is the same in every frame. The texts that never change are rendered
    once on a transparent layer, the gradients once on another (each shown from its step on); a frame
    draws its boxes, edges and caption and lays those layers over them. Equal to a full drawing of
    the frame up to rounding (tested)."""

    def __init__(self, fig, scenes, draw, fps, dpi):
        self._fig = fig
        labels = list(zip(*(s.labels for s in scenes)))  # each text through the frames
        self._static = [all(t == ts[0] for t in ts) and not ts[0].hidden for ts in labels]
        self._toggled = [
            not still
            and any(not t.hidden for t in ts)
            and all((t.text, t.color) == (ts[0].text, ts[0].color) for t in ts)
            for ts, still in zip(labels, self._static)
        ]
        self._shown = [[not t.hidden for t in s.labels] for s in scenes]
        super().__init__(draw, len(scenes), fps=fps, dpi=dpi)

    def images(self) -> Iterator[np.ndarray]:
        fig, texts = self._fig, self._fig.axes[0].texts
        _pixels(fig, self.dpi)
        canvas = FigureCanvasAgg(fig)
        fig.set_dpi(self.dpi)
        self._draw(self.n - 1)  # every gradient shown
        static = self._layer(canvas, self._static)
        inked = static[..., 3] > 0  # the static text's pixels: the only ones it changes
        static = static[inked]
        toggled = self._layer(canvas, self._toggled)
        renderer = canvas.get_renderer()
        boxes = [
            _pixel_box(t.get_window_extent(renderer), toggled.shape) if on else None
            for t, on in zip(texts, self._toggled)
        ]
        moving = [not (a or b) for a, b in zip(self._static, self._toggled)]
        for k in range(self.n):
            self._draw(k)
            for text, move in zip(texts, moving):
                text.set_visible(move and text.get_visible())
            canvas.draw()
            image = np.array(canvas.buffer_rgba())[..., :3].astype(np.float32)
            image[inked] = _over(image[inked], static)
            for box, shown in zip(boxes, self._shown[k]):
                if box is not None and shown:
                    image[box] = _over(image[box], toggled[box])
            yield np.rint(image).astype(np.uint8)

    def _layer(self, canvas, chosen):
        """The texts ``chosen`` alone, on a transparent background: RGBA, float."""
        fig, ax = self._fig, self._fig.axes[0]
        keep = [(t, t.get_visible()) for t in ax.texts]
        for p in ax.patches:
            p.set_visible(False)
        fig.patch.set_visible(False)
        for t, pick in zip(ax.texts, chosen):
            t.set_visible(pick)
        try:
            canvas.draw()
            return np.array(canvas.buffer_rgba()).astype(np.float32)
        finally:
            for p in ax.patches:
                p.set_visible(True)
            fig.patch.set_visible(True)
            for t, visible in keep:
                t.set_visible(visible)


def _pixel_box(extent, shape):
    """A text's window extent (pixels, y up) as array slices (rows down), one pixel of margin."""
    height = shape[0]
    rows = slice(max(0, int(height - extent.y1) - 1), min(height, int(np.ceil(height - extent.y0)) + 1))
    cols = slice(max(0, int(extent.x0) - 1), min(shape[1], int(np.ceil(extent.x1)) + 1))
    return rows, cols


def _over(image, layer):
    """``layer`` (RGBA, straight alpha) laid over ``image`` (RGB)."""
    alpha = layer[..., 3:] / 255.0
    return image * (1 - alpha) + layer[..., :3] * alpha
