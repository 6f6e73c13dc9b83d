"""What the playground's views show, computed from a :class:`~chainrule.playground.session.Session`.

Each function takes the session and returns JSON data (docs/playground.md,
"Views"): the squiggle's curves, the loss against one parameter, the landscape
over two, the recorded graph with its backward steps, ``explain``'s chain rule
and a numerical check. Each reads the session's current values and leaves them
as they were. Below them, the exports: the model file, the History as CSV, a
Python snippet that reproduces the run, and pictures drawn by :mod:`chainrule.plot`.

Example: the lessons' SSR against b3 at b3 = 0, learning rate 0.1::

    >>> from chainrule.playground.session import Session
    >>> from chainrule.playground import views
    >>> s = Session([{"action": "lesson", "id": 1}])
    >>> curve = views.loss_curve(s, "b3")
    >>> round(curve["slope"], 2), round(curve["next"], 4)
    (-15.66, 1.5655)
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..checks import Integer, Number, OneOf, check
from ..explain import explain as chain_rule
from ..modelfile import Model, to_dict
from ..nn import DosageNetwork, Linear, Sequential, mlp
from ..tensor import no_grad, tensor
from .session import LOSS_FUNCTIONS, Session, _clean

__all__ = [
    "curves",
    "loss_curve",
    "landscape",
    "graph",
    "explain",
    "gradcheck",
    "model_file",
    "history_csv",
    "code",
    "image",
    "animation",
    "as_mlp",
    "VIEWS",
]

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3  # chainrule.gradcheck's step and tolerances
VIEWS = ("squiggle", "loss_curve", "landscape", "training", "graph")


@contextlib.contextmanager
def _held(session: Session) -> Iterator[None]:
    """Values changed inside are put back (the views look; they do not touch)."""
    keep = session._values()
    try:
        with no_grad(), np.errstate(all="ignore"):
            yield
    finally:
        session._set_values(keep)


def _element(session: Session, key: Any) -> tuple[Any, tuple[int, ...]]:
    name, index = session._parse_key("view", key)
    return dict(session.net.named_parameters())[name], index


def _span(values: list[float], pad: float = 1.0) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    extra = max(pad, 0.15 * (hi - lo))
    return lo - extra, hi + extra


def _range(low: Any, high: Any, default: tuple[float, float], where: str) -> tuple[float, float]:
    lo = default[0] if low is None else check(where, "low", low, Number())
    hi = default[1] if high is None else check(where, "high", high, Number())
    if not lo < hi:
        raise ValueError(f"{where}: the range must have low < high, got {lo} and {hi}")
    return float(lo), float(hi)


def _points(n: Any, low: int, high: int, where: str) -> int:
    n = check(where, "points", n, Integer(low=low))
    if n > high:
        raise ValueError(f"{where}: points must be at most {high}, got {n}")
    return int(n)


# ---- the squiggle -------------------------------------------------------------------------------


def curves(session: Session, points: int = 200) -> dict[str, Any]:
    """The data, each last-hidden-layer unit's contribution to the output, the bias and their sum."""
    points = _points(points, 2, 2000, "curves")
    if session.x.shape[1] != 1:
        raise ValueError(f"curves: the squiggle needs one input feature; this data has {session.x.shape[1]}")
    lo, hi = float(session.x.min()), float(session.x.max())
    pad = 0.1 * (hi - lo) if hi > lo else 0.5
    xs = np.linspace(lo - pad, hi + pad, points)
    net = session.net
    out: dict[str, Any] = {"x": _clean(xs), "points": {"x": _clean(session.x[:, 0]), "y": _clean(session.y)}}
    with _held(session):
        if isinstance(net, DosageNetwork):
            c = net.curves(tensor(xs))
            units = [
                {"name": "blue", "label": "w3 x softplus(x1)", "y": _clean(c["blue"].data)},
                {"name": "orange", "label": "w4 x softplus(x2)", "y": _clean(c["orange"].data)},
            ]
            return {**out, "units": units, "bias": _clean(net.b3.data), "sum": _clean(c["green"].data), "classes": None}
        assert isinstance(net, Sequential)
        last = net.layers[-1]
        assert isinstance(last, Linear) and last.bias is not None
        hidden = Sequential(*net.layers[:-1])(tensor(xs[:, None])).data
        if session.settings["loss"] == "cross-entropy":
            z = hidden @ last.weight.data.T + last.bias.data
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            classes = [{"label": c, "y": _clean(p[:, k])} for k, c in enumerate(session._classes())]
            return {**out, "units": [], "bias": None, "sum": None, "classes": classes}
        w = last.weight.data[0]
        units = [
            {"name": f"unit {j + 1}", "label": f"unit {j + 1} x its weight", "y": _clean(hidden[:, j] * w[j])}
            for j in range(len(w))
        ]
        total = net(tensor(xs[:, None])).data[:, 0]
        return {**out, "units": units, "bias": _clean(last.bias.data[0]), "sum": _clean(total), "classes": None}


