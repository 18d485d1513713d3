"""``patch_client(prometheus_client)``: code written for prometheus_client records into pytheus.

What is replaced, in ``prometheus_client`` and in the submodules that hold the same names
(``metrics``, ``core``, ``multiprocess``):

- ``Counter``, ``Gauge``, ``Histogram``, ``Summary``, ``Info``, ``Enum``: pytheus metrics with
  prometheus_client's constructors (see :mod:`pytheus.compat._metrics`);
- ``multiprocess.MultiProcessCollector(registry)``: serves pytheus's default registry from
  ``registry`` (the backend in force already reads every process); ``mark_process_dead``: does
  nothing (pytheus's backends deal with ended processes themselves).

What is kept: ``REGISTRY``, ``CollectorRegistry`` and every exposition and serving function.
The first metric registered in a prometheus_client registry puts a
:class:`~pytheus.compat._bridge.RegistryBridge` in it, so ``generate_latest``,
``make_wsgi_app``, ``start_http_server``, ``push_to_gateway`` and ``write_to_textfile`` format
pytheus's numbers. Custom collectors registered in a prometheus_client registry keep working
there (they run in the scraping process, as in prometheus_client).

What cannot be reached: a name imported from prometheus_client *before* the patch
(``from prometheus_client import Counter`` at the top of a module imported earlier) keeps the
original class; call ``patch_client`` first. A subclass of prometheus_client's
``MetricWrapperBase`` (a metric type of one's own) raises ``PytheusCompatibilityException``
when created, rather than count in one process only.
"""

from __future__ import annotations

import contextlib
import threading
from types import ModuleType
from typing import Any

from pytheus.compat._bridge import bridge_into, pytheus_registry_for
from pytheus.compat._metrics import CLIENT_METRICS
from pytheus.exceptions import PytheusCompatibilityException
from pytheus.registry import REGISTRY


def MultiProcessCollector(registry: Any, path: str | None = None) -> None:
    """prometheus_client's ``MultiProcessCollector``: serve every process's values in ``registry``.

    ``path`` is ignored: the pytheus backend in force (``PYTHEUS_MULTIPROC_DIR``, Redis, ...)
    already reads what every process recorded.
    """
    bridge_into(registry, REGISTRY)


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """prometheus_client's ``mark_process_dead``: nothing to do, pytheus handles ended processes."""


def _refuse(self: Any, *args: Any, **kwargs: Any) -> None:
    raise PytheusCompatibilityException(
        f"{type(self).__qualname__} derives from prometheus_client.metrics.MetricWrapperBase, "
        "which patch_client does not cover: it would count in this process only. Derive from "
        "one of pytheus.compat's Counter, Gauge, Histogram, Summary, Info or Enum instead"
    )


_patched: set[str] = set()
_lock = threading.Lock()


def patch_client(client: ModuleType) -> None:
    """Make ``client`` (the ``prometheus_client`` module) record into pytheus.

    Call it before importing code that does ``from prometheus_client import Counter``.

    Example::

        import prometheus_client
        from pytheus.compat import patch_client

        patch_client(prometheus_client)
        requests = prometheus_client.Counter("requests", "Requests.", ["method"])
        requests.labels("GET").inc()
        prometheus_client.generate_latest()  # b'... requests_total{method="GET"} 1.0 ...'
    """
    name = client.__name__
    with _lock:
        if name in _patched:
            return
        modules = [client] + [
            module
            for sub in ("metrics", "core", "multiprocess")
            if (module := _submodule(name, sub)) is not None
        ]
        for module in modules:
            for attribute, replacement in CLIENT_METRICS.items():
                if hasattr(module, attribute):
                    setattr(module, attribute, replacement)
        multiprocess = _submodule(name, "multiprocess")
        if multiprocess is not None:
            multiprocess.MultiProcessCollector = MultiProcessCollector  # type: ignore[attr-defined]
            multiprocess.mark_process_dead = mark_process_dead  # type: ignore[attr-defined]
        metrics = _submodule(name, "metrics")
        if metrics is not None and hasattr(metrics, "MetricWrapperBase"):
            metrics.MetricWrapperBase.__init__ = _refuse
        registry_module = _submodule(name, "registry")
        if registry_module is not None:
            _replace_runtime_collectors(client, registry_module.REGISTRY)
            pytheus_registry_for(registry_module.REGISTRY)
        _patched.add(name)


def _submodule(package: str, name: str) -> ModuleType | None:
    import importlib

    try:
        return importlib.import_module(f"{package}.{name}")
    except ImportError:
        return None


def _replace_runtime_collectors(client: ModuleType, client_registry: Any) -> None:
    """Drop prometheus_client's process, platform and GC collectors from its default registry
    when pytheus's default registry has its own (same names): one of each in a scrape."""
    from pytheus.runtime import RUNTIME_COLLECTORS

    present = {type(c) for c in REGISTRY.collect()}
    if not present.intersection(RUNTIME_COLLECTORS):
        return
    for attribute in ("PROCESS_COLLECTOR", "PLATFORM_COLLECTOR", "GC_COLLECTOR"):
        collector = getattr(client, attribute, None)
        if collector is None:
            continue
        with contextlib.suppress(KeyError):  # the application may have unregistered it
            client_registry.unregister(collector)
