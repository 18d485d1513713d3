"""Django middleware: one line in ``MIDDLEWARE``.

Example (``settings.py``)::

    MIDDLEWARE = [
        "pytheus.middleware.django.PytheusMiddlewareDjango",  # first: it times the others too
        ...
    ]
    # optional: the options of pytheus.middleware.HTTPMetrics, as keyword arguments
    PYTHEUS_MIDDLEWARE = {"skip_paths": ["/metrics", "/healthz"]}

``route`` is the ``route`` of the request's resolver match with a leading ``/``
(``/users/<int:id>/``); a ``re_path`` pattern keeps its ``^`` instead. A request that no URL
pattern matched gets the ``unmatched_route`` value.

Timing: a response with its content in memory is recorded when it leaves the middleware; a
streaming response when the server closes it, after its last byte. An exception escaping the
view (with ``DEBUG_PROPAGATE_EXCEPTIONS``; otherwise Django turns it into a 500 response before
the middleware sees it), or raised while a response streams, is recorded with status code 500,
then re-raised. The middleware is synchronous (Django adapts it under ASGI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from time import perf_counter
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from pytheus.metrics.gauge import Gauge
from pytheus.middleware._common import HTTPMetrics, content_length

SETTING = "PYTHEUS_MIDDLEWARE"
"""The Django setting holding the middleware's options (a dict)."""


class PytheusMiddlewareDjango:
    """Records the duration and the sizes of each request Django serves.

    Its options come from the ``PYTHEUS_MIDDLEWARE`` setting, read when Django creates the
    middleware; a subclass may set ``options`` instead.

    Example::

        class APIMetrics(PytheusMiddlewareDjango):
            options = {"prefix": "api", "skip_paths": ["/metrics"]}
    """

    sync_capable: ClassVar[bool] = True
    async_capable: ClassVar[bool] = False
    options: ClassVar[dict[str, Any] | None] = None

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        options = self.options if self.options is not None else getattr(settings, SETTING, {})
        self.metrics = HTTPMetrics(**options)

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        metrics = self.metrics
        if metrics.skips(request.path_info, request.method or ""):
            return self.get_response(request)
        start = perf_counter()
        exemplar = metrics.exemplar_of(request)
        method = request.method or "GET"
        in_flight = None
        if metrics.in_progress is not None:
            in_flight = metrics.begin(method, _route_before(request))
        request_size = content_length(request.META.get("CONTENT_LENGTH")) or 0
        try:
            response = self.get_response(request)
        except BaseException:
            if in_flight is not None:
                in_flight.dec()
            metrics.record_safely(
                method,
                _route(request),
                500,
                perf_counter() - start,
                request_size,
                0,
                request,
                exemplar,
            )
            raise
        route = _route(request)
        status = response.status_code
        if not response.streaming:
            size = content_length(response.get("Content-Length"))
            if size is None:
                size = len(response.content)
            duration = perf_counter() - start
            if in_flight is not None:
                in_flight.dec()
            metrics.record_safely(
                method, route, status, duration, request_size, size, request, exemplar
            )
            return response
        recorder = _Recorder(
            metrics, method, route, status, start, request_size, response, request, exemplar
        )
        recorder.in_flight = in_flight
        closers = getattr(response, "_resource_closers", None)
        if getattr(response, "is_async", False) or getattr(response, "file_to_stream", None):
            # left as it is: async content is Django's to adapt, and a file may go to the
            # server's wsgi.file_wrapper; recorded when the response is closed
            if isinstance(closers, list):
                closers.append(recorder.close)
            else:
                recorder.close()
            return response
        response.streaming_content = recorder.wrap(response.streaming_content)
        return response


def _route_before(request: HttpRequest) -> str | None:
    """The route a request will be served by, resolved before the view runs (in-progress)."""
    from django.urls import resolve

    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Exception:  # Resolver404 (no route), or a URLconf that cannot be read
        return None
    return _template(match)


def _route(request: HttpRequest) -> str | None:
    return _template(getattr(request, "resolver_match", None))


def _template(match: Any) -> str | None:
    """A resolver match's route with a leading ``/`` (a regex route as it is)."""
    route = getattr(match, "route", None)
    if not isinstance(route, str):
        return None
    return route if route.startswith("^") else "/" + route


class _Recorder:
    """Records a streaming response once it is closed, with the bytes it streamed."""

    __slots__ = (
        "metrics",
        "method",
        "route",
        "status",
        "start",
        "request_size",
        "response",
        "response_size",
        "iterated",
        "done",
        "request",
        "exemplar",
        "in_flight",
    )

    def __init__(
        self,
        metrics: HTTPMetrics,
        method: str,
        route: str | None,
        status: int,
        start: float,
        request_size: int,
        response: HttpResponseBase,
        request: HttpRequest,
        exemplar: Mapping[str, str] | None,
    ) -> None:
        self.metrics = metrics
        self.request = request
        self.exemplar = exemplar
        self.in_flight: Gauge | None = None
        self.method = method
        self.route = route
        self.status = status
        self.start = start
        self.request_size = request_size
        self.response = response
        self.response_size = 0
        self.iterated = False
        self.done = False

    def wrap(self, content: Iterable[bytes]) -> _StreamingBody:
        return _StreamingBody(content, self)

    def close(self, status: int | None = None) -> None:
        if self.done:
            return
        self.done = True
        if self.in_flight is not None:
            self.in_flight.dec()
        size = self.response_size
        if not self.iterated:  # sent by the server from a file, or never read
            size = content_length(self.response.get("Content-Length")) or 0
        self.metrics.record_safely(
            self.method,
            self.route,
            self.status if status is None else status,
            perf_counter() - self.start,
            self.request_size,
            size,
            self.request,
            self.exemplar,
        )


class _StreamingBody:
    """A response's streaming content, counted as the server reads it.

    Django calls ``close()`` of streaming content when the server closes the response.
    """

    __slots__ = ("_content", "_recorder")

    def __init__(self, content: Iterable[bytes], recorder: _Recorder) -> None:
        self._content = content
        self._recorder = recorder

    def __iter__(self) -> Iterator[bytes]:
        recorder = self._recorder
        recorder.iterated = True
        try:
            for chunk in self._content:
                recorder.response_size += len(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException:
            recorder.close(500)
            raise

    def close(self) -> None:
        close = getattr(self._content, "close", None)
        try:
            if close is not None:
                close()
        finally:
            self._recorder.close()
