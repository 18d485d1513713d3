"""Exposition: metrics as bytes Prometheus reads."""

from __future__ import annotations

from pytheus.collection import collect_registry
from pytheus.exposition import text
from pytheus.registry import REGISTRY, Registry

PROMETHEUS_CONTENT_TYPE = text.CONTENT_TYPE


def generate_metrics(registry: Registry = REGISTRY) -> str:
    """The metrics of ``registry`` in the Prometheus text format (0.0.4).

    Example::

        from pytheus.exposition import generate_metrics
        print(generate_metrics())

    Raises :class:`~pytheus.exceptions.BackendUnavailableException` only when the backend cannot
    be read; serve that as HTTP 503.
    """
    return text.render(collect_registry(registry))


__all__ = ["PROMETHEUS_CONTENT_TYPE", "generate_metrics"]
