"""Pictures of the recorded graph with every node's value and gradient, drawn without Graphviz.

:func:`graph` is :func:`chainrule.tensor.graph` returning a :class:`GraphView`:
the same :class:`~chainrule.tensor.Graph` with pictures. ``graph(loss,
grads=True)`` also fills every node's gradient d(loss)/d(node) (inner nodes
included) with the registry's VJPs, leaving the tensors' ``.grad`` alone.

A picture is made in three plain steps, each deterministic (the same graph
gives the same SVG, byte for byte):

1. a **view**: the boxes to draw and the edges between them, each box a few
   lines of text (its label, the op's formula from the registry, its value and
   its gradient). ``level="ops"`` has one box per node of the graph (as
   micrograd's ``draw_dot``), with large parameters folded into the layer that
   uses them and shown by shape and norm; ``level="neuron"`` is the lessons'
   drawing of :class:`~chainrule.nn.DosageNetwork` (Input, the two SoftPlus
   nodes, the sum with b3, the loss; weights and biases written on the edges);
2. a **layout** of our own: a box's column is its longest path from the leaves
   (a leaf sits just left of its first use), so inputs are on the left and the
   loss on the right; boxes in a column are ordered by a few barycentre sweeps
   (ties kept in the graph's order), columns are as wide as their widest box;
3. a **scene**: rectangles, text, edges and arrowheads in points (1/72 inch),
   which :meth:`GraphView.svg` writes as SVG here and
   :func:`chainrule.plot.graph` draws with matplotlib.

Text is monospace, so its extent is known before drawing (``CHAR`` x size per
character): no two pieces of text of a scene overlap, which the tests check.
This module needs no matplotlib. Its floor: above tensor, explain (whose
``ELEMENTWISE`` table says where a local derivative is one number per element)
and history (``format_table``); below :mod:`chainrule.plot`, which draws its
scenes, and the demo.

Example::

    >>> import chainrule as cr
    >>> net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
    >>> x, y = cr.data.dosage()
    >>> g = cr.graph(cr.losses.ssr(net(x), y), grads=True)
    >>> round(float(g.node(net.b3).grad), 2), g.node(net.b3).grad_points.round(2)
    (-15.66, array([-5.21, -5.22, -5.23]))
    >>> g.svg().startswith("<svg")
    True
    >>> [n["label"] for n in g.to_json(level="neuron")["nodes"]]
    ['Input', 'top node', 'bottom node', 'Predicted', 'Observed', 'SSR']
    >>> step = next(s for s in g.backward_steps() if s.node.name == "b3")
    >>> print(step.equation()); print(*step.details())
    dSSR/db3 = dSSR/dPredicted x dPredicted/db3 = -15.66
      from Predicted: -5.207, -5.218, -5.23 x d/db = 1 (1, 1, 1) = -5.207, -5.218, -5.23, summed: -15.66
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from .checks import Integer, check
from .explain import ELEMENTWISE
from .history import format_table
from .ops import unbroadcast
from .tensor import Graph, Node, Tensor
from .tensor import graph as _record

__all__ = [
    "CHAR",
    "COLORS",
    "LEVELS",
    "MAX_AREA",
    "MAX_LIST",
    "MAX_SIDE",
    "NOT_COMPUTED",
    "BackwardSteps",
    "GraphView",
    "Incoming",
    "Scene",
    "Step",
    "graph",
    "layout",
    "overlaps",
    "scene",
    "svg",
    "to_json",
]

LEVELS = ("ops", "neuron")
MAX_LIST = 6  # elements written out in a picture; a larger array shows its shape and norm
MAX_JSON = 64  # elements written out in to_json; a larger array gives its shape and norm only
MAX_LINE = 52  # characters per line of a box; longer lines end in "..."
FONT, LINE, PAD = 11.0, 15.0, 6.0  # text size, line height, padding inside a box (points)
CHAR = 0.67  # width of a monospace character per unit of font size: see the NOTE below
# NOTE: DejaVu Sans Mono advances 0.602 of the size, but Agg hints each advance to whole pixels: at 11 points
# that is round(0.602 p) / p for p = 11 dpi / 72 pixels, up to 0.669 at 49 dpi (0.654 at 50, 0.636 at 72,
# 0.595 at 110). 0.67 keeps text inside its box in PNGs and frames from 40 dpi up, and in SVG.
COL_GAP, ROW_GAP, MARGIN = 44.0, 16.0, 14.0
# The largest picture drawn, in points (1/72 inch): a graph of thousands of ops would be a canvas of
# gigabytes, refused before anything is allocated. plot.save's 110 dpi makes 4e6 square points about
# 9 million pixels (37 MB); 20,000 points a side is 30,556 pixels, below Agg's 65,536.
MAX_SIDE, MAX_AREA = 20_000.0, 4_000_000.0
NOT_COMPUTED = "gradients not computed: graph(loss, grads=True)"
# (fill, edge) per kind of node; the legend says which is which.
COLORS = {
    "parameter": ("#fde3c0", "#c8700f"),
    "data": ("#d6e6f5", "#2a6fb0"),
    "op": ("#f2f2f2", "#777777"),
    "loss": ("#f9d0e8", "#b5338a"),
}
TEXT, GRAD_TEXT, PARAM_TEXT, LIT, CURRENT = "#222222", "#8b1a1a", "#9a4f00", "#fff5b8", "#d62728"
LESSON_NAMES = ("Input", "x1", "y1", "x2", "y2", "Predicted", "w1", "b1", "w2", "b2", "w3", "w4", "b3")


class GraphView(Graph):
    """A recorded :class:`~chainrule.tensor.Graph` that draws itself: ``svg``, ``to_json``, ``backward_steps``.

    In a notebook it shows as its SVG. Make one with :func:`graph`.
    """

    @classmethod
    def of(cls, g: Graph) -> GraphView:
        """The same graph (the same nodes, not copies) as a GraphView."""
        view = cls.__new__(cls)
        view.__dict__.update(vars(g))
        return view

    def svg(self, level: str = "ops") -> str:
        """The picture as an SVG document (a string), at ``level`` "ops" or "neuron"."""
        return svg(self, level)

    def _repr_svg_(self) -> str:
        return self.svg()

    def to_json(self, level: str = "ops") -> dict[str, Any]:
        """The picture's boxes and edges as plain data (see :func:`to_json`)."""
        return to_json(self, level)

    def backward_steps(self) -> BackwardSteps:
        """The reverse pass node by node (see :class:`BackwardSteps`)."""
        return BackwardSteps.of(self)


