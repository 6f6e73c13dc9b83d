"""The playground in a real browser: Debian's Chromium driven by Playwright against the real server.

The page's stable hooks (docs/playground.md and issue 13, point 6): ``[data-param=KEY]`` holds each
parameter's full-precision value in ``data-value``, ``[data-loss]`` and ``[data-iteration]`` likewise,
buttons ``[data-action=step|step10|play|run|reset]``, the learning rate ``[data-control=lr]``;
``body[data-busy="0"]`` says that every request the page made has been answered and drawn.

Expected numbers come from the lessons (b3: 0 -> 1.5655, SSR 20.42 before the first step, 2.6089
after ten steps), from the lessons' formulas written out in NumPy below, or from ``cr.fit`` itself
where the claim is "the page runs the same Trainer" (N clicks equal ``fit(max_iter=N, tol=0)``).

Without Chromium (or Playwright) the tests skip; with the environment variable CI set they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import chainrule as cr
from chainrule.nn import DosageNetwork
from chainrule.optim import Adam, Momentum

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LESSON = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.3, "b3": 0.0}
NAMES = ["w1", "b1", "w2", "b2", "w3", "w4", "b3"]


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    for module in ("playwright.sync_api", "fastapi", "uvicorn", "chainrule.playground.server"):
        try:
            __import__(module)
        except ImportError as e:
            return f"{module} cannot be imported ({e}): pip install -e '.[test]'"
    return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The real playground server (create_app under uvicorn) on a free loopback port, in a thread."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run under CI: {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    import uvicorn

    from chainrule.playground.server import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(host="127.0.0.1", port=port), log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the playground server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page of its own (a fresh browser context: a fresh session) that logs every request it makes."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, fragment: str = "") -> Page:
        self.page.goto(self.base + "/" + fragment)
        return self.settled()

    def settled(self) -> Page:
        """Wait until every request the page made has been answered and drawn."""
        self.page.wait_for_timeout(30)
        self.page.wait_for_function("document.body.dataset.busy === '0'", timeout=20_000)
        return self

    def click(self, action: str, times: int = 1) -> Page:
        for _ in range(times):
            self.page.click(f'[data-action="{action}"]')
            self.settled()
        return self

    def choose(self, control: str, value: str) -> Page:
        self.page.select_option(f'[data-control="{control}"]', value)
        return self.settled()

    def number(self, selector: str) -> float:
        return float(self.page.get_attribute(selector, "data-value"))

    def param(self, key: str) -> float:
        return self.number(f'[data-param="{key}"]')

    def params(self) -> dict[str, float]:
        return {k: self.param(k) for k in NAMES}

    def loss(self) -> float:
        return self.number("[data-loss]")

    def iteration(self) -> int:
        return int(self.number("[data-iteration]"))

    def close(self) -> None:
        outside = [u for u in self.requests if not u.startswith(self.base + "/")]
        self.context.close()
        assert not outside, f"the page asked the internet: {outside}"
        assert not self.errors, f"JavaScript errors: {self.errors}"


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Page]:
    p = Page(browser, server)
    yield p
    p.close()  # every request went to the local server, and no script failed


def ssr_by_hand(values: dict[str, float], x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The lessons' network and SSR written out (MISSION.md): the loss, and the prediction at x."""

    def predict(inputs: np.ndarray) -> np.ndarray:
        y1 = np.log1p(np.exp(inputs * values["w1"] + values["b1"]))
        y2 = np.log1p(np.exp(inputs * values["w2"] + values["b2"]))
        return y1 * values["w3"] + y2 * values["w4"] + values["b3"]

    return float(np.sum((y - predict(x)) ** 2)), predict


DOSES = np.array([0.0, 0.5, 1.0])
EFFECT = np.array([0.0, 1.0, 0.0])


# ---- lesson 1 ------------------------------------------------------------------------------------


