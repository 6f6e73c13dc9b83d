"""The playground's web server: the JSON API of docs/playground.md over the sessions, and the page.

:func:`create_app` builds the FastAPI application (the tests drive it with
``fastapi.testclient``); :func:`serve` runs it with uvicorn for ``chainrule
playground``. Every answer is JSON; a user's mistake is HTTP 400
``{"error": "one line"}``. Requests whose Host header is not the loopback
address the server listens on are refused (403: DNS rebinding), request bodies
are capped (413), and no CORS header is ever sent.

Example::

    >>> from fastapi.testclient import TestClient
    >>> from chainrule.playground.server import create_app
    >>> client = TestClient(create_app(), base_url="http://127.0.0.1")
    >>> state = client.post("/api/action", json={"action": "lesson", "id": 1}).json()
    >>> round(state["loss"], 2)
    20.42
    >>> TestClient(create_app(), base_url="http://evil.example").get("/api/state").status_code
    403
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import sys
import tempfile
import threading
import webbrowser
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..data import read_csv
from . import views
from .content import lessons, presets
from .session import Session

__all__ = ["Playground", "create_app", "serve", "MAX_UPLOAD", "MAX_BODY", "MAX_SESSIONS", "LOOPBACK"]

MAX_UPLOAD = 1 << 20  # bytes of an uploaded CSV file
MAX_BODY = 4 << 20  # bytes of any request body (an upload's form framing included)
MAX_SESSIONS = 64
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


class Playground:
    """The ASGI application: the FastAPI app (``api``) behind a guard. The Host header must name
    one of ``hosts`` (with ``port``, or no port; ``port`` None: any); a request that changes something
    (not GET) must come from the playground's own page (its Origin, and Sec-Fetch-Site where the
    browser sends it); request bodies are capped."""

    def __init__(self, api: FastAPI, hosts: set[str], port: int | None) -> None:
        self.api, self.hosts, self.port = api, hosts, port

    def allowed(self, host: str) -> bool:
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not name:  # no port given
            name, port = host, ""
        if port and self.port is not None and port != str(self.port):
            return False
        return name.lower() in self.hosts

    def same_site(self, headers: dict[str, str]) -> bool:
        """False for a request a page of another site sent (a form posted to the playground, say)."""
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = headers.get("origin")
        if origin is None:  # not a browser's cross-site request (curl, a script, the tests)
            return True
        scheme, _, rest = origin.partition("://")  # "null" (a sandboxed or file: page) has none
        return scheme == "http" and "/" not in rest and self.allowed(rest)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.allowed(headers.get("host", "")):
            shown = headers.get("host", "(none)")[:80]
            await _error(403, f"refused: the Host header {shown!r} is not this playground's address")(
                scope, receive, send
            )
            return
        if scope["method"] not in ("GET", "HEAD") and not self.same_site(headers):
            await _error(403, "refused: a request from another web site")(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            await _error(413, f"the request is {int(length)} bytes; the limit is {MAX_BODY}")(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await _error(413, f"the request is over the limit of {MAX_BODY} bytes")(scope, receive, send)
                return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.api(scope, replay, send)


class _Sessions:
    """The sessions by id, the most recently used kept; one lock, so one action runs at a time."""

    def __init__(self, first: list[dict[str, Any]] | None, library: list[dict[str, Any]]) -> None:
        self.first, self.library = first, library
        self.by_id: OrderedDict[str, Session] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, request: Request) -> Session:
        sid = request.headers.get("x-session", "default")
        if not _SESSION_ID.match(sid):
            raise ValueError("the X-Session header must be 1 to 64 letters, digits, '_' or '-'")
        if sid not in self.by_id:
            self.by_id[sid] = Session(self.first, sid, self.library)
            while len(self.by_id) > MAX_SESSIONS:
                self.by_id.popitem(last=False)
        self.by_id.move_to_end(sid)
        return self.by_id[sid]

    def put(self, session: Session) -> None:
        self.by_id[session.id] = session


def _number(request: Request, name: str, kind: type = float, default: Any = None) -> Any:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def _key(request: Request, name: str = "key") -> str:
    key = request.query_params.get(name)
    if key is None:
        raise ValueError(f"the query needs {name}=PARAMETER (a name such as b3, or 0.weight[1,0])")
    return key


def _download(content: bytes | str, media: str, filename: str) -> Response:
    return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _data_action(path: str, name: str, target: str | None, features: str | None) -> dict[str, Any]:
    """The set_data action for the CSV file at ``path``, read by chainrule.data.read_csv (its checks, its words,
    the file called ``name`` in them); ``target`` defaults to the last column."""
    try:
        if target is None:
            with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
                header = next(csv.reader([f.readline()]), [])
            target = header[-1].strip() if header else None
        chosen = [f.strip() for f in features.split(",")] if features else None
        data = read_csv(path, target=target, features=chosen)
    except ValueError as e:
        raise ValueError(str(e).replace(path, name)) from None
    y = data.y.tolist() if data.y is not None else []
    return {"action": "set_data", "x": data.x.tolist(), "y": y, "features": data.features, "target": target,
            "source": f"upload:{name}"}  # fmt: skip


def _upload_action(raw: bytes, filename: str, target: str | None, features: str | None) -> dict[str, Any]:
    """The set_data action for an uploaded CSV file (at most MAX_UPLOAD bytes)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename or ""))[:80].strip(".") or "upload.csv"
    if len(raw) > MAX_UPLOAD:
        raise OverflowError(f"{name} is over {MAX_UPLOAD} bytes, the limit of an upload")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(raw)
        return _data_action(path, name, target, features)


