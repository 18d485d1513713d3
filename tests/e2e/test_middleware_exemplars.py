"""Exemplars end to end: a FastAPI app under an OpenTelemetry tracer (the SDK, spans kept in
memory), the ASGI middleware, and a real Prometheus with exemplar storage scraping it:
``query_exemplars`` returns the trace id of a request that was made."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pytheus.middleware import PytheusMiddlewareASGI
from pytheus.registry import CollectorRegistry
from pytheus.serving import make_asgi_app
from tests.apps.servers import uvicorn_server
from tests.e2e.conftest import Processes, ScrapeJob, start_prometheus


def traced_app(registry: CollectorRegistry, exporter: InMemorySpanExporter) -> Any:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    app = FastAPI()

    @app.get("/orders/{order_id}")
    def order(order_id: int) -> dict[str, int]:
        return {"order_id": order_id}

    app.mount("/metrics", make_asgi_app(registry))
    app.add_middleware(PytheusMiddlewareASGI, registry=registry)

    async def server_span(scope: Any, receive: Any, send: Any) -> None:
        """What OpenTelemetry's ASGI middleware does: the request runs inside a span."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        with tracer.start_as_current_span(f"{scope['method']} {scope['path']}"):
            await app(scope, receive, send)

    return server_span


def finished_span(exporter: InMemorySpanExporter, name: str) -> Any:
    """The span named ``name``, once it has ended: the server ends it after the response's last
    message is sent, so the client can hold the response before the span is finished."""
    deadline = time.monotonic() + 10
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.name == name]
        if spans:
            [span] = spans
            return span
        assert time.monotonic() < deadline, f"no finished span {name!r}"
        time.sleep(0.01)


@pytest.mark.system
def test_prometheus_stores_the_trace_id_of_a_request(
    processes: Processes, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    with uvicorn_server(traced_app(registry, exporter)) as base:
        prometheus = start_prometheus(
            processes,
            tmp_path / "prometheus",
            [ScrapeJob("traced", base.removeprefix("http://"))],
            flags=["--enable-feature=exemplar-storage"],
        )
        start = time.time()
        with urllib.request.urlopen(base + "/orders/7", timeout=10) as response:
            assert response.status == 200
        span = finished_span(exporter, "GET /orders/7")
        trace_id = format(span.context.trace_id, "032x")

        deadline = time.monotonic() + 30
        while True:
            found = prometheus.api(
                "/api/v1/query_exemplars",
                query='http_request_duration_seconds_bucket{route="/orders/{order_id}"}',
                start=repr(start - 60),
                end=repr(time.time() + 60),
            )
            trace_ids = {e["labels"].get("trace_id") for s in found for e in s["exemplars"]}
            if trace_id in trace_ids:
                break
            assert time.monotonic() < deadline, f"no exemplar with {trace_id}: {found}"
            time.sleep(0.2)