def graph(output: Tensor, grads: bool = False) -> GraphView:
    """The graph recorded below ``output`` (:func:`chainrule.tensor.graph`), as a :class:`GraphView`.

    ``grads=True`` fills every node's ``grad`` with d(output)/d(node); without it
    the pictures say ``gradients not computed`` instead of showing zeros.

    Example::

        >>> import chainrule as cr
        >>> w = cr.tensor(3.0, requires_grad=True, name="w")
        >>> g = cr.graph((2 * w - 1) ** 2, grads=True)
        >>> [(n.name or n.op.name, float(n.grad)) for n in g]     # d/dw (2w - 1)^2 = 4 (2w - 1) = 20
        [('w', 20.0), ('mul', 10.0), ('sub', 10.0), ('pow', 1.0)]
        >>> "gradients not computed" in cr.graph((2 * w - 1) ** 2).svg()
        True
    """
    return GraphView.of(_record(output, grads=grads))


# ---- numbers as text ------------------------------------------------------------------


def _num(v: Any) -> str:
    text = f"{float(v):.4g}"
    return "0" if text == "-0" else text


def _numbers(a: np.ndarray) -> str:
    """The elements of a small array, or the shape and norm of a large one."""
    a = np.asarray(a)
    if a.size <= MAX_LIST:
        return ", ".join(_num(v) for v in a.ravel()) if a.size else "(empty)"
    return f"shape {a.shape}, norm {_num(np.linalg.norm(a.astype(float)))}"


def _cut(text: str, width: int = MAX_LINE) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _batch(g: Graph) -> int | None:
    """The number of data points: the length of the first axis of the leaf named Input."""
    for n in g.leaves:
        if n.name == "Input" and n.value.ndim:
            return n.value.shape[0]
    return None


def _grad_text(n: Node, batch: int | None) -> str:
    """A node's gradient: per element (per data point) with their sum, or the sum of per-point parts."""
    if n.grad is None:
        return "no gradient reaches it"
    text = _numbers(n.grad)
    if n.grad_points is not None and n.grad_points.size <= MAX_LIST and n.grad.size == 1:
        return f"{text} = sum of {_numbers(n.grad_points)}"
    if batch and n.grad.ndim and n.grad.shape[0] == batch and 1 < n.grad.size <= MAX_LIST:
        return f"{text}; sum {_numbers(n.grad.sum(axis=0))}"
    return text


def _label(n: Node) -> str:
    return n.name or f"%{n.index}"


def _kind(g: Graph, n: Node) -> str:
    if n is g.output:
        return "loss"
    if n.op is None:
        return "parameter" if n.requires_grad else "data"
    return "op"


def _formula(n: Node) -> str:
    return n.op.formula if n.op is not None else ""


def _loss_name(g: Graph) -> str:
    return g.output.name or "loss"


# ---- views: what to draw ------------------------------------------------------------------


@dataclass
class Text:
    """One line of text in a box or on an edge; ``role`` is title, formula, value, grad or param.

    ``node`` is the index of the graph node whose gradient a grad line shows: the
    frames of the backward pass show it from that node's step on.
    """

    text: str
    role: str = "value"
    node: int | None = None


@dataclass
class Box:
    """A box of a view: its lines, its kind (parameter, data, op, loss) and the graph nodes it shows."""

    id: str
    label: str
    kind: str
    lines: list[Text]
    main: Node
    members: list[Node] = field(default_factory=list)
    formula: str = ""

    def __post_init__(self) -> None:
        self.members = self.members or [self.main]


@dataclass
class Edge:
    source: str
    target: str
    position: int = 0
    lines: list[Text] = field(default_factory=list)
    params: list[Node] = field(default_factory=list)


@dataclass
class View:
    level: str
    boxes: list[Box]
    edges: list[Edge]


