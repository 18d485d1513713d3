"""A prometheus_client collector that reads a pytheus registry.

prometheus_client's exposition (``generate_latest``, ``make_wsgi_app``, ``start_http_server``,
``push_to_gateway``, ``write_to_textfile``...) walks a ``CollectorRegistry`` and formats the
``Metric`` objects its collectors yield. :class:`RegistryBridge` is such a collector: each
``collect()`` is one pytheus collection of its registry (read from the backend in force, so
across processes), turned into prometheus_client's model. prometheus_client's own functions
then serve pytheus's numbers unchanged.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

from pytheus.backends.memory import bucket_name
from pytheus.collection import collect_registry
from pytheus.registry import REGISTRY, CollectorRegistry, Registry
from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    MetricFamily,
    MetricType,
    SummaryData,
)


class RegistryBridge:
    """Yields the families of a pytheus ``registry`` as prometheus_client ``Metric`` objects.

    ``describe()`` returns nothing, so prometheus_client does not check its names at
    registration: pytheus's registry already refuses conflicting definitions.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        for family in collect_registry(self.registry):
            yield to_client_metric(family)


_TYPES = {MetricType.UNTYPED: "unknown"}


def to_client_metric(family: MetricFamily) -> Any:
    """One pytheus family in prometheus_client's model (classic histogram buckets only)."""
    from prometheus_client.metrics_core import Metric

    name = family.name
    kind = family.type
    if kind is MetricType.COUNTER and name.endswith("_total"):
        name = name[: -len("_total")]
    metric = Metric(name, family.help, _TYPES.get(kind, kind.value), family.unit)
    metric.name = name  # Metric would append the unit to a name that has it before "_total"
    add = metric.add_sample
    for labels, value in family.series:
        base = labels.as_dict()
        if isinstance(value, HistogramData):
            exemplars = value.exemplars or [None] * len(value.upper_bounds)
            cumulative = 0.0
            for bound, count, exemplar in zip(value.upper_bounds, value.bucket_counts, exemplars):
                cumulative += count
                add(
                    name + "_bucket",
                    {**base, "le": bucket_name(bound)},
                    cumulative,
                    exemplar=_exemplar(exemplar),
                )
            add(name + "_count", base, cumulative)
            add(name + "_sum", base, value.sum)
        elif isinstance(value, SummaryData):
            for quantile, estimate in value.quantiles:
                add(name, {**base, "quantile": repr(float(quantile))}, estimate)
            add(name + "_count", base, value.count)
            add(name + "_sum", base, value.sum)
        elif kind is MetricType.COUNTER:
            data = value if isinstance(value, CounterData) else CounterData(float(value))
            add(name + "_total", base, data.value, exemplar=_exemplar(data.exemplar))
        elif kind is MetricType.INFO:
            add(name + "_info", base, float(value))  # type: ignore[arg-type]
        else:
            sample = value.value if isinstance(value, CounterData) else value
            add(name, base, float(sample))
    return metric


def _exemplar(exemplar: Exemplar | None) -> Any:
    if exemplar is None:
        return None
    from prometheus_client.samples import Exemplar as ClientExemplar

    return ClientExemplar(dict(exemplar.labels), exemplar.value, exemplar.timestamp)


_bridged: weakref.WeakKeyDictionary[Any, Registry] = weakref.WeakKeyDictionary()
_bridged_lock = threading.Lock()


def pytheus_registry_for(client_registry: Any) -> Registry | None:
    """The pytheus registry behind a prometheus_client registry, bridged on first use.

    prometheus_client's default ``REGISTRY`` is pytheus's default ``REGISTRY``; any other
    ``CollectorRegistry`` gets a pytheus registry of its own. ``None`` stays ``None``
    (a metric that is not registered anywhere).
    """
    if client_registry is None:
        return None
    if isinstance(client_registry, (CollectorRegistry, type(REGISTRY))):
        return client_registry  # already a pytheus registry
    with _bridged_lock:
        registry = _bridged.get(client_registry)
        if registry is None:
            from prometheus_client import registry as client_registry_module

            default = client_registry is client_registry_module.REGISTRY
            registry = REGISTRY if default else CollectorRegistry()
            client_registry.register(RegistryBridge(registry))
            _bridged[client_registry] = registry
        return registry


def bridge_into(client_registry: Any, registry: Registry) -> None:
    """Serve ``registry`` from ``client_registry`` too (``MultiProcessCollector``'s job)."""
    with _bridged_lock:
        if _bridged.get(client_registry) is registry:
            return
        client_registry.register(RegistryBridge(registry))
        _bridged.setdefault(client_registry, registry)
