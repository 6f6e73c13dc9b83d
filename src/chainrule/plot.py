"""Pictures of backpropagation with matplotlib: the squiggle, loss curves, landscapes, gradients.

Every function returns a matplotlib ``Figure`` made without pyplot (so it works
headless and leaves the user's pyplot state alone); :func:`save` writes it as
PNG or SVG, atomically.

Example::

    >>> import chainrule as cr
    >>> from chainrule import plot
    >>> net = cr.nn.DosageNetwork.from_lesson()
    >>> x, y = cr.data.dosage()
    >>> fig = plot.squiggle(net, x, y)
    >>> [line.get_label() for line in fig.axes[0].lines]
    ['blue curve: w3 x softplus(x w1 + b1)', 'orange curve: w4 x softplus(x w2 + b2)', 'green squiggle (sum + b3)']
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, PathPatch, Polygon
from matplotlib.path import Path as MplPath

from . import picture
from .checks import Integer, check
from .history import History
from .losses import get_loss
from .modelfile import atomic_open
from .nn import DosageNetwork, Linear, Module, Sequential
from .tensor import Graph, Tensor, no_grad, tensor

BLUE, ORANGE, GREEN, PINK, DATA = "#1f77b4", "#ff7f0e", "#2ca02c", "#e377c2", "black"


def _figure(width=6.4, height=4.4):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, path: str | os.PathLike) -> str | os.PathLike:
    """Write ``fig`` to ``path`` (.png or .svg), through a temporary file so no half-written file remains."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in (".png", ".svg"):
        raise ValueError(f"save: the file must end in .png or .svg, got {str(path)!r}")
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=ext[1:], dpi=110)
    return path


def _predict(model, xs):
    with no_grad():
        return np.asarray(model(tensor(xs[:, None])).data).reshape(len(xs), -1)


def _contributions(model, xs):
    """Each hidden node's output scaled by its output weight, and the bias, for one-hidden-layer nets."""
    with no_grad():
        if isinstance(model, DosageNetwork):
            c = model.curves(tensor(xs))
            return (
                [
                    (c["blue"].data, BLUE, "blue curve: w3 x softplus(x w1 + b1)"),
                    (c["orange"].data, ORANGE, "orange curve: w4 x softplus(x w2 + b2)"),
                ],
                model.b3.item(),
                "green squiggle (sum + b3)",
            )
        layers = model.layers if isinstance(model, Sequential) else []
        if (
            len(layers) == 3
            and isinstance(layers[0], Linear)
            and isinstance(layers[2], Linear)
            and layers[0].in_features == 1
            and layers[2].out_features == 1
        ):
            hidden = layers[1](layers[0](tensor(xs[:, None]))).data
            w = layers[2].weight.data[0]
            colors = [BLUE, ORANGE, "#9467bd", "#8c564b", "#17becf", "#bcbd22"]
            curves = [
                (hidden[:, j] * w[j], colors[j % len(colors)], f"hidden node {j + 1} x its output weight")
                for j in range(len(w))
            ]
            bias = layers[2].bias.item() if layers[2].bias is not None else 0.0
            return curves, bias, "green squiggle (sum + output bias)"
    return [], 0.0, "model output"


def squiggle(model: Module, x: Any, y: Any, title: str | None = None, grid: int = 200) -> Figure:
    """The lessons' figure: the data, each hidden node's curve scaled by its weight, and their sum.

    Works for :class:`~chainrule.nn.DosageNetwork` and any one-input,
    one-hidden-layer, one-output ``Sequential``; other one-input models show
    their output curve. A model or data of more inputs or outputs is refused
    (ValueError, naming the sizes).
    """
    x, y = _one_in_one_out(model, x, y)
    span = x.max() - x.min() or 1.0
    xs = np.linspace(x.min() - 0.05 * span, x.max() + 0.05 * span, grid)
    fig, ax = _figure()
    curves, bias, label = _contributions(model, xs)
    for values, color, name in curves:
        ax.plot(xs, values, color=color, linestyle="--", label=name)
    ax.plot(xs, _predict(model, xs)[:, 0], color=GREEN, linewidth=2.5, label=label)
    ax.scatter(x, y, color=DATA, zorder=3, s=40, label="observed data")
    ax.set_xlabel("input (dosage)")
    ax.set_ylabel("output (effectiveness)")
    ax.set_title(title or "The network's curves and the data")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    return fig