def _view(g: Graph, level: str) -> View:
    if level not in LEVELS:
        raise ValueError(f"picture: level must be one of {list(LEVELS)}, got {level!r}")
    return _ops_view(g) if level == "ops" else _neuron_view(g)


def _folded(g: Graph) -> dict[int, Node]:
    """Large parameters used by one op only, by index, mapped to that op: the picture draws them inside it."""
    users: dict[int, list[Node]] = {}
    for n in g.nodes:
        for p in n.inputs:
            if p is not None:
                users.setdefault(p.index, []).append(n)
    return {
        i: used[0]
        for i, used in users.items()
        if len(used) == 1 and g.nodes[i].op is None and g.nodes[i].requires_grad and g.nodes[i].value.size > MAX_LIST
    }


def _ops_view(g: Graph) -> View:
    folded, batch = _folded(g), _batch(g)
    inside: dict[int, list[Node]] = {}
    for i, user in folded.items():
        inside.setdefault(user.index, []).append(g.nodes[i])
    boxes = [_op_box(g, n, inside.get(n.index, []), batch) for n in g.nodes if n.index not in folded]
    edges = [
        Edge(f"n{p.index}", f"n{n.index}", k)
        for n in g.nodes
        for k, p in enumerate(n.inputs)
        if p is not None and p.index not in folded
    ]
    return View("ops", boxes, edges)


def _op_box(g: Graph, n: Node, params: list[Node], batch: int | None) -> Box:
    kind = _kind(g, n)
    if n.op is None:
        title, formula = f"{_label(n)} ({kind})", ""
    else:
        operands = [_label(p) if p is not None else _constant(a) for p, a in zip(n.inputs, n.args)]
        title, formula = f"{_label(n)} = {n.op.name}({', '.join(operands)})", n.op.formula
    lines = [Text(_cut(title), "title")]
    if formula:
        lines.append(Text(_cut(formula), "formula"))
    lines.append(Text(_cut(f"value {_numbers(n.value)}")))
    if g.grads_computed:
        lines.append(Text(_cut(f"grad  {_grad_text(n, batch)}"), "grad", n.index))
    for p in params:
        lines.append(Text(_cut(f"{p.name or _label(p)} {_numbers(p.value)}"), "param"))
        if g.grads_computed:
            lines.append(Text(_cut(f"  grad {_numbers(p.grad) if p.grad is not None else 'none'}"), "grad", p.index))
    return Box(f"n{n.index}", _label(n), kind, lines, n, [n, *params], formula)


_INFIX = {"mul": "×", "add": " + ", "sub": " - ", "pow": "^"}


def _drawn_names(g: Graph) -> dict[int, str]:
    """The unnamed nodes of the lessons' picture named by the formula it draws: ``(y1×w3)``, ``(Observed - Predicted)``.

    The neuron picture has no box for ``%12 = mul(y1, w3)``; its steps say ``(y1×w3)`` instead.
    """
    names: dict[int, str] = {}
    plain: dict[int, str] = {}
    for n in g.nodes:
        if n.name or n.op is None or n.op.name not in _INFIX or len(n.args) != 2:
            continue
        sign = _INFIX[n.op.name]
        operands = []
        for p, a in zip(n.inputs, n.args):
            text = _constant(a) if p is None else p.name or plain.get(p.index, _label(p))
            wrap = p is not None and not p.name and p.index in plain and sign in ("×", "^") and " " in text
            operands.append(f"({text})" if wrap else text)
        plain[n.index] = sign.join(operands)
        names[n.index] = f"({plain[n.index]})"
    return names


def _constant(a: Any) -> str:
    a = np.asarray(a)
    return _num(a.ravel()[0]) if a.size == 1 and a.dtype.kind in "biuf" else f"const{a.shape}"


