"""The playground's JSON API through HTTP (fastapi.testclient): sessions, uploads, the guard, exports, the command."""

import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from chainrule import cli, modelfile  # noqa: E402
from chainrule.playground import server  # noqa: E402
from chainrule.playground.server import MAX_UPLOAD, create_app  # noqa: E402

TAB = {"X-Session": "tab-1"}
DOSAGE_CSV = b"dosage,effect\n0,0\n0.5,1\n1,0\n0.25,0.4\n0.75,0.6\n"


@pytest.fixture
def client():
    return TestClient(create_app(port=8765), base_url="http://127.0.0.1:8765", headers=TAB)


def act(client, action, headers=TAB):
    r = client.post("/api/action", json=action, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_lesson_1_over_http(client):
    act(client, {"action": "lesson", "id": 1})
    state = act(client, {"action": "step"})
    assert round(state["history"]["loss"][0], 2) == 20.42
    assert round(next(e["value"] for e in state["elements"] if e["key"] == "b3"), 4) == 1.5655
    state = act(client, {"action": "step", "n": 9})
    assert round(state["elements"][-1]["value"], 4) == 2.6089 and state["converged"]
    r = client.post("/api/action", json={"action": "step"}, headers=TAB)
    assert r.status_code == 400 and r.json()["error"].startswith("step: the run has stopped")


def test_sessions_are_one_per_tab(client):
    act(client, {"action": "lesson", "id": 1})
    act(client, {"action": "step", "n": 3})
    other = client.get("/api/state", headers={"X-Session": "tab-2"}).json()
    assert other["iteration"] == 0 and client.get("/api/state", headers=TAB).json()["iteration"] == 3
    r = client.get("/api/state", headers={"X-Session": "no spaces/here"})
    assert r.status_code == 400 and "X-Session" in r.json()["error"]


def test_a_csv_upload_trains(client):
    r = client.post("/api/upload", files={"file": ("my data.csv", DOSAGE_CSV)}, headers=TAB)
    assert r.status_code == 200, r.text
    state = r.json()
    assert state["data"]["source"] == "upload:my_data.csv" and state["data"]["target"] == "effect"
    assert state["data"]["x"] == [[0.0], [0.5], [1.0], [0.25], [0.75]] and state["data"]["rows"] == 5
    before = state["loss"]
    state = act(client, {"action": "run"})
    assert state["stop_reason"] and state["loss"] < before
    # the upload is in the link as points: a fresh tab restores it
    link = client.get("/api/link", headers=TAB).json()["link"]
    again = client.post("/api/restore", json={"link": link}, headers={"X-Session": "tab-9"}).json()
    assert again["data"]["y"] == state["data"]["y"] and again["elements"] == state["elements"]


def test_an_upload_names_its_columns(client):
    csv = b"effect,dosage,noise\n0,0,1\n1,0.5,2\n0,1,3\n"
    r = client.post("/api/upload", files={"file": ("d.csv", csv)}, data={"target": "effect", "features": "dosage"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["features"] == ["dosage"] and r.json()["data"]["y"] == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"dosage,effect\n0,0\nhigh,1\n", "bad.csv line 3, column 'dosage': 'high' is not a number"),
        (b"", "bad.csv is empty"),
        (b"dosage,effect\n0,0\n1\n", "bad.csv line 3"),
    ],
)
def test_a_bad_upload_says_why_and_changes_nothing(client, content, message):
    act(client, {"action": "lesson", "id": 2})
    act(client, {"action": "step", "n": 2})
    before = client.get("/api/state", headers=TAB).json()
    r = client.post("/api/upload", files={"file": ("bad.csv", content)}, headers=TAB)
    assert r.status_code == 400 and message in r.json()["error"]
    assert "\n" not in r.json()["error"] and "/tmp" not in r.json()["error"]
    assert client.get("/api/state", headers=TAB).json() == before


