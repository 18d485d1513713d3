"""A prometheus_client collector that reads a pytheus registry.

prometheus_client's exposition (``generate_latest``, ``make_wsgi_app``, ``start_http_server``,
``push_to_gateway``, ``write_to_textfile``...) walks a ``CollectorRegistry`` and formats the
``Metric`` objects its collectors yield. :class:`RegistryBridge` is such a collector: each
``collect()`` is one pytheus collection of its registry (read from the backend in force, so
across processes, in one read), turned into prometheus_client's model. prometheus_client's own
functions then serve pytheus's numbers unchanged.

The bridge stands in the prometheus_client registry for every pytheus metric registered
through it: its names are kept in the registry's name index (so ``restricted_registry``, the
``name[]`` filter and the duplicate check see them), and the registry's ``register`` and
``unregister`` accept those metrics.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

from pytheus.backends.memory import bucket_name
from pytheus.collection import collect_families
from pytheus.desc import exposed_names
from pytheus.registry import REGISTRY, CollectorRegistry, Registry
from pytheus.samples import (
    CounterData,
    Exemplar,
    HistogramData,
    MetricFamily,
    MetricType,
    SummaryData,
)


def _runtime_types() -> tuple[type, ...]:
    from pytheus.runtime import RUNTIME_COLLECTORS

    return tuple(RUNTIME_COLLECTORS)


class RegistryBridge:
    """Yields the families of a pytheus ``registry`` as prometheus_client ``Metric`` objects.

    ``runtime=False`` leaves out pytheus's process, GC and platform collectors: in
    prometheus_client's default registry, prometheus_client's own serve those names.
    """

    def __init__(self, registry: Registry, runtime: bool = True) -> None:
        self.registry = registry
        self.runtime = runtime

    def collectors(self) -> list[Any]:
        found = list(self.registry.collect())
        if not self.runtime:
            runtime = _runtime_types()
            found = [c for c in found if not isinstance(c, runtime)]
        return found

    def names(self) -> list[str]:
        """Every sample name the bridged families may expose (for the registry's index)."""
        names: list[str] = []
        prefix = self.registry.prefix
        for collector in self.collectors():
            desc = getattr(collector, "desc", None)
            if desc is None:
                continue
            name = f"{prefix}_{desc.name}" if prefix else desc.name
            names.extend(sorted(exposed_names(name, desc.type)))
        return names

    def describe(self) -> list[Any]:
        return []  # the names are indexed by index_names(), kept up to date as metrics come

    def collect(self) -> Iterator[Any]:
        for family in collect_families(self.collectors(), self.registry.prefix):
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
    add = metric.add_sample
    for labels, value in family.series:
        base = labels.as_dict()
        if isinstance(value, HistogramData):
            exemplars = value.exemplars or [None] * len(value.upper_bounds)
            cumulative = 0.0
            for bound, count, exemplar in zip(value.upper_bounds, value.bucket_counts, exemplars):
                cumulative += count
                le = {**base, "le": bucket_name(bound)}
                add(name + "_bucket", le, cumulative, exemplar=_exemplar(exemplar))
            add(name + "_count", base, cumulative)
            add(name + "_sum", base, value.sum)
        elif isinstance(value, SummaryData):
            for quantile, estimate in value.quantiles:
                add(name, {**base, "quantile": repr(float(quantile))}, estimate)
            add(name + "_count", base, float(value.count))
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


class _Bridged:
    """A prometheus_client registry's bridge, and the pytheus registry behind it."""

    __slots__ = ("bridge", "registry")

    def __init__(self, bridge: RegistryBridge, registry: Registry) -> None:
        self.bridge = bridge
        self.registry = registry


_bridged: weakref.WeakKeyDictionary[Any, _Bridged] = weakref.WeakKeyDictionary()
_lock = threading.RLock()


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
    with _lock:
        bridged = _bridged.get(client_registry)
        if bridged is None:
            from prometheus_client import registry as client_registry_module

            default = client_registry is client_registry_module.REGISTRY
            registry = REGISTRY if default else CollectorRegistry()
            bridged = _Bridged(RegistryBridge(registry, runtime=not default), registry)
            _bridged[client_registry] = bridged
            _adopt_methods(client_registry)
        _ensure_registered(client_registry, bridged.bridge)
        return bridged.registry


def bridge_into(client_registry: Any, registry: Registry) -> RegistryBridge:
    """Serve ``registry`` from ``client_registry`` too (``MultiProcessCollector``'s job)."""
    with _lock:
        bridged = _bridged.get(client_registry)
        if bridged is not None and bridged.registry is registry:
            _ensure_registered(client_registry, bridged.bridge)
            return bridged.bridge
        bridge = RegistryBridge(registry)
        _original(client_registry, "register")(bridge)
        return bridge


def index_names(client_registry: Any) -> None:
    """Put the bridged metrics' names in ``client_registry``'s name index (after a change)."""
    with _lock:
        bridged = _bridged.get(client_registry)
        if bridged is None:
            return
        lock = getattr(client_registry, "_lock", None)
        to_names = getattr(client_registry, "_collector_to_names", None)
        to_collectors = getattr(client_registry, "_names_to_collectors", None)
        if lock is None or to_names is None or to_collectors is None:
            return  # another prometheus_client version: no index to keep
        bridge = bridged.bridge
        with lock:
            if bridge not in to_names:
                return
            for name in to_names[bridge]:
                if to_collectors.get(name) is bridge:
                    del to_collectors[name]
            names = [n for n in bridge.names() if to_collectors.get(n) in (None, bridge)]
            for name in names:
                to_collectors[name] = bridge
            to_names[bridge] = names


def _ensure_registered(client_registry: Any, bridge: RegistryBridge) -> None:
    """(Re-)register the bridge: a test fixture may have emptied the registry."""
    to_names = getattr(client_registry, "_collector_to_names", None)
    if to_names is not None and bridge in to_names:
        return
    _original(client_registry, "register")(bridge)


def _original(client_registry: Any, method: str) -> Any:
    return getattr(type(client_registry), method).__get__(client_registry)


def _is_bridged_metric(collector: Any) -> bool:
    from pytheus.metrics import _Metric

    return isinstance(collector, _Metric)


def _adopt_methods(client_registry: Any) -> None:
    """Make ``register`` and ``unregister`` of this registry accept pytheus metrics."""
    register = _original(client_registry, "register")
    unregister = _original(client_registry, "unregister")

    def adopted_register(collector: Any) -> None:
        bridged = _bridged.get(client_registry)
        if bridged is not None and _is_bridged_metric(collector):
            bridged.registry.register(collector)
            _ensure_registered(client_registry, bridged.bridge)
            index_names(client_registry)
            return
        register(collector)

    def adopted_unregister(collector: Any) -> None:
        bridged = _bridged.get(client_registry)
        if bridged is not None and _is_bridged_metric(collector):
            bridged.registry.unregister(collector)
            index_names(client_registry)
            return
        unregister(collector)

    client_registry.register = adopted_register
    client_registry.unregister = adopted_unregister


def check_free(client_registry: Any, name: str, kind: MetricType) -> None:
    """Refuse, as prometheus_client does, a name another collector of the registry serves."""
    from pytheus.exceptions import DuplicateMetricException

    with _lock:
        bridged = _bridged.get(client_registry)
        to_collectors = getattr(client_registry, "_names_to_collectors", None)
        if bridged is None or not isinstance(to_collectors, dict):
            return
        taken = [
            n for n in exposed_names(name, kind)
            if to_collectors.get(n) not in (None, bridged.bridge)
        ]  # fmt: skip
        if taken:
            raise DuplicateMetricException(
                f"Duplicated timeseries in CollectorRegistry: {set(taken)}: another collector "
                "of this registry serves them"
            )