def _neuron_view(g: Graph) -> View:
    """The lessons' drawing: Input -> two SoftPlus nodes -> Predicted (the sum with b3) -> the loss."""
    named = {n.name: n for n in g.nodes if n.name}
    missing = [name for name in LESSON_NAMES if name not in named]
    if missing:
        raise ValueError(
            "picture: level='neuron' draws the lessons' DosageNetwork (nodes named Input, x1, y1, ..., b3); "
            f"this graph has no {missing}; use level='ops'"
        )
    n, loss, d = named, g.output, f"d{_loss_name(g)}/d"
    show = g.grads_computed

    def rows(*pairs: tuple[str, Node]) -> list[Text]:
        out = [Text(_cut(f"{what} {_numbers(node.value)}")) for what, node in pairs]
        if show:
            out += [Text(_cut(f"{d}{what} {_grad_text(node, None)}"), "grad", node.index) for what, node in pairs]
        return out

    def softplus_box(which: str, x: str, y: str) -> Box:
        top = which == "top"
        lines = [
            Text(f"SoftPlus, {which} node", "title"),
            Text(_formula(n[y]), "formula"),
            Text(f"{x}_i = Input_i × {'w1' if top else 'w2'} + {'b1' if top else 'b2'}", "formula"),
            *rows((f"{x}_i", n[x]), (f"{y}_i", n[y])),
        ]
        return Box(which, f"{which} node", "op", lines, n[y], [n[x], n[y]], _formula(n[y]))

    def param(name: str, prefix: str, points: bool = False) -> list[Text]:
        out = [Text(f"{prefix} {name} = {_numbers(n[name].value)}", "param")]
        p = n[name]
        grad = _grad_text(p, None) if points or p.grad is None else _numbers(p.grad)
        return out + ([Text(_cut(f"{d}{name} = {grad}"), "grad", p.index)] if show else [])

    predicted = [
        Text("Predicted (the sum + b3)", "title"),
        Text("Predicted_i = y1_i × w3 + y2_i × w4 + b3", "formula"),
        *param("b3", "+", points=True),
        *rows(("Predicted_i", n["Predicted"])),
    ]
    boxes = [
        Box("Input", "Input", "data", [Text("Input (data)", "title"), *rows(("Input_i", n["Input"]))], n["Input"]),
        softplus_box("top", "x1", "y1"),
        softplus_box("bottom", "x2", "y2"),
        Box("Predicted", "Predicted", "op", predicted, n["Predicted"], [n["Predicted"], n["b3"]]),
    ]
    edges = [
        Edge("Input", "top", 0, [*param("w1", "×"), *param("b1", "+")], [n["w1"], n["b1"]]),
        Edge("Input", "bottom", 0, [*param("w2", "×"), *param("b2", "+")], [n["w2"], n["b2"]]),
        Edge("top", "Predicted", 0, param("w3", "×"), [n["w3"]]),
        Edge("bottom", "Predicted", 1, param("w4", "×"), [n["w4"]]),
        Edge("Predicted", "loss", 0),
    ]
    observed = n.get("Observed")
    if observed is not None:
        lines = [Text("Observed (data)", "title"), *rows(("Observed_i", observed))]
        boxes.append(Box("Observed", "Observed", "data", lines, observed))
        edges.append(Edge("Observed", "loss", 1))
    formula = "SSR = sum_i (Observed_i - Predicted_i)^2" if loss.name == "SSR" else _formula(loss)
    lines = [Text(f"{_loss_name(g)} (loss)", "title"), Text(_cut(formula), "formula"), *rows((_loss_name(g), loss))]
    boxes.append(Box("loss", _loss_name(g), "loss", lines, loss, [loss], formula))
    return View("neuron", boxes, edges)


# ---- layout ---------------------------------------------------------------------------------


def _text_width(text: str, size: float = FONT) -> float:
    return len(text) * CHAR * size


def _box_size(box: Box) -> tuple[float, float]:
    width = max(_text_width(t.text) for t in box.lines)
    return width + 2 * PAD, len(box.lines) * LINE + 2 * PAD


def _columns(view: View) -> list[list[str]]:
    """Boxes by column: longest path from the leaves, each leaf just left of its first use."""
    preds: dict[str, list[str]] = {b.id: [] for b in view.boxes}
    succs: dict[str, list[str]] = {b.id: [] for b in view.boxes}
    for e in view.edges:
        preds[e.target].append(e.source)
        succs[e.source].append(e.target)
    layer: dict[str, int] = {}
    for b in view.boxes:  # boxes come in topological order
        layer[b.id] = 1 + max((layer[p] for p in preds[b.id]), default=-1)
    for b in view.boxes:
        if not preds[b.id] and succs[b.id]:
            layer[b.id] = max(0, min(layer[s] for s in succs[b.id]) - 1)
    used = sorted(set(layer.values()))
    columns: list[list[str]] = [[] for _ in used]
    for b in view.boxes:
        columns[used.index(layer[b.id])].append(b.id)
    return _sweep(columns, preds, succs)


def _sweep(columns: list[list[str]], preds: dict, succs: dict, rounds: int = 4) -> list[list[str]]:
    """Order each column by the mean position of its neighbours, left to right then back (stable, so deterministic)."""

    def order(column: list[str], neighbours: dict, at: dict[str, int]) -> list[str]:
        def key(i_box: tuple[int, str]) -> float:
            i, box = i_box
            near = [at[m] for m in neighbours[box] if m in at]
            return sum(near) / len(near) if near else float(i)

        return [box for _, box in sorted(enumerate(column), key=key)]

    for _ in range(rounds):
        for k in range(1, len(columns)):
            at = {box: i for i, box in enumerate(columns[k - 1])}
            columns[k] = order(columns[k], preds, at)
        for k in range(len(columns) - 2, -1, -1):
            at = {box: i for i, box in enumerate(columns[k + 1])}
            columns[k] = order(columns[k], succs, at)
    return columns


@dataclass
class Placed:
    x: float
    y: float
    w: float
    h: float


def layout(view: View, top: float = 0.0) -> tuple[dict[str, Placed], float, float]:
    """Where each box of ``view`` goes: {id: Placed(x, y, w, h)}, and the width and height used (points).

    The lessons' picture leaves more room between rows, for the labels on its edges.
    """
    row_gap = ROW_GAP * (2.5 if view.level == "neuron" else 1)
    sizes = {b.id: _box_size(b) for b in view.boxes}
    columns = _columns(view)
    label_width: dict[int, float] = {}
    column_of = {box: k for k, column in enumerate(columns) for box in column}
    for e in view.edges:
        if e.lines:
            k = column_of[e.source]
            widest = max(_text_width(t.text) for t in e.lines)
            label_width[k] = max(label_width.get(k, 0.0), widest + 2 * PAD + 24)
    heights = [sum(sizes[b][1] for b in column) + row_gap * (len(column) - 1) for column in columns]
    tallest = max(heights)
    placed, x = {}, MARGIN
    for k, column in enumerate(columns):
        width = max(sizes[b][0] for b in column)
        y = top + (tallest - heights[k]) / 2
        for b in column:
            w, h = sizes[b]
            placed[b] = Placed(x + (width - w) / 2, y, w, h)
            y += h + row_gap
        x += width + max(COL_GAP, label_width.get(k, 0.0))
    return placed, x - max(COL_GAP, label_width.get(len(columns) - 1, 0.0)) + MARGIN, tallest