def test_uploads_are_capped(client):
    big = b"a,b\n" + b"1,2\n" * (MAX_UPLOAD // 4 + 1)
    r = client.post("/api/upload", files={"file": ("big.csv", big)}, headers=TAB)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = client.post("/api/action", content=b"x" * (server.MAX_BODY + 1), headers=TAB)
    assert r.status_code == 413


@pytest.mark.parametrize(
    "host, status",
    [
        ("127.0.0.1:8765", 200),
        ("localhost:8765", 200),
        ("[::1]:8765", 200),
        ("127.0.0.1", 200),
        ("evil.example:8765", 403),
        ("127.0.0.1.evil.example", 403),
        ("localhost:9999", 403),
        ("", 403),
    ],
)
def test_the_host_header_must_be_loopback(client, host, status):
    r = client.get("/api/state", headers={"Host": host})
    assert r.status_code == status
    if status == 403:
        assert "refused" in r.json()["error"]
    r = client.get("/", headers={"Host": host})
    assert r.status_code == status


def test_no_cors_headers(client):
    r = client.get("/api/state", headers={"Origin": "http://evil.example"})
    assert not any(k.lower().startswith("access-control") for k in r.headers)
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    r = client.options("/api/action", headers=preflight)
    assert not any(k.lower().startswith("access-control") for k in r.headers)


def test_the_page_is_served_from_the_package(client):
    r = client.get("/")
    assert r.status_code == 200 and "<html" in r.text.lower()
    assert client.get("/api/nothing").status_code == 404


def test_the_views_over_http(client):
    act(client, {"action": "lesson", "id": 1})
    act(client, {"action": "step", "n": 2})
    assert len(client.get("/api/curves?points=20").json()["x"]) == 20
    curve = client.get("/api/loss_curve?key=b3&points=11").json()
    assert len(curve["values"]) == 11 and len(curve["path"]) == 3
    assert client.get("/api/landscape?x=w3&y=w4&points=5").json()["loss"][0][0] is not None
    assert client.get("/api/graph?level=ops").json()["graph"]["level"] == "ops"
    assert client.get("/api/explain?key=w1").json()["chain"].startswith("dSSR/dw1")
    assert client.get("/api/gradcheck?key=b3").json()["ok"] is True
    r = client.get("/api/loss_curve?key=b3&points=many")
    assert r.status_code == 400 and r.json() == {"error": "points must be an integer, got 'many'"}
    assert client.get("/api/lessons/7").status_code == 404
    assert [x["id"] for x in client.get("/api/lessons").json()] == [1, 2, 3]
    assert client.get("/api/lessons/1").json()["steps"][0]["text"]
    assert "dosage" in [p["name"] for p in client.get("/api/presets").json()]


def test_the_exports_over_http(client, tmp_path):
    act(client, {"action": "lesson", "id": 3})
    state = act(client, {"action": "run"})
    r = client.get("/api/export/model")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    path = tmp_path / "model.json"
    path.write_bytes(r.content)
    model = modelfile.load(path)
    x = np.array(state["data"]["x"])
    # the network by hand at the exported values: Predicted = w3 softplus(x w1 + b1) + w4 softplus(x w2 + b2) + b3
    p = {e["key"]: e["value"] for e in state["elements"]}
    hand = p["w3"] * np.logaddexp(0, x * p["w1"] + p["b1"]) + p["w4"] * np.logaddexp(0, x * p["w2"] + p["b2"]) + p["b3"]
    assert model.predict(x) == pytest.approx(hand[:, 0], rel=1e-12)
    csv = client.get("/api/export/history.csv").text.splitlines()
    assert csv[0] == "iteration,loss,param,value,derivative,step,new" and len(csv) == 1 + 7 * state["iteration"]
    assert "cr.fit(" in client.get("/api/export/code").json()["code"]
    png = client.get("/api/export/view?view=squiggle&format=png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    svg = client.get("/api/export/view?view=graph&format=svg")
    assert svg.status_code == 200 and svg.text.startswith("<svg")
    assert client.get("/api/export/view?view=nope").status_code == 400


def test_a_bad_restore_keeps_the_session(client):
    act(client, {"action": "lesson", "id": 1})
    act(client, {"action": "step"})
    before = client.get("/api/state", headers=TAB).json()
    r = client.post("/api/restore", json={"link": {"v": 1, "actions": [{"action": "fly"}]}}, headers=TAB)
    assert r.status_code == 400 and "unknown action 'fly'" in r.json()["error"]
    assert client.get("/api/state", headers=TAB).json() == before


def test_data_given_to_the_server_starts_every_session(tmp_path):
    path = tmp_path / "dose.csv"
    path.write_bytes(DOSAGE_CSV)
    c = TestClient(create_app(str(path), "effect"), base_url="http://127.0.0.1")
    state = c.get("/api/state").json()
    assert state["data"]["rows"] == 5 and state["data"]["source"] == "file:dose.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\nx,3\n")
    with pytest.raises(ValueError, match=r"bad.csv line 3, column 'a'"):
        create_app(str(bad), "b")


# ---- the command --------------------------------------------------------------------------------


def test_the_command_starts_the_server_with_its_options(monkeypatch):
    seen = {}
    monkeypatch.setattr(server, "serve", lambda *args: seen.setdefault("args", args) and 0)
    assert cli.main(["playground", "--port", "9000", "--no-browser"]) == 0
    assert seen["args"] == ("127.0.0.1", 9000, False, None, None, None)


def test_the_command_without_fastapi_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "chainrule.playground.server", None)
    assert cli.main(["playground", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install chainrule[playground]" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "-1"], "--port must be"),
        (["--port", "70000"], "--port must be at most 65535"),
        (["--target", "y"], "--target names a column of --data"),
    ],
)
def test_the_commands_mistakes_are_one_line(argv, message, capsys):
    assert cli.main(["playground", "--no-browser", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_state_is_plain_json(client):
    text = client.get("/api/state").text
    assert json.loads(text)["session"] == "tab-1" and "NaN" not in text


def test_the_history_comes_by_pages(client):
    act(client, {"action": "lesson", "id": 1})
    act(client, {"action": "step", "n": 4})
    page = client.get("/api/history?from=2&count=1").json()
    assert page["rows_from"] == 2 and page["total_rows"] == 4 and page["rows"][0][0] == 3
    assert client.get("/api/history?from=-1").status_code == 400


def test_the_server_answers_on_loopback_and_ctrl_c_stops_it_in_one_line():
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule.cli", "playground", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("chainrule playground: http://127.0.0.1:"), line
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/state", timeout=30) as answer:
            assert json.loads(answer.read())["session"] == "default"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode in (0, 130) and err == "chainrule playground: stopped\n"


def test_a_lessons_folder_adds_lessons(tmp_path):
    lesson = {"id": 7, "title": "Mine", "steps": [{"text": "Hello."}]}
    (tmp_path / "07-mine.json").write_text(json.dumps(lesson))
    c = TestClient(create_app(lessons_folder=str(tmp_path)), base_url="http://127.0.0.1")
    assert [x["id"] for x in c.get("/api/lessons").json()] == [1, 2, 3, 7]
    assert c.post("/api/action", json={"action": "lesson", "id": 7}).json()["lesson"]["title"] == "Mine"
    assert c.get("/api/lessons/7").json()["steps"] == [{"text": "Hello."}]


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Origin": "http://127.0.0.1:8765"}, 200),
        ({"Origin": "http://localhost:8765", "Sec-Fetch-Site": "same-origin"}, 200),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "https://127.0.0.1:8765"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
    ],
)
def test_changes_come_only_from_the_playgrounds_own_page(client, headers, status):
    r = client.post("/api/action", json={"action": "lesson", "id": 2}, headers=headers)
    assert r.status_code == status
    lesson = client.get("/api/state").json()["settings"]["lr"]
    assert lesson == (0.01 if status == 200 else 0.1)  # lesson 2's rate, or lesson 1's as the tab started


