"""Registries: the set of collectors a scrape reads.

A metric registers itself in ``REGISTRY`` when created (pass ``registry=None`` to opt out, or
another registry). Registering a second metric with the same name and the same definition makes
both objects record into the same series; a different definition raises
:class:`DuplicateMetricException`.

Example::

    from pytheus.registry import CollectorRegistry, REGISTRY
    from pytheus.metrics import Counter

    registry = CollectorRegistry(prefix="shop")
    orders = Counter("orders_total", "Orders placed.", registry=registry)  # shop_orders_total
    REGISTRY.set_registry(registry)  # make it the default registry
"""

from __future__ import annotations

import os

from pytheus._registries import (
    REGISTRY,
    Collector,
    CollectorRegistry,
    CollectorRegistryProxy,
    Registry,
)
from pytheus.runtime import register_runtime_collectors

__all__ = ["REGISTRY", "Collector", "CollectorRegistry", "CollectorRegistryProxy", "Registry"]


def _register_runtime_collectors() -> None:
    """Process, garbage-collector and platform metrics in the default registry, as Prometheus
    users expect; ``PYTHEUS_DISABLE_RUNTIME_COLLECTORS=1`` (or
    ``pytheus.runtime.unregister_runtime_collectors()``) opts out."""
    if os.environ.get("PYTHEUS_DISABLE_RUNTIME_COLLECTORS", "").lower() in ("1", "true", "yes"):
        return
    register_runtime_collectors(REGISTRY)


_register_runtime_collectors()