# ---- scenes: the shapes to draw, for SVG and matplotlib alike -----------------------------------


@dataclass
class Shape:
    """A rectangle (``kind`` "rect": x, y, w, h) or a path (``kind`` "path": ``points`` and ``curve``)."""

    kind: str
    fill: str = "none"
    stroke: str = "none"
    width: float = 1.0
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    points: list[tuple[float, float]] = field(default_factory=list)
    curve: bool = False
    title: str = ""


@dataclass
class Label:
    """A line of text, its left end (or its middle, ``anchor`` "middle") at x and its middle at y."""

    x: float
    y: float
    text: str
    color: str = TEXT
    bold: bool = False
    size: float = FONT
    anchor: str = "start"
    hidden: bool = False  # a gradient the backward pass has not reached yet: its place stays empty

    def extent(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the estimated box of the text in points."""
        w = _text_width(self.text, self.size)
        x0 = self.x - w / 2 if self.anchor == "middle" else self.x
        return x0, self.y - 0.6 * self.size, x0 + w, self.y + 0.6 * self.size


@dataclass
class Scene:
    """What a picture is made of, in points: shapes first (in drawing order), then text on top."""

    width: float
    height: float
    shapes: list[Shape]
    labels: list[Label]
    boxes: dict[str, Placed]
    view: View


def scene(g: Graph, level: str = "ops", step: int | None = None) -> Scene:
    """The shapes and text of the picture of ``g``; ``step`` k lights up the first k + 1 steps of the backward pass.

    A picture wider or taller than ``MAX_SIDE`` points, or of more than ``MAX_AREA``
    square points, is refused (ValueError) once its layout is known, before anything
    is drawn or rendered: draw a smaller graph, or read ``g.to_json()`` or ``g.backward_steps()``.
    """
    s = _scene(g, level, step)
    if max(s.width, s.height) > MAX_SIDE or s.width * s.height > MAX_AREA:
        raise ValueError(
            f"picture: the graph's picture would be {s.width:.0f} x {s.height:.0f} points ({len(s.view.boxes)} boxes), "
            f"above the limit of {MAX_SIDE:.0f} points a side and {MAX_AREA:.0f} square points; "
            "draw a smaller graph, or use g.to_json() or g.backward_steps()"
        )
    return s


def _scene(g: Graph, level: str, step: int | None) -> Scene:
    view = _view(g, level)
    steps = BackwardSteps.of(g) if step is not None else None
    names = _drawn_names(g) if view.level == "neuron" else {}
    header, footer = _header(g, view, step), _footer(steps, step, names)
    top = MARGIN + len(header) * (LINE + 2) + 8
    placed, width, height = layout(view, top)
    legend = sum(_text_width(k) + 26 for k in COLORS)
    width = max(
        width, _text_width(header[0][0]) + legend + 3 * MARGIN, *(_text_width(t) + 2 * MARGIN for t, _ in header)
    )
    shapes, labels = [Shape("rect", "#ffffff", x=0, y=0, w=width, h=0)], []
    labels += [Label(MARGIN, MARGIN + i * (LINE + 2) + LINE / 2, t, c, bold=i == 0) for i, (t, c) in enumerate(header)]
    _legend(shapes, labels, width - MARGIN - legend, MARGIN + LINE / 2)
    done, current = _progress(steps, step)
    _edges(shapes, labels, view, placed, done, current)
    for b in view.boxes:
        _box(shapes, labels, b, placed[b.id], done, current)
    y = top + height + 16
    for i, text in enumerate(footer):
        labels.append(Label(MARGIN, y + i * LINE + LINE / 2, _cut(text, int((width - 2 * MARGIN) / (CHAR * FONT)))))
    shapes[0].h = total = y + len(footer) * LINE + MARGIN
    return Scene(width, total, shapes, labels, placed, view)


def _edges(
    shapes: list[Shape],
    labels: list[Label],
    view: View,
    placed: dict[str, Placed],
    done: set[int] | None,
    current: int | None,
) -> None:
    """Every edge, its end spread over the target's side by argument position; lit where the gradient just came back."""
    box_of = {m.index: b.id for b in view.boxes for m in b.members}
    reached = {box_of[i] for i in done or () if i in box_of}
    into: dict[str, list[int]] = {}
    for e in view.edges:
        into.setdefault(e.target, []).append(e.position)
    for e in view.edges:
        rank, fan_in = sorted(into[e.target]).index(e.position), len(into[e.target])
        back = current is not None and box_of.get(current) == e.source and e.target in reached
        lit = current is not None and (back or current in [p.index for p in e.params])
        _edge(shapes, labels, e, placed, (rank - (fan_in - 1) / 2) * 10, lit, done)


def _header(g: Graph, view: View, step: int | None) -> list[tuple[str, str]]:
    what = "the lessons' network" if view.level == "neuron" else "every op"
    loss = _loss_name(g)
    if not g.grads_computed:
        return [(f"The graph of {loss}, {what}: each node's value", TEXT), (NOT_COMPUTED, CURRENT)]
    lines = [(f"The graph of {loss}, {what}: each node's value and gradient d{loss}/d(node)", TEXT)]
    if step is not None:
        lines.append(("backward pass: lit nodes have their gradient, the red one was just computed", TEXT))
    return lines


def _legend(shapes: list[Shape], labels: list[Label], x: float, y: float) -> None:
    """A swatch and the name of each kind of node, from ``x`` on."""
    for kind in COLORS:
        fill, stroke = COLORS[kind]
        shapes.append(Shape("rect", fill, stroke, x=x, y=y - 6, w=12, h=12))
        labels.append(Label(x + 16, y, kind))
        x += _text_width(kind) + 26


def _hidden(t: Text, done: set[int] | None) -> bool:
    """A gradient the backward pass has not reached yet (in a frame of it): its place stays empty."""
    return done is not None and t.node is not None and t.node not in done


def _box(
    shapes: list[Shape], labels: list[Label], b: Box, p: Placed, done: set[int] | None, current: int | None
) -> None:
    fill, stroke = COLORS[b.kind]
    edge_width = 1.2
    members = {m.index for m in b.members}
    if done is not None and members & done:
        fill = LIT
    if current in members:
        stroke, edge_width = CURRENT, 3.0
    tip = "; ".join(m.op.__doc__ or "" for m in b.members if m.op is not None)
    shapes.append(Shape("rect", fill, stroke, edge_width, p.x, p.y, p.w, p.h, title=tip))
    for i, t in enumerate(b.lines):
        y = p.y + PAD + i * LINE + LINE / 2
        labels.append(Label(p.x + PAD, y, t.text, _color(t.role), t.role == "title", hidden=_hidden(t, done)))


def _color(role: str) -> str:
    return {"grad": GRAD_TEXT, "param": PARAM_TEXT}.get(role, TEXT)


def _edge(
    shapes: list[Shape],
    labels: list[Label],
    e: Edge,
    placed: dict[str, Placed],
    shift: float,
    lit: bool,
    done: set[int] | None,
) -> None:
    a, b = placed[e.source], placed[e.target]
    x0, y0 = a.x + a.w, a.y + a.h / 2
    x1, y1 = b.x - 6, b.y + b.h / 2 + shift
    color, width = (CURRENT, 2.4) if lit else ("#888888", 1.2)
    mid = (x0 + x1) / 2
    shapes.append(
        Shape("path", stroke=color, width=width, points=[(x0, y0), (mid, y0), (mid, y1), (x1, y1)], curve=True)
    )
    shapes.append(Shape("path", color, color, 1.0, points=[(x1, y1 - 4), (x1 + 6, y1), (x1, y1 + 4)]))
    if e.lines:
        h = len(e.lines) * LINE
        w = max(_text_width(t.text) for t in e.lines)
        cy = (y0 + y1) / 2 - h / 2
        shapes.append(Shape("rect", "#ffffff", "#dddddd", 0.8, mid - w / 2 - 4, cy - 2, w + 8, h + 4))
        for i, t in enumerate(e.lines):
            y = cy + i * LINE + LINE / 2
            labels.append(Label(mid, y, t.text, _color(t.role), anchor="middle", hidden=_hidden(t, done)))


def _progress(steps: BackwardSteps | None, step: int | None) -> tuple[set[int] | None, int | None]:
    """The nodes whose gradient the backward pass has reached by ``step``, and the node of that step.

    (None, None) in a picture that is not a frame of the backward pass.
    """
    if steps is None or step is None:
        return None, None
    check("backward step", "k", step, Integer(low=0, high=len(steps) - 1))
    return {s.node.index for s in steps[: step + 1]}, steps[step].node.index


def _footer(steps: BackwardSteps | None, step: int | None, names: dict[int, str]) -> list[str]:
    """The text under frame ``step``: the step's equation and one line per user; as many lines in every frame."""
    if steps is None or step is None or not 0 <= step < len(steps):
        return []
    s = steps[step]
    lines = [f"step {step + 1} of {len(steps)}: {s.equation(names)}", *s.details(names)]
    return lines + [""] * (1 + max(len(t.incoming) for t in steps) - len(lines))


# ---- SVG and JSON --------------------------------------------------------------------------------


def _f(v: float) -> str:
    return f"{v:.1f}"


def svg(g: Graph, level: str = "ops", step: int | None = None) -> str:
    """The picture of ``g`` as an SVG document (no external fonts, images or scripts); the same graph, the same text.

    Hovering over a box shows its op's formula and derivatives (the registry's ``__doc__``).
    """
    s = scene(g, level, step)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(s.width)}" height="{_f(s.height)}" '
        f'viewBox="0 0 {_f(s.width)} {_f(s.height)}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace">'
    ]
    out += [_svg_shape(shape) for shape in s.shapes]
    out += [_svg_label(label) for label in s.labels if not label.hidden]
    return "\n".join([*out, "</svg>"]) + "\n"