# ---- the loss against one parameter, and over two -------------------------------------------------


def _path(session: Session, key: str) -> list[float]:
    """The values this run gave ``key``: each iteration's old value, then the last new one."""
    rows = [r for r in session.rows if r[2] == key]
    return [r[3] for r in rows] + ([rows[-1][6]] if rows else [])


def _loss_at(session: Session, p: Any, index: tuple[int, ...], values: np.ndarray) -> list[Any]:
    out = []
    for v in values:
        p.data[index] = v
        out.append(_clean(session.loss()))
    return out


def loss_curve(
    session: Session, key: str, points: int = 101, low: float | None = None, high: float | None = None
) -> dict[str, Any]:
    """The loss against one element, the others held: the curve, the tangent's slope, the step, the path."""
    points = _points(points, 2, 2000, "loss_curve")
    p, index = _element(session, key)
    current = float(p.data[index])
    slope = float(np.asarray(session._gradients()[_element_name(session, key)])[index])
    step = session.settings["lr"] * slope
    path = _path(session, key)
    lo, hi = _range(low, high, _span([current, current - step, *path]), "loss_curve")
    values = np.linspace(lo, hi, points)
    with _held(session):
        curve = _loss_at(session, p, index, values)
        losses = _loss_at(session, p, index, np.array(path))
    return {
        "key": key,
        "values": _clean(values),
        "loss": curve,
        "current": current,
        "current_loss": _clean(session.loss()),
        "slope": _clean(slope),
        "step": _clean(step),
        "next": _clean(current - step),
        "path": [{"value": v, "loss": loss} for v, loss in zip(path, losses)],
    }


def _element_name(session: Session, key: str) -> str:
    return session._parse_key("view", key)[0]


def landscape(session: Session, x: str, y: str, points: int = 41, **limits: Any) -> dict[str, Any]:
    """The loss over a grid of two elements' values, the others held, with this run's path."""
    points = _points(points, 5, 101, "landscape")
    unknown = set(limits) - {"x_low", "x_high", "y_low", "y_high"}
    if unknown:
        raise ValueError(f"landscape: unknown field {sorted(unknown)[0]!r}")
    if x == y:
        raise ValueError(f"landscape: needs two different parameters, got {x!r} twice")
    (p, i), (q, j) = _element(session, x), _element(session, y)
    px, py = _path(session, x), _path(session, y)
    cx, cy = float(p.data[i]), float(q.data[j])
    xs = np.linspace(*_range(limits.get("x_low"), limits.get("x_high"), _span([cx, *px]), "landscape"), points)
    ys = np.linspace(*_range(limits.get("y_low"), limits.get("y_high"), _span([cy, *py]), "landscape"), points)
    grid = []
    with _held(session):
        for v in ys:
            q.data[j] = v
            grid.append(_loss_at(session, p, i, xs))
    px, py = px or [cx] * len(py), py or [cy] * len(px)  # a parameter held fixed stays where it is
    n = min(len(px), len(py))
    return {
        "x_key": x,
        "y_key": y,
        "xs": _clean(xs),
        "ys": _clean(ys),
        "loss": grid,
        "current": [cx, cy],
        "path": [[a, b] for a, b in zip(px[:n], py[:n])],
    }


# ---- the graph, explain, the numerical check ---------------------------------------------------------