def _one_in_one_out(model, x, y):
    """x and y as flat arrays, or a ValueError naming the sizes: the squiggle is a curve of one input."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    sizes, wrong = _sizes(model), []
    count = lambda n, what: f"{n} {what}{'' if n == 1 else 's'}"  # noqa: E731
    if sizes is not None and sizes != (1, 1):
        wrong.append(f"this model has {count(sizes[0], 'input')} and {count(sizes[1], 'output')}")
    if x.ndim > 2 or y.ndim > 2 or any(a.ndim == 2 and a.shape[1] != 1 for a in (x, y)):
        wrong.append(f"x has shape {x.shape} and y {y.shape}")
    if wrong:
        raise ValueError(f"squiggle: needs one input and one output (a curve against the data); {', '.join(wrong)}")
    if x.size != y.size:
        raise ValueError(f"squiggle: x and y must have a value per data point, got {x.size} and {y.size}")
    return x.reshape(-1), y.reshape(-1)


def _sizes(model):
    """(inputs, outputs) of a DosageNetwork or a Sequential of Linear layers; None for other models."""
    if isinstance(model, DosageNetwork):
        return 1, 1
    linears = [m for m in model.layers if isinstance(m, Linear)] if isinstance(model, Sequential) else []
    return (linears[0].in_features, linears[-1].out_features) if linears else None


def _loss_at(model, x, y, loss, param, values):
    """The loss with ``param`` set to each of ``values`` in turn (the others held), then restored."""
    fn = get_loss(loss)
    keep = param.data.copy()
    xt, yt = tensor(np.asarray(x, float).reshape(len(x), -1)), np.asarray(y, float).reshape(len(y), -1)
    out = []
    try:
        with no_grad():
            for v in values:
                param.data[...] = v
                out.append(fn(model(xt), yt).item())
    finally:
        param.data[...] = keep
    return np.array(out)


def loss_curve(
    model: Module, x: Any, y: Any, param: Any, history: History | None = None, values: Any = None, loss: Any = "ssr"
) -> Figure:
    """The loss against one parameter, the others held (the lessons' pink curve), with the descent steps.

    ``param`` is a name or a scalar Parameter. ``values`` defaults to a range
    covering the current value and the path in ``history``.
    """
    param = _param(model, param)
    path = _path(history, param)
    if values is None:
        lo, hi = _span([param.item(), *path], pad=1.0)
        values = np.linspace(lo, hi, 200)
    fig, ax = _figure()
    ax.plot(values, _loss_at(model, x, y, loss, param, values), color=PINK, linewidth=2, label="loss")
    if path:
        steps = _loss_at(model, x, y, loss, param, path)
        ax.plot(path, steps, color=DATA, marker="o", markersize=4, linewidth=1, label="gradient descent steps")
        ax.annotate("start", (path[0], steps[0]), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel(param.name)
    ax.set_ylabel(_loss_name(loss))
    ax.set_title(f"{_loss_name(loss)} against {param.name}, the other parameters held")
    ax.legend(fontsize="small")
    return fig


def landscape(
    model: Module, x: Any, y: Any, params: Any, history: History | None = None, loss: Any = "ssr", grid: int = 60
) -> Figure:
    """Contours of the loss over two parameters, with the path gradient descent took."""
    if len(params) != 2:
        raise ValueError(f"landscape: needs exactly two parameters, got {list(params)}")
    p, q = (_param(model, name) for name in params)
    path_p, path_q = _path(history, p), _path(history, q)
    (p_lo, p_hi), (q_lo, q_hi) = _span([p.item(), *path_p], pad=1.0), _span([q.item(), *path_q], pad=1.0)
    ps, qs = np.linspace(p_lo, p_hi, grid), np.linspace(q_lo, q_hi, grid)
    keep = q.data.copy()
    try:
        z = np.empty((grid, grid))
        for j, v in enumerate(qs):
            q.data[...] = v
            z[j] = _loss_at(model, x, y, loss, p, ps)
    finally:
        q.data[...] = keep
    fig, ax = _figure(6.4, 5.2)
    levels = np.quantile(z, np.linspace(0, 1, 25)) if np.ptp(z) > 0 else 10
    contour = ax.contourf(ps, qs, z, levels=np.unique(levels) if np.ndim(levels) else levels, cmap="viridis")
    fig.colorbar(contour, ax=ax, label=_loss_name(loss))
    if path_p and path_q:
        ax.plot(path_p, path_q, color="white", marker=".", markersize=3, linewidth=1.2, label="descent path")
        ax.plot(path_p[0], path_q[0], "o", color=PINK, label="start")
        ax.plot(path_p[-1], path_q[-1], "*", color="red", markersize=12, label="end")
        ax.legend(fontsize="small")
    ax.set_xlabel(p.name)
    ax.set_ylabel(q.name)
    ax.set_title(f"{_loss_name(loss)} over {p.name} and {q.name}")
    return fig


def training_curve(history: History, title: str | None = None) -> Figure:
    """The loss per iteration; a log scale when it spans more than two decades."""
    loss = np.asarray(history.loss)
    fig, ax = _figure()
    ax.plot(np.arange(1, len(loss) + 1), loss, color=PINK, linewidth=2)
    positive = loss[loss > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title or f"Loss per iteration ({history.stop_reason})", fontsize="medium")
    return fig


def gradients(history: History) -> Figure:
    """Each parameter's derivative norm and step size per iteration (log scale): vanishing and exploding."""
    fig = Figure(figsize=(7.5, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    for name, trace in history.params.items():
        its = np.arange(1, len(trace.grad_norm) + 1)
        top.plot(its, np.maximum(trace.grad_norm, 1e-300), label=name)
        bottom.plot(its, np.maximum(trace.step_norm, 1e-300), label=name)
    if history.tol > 0:
        bottom.axhline(history.tol, color="gray", linestyle=":", label=f"tol = {history.tol:g}")
        bottom.legend(fontsize="small")
    for ax, what in ((top, "|derivative|"), (bottom, "|step size|")):
        ax.set_yscale("log")
        ax.set_ylabel(what)
    bottom.set_xlabel("iteration")
    top.set_title("Gradient health: derivatives and step sizes per parameter")
    top.legend(fontsize="small", ncol=2)
    return fig


def _param(model, param):
    named = dict(model.named_parameters())
    name = param if isinstance(param, str) else getattr(param, "name", None)
    if name not in named:
        raise ValueError(f"unknown parameter {name!r}; the model has {list(named)}")
    if named[name].size != 1:
        raise ValueError(f"'{name}' has shape {named[name].shape}; these plots need a one-element parameter")
    return named[name]


def _path(history, param):
    if history is None or param.name not in history.params:
        return []
    trace = history.params[param.name]
    # NOTE: a one-element parameter of shape (1,) (a Sequential's output bias) has values of that shape too
    values = [*trace.value, trace.new_value[-1]] if trace.value else []
    return [float(np.asarray(v).reshape(())) for v in values]


def _span(values, pad):
    lo, hi = min(values), max(values)
    extra = max(pad, 0.15 * (hi - lo))
    return lo - extra, hi + extra


def _loss_name(loss):
    return loss.upper() if isinstance(loss, str) else getattr(loss, "__name__", "loss")


# ---- the recorded graph, every node (chainrule.picture's scenes drawn with matplotlib) ----------


def graph(g: Any, level: str = "ops", step: int | None = None) -> Figure:
    """The picture of a graph with every node's value and gradient, as :meth:`GraphView.svg` draws it.

    ``g`` is a graph from ``cr.graph(loss, grads=True)`` (or without ``grads``: the
    picture then says the gradients are not computed) or a one-element tensor (its
    graph with gradients is taken). ``level`` is "ops" (one box per node) or
    "neuron" (the lessons' drawing of :class:`~chainrule.nn.DosageNetwork`);
    ``step`` k lights up the first k + 1 steps of the backward pass. The layout is
    :mod:`chainrule.picture`'s, in points: 1 point of the layout is 1/72 inch.

    Example::

        >>> import chainrule as cr
        >>> from chainrule import plot
        >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
        >>> x, y = cr.data.dosage()
        >>> fig = plot.graph(cr.losses.ssr(net(x), y), level="neuron")
        >>> any("-15.66" in t.get_text() for t in fig.axes[0].texts)     # dSSR/db3 at b3 = 0
        True
    """
    return _draw_scene(picture.scene(_graph_of(g), level, step))


def draw_backward_step(g: Any, k: int, level: str = "ops", fig: Figure | None = None) -> Figure:
    """Frame ``k`` of the backward pass: the nodes done so far lit up, node k's step written below.

    Takes ``(g, k)`` and returns a new Figure, so a writer of animations can call it
    once per frame, for k in ``range(len(g.backward_steps()))``; every frame has the
    same size and layout. The step's text is that of ``g.backward_steps()[k]``.
    ``fig``, a frame this function drew of the same graph and level, is changed
    into frame k instead (its colours and texts only: much cheaper than a new one).

    Example::

        >>> import chainrule as cr
        >>> from chainrule import plot
        >>> w = cr.tensor(3.0, requires_grad=True, name="w")
        >>> g = cr.graph((2 * w - 1) ** 2, grads=True)
        >>> fig = plot.draw_backward_step(g, 0)
        >>> plot.draw_backward_step(g, 3, fig=fig) is fig
        True
        >>> plot.draw_backward_step(g, 4)
        Traceback (most recent call last):
        ...
        ValueError: draw_backward_step: k must be an integer in [0, 3], got 4
    """
    g = _graph_of(g)
    last = len(picture.BackwardSteps.of(g)) - 1
    k = check("draw_backward_step", "k", k, Integer(low=0, high=last))
    s = picture.scene(g, level, step=k)
    return _draw_scene(s) if fig is None else _restyle(fig, s)


def backward_frames(g: Any, level: str = "ops") -> Iterator[Figure]:
    """Every frame of the backward pass of ``g``, in order (:func:`draw_backward_step` for k = 0, 1, ...).

    A generator of new Figures, which :class:`chainrule.animation.Animation` takes as it is;
    :func:`chainrule.animation.backward` makes the same movie cheaper (one figure, restyled).
    """
    g = _graph_of(g)
    for k in range(len(picture.BackwardSteps.of(g))):
        yield draw_backward_step(g, k, level)


def save_graph(g: Any, path: str | os.PathLike, level: str = "ops") -> str | os.PathLike:
    """Write the picture of ``g`` to ``path``: .svg as :meth:`GraphView.svg` writes it, .png through matplotlib.

    Written atomically, as :func:`save` does.
    """
    ext = os.path.splitext(str(path))[1].lower()
    if ext == ".svg":
        text = picture.svg(_graph_of(g), level)
        with atomic_open(path, "w") as f:
            f.write(text)
        return path
    if ext != ".png":
        raise ValueError(f"save_graph: the file must end in .png or .svg, got {str(path)!r}")
    return save(graph(g, level), path)


def _graph_of(g: Any) -> Graph:
    if isinstance(g, Tensor):
        return picture.graph(g, grads=g.size == 1)
    if not isinstance(g, Graph):
        raise TypeError(
            f"plot.graph: expected a graph from cr.graph(loss, grads=True) or a tensor, got {type(g).__name__}"
        )
    return g


def _draw_scene(s: picture.Scene) -> Figure:
    """The shapes and text of a scene on a figure of its size (points -> inches at 72 a inch)."""
    fig = Figure(figsize=(s.width / 72, s.height / 72))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, s.width)
    ax.set_ylim(s.height, 0)
    ax.axis("off")
    for shape in s.shapes:
        ax.add_patch(_patch(shape))
    for t in s.labels:
        ax.text(
            t.x,
            t.y,
            t.text,
            color=t.color,
            fontsize=t.size,
            family="DejaVu Sans Mono",
            ha="center" if t.anchor == "middle" else "left",
            va="center",
            weight="bold" if t.bold else "normal",
            visible=not t.hidden,
        )
    return fig


def _restyle(fig: Figure, s: picture.Scene) -> Figure:
    """``fig`` (drawn by :func:`_draw_scene`) with the colours and texts of ``s``, a scene of the same layout."""
    ax = fig.axes[0] if len(fig.axes) == 1 else None
    if ax is None or len(ax.patches) != len(s.shapes) or len(ax.texts) != len(s.labels):
        raise ValueError(
            "draw_backward_step: fig must be a frame drawn by draw_backward_step of the same graph and level"
        )
    for patch, shape in zip(ax.patches, s.shapes):
        patch.set(facecolor=shape.fill, edgecolor=shape.stroke, linewidth=shape.width)
    for text, t in zip(ax.texts, s.labels):
        text.set(text=t.text, color=t.color, visible=not t.hidden)
    return fig


def _patch(s: picture.Shape) -> Any:
    style: dict[str, Any] = dict(facecolor=s.fill, edgecolor=s.stroke, linewidth=s.width)
    if s.kind == "rect":
        return FancyBboxPatch((s.x, s.y), s.w, s.h, boxstyle="round,pad=0,rounding_size=4", **style)
    codes = [MplPath.MOVETO, *[MplPath.CURVE4 if s.curve else MplPath.LINETO] * (len(s.points) - 1)]
    if not s.curve:
        return Polygon(s.points, closed=True, **style)
    return PathPatch(MplPath(s.points, codes), **style)