def _svg_shape(s: Shape) -> str:
    style = f'fill="{s.fill}" stroke="{s.stroke}" stroke-width="{_f(s.width)}"'
    if s.kind == "rect":
        tip = f"<title>{escape(s.title)}</title>" if s.title else ""
        rect = f'<rect x="{_f(s.x)}" y="{_f(s.y)}" width="{_f(s.w)}" height="{_f(s.h)}" rx="4" {style}'
        return f"{rect}>{tip}</rect>" if tip else f"{rect}/>"
    (x0, y0), *rest = s.points
    if s.curve:
        d = f"M{_f(x0)},{_f(y0)} C" + " ".join(f"{_f(x)},{_f(y)}" for x, y in rest)
    else:
        d = f"M{_f(x0)},{_f(y0)} " + " ".join(f"L{_f(x)},{_f(y)}" for x, y in rest) + " Z"
    return f'<path d="{d}" {style}/>'


def _svg_label(t: Label) -> str:
    weight = ' font-weight="bold"' if t.bold else ""
    anchor = ' text-anchor="middle"' if t.anchor == "middle" else ""
    return (
        f'<text x="{_f(t.x)}" y="{_f(t.y)}" font-size="{_f(t.size)}" fill="{t.color}" '
        f'dominant-baseline="central"{anchor}{weight} xml:space="preserve">{escape(t.text)}</text>'
    )


