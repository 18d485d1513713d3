"""ASGI middleware for Starlette and FastAPI (and any ASGI app).

Example::

    from fastapi import FastAPI
    from pytheus.middleware import PytheusMiddlewareASGI

    app = FastAPI()
    app.add_middleware(PytheusMiddlewareASGI)
    # or wrap the whole application: app = PytheusMiddlewareASGI(FastAPI())

What it records, and the options, are described in :class:`~pytheus.middleware.HTTPMetrics`.
``route`` is the template of the route that served the request (``/users/{id}``, mounts'
prefixes included), read from Starlette's routing; an app without Starlette's router gets the
``unmatched_route`` value for every request. Only ``http`` requests are recorded: WebSocket and
lifespan messages pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from time import perf_counter
from typing import Any

from pytheus.metrics.gauge import Gauge
from pytheus.middleware._common import (
    HTTPMetrics,
    content_length,
)
from pytheus.middleware._starlette import StarletteRoutes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any, not Scope: frameworks type their scopes as TypedDicts (Litestar) or loosely (Starlette)
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class PytheusMiddlewareASGI:
    """Records the duration and the sizes of each HTTP request an ASGI app serves.

    Its keyword options are :class:`~pytheus.middleware.HTTPMetrics`'s; the ``labels``
    functions are given the request's ASGI ``scope``.

    The duration runs until the response's last body message has been handed to the server, so
    a streaming response is timed to its end, and background tasks that run after it are not
    counted. An exception escaping the app is recorded with status code 500, then re-raised.

    Example::

        from starlette.applications import Starlette
        from pytheus.middleware import PytheusMiddlewareASGI

        app = Starlette(routes=[...])
        app.add_middleware(PytheusMiddlewareASGI, skip_paths=["/metrics", "/healthz"])
    """

    def __init__(self, app: ASGIApp | None = None, /, **options: Any) -> None:
        if app is None:  # Litestar's DefineMiddleware passes it by name
            app = options.pop("app")
        self.app = app
        self.metrics = HTTPMetrics(**options)
        self.routes = StarletteRoutes(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root_path: str = scope.get("root_path", "")
        path: str = scope["path"]
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        if self.metrics.skips(path, scope["method"]):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, root_path, send)
        metrics = self.metrics
        exchange.exemplar = metrics.exemplar_of(scope)
        if metrics.in_progress is not None:
            route = self.routes.route_before(scope, root_path)
            exchange.in_flight = metrics.begin(scope["method"], route)
        for name, value in scope["headers"]:
            if name == b"content-length":
                exchange.request_size = content_length(value) or 0
                break
        else:  # no declared length (chunked, or no body): count what the app reads
            exchange.upstream = receive
            receive = exchange.receive
        try:
            await self.app(scope, receive, exchange.send)
        except BaseException:
            if not exchange.done:
                exchange.finish(500)
            raise
        if not exchange.done:  # the app returned without finishing a response
            exchange.finish(exchange.status or 500)


class _Exchange:
    """One request's state: wraps ``send`` (and ``receive`` when it has to count the body)."""

    __slots__ = (
        "middleware",
        "scope",
        "root_path",
        "downstream",
        "upstream",
        "start",
        "status",
        "request_size",
        "response_size",
        "trailers",
        "done",
        "exemplar",
        "in_flight",
    )

    def __init__(
        self, middleware: PytheusMiddlewareASGI, scope: Scope, root_path: str, send: Send
    ) -> None:
        self.middleware = middleware
        self.scope = scope
        self.root_path = root_path
        self.downstream = send
        self.start = perf_counter()
        self.status = 0
        self.request_size = 0
        self.response_size = 0
        self.trailers = False
        self.done = False
        self.exemplar: Mapping[str, str] | None = None
        self.in_flight: Gauge | None = None

    upstream: Receive

    async def receive(self) -> Message:
        message = await self.upstream()
        if message["type"] == "http.request":
            self.request_size += len(message.get("body", b""))
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            self.response_size += len(message.get("body", b""))
            if not message.get("more_body", False) and not self.trailers:
                await self.downstream(message)
                self.finish(self.status)
                return
        elif kind == "http.response.start":
            self.status = message["status"]
            self.trailers = message.get("trailers", False)
        elif (kind == "http.response.trailers" and not message.get("more_trailers", False)) or (
            kind == "http.response.pathsend"
        ):
            await self.downstream(message)
            self.finish(self.status)
            return
        await self.downstream(message)

    def finish(self, status: int) -> None:
        """Record the request (once): called at its last byte, or when the app fails."""
        self.done = True
        duration = perf_counter() - self.start
        if self.in_flight is not None:
            self.in_flight.dec()
        middleware = self.middleware
        scope = self.scope
        try:
            route = middleware.routes.route(scope, self.root_path)
        except Exception:  # never fail a request over its label
            route = None
        middleware.metrics.record_safely(
            scope["method"],
            route,
            status,
            duration,
            self.request_size,
            self.response_size,
            scope,
            self.exemplar,
        )