def create_app(
    data: str | None = None,
    target: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    lessons_folder: str | None = None,
) -> Playground:
    """The playground's application. ``data`` (a CSV file, ``target`` its column) is every new session's
    data; ``lessons_folder`` holds lesson files to offer beside chainrule's own."""
    library = lessons(lessons_folder)  # a bad lesson file fails now, in one line
    first = None
    if data is not None:
        points = {**_data_action(data, data, target, None), "source": f"file:{os.path.basename(data)}"}
        first = [{"action": "lesson", "id": 1, "guide": False}, points]
        Session(first, lessons=library)  # a bad file fails now, in one line, not in the first request
    sessions = _Sessions(first, library)
    app = FastAPI(title="chainrule playground", docs_url=None, redoc_url=None, openapi_url=None)

    def answer(work: Callable[[Request, Any], Any], form: bool) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                given = await (_form(request) if form else _json(request))
                with sessions.lock:
                    out = work(request, given)
            except OverflowError as e:
                return _error(413, str(e))
            except ValueError as e:
                return _error(400, str(e))
            except LookupError as e:
                return _error(404, str(e).strip("'\""))
            except Exception as e:  # a bug of ours: the page still gets one line to show
                print(f"chainrule playground: internal error on {request.url.path}: {e!r}", file=sys.stderr)
                return _error(500, f"internal error ({type(e).__name__}: {e}); please report it")
            return out if isinstance(out, Response) else JSONResponse(out)

        return endpoint

    def route(path: str, method: str = "GET", form: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(work: Callable[..., Any]) -> Callable[..., Any]:
            app.add_api_route(path, answer(work, form), methods=[method], include_in_schema=False)
            return work

        return register

    @route("/api/state")
    def state(request: Request, _: Any) -> Any:
        return sessions.get(request).state()

    @route("/api/action", "POST")
    def action(request: Request, given: Any) -> Any:
        return sessions.get(request).apply(given)

    @route("/api/link")
    def link(request: Request, _: Any) -> Any:
        return {"link": sessions.get(request).link()}

    @route("/api/restore", "POST")
    def restore(request: Request, given: Any) -> Any:
        old = sessions.get(request)
        fresh = Session.restore(given.get("link") if isinstance(given, dict) else given, old.id, library)
        sessions.put(fresh)
        return fresh.state()

    @route("/api/upload", "POST", form=True)
    def upload(request: Request, form: Any) -> Any:
        points = _upload_action(form["file"], form["filename"], form.get("target"), form.get("features"))
        return sessions.get(request).apply(points)

    @route("/api/history")
    def history(request: Request, _: Any) -> Any:
        return sessions.get(request).history_rows(
            _number(request, "from", int, 0), _number(request, "count", int, 20000)
        )

    @route("/api/curves")
    def curves(request: Request, _: Any) -> Any:
        return views.curves(sessions.get(request), _number(request, "points", int, 200))

    @route("/api/loss_curve")
    def loss_curve(request: Request, _: Any) -> Any:
        return views.loss_curve(
            sessions.get(request),
            _key(request),
            _number(request, "points", int, 101),
            _number(request, "low"),
            _number(request, "high"),
        )

    @route("/api/landscape")
    def landscape(request: Request, _: Any) -> Any:
        limits = {k: _number(request, k) for k in ("x_low", "x_high", "y_low", "y_high")}
        return views.landscape(
            sessions.get(request),
            _key(request, "x"),
            _key(request, "y"),
            _number(request, "points", int, 41),
            **{k: v for k, v in limits.items() if v is not None},
        )

    @route("/api/graph")
    def graph(request: Request, _: Any) -> Any:
        return views.graph(sessions.get(request), request.query_params.get("level"))

    @route("/api/explain")
    def explain(request: Request, _: Any) -> Any:
        return views.explain(sessions.get(request), _key(request))

    @route("/api/gradcheck")
    def gradcheck(request: Request, _: Any) -> Any:
        return views.gradcheck(sessions.get(request), _key(request))

    @route("/api/lessons")
    def lesson_list(request: Request, _: Any) -> Any:
        return [{"id": x["id"], "title": x.get("title"), "summary": x.get("summary")} for x in library]

    @route("/api/lessons/{lesson_id}")
    def lesson_content(request: Request, _: Any) -> Any:
        text = request.path_params["lesson_id"]
        if not text.isdigit():
            raise LookupError(f"no lesson {text!r}")
        return sessions.get(request).lesson_content(int(text))

    @route("/api/presets")
    def preset_list(request: Request, _: Any) -> Any:
        return presets()

    @route("/api/export/model")
    def export_model(request: Request, _: Any) -> Any:
        text = json.dumps(views.model_file(sessions.get(request)), indent=1, allow_nan=False) + "\n"
        return _download(text, "application/json", "playground-model.json")

    @route("/api/export/history.csv")
    def export_history(request: Request, _: Any) -> Any:
        return _download(views.history_csv(sessions.get(request)), "text/csv", "playground-history.csv")

    @route("/api/export/code")
    def export_code(request: Request, _: Any) -> Any:
        return {"code": views.code(sessions.get(request))}

    @route("/api/export/view")
    def export_view(request: Request, _: Any) -> Any:
        q = request.query_params
        view, fmt = q.get("view", "squiggle"), q.get("format", "png")
        options = {k: q[k] for k in ("key", "x", "y", "level") if k in q}
        content = views.image(sessions.get(request), view, fmt, **options)
        media = "image/png" if fmt == "png" else "image/svg+xml"
        return _download(content, media, f"playground-{view}.{fmt}")

    @route("/api/export/animation.gif")
    def export_animation(request: Request, _: Any) -> Any:
        q = request.query_params
        options = {k: q[k] for k in ("key", "x", "y") if k in q}
        content = views.animation(sessions.get(request), q.get("view", "squiggle"), **options)
        return _download(content, "image/gif", "playground-run.gif")

    @app.api_route("/api/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    async def unknown(rest: str) -> Response:
        return _error(404, f"no API endpoint /api/{rest} (see docs/playground.md)")

    static = resources.files(__package__).joinpath("static")
    app.mount("/", StaticFiles(directory=str(static), html=True), name="static")
    hosts = {*LOOPBACK, host.lower(), f"[{host.lower()}]" if ":" in host else host.lower()}
    return Playground(app, hosts, port)


async def _json(request: Request) -> Any:
    """The request's JSON body (None when it has none)."""
    body = await request.body()
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("the request body must be JSON (nested at most a few hundred levels)") from None


async def _form(request: Request) -> dict[str, Any]:
    """The upload's fields from a multipart form: file (bytes), filename, target, features."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ValueError("upload: send the CSV file as multipart/form-data, in a field named 'file'")
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as e:  # Starlette's parse errors (a broken body)
        raise ValueError(f"upload: the form could not be read ({e})") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ValueError("upload: no file in the form; send it in a field named 'file'")
    fields: dict[str, Any] = {"file": await upload.read(MAX_UPLOAD + 1), "filename": upload.filename or "upload.csv"}
    for name in ("target", "features"):
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            fields[name] = value.strip()
    return fields


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    data: str | None = None,
    target: str | None = None,
    lessons_folder: str | None = None,
) -> int:
    """Run the playground until Ctrl-C; print its address first. Returns the exit status (0, or 130)."""
    import uvicorn

    app = create_app(data, target, host, None, lessons_folder)  # a bad --data file fails here, before anything listens
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)  # before the address is printed: a browser that comes at once waits in the queue
    port = sock.getsockname()[1]
    app.port = port  # Host headers must name this port (or none)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    print(f"chainrule playground: {url}  (Ctrl-C stops it)", flush=True)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        print("chainrule playground: stopped", file=sys.stderr)
        return 130
    print("chainrule playground: stopped", file=sys.stderr)
    return 0