def _array(a: np.ndarray | None) -> dict[str, Any] | None:
    """An array as JSON data: its shape, its elements when small, its norm; non-finite numbers become null."""
    if a is None:
        return None
    a = np.asarray(a, dtype=float)

    def clean(v: Any) -> Any:
        return [clean(x) for x in v] if isinstance(v, list) else (v if math.isfinite(v) else None)

    norm = float(np.linalg.norm(a))
    return {
        "shape": list(a.shape),
        "values": clean(a.tolist()) if a.size <= MAX_JSON else None,
        "norm": norm if math.isfinite(norm) else None,
    }


def to_json(g: Graph, level: str = "ops") -> dict[str, Any]:
    """The picture of ``g`` as plain data (``json.dumps`` writes it), for other programs to draw.

    Schema ``chainrule-graph/1``::

        {"schema": "chainrule-graph/1", "level": "ops" | "neuron", "loss": name of the output,
         "grads_computed": bool, "width": points, "height": points,
         "nodes": [{"id": str, "label": str, "kind": "parameter" | "data" | "op" | "loss",
                    "formula": the op's formula ("" for a leaf), "doc": the op's formula and derivatives,
                    "shape": [the node's shape],
                    "lines": [the text the picture shows, top to bottom],
                    "x", "y", "width", "height": the box in the picture (points, y down),
                    "graph_nodes": [indices into cr.graph(...).nodes that the box shows],
                    "value": ARRAY, "gradient": ARRAY or null, "gradient_points": ARRAY or null,
                    "params": [PARAM, ...] (the parameters drawn inside this box)}],
         "edges": [{"source": node id, "target": node id, "input": argument position,
                    "lines": [text written on the edge], "params": [PARAM, ...]}]}

    ARRAY is ``{"shape": [...], "values": nested lists (null above 64 elements), "norm": float}``;
    PARAM is ``{"name", "value": ARRAY, "gradient": ARRAY or null}``. A box's value and
    gradient are those of its main node (the SoftPlus output y1 for the lessons' top node).
    ``gradient`` is d(loss)/d(node) with the node's shape (per data point where it has a
    batch axis); ``gradient_points`` the per-point parts of a parameter broadcast over the
    data (they sum to ``gradient``). Numbers that are not finite are null.
    """
    s = _scene(g, level, None)  # data, not a canvas: no size limit
    param = lambda p: {"name": p.name or _label(p), "value": _array(p.value), "gradient": _array(p.grad)}  # noqa: E731
    nodes = [
        {
            "id": b.id,
            "label": b.label,
            "kind": b.kind,
            "formula": b.formula,
            "shape": list(b.main.value.shape),
            "doc": b.main.op.__doc__ if b.main.op is not None else "",
            "lines": [t.text for t in b.lines],
            **{k: round(v, 1) for k, v in vars(s.boxes[b.id]).items()},
            "graph_nodes": [m.index for m in b.members],
            "value": _array(b.main.value),
            "gradient": _array(b.main.grad),
            "gradient_points": _array(b.main.grad_points),
            "params": [param(m) for m in b.members if m is not b.main and m.op is None],
        }
        for b in s.view.boxes
    ]
    for n in nodes:
        n["width"], n["height"] = n.pop("w"), n.pop("h")
    edges = [
        {
            "source": e.source,
            "target": e.target,
            "input": e.position,
            "lines": [t.text for t in e.lines],
            "params": [param(p) for p in e.params],
        }
        for e in s.view.edges
    ]
    head = {"schema": "chainrule-graph/1", "level": level, "loss": _loss_name(g), "grads_computed": g.grads_computed}
    return {**head, "width": round(s.width, 1), "height": round(s.height, 1), "nodes": nodes, "edges": edges}


