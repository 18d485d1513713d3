"""A small Flask application for the WSGI middleware tests.

Routes: ``/users/<int:id>``, ``/boom`` (raises), ``/stream`` (chunks with pauses between them),
``/echo`` (POST: answers the body it read), ``/metrics`` (the registry's exposition).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response, request

from pytheus.exposition import PROMETHEUS_CONTENT_TYPE, generate_metrics
from pytheus.registry import Registry

STREAM_CHUNKS = 3
STREAM_CHUNK = b"x" * 100
STREAM_PAUSE = 0.1
"""Seconds between two chunks of ``/stream``: the response lasts at least 0.2 s."""


class Boom(RuntimeError):
    pass


def chunks() -> Iterator[bytes]:
    for n in range(STREAM_CHUNKS):
        if n:
            time.sleep(STREAM_PAUSE)
        yield STREAM_CHUNK


def flask_app(registry: Registry) -> Flask:
    app = Flask(__name__)

    @app.get("/users/<int:id>")
    def user(id: int) -> str:
        return f"user {id}"

    @app.get("/boom")
    def boom() -> str:
        raise Boom("the app failed")

    @app.get("/stream")
    def stream() -> Response:
        return Response(chunks())

    @app.post("/echo")
    def echo() -> bytes:
        return request.get_data()

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_metrics(registry), content_type=PROMETHEUS_CONTENT_TYPE)

    return app
