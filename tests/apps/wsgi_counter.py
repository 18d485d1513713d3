"""A WSGI app that counts its requests; run by gunicorn in the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pytheus.exposition import PROMETHEUS_CONTENT_TYPE, generate_metrics
from pytheus.metrics import Counter

REQUESTS = Counter("app_requests_total", "Requests served.", required_labels=["path"])


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/metrics":
        body = generate_metrics().encode()
        start_response("200 OK", [("Content-Type", PROMETHEUS_CONTENT_TYPE)])
        return [body]
    REQUESTS.labels(path="/").inc()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