def _array(a: Any) -> dict[str, Any] | None:
    if a is None:
        return None
    a = np.asarray(a, dtype=float)
    norm = float(np.linalg.norm(a))
    return {"shape": list(a.shape), "values": _clean(a) if a.size <= 64 else None, "norm": _clean(norm)}


def graph(session: Session, level: str | None = None) -> dict[str, Any]:
    """``cr.graph(loss, grads=True).to_json(level)`` and the backward pass node by node."""
    lessons = isinstance(session.net, DosageNetwork)
    level = (
        ("neuron" if lessons else "ops") if level is None else check("graph", "level", level, OneOf(("neuron", "ops")))
    )
    if level == "neuron" and not lessons:
        raise ValueError("graph: level 'neuron' draws the lessons' network only; use level 'ops'")
    g = session._graph()
    steps = [
        {
            "node": s.node.index,
            "label": s.node.name or (s.node.op.name if s.node.op is not None else "leaf"),
            "equation": s.equation(),
            "details": s.details(),
            "incoming": [
                {
                    "from": i.user.index,
                    "label": i.user.name or (i.user.op.name if i.user.op is not None else ""),
                    "derivative": i.derivative,
                    "upstream": _array(i.upstream),
                    "local": _array(i.local),
                    "product": _array(i.product),
                }
                for i in s.incoming
            ],
            "gradient": _array(s.grad),
        }
        for s in g.backward_steps()
    ]
    return {"graph": g.to_json(level), "steps": steps}


def explain(session: Session, key: str) -> dict[str, Any]:
    """``cr.explain(loss, param, index)`` for one element, as data."""
    p, index = _element(session, key)
    with np.errstate(all="ignore"):
        e = chain_rule(session._loss_tensor(), p, index if index else None)
    terms = [
        {
            "ops": list(t.ops),
            "factors": [{"name": f.name, "formula": f.formula, "values": _clean(f.values)} for f in t.factors],
            "per_point": _clean(t.per_point),
            "total": _clean(t.total),
        }
        for t in e.terms
    ]
    more = len(e.hidden) + (e.rest[0] if e.rest else 0)
    nodes, edges = _downstream(session._graph(), p)
    return {
        "key": key,
        "chain": e.chain,
        "text": e.text(),
        "markdown": e.markdown(),
        "terms": terms,
        "more_paths": more,
        "total": _clean(e.total),
        "gradient": _clean(e.gradient),
        "path_nodes": nodes,
        "path_edges": edges,
    }


def _downstream(g: Any, param: Any) -> tuple[list[int], list[list[int]]]:
    """The graph nodes on the chain-rule paths from ``param`` to the loss, and the edges between them."""
    on = {g.node(param).index}
    edges = []
    for n in g.nodes:  # inputs come before the nodes that use them
        used = [q.index for q in n.inputs if q is not None and q.index in on]
        if used:
            on.add(n.index)
            edges += [[i, n.index] for i in used]
    return sorted(on), edges


def gradcheck(session: Session, key: str) -> dict[str, Any]:
    """Backward's derivative of the loss against a central difference, by chainrule.gradcheck's rule."""
    p, index = _element(session, key)
    analytical = float(np.asarray(session._gradients()[_element_name(session, key)])[index])
    v = float(p.data[index])
    with _held(session):
        p.data[index] = v + EPS
        up = session.loss()
        p.data[index] = v - EPS
        down = session.loss()
    numerical = (up - down) / (2 * EPS)
    ok = abs(numerical - analytical) <= ATOL + RTOL * abs(numerical)
    return {
        "key": key,
        "analytical": _clean(analytical),
        "numerical": _clean(numerical),
        "difference": _clean(abs(numerical - analytical)),
        "ok": bool(ok) and math.isfinite(numerical),
        "eps": EPS,
    }


# ---- exports ---------------------------------------------------------------------------------


def as_mlp(net: DosageNetwork) -> Sequential:
    """The lessons' network as ``mlp([1, 2, 1], "softplus")`` with the same numbers (model files hold mlps)."""
    m = mlp([1, 2, 1], "softplus")
    first, last = m.layers[0], m.layers[2]
    assert isinstance(first, Linear) and isinstance(last, Linear) and first.bias is not None and last.bias is not None
    first.weight.data[...] = [[net.w1.item()], [net.w2.item()]]
    first.bias.data[...] = [net.b1.item(), net.b2.item()]
    last.weight.data[...] = [[net.w3.item(), net.w4.item()]]
    last.bias.data[...] = [net.b3.item()]
    return m


