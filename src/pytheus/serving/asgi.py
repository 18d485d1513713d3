"""An ASGI app serving the metrics of a registry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pytheus.registry import REGISTRY, Registry
from pytheus.serving._response import Response, metrics_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def make_asgi_app(registry: Registry = REGISTRY) -> ASGIApp:
    """An ASGI app answering every HTTP path with the metrics of ``registry``.

    It negotiates like :func:`~pytheus.serving.wsgi.make_wsgi_app`. Collection runs in a worker
    thread (``asyncio.to_thread``), so a slow backend does not block the event loop.

    Example::

        import uvicorn
        from pytheus.exposition import make_asgi_app

        uvicorn.run(make_asgi_app(), port=8000)  # or mount it in a Starlette/FastAPI app
    """

    async def metrics_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"the metrics app only serves HTTP, not {scope['type']!r}")
        headers = _headers(scope)
        response: Response = await asyncio.to_thread(
            metrics_response,
            registry,
            scope["method"],
            scope.get("query_string", b"").decode("latin-1"),
            headers.get("accept"),
            headers.get("accept-encoding"),
        )
        await send(
            {
                "type": "http.response.start",
                "status": response.status.value,
                "headers": [(k.lower().encode(), v.encode()) for k, v in response.headers],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    return metrics_app


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; repeated headers are joined with commas."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
