"""The app of the soak tests (:mod:`tests.e2e.test_soak`), served by gunicorn's workers.

Two faces of one app, with the same routes and the same app-level counters:

* ``tests.apps.soak_app:wsgi_app``: Flask, for gunicorn's sync workers;
* ``tests.apps.soak_app:asgi_app``: Starlette, for gunicorn with ``uvicorn.workers.UvicornWorker``.

Routes:

* ``/work/<index>``: sleeps :data:`WORK_SLEEP` seconds, then counts the request in
  ``soak_app_requests_total{parity}`` (``even``/``odd``, the parity of ``index``) and
  :func:`units` of ``index`` in ``soak_app_units_total``, then answers ``done <index>``. The
  counters are written before the response exists, so a client that got the answer knows that it
  was counted.
* ``/hang/<token>``: writes this worker's pid to ``$SOAK_STATE_DIR/hang-<token>.pid`` (atomically),
  then sleeps up to :data:`HANG_SECONDS` and answers ``not killed``. The test kills the worker
  while it sleeps there: a worker killed in the middle of a request it has counted nothing for.
  Nothing is counted for this route, except by the middleware if it ever completes.
* ``/metrics``: the metrics (:func:`~pytheus.exposition.make_wsgi_app` /
  :func:`~pytheus.exposition.make_asgi_app`; 503 while the backend cannot be read).

Every response carries ``X-Worker-Pid``, so the test can tell which worker answered. Requests are
also recorded by pytheus's middleware (``http_request_duration_seconds`` and the sizes).

The backend comes from the environment: ``PYTHEUS_MULTIPROC_DIR`` (shared files), or
``PYTHEUS_BACKEND_CLASS`` and ``PYTHEUS_BACKEND_CONFIG`` (Redis).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from flask import Flask, Response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from pytheus.exposition import make_asgi_app, make_wsgi_app
from pytheus.metrics import Counter
from pytheus.middleware import PytheusMiddlewareASGI, PytheusMiddlewareWSGI
from pytheus.serving.asgi import Receive, Scope, Send

WORK_SLEEP = 0.005
"""Seconds each work request sleeps before it is counted."""
HANG_SECONDS = 10.0
"""The longest a ``/hang`` request sleeps (the test kills its worker long before)."""
WSGI_WORK_ROUTE = "/work/<int:index>"
ASGI_WORK_ROUTE = "/work/{index:int}"
PID_HEADER = "X-Worker-Pid"
STATE_DIR_ENV = "SOAK_STATE_DIR"

REQUESTS = Counter(
    "soak_app_requests_total",
    "Work requests answered, by the parity of their index.",
    required_labels=["parity"],
)
UNITS = Counter("soak_app_units_total", "Units of work done: units(index) per request.")


def units(index: int) -> int:
    """The units of work of request ``index``: 1 to 5, so the sum checks every single request."""
    return 1 + index % 5


def parity(index: int) -> str:
    return "odd" if index % 2 else "even"


def count(index: int) -> None:
    """Count one work request in the app-level counters."""
    REQUESTS.labels(parity=parity(index)).inc()
    UNITS.inc(units(index))


def hang_file(state_dir: str | os.PathLike[str], token: str) -> Path:
    """Where the worker serving ``/hang/<token>`` writes its pid."""
    return Path(state_dir) / f"hang-{token}.pid"


def announce_hang(token: str) -> None:
    """Write this worker's pid for ``/hang/<token>`` (through a rename: read whole or absent),
    once Redis has acknowledged everything it counted: the test kills it as soon as it reads
    the file, and a SIGKILL may lose what was not flushed (the file backend loses nothing)."""
    from pytheus.backends.redis import wait_for_flush

    if not wait_for_flush(30):
        raise RuntimeError("Redis did not acknowledge this worker's metrics")
    final = hang_file(os.environ[STATE_DIR_ENV], token)
    partial = final.with_suffix(".tmp")
    partial.write_text(str(os.getpid()))
    partial.rename(final)


def _safe_token(token: str) -> str:
    return "".join(c for c in token if c.isalnum() or c == "-")[:64] or "none"


# --- WSGI: Flask ---------------------------------------------------------------------------------

flask_app = Flask(__name__)


@flask_app.get(WSGI_WORK_ROUTE)
def work(index: int) -> Response:
    time.sleep(WORK_SLEEP)
    count(index)
    return Response(f"done {index}", mimetype="text/plain", headers={PID_HEADER: str(os.getpid())})


@flask_app.get("/hang/<token>")
def hang(token: str) -> Response:
    announce_hang(_safe_token(token))
    time.sleep(HANG_SECONDS)
    return Response("not killed", mimetype="text/plain", headers={PID_HEADER: str(os.getpid())})


flask_app.wsgi_app = PytheusMiddlewareWSGI(flask_app.wsgi_app)  # type: ignore[method-assign]
flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
    flask_app.wsgi_app, {"/metrics": make_wsgi_app()}
)
wsgi_app = flask_app


# --- ASGI: Starlette -----------------------------------------------------------------------------


async def asgi_work(request: Request) -> PlainTextResponse:
    index: int = request.path_params["index"]
    await asyncio.sleep(WORK_SLEEP)
    count(index)
    return PlainTextResponse(f"done {index}", headers={PID_HEADER: str(os.getpid())})


async def asgi_hang(request: Request) -> PlainTextResponse:
    announce_hang(_safe_token(request.path_params["token"]))
    await asyncio.sleep(HANG_SECONDS)
    return PlainTextResponse("not killed", headers={PID_HEADER: str(os.getpid())})


class _Metrics:
    """``make_asgi_app()`` as a Starlette endpoint: an instance, so ``Route`` calls it as ASGI."""

    def __init__(self) -> None:
        self._serve = make_asgi_app()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._serve(scope, receive, send)


asgi_app = Starlette(
    routes=[
        Route(ASGI_WORK_ROUTE, asgi_work),
        Route("/hang/{token}", asgi_hang),
        Route("/metrics", _Metrics()),
    ]
)
asgi_app.add_middleware(PytheusMiddlewareASGI)