def test_lesson_1_one_step_then_ten(page: Page) -> None:
    page.open("#lesson=1")
    assert page.params() == LESSON  # the lessons' values, b3 = 0
    assert page.page.input_value('[data-control="lr"]') == "0.1"
    assert round(page.loss(), 2) == 20.42
    page.click("step")
    assert page.iteration() == 1
    assert round(page.param("b3"), 4) == 1.5655  # 0 - 0.1 x (-15.655)
    first = page.page.locator("#trace tbody tr").first
    assert round(float(first.locator("td").nth(1).get_attribute("title")), 2) == 20.42  # the SSR before the step
    assert round(float(first.locator("td").nth(3).get_attribute("title")), 2) == -15.66  # dSSR/db3 at b3 = 0
    page.click("step10")  # the stop rule ends the run at iteration 10 (the lessons: 10 iterations)
    assert page.iteration() == 10
    assert round(page.param("b3"), 4) == 2.6089
    reason = page.page.text_content("[data-stop-reason]")
    assert "0.001" in reason and "10" in reason, reason
    assert page.page.locator("#trace tbody tr").count() == 10  # the lessons' table, one row per iteration
    assert page.page.is_disabled('[data-action="step"]')


def test_dragging_w3_moves_the_squiggle_and_the_loss(page: Page) -> None:
    page.open("#lesson=1")
    before = page.page.get_attribute("#squiggle", "data-sum")
    chip = page.page.locator('#network .param-chip[data-key="w3"]')
    box = chip.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.page.mouse.move(x, y)
    page.page.mouse.down()
    for dx in (10, 30, 60):
        page.page.mouse.move(x + dx, y)
    page.page.mouse.up()
    page.settled()
    page.page.wait_for_timeout(100)
    page.settled()
    w3 = page.param("w3")
    assert w3 > LESSON["w3"] + 0.3  # dragged right by 60 px at 0.01 per px
    # Hovering the parameter's row lights it everywhere: its chip on the network, its edge in the graph.
    page.page.hover('#params [data-key="w3"] .name')
    assert "hot" in page.page.get_attribute('#network .param-chip[data-key="w3"]', "class")
    assert "hot" in page.page.get_attribute('#graph .graph-param[data-key="w3"]', "class")
    values = {**LESSON, "w3": w3}
    loss, predict = ssr_by_hand(values, DOSES, EFFECT)
    assert page.loss() == pytest.approx(loss, rel=1e-12)
    after = page.page.get_attribute("#squiggle", "data-sum")
    assert after != before
    xs = np.array(_json(page.page.get_attribute("#squiggle", "data-x")))
    np.testing.assert_allclose(_json(after), predict(xs), rtol=1e-12, atol=1e-12)


def _json(text: str | None) -> Any:
    import json

    assert text
    return json.loads(text)


def test_graph_shows_every_gradient_as_backward_computes_it(page: Page) -> None:
    page.open("#lesson=1")
    net = DosageNetwork.from_lesson(b3=0.0)
    x, y = cr.data.dosage()
    loss = cr.losses.ssr(net(x), y)
    loss.backward()
    backward = {name: float(p.grad) for name, p in net.named_parameters()}
    # The lessons' drawing: each weight and bias with its gradient on the edges and in the sum node.
    for name in NAMES:
        where = page.page.locator(f'#graph [data-key="{name}"][data-gradient]').first
        shown = _json(where.get_attribute("data-gradient"))
        assert shown == pytest.approx([backward[name]], rel=1e-12), name
    # Every op: each box has its gradient; dSSR/dPredicted_i = -2 (Observed_i - Predicted_i) by hand.
    page.choose("graph-level", "ops")
    boxes = page.page.locator("#graph .graph-node")
    assert boxes.count() == 22
    grads = {}
    for i in range(boxes.count()):
        label = boxes.nth(i).get_attribute("data-label")
        gradient = _json(boxes.nth(i).get_attribute("data-gradient"))
        assert gradient is not None and all(np.isfinite(gradient)), label
        grads[label] = gradient
    _, predict = ssr_by_hand(LESSON, DOSES, EFFECT)
    np.testing.assert_allclose(grads["Predicted"], -2 * (EFFECT - predict(DOSES)), rtol=1e-12)
    for name in NAMES:
        assert grads[name] == pytest.approx([backward[name]], rel=1e-12), name
    assert grads["SSR"] == [1.0]
    # "check": backward against a central difference of the loss, per parameter.
    page.page.click('#params [data-key="w1"] button')
    page.settled()
    assert page.page.get_attribute("#message", "class") == "info"
    assert "agree" in page.page.text_content("#message") and "disagree" not in page.page.text_content("#message")
    # Clicking w1 lights its chain-rule paths (top node, Predicted, SSR; not the data) and prints explain's table.
    page.choose("graph-level", "neuron")
    page.page.click('#graph .graph-param[data-key="w1"]')
    page.settled()
    lit = page.page.locator("#graph .graph-node.lit-box")
    assert sorted(lit.nth(i).get_attribute("data-node") for i in range(lit.count())) == ["Predicted", "loss", "top"]
    table = page.page.text_content('#explain pre[data-explain="w1"]')
    assert "dSSR/dw1 = sum_i dSSR/dPredicted_i" in table and "7.33" in table  # 7.339, the edge's dSSR/dw1
    # The backward-step control walks the reverse pass, output first.
    page.click("backward-start")
    assert "step 1 of 22" in page.page.text_content("#backward-text")
    page.click("backward-step", 3)
    assert "step 4 of 22" in page.page.text_content("#backward-text")


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optimizer_state_is_kept_across_clicks(page: Page, optimizer: str) -> None:
    page.open("#lesson=2")  # w3 = 0.36, w4 = 0.63, b3 = 0; w3, w4, b3 train; learning rate 0.01
    assert {k: page.param(k) for k in ("w3", "w4", "b3")} == {"w3": 0.36, "w4": 0.63, "b3": 0.0}
    assert round(page.loss(), 2) == 1.40  # the lesson: SSR = 1.4 at the start
    page.click("leave-lesson")  # free play from the lesson's values: every control shows
    page.choose("optimizer", optimizer)
    clicks = 4
    page.click("step", clicks)
    assert page.iteration() == clicks
    net = DosageNetwork.from_lesson(w3=0.36, w4=0.63, b3=0.0)
    x, y = cr.data.dosage()
    opt = Momentum(lr=0.01) if optimizer == "momentum" else Adam(lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.ConvergenceWarning)
        cr.fit(net, x, y, optimizer=opt, params=["w3", "w4", "b3"], max_iter=clicks, tol=0)
    want = {name: float(p.item()) for name, p in net.named_parameters()}
    assert page.params() == pytest.approx(want, rel=1e-12, abs=1e-15)