def model_file(session: Session) -> dict[str, Any]:
    """The model file's content (docs/model-format.md), as ``chainrule fit`` writes it."""
    net = session.net
    s = session.settings
    classify = s["loss"] == "cross-entropy"
    training = {
        "data": session.source,
        "rows": len(session.y),
        "optimizer": s["optimizer"],
        "lr": s["lr"],
        "tol": s["tol"],
        "max_iter": s["max_iter"],
        "seed": s["seed"],
        "n_iter": session.iteration,
        "stop_reason": session.trainer.stop_reason if session.trainer is not None else None,
        "final_loss": _clean(session.loss()),
        "written_by": "chainrule playground",
    }
    model = Model(
        as_mlp(net) if isinstance(net, DosageNetwork) else net,
        session.features,
        session.target,
        session._classes() if classify else None,
        None,
        loss=LOSS_FUNCTIONS[s["loss"]],
        training=training,
    )
    return to_dict(model)


def history_csv(session: Session) -> str:
    """The History rows as CSV text: iteration, loss, param, value, derivative, step, new."""
    lines = ["iteration,loss,param,value,derivative,step,new"]
    for row in session.rows:
        lines.append(",".join("" if v is None else repr(v) if isinstance(v, float) else str(v) for v in row))
    return "\n".join(lines) + "\n"


def _numbers(a: np.ndarray) -> str:
    return "np.array(" + repr(a.tolist()) + ")"


def code(session: Session) -> str:
    """A Python snippet that reproduces this run with ``cr.fit``, from its start values."""
    s = session.settings
    start = session.start
    x, y = session._arrays()
    lines = ["import warnings", "", "import numpy as np", "", "import chainrule as cr", ""]
    if session.edited:
        lines.append(
            "# NOTE: this run was changed by hand between steps; the snippet trains from its start without that."
        )
    lines += [f"x = {_numbers(x)}", f"y = {_numbers(y)}"]
    if s["loss"] == "cross-entropy":
        lines.append(f"# y holds class indices of {session._classes()!r}")
    if isinstance(session.net, DosageNetwork):
        values = ", ".join(f"{n}={float(start[n])!r}" for n in DosageNetwork.NAMES)
        lines.append(f"net = cr.nn.DosageNetwork({values})")
    else:
        kind, sizes, activation = session.arch  # type: ignore[misc]
        lines.append(f"net = cr.nn.mlp({sizes!r}, activation={activation!r})")
        state = ", ".join(f"{n!r}: {_numbers(v)}" for n, v in start.items())
        lines.append(f"net.load_state_dict({{{state}}})")
    optimizer = {
        "gd": f"cr.optim.GradientDescent(lr={s['lr']!r})",
        "momentum": f"cr.optim.Momentum(lr={s['lr']!r}, momentum={s['momentum']!r})",
        "adam": f"cr.optim.Adam(lr={s['lr']!r}, betas=({s['beta1']!r}, {s['beta2']!r}))",
    }[s["optimizer"]]
    ended = session.trainer is not None and session.trainer.stop_reason is not None
    max_iter = s["max_iter"] if ended or not session.iteration else min(session.iteration, s["max_iter"])
    params = session._trained_names()
    lines += [
        "with warnings.catch_warnings():",
        "    warnings.simplefilter('ignore')  # a run stopped by max_iter warns",
        "    history = cr.fit(",
        f"        net, x, y, loss={LOSS_FUNCTIONS[s['loss']]!r}, optimizer={optimizer},",
        f"        params={params!r}, tol={s['tol']!r}, max_iter={max_iter!r},",
        "    )",
        "print(history.n_iter, history.stop_reason)",
        "print(dict((name, p.data.tolist()) for name, p in net.named_parameters()))",
    ]
    return "\n".join(lines) + "\n"


