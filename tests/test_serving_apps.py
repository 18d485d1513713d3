"""The WSGI app under the stdlib's wsgiref server and the ASGI app under uvicorn, over real HTTP.

Both servers start once for the module on free loopback ports and serve a registry proxy that
each test points at its own registry. Every request goes through a socket with http.client, so
the headers checked are those a scraper would receive.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import uvicorn
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families as text_parse

from pytheus.backends import load_backend
from pytheus.backends.memory import SingleProcessBackend
from pytheus.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    PROMETHEUS_CONTENT_TYPE,
    make_asgi_app,
    make_wsgi_app,
)
from pytheus.metrics import Counter, Gauge, Histogram
from pytheus.registry import CollectorRegistry, CollectorRegistryProxy
from tests.backends_under_test import UnreadableBackend

om_parse: Callable[[str], Iterator[Any]] = openmetrics_parser.text_string_to_metric_families

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

SERVED = CollectorRegistryProxy()


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def wsgi_server() -> Iterator[tuple[str, int]]:
    server: WSGIServer = make_server(
        "127.0.0.1", 0, make_wsgi_app(SERVED), handler_class=QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def asgi_server() -> Iterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(make_asgi_app(SERVED), lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield "127.0.0.1", sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@pytest.fixture(params=["wsgi", "asgi"])
def address(request: pytest.FixtureRequest) -> tuple[str, int]:
    """The address of the server under test (both are started once per module)."""
    served: tuple[str, int] = request.getfixturevalue(f"{request.param}_server")
    return served


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    @property
    def text(self) -> str:
        if self.headers.get("Content-Encoding") == "gzip":
            return gzip.decompress(self.body).decode("utf-8")
        return self.body.decode("utf-8")


def request(
    address: tuple[str, int], method: str = "GET", path: str = "/metrics", **headers: str
) -> Reply:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request(
            method, path, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        return Reply(connection.getresponse())
    finally:
        connection.close()


def serve(registry: CollectorRegistry) -> CollectorRegistry:
    SERVED.set_registry(registry)
    return registry


def fill(registry: CollectorRegistry) -> None:
    Counter("hits_total", "Hits.", required_labels=["path"], registry=registry).labels(
        path="/a"
    ).inc(2)
    Gauge("temperature_celsius", "T.", registry=registry, unit="celsius").set(21.5)
    Histogram("wait_seconds", "W.", buckets=[1], registry=registry).observe(0.5)


def values(families: Iterable[Any]) -> dict[str, float]:
    return {s.name: s.value for f in families for s in f.samples if s.name != "wait_seconds_bucket"}


EXPECTED = {
    "hits_total": 2.0,
    "temperature_celsius": 21.5,
    "wait_seconds_count": 1.0,
    "wait_seconds_sum": 0.5,
}


def test_text_by_default(address: tuple[str, int], registry: CollectorRegistry) -> None:
    fill(serve(registry))
    reply = request(address)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
    assert reply.headers["Content-Encoding"] is None
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    assert values(text_parse(reply.text)) == EXPECTED


def test_openmetrics_for_prometheus(address: tuple[str, int], registry: CollectorRegistry) -> None:
    fill(serve(registry))
    reply = request(address, Accept=PROMETHEUS_ACCEPT)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
    assert values(om_parse(reply.text)) == EXPECTED
    assert "Accept" in reply.headers["Vary"]


def test_gzip(address: tuple[str, int]) -> None:
    fill(serve(CollectorRegistry()))
    reply = request(address, Accept=PROMETHEUS_ACCEPT, Accept_Encoding="gzip, deflate")
    assert reply.headers["Content-Encoding"] == "gzip"
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    assert values(om_parse(reply.text)) == EXPECTED


def test_name_filter_from_query(address: tuple[str, int]) -> None:
    fill(serve(CollectorRegistry()))
    reply = request(address, path="/metrics?name[]=hits_total&name%5B%5D=wait_seconds_sum")
    assert reply.status == 200
    assert {f.name for f in text_parse(reply.text)} == {"hits", "wait_seconds"}
    reply = request(address, path="/metrics?name[]=nothing")
    assert reply.body == b""


def test_any_path_serves_metrics(address: tuple[str, int]) -> None:
    fill(serve(CollectorRegistry()))
    assert values(text_parse(request(address, path="/").text)) == EXPECTED


def test_head_has_headers_and_no_body(address: tuple[str, int]) -> None:
    fill(serve(CollectorRegistry()))
    get = request(address)
    head = request(address, method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_other_methods_are_refused(address: tuple[str, int]) -> None:
    serve(CollectorRegistry())
    reply = request(address, method="POST")
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD"


@pytest.fixture
def broken_registry() -> Iterator[CollectorRegistry]:
    load_backend(UnreadableBackend, {})
    registry = CollectorRegistry()
    Counter("doomed_total", "Doomed.", registry=registry).inc()
    try:
        yield registry
    finally:
        load_backend(SingleProcessBackend, {})


def test_backend_unavailable_is_503(
    address: tuple[str, int], broken_registry: CollectorRegistry
) -> None:
    serve(broken_registry)
    for accept in (None, PROMETHEUS_ACCEPT):
        reply = request(address, **({"Accept": accept} if accept else {}))
        assert reply.status == 503
        assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert reply.body == b"metrics backend unavailable\n"  # no traceback, no internal address


def test_lifespan_and_asgi_scope_types() -> None:
    """The ASGI app completes lifespan messages and refuses scopes it cannot serve."""
    app = make_asgi_app(CollectorRegistry())
    sent: list[Any] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Any:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message)

    async def call(scope_type: str) -> None:
        await app({"type": scope_type}, receive, send)

    asyncio.run(call("lifespan"))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(call("websocket"))
