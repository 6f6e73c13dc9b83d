"""The lessons, reproduced in the terminal with the true numbers (``chainrule demo``)."""

from __future__ import annotations

import os
import warnings

from .data import dosage
from .history import format_table
from .losses import ssr
from .nn import DosageNetwork
from .optim import GradientDescent
from .picture import graph
from .train import ConvergenceWarning, fit

# Above this SSR the all-parameter fit has not found the squiggle that goes
# through (0, 0), (0.5, 1), (1, 0): it sits in a poor local minimum.
POOR_FIT = 0.1


def _printer():
    """A function printing (title, header, rows) as a table: rich when installed, plain otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:

        def plain(title, head, rows, note=None):
            print(f"\n{title}\n{format_table(head, rows)}")
            if note:
                print(note)

        return plain
    console = Console()

    def fancy(title, head, rows, note=None):
        table = Table()
        for i, h in enumerate(head):
            table.add_column(h, justify="right" if i else "left")
        for r in rows:
            table.add_row(*r)
        console.print()
        console.print(title, style="bold", highlight=False)
        console.print(table)
        if note:
            console.print(note, highlight=False)

    return fancy


def _f(v, digits=4):
    return f"{float(v):.{digits}f}"


def run(seed: int = 0, out: str | None = "chainrule-demo", animations: bool = True) -> None:
    """Print the three lessons: SSR vs b3, descent on b3, on (w3, w4, b3), on all seven; draw them into ``out``
    (and, with ``animations``, their movies: GIF files beside the pictures)."""
    show = _printer()
    x, y = dosage()
    show("The data: drug dosage -> effectiveness", ["dosage", "observed"], [[_f(a, 1), _f(b, 0)] for a, b in zip(x, y)])

    # Lesson 1: the SSR as the bias shifts the green squiggle up and down.
    rows = [[_f(b3, 0), _f(ssr(DosageNetwork.from_lesson(b3=b3)(x), y).item(), 2)] for b3 in (0, 1, 2, 3)]
    show("Lesson 1: SSR against b3 (w1..w4, b1, b2 at the lessons' values)", ["b3", "SSR"], rows)

    # Lesson 1 continued: gradient descent on b3 alone.
    net = DosageNetwork.from_lesson(b3=0.0)
    history = fit(net, x, y, params=["b3"], optimizer=GradientDescent(lr=0.1), tol=0.001)
    trace = history.params["b3"]
    rows = [
        [str(k + 1), _f(v), _f(d), _f(s), _f(v - s)]
        for k, (v, d, s) in enumerate(zip(trace.value, trace.derivative, trace.step))
    ]
    final_ssr = ssr(net(x), y).item()
    show(
        "Gradient descent on b3 from 0, learning rate 0.1: step size = dSSR/db3 x 0.1, new b3 = old b3 - step size",
        ["iteration", "b3", "dSSR/db3", "step size", "new b3"],
        rows,
        f"Stopped: {history.stop_reason}. Final b3 = {net.b3.item():.3f}, SSR = {final_ssr:.2g}.",
    )

    # Lesson 2: w3, w4 and b3 together.
    for lr in (0.01, 0.1):
        _three(show, x, y, lr)

    # Lesson 3: every parameter from a random start.
    seven = _all_seven(show, x, y, seed)
    if out:
        _pictures(out, x, y, history, seven)
    if out and animations:
        _animations(out, x, y, history, seven)
    print("\nTouch them: `chainrule playground` opens these lessons in your browser (step, drag a weight, ...).")


def _pictures(out, x, y, b3_history, runs):
    """The lessons' figures as PNG files in ``out``; says where (or why not)."""
    try:
        from . import plot
    except ImportError:
        print("\nPictures skipped: matplotlib is not installed (pip install 'chainrule[demo]').")
        return
    os.makedirs(out, exist_ok=True)
    before = DosageNetwork.from_lesson(b3=0.0)
    after = DosageNetwork.from_lesson(b3=float(b3_history.params["b3"].new_value[-1]))
    pair = DosageNetwork.from_lesson(w3=0.36, w4=0.63)
    pair_history = fit(pair, x, y, params=["w3", "w4"])
    seed, net, history, loss = runs[0]
    best_seed, best, best_history, best_loss = min(runs, key=lambda run: run[3])
    figures = {
        "squiggle_before.png": plot.squiggle(before, x, y, title="Before: b3 = 0, the green squiggle sits too low"),
        "squiggle_after.png": plot.squiggle(
            after, x, y, title=f"After gradient descent on b3: b3 = {after.b3.item():.3f}"
        ),
        "ssr_vs_b3.png": plot.loss_curve(before, x, y, "b3", history=b3_history),
        "landscape_w3_w4.png": plot.landscape(pair, x, y, ("w3", "w4"), history=pair_history),
        "squiggle_all_seven.png": plot.squiggle(
            net, x, y, title=f"All seven parameters from random start {seed}: SSR {loss:.3g}"
        ),
        "squiggle_best_start.png": plot.squiggle(
            best, x, y, title=f"The best of the random starts (seed {best_seed}): SSR {best_loss:.3g}"
        ),
        "loss_best_start.png": plot.training_curve(best_history),
        "gradients_best_start.png": plot.gradients(best_history),
    }
    for name, fig in figures.items():
        plot.save(fig, os.path.join(out, name))
    # The lessons' graph at b3 = 0 with every node's value and gradient: the neuron picture and every op.
    g, graphs = _lesson_graph(x, y), {}
    for level in ("neuron", "ops"):
        for ext in ("png", "svg"):
            graphs[f"graph_{level}.{ext}"] = plot.save_graph(g, os.path.join(out, f"graph_{level}.{ext}"), level)
    print(f"\nPictures written to {out}{os.sep}: {', '.join([*figures, *graphs])}")


