"""The playground's Session, without HTTP: the lessons' numbers, the optimizers' state, the views, the exports.

Expected numbers come from MISSION.md's lessons and from the lessons' formulas written out in NumPy
below (softplus(x) = log(1 + e^x), Predicted = w3 y1 + w4 y2 + b3, SSR = sum (Observed - Predicted)^2).
"""

import base64
import contextlib
import io
import json
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import modelfile
from chainrule.playground import views
from chainrule.playground.content import lessons
from chainrule.playground.session import Session

DOSE, OBSERVED = np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0])
LESSON = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30, "b3": 2.61}


def predicted(p, x=DOSE):
    """The lessons' network by hand."""
    y1 = np.logaddexp(0.0, x * p["w1"] + p["b1"])
    y2 = np.logaddexp(0.0, x * p["w2"] + p["b2"])
    return p["w3"] * y1 + p["w4"] * y2 + p["b3"]


def ssr(p):
    return float(np.sum((OBSERVED - predicted(p)) ** 2))


def values(session):
    return {e["key"]: e["value"] for e in session.state()["elements"]}


def lesson(n):
    s = Session()
    s.apply({"action": "lesson", "id": n})
    return s


def test_lesson_1_one_step_is_the_lessons_first_step():
    s = lesson(1)
    state = s.apply({"action": "step"})
    iteration, loss, key, value, derivative, step, new = state["history"]["rows"][0]
    by_hand = {**LESSON, "b3": 0.0}
    assert (iteration, key, value) == (1, "b3", 0.0)
    assert round(loss, 2) == 20.42 and loss == pytest.approx(ssr(by_hand), rel=1e-12)
    # dSSR/db3 = sum_i -2 (Observed_i - Predicted_i) = -15.66 at b3 = 0 (MISSION.md)
    assert derivative == pytest.approx(float(np.sum(-2 * (OBSERVED - predicted(by_hand)))), rel=1e-12)
    assert round(derivative, 2) == -15.66
    assert step == 0.1 * derivative and new == 0.0 - step  # step size = learning rate x derivative
    assert round(s.value("b3"), 4) == 1.5655 and state["iteration"] == 1 and state["stop_reason"] is None
    # only b3 trains: the other six stay at the lessons' values, bit for bit
    assert {k: v for k, v in values(s).items() if k != "b3"} == {k: v for k, v in LESSON.items() if k != "b3"}


def test_lesson_1_stops_after_ten_steps_at_b3_2_6089():
    s = lesson(1)
    for _ in range(10):
        state = s.apply({"action": "step"})
    assert round(s.value("b3"), 4) == 2.6089 and state["iteration"] == 10
    assert state["converged"] and "0.001" in state["stop_reason"] and "10" in state["stop_reason"]
    assert [round(v, 2) for v in (r[3] for r in state["history"]["rows"][:4])] == [0.0, 1.57, 2.19, 2.44]
    before = s.state()
    with pytest.raises(ValueError, match="the run has stopped"):
        s.apply({"action": "step"})
    assert s.state() == before  # a refused action changes nothing


def test_setting_w3_gives_the_loss_the_formulas_give():
    s = lesson(1)
    state = s.apply({"action": "set_param", "key": "w3", "value": 0.5})
    assert state["loss"] == pytest.approx(ssr({**LESSON, "b3": 0.0, "w3": 0.5}), rel=1e-12)
    # and the slope shown for b3 is -2 sum (Observed - Predicted) at the new w3
    b3 = next(e for e in state["elements"] if e["key"] == "b3")
    hand = float(np.sum(-2 * (OBSERVED - predicted({**LESSON, "b3": 0.0, "w3": 0.5}))))
    assert b3["gradient"] == pytest.approx(hand, rel=1e-12)


def test_lesson_2_starts_at_ssr_1_40_and_trains_w3_w4_b3():
    s = lesson(2)
    state = s.state()
    assert round(state["loss"], 2) == 1.40  # MISSION.md: w3 = 0.36, w4 = 0.63, b3 = 0
    assert state["settings"]["train"] == ["w3", "w4", "b3"] and state["settings"]["lr"] == 0.01
    state = s.apply({"action": "step"})
    assert {r[2] for r in state["history"]["rows"]} == {"w3", "w4", "b3"}


