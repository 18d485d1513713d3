"""WSGI middleware for Flask (and any WSGI app).

Example::

    from flask import Flask
    from pytheus.middleware import PytheusMiddlewareWSGI

    app = Flask(__name__)
    app.wsgi_app = PytheusMiddlewareWSGI(app.wsgi_app)

What it records, and the options, are described in :class:`~pytheus.middleware.HTTPMetrics`.

``route`` is, in this order of preference:

* ``environ["pytheus.route"]`` (:data:`ROUTE_ENVIRON_KEY`), when the app stored a template there:
  the way to label the routes of any other framework;
* the Werkzeug request's ``url_rule.rule`` (``/users/<int:id>``), read while Flask's request is
  alive, that is when the app calls ``start_response``; when an exception escapes Flask
  (``PROPAGATE_EXCEPTIONS``, as in testing mode) the rule is found by matching the app's URL map;
* otherwise the ``unmatched_route`` value.

For Django, use :class:`pytheus.middleware.django.PytheusMiddlewareDjango`, which reads Django's
resolver match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

from pytheus.middleware._common import (
    HTTPMetrics,
    content_length,
)

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ROUTE_ENVIRON_KEY = "pytheus.route"
"""Where an app may store the route template of the request it serves."""


class PytheusMiddlewareWSGI:
    """Records the duration and the sizes of each HTTP request a WSGI app serves.

    Its keyword options are :class:`~pytheus.middleware.HTTPMetrics`'s; the ``labels``
    functions are given the request's WSGI ``environ``.

    The response's iterable is wrapped: the request is recorded when the server closes it, after
    the last byte, so a streamed response is timed to its end (every WSGI server closes it;
    Werkzeug's test client does so only with ``buffered=True`` or once the response is closed).
    An exception escaping the app, or raised while its response is iterated, is recorded with
    status code 500, then re-raised.
    A response returned as the server's ``wsgi.file_wrapper`` is passed through untouched, so
    that the server can still send the file efficiently: it is recorded when the app returns,
    with the ``Content-Length`` it declared as its size.

    Example::

        from pytheus.middleware import PytheusMiddlewareWSGI
        from pytheus.registry import CollectorRegistry

        app.wsgi_app = PytheusMiddlewareWSGI(app.wsgi_app, registry=CollectorRegistry())
    """

    def __init__(self, app: WSGIApp, /, **options: Any) -> None:
        self.app = app
        self.metrics = HTTPMetrics(**options)
        owner = getattr(app, "__self__", app)  # Flask's app.wsgi_app is a bound method
        url_map = getattr(owner, "url_map", None)
        self._url_map = url_map if hasattr(url_map, "bind_to_environ") else None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.metrics.skips(environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")):
            return self.app(environ, start_response)
        exchange = _Exchange(self, environ, start_response)
        length = content_length(environ.get("CONTENT_LENGTH"))
        if length is not None:
            exchange.request_size = length
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            environ["wsgi.input"] = _CountingInput(environ["wsgi.input"], exchange)
        try:
            body = self.app(environ, exchange.start_response)
        except BaseException:
            exchange.finish("500")
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            exchange.response_size = exchange.declared_size
            exchange.finish(exchange.status)
            return body
        return _Body(body, exchange)

    def _route_after_error(self, environ: Environ) -> str | None:
        """Flask's rule for a request whose exception escaped Flask (its request is gone), or
        for a request about to be served (the in-progress gauge)."""
        url_map = self._url_map
        if url_map is None:
            return None
        try:
            rule, _ = url_map.bind_to_environ(environ).match(return_rule=True)
        except Exception:  # no rule matches (or a redirect): unmatched
            return None
        route = getattr(rule, "rule", None)
        return route if isinstance(route, str) else None


class _Exchange:
    """One request's state; ``start_response`` and ``write`` are wrapped to see the response."""

    __slots__ = (
        "middleware",
        "environ",
        "downstream",
        "server_write",
        "start",
        "status",
        "route",
        "request_size",
        "response_size",
        "declared_size",
        "done",
        "exemplar",
        "in_flight",
    )

    def __init__(
        self, middleware: PytheusMiddlewareWSGI, environ: Environ, start_response: StartResponse
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        self.downstream = start_response
        self.start = perf_counter()
        self.status = "500"
        self.route: str | None = None
        self.request_size = 0
        self.response_size = 0
        self.declared_size = 0
        self.done = False
        metrics = middleware.metrics
        self.exemplar = metrics.exemplar_of(environ)
        self.in_flight = None
        if metrics.in_progress is not None:
            route = environ.get(ROUTE_ENVIRON_KEY) or middleware._route_after_error(environ)
            self.in_flight = metrics.begin(environ.get("REQUEST_METHOD", "GET"), route)

    server_write: Callable[[bytes], object]

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        self.status = status[:3]
        # Flask: the rule of the request, while its request object is still alive
        request = self.environ.get("werkzeug.request")
        if request is not None:
            rule = getattr(request, "url_rule", None)
            if rule is not None:
                self.route = rule.rule
        for name, value in headers:
            if len(name) == 14 and name.lower() == "content-length":
                self.declared_size = content_length(value) or 0
                break
        if exc_info is None:
            self.server_write = self.downstream(status, headers)
        else:
            self.server_write = self.downstream(status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> object:
        """The legacy ``write()`` callable: counted like the body."""
        self.response_size += len(data)
        return self.server_write(data)

    def finish(self, status: str) -> None:
        """Record the request (once): when its body is closed, or when the app fails."""
        if self.done:
            return
        self.done = True
        duration = perf_counter() - self.start
        if self.in_flight is not None:
            self.in_flight.dec()
        environ = self.environ
        middleware = self.middleware
        route = environ.get(ROUTE_ENVIRON_KEY) or self.route
        if route is None and status == "500":
            route = middleware._route_after_error(environ)
        middleware.metrics.record_safely(
            environ.get("REQUEST_METHOD", "GET"),
            route,
            status,
            duration,
            self.request_size,
            self.response_size,
            environ,
            self.exemplar,
        )


class _Body:
    """The app's response iterable, counted as the server reads it; recorded on ``close()``."""

    __slots__ = ("_body", "_exchange")

    def __init__(self, body: Iterable[bytes], exchange: _Exchange) -> None:
        self._body = body
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        exchange = self._exchange
        try:
            for chunk in self._body:
                exchange.response_size += len(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException:
            exchange.finish("500")
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._exchange.finish("500")
            raise
        self._exchange.finish(self._exchange.status)


class _CountingInput:
    """``wsgi.input`` of a chunked request: counts the body bytes the app reads."""

    __slots__ = ("_input", "_exchange")

    def __init__(self, stream: Any, exchange: _Exchange) -> None:
        self._input = stream
        self._exchange = exchange

    def read(self, *args: Any) -> bytes:
        data: bytes = self._input.read(*args)
        self._exchange.request_size += len(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._input.readline(*args)
        self._exchange.request_size += len(data)
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._input.readlines(*args)
        self._exchange.request_size += sum(len(line) for line in lines)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._input:
            self._exchange.request_size += len(line)
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._input, name)
