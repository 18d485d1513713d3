"""aiohttp server middleware.

Example::

    from aiohttp import web
    from pytheus.middleware.aiohttp import pytheus_middleware

    app = web.Application(middlewares=[pytheus_middleware()])

What it records, and the options, are described in :class:`~pytheus.middleware.HTTPMetrics`;
the ``labels`` and ``exemplar`` functions are given aiohttp's ``web.Request``. ``route`` is the
canonical path of the resource that matched (``/users/{id}``); a request no resource matched
gets the ``unmatched_route`` value. The duration runs until the handler (and the middlewares
inside this one) returned its response, or until a response it streamed itself was written;
an ``HTTPException`` is recorded with its status, any other exception as 500, then re-raised.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from aiohttp import web

from pytheus.middleware._common import HTTPMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pytheus_middleware(**options: Any) -> Any:
    """An aiohttp middleware recording each request; ``options`` are HTTPMetrics's."""
    metrics = HTTPMetrics(**options)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method
        if metrics.skips(request.path, method):
            return await handler(request)
        start = perf_counter()
        exemplar = metrics.exemplar_of(request)
        route = _route(request)
        in_flight = metrics.begin(method, route) if metrics.in_progress is not None else None
        status, size = 500, 0
        try:
            response = await handler(request)
            status = response.status
            size = _body_size(response)
            return response
        except web.HTTPException as error:
            status = error.status
            size = len(error.text or "") if isinstance(error.text, str) else 0
            raise
        finally:
            if in_flight is not None:
                in_flight.dec()
            metrics.record_safely(
                method,
                route,
                status,
                perf_counter() - start,
                request.content_length or 0,
                size,
                request,
                exemplar,
            )

    middleware.metrics = metrics  # type: ignore[attr-defined]
    return middleware


def _route(request: web.Request) -> str | None:
    try:
        resource = request.match_info.route.resource
    except Exception:  # never fail a request over its label
        return None
    canonical = getattr(resource, "canonical", None)
    return canonical if isinstance(canonical, str) and canonical else None


def _body_size(response: web.StreamResponse) -> int:
    """Bytes of the response body: its declared length, the body to be sent, a file's size, or
    (streamed by the handler without a length) what aiohttp wrote for it."""
    length = response.content_length
    if length is not None:
        return length
    body = getattr(response, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(response, web.FileResponse):  # sent after the middleware returns
        try:
            return os.stat(response._path).st_size
        except (OSError, AttributeError, TypeError):
            return 0
    return response.body_length
