"""PytheusMiddlewareWSGI on Flask, and PytheusMiddlewareDjango, read back with prometheus_client.

The apps run behind the standard library's WSGI server (wsgiref) on a loopback port, or through
the framework's own test client, on every backend.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from flask import Flask

from pytheus.middleware import ROUTE_ENVIRON_KEY, PytheusMiddlewareWSGI
from pytheus.middleware.django import PytheusMiddlewareDjango
from pytheus.registry import Registry
from tests.apps import django_app, flask_app
from tests.apps.servers import wsgiref_server
from tests.helpers import parse, samples, value

DURATION = "http_request_duration_seconds"
REQUEST_SIZE = "http_request_size_bytes"
RESPONSE_SIZE = "http_response_size_bytes"

django_app.configure()


def count(registry: Registry, route: str, status: str, method: str = "GET") -> float | None:
    labels = {"method": method, "route": route, "status_code": status}
    return value(registry, DURATION + "_count", **labels)


def routes_recorded(registry: Registry) -> set[str]:
    return {
        dict(labels)["route"] for (name, labels) in samples(registry) if name == DURATION + "_count"
    }


def assert_streamed(registry: Registry, route: str, pause: float, chunks: int, size: int) -> None:
    labels = {"method": "GET", "route": route, "status_code": "200"}
    # every observation is above the bucket at 0.1 s (the first chunk came at once)...
    assert value(registry, DURATION + "_bucket", le="0.1", **labels) == 0
    assert value(registry, DURATION + "_bucket", le="+Inf", **labels) == 1
    # ...and the duration covers all the pauses between chunks
    duration_sum = value(registry, DURATION + "_sum", **labels)
    assert duration_sum is not None and duration_sum >= pause * (chunks - 1)
    assert value(registry, RESPONSE_SIZE + "_sum", **labels) == size


def instrumented_flask(registry: Registry, **options: Any) -> Flask:
    app = flask_app.flask_app(registry)
    app.wsgi_app = PytheusMiddlewareWSGI(  # type: ignore[method-assign]
        app.wsgi_app, registry=registry, **options
    )
    return app


# --- Flask behind a real server -----------------------------------------------------------------


def test_flask_behind_wsgiref(registry: Registry) -> None:
    app = instrumented_flask(registry)
    with wsgiref_server(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert [client.get(p).status_code for p in ("/users/1", "/users/2")] == [200, 200]
        assert client.get("/nope").status_code == 404
        assert client.get("/boom").status_code == 500
        stream = client.get("/stream")
        assert stream.content == flask_app.STREAM_CHUNK * flask_app.STREAM_CHUNKS
        assert client.post("/echo", content=b"e" * 3000).content == b"e" * 3000
        scraped = parse(client.get("/metrics").text)
    counts = {
        (s.labels["method"], s.labels["route"], s.labels["status_code"]): s.value
        for s in scraped[DURATION]
        if s.name == DURATION + "_count"
    }
    assert counts == {
        ("GET", "/users/<int:id>", "200"): 2,
        ("GET", "<unmatched>", "404"): 1,
        ("GET", "/boom", "500"): 1,
        ("GET", "/stream", "200"): 1,
        ("POST", "/echo", "200"): 1,
    }
    assert_streamed(
        registry,
        "/stream",
        flask_app.STREAM_PAUSE,
        flask_app.STREAM_CHUNKS,
        len(flask_app.STREAM_CHUNK) * flask_app.STREAM_CHUNKS,
    )
    echo = {"method": "POST", "route": "/echo", "status_code": "200"}
    assert value(registry, REQUEST_SIZE + "_sum", **echo) == 3000
    assert value(registry, RESPONSE_SIZE + "_sum", **echo) == 3000
    user = {"method": "GET", "route": "/users/<int:id>", "status_code": "200"}
    assert value(registry, RESPONSE_SIZE + "_sum", **user) == len(b"user 1") * 2


# --- Flask through its test client ----------------------------------------------------------------


def test_flask_parametrised_route_and_404(registry: Registry) -> None:
    # buffered=True: Werkzeug's test client then closes the response, as a server does
    client = instrumented_flask(registry).test_client()
    assert [
        client.get(p, buffered=True).status_code for p in ("/users/1", "/users/2", "/x", "/users/a")
    ] == [
        200,
        200,
        404,
        404,
    ]
    assert count(registry, "/users/<int:id>", "200") == 2
    assert count(registry, "<unmatched>", "404") == 2
    assert routes_recorded(registry) == {"/users/<int:id>", "<unmatched>"}


def test_flask_propagated_exception_is_recorded_as_500(registry: Registry) -> None:
    app = instrumented_flask(registry)
    app.testing = True  # Flask lets the exception escape
    with pytest.raises(flask_app.Boom):
        app.test_client().get("/boom", buffered=True)
    assert count(registry, "/boom", "500") == 1


def test_flask_handled_exception_is_a_500_response(registry: Registry) -> None:
    response = instrumented_flask(registry).test_client().get("/boom", buffered=True)
    assert response.status_code == 500
    assert count(registry, "/boom", "500") == 1


def test_flask_metrics_skipped_and_options(registry: Registry) -> None:
    app = instrumented_flask(
        registry, prefix="web", unmatched_route="none", skip=lambda p: p.startswith("/users/9")
    )
    client = app.test_client()
    for path in ("/metrics", "/users/9", "/users/1", "/nope"):
        client.get(path, buffered=True)
    recorded = {
        (dict(labels)["route"], dict(labels)["status_code"])
        for name, labels in samples(registry)
        if name == "web_request_duration_seconds_count"
    }
    assert recorded == {("/users/<int:id>", "200"), ("none", "404")}


def test_flask_two_middlewares_share_series(registry: Registry) -> None:
    for _ in range(2):
        instrumented_flask(registry).test_client().get("/users/3", buffered=True)
    assert count(registry, "/users/<int:id>", "200") == 2


# --- the WSGI middleware on plain WSGI apps ---------------------------------------------------


Start = Callable[..., Any]


def call(app: Any, path: str = "/", environ: dict[str, Any] | None = None) -> tuple[str, bytes]:
    """Call a WSGI app as a server would: iterate the body, then close it."""
    env: dict[str, Any] = {"PATH_INFO": path, **(environ or {})}
    setup_testing_defaults(env)
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        status.append(s)
        return lambda data: None

    body = app(env, start_response)
    try:
        content = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    return status[-1], content


def test_a_route_stored_in_the_environ_is_used(registry: Registry) -> None:
    def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        environ[ROUTE_ENVIRON_KEY] = "/things/{id}"
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"made"]

    middleware = PytheusMiddlewareWSGI(app, registry=registry)
    assert call(middleware, "/things/1") == ("201 Created", b"made")
    assert call(middleware, "/things/2") == ("201 Created", b"made")
    assert count(registry, "/things/{id}", "201") == 2


def test_an_app_without_routes_is_unmatched(registry: Registry) -> None:
    def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"a", b"bc"]

    call(PytheusMiddlewareWSGI(app, registry=registry), "/anything")
    assert count(registry, "<unmatched>", "200") == 1
    labels = {"method": "GET", "route": "<unmatched>", "status_code": "200"}
    assert value(registry, RESPONSE_SIZE + "_sum", **labels) == 3


def test_a_failing_stream_is_recorded_once_as_500(registry: Registry) -> None:
    def app(environ: dict[str, Any], start_response: Start) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"part"
        raise flask_app.Boom("mid-stream")

    with pytest.raises(flask_app.Boom):
        call(PytheusMiddlewareWSGI(app, registry=registry))
    assert count(registry, "<unmatched>", "500") == 1
    assert count(registry, "<unmatched>", "200") is None


def test_the_legacy_write_callable_is_counted(registry: Registry) -> None:
    def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        write = start_response("200 OK", [])
        write(b"12345")
        return [b"678"]

    call(PytheusMiddlewareWSGI(app, registry=registry))
    labels = {"method": "GET", "route": "<unmatched>", "status_code": "200"}
    assert value(registry, RESPONSE_SIZE + "_sum", **labels) == 8


def test_a_chunked_request_counts_the_bytes_read(registry: Registry) -> None:
    def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    middleware = PytheusMiddlewareWSGI(app, registry=registry)
    environ = {
        "REQUEST_METHOD": "POST",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(b"c" * 700),
    }
    assert call(middleware, "/upload", environ) == ("200 OK", b"c" * 700)
    labels = {"method": "POST", "route": "<unmatched>", "status_code": "200"}
    assert value(registry, REQUEST_SIZE + "_sum", **labels) == 700


def test_a_file_wrapper_response_is_passed_through(registry: Registry) -> None:
    class FileWrapper:
        def __init__(self, filelike: Any, block_size: int = 8192) -> None:
            self.filelike = filelike

        def __iter__(self) -> Iterator[bytes]:
            return iter([self.filelike.read()])

    def app(environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "4")])
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](io.BytesIO(b"file"))
        return wrapper

    env: dict[str, Any] = {"wsgi.file_wrapper": FileWrapper}
    setup_testing_defaults(env)
    body = PytheusMiddlewareWSGI(app, registry=registry)(env, lambda *a: lambda d: None)
    assert isinstance(body, FileWrapper)  # the server can still send the file its way
    labels = {"method": "GET", "route": "<unmatched>", "status_code": "200"}
    assert value(registry, RESPONSE_SIZE + "_sum", **labels) == 4


# --- Django -------------------------------------------------------------------------------------


@pytest.fixture
def django_registry(registry: Registry) -> Iterator[Registry]:
    """``registry``, set as the Django middleware's registry."""
    with override_settings(
        PYTHEUS_MIDDLEWARE={"registry": registry},
        ROOT_URLCONF=django_app.__name__,
        MIDDLEWARE=[django_app.MIDDLEWARE],
        ALLOWED_HOSTS=["*"],
        DEBUG=False,
    ):
        yield registry


