"""Exposition: metrics as bytes Prometheus reads, and the ways to serve them.

Formats: the Prometheus text format 0.0.4 (:mod:`pytheus.exposition.text`), OpenMetrics 1.0.0
(:mod:`pytheus.exposition.openmetrics`), OpenMetrics 2.0.0 when asked for by version
(:mod:`pytheus.exposition.openmetrics2`) and protobuf (:mod:`pytheus.exposition.protobuf`),
chosen per request by
:func:`~pytheus.exposition.negotiation.render_for_request`. Serving (:mod:`pytheus.serving`,
re-exported here): ``make_wsgi_app``, ``make_asgi_app``, ``start_http_server``,
``push_to_gateway``, ``pushadd_to_gateway``, ``delete_from_gateway``, ``write_to_textfile``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytheus.collection import collect_registry
from pytheus.exposition import openmetrics, openmetrics2, text
from pytheus.exposition.negotiation import render_for_request
from pytheus.registry import REGISTRY, Registry

if TYPE_CHECKING:
    from pytheus.serving import (
        MetricsServer,
        delete_from_gateway,
        make_asgi_app,
        make_wsgi_app,
        push_to_gateway,
        pushadd_to_gateway,
        start_http_server,
        write_to_textfile,
    )

PROMETHEUS_CONTENT_TYPE = text.CONTENT_TYPE
OPENMETRICS_CONTENT_TYPE = openmetrics.CONTENT_TYPE
OPENMETRICS_2_CONTENT_TYPE = openmetrics2.CONTENT_TYPE


def generate_metrics(registry: Registry = REGISTRY) -> str:
    """The metrics of ``registry`` in the Prometheus text format (0.0.4).

    Example::

        from pytheus.exposition import generate_metrics
        print(generate_metrics())

    Raises :class:`~pytheus.exceptions.BackendUnavailableException` only when the backend cannot
    be read; serve that as HTTP 503.
    """
    return text.render(collect_registry(registry, live=True))


_SERVING = frozenset(
    {
        "MetricsServer",
        "delete_from_gateway",
        "make_asgi_app",
        "make_wsgi_app",
        "push_to_gateway",
        "pushadd_to_gateway",
        "start_http_server",
        "write_to_textfile",
    }
)


def __getattr__(name: str) -> Any:
    """The serving names, imported on first use: :mod:`pytheus.serving` imports this package."""
    if name in _SERVING:
        import pytheus.serving

        return getattr(pytheus.serving, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OPENMETRICS_2_CONTENT_TYPE",
    "OPENMETRICS_CONTENT_TYPE",
    "PROMETHEUS_CONTENT_TYPE",
    "MetricsServer",
    "delete_from_gateway",
    "generate_metrics",
    "make_asgi_app",
    "make_wsgi_app",
    "push_to_gateway",
    "pushadd_to_gateway",
    "render_for_request",
    "start_http_server",
    "write_to_textfile",
]
