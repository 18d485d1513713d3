"""PytheusMiddlewareASGI on real Starlette and FastAPI apps, read back with prometheus_client.

Most tests drive the app in process through httpx's ASGI transport, on every backend; the
``uvicorn`` tests run the same app behind a real server on a loopback port and scrape it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from pytheus.exceptions import DuplicateMetricException
from pytheus.middleware import PytheusMiddlewareASGI
from pytheus.middleware.asgi import ASGIApp
from pytheus.registry import CollectorRegistry, Registry
from tests.apps.asgi_apps import APPS, STREAM_CHUNK, STREAM_CHUNKS, STREAM_PAUSE, Boom
from tests.apps.servers import uvicorn_server
from tests.helpers import parse, samples, value

DURATION = "http_request_duration_seconds"
REQUEST_SIZE = "http_request_size_bytes"
RESPONSE_SIZE = "http_response_size_bytes"

Build = Callable[[Registry], ASGIApp]


def count(registry: Registry, route: str, status: str, method: str = "GET") -> float | None:
    labels = {"method": method, "route": route, "status_code": status}
    return value(registry, DURATION + "_count", **labels)


def routes_recorded(registry: Registry) -> set[str]:
    return {
        dict(labels)["route"] for (name, labels) in samples(registry) if name == DURATION + "_count"
    }


def run(app: ASGIApp, *requests: tuple[str, str], **options: Any) -> list[httpx.Response]:
    """Send the requests, in order, through httpx's ASGI transport."""

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.request(method, path, follow_redirects=False, **options)
                for method, path in requests
            ]

    return asyncio.run(main())


def get(app: ASGIApp, *paths: str) -> list[httpx.Response]:
    return run(app, *(("GET", path) for path in paths))


@pytest.fixture(params=sorted(APPS))
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=["wrapped", "add_middleware"])
def wrap(request: pytest.FixtureRequest) -> str:
    """The middleware around the whole app, or added inside it with ``add_middleware``."""
    how: str = request.param
    return how


def instrumented(framework: str, wrap: str, registry: Registry, **options: Any) -> ASGIApp:
    app = APPS[framework](registry)
    if wrap == "add_middleware":
        app.add_middleware(PytheusMiddlewareASGI, registry=registry, **options)
        return app
    return PytheusMiddlewareASGI(app, registry=registry, **options)


# --- routes -------------------------------------------------------------------------------------


def test_a_parametrised_route_is_one_series(registry: Registry, framework: str, wrap: str) -> None:
    app = instrumented(framework, wrap, registry)
    responses = get(app, "/users/1", "/users/2", "/users/2")
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert count(registry, "/users/{id}", "200") == 3
    assert routes_recorded(registry) == {"/users/{id}"}
    families = parse_registry(registry)
    assert {s.labels["route"] for s in families[DURATION]} == {"/users/{id}"}


def test_a_mount_or_router_prefix_is_part_of_the_route(registry: Registry, framework: str) -> None:
    app = instrumented(framework, "wrapped", registry)
    get(app, "/api/items/a", "/api/items/b")
    assert count(registry, "/api/items/{name}", "200") == 2
    assert routes_recorded(registry) == {"/api/items/{name}"}


def test_an_unmatched_path_gets_one_fixed_route(
    registry: Registry, framework: str, wrap: str
) -> None:
    app = instrumented(framework, wrap, registry)
    responses = get(app, "/nope", "/users/1/2/3", "/api/nothing", "/users/1")
    assert [r.status_code for r in responses] == [404, 404, 404, 200]
    assert count(registry, "<unmatched>", "404") == 3
    assert routes_recorded(registry) == {"<unmatched>", "/users/{id}"}


def test_the_unmatched_route_is_configurable(registry: Registry, framework: str) -> None:
    app = instrumented(framework, "wrapped", registry, unmatched_route="none")
    get(app, "/nope")
    assert count(registry, "none", "404") == 1


def test_a_method_the_route_refuses_keeps_the_route(registry: Registry) -> None:
    app = PytheusMiddlewareASGI(APPS["starlette"](registry), registry=registry)
    (response,) = run(app, ("DELETE", "/users/1"))
    assert response.status_code == 405
    assert count(registry, "/users/{id}", "405", method="DELETE") == 1


def test_unknown_methods_share_one_label(registry: Registry) -> None:
    app = PytheusMiddlewareASGI(APPS["starlette"](registry), registry=registry)
    run(app, ("BREW", "/users/1"), ("PURGE", "/users/1"), ("GET", "/users/1"))
    methods = {dict(labels)["method"] for name, labels in samples(registry) if "count" in name}
    assert methods == {"OTHER", "GET"}
    assert count(registry, "/users/{id}", "405", method="OTHER") == 2