def _animations(out, x, y, b3_history, runs):
    """The lessons as GIF movies in ``out`` (small and few frames: a few seconds); says where (or why not)."""
    try:
        from . import animation
    except ImportError:
        print("\nAnimations skipped: matplotlib is not installed (pip install 'chainrule[demo]').")
        return
    os.makedirs(out, exist_ok=True)
    lesson = DosageNetwork.from_lesson()  # the trained parameters are set frame by frame from each History
    pair = DosageNetwork.from_lesson(w3=0.36, w4=0.63)
    pair_history = fit(pair, x, y, params=["w3", "w4"])
    _, best, best_history, _ = min(runs, key=lambda run: run[3])
    small = {"dpi": 60}
    movies = {
        "loss_step_b3.gif": animation.loss_step(lesson, x, y, "b3", b3_history, **small),
        "squiggle_b3.gif": animation.squiggle(lesson, x, y, b3_history, **small),
        "landscape_w3_w4.gif": animation.landscape(pair, x, y, ("w3", "w4"), pair_history, frames=20, **small),
        "squiggle_best_start.gif": animation.squiggle(best, x, y, best_history, frames=20, **small),
        "backward_pass.gif": animation.backward(_lesson_graph(x, y), level="neuron", dpi=48),
    }
    for name, movie in movies.items():
        movie.save(os.path.join(out, name))
    print(f"Animations written to {out}{os.sep}: {', '.join(movies)}")


def _lesson_graph(x, y):
    """The lessons' network at b3 = 0 with every node's gradient: the graph the first lesson differentiates."""
    net = DosageNetwork.from_lesson(b3=0.0)
    return graph(ssr(net(x), y), grads=True)


def _three(show, x, y, lr):
    net = DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0)
    start = ssr(net(x), y).item()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        history = fit(net, x, y, params=["w3", "w4", "b3"], optimizer=GradientDescent(lr=lr))
    rows = [
        [
            name,
            _f(t.value[0]),
            _f(t.derivative[0]),
            _f(t.step[0]),
            _f(t.value[0] - t.step[0]),
            _f(getattr(net, name).item()),
        ]
        for name, t in history.params.items()
    ]
    show(
        f"Lesson 2: w3, w4, b3 together from w3 = 0.36, w4 = 0.63, b3 = 0 (SSR {start:.2f}), learning rate {lr}",
        ["parameter", "start", "dSSR/dparam", "first step size", "after 1 step", "final"],
        rows,
        f"Stopped: {history.stop_reason}. Final SSR = {ssr(net(x), y).item():.4g}.",
    )


def _all_seven(show, x, y, seed):
    """Lesson 3; returns [(seed, network, history, SSR)] of this start and, after a poor one, of others."""
    runs = [_random_start(x, y, seed)]
    _, net, history, final = runs[0]
    start = DosageNetwork.random(seed=seed)
    rows = [[n, _f(getattr(start, n).item()), _f(getattr(net, n).item())] for n in DosageNetwork.NAMES]
    verdict = (
        f"SSR {final:.3g}: the squiggle goes through the data."
        if final < POOR_FIT
        else f"SSR {final:.3g}: a poor local minimum (or a flat plateau): the steps became tiny far from a "
        "good fit, so gradient descent stopped there. Other random starts:"
    )
    show(
        f"Lesson 3: all seven parameters from a random start (seed {seed}; weights standard normal, biases 0)",
        ["parameter", "start", "final"],
        rows,
        f"Stopped: {history.stop_reason}. {verdict}",
    )
    if final >= POOR_FIT:
        runs += [_random_start(x, y, s) for s in range(seed + 1, seed + 6)]
        rows = [
            [str(s), str(h.n_iter), f"{loss:.3g}", "fits" if loss < POOR_FIT else "poor local minimum"]
            for s, _, h, loss in runs[1:]
        ]
        show("Other random starts", ["seed", "iterations", "final SSR", "verdict"], rows)
    return runs


def _random_start(x, y, seed):
    net = DosageNetwork.random(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        history = fit(net, x, y, optimizer=GradientDescent(lr=0.1))
    return seed, net, history, ssr(net(x), y).item()
