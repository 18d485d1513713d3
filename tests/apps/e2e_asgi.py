"""A Starlette app for the end-to-end scrape tests, served by uvicorn (``tests.apps.e2e_asgi:app``).

Routes: ``/items/{item_id}`` sleeps :data:`ITEM_SLEEP` seconds (without blocking the loop), so
its duration falls in a known bucket of ``http_request_duration_seconds``; ``/metrics`` is
:func:`~pytheus.exposition.make_asgi_app`. Requests are recorded by
:class:`~pytheus.middleware.PytheusMiddlewareASGI` (``/metrics`` itself is skipped).

As in :mod:`tests.apps.e2e_wsgi`, ``/metrics?e2e_format=text`` is served with the request's
``Accept`` header removed (the text format: Prometheus 2.42 cannot be told not to ask for
OpenMetrics), and scrapes are counted in
``e2e_metrics_responses_total{scrape_job,requested,content_type}`` (``scrape_job`` from
``?e2e_job=<job>``, ``content_type`` the header served).

Single process on the default backend, or ``--workers N`` with ``PYTHEUS_MULTIPROC_DIR`` set.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pytheus.exposition import make_asgi_app
from pytheus.metrics import Counter
from pytheus.middleware import PytheusMiddlewareASGI
from pytheus.serving.asgi import Message, Receive, Scope, Send

ITEM_SLEEP = 0.03
"""Seconds each item request sleeps: its duration falls in the (0.025, 0.05] bucket."""
ROUTE = "/items/{item_id}"
FORCE_TEXT_PARAM = b"e2e_format=text"
JOB_PARAM = "e2e_job"

METRICS_RESPONSES = Counter(
    "e2e_metrics_responses_total",
    "Scrapes answered, by the job named in the query, the format requested and the Content-Type.",
    required_labels=["scrape_job", "requested", "content_type"],
)


async def item(request: Request) -> PlainTextResponse:
    """Sleep a known time, so the request's duration is known."""
    await asyncio.sleep(ITEM_SLEEP)
    return PlainTextResponse(f"item {request.path_params['item_id']}")


class MetricsEndpoint:
    """``make_asgi_app()`` as a Starlette endpoint: forced to text on request, and counted.

    A class instance, not a function, so that Starlette's ``Route`` calls it as an ASGI app.
    """

    def __init__(self) -> None:
        self._serve = make_asgi_app()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        forced = FORCE_TEXT_PARAM in query.split(b"&")
        if forced:
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept"]
            scope = {**scope, "headers": headers}
        served: list[str] = []

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                served.extend(
                    v.decode() for k, v in message["headers"] if k.lower() == b"content-type"
                )
            await send(message)

        await self._serve(scope, receive, recording_send)
        METRICS_RESPONSES.labels(
            scrape_job=parse_qs(query.decode("latin-1")).get(JOB_PARAM, ["none"])[0],
            requested="text" if forced else "negotiated",
            content_type=served[0] if served else "none",
        ).inc()


app = Starlette(routes=[Route(ROUTE, item), Route("/metrics", MetricsEndpoint())])
app.add_middleware(PytheusMiddlewareASGI)
