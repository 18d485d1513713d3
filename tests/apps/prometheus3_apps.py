"""Small apps for ``tests/e2e/test_prometheus3.py``: the Redis backend and UTF-8 names.

Run as ``python -m tests.apps.prometheus3_apps <mode> ...``:

* ``redis-observe <redis-url> <namespace> <index> <processes>``: loads
  :class:`~pytheus.backends.redis.MultiProcessRedisBackend`, observes its share of
  :data:`REDIS_VALUES` (those at positions ``index``, ``index + processes``, ...) in the
  native-only histogram ``e2e_native_seconds``, waits until Redis holds them all, exits;
* ``redis-serve <port> <redis-url> <namespace> <index> <processes>``: the same share, then serves
  :func:`~pytheus.exposition.make_wsgi_app` (the totals of every process) on loopback until
  killed;
* ``utf8-serve <port>`` (with ``PYTHEUS_NAME_VALIDATION=utf8``): increments the counter
  ``http.server.requests`` (label ``http.method="GET"``) :data:`UTF8_REQUESTS` times and serves
  it on loopback until killed.

Each server counts the scrapes it answers in ``e2e_scrapes_total`` by client (Prometheus, told by
its ``User-Agent``, or other), the media type served and the ``escaping`` parameter of its
``Content-Type`` (``none`` without one), so Prometheus's own data says which format and name
escaping it got.

Only the standard library and pytheus are imported: the processes start fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

HOST = "127.0.0.1"
REDIS_VALUES = tuple(i / 64 for i in range(1, 100))
"""Observed across the Redis processes; multiples of 1/64, so every partial sum is exact."""
REDIS_MEDIAN = 50 / 64
REDIS_HISTOGRAM = "e2e_native_seconds"
"""The name the test module's other apps use for the same values: one set of checks for all."""
UTF8_COUNTER = "http.server.requests"
UTF8_LABEL = "http.method"
UTF8_REQUESTS = 7
FLUSH_TIMEOUT = 10.0


def share(index: int, processes: int) -> tuple[float, ...]:
    """The values process ``index`` of ``processes`` observes."""
    return REDIS_VALUES[index::processes]


def _observe_share(url: str, namespace: str, index: int, processes: int) -> None:
    from pytheus.backends import load_backend
    from pytheus.backends.redis import MultiProcessRedisBackend
    from pytheus.metrics import Histogram

    load_backend(MultiProcessRedisBackend, {"url": url, "namespace": namespace})
    histogram = Histogram(REDIS_HISTOGRAM, "Known values from several processes.", native=True)
    for value in share(index, processes):
        histogram.observe(value)


def redis_observe(url: str, namespace: str, index: int, processes: int) -> None:
    from pytheus.backends.redis import wait_for_flush

    _observe_share(url, namespace, index, processes)
    if not wait_for_flush(timeout=FLUSH_TIMEOUT):
        sys.exit(f"process {index}: Redis did not take the observations in {FLUSH_TIMEOUT}s")
    print(f"process {index} (pid {os.getpid()}): flushed", flush=True)


def counting_scrapes(serve_metrics: WSGIApplication) -> WSGIApplication:
    """``serve_metrics``, counting each scrape by client and the ``Content-Type`` served."""
    from pytheus.metrics import Counter

    scrapes = Counter(
        "e2e_scrapes_total",
        "Scrapes answered, by client, media type served and its escaping parameter.",
        required_labels=["client", "content_type", "escaping"],
    )

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        served: list[str] = []

        def recording(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            served.extend(v for k, v in headers if k.lower() == "content-type")
            return start_response(status, headers, *args)

        body = serve_metrics(environ, recording)
        agent = environ.get("HTTP_USER_AGENT", "")
        client = "prometheus" if agent.startswith("Prometheus/") else "other"
        media_type, _, params = (served[0] if served else "none").partition(";")
        escaping = "none"
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "escaping":
                escaping = value
        scrapes.labels(client=client, content_type=media_type.strip(), escaping=escaping).inc()
        return body

    return app


def serve_forever(port: int, app: Callable[..., Iterable[bytes]]) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    with make_server(HOST, port, app, handler_class=Quiet) as server:
        server.serve_forever()


def redis_serve(port: int, url: str, namespace: str, index: int, processes: int) -> None:
    from pytheus.exposition import make_wsgi_app

    _observe_share(url, namespace, index, processes)
    serve_forever(port, counting_scrapes(make_wsgi_app()))


def utf8_serve(port: int) -> None:
    from pytheus.exposition import make_wsgi_app
    from pytheus.metrics import Counter
    from pytheus.naming import get_validation_scheme

    assert get_validation_scheme() == "utf8", "run with PYTHEUS_NAME_VALIDATION=utf8"
    requests = Counter(UTF8_COUNTER, "Requests, a UTF-8 name.", required_labels=[UTF8_LABEL])
    for _ in range(UTF8_REQUESTS):
        requests.labels({UTF8_LABEL: "GET"}).inc()
    serve_forever(port, counting_scrapes(make_wsgi_app()))


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "redis-observe":
        url, namespace, index, processes = args
        redis_observe(url, namespace, int(index), int(processes))
    elif mode == "redis-serve":
        port, url, namespace, index, processes = args
        redis_serve(int(port), url, namespace, int(index), int(processes))
    elif mode == "utf8-serve":
        (port,) = args
        utf8_serve(int(port))
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