def test_django_behind_wsgiref(django_registry: Registry) -> None:
    from django.core.wsgi import get_wsgi_application

    registry = django_registry
    with (
        wsgiref_server(get_wsgi_application()) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        assert [client.get(p).status_code for p in ("/users/1/", "/users/2/")] == [200, 200]
        assert client.get("/nope").status_code == 404
        assert client.get("/boom/").status_code == 500
        stream = client.get("/stream/")
        assert stream.content == django_app.STREAM_CHUNK * django_app.STREAM_CHUNKS
        assert client.post("/echo/", content=b"d" * 1500).content == b"d" * 1500
        assert client.get("/file/").content == django_app.FILE_CONTENT
        scraped = parse(client.get("/metrics").text)
    counts = {
        (s.labels["method"], s.labels["route"], s.labels["status_code"]): s.value
        for s in scraped[DURATION]
        if s.name == DURATION + "_count"
    }
    assert counts == {
        ("GET", "/users/<int:id>/", "200"): 2,
        ("GET", "<unmatched>", "404"): 1,
        ("GET", "/boom/", "500"): 1,
        ("GET", "/stream/", "200"): 1,
        ("POST", "/echo/", "200"): 1,
        ("GET", "/file/", "200"): 1,
    }
    assert_streamed(
        registry,
        "/stream/",
        django_app.STREAM_PAUSE,
        django_app.STREAM_CHUNKS,
        len(django_app.STREAM_CHUNK) * django_app.STREAM_CHUNKS,
    )
    echo = {"method": "POST", "route": "/echo/", "status_code": "200"}
    assert value(registry, REQUEST_SIZE + "_sum", **echo) == 1500
    assert value(registry, RESPONSE_SIZE + "_sum", **echo) == 1500
    served_file = {"method": "GET", "route": "/file/", "status_code": "200"}
    assert value(registry, RESPONSE_SIZE + "_sum", **served_file) == len(django_app.FILE_CONTENT)


def test_django_routes_of_includes_and_regexes(django_registry: Registry) -> None:
    client = Client()
    for path in ("/api/items/a/", "/api/items/b/", "/legacy/2020/", "/legacy/2021/"):
        assert client.get(path).status_code == 200
    assert routes_recorded(django_registry) == {
        "/api/items/<slug:name>/",
        "^legacy/(?P<year>[0-9]{4})/$",
    }


def test_django_propagated_exception_is_recorded_as_500(django_registry: Registry) -> None:
    with override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True), pytest.raises(django_app.Boom):
        Client().get("/boom/")
    assert count(django_registry, "/boom/", "500") == 1


def test_django_stream_through_the_test_client(django_registry: Registry) -> None:
    response = Client().get("/stream/")
    assert b"".join(response.streaming_content) == django_app.STREAM_CHUNK * 3
    response.close()
    assert_streamed(django_registry, "/stream/", django_app.STREAM_PAUSE, 3, 300)


def test_django_metrics_skipped_and_subclass_options(registry: Registry) -> None:
    class Options(PytheusMiddlewareDjango):
        options = {"registry": registry, "prefix": "dj", "skip_paths": ["/metrics", "/boom/"]}

    handler = Options(django_view)  # called directly: no URL resolution, so unmatched
    factory = RequestFactory()
    for path in ("/metrics", "/boom/", "/users/4/"):
        handler(factory.get(path))
    assert {name for name, _ in samples(registry)} >= {"dj_request_duration_seconds_count"}
    assert count(registry, "<unmatched>", "200") is None  # named dj_..., not http_...
    labels = {"method": "GET", "route": "<unmatched>", "status_code": "200"}
    assert value(registry, "dj_request_duration_seconds_count", **labels) == 1


def django_view(request: Any) -> Any:
    return HttpResponse("plain")
