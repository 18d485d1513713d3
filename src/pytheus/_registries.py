"""The registry classes and the default registry, ``REGISTRY``, without the runtime collectors.

Users import them from :mod:`pytheus.registry`, which registers the runtime collectors in
``REGISTRY`` (:mod:`pytheus.runtime` builds on this module, so that it can import neither).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Optional, Protocol, runtime_checkable

from pytheus.desc import exposed_names
from pytheus.exceptions import DuplicateMetricException
from pytheus.naming import validate_metric_name

logger = logging.getLogger("pytheus.registry")  # where users look for it


@runtime_checkable
class Collector(Protocol):
    """Anything a registry can hold: a metric's family, or a custom collector.

    ``collect()`` of a custom collector yields metrics created with ``registry=None`` (or
    :class:`~pytheus.samples.MetricFamily` objects).
    """

    @property
    def name(self) -> str: ...

    def collect(self) -> Iterable[Any]: ...


@runtime_checkable
class Registry(Protocol):
    @property
    def prefix(self) -> Optional[str]: ...

    def register(self, collector: Collector) -> None: ...

    def unregister(self, collector: Collector) -> None: ...

    def collect(self) -> Iterable[Collector]: ...


def _target(collector: Any) -> Any:
    """A metric object registers its family (``_collector``); anything else registers itself."""
    return getattr(collector, "_collector", collector)


class CollectorRegistry:
    """A thread-safe registry; ``prefix`` is prepended to every name it exposes: ``prefix_name``."""

    def __init__(self, prefix: str | None = None) -> None:
        if prefix is not None:
            validate_metric_name(prefix, "registry prefix")
        self.prefix = prefix
        self._lock = threading.Lock()
        self._collectors: dict[str, Any] = {}
        self._exposed: dict[str, str] = {}  # sample name -> the collector exposing it

    def register(self, collector: Collector) -> None:
        """Add a metric or custom collector; see the module docs for duplicate names."""
        target = _target(collector)
        with self._lock:
            existing = self._collectors.get(target.name)
            if existing is target:
                return
            if existing is not None:
                self._resolve_duplicate(collector, target, existing)
                return
            if hasattr(target, "desc"):
                exposed = exposed_names(target.name, target.desc.type)
                self._check_exposed(target.name, exposed)
            else:
                exposed = set()
                self._check_custom_collector(target)
            self._collectors[target.name] = target
            self._exposed.update(dict.fromkeys(exposed, target.name))
        if hasattr(target, "attach"):
            target.attach()

    def _resolve_duplicate(self, collector: Any, target: Any, existing: Any) -> None:
        if hasattr(target, "desc") and hasattr(existing, "desc"):
            if target.desc.same_definition(existing.desc):
                if target.pristine() and hasattr(collector, "_join"):
                    collector._join(existing)
                    return
                raise DuplicateMetricException(
                    f"metric {target.name!r} is already registered, and the new object "
                    "already records elsewhere; use the registered object instead"
                )
            raise DuplicateMetricException(
                f"metric {target.name!r} is already registered with a different definition: "
                f"{_describe(existing)} vs {_describe(target)}"
            )
        raise DuplicateMetricException(
            f"a collector named {target.name!r} is already registered in this registry"
        )

    def _check_exposed(self, name: str, exposed: set[str]) -> None:
        for sample_name in exposed:
            owner = self._exposed.get(sample_name)
            if owner is not None:
                raise DuplicateMetricException(
                    f"metric {name!r} would expose samples named {sample_name!r}, "
                    f"which metric {owner!r} already exposes"
                )

    def _check_custom_collector(self, collector: Any) -> None:
        """Refuse a collector that yields an already registered name. It is asked through
        ``describe()`` when it has one (which reads nothing), otherwise through ``collect()``."""
        describe = getattr(collector, "describe", None)
        try:
            described = describe() if callable(describe) else collector.collect()
            yielded = [_target(item).name for item in described]
        except Exception:  # the collector may only work at scrape time; check then
            logger.debug("custom collector %r failed when registered", collector, exc_info=True)
            return
        for name in yielded:
            if name in self._collectors:
                raise DuplicateMetricException(
                    f"custom collector {collector.name!r} yields metric {name!r}, "
                    "which is already registered"
                )

    def unregister(self, collector: Collector) -> None:
        target: Any = _target(collector)
        name: str = target.name
        with self._lock:
            registered = self._collectors.get(name) is target
            if not registered:
                logger.warning("no collector named %r is registered", name)
                return
            del self._collectors[name]
            self._exposed = {k: v for k, v in self._exposed.items() if v != name}

    def collect(self) -> Iterable[Collector]:
        with self._lock:
            return list(self._collectors.values())


def _describe(family: Any) -> str:
    desc = family.desc
    parts = [desc.type.value, f"labels={list(desc.label_names)}"]
    if desc.default_labels:
        parts.append(f"default_labels={dict(desc.default_labels)}")
    if desc.upper_bounds:
        parts.append(f"buckets={list(desc.upper_bounds)}")
    parts.extend(f"{key}={value!r}" for key, value in desc.options)
    return "(" + ", ".join(parts) + ")"


class CollectorRegistryProxy:
    """The default registry ``REGISTRY``: delegates to a registry that ``set_registry`` swaps."""

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry: Registry = registry if registry is not None else CollectorRegistry()

    @property
    def prefix(self) -> str | None:
        return self._registry.prefix

    def set_registry(self, registry: Registry) -> None:
        self._registry = registry

    @property
    def registry(self) -> Registry:
        return self._registry

    def register(self, collector: Collector) -> None:
        self._registry.register(collector)

    def unregister(self, collector: Collector) -> None:
        self._registry.unregister(collector)

    def collect(self) -> Iterable[Collector]:
        return self._registry.collect()


REGISTRY = CollectorRegistryProxy()