# ---- data: upload, a bad upload ------------------------------------------------------------------


def test_a_csv_upload_trains(page: Page, tmp_path: Path) -> None:
    page.open("#lesson=1")
    csv = tmp_path / "doses.csv"
    csv.write_text("dose,effect\n0,0\n0.25,0.4\n0.5,1\n0.75,0.5\n1,0\n")
    page.page.set_input_files('[data-control="upload"]', str(csv))
    page.settled()
    assert "doses.csv" in page.page.text_content("#message")
    assert page.page.get_attribute("#squiggle", "data-sum")  # the squiggle is drawn over the new points
    assert page.page.locator("#squiggle circle.point").count() == 5
    start = page.loss()
    page.click("run")  # b3 alone, as lesson 1 trains: SSR is a parabola in b3, so the run is short
    assert page.page.text_content("[data-stop-reason]")
    assert page.iteration() >= 1
    assert page.loss() < start


def test_class_labels_switch_the_loss_and_say_so(page: Page, tmp_path: Path) -> None:
    page.open("#lesson=1")
    csv = tmp_path / "labels.csv"
    csv.write_text("dose,effect\n0,low\n0.5,high\n1,low\n")
    page.page.set_input_files('[data-control="upload"]', str(csv))
    page.settled()
    note = page.page.locator('[data-badge="info"]')
    assert note.count() == 1
    assert "cross-entropy (was SSR)" in note.text_content()


def test_a_bad_upload_says_so_and_changes_nothing(page: Page, tmp_path: Path) -> None:
    page.open("#lesson=1")
    page.click("step")
    before = (page.params(), page.loss(), page.iteration(), page.page.get_attribute("#squiggle", "data-sum"))
    bad = tmp_path / "bad.csv"
    bad.write_text("dose,effect\n0,0\n0.5\n1,0\n")  # line 3 has one cell
    page.page.set_input_files('[data-control="upload"]', str(bad))
    page.settled()
    message = page.page.locator("#message")
    assert message.get_attribute("class") == "error"
    text = message.text_content()
    assert "bad.csv" in text and "not loaded" in text, text
    assert "line 3" in text, text  # the reader's line says where
    after = (page.params(), page.loss(), page.iteration(), page.page.get_attribute("#squiggle", "data-sum"))
    assert after == before
    # A bad learning rate likewise: one line, and the control shows the learning rate still in use.
    page.page.fill('[data-control="lr"]', "-1")
    page.page.press('[data-control="lr"]', "Enter")
    page.settled()
    assert page.page.get_attribute("#message", "class") == "error"
    assert "lr" in page.page.text_content("#message")
    assert page.page.input_value('[data-control="lr"]') == "0.1"


