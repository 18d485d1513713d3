"""A WSGI app serving the metrics of a registry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pytheus.registry import REGISTRY, Registry
from pytheus.serving._response import metrics_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def make_wsgi_app(registry: Registry = REGISTRY) -> WSGIApplication:
    """A WSGI app answering every path with the metrics of ``registry``.

    The format follows the ``Accept`` header (OpenMetrics or text 0.0.4), the body is gzipped
    when ``Accept-Encoding`` allows it, ``?name[]=x`` selects families, and a backend that cannot
    be read is answered with HTTP 503.

    Example::

        from wsgiref.simple_server import make_server
        from pytheus.exposition import make_wsgi_app

        make_server("", 8000, make_wsgi_app()).serve_forever()
    """

    def metrics_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = metrics_response(
            registry,
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_ACCEPT"),
            environ.get("HTTP_ACCEPT_ENCODING"),
        )
        start_response(response.status_line, response.headers)
        return [response.body]

    return metrics_app
