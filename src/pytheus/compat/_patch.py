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

``PROMETHEUS_MULTIPROC_DIR``, when no pytheus backend is chosen, selects pytheus's shared-file
backend in that directory.

What cannot be reached: a name imported from prometheus_client *before* the patch
(``from prometheus_client import Counter`` at the top of a module imported earlier) keeps the
original class: metrics created with it before the patch keep counting in their own process,
and creating one after the patch raises ``PytheusCompatibilityException``, as does a metric
type of one's own derived from ``MetricWrapperBase``, rather than count in one process only.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

from pytheus.compat._bridge import RegistryBridge, bridge_into, pytheus_registry_for
from pytheus.compat._metrics import CLIENT_METRICS
from pytheus.exceptions import PytheusCompatibilityException
from pytheus.registry import REGISTRY


class MultiProcessCollector(RegistryBridge):
    """prometheus_client's ``MultiProcessCollector``: every process's values, from ``registry``.

    It serves pytheus's default registry, read through the backend in force
    (``PYTHEUS_MULTIPROC_DIR``, Redis, ...), which already holds what every process recorded;
    ``path`` is not read. Without a multi-process backend it refuses to stand in for
    prometheus_client's multi-process mode (it would serve one process's numbers).
    """

    def __init__(self, registry: Any, path: str | None = None) -> None:
        from pytheus.backends.base import current_store
        from pytheus.backends.memory import MemoryStore

        if isinstance(current_store(), MemoryStore):
            raise PytheusCompatibilityException(
                "MultiProcessCollector: the pytheus backend in force keeps each process's values "
                "to itself; set PYTHEUS_MULTIPROC_DIR (or PROMETHEUS_MULTIPROC_DIR before "
                "patch_client runs) or load a multi-process backend"
            )
        super().__init__(REGISTRY, runtime=False)
        if registry is not None:
            bridge_into(registry, REGISTRY)


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """prometheus_client's ``mark_process_dead``: nothing to do, pytheus handles ended processes."""


def _refusing(original: Any) -> Any:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("_labelvalues"):  # a child of a metric created before the patch
            original(self, *args, **kwargs)
            return
        kind = type(self)
        what = (
            f"prometheus_client's own {kind.__name__}, imported before patch_client ran"
            if kind.__module__ == "prometheus_client.metrics"
            else f"{kind.__qualname__}, derived from prometheus_client.metrics.MetricWrapperBase"
        )
        raise PytheusCompatibilityException(
            f"{what}: patch_client does not cover it, and it would count in this process only. "
            "Call patch_client(prometheus_client) before importing the module that defines the "
            "metric, or derive from pytheus.compat's Counter, Gauge, Histogram, Summary, Info or "
            "Enum"
        )

    return refuse


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
            base = metrics.MetricWrapperBase
            base.__init__ = _refusing(base.__init__)
        _adopt_prometheus_multiproc_dir()
        registry_module = _submodule(name, "registry")
        if registry_module is not None:
            pytheus_registry_for(registry_module.REGISTRY)
        _patched.add(name)


def _submodule(package: str, name: str) -> ModuleType | None:
    import importlib

    try:
        return importlib.import_module(f"{package}.{name}")
    except ImportError:
        return None


def _adopt_prometheus_multiproc_dir() -> None:
    """prometheus_client's ``PROMETHEUS_MULTIPROC_DIR`` selects pytheus's shared-file backend
    when no pytheus backend is chosen, so an existing multi-process set-up keeps counting every
    process (in the same directory: pytheus's files do not clash with prometheus_client's)."""
    from pytheus.backends import base

    legacy = "prometheus_multiproc_dir"  # the lower-case spelling older releases read
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(legacy)
    chosen = any(os.environ.get(v) for v in (base.MULTIPROC_DIR_ENV, "PYTHEUS_BACKEND_CLASS"))
    if directory and not chosen and base._loaded is None:
        os.environ[base.MULTIPROC_DIR_ENV] = directory  # inherited by the processes it starts