def test_an_upload_with_two_features_or_class_labels(client, tmp_path):
    two = b"area,rooms,price\n50,2,1.0\n80,3,1.6\n120,4,2.5\n65,2,1.2\n"
    state = client.post("/api/upload", files={"file": ("houses.csv", two)}).json()
    assert state["network"] == {"kind": "mlp", "sizes": [2, 2, 1], "activation": "softplus"}
    assert act(client, {"action": "step", "n": 3})["iteration"] == 3
    r = client.get("/api/curves")
    assert r.status_code == 400 and r.json()["error"] == "curves: the squiggle needs one input feature; this data has 2"
    labels = b"dose,worked\n0,no\n0.4,yes\n0.5,yes\n1,no\n"
    state = client.post("/api/upload", files={"file": ("trial.csv", labels)}).json()
    assert state["settings"]["loss"] == "cross-entropy" and state["data"]["classes"] == ["no", "yes"]
    assert state["network"]["sizes"] == [1, 2, 2] and state["loss_name"] == "cross-entropy"
    assert act(client, {"action": "run"})["stop_reason"]
    path = tmp_path / "trial.json"
    path.write_bytes(client.get("/api/export/model").content)
    model = modelfile.load(path)
    assert model.classes == ["no", "yes"] and set(model.predict(np.array([[0.0], [0.45]]))) <= {"no", "yes"}
    curves = client.get("/api/curves?points=3").json()  # the class probabilities the page draws
    p = model.predict_proba(np.array(curves["x"])[:, None])
    assert p[:, 1] == pytest.approx(curves["classes"][1]["y"], rel=1e-12)


def test_an_internal_error_is_one_json_line(client, monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.views, "curves", broken)
    r = client.get("/api/curves")
    assert r.status_code == 500 and r.json() == {"error": "internal error (RuntimeError: a bug); please report it"}
    assert capsys.readouterr().err.count("\n") == 1
