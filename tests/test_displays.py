"""Notebook displays: History (summary, last rows, loss curve), a model (architecture, counts), an Animation."""

import re
import warnings

import numpy as np

import chainrule as cr
from chainrule import animation

X, Y = cr.data.dosage()


def _b3_history():
    net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
    return cr.fit(net, X, Y, params=["b3"])


def test_history_shows_its_summary_last_rows_and_curve():
    h = _b3_history()
    page = h._repr_html_()
    assert "every step size fell below 0.001 at iteration 10" in page  # the lesson stops at iteration 10
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    assert len(rows) == 1 + 8  # the header and the last eight iterations
    assert re.findall(r"<th[^>]*>(.*?)</th>", rows[0]) == ["iteration", "loss", "b3"]
    first = re.findall(r"<td[^>]*>(.*?)</td>", rows[1])
    # b3 = 0 -> 1.57 -> 2.19 at the start of iteration 3 (MISSION.md's first steps)
    assert first[0] == "3" and abs(float(first[2]) - 2.19) < 0.01
    assert re.findall(r"<td[^>]*>(.*?)</td>", rows[-1])[0] == "10"
    # The SSR falls from 20.42 to about 6e-5: more than two decades, so a log scale.
    assert "<polyline" in page and "loss (log scale): 20.4 to 6.42e-05" in page
    assert "http" not in page


def test_history_of_a_large_parameter_shows_step_norms():
    net = cr.nn.mlp([1, 80, 1], seed=0)  # 0.weight has 80 elements: only norms are kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)  # three iterations, on purpose
        h = cr.fit(net, X, Y, max_iter=3, tol=0.0, monitor=False)
    header = re.findall(r"<th[^>]*>(.*?)</th>", h._repr_html_())
    assert header[:3] == ["iteration", "loss", "|step 0.weight|"]


def test_an_empty_history_still_displays():
    page = cr.History([("b3", ())], tol=0.001)._repr_html_()
    assert "not started" in page and "<svg" not in page


def test_a_model_shows_its_architecture_and_parameter_counts():
    page = cr.nn.mlp([1, 8, 1], activation="softplus")._repr_html_()
    assert "Linear(in_features=1, out_features=8, bias=True)" in page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", page)
    # 8 x 1 weights, 8 biases, 1 x 8 weights, 1 bias: 25 numbers
    assert cells == ["0.weight", "8 x 1", "8", "0.bias", "8", "8", "2.weight", "1 x 8", "8"] + ["2.bias", "1", "1"] + [
        "total",
        "",
        "25",
    ]
    lesson = cr.nn.DosageNetwork.from_lesson()._repr_html_()
    assert lesson.count("scalar") == 7 and "DosageNetwork(w1=3.34" in lesson


def test_an_animation_displays_as_the_offline_player():
    h = _b3_history()
    net = cr.nn.DosageNetwork.from_lesson()
    page = animation.squiggle(net, X, Y, h, frames=2, dpi=15)._repr_html_()
    assert page.startswith('<div id="chainrule-player-') and "http" not in page


def test_a_long_runs_curve_is_thinned_to_the_charts_width_keeping_spikes():
    h = cr.history.History([("b", ())], tol=0.0)
    n = 100_000
    loss = 1.0 / np.arange(1, n + 1)
    loss[54_321] = 5.0  # one iteration's spike
    zeros = np.zeros(n)
    h.record_block(1, loss.tolist(), [zeros], [zeros], [zeros], 0.0)
    page = h._repr_html_()
    assert len(page) < 40_000  # one point per iteration was 1 MB
    points = re.search(r"points='([^']*)'", page).group(1).split()
    assert len(points) <= 4 * 321  # 320 pixel columns of chart (360 - 40), four points each at most
    xy = np.array([p.split(",") for p in points], float)
    # log scale from log10(5) (the spike, at y = 10) to log10(1e-5) (the last, y = 100): y = 10 + 90 (top - v) / span
    top, span = np.log10(5), np.log10(5) + 5
    assert xy[0, 0] == 30.0 and np.isclose(xy[0, 1], 10 + 90 * top / span, atol=0.05)  # iteration 1, loss 1
    assert tuple(xy[-1]) == (350.0, 100.0)  # the last iteration
    assert xy[:, 1].min() == 10.0 and np.isclose(xy[np.argmin(xy[:, 1]), 0], 30 + 320 * 54_321 / (n - 1), atol=0.1)
    assert np.all(np.diff(xy[:, 0]) >= 0)  # in order along the iterations