def test_routes_of_mounts_hosts_and_mounted_apps(registry: Registry, tmp_path: Any) -> None:
    (tmp_path / "a.txt").write_text("static")

    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    app = Starlette(
        routes=[
            Mount("/t/{tenant}", routes=[Route("/v/{x}", hello)]),
            Mount("/static", StaticFiles(directory=tmp_path)),
            Mount("/outer", routes=[Mount("/inner", routes=[Route("/{leaf}", hello)])]),
        ]
    )
    middleware = PytheusMiddlewareASGI(app, registry=registry)
    responses = get(middleware, "/t/a/v/1", "/t/b/v/2", "/static/a.txt", "/outer/inner/z")
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    assert routes_recorded(registry) == {"/t/{tenant}/v/{x}", "/static", "/outer/inner/{leaf}"}


def test_a_fastapi_sub_application_mount(registry: Registry) -> None:
    app = APPS["fastapi"](registry)
    app.mount("/sub", APPS["fastapi"](CollectorRegistry()))
    middleware = PytheusMiddlewareASGI(app, registry=registry)
    responses = get(middleware, "/sub/users/7", "/sub/nope")
    assert [r.status_code for r in responses] == [200, 404]
    assert routes_recorded(registry) == {"/sub/users/{id}", "<unmatched>"}


def test_routes_are_found_when_the_router_does_not_set_scope_route(
    registry: Registry, framework: str
) -> None:
    """Older Starlette versions leave no ``scope["route"]``: the app's routes are matched."""
    app = APPS[framework](registry)

    async def old_starlette(scope: Any, receive: Any, send: Any) -> None:
        async def send_without_route(message: Any) -> None:
            scope.pop("route", None)  # before the middleware sees the last byte
            await send(message)

        await app(scope, receive, send_without_route)
        scope.pop("route", None)

    middleware = PytheusMiddlewareASGI(old_starlette, registry=registry)
    get(middleware, "/users/1", "/users/2", "/api/items/x", "/nope", "/boom")
    assert middleware.routes._router_sets_route is False
    assert count(registry, "/users/{id}", "200") == 2
    assert count(registry, "/api/items/{name}", "200") == 1
    assert count(registry, "<unmatched>", "404") == 1
    assert count(registry, "/boom", "500") == 1


def test_an_app_without_a_router_is_unmatched(registry: Registry) -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    get(PytheusMiddlewareASGI(bare, registry=registry), "/a", "/b")
    assert count(registry, "<unmatched>", "200") == 2


# --- errors -------------------------------------------------------------------------------------


def test_an_exception_is_recorded_as_500_and_propagates(registry: Registry, framework: str) -> None:
    app = PytheusMiddlewareASGI(APPS[framework](registry), registry=registry)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)  # raises the app's exceptions
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.get("/boom")

    with pytest.raises(Boom):
        asyncio.run(main())
    assert count(registry, "/boom", "500") == 1


def test_an_exception_inside_the_app_becomes_a_500_response(
    registry: Registry, framework: str, wrap: str
) -> None:
    app = instrumented(framework, wrap, registry)
    (response,) = get(app, "/boom")
    assert response.status_code == 500
    assert count(registry, "/boom", "500") == 1


def test_an_exception_before_any_route(registry: Registry) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise Boom("before routing")

    with pytest.raises(Boom):
        asyncio.run(PytheusMiddlewareASGI(broken, registry=registry)(*http_call("/x")))
    assert count(registry, "<unmatched>", "500") == 1


def test_an_app_that_never_answers_is_recorded_as_500(registry: Registry) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        pass

    asyncio.run(PytheusMiddlewareASGI(silent, registry=registry)(*http_call("/x")))
    assert count(registry, "<unmatched>", "500") == 1


def test_a_failing_stream_is_recorded_once_as_500(registry: Registry) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise Boom("mid-stream")

    with pytest.raises(Boom):
        asyncio.run(PytheusMiddlewareASGI(app, registry=registry)(*http_call("/x")))
    assert count(registry, "<unmatched>", "500") == 1
    assert count(registry, "<unmatched>", "200") is None


# --- timing and sizes -----------------------------------------------------------------------------


def test_a_streaming_response_is_timed_to_its_last_byte(
    registry: Registry, framework: str, wrap: str
) -> None:
    app = instrumented(framework, wrap, registry)
    (response,) = get(app, "/stream")
    assert response.content == STREAM_CHUNK * STREAM_CHUNKS
    assert_streamed(registry)