# ---- the state in the URL ------------------------------------------------------------------------


def test_a_shared_link_opens_the_same_state(page: Page, browser: Any, server: str) -> None:
    page.open("#lesson=2")
    page.click("leave-lesson")
    page.choose("optimizer", "adam")
    page.page.fill('[data-control="lr"]', "0.05")
    page.page.press('[data-control="lr"]', "Enter")
    page.settled()
    page.click("step", 3)
    page.choose("curve-param", "w4")
    url = page.page.url
    assert "#s=" in url
    want = (page.params(), page.loss(), page.iteration(), page.page.input_value('[data-control="lr"]'))
    page.page.reload()  # the same tab
    page.settled()
    assert (page.params(), page.loss(), page.iteration(), page.page.input_value('[data-control="lr"]')) == want
    other = Page(browser, server)  # another browser, another session: the link replays the actions
    try:
        other.page.goto(url)
        other.settled()
        got = (other.params(), other.loss(), other.iteration(), other.page.input_value('[data-control="lr"]'))
        assert got == want
        assert other.page.input_value('[data-control="curve-param"]') == "w4"
        assert other.page.input_value('[data-control="optimizer"]') == "adam"
    finally:
        other.close()


def test_points_are_added_and_deleted_with_the_mouse(page: Page) -> None:
    page.open("#lesson=1")
    svg = page.page.locator("#squiggle")
    box = svg.bounding_box()
    page.page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4)  # inside the plot
    page.settled()
    assert page.page.locator("#squiggle circle.point").count() == 4
    assert page.page.text_content("#server-state").count("4 points") == 1
    page.page.locator("#squiggle circle.point").nth(1).click(button="right")  # delete the dosage 0.5
    page.settled()
    assert page.page.locator("#squiggle circle.point").count() == 3
    page.click("step")
    assert page.iteration() == 1


def test_play_and_pause(page: Page) -> None:
    page.open("#lesson=2")
    page.page.click('[data-action="play"]')
    page.page.wait_for_function("Number(document.querySelector('[data-iteration]').dataset.value) >= 3")
    page.page.click('[data-action="play"]')  # pause
    page.settled()
    page.page.wait_for_timeout(400)
    page.settled()
    paused = page.iteration()
    page.page.wait_for_timeout(400)
    assert page.iteration() == paused >= 3


def test_exports_gif_svg_and_the_model_file(page: Page, tmp_path: Path) -> None:
    from PIL import Image

    page.open("#lesson=1")
    page.click("step", 4)

    def download(selector: str) -> Path:
        with page.page.expect_download() as d:
            page.page.click(selector)
        path = tmp_path / d.value.suggested_filename
        d.value.save_as(path)
        return path

    gif = Image.open(download('[data-action="gif"]'))  # our own encoder, decoded by Pillow
    assert gif.format == "GIF" and gif.n_frames == 5  # the start and four steps
    import xml.etree.ElementTree as ET

    svg = ET.parse(download('[data-export="squiggle"][data-format="svg"]')).getroot()
    assert svg.tag.endswith("svg")
    png = Image.open(download('[data-export="loss-view"][data-format="png"]'))
    assert png.format == "PNG" and png.width > 500
    model = cr.modelfile.load(download('[data-action="model"]'))
    values = {**LESSON, "b3": page.param("b3")}
    _, predict = ssr_by_hand(values, DOSES, EFFECT)
    np.testing.assert_allclose(model.predict(DOSES.reshape(-1, 1)).ravel(), predict(DOSES), rtol=1e-12)


def test_lesson_3_trains_all_seven_from_a_random_start(page: Page) -> None:
    page.open("#lesson=3")
    ticks = page.page.locator("#params input[type=checkbox]")
    assert [ticks.nth(i).is_checked() for i in range(7)] == [True] * 7
    start = page.params()
    assert [start[b] for b in ("b1", "b2", "b3")] == [0.0, 0.0, 0.0]  # biases start at 0, weights drawn
    assert start != LESSON
    seed = int(page.page.text_content("#seed"))
    page.click("step", 2)
    page.click("randomize")  # a new start: the next seed, the run from its beginning
    assert int(page.page.text_content("#seed")) == seed + 1
    assert page.iteration() == 0 and page.params() != start
