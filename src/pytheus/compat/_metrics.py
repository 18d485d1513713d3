"""pytheus metrics with prometheus_client's constructors and method names.

Each class *is* the pytheus metric (same hot path, same backends); only what prometheus_client
spells differently is added: ``labelnames``/``namespace``/``subsystem``/``unit``, a
prometheus_client ``registry``, ``count_exceptions(exception=...)``, ``Counter.reset()``,
``Enum(states=...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pytheus.compat._bridge import check_free, index_names, pytheus_registry_for, to_client_metric
from pytheus.exceptions import MetricDefinitionException
from pytheus.metrics import Counter as _Counter
from pytheus.metrics import Enum as _Enum
from pytheus.metrics import Gauge as _Gauge
from pytheus.metrics import Histogram as _Histogram
from pytheus.metrics import Info as _Info
from pytheus.metrics import Summary as _Summary
from pytheus.metrics._timing import ExceptionCounter
from pytheus.registry import REGISTRY
from pytheus.samples import MetricType

DEFAULT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, float("inf"),
)  # fmt: skip  # prometheus_client's


def _default_registry() -> Any:
    try:
        from prometheus_client import registry
    except ImportError:  # used without prometheus_client: pytheus's default registry
        return REGISTRY
    return registry.REGISTRY


def full_name(kind: str, name: str, namespace: str, subsystem: str, unit: str) -> str:
    """The exposed name, built as prometheus_client builds it."""
    if not name:
        raise MetricDefinitionException("metric name should not be empty")
    joined = "_".join(part for part in (namespace, subsystem, name) if part)
    if kind == "counter" and joined.endswith("_total"):
        joined = joined[: -len("_total")]
    if unit and kind in ("info", "stateset"):
        raise MetricDefinitionException(
            f"metric {joined!r}: an {kind} cannot have a unit (unit={unit!r})"
        )
    if unit and not joined.endswith("_" + unit):
        joined += "_" + unit
    return joined


def _options(
    kind: str,
    name: str,
    documentation: str,
    labelnames: Iterable[str],
    namespace: str,
    subsystem: str,
    unit: str,
    registry: Any,
) -> dict[str, Any]:
    """The pytheus constructor arguments for prometheus_client's ones."""
    if isinstance(labelnames, str):  # prometheus_client accepts one name as a string
        labelnames = (labelnames,)
    client_registry = _default_registry() if registry is _DEFAULT else registry
    exposed = full_name(kind, name, namespace, subsystem, unit)
    if client_registry is not None:
        check_free(client_registry, exposed, _KINDS[kind])
    return {
        "name": exposed,
        "description": documentation,
        "required_labels": list(labelnames) or None,
        "registry": pytheus_registry_for(client_registry),
    }


_DEFAULT: Any = object()  # prometheus_client's default REGISTRY, looked up when used
_KINDS = {t.value: t for t in MetricType}


class _ClientMetric:
    """What every prometheus_client-shaped metric adds to its pytheus class."""

    __slots__ = ()
    _family: Any

    def _indexed(self, registry: Any) -> None:
        """Show the new name in the prometheus_client registry's name index."""
        client_registry = _default_registry() if registry is _DEFAULT else registry
        if client_registry is not None:
            index_names(client_registry)

    def describe(self) -> list[Any]:
        """prometheus_client's ``describe()``: the family, without samples."""
        from prometheus_client.metrics_core import Metric

        desc = self._family.desc
        kind = {"untyped": "unknown"}.get(desc.type.value, desc.type.value)
        name = desc.name
        if desc.type is MetricType.COUNTER and name.endswith("_total"):
            name = name[: -len("_total")]
        return [Metric(name, desc.help, kind, desc.unit)]

    def collect(self) -> list[Any]:
        """prometheus_client's ``collect()``: the family with its samples, in its model."""
        from pytheus.collection import collect_families

        return [to_client_metric(f) for f in collect_families([self._family])]


class Counter(_ClientMetric, _Counter):
    """prometheus_client's ``Counter``, recording into pytheus.

    Example::

        c = Counter("requests", "Requests.", ["method"], namespace="shop")  # shop_requests_total
        c.labels("GET").inc()
    """

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
    ) -> None:
        o = _options(
            "counter", name, documentation, labelnames, namespace, subsystem, unit, registry
        )
        super().__init__(**o, unit=unit)
        self._indexed(registry)

    def count_exceptions(  # type: ignore[override]
        self, exception: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> ExceptionCounter:
        return super().count_exceptions(exception)

    def reset(self) -> None:
        """Take back what this process counted, as prometheus_client's ``reset()`` does (in its
        multi-process mode, the other processes' counts stay): a scraper sees a counter reset."""
        self._require_observable()
        counted = self._value.get()
        if counted:
            self._value.inc(-counted)


class Gauge(_ClientMetric, _Gauge):
    """prometheus_client's ``Gauge``; ``multiprocess_mode`` takes the same names."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
        multiprocess_mode: str = "all",
    ) -> None:
        o = _options("gauge", name, documentation, labelnames, namespace, subsystem, unit, registry)
        super().__init__(**o, multiprocess_mode=multiprocess_mode, unit=unit)
        self._indexed(registry)


class Histogram(_ClientMetric, _Histogram):
    """prometheus_client's ``Histogram``, with its default buckets."""

    __slots__ = ()
    DEFAULT_BUCKETS = DEFAULT_BUCKETS

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
        buckets: Sequence[float | str] = DEFAULT_BUCKETS,
    ) -> None:
        o = _options(
            "histogram", name, documentation, labelnames, namespace, subsystem, unit, registry
        )
        bounds = [float(b) for b in buckets]
        if "le" in (o["required_labels"] or ()):
            raise MetricDefinitionException(f"histogram {o['name']!r}: 'le' is a reserved label")
        super().__init__(**o, buckets=bounds, unit=unit)
        self._indexed(registry)


class Summary(_ClientMetric, _Summary):
    """prometheus_client's ``Summary`` (``_count`` and ``_sum``; no quantiles, as there)."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
    ) -> None:
        o = _options(
            "summary", name, documentation, labelnames, namespace, subsystem, unit, registry
        )
        super().__init__(**o, unit=unit)
        self._indexed(registry)


class Info(_ClientMetric, _Info):
    """prometheus_client's ``Info``: ``info({"version": "1.2"})``."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
    ) -> None:
        o = _options("info", name, documentation, labelnames, namespace, subsystem, unit, registry)
        if o["name"].endswith("_info"):  # pytheus's Info takes the name without the suffix
            o["name"] += "_info"
        super().__init__(**o)
        self._indexed(registry)


class Enum(_ClientMetric, _Enum):
    """prometheus_client's ``Enum``: the first state is the initial one."""

    __slots__ = ()

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: Any = _DEFAULT,
        _labelvalues: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
    ) -> None:
        o = _options(
            "stateset", name, documentation, labelnames, namespace, subsystem, unit, registry
        )
        if not states:
            raise MetricDefinitionException(f"enum {o['name']!r}: no states given")
        super().__init__(**o, states=states)
        self._indexed(registry)


CLIENT_METRICS: dict[str, type] = {
    "Counter": Counter,
    "Gauge": Gauge,
    "Histogram": Histogram,
    "Summary": Summary,
    "Info": Info,
    "Enum": Enum,
}