def _figure(session: Session, view: str, options: dict[str, Any]) -> Any:
    from .. import plot  # matplotlib: only when a picture is asked for

    net, x, y = session.net, session.x, session._arrays()[1]
    history = session.trainer.history if session.trainer is not None else None
    loss = LOSS_FUNCTIONS[session.settings["loss"]]
    lessons = isinstance(net, DosageNetwork)
    if view in ("squiggle", "loss_curve", "landscape") and (x.shape[1] != 1 or loss == "cross_entropy"):
        raise ValueError(f"image: the {view} picture draws one input feature and SSR or MSE; this session has not")
    if view == "squiggle":
        return plot.squiggle(net, x[:, 0], y)
    # NOTE: chainrule.plot draws a path from the History for parameters of shape () only (a (1,) bias
    # fails in its float()), so an mlp's one-number parameters are drawn without the path.
    shapes = {n: p.shape for n, p in net.named_parameters()}
    if view == "loss_curve":
        key = _plot_param(session, options.get("key", "b3" if lessons else None))
        return plot.loss_curve(net, x, y, key, history if shapes[key] == () else None, loss=loss)
    if view == "landscape":
        pair = [_plot_param(session, options.get(k, d if lessons else None)) for k, d in (("x", "w3"), ("y", "w4"))]
        scalars = all(shapes[k] == () for k in pair)
        return plot.landscape(net, x, y, pair, history if scalars else None, loss=loss)
    if view == "training":
        if history is None or not history.n_iter:
            raise ValueError("image: the training view needs at least one iteration; step first")
        return plot.training_curve(history)
    return plot.graph(session._graph(), options.get("level", "neuron" if lessons else "ops"))


def _plot_param(session: Session, key: Any) -> str:
    """The name chainrule.plot knows a one-number parameter by (``4.bias[0]`` is ``4.bias``)."""
    if key is None:
        raise ValueError("image: name the parameter to draw: key= (x= and y= for the landscape)")
    name, _ = session._parse_key("image", key)
    size = dict(session.net.named_parameters())[name].size
    if size != 1:
        raise ValueError(
            f"image: the picture draws the loss against a one-number parameter; {name!r} holds {size} "
            "(the page's own view draws any element)"
        )
    return name


def image(session: Session, view: str, fmt: str = "png", **options: Any) -> bytes:
    """A view drawn by chainrule.plot as PNG or SVG bytes."""
    check("image", "view", view, OneOf(VIEWS))
    check("image", "format", fmt, OneOf(("png", "svg")))
    if view == "graph" and fmt == "svg":
        g = session._graph()
        level = options.get("level", "neuron" if isinstance(session.net, DosageNetwork) else "ops")
        return g.svg(check("image", "level", level, OneOf(("neuron", "ops")))).encode()
    with np.errstate(all="ignore"):  # (chainrule.plot puts back the values it sets; no_grad would lose the graph)
        fig = _figure(session, view, options)
    out = io.BytesIO()
    fig.savefig(out, format=fmt, dpi=110)
    return out.getvalue()


def animation(session: Session, view: str = "squiggle", **options: Any) -> bytes:
    """The run as a GIF (``chainrule.animation``); LookupError where that module is not installed."""
    try:
        movies = importlib.import_module("chainrule.animation")
    except ImportError:
        raise LookupError(
            "animation: this chainrule has no chainrule.animation module; GIFs are not available"
        ) from None
    check("animation", "view", view, OneOf(("squiggle", "loss_curve", "landscape")))
    h = session.trainer.history if session.trainer is not None else None
    if h is None or not h.n_iter:
        raise ValueError("animation: step or run first; there is no iteration to animate")
    net, x, y = session.net, session.x, session._arrays()[1]
    loss = LOSS_FUNCTIONS[session.settings["loss"]]
    with _held(session):
        if view == "squiggle":
            movie = movies.squiggle(net, x[:, 0], y, h, loss=loss, frames=30)
        elif view == "loss_curve":
            movie = movies.loss_step(net, x, y, options.get("key", "b3"), h, loss=loss, frames=30)
        else:
            pair = [options.get("x", "w3"), options.get("y", "w4")]
            movie = movies.landscape(net, x, y, pair, h, loss=loss, frames=30)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "run.gif")
            movie.save(path)
            with open(path, "rb") as f:
                return f.read()