# ---- the backward pass, node by node ---------------------------------------------------------------


@dataclass
class Incoming:
    """What one user of a node sends back to it: the user's gradient times the local derivative.

    ``upstream`` is d(loss)/d(user); ``derivative`` the registry's formula of d(user)/d(node);
    ``local`` its numbers where the op is elementwise or has one output (else None: a
    matrix product's Jacobian is not drawn); ``product`` the VJP, summed back to the
    node's shape: this user's part of the node's gradient.
    """

    user: Node
    position: int
    upstream: np.ndarray
    derivative: str
    local: np.ndarray | None
    product: np.ndarray


@dataclass
class Step:
    """One node of the backward pass: what arrives from each user, and their sum, the node's gradient."""

    node: Node
    incoming: list[Incoming]
    grad: np.ndarray
    loss: str

    def equation(self, names: dict[int, str] | None = None) -> str:
        """The chain rule at this node: ``dSSR/db3 = dSSR/dPredicted x dPredicted/db3 = -15.66``.

        ``names`` gives unnamed nodes a name by node index (the lessons' picture: ``(y1×w3)``).
        """
        name = lambda m: (names or {}).get(m.index, _label(m))  # noqa: E731
        n, loss = name(self.node), self.loss
        if not self.incoming:
            return f"d{loss}/d{n} = 1 (the start: the output with respect to itself)"
        parts = " + ".join(f"d{loss}/d{name(i.user)} x d{name(i.user)}/d{n}" for i in self.incoming)
        return f"d{loss}/d{n} = {parts} = {_numbers(self.grad)}"

    def details(self, names: dict[int, str] | None = None) -> list[str]:
        """One line per user: the incoming gradient x the local derivative = the product (summed where broadcast)."""
        name = lambda m: (names or {}).get(m.index, _label(m))  # noqa: E731
        return [f"  from {name(i.user)}: {_factor(i)} = {_product(i)}" for i in self.incoming]


def _factor(i: Incoming) -> str:
    local = f" ({_numbers(i.local)})" if i.local is not None else ""
    return f"{_numbers(i.upstream)} x {i.derivative}{local}"


def _product(i: Incoming) -> str:
    """The product, with its per-point parts where the node was broadcast over the points."""
    if i.local is not None and i.local.shape != i.product.shape and i.local.size <= MAX_LIST:
        return f"{_numbers(i.upstream * i.local)}, summed: {_numbers(i.product)}"
    return _numbers(i.product)


class BackwardSteps(list):
    """The reverse pass of a graph with gradients, one :class:`Step` per node, the output first.

    Each step's ``grad`` is the node's ``grad``: the sum of the products that its
    users send back. ``table()`` prints them; :func:`chainrule.plot.draw_backward_step`
    draws step k.
    """

    @classmethod
    def of(cls, g: Graph) -> BackwardSteps:
        if not g.grads_computed:
            raise ValueError(f"backward steps: {NOT_COMPUTED}")
        users: dict[int, list[tuple[Node, int]]] = {}
        for n in g.nodes:
            for k, p in enumerate(n.inputs):
                if p is not None and n.grad is not None and n.op is not None and n.op.vjps[k] is not None:
                    users.setdefault(p.index, []).append((n, k))
        return cls(
            Step(n, [_incoming(n, u, k) for u, k in users.get(n.index, [])], n.grad, _loss_name(g))
            for n in reversed(g.nodes)
            if n.grad is not None
        )

    def table(self) -> str:
        """The steps as a text table: step, node, from which user, incoming x local derivative, product."""
        head = ["step", "node", "from", "incoming x local derivative", "= product"]
        rows: list[list[str]] = []
        for k, s in enumerate(self):
            if not s.incoming:
                rows.append([str(k + 1), _label(s.node), "(start)", "", _numbers(s.grad)])
            for i in s.incoming:
                rows.append([str(k + 1), _label(s.node), _label(i.user), _cut(_factor(i), 60), _product(i)])
            if len(s.incoming) > 1:
                rows.append(["", "", "", "sum of the products", _numbers(s.grad)])
        return f"The backward pass of d{self[0].loss}/d(node), node by node\n" + format_table(head, rows)

    def __str__(self) -> str:
        return self.table()


def _incoming(n: Node, user: Node, k: int) -> Incoming:
    assert user.op is not None and user.grad is not None
    vjp = user.op.vjps[k]
    derivative = user.op.derivs[k] if k < len(user.op.derivs) else user.op.derivs[0]
    product = unbroadcast(np.asarray(vjp(user.grad, user.value, *user.args, **user.kwargs)), n.value.shape)
    local = None
    if user.op in ELEMENTWISE or user.value.size == 1:
        local = np.asarray(vjp(np.ones_like(user.value), user.value, *user.args, **user.kwargs))
    return Incoming(user, k, user.grad, derivative or "", local, product)


def overlaps(s: Scene) -> list[tuple[str, str]]:
    """Pairs of texts in ``s`` whose estimated extents intersect (empty when none do)."""
    found = []
    boxes = [(t.text, t.extent()) for t in s.labels]
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(boxes):
        for b, (bx0, by0, bx1, by1) in boxes[i + 1 :]:
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                found.append((a, b))
    return found