def assert_streamed(registry: Registry) -> None:
    labels = {"method": "GET", "route": "/stream", "status_code": "200"}
    pauses = STREAM_PAUSE * (STREAM_CHUNKS - 1)
    # every observation is above the bucket at 0.1 s (the first chunk came at once)...
    assert value(registry, DURATION + "_bucket", le="0.1", **labels) == 0
    assert value(registry, DURATION + "_bucket", le="+Inf", **labels) == 1
    # ...and the duration covers all the pauses between chunks
    duration_sum = value(registry, DURATION + "_sum", **labels)
    assert duration_sum is not None and duration_sum >= pauses
    assert value(registry, RESPONSE_SIZE + "_sum", **labels) == len(STREAM_CHUNK) * STREAM_CHUNKS


def test_background_work_after_the_response_ends_the_timing_not_the_request(
    registry: Registry,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        await asyncio.sleep(STREAM_PAUSE)  # a background task, after the last byte
        raise Boom("the background task failed")

    with pytest.raises(Boom):
        asyncio.run(PytheusMiddlewareASGI(app, registry=registry)(*http_call("/x")))
    assert count(registry, "<unmatched>", "200") == 1  # recorded at the last byte, once
    assert count(registry, "<unmatched>", "500") is None


def test_request_and_response_sizes(registry: Registry, framework: str, wrap: str) -> None:
    app = instrumented(framework, wrap, registry)
    body = b"a" * 1000
    (response,) = run(app, ("POST", "/echo"), content=body)
    assert response.content == body
    labels = {"method": "POST", "route": "/echo", "status_code": "200"}
    assert value(registry, REQUEST_SIZE + "_sum", **labels) == 1000
    assert value(registry, RESPONSE_SIZE + "_sum", **labels) == 1000
    assert value(registry, REQUEST_SIZE + "_bucket", le="1024.0", **labels) == 1
    assert value(registry, REQUEST_SIZE + "_bucket", le="256.0", **labels) == 0
    get_labels = {"method": "GET", "route": "/users/{id}", "status_code": "200"}
    get(app, "/users/12")
    assert value(registry, REQUEST_SIZE + "_sum", **get_labels) == 0
    assert value(registry, RESPONSE_SIZE + "_sum", **get_labels) == len(b"user 12")


def test_a_chunked_request_counts_the_bytes_read(registry: Registry, framework: str) -> None:
    app = PytheusMiddlewareASGI(APPS[framework](registry), registry=registry)

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"b" * 300

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/echo", content=parts())

    response = asyncio.run(main())
    assert response.content == b"b" * 1500
    labels = {"method": "POST", "route": "/echo", "status_code": "200"}
    assert value(registry, REQUEST_SIZE + "_sum", **labels) == 1500


# --- options ------------------------------------------------------------------------------------


def test_metrics_requests_are_skipped_by_default(registry: Registry, framework: str) -> None:
    app = instrumented(framework, "wrapped", registry)
    (response,) = get(app, "/metrics")
    assert response.status_code == 200
    assert routes_recorded(registry) == set()


@pytest.mark.parametrize("wrap", ["wrapped", "add_middleware"])
def test_scrapes_of_the_documented_fastapi_mount_are_skipped(registry: Registry, wrap: str) -> None:
    """``app.mount("/metrics", make_asgi_app())`` is reached as ``/metrics/``, and ``/metrics``
    is redirected there (307): neither is recorded, however many scrapes there are."""
    from fastapi import FastAPI

    from pytheus.serving import make_asgi_app

    app = FastAPI()

    @app.get("/items/{item}")
    def item(item: int) -> dict[str, int]:
        return {"item": item}

    app.mount("/metrics", make_asgi_app(registry))
    served: ASGIApp = app
    if wrap == "add_middleware":
        app.add_middleware(PytheusMiddlewareASGI, registry=registry)
    else:
        served = PytheusMiddlewareASGI(app, registry=registry)
    responses = get(served, "/metrics", "/metrics/", "/metrics/", "/metrics", "/items/3")
    assert [r.status_code for r in responses] == [307, 200, 200, 307, 200]
    assert responses[0].headers["location"].endswith("/metrics/")
    assert routes_recorded(registry) == {"/items/{item}"}


def test_skip_paths_and_a_skip_predicate(registry: Registry, framework: str) -> None:
    app = instrumented(
        framework,
        "add_middleware",
        registry,
        skip_paths=["/users/1"],
        skip=lambda path: path.startswith("/api/"),
    )
    get(app, "/users/1", "/users/2", "/api/items/x", "/metrics")
    assert count(registry, "/users/{id}", "200") == 1
    assert routes_recorded(registry) == {"/users/{id}", "/metrics"}


def test_prefix_and_buckets(registry: Registry) -> None:
    app = PytheusMiddlewareASGI(
        APPS["starlette"](registry),
        registry=registry,
        prefix="web",
        duration_buckets=[0.5, 1.0],
        size_buckets=[10.0],
    )
    get(app, "/users/1")
    families = parse_registry(registry)
    assert set(families) == {
        "web_request_duration_seconds",
        "web_request_size_bytes",
        "web_response_size_bytes",
    }
    bounds = {s.labels["le"] for s in families["web_request_duration_seconds"] if "le" in s.labels}
    assert bounds == {"0.5", "1.0", "+Inf"}


def test_two_middlewares_on_one_registry_share_their_series(registry: Registry) -> None:
    first = PytheusMiddlewareASGI(APPS["starlette"](registry), registry=registry)
    second = PytheusMiddlewareASGI(APPS["fastapi"](registry), registry=registry)
    get(first, "/users/1")
    get(second, "/users/2")
    assert count(registry, "/users/{id}", "200") == 2
    with pytest.raises(DuplicateMetricException):
        PytheusMiddlewareASGI(APPS["starlette"](registry), registry=registry, size_buckets=[1.0])


def test_websocket_and_lifespan_pass_through(registry: Registry) -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", echo)])
    app.add_middleware(PytheusMiddlewareASGI, registry=registry)
    lifespan = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = asyncio.run(call(app, {"type": "lifespan"}, lifespan))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    scope = {"type": "websocket", "path": "/ws", "headers": [], "root_path": ""}
    incoming = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent = asyncio.run(call(app, scope, incoming))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "hi"
    assert routes_recorded(registry) == set()


def test_the_default_registry_is_used_without_one(framework: str) -> None:
    from pytheus.registry import REGISTRY

    isolated = CollectorRegistry()
    previous = REGISTRY.registry
    REGISTRY.set_registry(isolated)
    try:
        app = APPS[framework](isolated)
        app.add_middleware(PytheusMiddlewareASGI)
        (response,) = get(app, "/users/5")
        assert response.status_code == 200
        assert count(isolated, "/users/{id}", "200") == 1
    finally:
        REGISTRY.set_registry(previous)


# --- a real server ------------------------------------------------------------------------------


def test_behind_uvicorn(registry: Registry, framework: str) -> None:
    app = APPS[framework](registry)
    app.add_middleware(PytheusMiddlewareASGI, registry=registry)
    with uvicorn_server(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert [client.get(path).status_code for path in ("/users/1", "/users/2")] == [200, 200]
        assert client.get("/nope").status_code == 404
        # uvicorn closes the connection of a request whose exception escaped: not reused
        assert client.get("/boom", headers={"connection": "close"}).status_code == 500
        assert client.get("/stream").content == STREAM_CHUNK * STREAM_CHUNKS
        assert client.post("/echo", content=b"z" * 2000).content == b"z" * 2000
        scraped = parse(client.get("/metrics").text)
    counts = {
        (s.labels["route"], s.labels["status_code"]): s.value
        for s in scraped[DURATION]
        if s.name == DURATION + "_count"
    }
    assert counts == {
        ("/users/{id}", "200"): 2,
        ("<unmatched>", "404"): 1,
        ("/boom", "500"): 1,
        ("/stream", "200"): 1,
        ("/echo", "200"): 1,
    }
    assert_streamed(registry)
    echo = {"method": "POST", "route": "/echo", "status_code": "200"}
    assert value(registry, REQUEST_SIZE + "_sum", **echo) == 2000
    assert value(registry, RESPONSE_SIZE + "_sum", **echo) == 2000


# --- helpers ------------------------------------------------------------------------------------


def parse_registry(registry: Registry) -> dict[str, Any]:
    from pytheus.exposition import generate_metrics

    return parse(generate_metrics(registry))


async def call(app: ASGIApp, scope: dict[str, Any], incoming: list[Any]) -> list[Any]:
    """Run one ASGI call with ``incoming`` as the messages received; the messages sent."""
    messages = iter(incoming)
    sent: list[Any] = []

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http_call(path: str) -> tuple[dict[str, Any], Any, Any]:
    """A bare ASGI call for ``GET path``: scope, receive and a send that drops messages."""
    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "root_path": ""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    return scope, receive, send


def test_the_benchmark_runs() -> None:
    """``bench/middleware.py --quick`` runs end to end (no timing is checked)."""
    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run(
        [sys.executable, str(root / "bench" / "middleware.py"), "--quick"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    rows = [
        line.split()[0] for line in completed.stdout.splitlines() if line.endswith(("yes", "NO"))
    ]
    assert rows == ["starlette", "fastapi"], completed.stdout