@pytest.mark.parametrize(
    "optimizer, make",
    [
        ("momentum", lambda: cr.optim.Momentum(lr=0.05, momentum=0.9)),
        ("adam", lambda: cr.optim.Adam(lr=0.05)),
    ],
)
def test_clicks_of_momentum_and_adam_equal_fit_bit_for_bit(optimizer, make):
    s = lesson(3)  # all seven from DosageNetwork.random(3)
    s.apply({"action": "settings", "optimizer": optimizer, "lr": 0.05, "tol": 0.0})
    for n in (1, 1, 3, 2):  # separate clicks: the optimizer's state must go on between them
        s.apply({"action": "step", "n": n})
    net = cr.nn.DosageNetwork.random(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = cr.fit(net, DOSE, OBSERVED, optimizer=make(), max_iter=7, tol=0)
    assert values(s) == {n: p.item() for n, p in net.named_parameters()}
    assert s.state()["history"]["loss"] == h.loss


def test_a_changed_learning_rate_goes_on_with_the_same_optimizer_state():
    s = lesson(3)
    s.apply({"action": "settings", "optimizer": "momentum", "lr": 0.05, "tol": 0.0})
    s.apply({"action": "step", "n": 2})
    s.apply({"action": "settings", "lr": 0.02})
    s.apply({"action": "step", "n": 2})
    net = cr.nn.DosageNetwork.random(3)
    trainer = cr.Trainer(net, DOSE, OBSERVED, optimizer=cr.optim.Momentum(lr=0.05), tol=0)
    trainer.step(), trainer.step()
    trainer.optimizer.lr = 0.02
    trainer.step(), trainer.step()
    assert values(s) == {n: p.item() for n, p in net.named_parameters()}


def test_the_link_restores_the_same_state_through_json_and_base64():
    s = lesson(2)
    for action in (
        {"action": "step", "n": 3},
        {"action": "set_param", "key": "w4", "value": 0.7},
        {"action": "set_param", "key": "w4", "value": 0.75},
        {"action": "settings", "optimizer": "adam", "lr": 0.05},
        {"action": "step", "n": 4},
        {"action": "lesson_step", "step": 1},
    ):
        s.apply(action)
    text = base64.urlsafe_b64encode(json.dumps(s.link()).encode()).decode()  # what the page puts in the hash
    again = Session.restore(json.loads(base64.urlsafe_b64decode(text)))
    assert again.state() == s.state()
    assert len(s.link()["actions"]) == 6  # the two set_param of w4 kept as one


def test_a_bad_link_is_refused_in_one_line():
    with pytest.raises(ValueError, match="restore: a link is"):
        Session.restore({"actions": []})
    with pytest.raises(ValueError, match="does not replay: set_param: no parameter 'w9'"):
        Session.restore({"v": 1, "actions": [{"action": "set_param", "key": "w9", "value": 1}]})


@pytest.mark.parametrize(
    "action, message",
    [
        ({"action": "set_param", "key": "w9", "value": 1.0}, "no parameter 'w9'"),
        ({"action": "set_param", "key": "w3", "value": float("nan")}, "value must be"),
        ({"action": "settings", "lr": -1}, "lr must be"),
        ({"action": "settings", "train": ["w3", "nope"]}, "train names 'nope'"),
        ({"action": "settings", "hidden": [2, 0]}, "hidden must be"),
        ({"action": "step", "n": 0}, "n must be"),
        ({"action": "step", "count": 2}, "unknown field 'count'"),
        ({"action": "jump"}, "unknown action 'jump'"),
        ({"action": "set_data", "x": [0, 1], "y": [0]}, "x has 2 rows but y has 1"),
        ({"action": "preset", "name": "moon"}, "no preset 'moon'"),
        ({"action": "lesson_step", "step": 99}, "has steps 0 to 4"),
    ],
)
def test_a_bad_action_says_what_and_changes_nothing(action, message):
    s = lesson(1)
    s.apply({"action": "step", "n": 2})
    before, link = s.state(), s.link()
    with pytest.raises(ValueError, match=message):
        s.apply(action)
    assert s.state() == before and s.link() == link


def test_reset_and_new_start():
    s = lesson(1)
    s.apply({"action": "step", "n": 3})
    state = s.apply({"action": "reset"})
    assert state["iteration"] == 0 and state["history"]["rows"] == [] and s.value("b3") == 0.0
    assert state["runs"][0]["iterations"] == 3
    state = s.apply({"action": "new_start", "seed": 7})
    net = cr.nn.DosageNetwork.random(7)
    assert values(s) == {n: p.item() for n, p in net.named_parameters()} and state["settings"]["seed"] == 7


def test_explain_graph_and_gradcheck_agree_with_backward():
    s = lesson(3)
    s.apply({"action": "step", "n": 2})
    state = s.state()
    net = cr.nn.DosageNetwork(**{e["key"]: e["value"] for e in state["elements"]})
    loss = cr.losses.ssr(net(DOSE[:, None]), OBSERVED[:, None])
    loss.backward()
    backward = {n: p.grad.item() for n, p in net.named_parameters()}
    assert {e["key"]: e["gradient"] for e in state["elements"]} == pytest.approx(backward, rel=1e-12)
    g = views.graph(s)
    assert g["graph"]["schema"] == "chainrule-graph/1" and g["graph"]["level"] == "neuron"
    drawn = {p["name"]: p["gradient"]["values"] for n in g["graph"]["edges"] + g["graph"]["nodes"] for p in n["params"]}
    assert drawn == pytest.approx(backward, rel=1e-12)
    assert g["steps"][0]["equation"].startswith("dSSR/dSSR = 1")
    for key in ("w1", "b3"):
        e = views.explain(s, key)
        assert e["total"] == pytest.approx(backward[key], rel=1e-9) and e["chain"].startswith(f"dSSR/d{key} = ")
        check = views.gradcheck(s, key)
        assert check["ok"] and check["analytical"] == pytest.approx(backward[key], rel=1e-12)


def test_the_squiggle_is_blue_plus_orange_plus_b3():
    s = lesson(2)
    c = views.curves(s, points=50)
    xs = np.array(c["x"])
    p = {**LESSON, "w3": 0.36, "w4": 0.63, "b3": 0.0}
    blue = p["w3"] * np.logaddexp(0, xs * p["w1"] + p["b1"])
    assert c["units"][0]["y"] == pytest.approx(blue.tolist(), rel=1e-12)
    assert c["sum"] == pytest.approx(predicted(p, xs).tolist(), rel=1e-12)
    assert c["points"] == {"x": DOSE.tolist(), "y": OBSERVED.tolist()}


def test_the_loss_curve_and_the_landscape():
    s = lesson(1)
    s.apply({"action": "step", "n": 2})
    curve = views.loss_curve(s, "b3", points=11)
    b3 = s.value("b3")
    assert curve["current"] == b3 and curve["current_loss"] == pytest.approx(ssr({**LESSON, "b3": b3}), rel=1e-12)
    slope = float(np.sum(-2 * (OBSERVED - predicted({**LESSON, "b3": b3}))))
    assert curve["slope"] == pytest.approx(slope, rel=1e-12) and curve["next"] == pytest.approx(b3 - 0.1 * slope)
    assert [round(p["value"], 4) for p in curve["path"]] == [0.0, 1.5655, round(b3, 4)]
    assert curve["loss"][5] == pytest.approx(ssr({**LESSON, "b3": curve["values"][5]}), rel=1e-12)
    land = views.landscape(s, "w3", "b3", points=5)
    assert land["loss"][2][3] == pytest.approx(ssr({**LESSON, "w3": land["xs"][3], "b3": land["ys"][2]}), rel=1e-12)
    assert land["path"][0] == [LESSON["w3"], 0.0]  # w3 is held: the path moves along b3
    assert s.value("b3") == b3  # the views look, they do not touch


def test_the_exported_model_file_loads_and_predicts(tmp_path):
    s = lesson(3)
    s.apply({"action": "run"})
    path = tmp_path / "model.json"
    path.write_text(json.dumps(views.model_file(s)))
    model = modelfile.load(path)
    assert model.sizes == [1, 2, 1] and model.activation == "softplus" and model.features == ["Dosage"]
    xs = np.linspace(0, 1, 7)
    assert model.predict(xs[:, None]) == pytest.approx(predicted(values(s), xs), rel=1e-12, abs=1e-12)


def test_the_code_snippet_reproduces_the_run():
    s = lesson(3)
    s.apply({"action": "settings", "optimizer": "adam", "lr": 0.05})
    s.apply({"action": "step", "n": 40})
    namespace = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(views.code(s), namespace)  # noqa: S102  (our own snippet)
    assert {n: p.item() for n, p in namespace["net"].named_parameters()} == values(s)


def test_history_csv_has_the_lessons_table():
    s = lesson(1)
    s.apply({"action": "step", "n": 2})
    lines = views.history_csv(s).splitlines()
    assert lines[0] == "iteration,loss,param,value,derivative,step,new"
    assert lines[1].split(",")[:3] == ["1", repr(s.state()["history"]["loss"][0]), "b3"]
    assert len(lines) == 3


def test_a_lesson_prompt_reveals_the_engines_number():
    s = lesson(1)
    state = s.apply({"action": "lesson_step", "step": 2})  # "What is dSSR/db3 at b3 = 0?"
    assert state["hidden_controls"] and "optimizer" in state["hidden_controls"]
    state = s.apply({"action": "answer", "value": -14.0})
    hand = float(np.sum(-2 * (OBSERVED - predicted({**LESSON, "b3": 0.0}))))
    assert state["lesson"]["answer"] == {"given": -14.0, "expected": pytest.approx(hand), "correct": False}
    assert s.apply({"action": "answer", "value": -15.7})["lesson"]["answer"]["correct"]  # the lesson's -15.7


def test_every_lesson_has_a_prompt_and_opens():
    for content in lessons():
        assert any("prompt" in step for step in content["steps"])
        s = lesson(content["id"])
        s.apply({"action": "step"})


def test_a_wider_network_and_cross_entropy():
    s = lesson(1)
    state = s.apply({"action": "settings", "hidden": [3], "activation": "tanh"})
    assert state["network"] == {"kind": "mlp", "sizes": [1, 3, 1], "activation": "tanh"}
    assert state["settings"]["train"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    s.apply({"action": "step", "n": 3})
    c = views.curves(s, points=9)
    w, b = np.array(s.state()["parameters"][2]["value"]), s.state()["parameters"][3]["value"][0]
    assert len(c["units"]) == 3 and c["bias"] == b
    assert np.sum([u["y"] for u in c["units"]], axis=0) + b == pytest.approx(c["sum"], rel=1e-12)
    assert w.shape == (1, 3)
    state = s.apply({"action": "set_data", "x": [0, 0.2, 0.8, 1], "y": ["no", "no", "yes", "yes"]})
    assert state["settings"]["loss"] == "cross-entropy" and state["data"]["classes"] == ["no", "yes"]
    assert state["network"]["sizes"] == [1, 3, 2]
    notes = [e["message"] for e in state["events"] if e["kind"] == "note"]  # said, not done silently
    assert len(notes) == 1 and "'no'" in notes[0] and "cross-entropy (was SSR)" in notes[0]
    s.apply({"action": "step", "n": 5})
    probabilities = np.array([c["y"] for c in views.curves(s, points=5)["classes"]])
    assert probabilities.sum(axis=0) == pytest.approx(np.ones(5))


def test_restarts_keep_the_best_start():
    s = lesson(3)
    state = s.apply({"action": "restarts", "n": 4, "seed": 1})
    r = state["restarts"]
    assert len(r["losses"]) == 4 and r["best"] == int(np.argmin(r["losses"])) and state["stop_reason"]


def test_divergence_is_recorded_not_raised():
    s = lesson(3)
    s.apply({"action": "settings", "lr": 1e100})
    state = s.apply({"action": "step", "n": 20})
    assert state["diverged"] and state["events"][-1]["kind"] == "diverged"
    assert state["iteration"] == 2 and state["loss"] == state["history"]["loss"][0]  # the best seen, put back
    json.dumps(state, allow_nan=False)  # no NaN reaches the page


def test_explain_names_the_graph_nodes_on_the_parameters_paths():
    s = lesson(1)
    nodes = {n["graph_nodes"][0]: n for n in views.graph(s, "ops")["graph"]["nodes"]}
    e = views.explain(s, "w1")
    labels = {nodes[i]["label"] for i in e["path_nodes"] if i in nodes}
    assert {"w1", "x1", "y1", "Predicted", "SSR"} <= labels and not labels & {"w2", "x2", "y2", "b3"}
    assert all(a in e["path_nodes"] and b in e["path_nodes"] for a, b in e["path_edges"])


def test_the_state_shows_the_latest_rows_and_the_rest_come_by_pages():
    s = lesson(3)
    s.apply({"action": "run"})
    total = 7 * s.iteration  # one row per parameter per iteration
    assert total > 2000
    state = s.state()["history"]
    assert state["total_rows"] == total and len(state["rows"]) == 2000 and state["rows_from"] == total - 2000
    assert state["rows"][0] == s.history_rows(total - 2000, 1)["rows"][0] and state["rows"][-1][0] == s.iteration
    assert s.history_rows(0)["rows"][0][:3] == [1, state["loss"][0], "w1"]


def test_the_run_as_a_gif_where_chainrule_animation_is_there():
    pytest.importorskip("chainrule.animation")
    s = lesson(2)
    s.apply({"action": "step", "n": 5})
    assert views.animation(s, "landscape", x="w3", y="w4").startswith(b"GIF8")


def test_the_pictures_are_chainrule_plots_of_the_session():
    import matplotlib

    matplotlib.use("Agg")
    from chainrule import plot

    s = lesson(1)
    net = cr.nn.DosageNetwork.from_lesson(b3=0.0)
    fig = plot.graph(cr.graph(cr.losses.ssr(net(DOSE), OBSERVED), grads=True), "neuron")
    expected = io.BytesIO()
    fig.savefig(expected, format="png", dpi=110)
    assert views.image(s, "graph", "png") == expected.getvalue()  # with every gradient (dSSR/db3 = -15.66)
    assert "-15.66" in views.image(s, "graph", "svg").decode()
    with pytest.raises(ValueError, match="at least one iteration"):
        views.image(s, "training")


TEACHER = {
    "id": 4,
    "title": "Momentum on b3",
    "settings": {"optimizer": "momentum", "lr": 0.05, "train": ["b3"]},
    "start": {"values": {"b3": 0.0}},
    "steps": [{"text": "Watch the ball overshoot.", "prompt": {"question": "SSR now?", "answer": {"kind": "loss"}}}],
}


def test_a_teachers_lesson_file_opens(tmp_path):
    (tmp_path / "04-momentum.json").write_text(json.dumps(TEACHER))
    library = lessons(tmp_path)
    assert [x["id"] for x in library] == [1, 2, 3, 4]
    s = Session([{"action": "lesson", "id": 4}], lessons=library)
    state = s.apply({"action": "answer", "value": 20.0})
    assert state["settings"]["optimizer"] == "momentum" and state["lesson"]["answer"]["expected"] == pytest.approx(
        ssr({**LESSON, "b3": 0.0}), rel=1e-12
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": []}, "04.json: steps must be a list of at least one step"),
        ({"id": 1}, "two lessons have the same id"),
        ({"steps": [{"text": "x", "focus": ["sky"]}]}, r"steps\[0\].focus names \['sky'\]"),
        ({"steps": [{"text": "x", "prompt": {"question": "?", "answer": {"kind": "guess"}}}]}, "answer.kind"),
        ({"start": {"from": 1}}, "start is"),
    ],
)
def test_a_bad_lesson_file_is_named_in_one_line(tmp_path, change, message):
    (tmp_path / "04.json").write_text(json.dumps({**TEACHER, **change}))
    with pytest.raises(ValueError, match=message):
        lessons(tmp_path)


def test_a_lesson_starts_afresh_whatever_came_before(tmp_path):
    wide = {"id": 5, "title": "Three units", "settings": {"hidden": [3]}, "steps": [{"text": "Three curves."}]}
    (tmp_path / "05-wide.json").write_text(json.dumps(wide))
    library = lessons(tmp_path)
    s = Session([{"action": "lesson", "id": 5}], lessons=library)
    s.apply({"action": "step", "n": 3})  # the same network as the lesson's, trained a little
    s.apply({"action": "set_param", "key": "2.bias[0]", "value": 4.0})
    s.apply({"action": "lesson", "id": 5})
    assert s.state() == Session([{"action": "lesson", "id": 5}], lessons=library).state()
    assert s.link() == {"v": 1, "actions": [{"action": "lesson", "id": 5}]}  # what came before is dropped
